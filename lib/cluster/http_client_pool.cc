#include "http_client_pool.h"

#include <algorithm>
#include <iterator>

#include "sigpipe_block.h"
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
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<Connection>> stale;  // closed outside the lock
  std::unique_ptr<Connection> reused;
  {
    absl::MutexLock lock(&mu_);
    // Oldest first (given back in order): those idle too long go.
    auto young = std::find_if(idle_.begin(), idle_.end(), [&](const auto& c) {
      return now - c->idle_since < options_.max_idle_time;
    });
    std::move(idle_.begin(), young, std::back_inserter(stale));
    idle_.erase(idle_.begin(), young);
    // The newest is lent (httplib checks, before it writes, that the server
    // has not closed it meanwhile, and dials again if it has).
    if (!idle_.empty()) {
      reused = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  return Lease(this, reused != nullptr ? std::move(reused) : Dial());
}

std::unique_ptr<HttpClientPool::Connection> HttpClientPool::Dial() const {
  auto c = std::make_unique<Connection>();
  c->client = std::make_unique<httplib::Client>(url_.host, url_.port);
  c->client->set_keep_alive(true);
  c->client->set_connection_timeout(options_.connect_timeout);
  c->client->set_read_timeout(options_.read_timeout);
  c->client->set_write_timeout(options_.write_timeout);
  return c;
}

bool HttpClientPool::Lease::Send(httplib::Request& req, httplib::Response& res,
                                 httplib::Error& error) {
  bool sent;
  {
    SigpipeBlock no_sigpipe;
    sent = connection_->client->send(req, res, error);
  }
  if (!sent) connection_.reset();
  return sent;
}

void HttpClientPool::GiveBack(std::unique_ptr<Connection> connection) {
  connection->idle_since = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  if (idle_.size() < options_.max_idle) idle_.push_back(std::move(connection));
}

}  // namespace tenancy::internal
