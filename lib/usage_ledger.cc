#include "usage_ledger.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_format.h"
#include "meta_records.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

int64_t EntryBytes(std::string_view key, size_t value_size) {
  return static_cast<int64_t>(key.size() + value_size);
}

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// Reserves `delta` against `limit` (0: none) without ever letting a
// concurrent reservation see a total above the limit.
bool TryReserve(std::atomic<int64_t>& used, int64_t delta, uint64_t limit) {
  if (delta <= 0 || limit == 0) {
    used.fetch_add(delta, std::memory_order_relaxed);
    return true;
  }
  int64_t current = used.load(std::memory_order_relaxed);
  do {
    if (current + delta > static_cast<int64_t>(limit)) return false;
  } while (!used.compare_exchange_weak(current, current + delta, std::memory_order_relaxed));
  return true;
}

// What a write holds while it learns the sizes it replaces and commits: the
// tenant's range lock shared plus the stripes of its keys, taken in address
// order (a fixed total order, so two batches cannot deadlock). A batch that
// would need more than kMaxStripes stripes takes the tenant's range lock
// exclusively instead: that excludes every other writer of the tenant, which
// is all the stripes are for, without blocking other tenants' keys that hash
// to the same stripes. The analysis cannot follow a dynamic set of mutexes,
// hence the opt-out.
class WriteLocks {
 public:
  static constexpr size_t kMaxStripes = 16;

  WriteLocks(absl::Mutex& range_mu,
             std::vector<absl::Mutex*> stripes) ABSL_NO_THREAD_SAFETY_ANALYSIS
      : range_mu_(range_mu),
        stripes_(std::move(stripes)) {
    std::sort(stripes_.begin(), stripes_.end());
    stripes_.erase(std::unique(stripes_.begin(), stripes_.end()), stripes_.end());
    exclusive_ = stripes_.size() > kMaxStripes;
    if (exclusive_) {
      stripes_.clear();
      range_mu_.Lock();
    } else {
      range_mu_.ReaderLock();
      for (absl::Mutex* mu : stripes_) mu->Lock();
    }
  }
  WriteLocks(const WriteLocks&) = delete;
  WriteLocks& operator=(const WriteLocks&) = delete;
  ~WriteLocks() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) (*it)->Unlock();
    if (exclusive_) {
      range_mu_.Unlock();
    } else {
      range_mu_.ReaderUnlock();
    }
  }

 private:
  absl::Mutex& range_mu_;
  std::vector<absl::Mutex*> stripes_;
  bool exclusive_ = false;
};

}  // namespace

// The accounting rule, written once: what one write changes in the ledger,
// given the size of what it replaces, added to the batch beside the write.
class UsageLedger::AccountedBatch {
 public:
  AccountedBatch(TenantSlot& slot, size_t reserve_bytes) : slot_(slot), batch_(reserve_bytes) {}

  // Adds `op` at `internal_key`, replacing a value of `old_size` bytes
  // (nullopt: the key is absent). Deleting an absent key adds nothing.
  rocksdb::Status Add(const LedgerOp& op, rocksdb::Slice internal_key,
                      std::optional<size_t> old_size) {
    const int64_t key_delta = op.ns == Namespace::kKv ? 1 : 0;
    if (op.is_put) {
      bytes_ += EntryBytes(op.key, op.value.size());
      if (old_size.has_value()) {
        bytes_ -= EntryBytes(op.key, *old_size);
      } else {
        keys_ += key_delta;
      }
      return batch_.Put(slot_.cf.get(), internal_key, ToSlice(op.value));
    }
    if (!old_size.has_value()) return rocksdb::Status::OK();
    bytes_ -= EntryBytes(op.key, *old_size);
    keys_ -= key_delta;
    return batch_.Delete(slot_.cf.get(), internal_key);
  }

  bool empty() const { return batch_.Count() == 0; }
  int64_t bytes() const { return bytes_; }
  int64_t keys() const { return keys_; }
  rocksdb::WriteBatch& batch() { return batch_; }

 private:
  TenantSlot& slot_;
  rocksdb::WriteBatch batch_;
  int64_t bytes_ = 0;
  int64_t keys_ = 0;
};

