// HttpServer: tenancyd's HTTP front end over one Engine. It binds, serves the
// routes of server/README.md on its own threads, and drains on Shutdown().
// Everything it does goes through the library's public API; the server adds
// framing, authentication, admission (limits), JSON and the Status->HTTP
// mapping.
//
//   tenancy::ServerOptions options;
//   options.port = 0;                        // any free port
//   options.admin_key = "s3cret";
//   auto server = tenancy::HttpServer::Start(options, engine.get());
//   if (!server.ok()) ...;
//   int port = (*server)->port();
//   ...
//   (*server)->Shutdown();                   // finishes requests in flight
//
// Thread safety: port(), host() and metrics() are safe from any thread;
// Shutdown() may be called from any one thread (it is idempotent).
// REQUIRES: the Engine outlives the HttpServer.

#ifndef TENANCY_SERVER_HTTP_SERVER_H_
#define TENANCY_SERVER_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "http_transport.h"
#include "tenancy/engine.h"
#include "tenancy/logger.h"
#include "tenancy/metrics.h"

namespace tenancy {

namespace internal {
class Admission;
class ClusterDirectory;
class TenantMover;
class Router;
class ServerMetrics;
}  // namespace internal

// How a tenant request finds its tenant (server/README.md, "Which tenant a
// request acts on").
enum class AuthMode {
  // "Authorization: Bearer <api key>" decides; /t/{id}/ or X-Tenant-ID naming
  // another tenant is 403. The admin key may act on any tenant via /t/{id}/.
  kApiKey,
  // Behind a gateway that authenticated the caller: /t/{id}/, else
  // X-Tenant-ID, else the Host's subdomain (host_suffix), else
  // default_tenant.
  kTrusted,
};

struct ServerOptions {
  // Behavior

  // Address to listen on. Default: 127.0.0.1:8080; port 0 picks a free port.
  std::string host = "127.0.0.1";
  int port = 8080;
  // Default: kApiKey.
  AuthMode auth = AuthMode::kApiKey;
  // The admin key (X-Admin-Key or Authorization: Bearer). Compared in
  // constant time (SHA-256 digests, CRYPTO_memcmp). Empty: every admin route
  // refuses with 403, and the log says why. Default: empty.
  std::string admin_key;
  // Trusted mode: the tenant of requests that name none, created at start
  // when it does not exist (logged; an existing one, even disabled, is left
  // as it is). Default: "default".
  std::string default_tenant = "default";
  // The headers that name a tenant (case-insensitive HTTP field names). In
  // trusted mode they decide; in api-key mode one naming another tenant than
  // the key's is 403. Two of them naming different tenants is 400.
  // Default: {"X-Tenant-ID"}.
  std::vector<std::string> tenant_headers = {"X-Tenant-ID"};
  // Trusted mode: "Host: acme.<host_suffix>" is tenant "acme". Default: empty
  // (the Host header is not used).
  std::string host_suffix;
  // GET /metrics without the admin key. Default: false.
  bool metrics_public = false;
  // Cluster mode (tenancyd --cluster-etcd): the node's directory of the
  // cluster (lib/cluster/cluster_directory.h). Registry changes of the admin
  // API go through it to etcd, and a tenant request for a tenant another
  // node owns is forwarded there. Requires auth kApiKey. Default (nullptr):
  // a node alone. REQUIRES: outlives the server.
  internal::ClusterDirectory* cluster = nullptr;
  // Cluster mode: moves tenants from this node and receives them
  // (lib/cluster/tenant_mover.h; POST /admin/tenants/{id}/move). Required
  // with `cluster`. REQUIRES: outlives the server.
  internal::TenantMover* mover = nullptr;
  // Where the server logs (refusals of the admin API, internal errors).
  // Default (nullptr): the engine's logger.
  std::shared_ptr<Logger> logger;

  // Performance

  // Worker threads running requests. Default: 8.
  int threads = 8;

  // Limits

