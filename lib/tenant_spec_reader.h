// The pieces of the tenant spec format (tenancy/tenant_spec_json.h) that the
// tenants file reads too, on its own FieldReader (json_reader.h).
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_LIB_TENANT_SPEC_READER_H_
#define TENANCY_LIB_TENANT_SPEC_READER_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "json_reader.h"
#include "tenancy/limiter.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

// Where a spec comes from: the tenants file reserves the label it marks its
// tenants with (ConfigFile::kManagedByLabel).
enum class SpecOrigin { kApi, kTenantsFile };

// Reads every spec field but the id (and, for the file, its keys) from `r`
// into `*spec`. The caller reads the id and calls r.Finish().
absl::Status ReadSpecFields(FieldReader& r, const ErrorBuilder& errors, SpecOrigin origin,
                            TenantSpec* spec);

// {"<class>": N}: class names by the Limiter's rule, N in [0, 1e9].
absl::StatusOr<ConcurrencyLimits> ReadLimits(simdjson::dom::object object, const Path& path,
                                             const ErrorBuilder& errors);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_TENANT_SPEC_READER_H_
