#include "tenant_slot.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

// Request counters read the clock on every data call. They only need
// millisecond "last active" times and UTC day boundaries, so they use the
// kernel's coarse clock (a few ns, resolution one tick, 1-4 ms) rather than
// absl::Now() (about 50 ns here, a noticeable share of a memtable Get).
int64_t CoarseNowMillis() {
  timespec now;
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}
constexpr int64_t kMillisPerDay = 86400 * 1000;

}  // namespace

absl::Status CountRejection(const TenantSlot& slot, absl::Status status) {
  std::optional<Rejection> rejection;
  switch (GetErrorReason(status)) {
    case ErrorReason::kStorageQuota:
    case ErrorReason::kKeyQuota:
    case ErrorReason::kQueuedJobsQuota:
      rejection = Rejection::kQuotaExceeded;
      break;
    case ErrorReason::kRateLimited:
      rejection = Rejection::kRateLimited;
      break;
    case ErrorReason::kConcurrencyLimited:
      rejection = Rejection::kConcurrencyLimited;
      break;
    case ErrorReason::kTooLarge:
      rejection = Rejection::kTooLarge;
      break;
    case ErrorReason::kTenantDisabled:
      rejection = Rejection::kTenantDisabled;
      break;
    case ErrorReason::kTenantReadOnly:
      rejection = Rejection::kTenantReadOnly;
      break;
    default:
      break;
  }
  if (rejection.has_value()) {
    slot.rejections[static_cast<int>(*rejection)].fetch_add(1, std::memory_order_relaxed);
  }
  return status;
}

absl::Status CheckReadableState(const TenantSlot& slot) {
  switch (slot.state.load(std::memory_order_seq_cst)) {
    case TenantState::kActive:
    case TenantState::kReadOnly:
      return absl::OkStatus();
    case TenantState::kDisabled:
      return CountRejection(
          slot, MakeError(absl::StatusCode::kPermissionDenied, ErrorReason::kTenantDisabled,
                          StrCat("tenant \"", slot.id, "\": disabled")));
    case TenantState::kDeleting:
      break;
  }
  return MakeError(absl::StatusCode::kNotFound, ErrorReason::kTenantDeleted,
                   StrCat("tenant \"", slot.id, "\": deleted"));
}

absl::Status CheckWriteFence(const TenantSlot& slot) {
  if (!slot.writes_fenced.load(std::memory_order_seq_cst)) return absl::OkStatus();
  return WithRetryAfter(
      absl::UnavailableError(StrCat("tenant \"", slot.id,
                                    "\": writes are held for a moment (the tenant is being "
                                    "moved); nothing was written; retry")),
      std::chrono::seconds(1));
}

absl::Status CheckWritableState(const TenantSlot& slot) {
  // Early, so a fenced write is refused before it reads anything; the
  // ledger asks again under the range lock, where it counts.
  TENANCY_RETURN_IF_ERROR(CheckWriteFence(slot));
  if (slot.state.load(std::memory_order_seq_cst) == TenantState::kReadOnly) {
    return CountRejection(
        slot, MakeError(absl::StatusCode::kPermissionDenied, ErrorReason::kTenantReadOnly,
                        StrCat("tenant \"", slot.id, "\": read-only")));
  }
  return CheckReadableState(slot);
}

void RecordCall(TenantSlot& slot, CallKind kind) {
  slot.calls[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
  int64_t now = CoarseNowMillis();
  int64_t day = now / kMillisPerDay;
  int64_t seen = slot.calls_day.load(std::memory_order_relaxed);
  if (seen != day && slot.calls_day.compare_exchange_strong(seen, day)) {
    slot.calls_today.store(0, std::memory_order_relaxed);
  }
  slot.calls_today.fetch_add(1, std::memory_order_relaxed);
  slot.last_active_ms.store(now, std::memory_order_relaxed);
}

RequestStats RequestStatsOf(const TenantSlot& slot) {
  RequestStats stats;
  for (int i = 0; i < kNumCallKinds; ++i) {
    stats.calls_by_kind[i] = slot.calls[i].load(std::memory_order_relaxed);
    stats.calls_total += stats.calls_by_kind[i];
  }
  int64_t day = CoarseNowMillis() / kMillisPerDay;
  stats.calls_today = slot.calls_day.load() == day ? slot.calls_today.load() : 0;
  int64_t last = slot.last_active_ms.load();
  if (last != 0) stats.last_active = absl::FromUnixMillis(last);
  for (int i = 0; i < kNumRejections; ++i) {
    stats.rejections[i] = slot.rejections[i].load(std::memory_order_relaxed);
  }
  return stats;
}

Usage UsageOf(const TenantSlot& slot) {
  const int64_t bytes = slot.used_bytes.load(std::memory_order_relaxed);
  const int64_t keys = slot.used_keys.load(std::memory_order_relaxed);
  return Usage{static_cast<uint64_t>(std::max<int64_t>(0, bytes)),
               static_cast<uint64_t>(std::max<int64_t>(0, keys))};
}

}  // namespace tenancy::internal
