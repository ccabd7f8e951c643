// Tenant specs and reports in JSON, as the admin API reads and writes them
// (server/README.md, "Tenant specs").
//
// A spec:
//   {"tenant_id": "acme",                      (or "id"; optional on PUT)
//    "quota_mb": 100,                          (= quota.storage_mb)
//    "quota": {"storage_mb", "storage_bytes", "max_keys", "max_value_bytes",
//              "requests_per_second", "burst", "max_queued_jobs", "cache_mb"},
//    "limits": {"<class>": N, ...},
//    "placement": "shared" | "dedicated",
//    "enabled": true, "read_only": false,
//    "labels": {"k": "v", ...}}
// Every field is optional; an absent field takes its default (a PUT replaces
// the whole spec). Unknown fields, duplicated fields and wrong types are
// INVALID_ARGUMENT. "MB" is 2^20 bytes; fractions are allowed and rounded to
// the nearest byte.
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_SERVER_SPEC_JSON_H_
#define TENANCY_SERVER_SPEC_JSON_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "json.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

inline constexpr double kBytesPerMb = 1048576.0;

// Parses a spec. `path_id` is the id from the URL (PUT), if any: a body id
// must then agree with it. Without `path_id` the body must name the tenant.
absl::StatusOr<TenantSpec> ParseTenantSpec(simdjson::dom::object object,
                                           std::optional<std::string_view> path_id);

// RFC 3339 UTC with fractional seconds, or null for InfinitePast (never).
void WriteTime(JsonWriter& w, absl::Time t);

// {"storage_mb": x|null, "storage_bytes": n, "max_keys": n|null, ...}
void WriteQuota(JsonWriter& w, const Quota& quota);

// The full report of GET /admin/tenants/{id} and PUT: spec, state, keys,
// usage, effective limits.
void WriteTenantDetail(JsonWriter& w, const TenantInfo& info,
                       const std::map<std::string, int64_t>& effective_limits);

// One row of GET /admin/tenants.
void WriteTenantSummary(JsonWriter& w, const TenantInfo& info);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_SPEC_JSON_H_
