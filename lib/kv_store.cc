// KvStore and the data half of EngineCore: exact accounting, bounded reads.

#include "tenancy/kv_store.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "str_cat.h"
#include "absl/strings/str_format.h"
#include "engine_core.h"
#include "meta_records.h"
#include "rocksdb_status.h"
#include "status_macros.h"

namespace tenancy {
namespace internal {
namespace {

int64_t EntryBytes(std::string_view key, size_t value_size) {
  return static_cast<int64_t>(key.size() + value_size);
}

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
  } while (!used.compare_exchange_weak(current, current + delta,
                                       std::memory_order_relaxed));
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

  WriteLocks(absl::Mutex& range_mu, std::vector<absl::Mutex*> stripes)
      ABSL_NO_THREAD_SAFETY_ANALYSIS : range_mu_(range_mu),
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

// A failed RocksDB call of a write, as a Status naming the tenant. The message
// is built only on failure: an allocation per write is measurable.
absl::Status WriteError(const TenantSlot& slot, const rocksdb::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return FromRocksStatus(status,
                         internal::StrCat("tenant \"", slot.id, "\": write"));
}

rocksdb::Slice ToSlice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

}  // namespace

absl::Status EngineCore::ValidateKey(const TenantSlot& slot,
                                     std::string_view key) const {
  if (key.size() > options_.max_key_bytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
                     absl::StrFormat("tenant \"%s\": key of %d bytes is over "
                                     "the limit of %d",
                                     slot.id, key.size(), options_.max_key_bytes));
  }
  return absl::OkStatus();
}

absl::Status EngineCore::ValidateValue(const TenantSlot& slot,
                                       std::string_view value) const {
  uint64_t limit = options_.max_value_bytes;
  uint64_t tenant_limit = slot.max_value_bytes.load(std::memory_order_relaxed);
  if (tenant_limit != 0) limit = std::min(limit, tenant_limit);
  if (value.size() > limit) {
    return MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
                     absl::StrFormat("tenant \"%s\": value of %d bytes is over "
                                     "the limit of %d",
                                     slot.id, value.size(), limit));
  }
  return absl::OkStatus();
}

void EngineCore::CheckWarning(TenantSlot& slot, std::atomic<bool>& warned,
                              int64_t used, uint64_t limit,
                              std::string_view what) {
  bool above = limit != 0 && static_cast<double>(used) >=
                                 options_.quota_warning_fraction *
                                     static_cast<double>(limit);
  if (above) {
    if (!warned.exchange(true)) {
      Log(LogLevel::kWarning,
          absl::StrFormat("tenant \"%s\": %s at %.0f%% of quota (used=%d, "
                          "limit=%d)",
                          slot.id, what, 100.0 * used / limit, used, limit));
    }
  } else if (warned.load(std::memory_order_relaxed)) {
    warned.store(false);  // re-arm: the next crossing warns again
  }
}

absl::Status EngineCore::ReserveUsage(TenantSlot& slot, int64_t delta_bytes,
                                      int64_t delta_keys) {
  uint64_t bytes_limit = slot.quota_bytes.load(std::memory_order_relaxed);
  uint64_t keys_limit = slot.quota_keys.load(std::memory_order_relaxed);
  if (!TryReserve(slot.used_bytes, delta_bytes, bytes_limit)) {
    return MakeError(
        absl::StatusCode::kResourceExhausted, ErrorReason::kStorageQuota,
        absl::StrFormat("tenant \"%s\": storage quota exceeded (used=%d, "
                        "write=+%d, limit=%d)",
                        slot.id, slot.used_bytes.load(), delta_bytes, bytes_limit));
  }
  if (!TryReserve(slot.used_keys, delta_keys, keys_limit)) {
    slot.used_bytes.fetch_sub(delta_bytes);
    return MakeError(
        absl::StatusCode::kResourceExhausted, ErrorReason::kKeyQuota,
        absl::StrFormat("tenant \"%s\": key quota exceeded (keys=%d, "
                        "write=+%d, limit=%d)",
                        slot.id, slot.used_keys.load(), delta_keys, keys_limit));
  }
  CheckWarning(slot, slot.warned_bytes, slot.used_bytes.load(), bytes_limit,
               "storage");
  CheckWarning(slot, slot.warned_keys, slot.used_keys.load(), keys_limit, "keys");
  return absl::OkStatus();
}