  // Largest JSON request body (POST /v1/batch, admin routes), in bytes; more
  // is 413 before the body is read. Default: 8 MiB.
  size_t max_json_body_bytes = size_t{8} << 20;
  // Admin operations that move a tenant's data (export, import, backup,
  // restore, purge with an archive) running at once; more is 429
  // concurrency_limited. They run on the background workers. Default: 1.
  int max_lifecycle_operations = 1;
  // Operations in one POST /v1/batch. Default: 10,000.
  size_t max_batch_ops = 10000;
  // A scan stops adding items once its response body would pass this many
  // bytes (the cursor continues from there; at least one item is returned).
  // Default: 16 MiB.
  size_t max_scan_response_bytes = size_t{16} << 20;
  // Per-tenant concurrency of the server's limit classes (see README,
  // "Limits"): every tenant request holds a "requests" permit from its head
  // to its response (queued or running); writes hold "requests/writes",
  // scans "requests/scans" (each also holding its parent). A tenant's spec
  // "limits" override these per class. Defaults at the engine's limiter,
  // filled in at Start where the engine has none (so a tenants file or
  // EngineOptions::limiter wins). A class not given here follows the worker
  // count: requests 4 x threads, requests/writes 2 x threads,
  // requests/scans max(1, threads / 2) (32, 16 and 4 with 8 threads). How
  // many of a tenant's requests run at once is the transport's
  // max_running_per_lane (half the workers by default).
  std::map<std::string, int64_t> default_tenant_limits;
  // Concurrency of the same classes over all tenants together, filled in at
  // the engine's limiter likewise.
  // Default: empty (unlimited; the worker threads bound it anyway).
  std::map<std::string, int64_t> global_limits;

  // Connections, timeouts and request-head bounds (see http_transport.h).
  // `threads` above overrides transport.worker_threads.
  internal::TransportOptions transport;

  // Jobs (POST /v1/jobs/claim)

  // Longest wait_s a claim may ask for, in seconds; more is 400. A waiting
  // claim holds a worker thread. Must be in [0, 300] and within the engine's
  // JobQueueOptions::max_claim_wait. Default: 20 (as SQS's long polls).
  int max_claim_wait_seconds = 20;
  // Claims that may wait for a job at once, over all tenants; permit
  // requests that wait for a permit (POST /v1/permits with wait_s) count
  // here too. A claim that finds no job (a permit request that finds no free
  // permit) while every slot is taken answers 429 concurrency_limited
  // (Retry-After: 1) instead of waiting, so that waiting requests never hold
  // every worker. Must be < threads. -1: threads / 2 (so with one thread no
  // request waits). Default: -1.
  int max_waiting_claims = -1;
  // The same per tenant, so that one tenant's pollers cannot take every
  // slot. -1: max(1, max_waiting_claims / 2). Default: -1.
  int max_waiting_claims_per_tenant = -1;
};

class HttpServer {
 public:
  // Binds options.host:options.port and starts serving.
  // INVALID_ARGUMENT for bad options; UNAVAILABLE if the address is taken.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(ServerOptions options, Engine* engine);

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Shuts down if still running.
  ~HttpServer();

  // The port bound (useful with port 0).
  int port() const { return port_; }
  const std::string& host() const { return options_.host; }

  // Stops accepting, finishes the requests already received, closes every
  // connection and joins every thread. Does not flush the engine (the owner
  // of the Engine does). Idempotent.
  void Shutdown();

  // The server's metrics registry (what GET /metrics exposes).
  Metrics& metrics();

 private:
  explicit HttpServer(ServerOptions options);

  // Constant after Start.
  const ServerOptions options_;
  int port_ = 0;
  std::unique_ptr<internal::Admission> admission_;
  std::unique_ptr<internal::ServerMetrics> metrics_;
  std::unique_ptr<internal::Router> router_;
  // Destroyed first: no request runs once it is gone.
  std::unique_ptr<internal::HttpTransport> transport_;
};

}  // namespace tenancy

#endif  // TENANCY_SERVER_HTTP_SERVER_H_
