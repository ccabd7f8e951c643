// Router: serves every request tenancyd receives, in two halves.
//
// DecideHead (the transport's head handler) runs as soon as a request's head
// has arrived, before any body byte is waited for, on the thread that owns
// the connection. In order, each step may refuse:
//   1. route: MatchRoute on the raw target (404, 405, 400 bad id / escape);
//   2. framing: a Transfer-Encoding is 411; a Content-Length over the route's
//      limit is 413;
//   3. credentials: admin key for admin routes (403 when none is configured,
//      401 when missing or wrong); for tenant routes the auth mode decides
//      the tenant (401, 403, 404, 400);
//   4. tenant state: disabled 403, deleted 404, read-only 403 for writes;
//   5. admission: the tenant's limit classes and rate (429 + Retry-After).
// A refusal (or a constant answer: /health, /version) is a complete HTTP
// response the transport writes at once; an admitted request becomes a Call
// (holding its permit) that travels with the request to a worker, in the
// lane of its tenant (admin requests in the control lane; large batches and
// scans marked background), where Handle runs
//   6. the route's handler over the library's public API, with the body the
//      transport read into memory.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_SERVER_ROUTER_H_
#define TENANCY_SERVER_ROUTER_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "admin_key.h"
#include "admission.h"
#include "forwarder.h"
#include "http_server.h"
#include "http_status.h"
#include "http_transport.h"
#include "route_table.h"
#include "server_metrics.h"
#include "tenancy/engine.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

// What the server keeps per tenant for the hot path: its metric children,
// resolved once. Keyed by the tenant's internal number.
struct TenantRuntime {
  std::string id;
  TenantSeries series;
};

class Router {
 public:
  // REQUIRES: every pointer outlives the Router.
  Router(const ServerOptions& options, Engine* engine, ServerMetrics* metrics, Admission* admission,
         std::shared_ptr<Logger> logger);
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;
  ~Router();

  // The transport's head handler: steps 1-5, as soon as the head has
  // arrived. A refusal is returned as a complete HTTP response; an admitted
  // request carries its prepared Call (and permit) to the worker.
  HeadDecision DecideHead(const RequestHead& head);
  // The transport's request handler: step 6. Always answers.
  void Handle(Exchange& exchange);

  // The server is stopping: claims waiting for a job give up (answering 204)
  // within kClaimCancelPoll, so that they do not hold up the drain.
  void BeginShutdown() { stopping_.store(true); }

  struct Call;

 private:
  // Steps 1-5. nullopt: admitted.
  std::optional<HttpError> Prepare(Call& call, const RequestHead& head);
  std::optional<HttpError> AuthorizeAdmin(const RequestHead& head, RouteId route);
  std::optional<HttpError> ResolveTenant(Call& call, const RequestHead& head);
  // Cluster mode: a request forwarded by another node (its tenant and the
  // cluster's secret), and where a tenant's requests are served.
  std::optional<HttpError> AcceptForwarded(Call& call, const RequestHead& head);
  // 503 + Retry-After for a tenant request that failed because the tenant's
  // data was replaced while it ran; nullopt otherwise.
  std::optional<HttpError> ReplacedWhileRunning(const Call& call) const;
  // The cluster's secret, which every node-to-node request carries; 401
  // without it.
  std::optional<HttpError> AuthorizePeer(const RequestHead& head);
  std::optional<HttpError> PlaceCall(Call& call, const RequestHead& head);
  // A forwarded call whose tenant this node places on another node `owner`
  // (the nodes disagree until one applies a change): 503 + Retry-After, as a
  // forwarded call is never forwarded again.
  static HttpError NotForwardedAgain(std::string_view tenant, std::string_view owner);
  // Sends the call to the tenant's owner and answers with its answer.
  std::optional<HttpError> ForwardCall(Call& call);
  // The cluster's admin routes on a node alone (404); in cluster mode,
  // admin routes not served yet (501), or served by the tenant's owner only
  // (409 naming it).
  std::optional<HttpError> ClusterAdminRefusal(const Call& call) const;
  // Where the admitted request waits for a worker (step 5's result).
  Lane LaneOf(const Call& call, const RequestHead& head) const;
  std::shared_ptr<TenantRuntime> RuntimeFor(const Tenant& tenant);
  void ForgetTenant(const std::string& id, uint64_t number);
  // Step 6.
  std::optional<HttpError> Execute(Call& call);
  // Counts the request's response in the metrics.
  void Account(Call& call, int status);
  void ReplyError(Call& call, const HttpError& error);
  void LogInternal(const Call& call, const HttpError& error);

  // Tenant routes (routes_tenant.cc).
  std::optional<HttpError> KvGet(Call& call);
  std::optional<HttpError> KvPut(Call& call);
  std::optional<HttpError> KvDelete(Call& call);
  std::optional<HttpError> KvScan(Call& call);
  std::optional<HttpError> Batch(Call& call);
  std::optional<HttpError> Usage(Call& call);

