// Tenant specs in JSON: the one strict reader of the format the admin API of
// tenancyd and the tenants file (tenancy/config_file.h) both use.
//
//   {"tenant_id": "acme",                      ("id" is an alias)
//    "quota_mb": 100,                          (= quota.storage_mb)
//    "quota": {"storage_mb" | "storage_bytes", "max_keys", "max_value_bytes",
//              "requests_per_second", "burst", "max_queued_jobs",
//              "cache_mb" | "cache_bytes"},
//    "limits": {"<class>": N, ...},            (N in [0, 1e9])
//    "placement": "shared" | "dedicated",
//    "enabled": true, "read_only": false,
//    "labels": {"k": "v", ...}}
//
// Every field but the id is optional; an absent field takes its TenantSpec
// default (so a spec read this way replaces a whole spec). "MB" is 2^20
// bytes; fractions are allowed and rounded to the nearest byte. Unknown
// fields, fields given twice, wrong types, bad ids, limit class names the
// Limiter refuses (Limiter::ValidateClassName), negative numbers and values
// over their range are INVALID_ARGUMENT with the field's path ("quota.
// storage_mb: must be a non-negative number"); a value over 2^63-1 is
// refused by the registry too. Strict rather than lenient: a misspelt field
// ("quota_gb") silently ignored would leave a tenant with a limit nobody
// meant.
//
// TenantSpecToJson writes a spec in the same format, every field given, so
// that ParseTenantSpecJson reads back an equal spec (a cluster's nodes keep
// specs in its registry this way, tenancy/cluster: byte counts are written
// as "storage_bytes" and "cache_bytes", rates with every digit they need).
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_TENANT_SPEC_JSON_H_
#define TENANCY_TENANT_SPEC_JSON_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tenancy/tenant.h"

namespace tenancy {

// Reads a spec from `json` (an empty text reads as {}). `id`, when given, is
// the tenant the caller addresses (a URL's id): the body may then leave the
// id out, and one it names must agree. Without `id` the body must name the
// tenant. INVALID_ARGUMENT as above.
absl::StatusOr<TenantSpec> ParseTenantSpecJson(std::string_view json,
                                               std::optional<std::string_view> id = std::nullopt);

// The spec as one JSON object, every field given; ParseTenantSpecJson of the
// result equals `spec` (for a spec the registry accepts).
std::string TenantSpecToJson(const TenantSpec& spec);

}  // namespace tenancy

#endif  // TENANCY_TENANT_SPEC_JSON_H_