void EngineCore::ReleaseUsage(TenantSlot& slot, int64_t delta_bytes,
                              int64_t delta_keys) {
  slot.used_bytes.fetch_sub(delta_bytes);
  slot.used_keys.fetch_sub(delta_keys);
}

absl::Status EngineCore::ApplyWrite(TenantSlot& slot, const LedgerOp& op) {
  // The locks WriteLocks takes for one key, without its vector.
  absl::Mutex& stripe = KeyLock(slot.number, op.ns, op.key);
  absl::ReaderMutexLock range_lock(&slot.range_mu);
  absl::MutexLock key_lock(&stripe);

  EncodedKey internal_key(slot.number, op.ns, op.key);
  const rocksdb::Slice key_slice = ToSlice(internal_key.view());
  // Learn what the write replaces.
  std::optional<size_t> old_size;
  {
    rocksdb::PinnableSlice old;
    rocksdb::Status s =
        db_->Get(point_read_options_, slot.cf.get(), key_slice, &old);
    if (s.ok()) {
      old_size = old.size();
    } else if (!s.IsNotFound()) {
      return WriteError(slot, s);
    }
  }
  if (!op.is_put && !old_size.has_value()) {
    return absl::OkStatus();  // deleting an absent key changes nothing
  }

  const int64_t key_delta = op.ns == Namespace::kKv ? 1 : 0;
  int64_t delta_bytes = 0, delta_keys = 0;
  // Header, two records' tags and lengths, the usage key and its operand.
  rocksdb::WriteBatch batch(key_slice.size() + op.value.size() + 64);
  rocksdb::Status s;
  if (op.is_put) {
    delta_bytes += EntryBytes(op.key, op.value.size());
    if (old_size.has_value()) {
      delta_bytes -= EntryBytes(op.key, *old_size);
    } else {
      delta_keys += key_delta;
    }
    s = batch.Put(slot.cf.get(), key_slice, ToSlice(op.value));
  } else {
    delta_bytes -= EntryBytes(op.key, *old_size);
    delta_keys -= key_delta;
    s = batch.Delete(slot.cf.get(), key_slice);
  }
  TENANCY_RETURN_IF_ERROR(WriteError(slot, s));
  if (delta_bytes != 0 || delta_keys != 0) {
    TENANCY_RETURN_IF_ERROR(WriteError(
        slot, batch.Merge(meta_cf_, UsageKey(slot.number),
                          EncodeUsageDelta(delta_bytes, delta_keys))));
  }
  TENANCY_RETURN_IF_ERROR(ReserveUsage(slot, delta_bytes, delta_keys));
  absl::Status written = WriteError(slot, Commit(data_write_options_, &batch));
  if (!written.ok()) ReleaseUsage(slot, delta_bytes, delta_keys);
  return written;
}

absl::Status EngineCore::ApplyWrites(TenantSlot& slot,
                                     const std::vector<LedgerOp>& ops) {
  if (ops.empty()) return absl::OkStatus();
  if (ops.size() == 1) return ApplyWrite(slot, ops[0]);
  // Serialise with other writers of the same keys.
  std::vector<absl::Mutex*> stripes;
  stripes.reserve(ops.size());
  for (const LedgerOp& op : ops) stripes.push_back(&KeyLock(slot.number, op.ns, op.key));
  WriteLocks locked(slot.range_mu, std::move(stripes));

  // Learn what each write replaces.
  std::vector<std::string> internal_keys;
  internal_keys.reserve(ops.size());
  for (const LedgerOp& op : ops) {
    internal_keys.push_back(EncodeKey(slot.number, op.ns, op.key));
  }
  // Current value size per distinct key, nullopt when absent.
  absl::flat_hash_map<std::string_view, std::optional<size_t>> current;
  {
    std::vector<rocksdb::Slice> distinct;
    for (const std::string& key : internal_keys) {
      if (current.emplace(key, std::nullopt).second) distinct.emplace_back(key);
    }
    std::vector<rocksdb::PinnableSlice> values(distinct.size());
    std::vector<rocksdb::Status> statuses(distinct.size());
    db_->MultiGet(point_read_options_, slot.cf.get(), distinct.size(),
                  distinct.data(), values.data(), statuses.data());
    for (size_t i = 0; i < distinct.size(); ++i) {
      if (statuses[i].ok()) {
        current[std::string_view(distinct[i].data(), distinct[i].size())] =
            values[i].size();
      } else if (!statuses[i].IsNotFound()) {
        return WriteError(slot, statuses[i]);
      }
    }
  }

  int64_t delta_bytes = 0, delta_keys = 0;
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < ops.size(); ++i) {
    const LedgerOp& op = ops[i];
    std::optional<size_t>& size = current[internal_keys[i]];
    int64_t key_delta = op.ns == Namespace::kKv ? 1 : 0;
    rocksdb::Status s;
    if (op.is_put) {
      delta_bytes += EntryBytes(op.key, op.value.size());
      if (size.has_value()) {
        delta_bytes -= EntryBytes(op.key, *size);
      } else {
        delta_keys += key_delta;
      }
      size = op.value.size();
      s = batch.Put(slot.cf.get(), internal_keys[i], op.value);
    } else {
      if (!size.has_value()) continue;  // deleting an absent key changes nothing
      delta_bytes -= EntryBytes(op.key, *size);
      delta_keys -= key_delta;
      size.reset();
      s = batch.Delete(slot.cf.get(), internal_keys[i]);
    }
    TENANCY_RETURN_IF_ERROR(WriteError(slot, s));
  }
  if (batch.Count() == 0) return absl::OkStatus();
  if (delta_bytes != 0 || delta_keys != 0) {
    TENANCY_RETURN_IF_ERROR(WriteError(
        slot, batch.Merge(meta_cf_, UsageKey(slot.number),
                          EncodeUsageDelta(delta_bytes, delta_keys))));
  }
  TENANCY_RETURN_IF_ERROR(ReserveUsage(slot, delta_bytes, delta_keys));
  absl::Status written = WriteError(slot, Commit(data_write_options_, &batch));
  if (!written.ok()) ReleaseUsage(slot, delta_bytes, delta_keys);
  return written;
}