  // Cache and job routes (routes_jobs_cache.cc).
  std::optional<HttpError> CacheGet(Call& call);
  std::optional<HttpError> CachePut(Call& call);
  std::optional<HttpError> CacheDelete(Call& call);
  std::optional<HttpError> CacheIncr(Call& call);
  std::optional<HttpError> CacheDeletePrefix(Call& call);
  std::optional<HttpError> JobEnqueue(Call& call);
  std::optional<HttpError> JobClaim(Call& call);
  // For a request about to wait (a claim, a permit request): a permit of
  // claim_waits_ for the call's tenant, and the lane let go of while it
  // waits; nullopt, and nothing done, when every slot for waiting is taken.
  std::optional<Permit> BeginWait(Call& call);
  std::optional<HttpError> JobAck(Call& call);
  std::optional<HttpError> JobNack(Call& call);
  std::optional<HttpError> JobGet(Call& call);

  // Leased permits of a limit class (routes_permits.cc).
  std::optional<HttpError> PermitTake(Call& call);
  std::optional<HttpError> PermitRenew(Call& call);
  std::optional<HttpError> PermitRelease(Call& call);

  // Admin routes (routes_admin.cc).
  std::optional<HttpError> AdminListTenants(Call& call);
  std::optional<HttpError> AdminCreateTenant(Call& call);
  std::optional<HttpError> AdminGetTenant(Call& call);
  std::optional<HttpError> AdminPutTenant(Call& call);
  std::optional<HttpError> AdminDisableTenant(Call& call);
  std::optional<HttpError> AdminEnableTenant(Call& call);
  std::optional<HttpError> AdminPurgeTenant(Call& call);
  std::optional<HttpError> AdminListKeys(Call& call);
  std::optional<HttpError> AdminCreateKey(Call& call);
  std::optional<HttpError> AdminRevokeKey(Call& call);
  std::optional<HttpError> AdminStats(Call& call);
  std::optional<HttpError> MetricsText(Call& call);
  // GET /admin/cluster and PUT /admin/cluster/limits (cluster mode).
  std::optional<HttpError> AdminCluster(Call& call);
  std::optional<HttpError> AdminClusterLimits(Call& call);
  // The dashboard's page, script and style (routes_dashboard.cc).
  std::optional<HttpError> AdminUi(Call& call);

  // Tenant data lifecycle (routes_lifecycle.cc).
  std::optional<HttpError> AdminExportTenant(Call& call);
  std::optional<HttpError> AdminImportTenant(Call& call);
  std::optional<HttpError> AdminRestoreTenant(Call& call);
  std::optional<HttpError> AdminCreateBackup(Call& call);
  std::optional<HttpError> AdminListBackups(Call& call);
  std::optional<HttpError> AdminDeleteBackup(Call& call);
  std::optional<HttpError> AdminListArchives(Call& call);
  std::optional<HttpError> AdminRestoreArchive(Call& call);
  // Cluster mode: POST /admin/tenants/{id}/move (run by the tenant's owner,
  // forwarded there from any node) and its receiving end on the target,
  // POST /cluster/tenants/{id}/archive.
  std::optional<HttpError> AdminMoveTenant(Call& call);
  std::optional<HttpError> ClusterReceiveArchive(Call& call);
  // POST /admin/tenants/{id}/purge?archive=true
  std::optional<HttpError> AdminArchiveAndPurge(Call& call);
  // True for a call that holds a lifecycle slot (its route's class, or a
  // purge that archives first).
  static bool IsLifecycleCall(const Call& call);
  // One of ServerOptions::max_lifecycle_operations, or 429.
  std::optional<HttpError> TakeLifecycleSlot(Call& call);

  // Constant after construction.
  const ServerOptions& options_;
  Engine* const engine_;
  ServerMetrics* const metrics_;
  Admission* const admission_;
  const std::shared_ptr<Logger> logger_;
  const AdminKey admin_key_;
  // Cluster mode (options_.cluster): the secret forwarded requests carry,
  // and the connections to the other nodes.
  const AdminKey cluster_secret_;
  const std::unique_ptr<Forwarder> forwarder_;

  // Tenant runtimes, sharded to keep the readers' lock uncontended.
  static constexpr int kShards = 16;
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<uint64_t, std::shared_ptr<TenantRuntime>> tenants ABSL_GUARDED_BY(mu);
  };
  std::array<Shard, kShards> shards_;

  // Refusals of the admin API while no key is configured are logged once.
  std::atomic<bool> logged_no_admin_key_{false};

  // Requests that may wait (a claim for a job, a permit request for a
  // permit) hold a permit of this class (kClaimWaitsClass) while they wait,
  // per tenant and in all. Constant after construction.
  LimitClass claim_waits_;
  // Lifecycle operations running (TakeLifecycleSlot).
  std::atomic<int> lifecycle_running_{0};
  // Set by BeginShutdown; waiting claims watch it (ClaimOptions::cancel).
  std::atomic<bool> stopping_{false};
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ROUTER_H_