UsageLedger::UsageLedger(Storage& storage, const EngineOptions& options)
    : storage_(storage), options_(options), key_locks_(new absl::Mutex[kKeyLockStripes]) {}

absl::Status UsageLedger::ValidateKey(const TenantSlot& slot, std::string_view key) const {
  if (key.size() > options_.max_key_bytes) {
    return CountRejection(slot,
                          MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
                                    absl::StrFormat("tenant \"%s\": key of %d bytes is over "
                                                    "the limit of %d",
                                                    slot.id, key.size(), options_.max_key_bytes)));
  }
  return absl::OkStatus();
}

absl::Status UsageLedger::ValidateValue(const TenantSlot& slot, std::string_view value) const {
  uint64_t limit = options_.max_value_bytes;
  uint64_t tenant_limit = slot.max_value_bytes.load(std::memory_order_relaxed);
  if (tenant_limit != 0) limit = std::min(limit, tenant_limit);
  if (value.size() > limit) {
    return CountRejection(slot,
                          MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
                                    absl::StrFormat("tenant \"%s\": value of %d bytes is over "
                                                    "the limit of %d",
                                                    slot.id, value.size(), limit)));
  }
  return absl::OkStatus();
}

void UsageLedger::CheckWarning(TenantSlot& slot, std::atomic<bool>& warned, int64_t used,
                               uint64_t limit, std::string_view what) {
  bool above = limit != 0 && static_cast<double>(used) >=
                                 options_.quota_warning_fraction * static_cast<double>(limit);
  if (above) {
    if (!warned.exchange(true)) {
      options_.logger->Log(LogLevel::kWarning,
                           absl::StrFormat("tenant \"%s\": %s at %.0f%% of quota (used=%d, "
                                           "limit=%d)",
                                           slot.id, what, 100.0 * used / limit, used, limit));
    }
  } else if (warned.load(std::memory_order_relaxed)) {
    warned.store(false);  // re-arm: the next crossing warns again
  }
}

absl::Status UsageLedger::Reserve(TenantSlot& slot, int64_t delta_bytes, int64_t delta_keys) {
  uint64_t bytes_limit = slot.quota_bytes.load(std::memory_order_relaxed);
  uint64_t keys_limit = slot.quota_keys.load(std::memory_order_relaxed);
  if (!TryReserve(slot.used_bytes, delta_bytes, bytes_limit)) {
    return CountRejection(
        slot,
        MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kStorageQuota,
                  absl::StrFormat("tenant \"%s\": storage quota exceeded (used=%d, "
                                  "write=+%d, limit=%d)",
                                  slot.id, slot.used_bytes.load(), delta_bytes, bytes_limit)));
  }
  if (!TryReserve(slot.used_keys, delta_keys, keys_limit)) {
    slot.used_bytes.fetch_sub(delta_bytes);
    return CountRejection(
        slot, MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kKeyQuota,
                        absl::StrFormat("tenant \"%s\": key quota exceeded (keys=%d, "
                                        "write=+%d, limit=%d)",
                                        slot.id, slot.used_keys.load(), delta_keys, keys_limit)));
  }
  CheckWarning(slot, slot.warned_bytes, slot.used_bytes.load(), bytes_limit, "storage");
  CheckWarning(slot, slot.warned_keys, slot.used_keys.load(), keys_limit, "keys");
  return absl::OkStatus();
}

void UsageLedger::Release(TenantSlot& slot, int64_t delta_bytes, int64_t delta_keys) {
  slot.used_bytes.fetch_sub(delta_bytes);
  slot.used_keys.fetch_sub(delta_keys);
}

absl::Status UsageLedger::Commit(TenantSlot& slot, AccountedBatch& batch, std::string_view what) {
  if (batch.empty()) return absl::OkStatus();
  // Every caller holds the range lock (shared or exclusive): see
  // TenantSlot::writes_fenced.
  TENANCY_RETURN_IF_ERROR(CheckWriteFence(slot));
  rocksdb::Status s;
  if (batch.bytes() != 0 || batch.keys() != 0) {
    s = batch.batch().Merge(storage_.meta(), UsageKey(slot.number),
                            EncodeUsageDelta(batch.bytes(), batch.keys()));
  }
  // The message is built only on failure: an allocation per write is
  // measurable.
  if (!s.ok()) return FromRocksStatus(s, StrCat("tenant \"", slot.id, "\": ", what));
  TENANCY_RETURN_IF_ERROR(Reserve(slot, batch.bytes(), batch.keys()));
  s = storage_.Commit(storage_.data_write_options(), &batch.batch());
  if (!s.ok()) {
    Release(slot, batch.bytes(), batch.keys());
    return storage_.WriteError(s, StrCat("tenant \"", slot.id, "\": ", what));
  }
  return absl::OkStatus();
}

