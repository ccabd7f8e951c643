// The routes tenancyd serves: one table of facts per route, and the matcher
// of raw request targets.
//
// Every question the server asks about a route (its name in metrics, its
// kind of credentials, whether it takes a body and which, the limit class it
// holds, whether it changes the tenant, which methods a path allows) is
// answered from the table below, so a route is described in one place.
// server/README.md documents the same table for users; tests/reference_test.cc
// fails when the two disagree.
//
// Matching is done by hand rather than with httplib's std::regex routes: it
// must see the raw, still percent-encoded path (a key may contain "%2F"), it
// runs before the body is read (in the head handler), and it is on the hot
// path of every request. It finds the path's template ("/v1/kv/{key}"); the
// table then picks the route by method, or answers 405 with the template's
// methods.
//
// Thread safety: constant data and pure functions, safe for concurrent use.

#ifndef TENANCY_SERVER_ROUTE_TABLE_H_
#define TENANCY_SERVER_ROUTE_TABLE_H_

#include <span>
#include <string>
#include <string_view>

#include "http_status.h"

namespace tenancy::internal {

enum class RouteId : int {
  kHealth,
  kVersion,
  kKvGet,
  kKvPut,
  kKvDelete,
  kKvScan,
  kBatch,
  kUsage,
  kCacheGet,
  kCachePut,
  kCacheDelete,
  kCacheIncr,
  kCacheDeletePrefix,
  kJobEnqueue,
  kJobClaim,
  kJobAck,
  kJobNack,
  kJobGet,
  kPermitTake,
  kPermitRenew,
  kPermitRelease,
  kAdminListTenants,
  kAdminCreateTenant,
  kAdminGetTenant,
  kAdminPutTenant,
  kAdminDisableTenant,
  kAdminEnableTenant,
  kAdminPurgeTenant,
  kAdminListKeys,
  kAdminCreateKey,
  kAdminRevokeKey,
  kAdminStats,
  kAdminExportTenant,
  kAdminImportTenant,
  kAdminRestoreTenant,
  kAdminCreateBackup,
  kAdminListBackups,
  kAdminDeleteBackup,
  kAdminListArchives,
  kAdminRestoreArchive,
  kAdminUi,
  kAdminUiScript,
  kAdminUiStyle,
  kAdminCluster,
  kAdminClusterLimits,
  kAdminMoveTenant,
  kClusterReceiveArchive,
  kMetrics,
  kUnmatched,  // 404/405/400 before any route: for metrics only
};
inline constexpr int kNumRoutes = static_cast<int>(RouteId::kUnmatched) + 1;

enum class RouteKind {
  kPublic,  // no credentials (the dashboard's files are public: they hold no data)
  kTenant,  // acts on one tenant (auth mode decides which)
  kAdmin,   // admin key
  kPeer,    // another node of the cluster: the cluster's secret (cluster mode only)
};

enum class BodyKind {
  kNone,    // no body is read (one that is sent closes the connection after)
  kRaw,     // value bytes, up to EngineOptions::max_value_bytes
  kJson,    // a JSON document, up to ServerOptions::max_json_body_bytes
  kStream,  // read by the handler as it goes (an archive), never whole in memory
};

// The limit classes a tenant request holds from its head to its response
// (admission.h has their names and defaults); and kLifecycle, the server's
// slots for admin routes that move a tenant's data (export, import, backup,
// restore, archive), so that they cannot take every worker
// (ServerOptions::max_lifecycle_operations).
enum class LimitClassId { kRequests, kWrites, kScans, kLifecycle };
// The tenant classes (the first three).
inline constexpr int kNumLimitClasses = 3;

// The facts of one route. Intentionally copyable.
struct RouteInfo {
  RouteId id;
  // Short lower_snake_case name ("kv_get"), for metrics labels and logs.
  std::string_view name;
  // The method that selects the route; a GET route answers HEAD too.
  std::string_view method;
  // The path as server/README.md writes it ("/v1/kv/{key}"). Tenant routes
  // and /health are also served under /t/{id}/.
  std::string_view path;
  RouteKind kind;
  BodyKind body;
  // Tenant routes: the class of permit held (kRequests for other kinds).
  LimitClassId limit_class;
  // Changes the tenant's data or jobs: refused for a read-only tenant.
  bool is_write;
};

// Every route the server serves, in RouteId order (kUnmatched excluded).
std::span<const RouteInfo> Routes();
// The facts of `id`; for kUnmatched a public route with no method or path.
const RouteInfo& RouteInfoOf(RouteId id);

// Shorthands for the facts asked on every request.
inline std::string_view RouteName(RouteId id) { return RouteInfoOf(id).name; }
inline RouteKind KindOf(RouteId id) { return RouteInfoOf(id).kind; }
inline bool RouteTakesBody(RouteId id) { return RouteInfoOf(id).body != BodyKind::kNone; }
inline bool RouteTakesJson(RouteId id) { return RouteInfoOf(id).body == BodyKind::kJson; }
inline bool IsWriteRoute(RouteId id) { return RouteInfoOf(id).is_write; }

struct RouteMatch {
  RouteId id = RouteId::kUnmatched;
  // The request came as /t/{id}/...; `tenant` is the decoded, valid id.
  bool tenant_prefix = false;
  std::string tenant;
  // kv and cache routes: the key, percent-decoded from the path (may be
  // empty).
  std::string key;
  // /v1/jobs/{id}...: the job id, percent-decoded (the library checks it).
  std::string job_id;
  // /v1/permits/{permit}...: the permit's token, percent-decoded (the library
  // checks it).
  std::string permit;
  // /admin/tenants/{id}..., /cluster/tenants/{id}/...: the decoded, valid id.
  std::string admin_tenant;
  // /admin/tenants/{id}/keys/{key_id}: the decoded key id.
  std::string key_id;
  // /admin/backups/{backup_id}, /admin/archives/{name}/restore: decoded.
  std::string backup_id;
  std::string archive;
  // The raw query string (without '?').
  std::string_view query;
  // Intentionally copyable.
};

// Matches `method` and the raw request `target`. On failure returns false and
// sets *error: 404 not_found (no such route), 405 method_not_allowed (with
// error->allow, the methods of the path's routes), 400 invalid_argument (a
// bad tenant id or percent-escape). HEAD is accepted wherever GET is.
bool MatchRoute(std::string_view method, std::string_view target, RouteMatch* match,
                HttpError* error);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ROUTE_TABLE_H_
