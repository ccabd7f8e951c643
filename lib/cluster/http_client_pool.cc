#include "http_client_pool.h"

#include "str_cat.h"

namespace tenancy::internal {

absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        StrCat("\"", url, "\" is not an http://HOST:PORT URL: ", why));
  };
  if (url.substr(0, kScheme.size()) != kScheme) return bad("it must start with http://");
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return bad("it has a path");
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = rest.substr(0, colon);
  const std::string_view port = rest.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad("an IPv6 host goes in brackets");
  }
  if (host.empty()) return bad("no host");
  for (char c : host) {
    if (c <= 0x20 || c >= 0x7F || c == '@' || c == '?' || c == '#') return bad("a bad host");
  }
  int value = 0;
  if (port.empty() || port.size() > 5) return bad("a bad port");
  for (char c : port) {
    if (c < '0' || c > '9') return bad("a bad port");
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > 65535) return bad("a bad port");
  return HttpUrl{std::string(host), value, StrCat(kScheme, rest)};
}

HttpClientPool::HttpClientPool(HttpUrl url, HttpClientPoolOptions options)
    : url_(std::move(url)), options_(options) {}

HttpClientPool::Lease HttpClientPool::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      std::unique_ptr<httplib::Client> client = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(client));
    }
  }
  auto client = std::make_unique<httplib::Client>(url_.host, url_.port);
  client->set_keep_alive(true);
  client->set_connection_timeout(options_.connect_timeout);
  client->set_read_timeout(options_.read_timeout);
  client->set_write_timeout(options_.write_timeout);
  return Lease(this, std::move(client));
}

void HttpClientPool::GiveBack(std::unique_ptr<httplib::Client> client) {
  absl::MutexLock lock(&mu_);
  if (idle_.size() < options_.max_idle) idle_.push_back(std::move(client));
}

}  // namespace tenancy::internal
