#include "admission.h"

// Interim implementation: admits every request. The tiered limiter
// (include/tenancy/limiter.h) plugs in here.

namespace tenancy::internal {

struct AdmissionTenant::Rep {};
struct AdmissionTicket::Rep {};
struct Admission::Rep {};

std::string_view LimitClassName(LimitClassId id) {
  switch (id) {
    case LimitClassId::kRequests: return "requests";
    case LimitClassId::kWrites: return "requests/writes";
    case LimitClassId::kScans: return "requests/scans";
  }
  return "requests";
}

LimitClassId LimitClassOfRoute(RouteId route) {
  switch (route) {
    case RouteId::kKvPut:
    case RouteId::kKvDelete:
    case RouteId::kBatch:
      return LimitClassId::kWrites;
    case RouteId::kKvScan:
      return LimitClassId::kScans;
    default:
      return LimitClassId::kRequests;
  }
}

AdmissionTenant::~AdmissionTenant() = default;

AdmissionTicket::AdmissionTicket() = default;
AdmissionTicket::AdmissionTicket(AdmissionTicket&&) noexcept = default;
AdmissionTicket& AdmissionTicket::operator=(AdmissionTicket&&) noexcept = default;
AdmissionTicket::~AdmissionTicket() = default;

Admission::Admission(AdmissionOptions options) : options_(std::move(options)) {}
Admission::~Admission() = default;

absl::StatusOr<std::unique_ptr<Admission>> Admission::Create(
    AdmissionOptions options) {
  return std::unique_ptr<Admission>(new Admission(std::move(options)));
}

std::shared_ptr<AdmissionTenant> Admission::AddTenant(const Tenant&) {
  return std::shared_ptr<AdmissionTenant>(new AdmissionTenant());
}

void Admission::Sync(const Tenant&, AdmissionTenant&, bool) {}
void Admission::RemoveTenant(std::string_view) {}

absl::StatusOr<AdmissionTicket> Admission::Admit(AdmissionTenant&, LimitClassId) {
  return AdmissionTicket();
}

std::map<std::string, int64_t> Admission::EffectiveLimits(
    const TenantSpec& spec) const {
  std::map<std::string, int64_t> limits = options_.default_tenant_limits;
  for (const auto& [name, limit] : spec.limits) limits[name] = limit;
  return limits;
}

void Admission::Collect(MetricSink&) const {}

}  // namespace tenancy::internal
