// Forwarder: sends a tenant request that arrived at this node on to the node
// that owns the tenant (cluster mode, --cluster-etcd), and brings its answer
// back. One keep-alive connection pool per peer (HttpClientPool), made when
// the peer is first needed.
//
// The caller's credentials were checked here, where the request arrived, and
// are not sent on: the forwarded request names its tenant in
// kForwardedTenantHeader and proves it comes from a node of the cluster with
// the cluster's secret in kForwardedSecretHeader. The owner trusts such a
// request without credentials of its own, serves it only if it owns the
// tenant, and never forwards it again (503 instead), so a forwarding loop
// cannot happen, even while nodes disagree about a placement.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_SERVER_FORWARDER_H_
#define TENANCY_SERVER_FORWARDER_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "http_client_pool.h"
#include "http_transport.h"
#include "peer_protocol.h"

namespace tenancy::internal {

// A request on its way to the owner.
struct ForwardedRequest {
  std::string_view method;
  std::string_view target;  // the raw target, as it arrived
  std::string_view tenant;
  std::string_view content_type;  // empty: none
  std::string_view body;
};

class Forwarder {
 public:
  // Long enough for the longest wait a request may ask for (a claim's or a
  // permit's wait_s, at most 300 s) and its answer.
  static constexpr std::chrono::seconds kReadTimeout{310};

  explicit Forwarder(std::string secret) : secret_(std::move(secret)) {}
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // The owner's answer (its status, headers other than framing ones, body).
  // UNAVAILABLE, with a retry-after, when the owner cannot be reached or
  // the connection broke before its answer; INVALID_ARGUMENT for a bad URL.
  absl::StatusOr<HttpResponse> Forward(std::string_view owner_url, const ForwardedRequest& request);

 private:
  absl::StatusOr<HttpClientPool*> PoolFor(std::string_view url);

  const std::string secret_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<HttpClientPool>, std::less<>> pools_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_FORWARDER_H_
