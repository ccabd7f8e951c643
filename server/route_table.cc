#include "route_table.h"

#include "request_target.h"
#include "tenancy/tenant.h"
#include "text.h"

namespace tenancy::internal {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool Fail(HttpError* error, int status, std::string_view code,
          std::string message) {
  *error = MakeHttpError(status, code, std::move(message));
  return false;
}

bool NoRoute(HttpError* error) {
  return Fail(error, 404, "not_found", "no such route");
}

bool WrongMethod(HttpError* error, std::string_view allow) {
  *error = MakeHttpError(405, "method_not_allowed",
                         Cat("method not allowed; allowed: ", allow));
  error->allow = std::string(allow);
  return false;
}

// Decodes one path segment that names a tenant and checks it is a valid id.
bool DecodeTenantId(std::string_view raw, std::string* id, HttpError* error) {
  auto decoded = PercentDecode(raw, /*plus_is_space=*/false);
  if (!decoded.ok()) {
    return Fail(error, 400, "invalid_argument", "bad percent-escape in tenant id");
  }
  absl::Status valid = ValidateTenantId(*decoded);
  if (!valid.ok()) {
    return Fail(error, 400, "invalid_argument", std::string(valid.message()));
  }
  *id = std::move(*decoded);
  return true;
}

bool Is(std::string_view method, std::string_view want) { return method == want; }
bool IsGet(std::string_view method) { return method == "GET" || method == "HEAD"; }

// /v1/cache/{key}: GET, PUT, DELETE; POST /v1/cache/{key}/incr. The key is
// everything after "/v1/cache/" (a '/' in it may be raw or %2F), except that
// a POST's trailing "/incr" names the operation.
bool MatchCache(std::string_view method, std::string_view rest, RouteMatch* m,
                HttpError* error) {
  constexpr std::string_view kIncr = "/incr";
  std::string_view raw_key = rest;
  if (Is(method, "POST")) {
    if (rest.size() < kIncr.size() ||
        rest.substr(rest.size() - kIncr.size()) != kIncr) {
      return WrongMethod(error, "GET, HEAD, PUT, DELETE");
    }
    raw_key = rest.substr(0, rest.size() - kIncr.size());
    m->id = RouteId::kCacheIncr;
  } else if (IsGet(method)) {
    m->id = RouteId::kCacheGet;
  } else if (Is(method, "PUT")) {
    m->id = RouteId::kCachePut;
  } else if (Is(method, "DELETE")) {
    m->id = RouteId::kCacheDelete;
  } else {
    return WrongMethod(error, "GET, HEAD, PUT, DELETE");
  }
  auto key = PercentDecode(raw_key, /*plus_is_space=*/false);
  if (!key.ok()) {
    return Fail(error, 400, "invalid_argument", "bad percent-escape in key");
  }
  m->key = std::move(*key);
  return true;
}

// /v1/jobs/claim, /v1/jobs/{id}, /v1/jobs/{id}/ack, /v1/jobs/{id}/nack.
bool MatchJob(std::string_view method, std::string_view rest, RouteMatch* m,
              HttpError* error) {
  if (rest == "claim") {
    if (!Is(method, "POST")) return WrongMethod(error, "POST");
    m->id = RouteId::kJobClaim;
    return true;
  }
  const size_t slash = rest.find('/');
  const std::string_view raw_id = rest.substr(0, slash);
  const std::string_view sub =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (raw_id.empty()) return NoRoute(error);
  if (sub.empty()) {
    if (!IsGet(method)) return WrongMethod(error, "GET, HEAD");
    m->id = RouteId::kJobGet;
  } else if (sub == "/ack" || sub == "/nack") {
    if (!Is(method, "POST")) return WrongMethod(error, "POST");
    m->id = sub == "/ack" ? RouteId::kJobAck : RouteId::kJobNack;
  } else {
    return NoRoute(error);
  }
  auto id = PercentDecode(raw_id, /*plus_is_space=*/false);
  if (!id.ok()) {
    return Fail(error, 400, "invalid_argument", "bad percent-escape in job id");
  }
  m->job_id = std::move(*id);
  return true;
}

bool MatchV1(std::string_view method, std::string_view path, RouteMatch* m,
             HttpError* error) {
  if (path == "/v1/kv") {
    if (!IsGet(method)) return WrongMethod(error, "GET, HEAD");
    m->id = RouteId::kKvScan;
    return true;
  }
  if (StartsWith(path, "/v1/kv/")) {
    auto key = PercentDecode(path.substr(7), /*plus_is_space=*/false);
    if (!key.ok()) {
      return Fail(error, 400, "invalid_argument", "bad percent-escape in key");
    }
    if (IsGet(method)) {
      m->id = RouteId::kKvGet;
    } else if (Is(method, "PUT")) {
      m->id = RouteId::kKvPut;
    } else if (Is(method, "DELETE")) {
      m->id = RouteId::kKvDelete;
    } else {
      return WrongMethod(error, "GET, HEAD, PUT, DELETE");
    }
    m->key = std::move(*key);
    return true;
  }
  if (path == "/v1/batch") {
    if (!Is(method, "POST")) return WrongMethod(error, "POST");
    m->id = RouteId::kBatch;
    return true;
  }
  if (path == "/v1/usage") {
    if (!IsGet(method)) return WrongMethod(error, "GET, HEAD");
    m->id = RouteId::kUsage;
    return true;
  }
  if (StartsWith(path, "/v1/cache/")) {
    return MatchCache(method, path.substr(10), m, error);
  }
  if (path == "/v1/jobs") {
    if (!Is(method, "POST")) return WrongMethod(error, "POST");
    m->id = RouteId::kJobEnqueue;
    return true;
  }
  if (StartsWith(path, "/v1/jobs/")) {
    return MatchJob(method, path.substr(9), m, error);
  }
  return NoRoute(error);
}

bool MatchAdmin(std::string_view method, std::string_view path, RouteMatch* m,
                HttpError* error) {
  if (path == "/admin/tenants") {
    if (IsGet(method)) {
      m->id = RouteId::kAdminListTenants;
    } else if (Is(method, "POST")) {
      m->id = RouteId::kAdminCreateTenant;
    } else {
      return WrongMethod(error, "GET, HEAD, POST");
    }
    return true;
  }
  if (!StartsWith(path, "/admin/tenants/")) return NoRoute(error);
  std::string_view rest = path.substr(15);
  size_t slash = rest.find('/');
  std::string_view raw_id = rest.substr(0, slash);
  std::string_view sub =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (!DecodeTenantId(raw_id, &m->admin_tenant, error)) return false;
  if (sub.empty()) {
    if (IsGet(method)) {
      m->id = RouteId::kAdminGetTenant;
    } else if (Is(method, "PUT")) {
      m->id = RouteId::kAdminPutTenant;
    } else if (Is(method, "DELETE")) {
      m->id = RouteId::kAdminDisableTenant;
    } else {
      return WrongMethod(error, "GET, HEAD, PUT, DELETE");
    }
    return true;
  }
  if (sub == "/enable" || sub == "/purge") {
    if (!Is(method, "POST")) return WrongMethod(error, "POST");
    m->id = sub == "/enable" ? RouteId::kAdminEnableTenant
                             : RouteId::kAdminPurgeTenant;
    return true;
  }
  if (sub == "/stats") {
    if (!IsGet(method)) return WrongMethod(error, "GET, HEAD");
    m->id = RouteId::kAdminStats;
    return true;
  }
  if (sub == "/keys") {
    if (IsGet(method)) {
      m->id = RouteId::kAdminListKeys;
    } else if (Is(method, "POST")) {
      m->id = RouteId::kAdminCreateKey;
    } else {
      return WrongMethod(error, "GET, HEAD, POST");
    }
    return true;
  }
  if (StartsWith(sub, "/keys/") && sub.size() > 6 &&
      sub.find('/', 6) == std::string_view::npos) {
    if (!Is(method, "DELETE")) return WrongMethod(error, "DELETE");
    auto key_id = PercentDecode(sub.substr(6), /*plus_is_space=*/false);
    if (!key_id.ok()) {
      return Fail(error, 400, "invalid_argument", "bad percent-escape in key id");
    }
    m->key_id = std::move(*key_id);
    m->id = RouteId::kAdminRevokeKey;
    return true;
  }
  return NoRoute(error);
}

}  // namespace