absl::Status UsageLedger::ApplyOne(TenantSlot& slot, const LedgerOp& op) {
  // The locks Apply takes for one key, without its vector.
  absl::Mutex& stripe = KeyLock(slot.number, op.ns, op.key);
  absl::ReaderMutexLock range_lock(&slot.range_mu);
  absl::MutexLock key_lock(&stripe);

  EncodedKey internal_key(slot.number, op.ns, op.key);
  const rocksdb::Slice key_slice = ToSlice(internal_key.view());
  std::optional<size_t> old_size;
  {
    rocksdb::PinnableSlice old;
    rocksdb::Status s =
        storage_.db()->Get(storage_.point_read_options(), slot.cf.get(), key_slice, &old);
    if (s.ok()) {
      old_size = old.size();
    } else if (!s.IsNotFound()) {
      return FromRocksStatus(s, StrCat("tenant \"", slot.id, "\": write"));
    }
  }
  // Header, two records' tags and lengths, the usage key and its operand.
  AccountedBatch batch(slot, key_slice.size() + op.value.size() + 64);
  rocksdb::Status s = batch.Add(op, key_slice, old_size);
  if (!s.ok()) return FromRocksStatus(s, StrCat("tenant \"", slot.id, "\": write"));
  return Commit(slot, batch, "write");
}

absl::Status UsageLedger::Apply(TenantSlot& slot, const std::vector<LedgerOp>& ops) {
  if (ops.empty()) return absl::OkStatus();
  if (ops.size() == 1) return ApplyOne(slot, ops[0]);
  // Serialise with other writers of the same keys.
  std::vector<absl::Mutex*> stripes;
  stripes.reserve(ops.size());
  for (const LedgerOp& op : ops) stripes.push_back(&KeyLock(slot.number, op.ns, op.key));
  WriteLocks locked(slot.range_mu, std::move(stripes));

  std::vector<std::string> internal_keys;
  internal_keys.reserve(ops.size());
  for (const LedgerOp& op : ops) internal_keys.push_back(EncodeKey(slot.number, op.ns, op.key));
  // Learn what each write replaces: the current value size per distinct key,
  // nullopt when absent, then updated as the batch's own ops apply.
  absl::flat_hash_map<std::string_view, std::optional<size_t>> current;
  {
    std::vector<rocksdb::Slice> distinct;
    for (const std::string& key : internal_keys) {
      if (current.emplace(key, std::nullopt).second) distinct.emplace_back(key);
    }
    std::vector<rocksdb::PinnableSlice> values(distinct.size());
    std::vector<rocksdb::Status> statuses(distinct.size());
    storage_.db()->MultiGet(storage_.point_read_options(), slot.cf.get(), distinct.size(),
                            distinct.data(), values.data(), statuses.data());
    for (size_t i = 0; i < distinct.size(); ++i) {
      if (statuses[i].ok()) {
        current[std::string_view(distinct[i].data(), distinct[i].size())] = values[i].size();
      } else if (!statuses[i].IsNotFound()) {
        return FromRocksStatus(statuses[i], StrCat("tenant \"", slot.id, "\": write"));
      }
    }
  }
  AccountedBatch batch(slot, 0);
  for (size_t i = 0; i < ops.size(); ++i) {
    std::optional<size_t>& size = current[internal_keys[i]];
    rocksdb::Status s = batch.Add(ops[i], internal_keys[i], size);
    if (!s.ok()) return FromRocksStatus(s, StrCat("tenant \"", slot.id, "\": write"));
    if (ops[i].is_put) {
      size = ops[i].value.size();
    } else {
      size.reset();
    }
  }
  return Commit(slot, batch, "write");
}

