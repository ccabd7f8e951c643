// Adoption of a plain single-tenant RocksDB directory
// (EngineOptions::adopt_existing_data): the keys a program that is not this
// library left in the `default` column family become one tenant's key-value
// data, in place.
//
// Each batch of keys is one WriteBatch that puts them into the tenant's
// range, deletes them from `default` and carries the usage delta
// (UsageLedger::Import), so a crash at any point leaves every key in exactly
// one of the two places with usage exact, and the next Open resumes.
//
// Thread safety: for EngineParts::Open only, before the engine is handed out.

#ifndef TENANCY_LIB_ADOPTION_H_
#define TENANCY_LIB_ADOPTION_H_

#include "absl/status/status.h"

namespace tenancy::internal {

struct EngineParts;

// With options.adopt_existing_data set: validates the sizes of every key and
// value in `default` (INVALID_ARGUMENT naming the first one over a limit;
// nothing moved), creates the tenant if absent and moves the keys, logging
// progress, then reclaims the space `default` held. Without it: logs one
// warning if `default` holds any key. REQUIRES: the catalog is loaded.
absl::Status AdoptExistingData(EngineParts& parts);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_ADOPTION_H_
