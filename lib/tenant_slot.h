// TenantSlot: the live state of one tenant, shared by the catalog's index and
// every handle to the tenant; CallGuard, which registers a data call with it;
// and the request counters kept in it.
//
// Concurrency: a data call registers itself in `inflight` (CallGuard) before
// it reads `state`; a purge sets the state to deleting and then waits for the
// counter to drain, so no call can write after the purge has started.
//
// Thread safety: the atomics are read without a lock; the registry view is
// guarded by `mu`, and `range_mu` orders writers (shared) against DeleteRange
// and Recount (exclusive). See each member.

#ifndef TENANCY_LIB_TENANT_SLOT_H_
#define TENANCY_LIB_TENANT_SLOT_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api_key.h"
#include "rocksdb/db.h"
#include "tenancy/limiter.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

class TenantSlot {
 public:
  TenantSlot(std::string id, uint64_t number, Placement placement,
             std::shared_ptr<rocksdb::ColumnFamilyHandle> cf)
      : id(std::move(id)), number(number), placement(placement), cf(std::move(cf)) {}
  TenantSlot(const TenantSlot&) = delete;
  TenantSlot& operator=(const TenantSlot&) = delete;

  // Lifecycle, read on every call without a lock. First, so that it usually
  // shares a cache line with the reference counts make_shared puts just
  // before the slot: resolving an API key touches both, often from a cold
  // cache (see bench/core_bench.cc).
  std::atomic<TenantState> state{TenantState::kActive};

  // Constant after construction
  const std::string id;
  const uint64_t number;
  const Placement placement;
  // The column family holding the tenant's data (shared or its own). Kept
  // alive by this pointer even after a drop, so late callers fail cleanly.
  const std::shared_ptr<rocksdb::ColumnFamilyHandle> cf;

  // Limits, read on every call without a lock.
  std::atomic<uint64_t> quota_bytes{0};
  std::atomic<uint64_t> quota_keys{0};
  std::atomic<uint64_t> max_value_bytes{0};
  std::atomic<int64_t> inflight{0};
  // Set while a WriteFence holds the tenant's writes off (a move to another
  // node). Writers read it under `range_mu` (CheckWriteFence), so the fence,
  // which sets it and then takes `range_mu` exclusively once, knows that
  // every write after that sees it.
  std::atomic<bool> writes_fenced{false};

  // The usage ledger in memory; equal to the persisted ledger once a write
  // commits. Reservations are taken here before a write is attempted.
  std::atomic<int64_t> used_bytes{0};
  std::atomic<int64_t> used_keys{0};
  std::atomic<bool> warned_bytes{false};
  std::atomic<bool> warned_keys{false};

  // Request counters (RecordCall).
  std::array<std::atomic<uint64_t>, kNumCallKinds> calls{};
  std::atomic<int64_t> calls_day{0};  // UTC day number of calls_today
  std::atomic<uint64_t> calls_today{0};
  std::atomic<int64_t> last_active_ms{0};  // 0: never
  // Refusals by Rejection (CountRejection). Mutable: refusals are counted
  // where the state is only read.
  mutable std::array<std::atomic<uint64_t>, kNumRejections> rejections{};

  // Writers shared; DeleteRange / Recount exclusive.
  absl::Mutex range_mu;

  // The tenant at the engine's Limiter, added at its first acquisition so
  // that idle tenants cost the limiter nothing. Set once (under `mu`), never
  // cleared: the pointer stays valid as long as the slot (limiter_handle).
  std::atomic<LimiterTenant*> limiter_tenant{nullptr};

  // Registry view of the tenant.
  mutable absl::Mutex mu;
  TenantSpec spec ABSL_GUARDED_BY(mu);
  absl::Time created_at ABSL_GUARDED_BY(mu);
  absl::Time updated_at ABSL_GUARDED_BY(mu);
  std::vector<ApiKeyInfo> keys ABSL_GUARDED_BY(mu);
  std::vector<Sha256Digest> key_digests ABSL_GUARDED_BY(mu);  // parallel to keys
  std::shared_ptr<LimiterTenant> limiter_handle ABSL_GUARDED_BY(mu);
};

// Registers a data call with its tenant for as long as it lives (see the file
// comment); the call then checks the tenant's state.
class CallGuard {
 public:
  explicit CallGuard(TenantSlot& slot) : slot_(slot) {
    slot_.inflight.fetch_add(1, std::memory_order_seq_cst);
  }
  CallGuard(const CallGuard&) = delete;
  CallGuard& operator=(const CallGuard&) = delete;
  ~CallGuard() { slot_.inflight.fetch_sub(1, std::memory_order_release); }

 private:
  TenantSlot& slot_;
};

// OK when the tenant accepts reads (active or read-only); PERMISSION_DENIED
// (kTenantDisabled) or NOT_FOUND (kTenantDeleted) otherwise. Writable also
// refuses a read-only tenant (PERMISSION_DENIED, kTenantReadOnly).
absl::Status CheckReadableState(const TenantSlot& slot);
absl::Status CheckWritableState(const TenantSlot& slot);
// UNAVAILABLE with a retry-after while the tenant's writes are fenced
// (TenantLifecycle::FenceWrites). REQUIRES: slot.range_mu held, shared or
// exclusive, by a writer about to commit.
absl::Status CheckWriteFence(const TenantSlot& slot);

// Counts a refusal of the tenant's call when `status` is one (by its
// ErrorReason); returns `status`. Called where the library refuses.
absl::Status CountRejection(const TenantSlot& slot, absl::Status status);

// Counts one call of `kind`: calls by kind, calls today (UTC), last active.
void RecordCall(TenantSlot& slot, CallKind kind);
RequestStats RequestStatsOf(const TenantSlot& slot);

// Usage now (negative transients of a failed write read as 0).
Usage UsageOf(const TenantSlot& slot);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_TENANT_SLOT_H_
