// KvStore: one tenant's key-value store. Keys and values are arbitrary bytes;
// the empty key is a valid key. Every read and scan is bounded to the tenant's
// own key range with iterator bounds, so no call can see a neighbour's data.
//
// Every write commits its data and the tenant's usage delta in one RocksDB
// WriteBatch, so usage stays exact across crashes. A write that would pass the
// tenant's quota is refused before anything is written (RESOURCE_EXHAUSTED with
// reason kStorageQuota or kKeyQuota). Deletes are always admitted.
//
// Status codes common to every call:
//   PERMISSION_DENIED  tenant disabled (kTenantDisabled) or, for writes,
//                      read-only (kTenantReadOnly)
//   NOT_FOUND          tenant purged (kTenantDeleted); for Get, the key
//   INVALID_ARGUMENT   key or value over its limit (kTooLarge), bad options
//   UNAVAILABLE        RocksDB refused a write to avoid a stall (retry later)
//   INTERNAL / DATA_LOSS  RocksDB I/O or corruption errors
//
// Thread safety: KvStore and WriteBatch are cheap values. KvStore is safe for
// concurrent access from multiple threads without any external
// synchronization. WriteBatch is not thread-safe.

#ifndef TENANCY_KV_STORE_H_
#define TENANCY_KV_STORE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tenancy/tenant.h"

namespace tenancy {

// An atomic group of puts and deletes. Applied in order: a later operation on
// the same key wins. Intentionally copyable.
class WriteBatch {
 public:
  enum class OpType { kPut, kDelete };
  struct Op {
    OpType type;
    std::string key;
    std::string value;  // empty for kDelete
  };

  WriteBatch() = default;

  void Put(std::string_view key, std::string_view value);
  void Delete(std::string_view key);
  void Clear() { ops_.clear(); }

  size_t size() const { return ops_.size(); }
  bool empty() const { return ops_.empty(); }
  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::vector<Op> ops_;
};

struct KeyValue {
  std::string key;
  std::string value;

  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

struct ScanOptions {
  // Only keys that start with `prefix`.
  std::string prefix;
  // Only keys >= start (inclusive). Empty: no lower bound beyond the prefix.
  std::string start;
  // Only keys < end (exclusive). nullopt: no upper bound beyond the prefix.
  std::optional<std::string> end;
  // At most this many items; must be in [1, KvStore::kMaxScanLimit].
  size_t limit = 100;
  // At most this many bytes of keys and values in one page: a page stops
  // before the item that would pass it (and continues from there through
  // the cursor), but always holds at least one item whatever its size.
  // Bounds the memory a scan holds. Must be >= 1. Default: 16 MiB.
  size_t max_bytes = size_t{16} << 20;
  // Descending key order when true.
  bool reverse = false;
  // Continue after a previous page: ScanResult::cursor of the same options
  // (or KvStore::ScanCursorAfter). Keys are compared exclusively, so a
  // cursor works at a key of the maximum length.
  std::string cursor;
};

struct ScanResult {
  std::vector<KeyValue> items;
  // Opaque; non-empty when more items may follow. Pass it back in
  // ScanOptions::cursor with otherwise identical options.
  std::string cursor;
};

// What Recount found.
struct RecountResult {
  Usage counted;          // from a scan of the tenant's range
  Usage recorded;         // the ledger before the recount
  bool repaired = false;  // the ledger was set to `counted`
};

class KvStore {
 public:
  static constexpr size_t kMaxScanLimit = 10000;

  // Intentionally copyable: a KvStore is a Tenant handle.
  KvStore(const KvStore&) = default;
  KvStore& operator=(const KvStore&) = default;

  const Tenant& tenant() const { return tenant_; }

  // The value of `key`, or NOT_FOUND.
  absl::StatusOr<std::string> Get(std::string_view key) const;

  // Values of `keys`, in the same order; nullopt where a key is absent.
  absl::StatusOr<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) const;

  // Sets `key` to `value`.
  absl::Status Put(std::string_view key, std::string_view value) const;

  // Removes `key`. OK when it is absent (idempotent).
  absl::Status Delete(std::string_view key) const;

  // Applies `batch` atomically: all of it or nothing. An empty batch is OK.
  absl::Status Write(const WriteBatch& batch) const;

  // Removes every key in [start, end). INVALID_ARGUMENT if start > end.
  // Returns the number of keys removed.
  absl::StatusOr<uint64_t> DeleteRange(std::string_view start, std::string_view end) const;

  // One page of keys in order; see ScanOptions.
  absl::StatusOr<ScanResult> Scan(const ScanOptions& options) const;

  // The cursor that continues a scan with `options` after `last_key`, for a
  // caller that stops short of the page it was given (a response budget).
  static std::string ScanCursorAfter(const ScanOptions& options, std::string_view last_key);

  // Scans the tenant's whole range (all namespaces) and compares the result
  // with the usage ledger; when `repair`, sets the ledger to what was counted.
  // Writes to this tenant wait while a recount runs.
  absl::StatusOr<RecountResult> Recount(bool repair) const;

  // Approximate bytes on disk (and in memtables) for the tenant's range, from
  // RocksDB. Compressed and including internal prefixes, unlike usage().
  absl::StatusOr<uint64_t> ApproximatePhysicalBytes() const;

 private:
  friend class Tenant;
  explicit KvStore(Tenant tenant) : tenant_(std::move(tenant)) {}

  Tenant tenant_;
};

}  // namespace tenancy

#endif  // TENANCY_KV_STORE_H_
