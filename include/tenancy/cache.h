// Cache: an in-memory, sharded, tenant-scoped key-value cache with TTL, atomic
// increment, prefix delete and a per-tenant memory budget.
//
// Two ways in:
//   * Tenant::cache() returns a TenantCache: one tenant's view of its Engine's
//     cache, checking the tenant's state and limits like KvStore does. This is
//     what hosts use.
//   * Cache is the cache itself (EngineOptions::cache, or standalone from
//     Cache::Create). Tenants are named to it by their internal tenant number
//     (the one the TenantRegistry assigns; never the id text).
//
//   tenancy::TenantCache cache = tenant.cache();
//   absl::Status s = cache.Set("session:42", blob, std::chrono::minutes(5));
//   auto hits = cache.Increment("hits:/home", 1);
//
// Every entry belongs to exactly one tenant: two tenants may use the same key
// bytes and never see each other's entries. Keys and values are arbitrary
// bytes (empty, 0x00 and 0xFF included).
//
// Memory. Each entry is charged
//     key.size() + value.size() + kCacheEntryOverheadBytes
// against its tenant's budget and against the global budget. Two rules bound
// the memory:
//   * Tenant budget (CacheOptions::default_tenant_budget_bytes, or the value
//     given to SetTenantBudget). When a write takes a tenant past its budget,
//     that tenant's own least recently used entries are evicted until it fits.
//     A tenant's budget never causes another tenant's entries to be evicted.
//   * Global budget (CacheOptions::global_budget_bytes). Tenant budgets may add
//     up to more than the global budget (overcommit). When a write takes the
//     total past it, entries are evicted from tenants holding more than their
//     fair share, where fair share = global budget / number of tenants that
//     hold entries: the writer's own entries if the writer is over its fair
//     share, otherwise the least recently used entries of the largest tenant
//     (chosen when the pressure starts and kept while it stays over its fair
//     share). So a tenant holding no more than its fair share never loses an
//     entry because another tenant filled the cache.
// "Least recently used" is approximated in two ways, both for speed. Within
// a shard, a write moves its entry to the front of the tenant's list but a
// hit only marks the entry; eviction moves a marked entry to the front once
// instead of evicting it (CLOCK's second chance), so entries read since they
// were last passed over are kept. Across shards, as in RocksDB's sharded LRU
// cache, eviction takes the tenant's entries in the shard being written
// first, then in the other shards.
// Budgets may be passed for a moment while concurrent writers race; each
// writer evicts before it returns, so a quiescent cache is within them.
//
// Expiry. An expired entry is never returned. Its memory is reclaimed when it
// is next touched, when a shard is under budget pressure (expired entries go
// before live ones), and a few at a time on every write to its shard, from a
// per-shard heap ordered by expiry time: no operation scans the cache.
//
// Thread safety: Cache and TenantCache are safe for concurrent access from
// multiple threads without any external synchronization. Increment is atomic:
// concurrent increments of one key never lose an update. CacheOptions and
// CacheStats are plain values (not thread-safe; copy them).

#ifndef TENANCY_CACHE_H_
#define TENANCY_CACHE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tenancy/tenant.h"

namespace tenancy {

// Bytes charged per entry on top of its key and value: the cache's own
// bookkeeping (entry header with its LRU links, hash-set slot, expiry-heap
// slot, allocator header), rounded up. Part of the contract: budgets and
// CacheStats::bytes use it.
inline constexpr size_t kCacheEntryOverheadBytes = 128;

// How a Cache is built. Every field is read once, by Cache::Create.
// Intentionally copyable.
struct CacheOptions {
  // Clock used for TTLs. Tests inject a fake one.
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // -------------------------------------------------------------------
  // Limits

  // Upper bound on the bytes charged for all entries of all tenants.
  // Must be > 0. Default: 256 MiB. Fixed at Create.
  size_t global_budget_bytes = size_t{256} << 20;

  // Bytes a tenant may hold when it has no override (see
  // Cache::SetTenantBudget). Must be > 0. Default: 16 MiB. Fixed at Create.
  size_t default_tenant_budget_bytes = size_t{16} << 20;

  // Longest TTL a caller may ask for; a longer one is INVALID_ARGUMENT.
  // Must be > 0. Default: 365 days. Fixed at Create.
  std::chrono::nanoseconds max_ttl = std::chrono::hours(24 * 365);

  // -------------------------------------------------------------------
  // Performance

  // Number of independently locked shards; rounded up to a power of two,
  // at most 1024. More shards mean less lock contention and a less exact
  // LRU order across a tenant's entries. Must be >= 1. Default: 16.
  // Fixed at Create.
  size_t shard_count = 16;

