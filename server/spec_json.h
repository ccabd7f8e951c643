// Tenant reports in JSON, as the admin API writes them (specs are read by the
// library: tenancy/tenant_spec_json.h).
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
