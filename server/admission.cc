#include "admission.h"

#include <algorithm>
#include <chrono>

#include "text.h"

namespace tenancy::internal {
namespace {

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kSyncEveryNanos = 1'000'000'000;

}  // namespace

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

Admission::Admission(AdmissionOptions options, std::unique_ptr<Limiter> limiter)
    : options_(std::move(options)), limiter_(std::move(limiter)) {}

Admission::~Admission() = default;

absl::StatusOr<std::unique_ptr<Admission>> Admission::Create(
    AdmissionOptions options) {
  LimiterOptions limiter_options;
  limiter_options.default_tenant_limits = options.default_tenant_limits;
  limiter_options.global_limits = options.global_limits;
  auto limiter = Limiter::Create(std::move(limiter_options));
  if (!limiter.ok()) return limiter.status();
  std::unique_ptr<Admission> admission(
      new Admission(std::move(options), *std::move(limiter)));
  for (int i = 0; i < kNumLimitClasses; ++i) {
    auto cls = admission->limiter_->Class(LimitClassName(static_cast<LimitClassId>(i)));
    if (!cls.ok()) return cls.status();
    admission->classes_[i] = *cls;
  }
  return admission;
}

std::shared_ptr<AdmissionTenant> Admission::AddTenant(const Tenant& tenant) {
  std::shared_ptr<AdmissionTenant> handle(new AdmissionTenant());
  handle->id_ = tenant.id();
  handle->limiter_tenant_ = limiter_->AddTenant(tenant.id());
  Sync(tenant, *handle, /*force=*/true);
  return handle;
}

void Admission::Sync(const Tenant& tenant, AdmissionTenant& handle, bool force) {
  const int64_t now = SteadyNanos();
  if (!force && now < handle.next_sync_ns_.load(std::memory_order_relaxed)) return;
  handle.next_sync_ns_.store(now + kSyncEveryNanos, std::memory_order_relaxed);
  const TenantSpec spec = tenant.spec();
  const double rps = spec.quota.requests_per_second;
  // A bucket holds at least one token (the limiter's REQUIRES).
  const double burst = rps > 0 ? std::max(1.0, spec.quota.burst > 0 ? spec.quota.burst : rps)
                               : 0;
  absl::MutexLock lock(&handle.mu_);
  if (!handle.applied_ || handle.applied_limits_ != spec.limits) {
    // Invalid class names were refused when the spec was parsed; a failure
    // here leaves the previous limits in force.
    if (limiter_->SetTenantLimits(handle.id_, spec.limits).ok()) {
      handle.applied_limits_ = spec.limits;
    }
  }
  if (!handle.applied_ || handle.applied_rps_ != rps || handle.applied_burst_ != burst) {
    RateLimits rates;
    if (rps > 0) rates[std::string(kAllClasses)] = RateLimit{rps, burst};
    if (limiter_->SetTenantRates(handle.id_, rates).ok()) {
      handle.applied_rps_ = rps;
      handle.applied_burst_ = burst;
    }
  }
  handle.applied_ = true;
}

void Admission::RemoveTenant(std::string_view tenant_id) {
  limiter_->RemoveTenant(tenant_id);
}

absl::StatusOr<AdmissionTicket> Admission::Admit(AdmissionTenant& tenant,
                                                 LimitClassId cls) {
  auto permit = limiter_->TryAcquire(*tenant.limiter_tenant_,
                                     classes_[static_cast<int>(cls)]);
  if (!permit.ok()) return permit.status();
  return AdmissionTicket(*std::move(permit));
}

std::map<std::string, int64_t> Admission::EffectiveLimits(
    const TenantSpec& spec) const {
  std::map<std::string, int64_t> limits = options_.default_tenant_limits;
  for (const auto& [name, limit] : spec.limits) limits[name] = limit;
  return limits;
}

void Admission::Collect(MetricSink& sink) const {
  for (const LimiterCounters& c : limiter_->Snapshot()) {
    std::string_view cls = c.class_name;
    if (c.tier == LimitTier::kGlobal) {
      sink.AddGauge("tenancy_limiter_global_in_use",
                    "Permits held now over all tenants, by class", {{"class", cls}},
                    static_cast<double>(c.in_use));
      sink.AddGauge("tenancy_limiter_global_waiting",
                    "Callers waiting at a full global semaphore, by class",
                    {{"class", cls}}, static_cast<double>(c.waiting));
      if (c.limit.has_value()) {
        sink.AddGauge("tenancy_limiter_global_limit",
                      "Global concurrency limit, by class", {{"class", cls}},
                      static_cast<double>(*c.limit));
      }
      continue;
    }
    std::string_view tenant = c.tenant_id;
    sink.AddGauge("tenancy_limiter_in_use", "Permits a tenant holds now, by class",
                  {{"tenant", tenant}, {"class", cls}}, static_cast<double>(c.in_use));
    if (c.limit.has_value()) {
      sink.AddGauge("tenancy_limiter_limit",
                    "A tenant's effective concurrency limit, by class",
                    {{"tenant", tenant}, {"class", cls}},
                    static_cast<double>(*c.limit));
    }
    sink.AddCounter("tenancy_limiter_admitted_total",
                    "Permits granted to a tenant, by class",
                    {{"tenant", tenant}, {"class", cls}},
                    static_cast<double>(c.admitted));
    sink.AddCounter("tenancy_limiter_rejected_total",
                    "Permits refused to a tenant, by class and kind",
                    {{"tenant", tenant}, {"class", cls}, {"kind", "concurrency"}},
                    static_cast<double>(c.rejected_concurrency));
    sink.AddCounter("tenancy_limiter_rejected_total",
                    "Permits refused to a tenant, by class and kind",
                    {{"tenant", tenant}, {"class", cls}, {"kind", "rate"}},
                    static_cast<double>(c.rejected_rate));
  }
}

}  // namespace tenancy::internal
