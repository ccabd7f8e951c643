#include "admission.h"

#include "str_cat.h"

namespace tenancy::internal {

std::string_view LimitClassName(LimitClassId id) {
  switch (id) {
    case LimitClassId::kRequests:
      return "requests";
    case LimitClassId::kWrites:
      return "requests/writes";
    case LimitClassId::kScans:
      return "requests/scans";
    case LimitClassId::kLifecycle:
      return "admin.lifecycle";  // the server's own slots, not the limiter's
  }
  return "requests";
}

absl::StatusOr<std::unique_ptr<Admission>> Admission::Create(Engine* engine,
                                                             const AdmissionOptions& options) {
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

absl::StatusOr<AdmissionTicket> Admission::Admit(const Tenant& tenant, LimitClassId cls) {
  auto permit = tenant.TryAcquire(classes_[static_cast<int>(cls)]);
  if (!permit.ok()) return permit.status();
  return AdmissionTicket(*std::move(permit));
}

std::map<std::string, int64_t> Admission::EffectiveLimits(const TenantSpec& spec) const {
  return limiter_->EffectiveTenantLimits(spec.limits);
}

}  // namespace tenancy::internal
