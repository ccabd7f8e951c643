// Writes a TenantSpec back as the JSON the spec reader takes, so that the
// fuzzers can check that what ParseTenantSpecJson and ParseTenantsFile accept
// reads back the same (exact byte counts, never "_mb" fractions).

#ifndef TENANCY_TESTS_FUZZ_SPEC_WRITER_H_
#define TENANCY_TESTS_FUZZ_SPEC_WRITER_H_

#include "json.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

// The fields of `spec` as members of the object `w` is writing.
inline void WriteSpecFields(JsonWriter& w, const TenantSpec& spec) {
  w.Key("tenant_id").String(spec.id);
  w.Key("quota").BeginObject();
  w.Key("storage_bytes").Uint(spec.quota.storage_bytes);
  w.Key("max_keys").Uint(spec.quota.max_keys);
  w.Key("max_value_bytes").Uint(spec.quota.max_value_bytes);
  w.Key("requests_per_second").Double(spec.quota.requests_per_second);
  w.Key("burst").Double(spec.quota.burst);
  w.Key("max_queued_jobs").Uint(spec.quota.max_queued_jobs);
  w.Key("cache_bytes").Uint(spec.quota.cache_bytes);
  w.EndObject();
  w.Key("limits").BeginObject();
  for (const auto& [name, limit] : spec.limits) w.Key(name).Int(limit);
  w.EndObject();
  w.Key("placement").String(spec.placement == Placement::kShared ? "shared" : "dedicated");
  w.Key("enabled").Bool(spec.enabled);
  w.Key("read_only").Bool(spec.read_only);
  w.Key("labels").BeginObject();
  for (const auto& [name, value] : spec.labels) w.Key(name).String(value);
  w.EndObject();
}

}  // namespace tenancy::internal

#endif  // TENANCY_TESTS_FUZZ_SPEC_WRITER_H_