  // -------------------------------------------------------------------
  // Behavior

  // Source of the current time for TTLs. Must be non-empty, monotonic and
  // safe to call from many threads at once; it is called with a shard lock
  // held, so it must not call back into the cache.
  // Default: std::chrono::steady_clock::now. Fixed at Create.
  Clock clock = [] { return std::chrono::steady_clock::now(); };
};

// Counters for one tenant (Cache::TenantStats) or for the whole cache
// (Cache::TotalStats). Intentionally copyable.
struct CacheStats {
  // Entries held now, live or expired but not yet reclaimed.
  uint64_t entries = 0;
  // Bytes charged for them (see kCacheEntryOverheadBytes).
  uint64_t bytes = 0;
  // The budget in force: the tenant's effective budget, or the global one.
  uint64_t budget_bytes = 0;
  // Get calls that returned a value / that returned NOT_FOUND. A tenant's
  // misses count from its first write (again after DropTenant); misses of a
  // tenant the cache has never held anything for count in TotalStats only.
  uint64_t hits = 0;
  uint64_t misses = 0;
  // Live entries removed to keep a budget.
  uint64_t evictions = 0;
  // Expired entries reclaimed.
  uint64_t expirations = 0;
};

class Cache {
 public:
  // Returns a new, empty cache. Caller owns the result.
  // INVALID_ARGUMENT if a budget, max_ttl or shard_count is zero, or the
  // clock is empty.
  static absl::StatusOr<std::unique_ptr<Cache>> Create(CacheOptions options);

  Cache() = default;
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  virtual ~Cache() = default;

  // Returns a copy of the live value stored under `key` for `tenant`.
  // NOT_FOUND if there is none or it has expired. Counts a hit or a miss.
  // A hit marks the entry as recently used (see "Memory" above).
  virtual absl::StatusOr<std::string> Get(uint64_t tenant, std::string_view key) = 0;

  // Stores `value` under `key` for `tenant`, replacing any previous value and
  // its TTL. With a `ttl` the entry expires that long after now; without one
  // it lives until deleted or evicted. The entry becomes the tenant's most
  // recently used; older entries may be evicted to keep the budgets.
  // Returns
  //   INVALID_ARGUMENT if `ttl` is <= 0 or > CacheOptions::max_ttl;
  //   INVALID_ARGUMENT with ErrorReason::kTooLarge (status.h) if the entry's
  //     charge is over the tenant's budget or the global budget, so it could
  //     never be held, or the key or the value is 4 GiB or longer. This is a
  //     size problem of the request, like a value over a size limit, not a
  //     quota (so not kStorageQuota, HTTP 413 rather than 507): the cache
  //     makes room by evicting, it never refuses a write because it is full.
  // On any error nothing is changed.
  virtual absl::Status Set(uint64_t tenant, std::string_view key, std::string_view value,
                           std::optional<std::chrono::nanoseconds> ttl = std::nullopt) = 0;

  // Removes `key` of `tenant`. Idempotent: removing an absent key is fine.
  // Returns true if a live entry was removed.
  virtual bool Delete(uint64_t tenant, std::string_view key) = 0;

  // Atomically adds `by` to the integer stored under `key` and returns the
  // new value. The value is stored as its decimal text (Get returns "42").
  // An absent or expired key counts as 0 and is created; `ttl`, if given,
  // applies to a key created by this call only, so an existing counter keeps
  // its expiry (a fixed-window counter: Increment(t, k, 1, window)).
  // Returns
  //   INVALID_ARGUMENT if the stored value is not a decimal int64 (an
  //     optional '-' then digits, nothing else, within int64's range) or
  //     `ttl` is bad as for Set;
  //   OUT_OF_RANGE if the result would overflow int64;
  //   INVALID_ARGUMENT with ErrorReason::kTooLarge as for Set.
  // On any error nothing is changed.
  virtual absl::StatusOr<int64_t> Increment(
      uint64_t tenant, std::string_view key, int64_t by,
      std::optional<std::chrono::nanoseconds> ttl = std::nullopt) = 0;

  // Removes every entry of `tenant` whose key starts with `prefix` (all of
  // them for an empty prefix). Returns the number of live entries removed.
  // Cost is proportional to the tenant's entries, not the cache's.
  // Not atomic with respect to concurrent writers: an entry written while it
  // runs may survive it.
  virtual size_t DeletePrefix(uint64_t tenant, std::string_view prefix) = 0;

