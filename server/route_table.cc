#include "route_table.h"

#include "request_target.h"
#include "str_cat.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {
namespace {

using enum BodyKind;
using enum LimitClassId;
using enum RouteKind;
using R = RouteId;

// Indexed by RouteId. A write holds the writes class (a claim too: it
// changes the job it leases); the scan holds the scans class. Permit routes
// change no data of the tenant (a read-only tenant may take permits).
// clang-format off
// Columns in RouteInfo order: id, name, method, path, kind, body, limit
// class, is write.
constexpr RouteInfo kRoutes[kNumRoutes] = {
    {R::kHealth,              "health",                "GET",     "/health",                            kPublic,  kNone,  kRequests,  false},
    {R::kVersion,             "version",               "GET",     "/version",                           kPublic,  kNone,  kRequests,  false},
    {R::kKvGet,               "kv_get",                "GET",     "/v1/kv/{key}",                       kTenant,  kNone,  kRequests,  false},
    {R::kKvPut,               "kv_put",                "PUT",     "/v1/kv/{key}",                       kTenant,  kRaw,   kWrites,    true},
    {R::kKvDelete,            "kv_delete",             "DELETE",  "/v1/kv/{key}",                       kTenant,  kNone,  kWrites,    true},
    {R::kKvScan,              "kv_scan",               "GET",     "/v1/kv",                             kTenant,  kNone,  kScans,     false},
    {R::kBatch,               "batch",                 "POST",    "/v1/batch",                          kTenant,  kJson,  kWrites,    true},
    {R::kUsage,               "usage",                 "GET",     "/v1/usage",                          kTenant,  kNone,  kRequests,  false},
    {R::kCacheGet,            "cache_get",             "GET",     "/v1/cache/{key}",                    kTenant,  kNone,  kRequests,  false},
    {R::kCachePut,            "cache_put",             "PUT",     "/v1/cache/{key}",                    kTenant,  kRaw,   kWrites,    true},
    {R::kCacheDelete,         "cache_delete",          "DELETE",  "/v1/cache/{key}",                    kTenant,  kNone,  kWrites,    true},
    {R::kCacheIncr,           "cache_incr",            "POST",    "/v1/cache/{key}/incr",               kTenant,  kNone,  kWrites,    true},
    {R::kCacheDeletePrefix,   "cache_delete_prefix",   "DELETE",  "/v1/cache",                          kTenant,  kNone,  kWrites,    true},
    {R::kJobEnqueue,          "job_enqueue",           "POST",    "/v1/jobs",                           kTenant,  kJson,  kWrites,    true},
    {R::kJobClaim,            "job_claim",             "POST",    "/v1/jobs/claim",                     kTenant,  kNone,  kWrites,    true},
    {R::kJobAck,              "job_ack",               "POST",    "/v1/jobs/{id}/ack",                  kTenant,  kJson,  kWrites,    true},
    {R::kJobNack,             "job_nack",              "POST",    "/v1/jobs/{id}/nack",                 kTenant,  kJson,  kWrites,    true},
    {R::kJobGet,              "job_get",               "GET",     "/v1/jobs/{id}",                      kTenant,  kNone,  kRequests,  false},
    {R::kPermitTake,          "permit_take",           "POST",    "/v1/permits",                        kTenant,  kJson,  kRequests,  false},
    {R::kPermitRenew,         "permit_renew",          "POST",    "/v1/permits/{permit}/renew",         kTenant,  kJson,  kRequests,  false},
    {R::kPermitRelease,       "permit_release",        "DELETE",  "/v1/permits/{permit}",               kTenant,  kNone,  kRequests,  false},
    {R::kAdminListTenants,    "admin_list_tenants",    "GET",     "/admin/tenants",                     kAdmin,   kNone,  kRequests,  false},
    {R::kAdminCreateTenant,   "admin_create_tenant",   "POST",    "/admin/tenants",                     kAdmin,   kJson,  kRequests,  false},
    {R::kAdminGetTenant,      "admin_get_tenant",      "GET",     "/admin/tenants/{id}",                kAdmin,   kNone,  kRequests,  false},
    {R::kAdminPutTenant,      "admin_put_tenant",      "PUT",     "/admin/tenants/{id}",                kAdmin,   kJson,  kRequests,  false},
    {R::kAdminDisableTenant,  "admin_disable_tenant",  "DELETE",  "/admin/tenants/{id}",                kAdmin,   kNone,  kRequests,  false},
    {R::kAdminEnableTenant,   "admin_enable_tenant",   "POST",    "/admin/tenants/{id}/enable",         kAdmin,   kNone,  kRequests,  false},
    {R::kAdminPurgeTenant,    "admin_purge_tenant",    "POST",    "/admin/tenants/{id}/purge",          kAdmin,   kNone,  kRequests,  false},
    {R::kAdminListKeys,       "admin_list_keys",       "GET",     "/admin/tenants/{id}/keys",           kAdmin,   kNone,  kRequests,  false},
    {R::kAdminCreateKey,      "admin_create_key",      "POST",    "/admin/tenants/{id}/keys",           kAdmin,   kNone,  kRequests,  false},
    {R::kAdminRevokeKey,      "admin_revoke_key",      "DELETE",  "/admin/tenants/{id}/keys/{key_id}",  kAdmin,   kNone,  kRequests,  false},
    {R::kAdminStats,          "admin_stats",           "GET",     "/admin/tenants/{id}/stats",          kAdmin,   kNone,  kRequests,  false},
    {R::kAdminExportTenant,   "admin_export_tenant",   "GET",     "/admin/tenants/{id}/export",         kAdmin,   kNone,  kLifecycle, false},
    {R::kAdminImportTenant,   "admin_import_tenant",   "POST",    "/admin/tenants/{id}/import",         kAdmin,   kStream, kLifecycle, false},
    {R::kAdminRestoreTenant,  "admin_restore_tenant",  "POST",    "/admin/tenants/{id}/restore",        kAdmin,   kJson,  kLifecycle, false},
    {R::kAdminCreateBackup,   "admin_create_backup",   "POST",    "/admin/backups",                     kAdmin,   kNone,  kLifecycle, false},
    {R::kAdminListBackups,    "admin_list_backups",    "GET",     "/admin/backups",                     kAdmin,   kNone,  kRequests,  false},
    {R::kAdminDeleteBackup,   "admin_delete_backup",   "DELETE",  "/admin/backups/{backup_id}",         kAdmin,   kNone,  kLifecycle, false},
    {R::kAdminListArchives,   "admin_list_archives",   "GET",     "/admin/archives",                    kAdmin,   kNone,  kRequests,  false},
    {R::kAdminRestoreArchive, "admin_restore_archive", "POST",    "/admin/archives/{name}/restore",     kAdmin,   kJson,  kLifecycle, false},
    {R::kAdminUi,             "admin_ui",              "GET",     "/admin/ui",                          kPublic,  kNone,  kRequests,  false},
    {R::kAdminUiScript,       "admin_ui_script",       "GET",     "/admin/ui/app.js",                   kPublic,  kNone,  kRequests,  false},
    {R::kAdminUiStyle,        "admin_ui_style",        "GET",     "/admin/ui/app.css",                  kPublic,  kNone,  kRequests,  false},
    {R::kAdminCluster,        "admin_cluster",         "GET",     "/admin/cluster",                     kAdmin,   kNone,  kRequests,  false},
    {R::kAdminClusterLimits,  "admin_cluster_limits",  "PUT",     "/admin/cluster/limits",              kAdmin,   kJson,  kRequests,  false},
    {R::kAdminMoveTenant,     "admin_move_tenant",     "POST",    "/admin/tenants/{id}/move",           kAdmin,   kJson,  kLifecycle, false},
    {R::kClusterReceiveArchive, "cluster_receive_archive", "POST", "/cluster/tenants/{id}/archive",     kPeer,    kStream, kLifecycle, false},
    {R::kMetrics,             "metrics",               "GET",     "/metrics",                           kAdmin,   kNone,  kRequests,  false},
    {R::kUnmatched,           "unmatched",             "",        "",                                   kPublic,  kNone,  kRequests,  false},
};
// clang-format on

constexpr bool TableIsInRouteIdOrder() {
  for (int i = 0; i < kNumRoutes; ++i) {
    if (static_cast<int>(kRoutes[i].id) != i) return false;
  }
  return true;
}
static_assert(TableIsInRouteIdOrder(), "kRoutes must be indexed by RouteId");

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool Fail(HttpError* error, int status, std::string_view code, std::string message) {
  *error = MakeHttpError(status, code, std::move(message));
  return false;
}

bool NoRoute(HttpError* error) { return Fail(error, 404, "not_found", "no such route"); }

// "GET, HEAD, PUT, DELETE": the methods of the routes of `path`, in table
// order, HEAD after GET.
std::string AllowedMethods(std::string_view path) {
  std::string allow;
  for (const RouteInfo& r : Routes()) {
    if (r.path != path) continue;
    if (!allow.empty()) allow += ", ";
    allow += r.method;
    if (r.method == "GET") allow += ", HEAD";
  }
  return allow;
}

// Sets m->id to the route of `path` (a template of the table) that `method`
// selects; 405 with the template's methods when none does.
bool SelectMethod(std::string_view path, std::string_view method, RouteMatch* m, HttpError* error) {
  const std::string_view wanted = method == "HEAD" ? "GET" : method;
  for (const RouteInfo& r : Routes()) {
    if (r.path == path && r.method == wanted) {
      m->id = r.id;
      return true;
    }
  }
  std::string allow = AllowedMethods(path);
  *error = MakeHttpError(405, "method_not_allowed", StrCat("method not allowed; allowed: ", allow));
  error->allow = std::move(allow);
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

// /v1/cache/{key} and POST /v1/cache/{key}/incr. The key is everything after
// "/v1/cache/" (a '/' in it may be raw or %2F), except that a POST's trailing
// "/incr" names the operation: "GET /v1/cache/a/incr" reads key "a/incr".
bool MatchCache(std::string_view method, std::string_view rest, RouteMatch* m, HttpError* error) {
  constexpr std::string_view kIncr = "/incr";
  std::string_view raw_key = rest;
  std::string_view path = "/v1/cache/{key}";
  if (method == "POST" && rest.size() >= kIncr.size() &&
      rest.substr(rest.size() - kIncr.size()) == kIncr) {
    raw_key = rest.substr(0, rest.size() - kIncr.size());
    path = "/v1/cache/{key}/incr";
  }
  if (!SelectMethod(path, method, m, error)) return false;
  auto key = PercentDecode(raw_key, /*plus_is_space=*/false);
  if (!key.ok()) {
    return Fail(error, 400, "invalid_argument", "bad percent-escape in key");
  }
  m->key = std::move(*key);
  return true;
}

// /v1/jobs/claim, /v1/jobs/{id}, /v1/jobs/{id}/ack, /v1/jobs/{id}/nack.
bool MatchJob(std::string_view method, std::string_view rest, RouteMatch* m, HttpError* error) {
  if (rest == "claim") return SelectMethod("/v1/jobs/claim", method, m, error);
  const size_t slash = rest.find('/');
  const std::string_view raw_id = rest.substr(0, slash);
  const std::string_view sub =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (raw_id.empty()) return NoRoute(error);
  std::string_view path;
  if (sub.empty()) {
    path = "/v1/jobs/{id}";
  } else if (sub == "/ack") {
    path = "/v1/jobs/{id}/ack";
  } else if (sub == "/nack") {
    path = "/v1/jobs/{id}/nack";
  } else {
    return NoRoute(error);
  }
  if (!SelectMethod(path, method, m, error)) return false;
  auto id = PercentDecode(raw_id, /*plus_is_space=*/false);
  if (!id.ok()) {
    return Fail(error, 400, "invalid_argument", "bad percent-escape in job id");
  }
  m->job_id = std::move(*id);
  return true;
}

// /v1/permits/{permit} and /v1/permits/{permit}/renew.
bool MatchPermit(std::string_view method, std::string_view rest, RouteMatch* m, HttpError* error) {
  const size_t slash = rest.find('/');
  const std::string_view raw = rest.substr(0, slash);
  const std::string_view sub =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (raw.empty()) return NoRoute(error);
  std::string_view path;
  if (sub.empty()) {
    path = "/v1/permits/{permit}";
  } else if (sub == "/renew") {
    path = "/v1/permits/{permit}/renew";
  } else {
    return NoRoute(error);
  }
  if (!SelectMethod(path, method, m, error)) return false;
  auto permit = PercentDecode(raw, /*plus_is_space=*/false);
  if (!permit.ok()) {
    return Fail(error, 400, "invalid_argument", "bad percent-escape in permit");
  }
  m->permit = std::move(*permit);
  return true;
}

bool MatchV1(std::string_view method, std::string_view path, RouteMatch* m, HttpError* error) {
  // Paths without parameters are their own templates.
  if (path == "/v1/kv" || path == "/v1/batch" || path == "/v1/usage" || path == "/v1/jobs" ||
      path == "/v1/cache" || path == "/v1/permits") {
    return SelectMethod(path, method, m, error);
  }
  if (StartsWith(path, "/v1/kv/")) {
    auto key = PercentDecode(path.substr(7), /*plus_is_space=*/false);
    if (!key.ok()) {
      return Fail(error, 400, "invalid_argument", "bad percent-escape in key");
    }
    if (!SelectMethod("/v1/kv/{key}", method, m, error)) return false;
    m->key = std::move(*key);
    return true;
  }
  if (StartsWith(path, "/v1/cache/")) {
    return MatchCache(method, path.substr(10), m, error);
  }
  if (StartsWith(path, "/v1/jobs/")) {
    return MatchJob(method, path.substr(9), m, error);
  }
  if (StartsWith(path, "/v1/permits/")) {
    return MatchPermit(method, path.substr(12), m, error);
  }
  return NoRoute(error);
}

// /admin/backups..., /admin/archives...
bool MatchLifecycle(std::string_view method, std::string_view path, RouteMatch* m,
                    HttpError* error) {
  if (path == "/admin/backups" || path == "/admin/archives") {
    return SelectMethod(path, method, m, error);
  }
  if (StartsWith(path, "/admin/backups/") && path.size() > 15 &&
      path.find('/', 15) == std::string_view::npos) {
    if (!SelectMethod("/admin/backups/{backup_id}", method, m, error)) return false;
    auto id = PercentDecode(path.substr(15), /*plus_is_space=*/false);
    if (!id.ok()) return Fail(error, 400, "invalid_argument", "bad percent-escape in backup id");
    m->backup_id = std::move(*id);
    return true;
  }
  constexpr std::string_view kRestore = "/restore";
  if (StartsWith(path, "/admin/archives/") && path.size() > 16 + kRestore.size() &&
      path.substr(path.size() - kRestore.size()) == kRestore) {
    std::string_view name = path.substr(16, path.size() - 16 - kRestore.size());
    if (name.find('/') != std::string_view::npos) return NoRoute(error);
    if (!SelectMethod("/admin/archives/{name}/restore", method, m, error)) return false;
    auto decoded = PercentDecode(name, /*plus_is_space=*/false);
    if (!decoded.ok()) {
      return Fail(error, 400, "invalid_argument", "bad percent-escape in archive name");
    }
    m->archive = std::move(*decoded);
    return true;
  }
  return NoRoute(error);
}

bool MatchAdmin(std::string_view method, std::string_view path, RouteMatch* m, HttpError* error) {
  if (path == "/admin/tenants" || path == "/admin/ui" || path == "/admin/ui/app.js" ||
      path == "/admin/ui/app.css" || path == "/admin/cluster" || path == "/admin/cluster/limits") {
    return SelectMethod(path, method, m, error);
  }
  if (StartsWith(path, "/admin/backups") || StartsWith(path, "/admin/archives")) {
    return MatchLifecycle(method, path, m, error);
  }
  if (!StartsWith(path, "/admin/tenants/")) return NoRoute(error);
  std::string_view rest = path.substr(15);
  size_t slash = rest.find('/');
  std::string_view raw_id = rest.substr(0, slash);
  std::string_view sub = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (!DecodeTenantId(raw_id, &m->admin_tenant, error)) return false;
  if (sub.empty()) return SelectMethod("/admin/tenants/{id}", method, m, error);
  if (sub == "/enable") {
    return SelectMethod("/admin/tenants/{id}/enable", method, m, error);
  }
  if (sub == "/purge") {
    return SelectMethod("/admin/tenants/{id}/purge", method, m, error);
  }
  if (sub == "/stats") {
    return SelectMethod("/admin/tenants/{id}/stats", method, m, error);
  }
  if (sub == "/keys") {
    return SelectMethod("/admin/tenants/{id}/keys", method, m, error);
  }
  if (sub == "/export") {
    return SelectMethod("/admin/tenants/{id}/export", method, m, error);
  }
  if (sub == "/import") {
    return SelectMethod("/admin/tenants/{id}/import", method, m, error);
  }
  if (sub == "/restore") {
    return SelectMethod("/admin/tenants/{id}/restore", method, m, error);
  }
  if (sub == "/move") {
    return SelectMethod("/admin/tenants/{id}/move", method, m, error);
  }
  if (StartsWith(sub, "/keys/") && sub.size() > 6 && sub.find('/', 6) == std::string_view::npos) {
    if (!SelectMethod("/admin/tenants/{id}/keys/{key_id}", method, m, error)) {
      return false;
    }
    auto key_id = PercentDecode(sub.substr(6), /*plus_is_space=*/false);
    if (!key_id.ok()) {
      return Fail(error, 400, "invalid_argument", "bad percent-escape in key id");
    }
    m->key_id = std::move(*key_id);
    return true;
  }
  return NoRoute(error);
}

// /cluster/tenants/{id}/archive: node to node.
bool MatchPeer(std::string_view method, std::string_view path, RouteMatch* m, HttpError* error) {
  constexpr std::string_view kArchive = "/archive";
  std::string_view rest = path.substr(17);
  if (rest.size() <= kArchive.size() || rest.substr(rest.size() - kArchive.size()) != kArchive) {
    return NoRoute(error);
  }
  std::string_view raw_id = rest.substr(0, rest.size() - kArchive.size());
  if (raw_id.find('/') != std::string_view::npos) return NoRoute(error);
  if (!DecodeTenantId(raw_id, &m->admin_tenant, error)) return false;
  return SelectMethod("/cluster/tenants/{id}/archive", method, m, error);
}

}  // namespace

std::span<const RouteInfo> Routes() { return std::span<const RouteInfo>(kRoutes, kNumRoutes - 1); }

const RouteInfo& RouteInfoOf(RouteId id) {
  const int i = static_cast<int>(id);
  return kRoutes[i >= 0 && i < kNumRoutes ? i : kNumRoutes - 1];
}

bool MatchRoute(std::string_view method, std::string_view target, RouteMatch* m, HttpError* error) {
  SplitTarget split = SplitRequestTarget(target);
  std::string_view path = split.path;
  m->query = split.query;
  if (path.empty() || path[0] != '/') {
    return Fail(error, 400, "invalid_argument", "the request target must be an absolute path");
  }
  if (StartsWith(path, "/t/")) {
    std::string_view rest = path.substr(3);
    size_t slash = rest.find('/');
    if (!DecodeTenantId(rest.substr(0, slash), &m->tenant, error)) return false;
    m->tenant_prefix = true;
    path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (path == "/health") return SelectMethod(path, method, m, error);
    if (StartsWith(path, "/v1/") || path == "/v1") return MatchV1(method, path, m, error);
    return NoRoute(error);
  }
  if (path == "/health" || path == "/version" || path == "/metrics") {
    return SelectMethod(path, method, m, error);
  }
  if (StartsWith(path, "/v1/")) return MatchV1(method, path, m, error);
  if (StartsWith(path, "/admin/")) return MatchAdmin(method, path, m, error);
  if (StartsWith(path, "/cluster/tenants/")) return MatchPeer(method, path, m, error);
  return NoRoute(error);
}

}  // namespace tenancy::internal
