// The routes of API.md, matched on the raw request target.
//
// Matching is done by hand rather than with httplib's std::regex routes: it
// must see the raw, still percent-encoded path (a key may contain "%2F"), it
// runs before the body is read (in the pre-routing handler), and it is on the
// hot path of every request.
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_SERVER_ROUTE_TABLE_H_
#define TENANCY_SERVER_ROUTE_TABLE_H_

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
  kJobEnqueue,
  kJobClaim,
  kJobAck,
  kJobNack,
  kJobGet,
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
  kMetrics,
  kUnmatched,  // 404/405/400 before any route: for metrics only
};
inline constexpr int kNumRoutes = static_cast<int>(RouteId::kUnmatched) + 1;

enum class RouteKind {
  kPublic,  // no credentials
  kTenant,  // acts on one tenant (auth mode decides which)
  kAdmin,   // admin key
};

// Short lower_snake_case name ("kv_get"), for metrics labels.
std::string_view RouteName(RouteId id);
RouteKind KindOf(RouteId id);
// The route takes a request body (PUT /v1/kv, PUT /v1/cache, POST
// /v1/batch, the job writes, admin writes).
bool RouteTakesBody(RouteId id);
// The body is JSON (everything but the raw values of PUT /v1/kv and PUT
// /v1/cache).
bool RouteTakesJson(RouteId id);

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
  // /admin/tenants/{id}...: the decoded, valid id.
  std::string admin_tenant;
  // /admin/tenants/{id}/keys/{key_id}: the decoded key id.
  std::string key_id;
  // The raw query string (without '?').
  std::string_view query;
  // Intentionally copyable.
};

// Matches `method` and the raw request `target`. On failure returns false and
// sets *error: 404 not_found (no such route), 405 method_not_allowed (with
// error->allow), 400 invalid_argument (a bad tenant id or percent-escape).
// HEAD is accepted wherever GET is.
bool MatchRoute(std::string_view method, std::string_view target,
                RouteMatch* match, HttpError* error);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ROUTE_TABLE_H_
