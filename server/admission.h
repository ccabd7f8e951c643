// Admission: the limits every tenant request passes before it runs.
//
// Limit classes the server uses (hierarchical: a permit for a child class
// also holds its parent):
//   requests           every tenant request      default 32 per tenant
//   requests/writes    PUT/DELETE kv, batch      default 16 per tenant
//   requests/scans     GET /v1/kv (scan)         default 4 per tenant
// A tenant's spec "limits" override these per class; ServerOptions::
// global_limits bound all tenants together. A permit is never waited for: a
// worker thread must not block on a limit, so a full class answers 429
// concurrency_limited at once (Retry-After 1).
//
// The tenant's rate is its quota: requests_per_second with burst (0: no
// limit), one token per request of any class; an empty bucket answers 429
// rate_limited with the time until the next token.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_SERVER_ADMISSION_H_
#define TENANCY_SERVER_ADMISSION_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "route_table.h"
#include "tenancy/limiter.h"
#include "tenancy/metrics.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

enum class LimitClassId { kRequests, kWrites, kScans };
inline constexpr int kNumLimitClasses = 3;
// "requests", "requests/writes", "requests/scans".
std::string_view LimitClassName(LimitClassId id);
LimitClassId LimitClassOfRoute(RouteId route);

// One tenant as admission sees it. Obtained from Admission::AddTenant.
class AdmissionTenant {
 public:
  AdmissionTenant(const AdmissionTenant&) = delete;
  AdmissionTenant& operator=(const AdmissionTenant&) = delete;

 private:
  friend class Admission;
  AdmissionTenant() = default;

  // Constant after Admission::AddTenant.
  std::string id_;
  std::shared_ptr<LimiterTenant> limiter_tenant_;
  // When the spec is next compared with what the limiter applies (ns on the
  // steady clock). Read on every request, so it is atomic.
  std::atomic<int64_t> next_sync_ns_{0};

  // What was last applied to the limiter.
  absl::Mutex mu_;
  bool applied_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, int64_t> applied_limits_ ABSL_GUARDED_BY(mu_);
  double applied_rps_ ABSL_GUARDED_BY(mu_) = 0;
  double applied_burst_ ABSL_GUARDED_BY(mu_) = 0;
};

// Holds the request's permit; gives it back when destroyed. Move-only.
class AdmissionTicket {
 public:
  AdmissionTicket() = default;
  AdmissionTicket(AdmissionTicket&&) noexcept = default;
  AdmissionTicket& operator=(AdmissionTicket&&) noexcept = default;
  AdmissionTicket(const AdmissionTicket&) = delete;
  AdmissionTicket& operator=(const AdmissionTicket&) = delete;

 private:
  friend class Admission;
  explicit AdmissionTicket(Permit permit) : permit_(std::move(permit)) {}

  Permit permit_;
};

struct AdmissionOptions {
  // Per-tenant concurrency by class, unless the tenant's spec overrides.
  std::map<std::string, int64_t> default_tenant_limits;
  // All tenants together, by class.
  std::map<std::string, int64_t> global_limits;
};

class Admission {
 public:
  // INVALID_ARGUMENT for a bad class name or limit.
  static absl::StatusOr<std::unique_ptr<Admission>> Create(
      AdmissionOptions options);
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;
  ~Admission();

  // The handle of `tenant`, with its spec's limits and rate applied.
  std::shared_ptr<AdmissionTenant> AddTenant(const Tenant& tenant);
  // Re-applies the spec's limits and rate when they changed: at once when
  // `force` (after an admin update), else at most once a second per tenant,
  // so that changes made elsewhere (a tenants file) become live quickly.
  void Sync(const Tenant& tenant, AdmissionTenant& handle, bool force);
  // Forgets a purged tenant.
  void RemoveTenant(std::string_view tenant_id);

  // A permit of `cls` for the tenant, without waiting.
  // RESOURCE_EXHAUSTED with reason kRateLimited or kConcurrencyLimited (and
  // a Retry-After) when refused.
  absl::StatusOr<AdmissionTicket> Admit(AdmissionTenant& tenant,
                                        LimitClassId cls);

  // The concurrency limits that apply to a tenant with `spec` (defaults
  // overlaid with the spec's), for the admin API.
  std::map<std::string, int64_t> EffectiveLimits(const TenantSpec& spec) const;

  // Writes the limiter's gauges (permits in use, waiting, refusals).
  void Collect(MetricSink& sink) const;

 private:
  Admission(AdmissionOptions options, std::unique_ptr<Limiter> limiter);

  // Constant after Create.
  const AdmissionOptions options_;
  // Destroyed after every ticket: the Router (which holds tickets only during
  // requests) goes first.
  const std::unique_ptr<Limiter> limiter_;
  LimitClass classes_[kNumLimitClasses];
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ADMISSION_H_
