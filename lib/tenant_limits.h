// A tenant's place at the engine's Limiter: added at its first acquisition
// (so that idle tenants cost the limiter nothing), kept in step with its spec
// (limits and request rate) from then on, removed by its purge.
//
// Thread safety: as the Limiter; the ...Locked function needs the slot's mu.

#ifndef TENANCY_LIB_TENANT_LIMITS_H_
#define TENANCY_LIB_TENANT_LIMITS_H_

#include "absl/status/statusor.h"
#include "tenancy/limiter.h"
#include "tenancy/logger.h"
#include "tenant_slot.h"

namespace tenancy::internal {

// The slot's tenant at `limiter`, added (with the spec's limits and rate) on
// first use. NOT_FOUND (kTenantDeleted) for a purged tenant.
absl::StatusOr<LimiterTenant*> LimiterTenantOf(TenantSlot& slot, Limiter& limiter, Logger& logger);

// Pushes the spec's limits and rate to the slot's limiter tenant, if it has
// one yet. A refusal (a full class table) is logged; the previous limits stay.
void ApplyLimitsLocked(TenantSlot& slot, Limiter& limiter, Logger& logger)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);

// The limits in force for the slot: the limiter's defaults overlaid with the
// spec's.
ConcurrencyLimits EffectiveLimits(const TenantSlot& slot, const Limiter& limiter);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_TENANT_LIMITS_H_
