// UsageLedger: the one write path of a tenant's data, with exact accounting.
//
// Usage is the user's key + value bytes (no internal prefixes) over the
// tenant's key-value store and queued jobs, and the number of keys in the
// key-value store. Every write learns the size of what it replaces, adds the
// difference to a RocksDB WriteBatch as a merge operand on the tenant's
// ledger record (meta column family) beside the data itself, reserves that
// difference against the tenant's quotas in memory first, and commits the
// batch: after a crash the ledger equals the data. A write that would pass a
// quota is refused before anything is written; writes that shrink usage are
// always admitted, so a tenant over a lowered quota can get back under it.
//
// Three ways in, one rule (AccountedBatch in the .cc):
//   - Apply: the key-value store's writes. Writers of the same key are
//     serialised by a striped lock, so two writers cannot both count a key
//     as new; the sizes replaced are read under it.
//   - ApplyKnown: writers that already know the sizes they replace because
//     they serialise every writer of their keys themselves (the job queue,
//     under its tenant's job mutex).
//   - DeleteRange and Recount, which hold the tenant's range lock exclusively.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_LIB_USAGE_LEDGER_H_
#define TENANCY_LIB_USAGE_LEDGER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "key_encoding.h"
#include "storage.h"
#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenant_slot.h"

namespace tenancy::internal {

// One write to a tenant's range, in a namespace. Keys are user keys (no
// prefix). The views must outlive the call they are passed to.
struct LedgerOp {
  Namespace ns = Namespace::kKv;
  bool is_put = true;
  std::string_view key;
  std::string_view value;
};

// A write whose caller knows the size of the value it replaces (nullopt:
// absent).
struct KnownWrite {
  LedgerOp op;
  std::optional<size_t> old_size;
};

class UsageLedger {
 public:
  // REQUIRES: `storage` and `options` outlive the ledger.
  UsageLedger(Storage& storage, const EngineOptions& options);
  UsageLedger(const UsageLedger&) = delete;
  UsageLedger& operator=(const UsageLedger&) = delete;

  // INVALID_ARGUMENT (kTooLarge) for a key over EngineOptions::max_key_bytes
  // or a value over max_value_bytes or the tenant's quota.max_value_bytes.
  absl::Status ValidateKey(const TenantSlot& slot, std::string_view key) const;
  absl::Status ValidateValue(const TenantSlot& slot, std::string_view value) const;

  // Applies `ops` atomically, in order (a later op on a key wins).
  // RESOURCE_EXHAUSTED (kStorageQuota, kKeyQuota) before anything is
  // written if the write would pass a quota; RocksDB's errors otherwise.
  absl::Status Apply(TenantSlot& slot, const std::vector<LedgerOp>& ops);
  // Apply of one op, without the batch path's allocations.
  absl::Status ApplyOne(TenantSlot& slot, const LedgerOp& op);
  // As Apply, for a caller that knows the sizes replaced (see the file
  // comment). REQUIRES: the caller serialises every writer of these keys.
  absl::Status ApplyKnown(TenantSlot& slot, const std::vector<KnownWrite>& writes);

  // Adoption (adoption.h): puts `puts` (distinct keys) into the tenant's
  // range and deletes the same keys from `source` in one batch, with the
  // usage delta (the sizes replaced are read, so usage stays exact). Not
  // refused by the tenant's quotas: it is an operator's act. Sizes are not
  // validated here (the caller does). Writers of the tenant wait meanwhile.
  absl::Status Import(TenantSlot& slot, const std::vector<LedgerOp>& puts,
                      rocksdb::ColumnFamilyHandle* source);

  // Removes every key of namespace `ns` in [start, end); returns how many.
  // INVALID_ARGUMENT if start > end.
  absl::StatusOr<uint64_t> DeleteRange(TenantSlot& slot, Namespace ns, std::string_view start,
                                       std::string_view end);

  // Scans the tenant's whole range and compares it with the ledger; sets the
  // ledger to what was counted when `repair`. Writers wait meanwhile.
  absl::StatusOr<RecountResult> Recount(TenantSlot& slot, bool repair);

 private:
  class AccountedBatch;
  // Reserves the batch's usage, commits it, and gives the reservation back
  // if the commit fails.
  absl::Status Commit(TenantSlot& slot, AccountedBatch& batch, std::string_view what);
  absl::Status Reserve(TenantSlot& slot, int64_t delta_bytes, int64_t delta_keys);
  void Release(TenantSlot& slot, int64_t delta_bytes, int64_t delta_keys);
  // Logs once per crossing of EngineOptions::quota_warning_fraction.
  void CheckWarning(TenantSlot& slot, std::atomic<bool>& warned, int64_t used, uint64_t limit,
                    std::string_view what);
  absl::Mutex& KeyLock(uint64_t tenant, Namespace ns, std::string_view key);

  // Constant after construction
  Storage& storage_;
  const EngineOptions& options_;
  static constexpr size_t kKeyLockStripes = 4096;
  std::unique_ptr<absl::Mutex[]> key_locks_;
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_USAGE_LEDGER_H_
