#include "tenancy/tenant.h"

#include "access.h"
#include "engine_parts.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/cache.h"
#include "tenancy/jobs.h"
#include "tenancy/kv_store.h"
#include "tenant_limits.h"

namespace tenancy {

std::string_view TenantStateName(TenantState state) {
  switch (state) {
    case TenantState::kActive:
      return "active";
    case TenantState::kReadOnly:
      return "read_only";
    case TenantState::kDisabled:
      return "disabled";
    case TenantState::kDeleting:
      return "deleting";
  }
  return "active";
}

std::string_view PlacementName(Placement placement) {
  return placement == Placement::kDedicated ? "dedicated" : "shared";
}

std::string_view RejectionName(Rejection rejection) {
  switch (rejection) {
    case Rejection::kRateLimited:
      return "rate_limited";
    case Rejection::kConcurrencyLimited:
      return "concurrency_limited";
    case Rejection::kQuotaExceeded:
      return "quota_exceeded";
    case Rejection::kTooLarge:
      return "too_large";
    case Rejection::kTenantDisabled:
      return "tenant_disabled";
    case Rejection::kTenantReadOnly:
      return "tenant_read_only";
  }
  return "rate_limited";
}

std::string_view CallKindName(CallKind kind) {
  switch (kind) {
    case CallKind::kGet:
      return "get";
    case CallKind::kPut:
      return "put";
    case CallKind::kDelete:
      return "delete";
    case CallKind::kScan:
      return "scan";
    case CallKind::kBatch:
      return "batch";
    case CallKind::kCache:
      return "cache";
    case CallKind::kJobs:
      return "jobs";
    case CallKind::kOther:
      return "other";
  }
  return "other";
}

absl::Status ValidateTenantId(std::string_view id) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool valid = !id.empty() && id.size() <= 63 && alnum(id.front()) && alnum(id.back());
  for (char c : id) valid = valid && (alnum(c) || c == '-');
  if (!valid) {
    // The id is not echoed raw: it may hold control characters or be huge.
    return absl::InvalidArgumentError(
        internal::StrCat("invalid tenant id (", id.size(),
                         " bytes): must match ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"));
  }
  return absl::OkStatus();
}

Tenant::Tenant(std::shared_ptr<internal::TenantSlot> slot, internal::EngineParts* parts)
    : slot_(std::move(slot)), parts_(parts) {}

Tenant::~Tenant() = default;

const std::string& Tenant::id() const { return slot_->id; }
uint64_t Tenant::number() const { return slot_->number; }
TenantState Tenant::state() const { return slot_->state.load(); }
Placement Tenant::placement() const { return slot_->placement; }

TenantSpec Tenant::spec() const {
  absl::MutexLock lock(&slot_->mu);
  return slot_->spec;
}

KvStore Tenant::kv() const { return KvStore(*this); }

JobQueue Tenant::jobs() const { return JobQueue(*this); }

TenantCache Tenant::cache() const { return TenantCache(*this); }

Usage Tenant::usage() const { return internal::UsageOf(*slot_); }

RequestStats Tenant::requests() const { return internal::RequestStatsOf(*slot_); }

void Tenant::RecordCall(CallKind kind) const { internal::RecordCall(*slot_, kind); }

absl::StatusOr<Permit> Tenant::Acquire(const LimitClass& cls,
                                       std::chrono::steady_clock::time_point deadline) const {
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(*slot_));
  TENANCY_ASSIGN_OR_RETURN(LimiterTenant * tenant,
                           internal::LimiterTenantOf(*slot_, *parts_->limiter, parts_->logger()));
  absl::StatusOr<Permit> permit = parts_->limiter->Acquire(*tenant, cls, deadline);
  if (!permit.ok()) return internal::CountRejection(*slot_, permit.status());
  return permit;
}

absl::StatusOr<Permit> Tenant::TryAcquire(const LimitClass& cls) const {
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(*slot_));
  TENANCY_ASSIGN_OR_RETURN(LimiterTenant * tenant,
                           internal::LimiterTenantOf(*slot_, *parts_->limiter, parts_->logger()));
  absl::StatusOr<Permit> permit = parts_->limiter->TryAcquire(*tenant, cls);
  if (!permit.ok()) return internal::CountRejection(*slot_, permit.status());
  return permit;
}

ConcurrencyLimits Tenant::EffectiveLimits() const {
  return internal::EffectiveLimits(*slot_, *parts_->limiter);
}

absl::Status Tenant::CheckReadable() const { return internal::CheckReadableState(*slot_); }

absl::Status Tenant::CheckWritable() const { return internal::CheckWritableState(*slot_); }

}  // namespace tenancy