std::string_view RouteName(RouteId id) {
  switch (id) {
    case RouteId::kHealth: return "health";
    case RouteId::kVersion: return "version";
    case RouteId::kKvGet: return "kv_get";
    case RouteId::kKvPut: return "kv_put";
    case RouteId::kKvDelete: return "kv_delete";
    case RouteId::kKvScan: return "kv_scan";
    case RouteId::kBatch: return "batch";
    case RouteId::kUsage: return "usage";
    case RouteId::kCacheGet: return "cache_get";
    case RouteId::kCachePut: return "cache_put";
    case RouteId::kCacheDelete: return "cache_delete";
    case RouteId::kCacheIncr: return "cache_incr";
    case RouteId::kJobEnqueue: return "job_enqueue";
    case RouteId::kJobClaim: return "job_claim";
    case RouteId::kJobAck: return "job_ack";
    case RouteId::kJobNack: return "job_nack";
    case RouteId::kJobGet: return "job_get";
    case RouteId::kAdminListTenants: return "admin_list_tenants";
    case RouteId::kAdminCreateTenant: return "admin_create_tenant";
    case RouteId::kAdminGetTenant: return "admin_get_tenant";
    case RouteId::kAdminPutTenant: return "admin_put_tenant";
    case RouteId::kAdminDisableTenant: return "admin_disable_tenant";
    case RouteId::kAdminEnableTenant: return "admin_enable_tenant";
    case RouteId::kAdminPurgeTenant: return "admin_purge_tenant";
    case RouteId::kAdminListKeys: return "admin_list_keys";
    case RouteId::kAdminCreateKey: return "admin_create_key";
    case RouteId::kAdminRevokeKey: return "admin_revoke_key";
    case RouteId::kAdminStats: return "admin_stats";
    case RouteId::kMetrics: return "metrics";
    case RouteId::kUnmatched: return "unmatched";
  }
  return "unmatched";
}