absl::StatusOr<uint64_t> EngineCore::DeleteRange(TenantSlot& slot, Namespace ns,
                                                 std::string_view start,
                                                 std::string_view end) {
  if (start > end) {
    return absl::InvalidArgumentError(
        internal::StrCat("tenant \"", slot.id, "\": delete range start > end"));
  }
  if (start == end) return 0;
  std::string context = internal::StrCat("tenant \"", slot.id, "\": delete range");
  // Exclusive: the sizes counted below must be the sizes deleted.
  absl::WriterMutexLock range_lock(&slot.range_mu);
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
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(read_options, slot.cf.get()));
    for (it->Seek(lower_slice); it->Valid(); it->Next()) {
      bytes += static_cast<int64_t>(it->key().size() - kKeyHeaderSize +
                                    it->value().size());
      if (++count <= kPointDeleteLimit) {
        TENANCY_RETURN_IF_ERROR(
            FromRocksStatus(batch.Delete(slot.cf.get(), it->key()), context));
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
    s = batch.Merge(meta_cf_, UsageKey(slot.number), EncodeUsageDelta(-bytes, -keys));
  }
  if (s.ok()) s = Commit(data_write_options_, &batch);
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(s, context));
  ReleaseUsage(slot, bytes, keys);
  CheckWarning(slot, slot.warned_bytes, slot.used_bytes.load(),
               slot.quota_bytes.load(), "storage");
  CheckWarning(slot, slot.warned_keys, slot.used_keys.load(),
               slot.quota_keys.load(), "keys");
  return static_cast<uint64_t>(count);
}

absl::StatusOr<RecountResult> EngineCore::Recount(TenantSlot& slot, bool repair) {
  std::string context = internal::StrCat("tenant \"", slot.id, "\": recount");
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
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(read_options, slot.cf.get()));
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
        batch.Put(meta_cf_, UsageKey(slot.number), EncodeUsageDelta(bytes, keys));
    if (s.ok()) s = Commit(data_write_options_, &batch);
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(s, context));
    slot.used_bytes.store(bytes);
    slot.used_keys.store(keys);
    result.repaired = true;
    Log(LogLevel::kWarning,
        absl::StrFormat("tenant \"%s\": usage ledger repaired (bytes %d -> %d, "
                        "keys %d -> %d)",
                        slot.id, result.recorded.bytes, bytes,
                        result.recorded.keys, keys));
  }
  return result;
}

}  // namespace internal

// --- WriteBatch ---

void WriteBatch::Put(std::string_view key, std::string_view value) {
  ops_.push_back(Op{OpType::kPut, std::string(key), std::string(value)});
}

void WriteBatch::Delete(std::string_view key) {
  ops_.push_back(Op{OpType::kDelete, std::string(key), std::string()});
}

