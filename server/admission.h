// Admission: the limits every tenant request passes before it runs.
//
// Limit classes the server uses (hierarchical: a permit for a child class
// also holds its parent):
//   requests           every tenant request      default 32 per tenant
//   requests/writes    PUT/DELETE kv, batch,     default 16 per tenant
//                      cache writes, job enqueue/claim/ack/nack
//   requests/scans     GET /v1/kv (scan)         default 4 per tenant
// They are defaults at the engine's Limiter (Engine::limiter()): a default the
// engine already has for a class (EngineOptions::limiter, a tenants file)
// wins over the server's. A tenant's spec "limits" override them per class;
// ServerOptions::global_limits bound all tenants together (again unless the
// engine has its own). The engine keeps each tenant's overrides and rate in
// step with its spec, live. A permit is never waited for: a
// worker thread must not block on a limit, so a full class answers 429
// concurrency_limited at once (Retry-After 1).
//
// The tenant's rate is its quota: requests_per_second with burst (0: no
// limit), one token per request of any class (the engine's kAllClasses rate);
// an empty bucket answers 429 rate_limited with the time until the next token.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_SERVER_ADMISSION_H_
#define TENANCY_SERVER_ADMISSION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "route_table.h"
#include "tenancy/engine.h"
#include "tenancy/limiter.h"
#include "tenancy/metrics.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

// The class a request that waits holds while it waits: a job claim waiting
// for a job, a permit request waiting for a permit (bounded per tenant by
// ServerOptions::max_waiting_claims_per_tenant and in all by
// max_waiting_claims, for both together, so that waiting requests of either
// kind never take every worker). Not under "requests": the waiting request
// already holds a permit of a "requests" class.
inline constexpr std::string_view kClaimWaitsClass = "requests.claim-waits";

// "requests", "requests/writes", "requests/scans" (LimitClassId is in
// route_table.h, beside the routes that hold each).
std::string_view LimitClassName(LimitClassId id);
// The class `route` holds (its RouteInfo's).
inline LimitClassId LimitClassOfRoute(RouteId route) { return RouteInfoOf(route).limit_class; }

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
  // Per-tenant concurrency by class, where the engine has no default.
  std::map<std::string, int64_t> default_tenant_limits;
  // All tenants together, by class, where the engine has no global limit.
  std::map<std::string, int64_t> global_limits;
};

class Admission {
 public:
  // Resolves the server's classes at the engine's limiter and adds the
  // server's defaults there. INVALID_ARGUMENT for a bad class name or limit.
  // REQUIRES: `engine` outlives the Admission and every ticket.
  static absl::StatusOr<std::unique_ptr<Admission>> Create(Engine* engine,
                                                           const AdmissionOptions& options);
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // A permit of `cls` for the tenant, without waiting.
  // RESOURCE_EXHAUSTED with reason kRateLimited or kConcurrencyLimited (and
  // a Retry-After) when refused; the tenant's state errors otherwise.
  absl::StatusOr<AdmissionTicket> Admit(const Tenant& tenant, LimitClassId cls);

  // The concurrency limits that apply to a tenant with `spec` (the limiter's
  // defaults now, overlaid with the spec's), for the admin API.
  std::map<std::string, int64_t> EffectiveLimits(const TenantSpec& spec) const;

 private:
  explicit Admission(Limiter* limiter) : limiter_(limiter) {}

  // Constant after Create.
  Limiter* const limiter_;  // the engine's
  LimitClass classes_[kNumLimitClasses];
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ADMISSION_H_
