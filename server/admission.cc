#include "admission.h"

#include "text.h"

namespace tenancy::internal {

std::string_view LimitClassName(LimitClassId id) {
  switch (id) {
    case LimitClassId::kRequests: return "requests";
    case LimitClassId::kWrites: return "requests/writes";
    case LimitClassId::kScans: return "requests/scans";
  }
  return "requests";
}

absl::StatusOr<std::unique_ptr<Admission>> Admission::Create(
    Engine* engine, const AdmissionOptions& options) {
  Limiter& limiter = engine->limiter();
  std::unique_ptr<Admission> admission(new Admission(&limiter));
  for (int i = 0; i < kNumLimitClasses; ++i) {
    auto cls = limiter.Class(LimitClassName(static_cast<LimitClassId>(i)));
    if (!cls.ok()) return cls.status();
    admission->classes_[i] = *cls;
  }
  // The engine's own numbers win: the server only fills in what is unset.
  ConcurrencyLimits defaults = limiter.DefaultTenantLimits();
  for (const auto& [name, limit] : options.default_tenant_limits) {
    defaults.try_emplace(name, limit);
  }
  ConcurrencyLimits global = limiter.GlobalLimits();
  for (const auto& [name, limit] : options.global_limits) {
    global.try_emplace(name, limit);
  }
  if (absl::Status s = limiter.SetDefaultTenantLimits(defaults); !s.ok()) return s;
  if (absl::Status s = limiter.SetGlobalLimits(global); !s.ok()) return s;
  return admission;
}

absl::StatusOr<AdmissionTicket> Admission::Admit(const Tenant& tenant,
                                                 LimitClassId cls) {
  auto permit = tenant.TryAcquire(classes_[static_cast<int>(cls)]);
  if (!permit.ok()) return permit.status();
  return AdmissionTicket(*std::move(permit));
}

std::map<std::string, int64_t> Admission::EffectiveLimits(
    const TenantSpec& spec) const {
  return limiter_->EffectiveTenantLimits(spec.limits);
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