// --- KvStore ---

namespace {

using internal::CallGuard;
using internal::EngineCore;
using internal::Namespace;
using internal::TenantSlot;

constexpr char kCursorForward = 'f';
constexpr char kCursorReverse = 'r';

}  // namespace

absl::StatusOr<std::string> KvStore::Get(std::string_view key) const {
  TenantSlot& slot = *tenant_.slot_;
  EngineCore& core = *tenant_.core_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, key));
  core.RecordCall(slot, CallKind::kGet);
  internal::EncodedKey internal_key(slot.number, Namespace::kKv, key);
  std::string value;
  rocksdb::Status s =
      core.db()->Get(core.point_read_options(), slot.cf.get(),
                     internal::ToSlice(internal_key.view()), &value);
  if (s.ok()) return value;
  if (s.IsNotFound()) {
    return absl::NotFoundError(internal::StrCat("tenant \"", slot.id, "\": no such key"));
  }
  return internal::FromRocksStatus(
      s, internal::StrCat("tenant \"", slot.id, "\": get"));
}

absl::StatusOr<std::vector<std::optional<std::string>>> KvStore::MultiGet(
    const std::vector<std::string>& keys) const {
  TenantSlot& slot = *tenant_.slot_;
  EngineCore& core = *tenant_.core_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  for (const std::string& key : keys) TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, key));
  core.RecordCall(slot, CallKind::kGet);
  std::vector<std::string> internal_keys;
  std::vector<rocksdb::Slice> slices;
  internal_keys.reserve(keys.size());
  for (const std::string& key : keys) {
    internal_keys.push_back(internal::EncodeKey(slot.number, Namespace::kKv, key));
  }
  for (const std::string& key : internal_keys) slices.emplace_back(key);
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  core.db()->MultiGet(core.point_read_options(), slot.cf.get(), slices.size(),
                      slices.data(), values.data(), statuses.data());
  std::vector<std::optional<std::string>> result(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) {
      result[i] = values[i].ToString();
    } else if (!statuses[i].IsNotFound()) {
      return internal::FromRocksStatus(
          statuses[i], internal::StrCat("tenant \"", slot.id, "\": multiget"));
    }
  }
  return result;
}

absl::Status KvStore::Put(std::string_view key, std::string_view value) const {
  TenantSlot& slot = *tenant_.slot_;
  EngineCore& core = *tenant_.core_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, key));
  TENANCY_RETURN_IF_ERROR(core.ValidateValue(slot, value));
  core.RecordCall(slot, CallKind::kPut);
  return core.ApplyWrite(slot,
                         internal::LedgerOp{Namespace::kKv, true, key, value});
}

absl::Status KvStore::Delete(std::string_view key) const {
  TenantSlot& slot = *tenant_.slot_;
  EngineCore& core = *tenant_.core_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, key));
  core.RecordCall(slot, CallKind::kDelete);
  return core.ApplyWrite(slot,
                         internal::LedgerOp{Namespace::kKv, false, key, {}});
}

absl::Status KvStore::Write(const WriteBatch& batch) const {
  TenantSlot& slot = *tenant_.slot_;
  EngineCore& core = *tenant_.core_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  std::vector<internal::LedgerOp> ops;
  ops.reserve(batch.size());
  for (const WriteBatch::Op& op : batch.ops()) {
    TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, op.key));
    bool is_put = op.type == WriteBatch::OpType::kPut;
    if (is_put) TENANCY_RETURN_IF_ERROR(core.ValidateValue(slot, op.value));
    ops.push_back(internal::LedgerOp{Namespace::kKv, is_put, op.key, op.value});
  }
  core.RecordCall(slot, CallKind::kBatch);
  return core.ApplyWrites(slot, ops);
}

absl::StatusOr<uint64_t> KvStore::DeleteRange(std::string_view start,
                                              std::string_view end) const {
  TenantSlot& slot = *tenant_.slot_;
  EngineCore& core = *tenant_.core_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, start));
  TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, end));
  core.RecordCall(slot, CallKind::kDelete);
  return core.DeleteRange(slot, Namespace::kKv, start, end);
}