absl::Status UsageLedger::ApplyKnown(TenantSlot& slot, const std::vector<KnownWrite>& writes) {
  if (writes.empty()) return absl::OkStatus();
  // Shared: Recount and DeleteRange, which take it exclusively, must not see
  // the range change under them.
  absl::ReaderMutexLock range_lock(&slot.range_mu);
  AccountedBatch batch(slot, 0);
  for (const KnownWrite& w : writes) {
    std::string key = EncodeKey(slot.number, w.op.ns, w.op.key);
    rocksdb::Status s = batch.Add(w.op, key, w.old_size);
    if (!s.ok()) return FromRocksStatus(s, StrCat("tenant \"", slot.id, "\": jobs write"));
  }
  return Commit(slot, batch, "jobs write");
}

absl::Status UsageLedger::Import(TenantSlot& slot, const std::vector<LedgerOp>& puts,
                                 rocksdb::ColumnFamilyHandle* source) {
  if (puts.empty()) return absl::OkStatus();
  std::string context = StrCat("tenant \"", slot.id, "\": adopt");
  // Exclusive: the sizes read below must be the sizes replaced.
  absl::WriterMutexLock range_lock(&slot.range_mu);
  TENANCY_RETURN_IF_ERROR(CheckWriteFence(slot));
  std::vector<std::string> internal_keys;
  internal_keys.reserve(puts.size());
  for (const LedgerOp& op : puts) internal_keys.push_back(EncodeKey(slot.number, op.ns, op.key));
  std::vector<rocksdb::Slice> slices(internal_keys.begin(), internal_keys.end());
  std::vector<rocksdb::PinnableSlice> values(puts.size());
  std::vector<rocksdb::Status> statuses(puts.size());
  storage_.db()->MultiGet(storage_.point_read_options(), slot.cf.get(), slices.size(),
                          slices.data(), values.data(), statuses.data());
  AccountedBatch batch(slot, 0);
  for (size_t i = 0; i < puts.size(); ++i) {
    std::optional<size_t> old_size;
    if (statuses[i].ok()) {
      old_size = values[i].size();
    } else if (!statuses[i].IsNotFound()) {
      return FromRocksStatus(statuses[i], context);
    }
    rocksdb::Status s = batch.Add(puts[i], slices[i], old_size);
    if (s.ok()) s = batch.batch().Delete(source, ToSlice(puts[i].key));
    if (!s.ok()) return FromRocksStatus(s, context);
  }
  rocksdb::Status s;
  if (batch.bytes() != 0 || batch.keys() != 0) {
    s = batch.batch().Merge(storage_.meta(), UsageKey(slot.number),
                            EncodeUsageDelta(batch.bytes(), batch.keys()));
  }
  // A bulk load waits out write stalls rather than failing on them.
  rocksdb::WriteOptions write_options = storage_.data_write_options();
  write_options.no_slowdown = false;
  if (s.ok()) s = storage_.Commit(write_options, &batch.batch());
  TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, context));
  slot.used_bytes.fetch_add(batch.bytes());
  slot.used_keys.fetch_add(batch.keys());
  CheckWarning(slot, slot.warned_bytes, slot.used_bytes.load(), slot.quota_bytes.load(), "storage");
  CheckWarning(slot, slot.warned_keys, slot.used_keys.load(), slot.quota_keys.load(), "keys");
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> UsageLedger::DeleteRange(TenantSlot& slot, Namespace ns,
                                                  std::string_view start, std::string_view end) {
  if (start > end) {
    return absl::InvalidArgumentError(StrCat("tenant \"", slot.id, "\": delete range start > end"));
  }
  if (start == end) return 0;
  std::string context = StrCat("tenant \"", slot.id, "\": delete range");
  // Exclusive: the sizes counted below must be the sizes deleted.
  absl::WriterMutexLock range_lock(&slot.range_mu);
  TENANCY_RETURN_IF_ERROR(CheckWriteFence(slot));
  std::string lower = EncodeKey(slot.number, ns, start);
  std::string upper = EncodeKey(slot.number, ns, end);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  read_options.iterate_upper_bound = &upper_slice;
  // Small ranges become point deletes: every range tombstone in a memtable
  // is re-fragmented by each read in RocksDB 7.8, so many small range deletes
  // would slow every later Get of the column family, neighbours included.
  constexpr int64_t kPointDeleteLimit = 1000;
  rocksdb::WriteBatch batch;
  int64_t bytes = 0, count = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(storage_.db()->NewIterator(read_options, slot.cf.get()));
    for (it->Seek(lower_slice); it->Valid(); it->Next()) {
      bytes += static_cast<int64_t>(it->key().size() - kKeyHeaderSize + it->value().size());
      if (++count <= kPointDeleteLimit) {
        TENANCY_RETURN_IF_ERROR(FromRocksStatus(batch.Delete(slot.cf.get(), it->key()), context));
      }
    }
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), context));
  }
  if (count == 0) return 0;
  int64_t keys = ns == Namespace::kKv ? count : 0;
  rocksdb::Status s;
  if (count > kPointDeleteLimit) {
    batch.Clear();
    s = batch.DeleteRange(slot.cf.get(), lower, upper);
  }
  if (s.ok()) {
    s = batch.Merge(storage_.meta(), UsageKey(slot.number), EncodeUsageDelta(-bytes, -keys));
  }
  if (s.ok()) s = storage_.Commit(storage_.data_write_options(), &batch);
  TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, context));
  Release(slot, bytes, keys);
  CheckWarning(slot, slot.warned_bytes, slot.used_bytes.load(), slot.quota_bytes.load(), "storage");
  CheckWarning(slot, slot.warned_keys, slot.used_keys.load(), slot.quota_keys.load(), "keys");
  return static_cast<uint64_t>(count);
}