RouteKind KindOf(RouteId id) {
  switch (id) {
    case RouteId::kHealth:
    case RouteId::kVersion:
    case RouteId::kUnmatched:
      return RouteKind::kPublic;
    case RouteId::kKvGet:
    case RouteId::kKvPut:
    case RouteId::kKvDelete:
    case RouteId::kKvScan:
    case RouteId::kBatch:
    case RouteId::kUsage:
    case RouteId::kCacheGet:
    case RouteId::kCachePut:
    case RouteId::kCacheDelete:
    case RouteId::kCacheIncr:
    case RouteId::kJobEnqueue:
    case RouteId::kJobClaim:
    case RouteId::kJobAck:
    case RouteId::kJobNack:
    case RouteId::kJobGet:
      return RouteKind::kTenant;
    default:
      return RouteKind::kAdmin;
  }
}

bool RouteTakesBody(RouteId id) {
  switch (id) {
    case RouteId::kKvPut:
    case RouteId::kBatch:
    case RouteId::kCachePut:
    case RouteId::kJobEnqueue:
    case RouteId::kJobAck:
    case RouteId::kJobNack:
    case RouteId::kAdminCreateTenant:
    case RouteId::kAdminPutTenant:
      return true;
    default:
      return false;
  }
}

bool RouteTakesJson(RouteId id) {
  return RouteTakesBody(id) && id != RouteId::kKvPut &&
         id != RouteId::kCachePut;
}

bool MatchRoute(std::string_view method, std::string_view target,
                RouteMatch* m, HttpError* error) {
  SplitTarget split = SplitRequestTarget(target);
  std::string_view path = split.path;
  m->query = split.query;
  if (path.empty() || path[0] != '/') {
    return Fail(error, 400, "invalid_argument",
                "the request target must be an absolute path");
  }
  if (StartsWith(path, "/t/")) {
    std::string_view rest = path.substr(3);
    size_t slash = rest.find('/');
    if (!DecodeTenantId(rest.substr(0, slash), &m->tenant, error)) return false;
    m->tenant_prefix = true;
    path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (path == "/health") {
      if (!IsGet(method)) return WrongMethod(error, "GET, HEAD");
      m->id = RouteId::kHealth;
      return true;
    }
    if (StartsWith(path, "/v1/") || path == "/v1") return MatchV1(method, path, m, error);
    return NoRoute(error);
  }
  if (path == "/health" || path == "/version" || path == "/metrics") {
    if (!IsGet(method)) return WrongMethod(error, "GET, HEAD");
    m->id = path == "/health"    ? RouteId::kHealth
            : path == "/version" ? RouteId::kVersion
                                 : RouteId::kMetrics;
    return true;
  }
  if (StartsWith(path, "/v1/")) return MatchV1(method, path, m, error);
  if (StartsWith(path, "/admin/")) return MatchAdmin(method, path, m, error);
  return NoRoute(error);
}

}  // namespace tenancy::internal