absl::StatusOr<ScanResult> KvStore::Scan(const ScanOptions& options) const {
  TenantSlot& slot = *tenant_.slot_;
  EngineCore& core = *tenant_.core_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  if (options.limit < 1 || options.limit > kMaxScanLimit) {
    return absl::InvalidArgumentError(internal::StrCat(
        "tenant \"", slot.id, "\": scan limit must be in [1, ", kMaxScanLimit, "]"));
  }
  if (options.max_bytes < 1) {
    return absl::InvalidArgumentError(
        internal::StrCat("tenant \"", slot.id, "\": scan max_bytes must be >= 1"));
  }
  TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, options.prefix));
  TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, options.start));
  if (options.end.has_value()) TENANCY_RETURN_IF_ERROR(core.ValidateKey(slot, *options.end));
  core.RecordCall(slot, CallKind::kScan);

  // The user-key window: [lower, upper), upper nullopt meaning "no bound".
  std::string lower = std::max(options.prefix, options.start);
  std::optional<std::string> upper = options.end;
  auto lower_upper_to = [&upper](std::string bound) {
    if (!upper.has_value() || bound < *upper) upper = std::move(bound);
  };
  if (!options.prefix.empty()) {
    std::optional<std::string> successor = internal::PrefixSuccessor(options.prefix);
    if (successor.has_value()) lower_upper_to(std::move(*successor));
  }
  if (!options.cursor.empty()) {
    char direction = options.reverse ? kCursorReverse : kCursorForward;
    if (options.cursor[0] != direction) {
      return absl::InvalidArgumentError(internal::StrCat(
          "tenant \"", slot.id, "\": cursor does not belong to this scan"));
    }
    std::string last = options.cursor.substr(1);
    if (options.reverse) {
      lower_upper_to(std::move(last));
    } else {
      last.push_back('\0');  // the smallest key after `last`
      lower = std::max(lower, last);
    }
  }
  ScanResult result;
  if (upper.has_value() && lower >= *upper) return result;

  std::string lower_key = internal::EncodeKey(slot.number, Namespace::kKv, lower);
  std::string upper_key =
      upper.has_value()
          ? internal::EncodeKey(slot.number, Namespace::kKv, *upper)
          : internal::KeyHeader(slot.number,
                                static_cast<Namespace>(
                                    static_cast<uint8_t>(Namespace::kKv) + 1));
  rocksdb::Slice lower_slice(lower_key), upper_slice(upper_key);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(
      core.db()->NewIterator(read_options, slot.cf.get()));
  if (options.reverse) {
    it->SeekToLast();
  } else {
    it->Seek(lower_slice);
  }
  size_t bytes = 0;
  while (it->Valid()) {
    rocksdb::Slice key = it->key();
    key.remove_prefix(internal::kKeyHeaderSize);
    const size_t item_bytes = key.size() + it->value().size();
    if (result.items.size() == options.limit ||
        (!result.items.empty() && bytes + item_bytes > options.max_bytes)) {
      result.cursor = ScanCursorAfter(options, result.items.back().key);
      break;
    }
    bytes += item_bytes;
    result.items.push_back(KeyValue{key.ToString(), it->value().ToString()});
    if (options.reverse) {
      it->Prev();
    } else {
      it->Next();
    }
  }
  TENANCY_RETURN_IF_ERROR(internal::FromRocksStatus(
      it->status(), internal::StrCat("tenant \"", slot.id, "\": scan")));
  return result;
}

std::string KvStore::ScanCursorAfter(const ScanOptions& options,
                                     std::string_view last_key) {
  std::string cursor;
  cursor.reserve(last_key.size() + 1);
  cursor.push_back(options.reverse ? kCursorReverse : kCursorForward);
  cursor.append(last_key);
  return cursor;
}

absl::StatusOr<RecountResult> KvStore::Recount(bool repair) const {
  TenantSlot& slot = *tenant_.slot_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  return tenant_.core_->Recount(slot, repair);
}

absl::StatusOr<uint64_t> KvStore::ApproximatePhysicalBytes() const {
  TenantSlot& slot = *tenant_.slot_;
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  std::string start = internal::TenantRangeStart(slot.number);
  std::string end = internal::TenantRangeEnd(slot.number);
  rocksdb::Range range(start, end);
  rocksdb::SizeApproximationOptions size_options;
  size_options.include_memtables = true;
  size_options.include_files = true;
  uint64_t size = 0;
  TENANCY_RETURN_IF_ERROR(internal::FromRocksStatus(
      tenant_.core_->db()->GetApproximateSizes(size_options, slot.cf.get(),
                                               &range, 1, &size),
      internal::StrCat("tenant \"", slot.id, "\": physical size")));
  return size;
}

}  // namespace tenancy