absl::StatusOr<RecountResult> UsageLedger::Recount(TenantSlot& slot, bool repair) {
  std::string context = StrCat("tenant \"", slot.id, "\": recount");
  absl::WriterMutexLock range_lock(&slot.range_mu);
  std::string lower = TenantRangeStart(slot.number);
  std::string upper = TenantRangeEnd(slot.number);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  read_options.iterate_upper_bound = &upper_slice;
  read_options.fill_cache = false;
  int64_t bytes = 0, keys = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(storage_.db()->NewIterator(read_options, slot.cf.get()));
    for (it->Seek(lower_slice); it->Valid(); it->Next()) {
      rocksdb::Slice key = it->key();
      if (key.size() < kKeyHeaderSize) continue;  // never written by us
      bytes += static_cast<int64_t>(key.size() - kKeyHeaderSize + it->value().size());
      if (static_cast<Namespace>(key[kTenantPrefixSize]) == Namespace::kKv) ++keys;
    }
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), context));
  }
  RecountResult result;
  result.counted = Usage{static_cast<uint64_t>(bytes), static_cast<uint64_t>(keys)};
  result.recorded = Usage{static_cast<uint64_t>(std::max<int64_t>(0, slot.used_bytes.load())),
                          static_cast<uint64_t>(std::max<int64_t>(0, slot.used_keys.load()))};
  if (repair && !(result.counted == result.recorded)) {
    rocksdb::WriteBatch batch;
    rocksdb::Status s =
        batch.Put(storage_.meta(), UsageKey(slot.number), EncodeUsageDelta(bytes, keys));
    if (s.ok()) s = storage_.Commit(storage_.data_write_options(), &batch);
    TENANCY_RETURN_IF_ERROR(storage_.WriteError(s, context));
    slot.used_bytes.store(bytes);
    slot.used_keys.store(keys);
    result.repaired = true;
    options_.logger->Log(
        LogLevel::kWarning,
        absl::StrFormat("tenant \"%s\": usage ledger repaired (bytes %d -> %d, "
                        "keys %d -> %d)",
                        slot.id, result.recorded.bytes, bytes, result.recorded.keys, keys));
  }
  return result;
}

absl::Mutex& UsageLedger::KeyLock(uint64_t tenant, Namespace ns, std::string_view key) {
  size_t h =
      absl::HashOf(tenant, static_cast<uint8_t>(ns), absl::string_view(key.data(), key.size()));
  return key_locks_[h & (kKeyLockStripes - 1)];
}

}  // namespace tenancy::internal
