#include "forwarder.h"

#include "str_cat.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

// Framing is the transport's, on each hop.
bool IsHopByHop(std::string_view name) {
  auto equals = [&](std::string_view other) {
    if (name.size() != other.size()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
      char a = name[i], b = other[i];
      if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
      if (a != b) return false;
    }
    return true;
  };
  return equals("connection") || equals("keep-alive") || equals("content-length") ||
         equals("transfer-encoding");
}

}  // namespace

absl::StatusOr<HttpClientPool*> Forwarder::PoolFor(std::string_view url) {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(url);
  if (it != pools_.end()) return it->second.get();
  absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return parsed.status();
  auto pool = std::make_unique<HttpClientPool>(*std::move(parsed),
                                               HttpClientPoolOptions{.read_timeout = kReadTimeout});
  HttpClientPool* out = pool.get();
  pools_.emplace(std::string(url), std::move(pool));
  return out;
}

absl::StatusOr<HttpResponse> Forwarder::Forward(std::string_view owner_url,
                                                const ForwardedRequest& request) {
  absl::StatusOr<HttpClientPool*> pool = PoolFor(owner_url);
  if (!pool.ok()) return pool.status();
  httplib::Request req;
  // A HEAD goes on as a GET: this node's transport sends the head alone, with
  // the length of the body the owner gave.
  req.method = request.method == "HEAD" ? "GET" : std::string(request.method);
  req.path = std::string(request.target);
  req.set_header(std::string(kForwardedTenantHeader), std::string(request.tenant));
  req.set_header(std::string(kForwardedSecretHeader), secret_);
  if (!request.content_type.empty()) {
    req.set_header("Content-Type", std::string(request.content_type));
  }
  req.body = std::string(request.body);
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  HttpClientPool::Lease client = (*pool)->Acquire();
  if (!client.Send(req, res, error)) {
    return WithRetryAfter(
        absl::UnavailableError(StrCat("the tenant's node at ", owner_url, " cannot be reached (",
                                      httplib::to_string(error), ")")),
        std::chrono::seconds(1));
  }
  HttpResponse out;
  out.status = res.status;
  out.body = std::move(res.body);
  for (const auto& [name, value] : res.headers) {
    if (!IsHopByHop(name)) out.set_header(name, value);
  }
  return out;
}

}  // namespace tenancy::internal
