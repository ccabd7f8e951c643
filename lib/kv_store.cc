// KvStore: a tenant's key-value store over the UsageLedger (writes) and
// bounded reads of its own range.

#include "tenancy/kv_store.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "access.h"
#include "key_encoding.h"
#include "meta_records.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "usage_ledger.h"

namespace tenancy {

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
using internal::Namespace;
using internal::TenantSlot;

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

constexpr char kCursorForward = 'f';
constexpr char kCursorReverse = 'r';

}  // namespace

absl::StatusOr<std::string> KvStore::Get(std::string_view key) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  internal::RecordCall(slot, CallKind::kGet);
  internal::EncodedKey internal_key(slot.number, Namespace::kKv, key);
  std::string value;
  rocksdb::Status s = engine.storage->db()->Get(engine.storage->point_read_options(), slot.cf.get(),
                                                ToSlice(internal_key.view()), &value);
  if (s.ok()) return value;
  if (s.IsNotFound()) {
    return absl::NotFoundError(internal::StrCat("tenant \"", slot.id, "\": no such key"));
  }
  return internal::FromRocksStatus(s, internal::StrCat("tenant \"", slot.id, "\": get"));
}

absl::StatusOr<std::vector<std::optional<std::string>>> KvStore::MultiGet(
    const std::vector<std::string>& keys) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  for (const std::string& key : keys)
    TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  internal::RecordCall(slot, CallKind::kGet);
  std::vector<std::string> internal_keys;
  std::vector<rocksdb::Slice> slices;
  internal_keys.reserve(keys.size());
  for (const std::string& key : keys) {
    internal_keys.push_back(internal::EncodeKey(slot.number, Namespace::kKv, key));
  }
  for (const std::string& key : internal_keys) slices.emplace_back(key);
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  engine.storage->db()->MultiGet(engine.storage->point_read_options(), slot.cf.get(), slices.size(),
                                 slices.data(), values.data(), statuses.data());
  std::vector<std::optional<std::string>> result(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) {
      result[i] = values[i].ToString();
    } else if (!statuses[i].IsNotFound()) {
      return internal::FromRocksStatus(statuses[i],
                                       internal::StrCat("tenant \"", slot.id, "\": multiget"));
    }
  }
  return result;
}

absl::Status KvStore::Put(std::string_view key, std::string_view value) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateValue(slot, value));
  internal::RecordCall(slot, CallKind::kPut);
  return engine.ledger->ApplyOne(slot, internal::LedgerOp{Namespace::kKv, true, key, value});
}

absl::Status KvStore::Delete(std::string_view key) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  internal::RecordCall(slot, CallKind::kDelete);
  return engine.ledger->ApplyOne(slot, internal::LedgerOp{Namespace::kKv, false, key, {}});
}

absl::Status KvStore::Write(const WriteBatch& batch) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  std::vector<internal::LedgerOp> ops;
  ops.reserve(batch.size());
  for (const WriteBatch::Op& op : batch.ops()) {
    TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, op.key));
    bool is_put = op.type == WriteBatch::OpType::kPut;
    if (is_put) TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateValue(slot, op.value));
    ops.push_back(internal::LedgerOp{Namespace::kKv, is_put, op.key, op.value});
  }
  internal::RecordCall(slot, CallKind::kBatch);
  return engine.ledger->Apply(slot, ops);
}

absl::StatusOr<uint64_t> KvStore::DeleteRange(std::string_view start, std::string_view end) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, start));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, end));
  internal::RecordCall(slot, CallKind::kDelete);
  return engine.ledger->DeleteRange(slot, Namespace::kKv, start, end);
}

absl::StatusOr<ScanResult> KvStore::Scan(const ScanOptions& options) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
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
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, options.prefix));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, options.start));
  if (options.end.has_value())
    TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, *options.end));
  internal::RecordCall(slot, CallKind::kScan);

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
      return absl::InvalidArgumentError(
          internal::StrCat("tenant \"", slot.id, "\": cursor does not belong to this scan"));
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
                                static_cast<Namespace>(static_cast<uint8_t>(Namespace::kKv) + 1));
  rocksdb::Slice lower_slice(lower_key), upper_slice(upper_key);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(
      engine.storage->db()->NewIterator(read_options, slot.cf.get()));
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
  TENANCY_RETURN_IF_ERROR(
      internal::FromRocksStatus(it->status(), internal::StrCat("tenant \"", slot.id, "\": scan")));
  return result;
}

std::string KvStore::ScanCursorAfter(const ScanOptions& options, std::string_view last_key) {
  std::string cursor;
  cursor.reserve(last_key.size() + 1);
  cursor.push_back(options.reverse ? kCursorReverse : kCursorForward);
  cursor.append(last_key);
  return cursor;
}

absl::StatusOr<RecountResult> KvStore::Recount(bool repair) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  return internal::Access::Parts(tenant_).ledger->Recount(slot, repair);
}

absl::StatusOr<uint64_t> KvStore::ApproximatePhysicalBytes() const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  CallGuard guard(slot);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  std::string start = internal::TenantRangeStart(slot.number);
  std::string end = internal::TenantRangeEnd(slot.number);
  rocksdb::Range range(start, end);
  rocksdb::SizeApproximationOptions size_options;
  size_options.include_memtables = true;
  size_options.include_files = true;
  uint64_t size = 0;
  TENANCY_RETURN_IF_ERROR(
      internal::FromRocksStatus(internal::Access::Parts(tenant_).storage->db()->GetApproximateSizes(
                                    size_options, slot.cf.get(), &range, 1, &size),
                                internal::StrCat("tenant \"", slot.id, "\": physical size")));
  return size;
}

}  // namespace tenancy