  // Removes every entry of `tenant` and resets its counters; for a tenant
  // that is being purged or disabled. The budget override, if any, stays (a
  // disabled tenant that comes back keeps its spec); the Engine removes a
  // purged tenant's override with SetTenantBudget(tenant, std::nullopt).
  // Entries written concurrently with this call may survive it: stop writes
  // for the tenant first.
  virtual void DropTenant(uint64_t tenant) = 0;

  // Sets the budget of `tenant` to `bytes`, or back to
  // CacheOptions::default_tenant_budget_bytes for std::nullopt. Live: a
  // lower budget evicts the tenant's least recently used entries before this
  // returns. A budget of 0 keeps the tenant out of the cache (every Set is
  // refused as too large).
  virtual void SetTenantBudget(uint64_t tenant, std::optional<size_t> bytes) = 0;

  // Counters of one tenant; zero for a tenant the cache has not seen.
  virtual CacheStats TenantStats(uint64_t tenant) = 0;

  // Counters of the whole cache. Each shard is read atomically, the whole
  // is not a single snapshot under concurrent writes.
  virtual CacheStats TotalStats() = 0;
};

// One tenant's part of its Engine's cache (EngineOptions::cache). A cheap
// handle from Tenant::cache(); copying it copies a Tenant handle.
//
// Each call checks the tenant's state, as KvStore does, and counts as a call
// of kind CallKind::kCache in the tenant's request counters (Stats excepted):
//   * Get needs the tenant readable (active or read-only);
//   * Set, Increment, Delete and DeletePrefix need it writable: a read-only
//     tenant's cache is read-only too, because "read-only" is a promise that
//     nothing the tenant holds changes.
// Disabling or purging a tenant drops all its entries (and a write racing the
// transition removes what it wrote), so a tenant enabled again starts with an
// empty cache. Making a tenant read-only keeps its entries.
//
// The tenant's budget is its spec's Quota::cache_bytes, or the cache's
// CacheOptions::default_tenant_budget_bytes when that is 0; it is applied when
// the engine loads, creates or updates the tenant, live (a lower budget evicts
// the tenant's least recently used entries at once).
//
// Status codes common to every call:
//   PERMISSION_DENIED  tenant disabled (kTenantDisabled) or, for writes,
//                      read-only (kTenantReadOnly)
//   NOT_FOUND          tenant purged (kTenantDeleted); for Get, the key
//   INVALID_ARGUMENT   a key over EngineOptions::max_key_bytes or a value over
//                      the tenant's value limit (Quota::max_value_bytes, else
//                      EngineOptions::max_value_bytes), or an entry that could
//                      never fit the tenant's budget (all kTooLarge); a bad TTL
// Messages name the tenant by its id.
class TenantCache {
 public:
  // Intentionally copyable: a TenantCache is a Tenant handle.
  TenantCache(const TenantCache&) = default;
  TenantCache& operator=(const TenantCache&) = default;

  const Tenant& tenant() const { return tenant_; }

  // The live value of `key`, as Cache::Get. NOT_FOUND if absent or expired.
  absl::StatusOr<std::string> Get(std::string_view key) const;

  // Stores `value` under `key`, as Cache::Set: a `ttl` must be in
  // (0, CacheOptions::max_ttl]; without one the entry lives until deleted or
  // evicted. The cache makes room by evicting the tenant's own least recently
  // used entries: a write is never refused because the cache is full.
  absl::Status Set(std::string_view key, std::string_view value,
                   std::optional<std::chrono::nanoseconds> ttl = std::nullopt) const;

  // Removes `key`. Idempotent. Returns true if a live entry was removed.
  absl::StatusOr<bool> Delete(std::string_view key) const;

  // Atomically adds `by` to the decimal int64 stored under `key` (absent: 0)
  // and returns the result, as Cache::Increment: `ttl` applies only to a key
  // this call creates. INVALID_ARGUMENT if the stored value is not a decimal
  // int64; OUT_OF_RANGE if the result would overflow. Nothing changes on an
  // error.
  absl::StatusOr<int64_t> Increment(
      std::string_view key, int64_t by = 1,
      std::optional<std::chrono::nanoseconds> ttl = std::nullopt) const;

  // Removes every entry whose key starts with `prefix` (all for an empty
  // prefix); returns how many live entries were removed.
  absl::StatusOr<size_t> DeletePrefix(std::string_view prefix) const;

  // The tenant's counters and budget now (Cache::TenantStats). Never fails;
  // not counted as a call.
  CacheStats Stats() const;

 private:
  friend class Tenant;
  explicit TenantCache(Tenant tenant) : tenant_(std::move(tenant)) {}

  Tenant tenant_;
};

}  // namespace tenancy

#endif  // TENANCY_CACHE_H_
