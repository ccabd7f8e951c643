#include "tenant_limits.h"

#include <algorithm>
#include <string>

#include "str_cat.h"
#include "tenancy/status.h"

namespace tenancy::internal {

void ApplyLimitsLocked(TenantSlot& slot, Limiter& limiter, Logger& logger) {
  if (slot.limiter_handle == nullptr) return;
  const Quota& quota = slot.spec.quota;
  RateLimits rates;
  if (quota.requests_per_second > 0) {
    // Quota::burst 0 means max(1, rate); a bucket holds at least one token.
    const double burst = quota.burst > 0 ? quota.burst : std::max(1.0, quota.requests_per_second);
    rates[std::string(kAllClasses)] = RateLimit{quota.requests_per_second, std::max(1.0, burst)};
  }
  // ValidateSpec admitted these, so only a full class table (4096 names) or a
  // concurrent purge can refuse them; the previous limits then stay in force.
  absl::Status limits = limiter.SetTenantLimits(slot.id, slot.spec.limits);
  absl::Status rate = limiter.SetTenantRates(slot.id, rates);
  if (!limits.ok() || !rate.ok()) {
    logger.Log(LogLevel::kWarning, StrCat("tenant \"", slot.id, "\": limits not applied: ",
                                          (!limits.ok() ? limits : rate).message()));
  }
}

absl::StatusOr<LimiterTenant*> LimiterTenantOf(TenantSlot& slot, Limiter& limiter, Logger& logger) {
  LimiterTenant* tenant = slot.limiter_tenant.load(std::memory_order_acquire);
  if (tenant != nullptr) return tenant;
  absl::MutexLock lock(&slot.mu);
  // Checked under `mu`: a purge marks the slot deleting before it removes the
  // tenant from the limiter, so a late first call cannot add it back.
  if (slot.state.load() == TenantState::kDeleting) {
    return MakeError(absl::StatusCode::kNotFound, ErrorReason::kTenantDeleted,
                     StrCat("tenant \"", slot.id, "\": deleted"));
  }
  if (slot.limiter_handle == nullptr) {
    slot.limiter_handle = limiter.AddTenant(slot.id);
    ApplyLimitsLocked(slot, limiter, logger);
    slot.limiter_tenant.store(slot.limiter_handle.get(), std::memory_order_release);
  }
  return slot.limiter_handle.get();
}

ConcurrencyLimits EffectiveLimits(const TenantSlot& slot, const Limiter& limiter) {
  ConcurrencyLimits overrides;
  {
    absl::MutexLock lock(&slot.mu);
    overrides = slot.spec.limits;
  }
  return limiter.EffectiveTenantLimits(overrides);
}

}  // namespace tenancy::internal
