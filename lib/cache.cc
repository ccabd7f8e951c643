// The sharded, tenant-scoped cache behind include/tenancy/cache.h.
//
// Layout. An entry lives in the shard picked by the top bits of
// hash(tenant number, key). Each shard holds, under its own mutex:
//   * a hash set of its entries, looked up by (hash, tenant, key);
//   * one TenantShard per tenant with entries in the shard: that tenant's LRU
//     list there and its bytes there;
//   * a min-heap of the entries that have a TTL, ordered by expiry time.
// Each tenant the cache has seen has one TenantState (its budget, its total
// bytes across shards, its counters, all atomics), kept in a registry.
//
// Why this shape: a hit is one hash, one shard lock, one probe, one read of
// the entry (header, key and value are one allocation) and a reference mark
// instead of a list update (CLOCK; see EvictLocked), with no shared atomic
// but the tenant's hit counter; a write that keeps the tenant within its
// budget touches one shard; a tenant's budget is enforced by evicting from
// that tenant's own lists only, so no write can evict another tenant's
// entries for a per-tenant budget.
//
// Locks. Order: global_mu_, then tenants_mu_, then one shard mutex. No code
// holds two shard mutexes at once, or tenants_mu_ and a shard mutex at once.
//
// Dropping a tenant. DropTenant marks the TenantState dropped and removes it
// from the registry before it empties the shards; writers check the mark under
// the shard lock and, when set, fetch the tenant's new state and retry. A
// writer with the new state that meets entries of the old one in a shard
// DropTenant has not reached yet purges them itself. So a write never lands
// in a dropped state, once DropTenant returns no entry is linked to the state
// it dropped, and each entry is counted in exactly one TenantState.

#include "tenancy/cache.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

// Expiry times are nanoseconds on the options' clock; kNoExpiry means never.
constexpr int64_t kNoExpiry = std::numeric_limits<int64_t>::max();
constexpr uint32_t kNotInHeap = std::numeric_limits<uint32_t>::max();

// Expired entries reclaimed from a shard's heap on each write to it. More than
// one, so the backlog shrinks even when every write adds a TTL entry.
constexpr size_t kReclaimPerWrite = 4;
// Expired entries reclaimed before live ones are evicted under budget pressure.
constexpr size_t kReclaimUnderPressure = 64;
// Bound on victim rounds in one call to RelieveGlobalPressure, so one writer
// does not do unbounded work for others; later writes continue.
constexpr int kMaxGlobalRounds = 64;
constexpr size_t kMaxShards = 1024;
// Longest decimal int64: "-9223372036854775808".
constexpr size_t kMaxDecimalBytes = 20;
// Entries record key and value sizes in 32 bits.
constexpr size_t kMaxPartBytes = std::numeric_limits<uint32_t>::max();

// Everything the cache knows about one tenant across shards.
struct TenantState {
  TenantState(uint64_t n, size_t budget_bytes) : number(n), budget(budget_bytes) {}
  TenantState(const TenantState&) = delete;
  TenantState& operator=(const TenantState&) = delete;

  const uint64_t number;
  std::atomic<size_t> budget;
  // Sum of the tenant's TenantShard::bytes / ::entries. Each change is made
  // under the lock of the shard it concerns, so neither goes below zero.
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> entries{0};
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> expirations{0};
  // Set once, by DropTenant, before it empties the shards.
  std::atomic<bool> dropped{false};
};

struct LruLinks {
  LruLinks* prev;
  LruLinks* next;
};

struct TenantShard;

// One cached value: this header, then the key bytes, then room for
// value_capacity value bytes, in one allocation (LevelDB's LRUHandle does the
// same), so a hit reads one block of memory instead of three. Owned by its
// shard's entry set; all fields are protected by the shard's mutex.
struct Entry : LruLinks {
  // Returns a new entry with `key` and `value` and room for a value of
  // max(value.size(), capacity) bytes. Free it with Delete.
  static Entry* New(std::string_view key, std::string_view value, size_t capacity) {
    capacity = std::max(capacity, value.size());
    void* memory = ::operator new(sizeof(Entry) + key.size() + capacity);
    Entry* e = new (memory) Entry;
    e->key_size = static_cast<uint32_t>(key.size());
    e->value_capacity = static_cast<uint32_t>(capacity);
    if (!key.empty()) std::memcpy(e->data(), key.data(), key.size());
    e->SetValue(value);
    return e;
  }
  static void Delete(Entry* e) {
    e->~Entry();
    ::operator delete(e);
  }

  std::string_view key() const { return {data(), key_size}; }
  std::string_view value() const { return {data() + key_size, value_size}; }
  // REQUIRES: value.size() <= value_capacity.
  void SetValue(std::string_view value) {
    value_size = static_cast<uint32_t>(value.size());
    if (!value.empty()) {
      std::memcpy(data() + key_size, value.data(), value.size());
    }
  }
  // True if a value of `size` bytes can be written in place, leaving at
  // most kSlackBytes unused (and uncharged).
  bool Fits(size_t size) const {
    return size <= value_capacity && value_capacity - size <= kSlackBytes;
  }
  size_t charge() const { return key_size + value_size + kCacheEntryOverheadBytes; }
  uint64_t tenant() const;

  // Unused value room an entry may keep when its value shrinks in place.
  static constexpr size_t kSlackBytes = 32;

  TenantShard* owner = nullptr;
  uint64_t hash = 0;
  int64_t expires_at = kNoExpiry;
  uint32_t heap_index = kNotInHeap;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint32_t value_capacity = 0;
  // Set by a hit; see EvictLocked.
  bool referenced = false;

 private:
  Entry() = default;
  ~Entry() = default;
  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
};

// The bookkeeping is what kCacheEntryOverheadBytes promises to cover: the
// entry header, its hash-set slot, its expiry-heap slot, the unused value
// room it may keep, and the allocator's own header.
static_assert(sizeof(Entry) + 2 * sizeof(Entry*) + Entry::kSlackBytes + 16 <=
                  kCacheEntryOverheadBytes,
              "kCacheEntryOverheadBytes no longer covers an entry");

// One tenant's entries in one shard. Protected by the shard's mutex.
struct TenantShard {
  explicit TenantShard(std::shared_ptr<TenantState> s) : state(std::move(s)) {
    lru.prev = &lru;
    lru.next = &lru;
  }
  TenantShard(const TenantShard&) = delete;
  TenantShard& operator=(const TenantShard&) = delete;

  bool empty() const { return lru.next == &lru; }
  Entry* least_recent() const { return static_cast<Entry*>(lru.prev); }

  const std::shared_ptr<TenantState> state;
  // Circular list; lru.next is the most recently used entry.
  LruLinks lru;
  size_t bytes = 0;
  size_t entries = 0;
};

uint64_t Entry::tenant() const { return owner->state->number; }

// What a lookup compares: an entry of `tenant` named `key`.
struct EntryRef {
  uint64_t hash;
  uint64_t tenant;
  std::string_view key;
};

struct EntryHash {
  using is_transparent = void;
  size_t operator()(const Entry* e) const { return e->hash; }
  size_t operator()(const EntryRef& r) const { return r.hash; }
};

struct EntryEq {
  using is_transparent = void;
  static bool Same(const Entry* e, const EntryRef& r) {
    return e->hash == r.hash && e->tenant() == r.tenant && e->key() == r.key;
  }
  bool operator()(const Entry* a, const Entry* b) const {
    return a == b || Same(a, EntryRef{b->hash, b->tenant(), b->key()});
  }
  bool operator()(const Entry* e, const EntryRef& r) const { return Same(e, r); }
  bool operator()(const EntryRef& r, const Entry* e) const { return Same(e, r); }
};

// A binary min-heap of entries by expires_at; each entry knows its index, so
// one can be removed or re-keyed in O(log n) when it is deleted or rewritten.
class ExpiryHeap {
 public:
  ExpiryHeap() = default;
  ExpiryHeap(const ExpiryHeap&) = delete;
  ExpiryHeap& operator=(const ExpiryHeap&) = delete;

  bool empty() const { return heap_.empty(); }
  Entry* top() const { return heap_.front(); }

  void Insert(Entry* e) {
    e->heap_index = static_cast<uint32_t>(heap_.size());
    heap_.push_back(e);
    SiftUp(e->heap_index);
  }

  void Erase(Entry* e) {
    const size_t i = e->heap_index;
    const size_t last = heap_.size() - 1;
    e->heap_index = kNotInHeap;
    if (i != last) {
      heap_[i] = heap_[last];
      heap_[i]->heap_index = static_cast<uint32_t>(i);
      heap_.pop_back();
      SiftDown(SiftUp(i));
    } else {
      heap_.pop_back();
    }
  }

  // Call after e->expires_at changed.
  void Fix(Entry* e) { SiftDown(SiftUp(e->heap_index)); }

  // Puts `to` where `from` is; they have the same expiry.
  void Replace(Entry* from, Entry* to) {
    to->heap_index = from->heap_index;
    heap_[to->heap_index] = to;
    from->heap_index = kNotInHeap;
  }

 private:
  bool Less(size_t a, size_t b) const { return heap_[a]->expires_at < heap_[b]->expires_at; }
  void Swap(size_t a, size_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->heap_index = static_cast<uint32_t>(a);
    heap_[b]->heap_index = static_cast<uint32_t>(b);
  }
  size_t SiftUp(size_t i) {
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (!Less(i, parent)) break;
      Swap(i, parent);
      i = parent;
    }
    return i;
  }
  void SiftDown(size_t i) {
    const size_t n = heap_.size();
    for (;;) {
      size_t smallest = i;
      const size_t left = 2 * i + 1;
      const size_t right = left + 1;
      if (left < n && Less(left, smallest)) smallest = left;
      if (right < n && Less(right, smallest)) smallest = right;
      if (smallest == i) return;
      Swap(i, smallest);
      i = smallest;
    }
  }

  std::vector<Entry*> heap_;
};

// Aligned so that two shards' mutexes never share a cache line.
struct alignas(64) Shard {
  absl::Mutex mu;
  absl::flat_hash_set<Entry*, EntryHash, EntryEq> entries ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<uint64_t, std::unique_ptr<TenantShard>> tenants ABSL_GUARDED_BY(mu);
  ExpiryHeap expiry ABSL_GUARDED_BY(mu);
  uint64_t bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t hits ABSL_GUARDED_BY(mu) = 0;
  uint64_t misses ABSL_GUARDED_BY(mu) = 0;
  uint64_t evictions ABSL_GUARDED_BY(mu) = 0;
  uint64_t expirations ABSL_GUARDED_BY(mu) = 0;
};

// Why an entry leaves the cache; decides which counter it lands in.
enum class Removal { kDeleted, kEvicted, kExpired };

void LinkFront(TenantShard* ts, Entry* e) {
  e->prev = &ts->lru;
  e->next = ts->lru.next;
  ts->lru.next->prev = e;
  ts->lru.next = e;
}

void Unlink(Entry* e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
}

void MoveToFront(TenantShard* ts, Entry* e) {
  if (ts->lru.next == e) return;
  Unlink(e);
  LinkFront(ts, e);
}

bool IsExpired(const Entry* e, int64_t now) { return now >= e->expires_at; }

// Parses a decimal int64: an optional '-' then one or more digits, nothing
// else. Stricter than absl::SimpleAtoi, which also takes '+' and whitespace.
std::optional<int64_t> ParseDecimal(std::string_view text) {
  bool negative = false;
  if (!text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  // Accumulate as a negative number: its range includes INT64_MIN.
  int64_t value = 0;
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (value < (kMin + digit) / 10) return std::nullopt;
    value = value * 10 - digit;
  }
  if (negative) return value;
  if (value == kMin) return std::nullopt;
  return -value;
}

class ShardedCache final : public Cache {
 public:
  ShardedCache(CacheOptions options, size_t shard_count)
      : options_(std::move(options)),
        shard_count_(shard_count),
        shard_shift_(64 - Log2(shard_count)),
        shards_(new Shard[shard_count]) {}

  ~ShardedCache() override {
    for (size_t i = 0; i < shard_count_; ++i) {
      Shard& shard = shards_[i];
      absl::MutexLock lock(&shard.mu);
      for (Entry* e : shard.entries) Entry::Delete(e);
      shard.entries.clear();
    }
  }

  absl::StatusOr<std::string> Get(uint64_t tenant, std::string_view key) override;
  absl::Status Set(uint64_t tenant, std::string_view key, std::string_view value,
                   std::optional<std::chrono::nanoseconds> ttl) override;
  bool Delete(uint64_t tenant, std::string_view key) override;
  absl::StatusOr<int64_t> Increment(uint64_t tenant, std::string_view key, int64_t by,
                                    std::optional<std::chrono::nanoseconds> ttl) override;
  size_t DeletePrefix(uint64_t tenant, std::string_view prefix) override;
  void DropTenant(uint64_t tenant) override;
  void SetTenantBudget(uint64_t tenant, std::optional<size_t> bytes) override;
  CacheStats TenantStats(uint64_t tenant) override;
  CacheStats TotalStats() override;

 private:
  static int Log2(size_t power_of_two) {
    int bits = 0;
    while ((size_t{1} << bits) < power_of_two) ++bits;
    return bits;
  }

  static uint64_t HashKey(uint64_t tenant, std::string_view key) {
    return absl::HashOf(tenant, absl::string_view(key.data(), key.size()));
  }

  size_t ShardIndex(uint64_t hash) const {
    // The top bits pick the shard; the hash set uses the low ones.
    return shard_shift_ == 64 ? 0 : static_cast<size_t>(hash >> shard_shift_);
  }

  int64_t Now() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(options_.clock().time_since_epoch())
        .count();
  }

  absl::Status CheckTtl(uint64_t tenant, const std::optional<std::chrono::nanoseconds>& ttl) const;
  int64_t Deadline(int64_t now, const std::optional<std::chrono::nanoseconds>& ttl) const;
  // INVALID_ARGUMENT (kTooLarge) unless an entry of this key and value could
  // be held under `budget` and the global budget.
  absl::Status CheckFits(uint64_t tenant, size_t key_size, size_t value_size, size_t budget) const;

  // Returns the tenant's state, creating it if the cache has not seen it.
  std::shared_ptr<TenantState> AcquireTenant(uint64_t tenant) ABSL_LOCKS_EXCLUDED(tenants_mu_);
  std::shared_ptr<TenantState> FindTenant(uint64_t tenant) ABSL_LOCKS_EXCLUDED(tenants_mu_);

  // --- Helpers called with one shard's mutex held. ---

  Entry* FindLocked(Shard& shard, uint64_t hash, uint64_t tenant, std::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  TenantShard* FindTenantShardLocked(Shard& shard, uint64_t tenant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // REQUIRES: `state` is not dropped (checked under this shard's lock).
  TenantShard* GetOrCreateTenantShardLocked(Shard& shard, const std::shared_ptr<TenantState>& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Returns the entry for a write by `state` (not dropped), or null. An entry
  // of an older, dropped state of the same tenant, which DropTenant has not
  // reached yet in this shard, is not the writer's: its whole TenantShard is
  // dropped here, on DropTenant's behalf, so the write starts afresh.
  Entry* FindForWriteLocked(Shard& shard, const std::shared_ptr<TenantState>& state, uint64_t hash,
                            std::string_view key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Removes every entry of `ts` and frees it.
  void PurgeLocked(Shard& shard, TenantShard* ts) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Frees `ts` if it holds no entries. REQUIRES: no caller uses `ts` after.
  void ReleaseIfEmptyLocked(Shard& shard, TenantShard* ts) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Adds to every byte and entry count that covers `ts`.
  void ChargeLocked(Shard& shard, TenantShard* ts, int64_t bytes, int64_t entries)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void SetExpiryLocked(Shard& shard, Entry* e, int64_t expires_at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Unlinks and frees `e`. Its TenantShard stays, even if now empty.
  void RemoveLocked(Shard& shard, Entry* e, Removal why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Removes up to `max` expired entries, soonest expired first. Frees the
  // TenantShards emptied, except `keep`.
  void ReclaimExpiredLocked(Shard& shard, int64_t now, size_t max, TenantShard* keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Removes `ts`'s least recently used entries while `over()` and an entry
  // other than `protect` is left. Expired entries go first. Leaves `ts`
  // allocated even if emptied.
  template <typename Pred>
  void EvictLocked(Shard& shard, TenantShard* ts, const Entry* protect, int64_t now, Pred over)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Writes `value` to `existing` (or to a new entry if null), makes it most
  // recently used, then evicts `state`'s own entries in this shard for its
  // budget and, if `state` is over its fair share, for the global budget.
  // `expires_at` is ignored for an existing entry when `keep_expiry`. A new
  // or moved entry gets room for at least `min_capacity` value bytes.
  void StoreLocked(Shard& shard, const std::shared_ptr<TenantState>& state, Entry* existing,
                   uint64_t hash, std::string_view key, std::string_view value, int64_t expires_at,
                   bool keep_expiry, size_t min_capacity, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Moves `e` to a new allocation holding `value`, in place of `e` in the
  // entry set, its LRU list and the expiry heap; frees `e`. Returns the new
  // entry. Accounting is the caller's.
  Entry* ReplaceLocked(Shard& shard, Entry* e, std::string_view value, size_t min_capacity)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  // --- Slow paths, called with no lock held. ---

  // After a write to shard `written`: evicts what the shard-local pass could
  // not, for the tenant's budget and for the global budget.
  void FinishWrite(const std::shared_ptr<TenantState>& state, size_t written)
      ABSL_LOCKS_EXCLUDED(global_mu_, tenants_mu_);
  // Evicts `state`'s least recently used entries shard by shard, starting at
  // `first`, while `over()`. Returns the number of entries removed (expired
  // ones included).
  template <typename Pred>
  size_t EvictAcrossShards(const std::shared_ptr<TenantState>& state, size_t first, Pred over);
  void RelieveGlobalPressure(const std::shared_ptr<TenantState>& writer)
      ABSL_LOCKS_EXCLUDED(global_mu_, tenants_mu_);
  // The tenant holding the most bytes, or null.
  std::shared_ptr<TenantState> LargestTenant() ABSL_LOCKS_EXCLUDED(tenants_mu_);
  // The budget is read afresh on every check, so a concurrent
  // SetTenantBudget is honoured by every eviction pass that follows it.
  static bool OverTenantBudget(const TenantState& state) {
    return Exceeds(state.bytes.load(std::memory_order_relaxed),
                   state.budget.load(std::memory_order_relaxed));
  }
  bool OverGlobalBudget() const {
    return Exceeds(total_bytes_.load(std::memory_order_relaxed), options_.global_budget_bytes);
  }
  // Compared unsigned: a budget may be any size_t, SIZE_MAX included.
  static bool Exceeds(int64_t bytes, size_t budget) {
    return bytes > 0 && static_cast<uint64_t>(bytes) > budget;
  }
  int64_t FairShare() const {
    const int64_t tenants =
        std::max<int64_t>(1, tenants_with_entries_.load(std::memory_order_relaxed));
    const uint64_t share = options_.global_budget_bytes / tenants;
    return static_cast<int64_t>(std::min<uint64_t>(share, std::numeric_limits<int64_t>::max()));
  }

  // Constant after construction.
  const CacheOptions options_;
  const size_t shard_count_;
  const int shard_shift_;
  const std::unique_ptr<Shard[]> shards_;

  // Sum of all entries' charges.
  std::atomic<int64_t> total_bytes_{0};
  // Number of TenantStates with bytes > 0; the divisor of the fair share.
  std::atomic<int64_t> tenants_with_entries_{0};

  absl::Mutex tenants_mu_ ABSL_ACQUIRED_AFTER(global_mu_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<TenantState>> tenants_ ABSL_GUARDED_BY(tenants_mu_);
  absl::flat_hash_map<uint64_t, size_t> budget_overrides_ ABSL_GUARDED_BY(tenants_mu_);

  // Serialises eviction for the global budget, so concurrent writers under
  // pressure agree on a victim instead of each evicting their own.
  absl::Mutex global_mu_;
  // The tenant evicted for the global budget until it is down to its fair
  // share; saves a registry scan per write while the pressure lasts.
  std::shared_ptr<TenantState> global_victim_ ABSL_GUARDED_BY(global_mu_);
  size_t next_victim_shard_ ABSL_GUARDED_BY(global_mu_) = 0;
};

// ---------------------------------------------------------------------------
// Validation

absl::Status ShardedCache::CheckTtl(uint64_t tenant,
                                    const std::optional<std::chrono::nanoseconds>& ttl) const {
  if (!ttl.has_value()) return absl::OkStatus();
  if (ttl->count() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tenant #", tenant, ": cache ttl must be positive (ttl_ns=", ttl->count(), ")"));
  }
  if (*ttl > options_.max_ttl) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant #", tenant, ": cache ttl over the maximum (ttl_ns=", ttl->count(),
                     ", max_ns=", options_.max_ttl.count(), ")"));
  }
  return absl::OkStatus();
}

int64_t ShardedCache::Deadline(int64_t now,
                               const std::optional<std::chrono::nanoseconds>& ttl) const {
  if (!ttl.has_value()) return kNoExpiry;
  // Saturate rather than wrap for a clock far from its epoch.
  if (now > kNoExpiry - 1 - ttl->count()) return kNoExpiry - 1;
  return now + ttl->count();
}

absl::Status ShardedCache::CheckFits(uint64_t tenant, size_t key_size, size_t value_size,
                                     size_t budget) const {
  if (key_size > kMaxPartBytes || value_size > kMaxPartBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
                     absl::StrCat("tenant #", tenant, ": cache key or value over 4 GiB"));
  }
  const size_t charge = key_size + value_size + kCacheEntryOverheadBytes;
  if (charge > budget || charge > options_.global_budget_bytes) {
    return MakeError(
        absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
        absl::StrCat("tenant #", tenant, ": cache entry larger than the budget (charge=", charge,
                     ", tenant_budget=", budget, ", global_budget=", options_.global_budget_bytes,
                     ")"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Tenant registry

std::shared_ptr<TenantState> ShardedCache::AcquireTenant(uint64_t tenant) {
  {
    absl::ReaderMutexLock lock(&tenants_mu_);
    auto it = tenants_.find(tenant);
    if (it != tenants_.end()) return it->second;
  }
  absl::MutexLock lock(&tenants_mu_);
  auto [it, inserted] = tenants_.try_emplace(tenant);
  if (inserted) {
    auto o = budget_overrides_.find(tenant);
    const size_t budget =
        o != budget_overrides_.end() ? o->second : options_.default_tenant_budget_bytes;
    it->second = std::make_shared<TenantState>(tenant, budget);
  }
  return it->second;
}

std::shared_ptr<TenantState> ShardedCache::FindTenant(uint64_t tenant) {
  absl::ReaderMutexLock lock(&tenants_mu_);
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? nullptr : it->second;
}

std::shared_ptr<TenantState> ShardedCache::LargestTenant() {
  absl::ReaderMutexLock lock(&tenants_mu_);
  std::shared_ptr<TenantState> largest;
  int64_t most = 0;
  for (const auto& [number, state] : tenants_) {
    const int64_t bytes = state->bytes.load(std::memory_order_relaxed);
    if (bytes > most) {
      most = bytes;
      largest = state;
    }
  }
  return largest;
}

// ---------------------------------------------------------------------------
// Shard-local helpers

Entry* ShardedCache::FindLocked(Shard& shard, uint64_t hash, uint64_t tenant,
                                std::string_view key) {
  auto it = shard.entries.find(EntryRef{hash, tenant, key});
  return it == shard.entries.end() ? nullptr : *it;
}

TenantShard* ShardedCache::FindTenantShardLocked(Shard& shard, uint64_t tenant) {
  auto it = shard.tenants.find(tenant);
  return it == shard.tenants.end() ? nullptr : it->second.get();
}

TenantShard* ShardedCache::GetOrCreateTenantShardLocked(Shard& shard,
                                                        const std::shared_ptr<TenantState>& state) {
  auto it = shard.tenants.find(state->number);
  if (it != shard.tenants.end()) {
    if (it->second->state == state) return it->second.get();
    PurgeLocked(shard, it->second.get());  // Left by a dropped state.
  }
  auto [slot, inserted] =
      shard.tenants.emplace(state->number, std::make_unique<TenantShard>(state));
  return slot->second.get();
}

Entry* ShardedCache::FindForWriteLocked(Shard& shard, const std::shared_ptr<TenantState>& state,
                                        uint64_t hash, std::string_view key) {
  Entry* e = FindLocked(shard, hash, state->number, key);
  if (e == nullptr || e->owner->state == state) return e;
  PurgeLocked(shard, e->owner);
  return nullptr;
}

void ShardedCache::PurgeLocked(Shard& shard, TenantShard* ts) {
  while (!ts->empty()) {
    RemoveLocked(shard, ts->least_recent(), Removal::kDeleted);
  }
  ReleaseIfEmptyLocked(shard, ts);
}

void ShardedCache::ReleaseIfEmptyLocked(Shard& shard, TenantShard* ts) {
  if (ts != nullptr && ts->empty()) shard.tenants.erase(ts->state->number);
}

void ShardedCache::ChargeLocked(Shard& shard, TenantShard* ts, int64_t bytes, int64_t entries) {
  ts->bytes += bytes;
  ts->entries += entries;
  shard.bytes += bytes;
  TenantState& state = *ts->state;
  const int64_t before = state.bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (before == 0 && bytes > 0) {
    tenants_with_entries_.fetch_add(1, std::memory_order_relaxed);
  } else if (before > 0 && before + bytes == 0) {
    tenants_with_entries_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (entries != 0) state.entries.fetch_add(entries, std::memory_order_relaxed);
  total_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void ShardedCache::SetExpiryLocked(Shard& shard, Entry* e, int64_t expires_at) {
  const bool was_in_heap = e->heap_index != kNotInHeap;
  e->expires_at = expires_at;
  if (expires_at == kNoExpiry) {
    if (was_in_heap) shard.expiry.Erase(e);
  } else if (was_in_heap) {
    shard.expiry.Fix(e);
  } else {
    shard.expiry.Insert(e);
  }
}

void ShardedCache::RemoveLocked(Shard& shard, Entry* e, Removal why) {
  TenantShard* ts = e->owner;
  shard.entries.erase(e);
  Unlink(e);
  if (e->heap_index != kNotInHeap) shard.expiry.Erase(e);
  ChargeLocked(shard, ts, -static_cast<int64_t>(e->charge()), -1);
  switch (why) {
    case Removal::kDeleted:
      break;
    case Removal::kEvicted:
      ++shard.evictions;
      ts->state->evictions.fetch_add(1, std::memory_order_relaxed);
      break;
    case Removal::kExpired:
      ++shard.expirations;
      ts->state->expirations.fetch_add(1, std::memory_order_relaxed);
      break;
  }
  Entry::Delete(e);
}

void ShardedCache::ReclaimExpiredLocked(Shard& shard, int64_t now, size_t max, TenantShard* keep) {
  for (size_t i = 0; i < max && !shard.expiry.empty(); ++i) {
    Entry* e = shard.expiry.top();
    if (!IsExpired(e, now)) break;
    TenantShard* ts = e->owner;
    RemoveLocked(shard, e, Removal::kExpired);
    if (ts != keep) ReleaseIfEmptyLocked(shard, ts);
  }
}

template <typename Pred>
void ShardedCache::EvictLocked(Shard& shard, TenantShard* ts, const Entry* protect, int64_t now,
                               Pred over) {
  if (!over()) return;
  ReclaimExpiredLocked(shard, now, kReclaimUnderPressure, ts);
  while (over() && !ts->empty()) {
    Entry* victim = ts->least_recent();
    if (victim == protect) {
      if (ts->lru.next == victim) break;  // Nothing else to take.
      // Everything behind it got a second chance: it goes ahead of them.
      MoveToFront(ts, victim);
      continue;
    }
    // CLOCK's second chance: a hit only marks an entry (no list update on
    // the hot path); a marked entry is moved to the front here instead of
    // being evicted. Each entry is passed over at most once per mark, so
    // the loop ends.
    const bool expired = IsExpired(victim, now);
    if (victim->referenced && !expired) {
      victim->referenced = false;
      MoveToFront(ts, victim);
      continue;
    }
    RemoveLocked(shard, victim, expired ? Removal::kExpired : Removal::kEvicted);
  }
}

Entry* ShardedCache::ReplaceLocked(Shard& shard, Entry* e, std::string_view value,
                                   size_t min_capacity) {
  Entry* n = Entry::New(e->key(), value, min_capacity);
  n->owner = e->owner;
  n->hash = e->hash;
  n->expires_at = e->expires_at;
  n->referenced = e->referenced;
  shard.entries.erase(e);
  shard.entries.insert(n);
  n->prev = e->prev;
  n->next = e->next;
  n->prev->next = n;
  n->next->prev = n;
  if (e->heap_index != kNotInHeap) shard.expiry.Replace(e, n);
  Entry::Delete(e);
  return n;
}

void ShardedCache::StoreLocked(Shard& shard, const std::shared_ptr<TenantState>& state, Entry* e,
                               uint64_t hash, std::string_view key, std::string_view value,
                               int64_t expires_at, bool keep_expiry, size_t min_capacity,
                               int64_t now) {
  TenantShard* ts;
  if (e != nullptr) {
    ts = e->owner;
    const int64_t delta = static_cast<int64_t>(value.size()) - static_cast<int64_t>(e->value_size);
    if (e->Fits(value.size())) {
      e->SetValue(value);
    } else {
      e = ReplaceLocked(shard, e, value, min_capacity);
    }
    if (!keep_expiry) SetExpiryLocked(shard, e, expires_at);
    e->referenced = false;
    MoveToFront(ts, e);
    ChargeLocked(shard, ts, delta, 0);
  } else {
    ts = GetOrCreateTenantShardLocked(shard, state);
    e = Entry::New(key, value, min_capacity);
    e->owner = ts;
    e->hash = hash;
    shard.entries.insert(e);
    LinkFront(ts, e);
    SetExpiryLocked(shard, e, expires_at);
    ChargeLocked(shard, ts, static_cast<int64_t>(e->charge()), 1);
  }

  TenantState& s = *state;
  EvictLocked(shard, ts, e, now, [&] { return OverTenantBudget(s); });
  if (OverGlobalBudget()) {
    const int64_t fair = FairShare();
    EvictLocked(shard, ts, e, now, [&] {
      return OverGlobalBudget() && s.bytes.load(std::memory_order_relaxed) > fair;
    });
  }
}

// ---------------------------------------------------------------------------
// Slow paths

template <typename Pred>
size_t ShardedCache::EvictAcrossShards(const std::shared_ptr<TenantState>& state, size_t first,
                                       Pred over) {
  size_t evicted = 0;
  for (size_t i = 0; i < shard_count_ && over(); ++i) {
    Shard& shard = shards_[(first + i) & (shard_count_ - 1)];
    absl::MutexLock lock(&shard.mu);
    TenantShard* ts = FindTenantShardLocked(shard, state->number);
    if (ts == nullptr || ts->state != state) continue;
    const int64_t now = Now();
    const uint64_t before = shard.evictions + shard.expirations;
    EvictLocked(shard, ts, nullptr, now, over);
    evicted += shard.evictions + shard.expirations - before;
    ReleaseIfEmptyLocked(shard, ts);
  }
  return evicted;
}

void ShardedCache::FinishWrite(const std::shared_ptr<TenantState>& state, size_t written) {
  auto over_budget = [&] { return OverTenantBudget(*state); };
  if (over_budget()) EvictAcrossShards(state, written + 1, over_budget);
  if (OverGlobalBudget()) RelieveGlobalPressure(state);
}

void ShardedCache::RelieveGlobalPressure(const std::shared_ptr<TenantState>& writer) {
  absl::MutexLock lock(&global_mu_);
  bool rescanned = false;
  for (int round = 0; round < kMaxGlobalRounds && OverGlobalBudget(); ++round) {
    const int64_t fair = FairShare();
    auto over_fair = [fair](const std::shared_ptr<TenantState>& s) {
      return s != nullptr && !s->dropped.load(std::memory_order_relaxed) &&
             s->bytes.load(std::memory_order_relaxed) > fair;
    };
    std::shared_ptr<TenantState> victim;
    if (over_fair(writer)) {
      victim = writer;
    } else {
      if (!over_fair(global_victim_)) {
        global_victim_ = LargestTenant();
        rescanned = true;
      }
      victim = global_victim_;
    }
    if (victim == nullptr) break;
    const size_t first = next_victim_shard_++;
    const size_t evicted = EvictAcrossShards(victim, first, [&] {
      return OverGlobalBudget() && victim->bytes.load(std::memory_order_relaxed) > fair;
    });
    if (evicted == 0) {
      // Nothing to take from this victim (a concurrent writer or dropper got
      // there first): look again once, then leave the rest to later writes.
      if (rescanned) break;
      global_victim_.reset();
    }
  }
}

// ---------------------------------------------------------------------------
// Public operations

absl::StatusOr<std::string> ShardedCache::Get(uint64_t tenant, std::string_view key) {
  const uint64_t hash = HashKey(tenant, key);
  Shard& shard = shards_[ShardIndex(hash)];
  bool counted = false;
  {
    absl::MutexLock lock(&shard.mu);
    Entry* e = FindLocked(shard, hash, tenant, key);
    if (e != nullptr) {
      TenantShard* ts = e->owner;
      if (e->expires_at == kNoExpiry || !IsExpired(e, Now())) {
        e->referenced = true;
        ++shard.hits;
        ts->state->hits.fetch_add(1, std::memory_order_relaxed);
        return std::string(e->value());
      }
      ++shard.misses;
      ts->state->misses.fetch_add(1, std::memory_order_relaxed);
      counted = true;
      RemoveLocked(shard, e, Removal::kExpired);
      ReleaseIfEmptyLocked(shard, ts);
    } else {
      ++shard.misses;
      if (TenantShard* ts = FindTenantShardLocked(shard, tenant)) {
        ts->state->misses.fetch_add(1, std::memory_order_relaxed);
        counted = true;
      }
    }
  }
  // The tenant has nothing in this shard: count the miss through the
  // registry, after the shard lock (the two are never held together). A
  // tenant the cache has never stored for is counted in TotalStats only.
  if (!counted) {
    if (std::shared_ptr<TenantState> state = FindTenant(tenant)) {
      state->misses.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return absl::NotFoundError(absl::StrCat("tenant #", tenant, ": cache key not found"));
}

absl::Status ShardedCache::Set(uint64_t tenant, std::string_view key, std::string_view value,
                               std::optional<std::chrono::nanoseconds> ttl) {
  if (absl::Status s = CheckTtl(tenant, ttl); !s.ok()) return s;
  std::shared_ptr<TenantState> state = AcquireTenant(tenant);
  const size_t budget = state->budget.load(std::memory_order_relaxed);
  if (absl::Status s = CheckFits(tenant, key.size(), value.size(), budget); !s.ok()) {
    return s;
  }

  const uint64_t hash = HashKey(tenant, key);
  const size_t index = ShardIndex(hash);
  Shard& shard = shards_[index];
  for (;;) {
    {
      absl::MutexLock lock(&shard.mu);
      if (!state->dropped.load(std::memory_order_acquire)) {
        const int64_t now = Now();
        ReclaimExpiredLocked(shard, now, kReclaimPerWrite, nullptr);
        Entry* e = FindForWriteLocked(shard, state, hash, key);
        StoreLocked(shard, state, e, hash, key, value, Deadline(now, ttl),
                    /*keep_expiry=*/false, /*min_capacity=*/0, now);
        break;
      }
    }
    state = AcquireTenant(tenant);
  }
  FinishWrite(state, index);
  return absl::OkStatus();
}

bool ShardedCache::Delete(uint64_t tenant, std::string_view key) {
  const uint64_t hash = HashKey(tenant, key);
  Shard& shard = shards_[ShardIndex(hash)];
  absl::MutexLock lock(&shard.mu);
  Entry* e = FindLocked(shard, hash, tenant, key);
  if (e == nullptr) return false;
  const bool live = e->expires_at == kNoExpiry || !IsExpired(e, Now());
  TenantShard* ts = e->owner;
  RemoveLocked(shard, e, live ? Removal::kDeleted : Removal::kExpired);
  ReleaseIfEmptyLocked(shard, ts);
  return live;
}

absl::StatusOr<int64_t> ShardedCache::Increment(uint64_t tenant, std::string_view key, int64_t by,
                                                std::optional<std::chrono::nanoseconds> ttl) {
  if (absl::Status s = CheckTtl(tenant, ttl); !s.ok()) return s;
  std::shared_ptr<TenantState> state = AcquireTenant(tenant);
  const size_t budget = state->budget.load(std::memory_order_relaxed);
  const uint64_t hash = HashKey(tenant, key);
  const size_t index = ShardIndex(hash);
  Shard& shard = shards_[index];
  int64_t result = 0;
  for (;;) {
    {
      absl::MutexLock lock(&shard.mu);
      if (!state->dropped.load(std::memory_order_acquire)) {
        const int64_t now = Now();
        ReclaimExpiredLocked(shard, now, kReclaimPerWrite, nullptr);
        Entry* e = FindForWriteLocked(shard, state, hash, key);
        if (e != nullptr && IsExpired(e, now)) {
          TenantShard* ts = e->owner;
          RemoveLocked(shard, e, Removal::kExpired);
          ReleaseIfEmptyLocked(shard, ts);
          e = nullptr;
        }
        int64_t current = 0;
        if (e != nullptr) {
          std::optional<int64_t> parsed = ParseDecimal(e->value());
          if (!parsed.has_value()) {
            return absl::InvalidArgumentError(absl::StrCat(
                "tenant #", tenant, ": cache value is not a decimal int64, cannot increment"));
          }
          current = *parsed;
        }
        if (__builtin_add_overflow(current, by, &result)) {
          return absl::OutOfRangeError(
              absl::StrCat("tenant #", tenant, ": cache increment overflows int64 (value=", current,
                           ", by=", by, ")"));
        }
        const std::string text = absl::StrCat(result);
        if (absl::Status s = CheckFits(tenant, key.size(), text.size(), budget); !s.ok()) {
          return s;
        }
        // Room for any int64, so later increments write in place.
        StoreLocked(shard, state, e, hash, key, text, Deadline(now, ttl),
                    /*keep_expiry=*/true, kMaxDecimalBytes, now);
        break;
      }
    }
    state = AcquireTenant(tenant);
  }
  FinishWrite(state, index);
  return result;
}

size_t ShardedCache::DeletePrefix(uint64_t tenant, std::string_view prefix) {
  size_t removed = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    TenantShard* ts = FindTenantShardLocked(shard, tenant);
    if (ts == nullptr) continue;
    const int64_t now = Now();
    for (LruLinks* link = ts->lru.next; link != &ts->lru;) {
      Entry* e = static_cast<Entry*>(link);
      link = link->next;
      if (e->key().substr(0, prefix.size()) != prefix) {
        continue;
      }
      const bool live = !IsExpired(e, now);
      RemoveLocked(shard, e, live ? Removal::kDeleted : Removal::kExpired);
      if (live) ++removed;
    }
    ReleaseIfEmptyLocked(shard, ts);
  }
  return removed;
}

void ShardedCache::DropTenant(uint64_t tenant) {
  std::shared_ptr<TenantState> state;
  {
    absl::MutexLock lock(&tenants_mu_);
    auto it = tenants_.find(tenant);
    if (it == tenants_.end()) return;
    state = std::move(it->second);
    tenants_.erase(it);
    state->dropped.store(true, std::memory_order_release);
  }
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    TenantShard* ts = FindTenantShardLocked(shard, tenant);
    // A TenantShard of a newer state belongs to writes made after the drop
    // (which purged this state's entries here first).
    if (ts == nullptr || ts->state != state) continue;
    PurgeLocked(shard, ts);
  }
}

void ShardedCache::SetTenantBudget(uint64_t tenant, std::optional<size_t> bytes) {
  const size_t budget = bytes.value_or(options_.default_tenant_budget_bytes);
  std::shared_ptr<TenantState> state;
  {
    absl::MutexLock lock(&tenants_mu_);
    if (bytes.has_value()) {
      budget_overrides_[tenant] = *bytes;
    } else {
      budget_overrides_.erase(tenant);
    }
    auto it = tenants_.find(tenant);
    if (it == tenants_.end()) return;
    state = it->second;
    state->budget.store(budget, std::memory_order_relaxed);
  }
  EvictAcrossShards(state, 0, [&] { return OverTenantBudget(*state); });
}

CacheStats ShardedCache::TenantStats(uint64_t tenant) {
  CacheStats stats;
  std::shared_ptr<TenantState> state;
  {
    absl::ReaderMutexLock lock(&tenants_mu_);
    auto it = tenants_.find(tenant);
    if (it != tenants_.end()) {
      state = it->second;
    } else {
      auto o = budget_overrides_.find(tenant);
      stats.budget_bytes =
          o != budget_overrides_.end() ? o->second : options_.default_tenant_budget_bytes;
      return stats;
    }
  }
  stats.entries =
      static_cast<uint64_t>(std::max<int64_t>(0, state->entries.load(std::memory_order_relaxed)));
  stats.bytes =
      static_cast<uint64_t>(std::max<int64_t>(0, state->bytes.load(std::memory_order_relaxed)));
  stats.budget_bytes = state->budget.load(std::memory_order_relaxed);
  stats.hits = state->hits.load(std::memory_order_relaxed);
  stats.misses = state->misses.load(std::memory_order_relaxed);
  stats.evictions = state->evictions.load(std::memory_order_relaxed);
  stats.expirations = state->expirations.load(std::memory_order_relaxed);
  return stats;
}

CacheStats ShardedCache::TotalStats() {
  CacheStats stats;
  stats.budget_bytes = options_.global_budget_bytes;
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    stats.entries += shard.entries.size();
    stats.bytes += shard.bytes;
    stats.hits += shard.hits;
    stats.misses += shard.misses;
    stats.evictions += shard.evictions;
    stats.expirations += shard.expirations;
  }
  return stats;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Cache>> Cache::Create(CacheOptions options) {
  if (options.global_budget_bytes == 0) {
    return absl::InvalidArgumentError("cache: global_budget_bytes must be > 0");
  }
  if (options.default_tenant_budget_bytes == 0) {
    return absl::InvalidArgumentError("cache: default_tenant_budget_bytes must be > 0");
  }
  if (options.max_ttl.count() <= 0) {
    return absl::InvalidArgumentError("cache: max_ttl must be > 0");
  }
  if (options.shard_count == 0) {
    return absl::InvalidArgumentError("cache: shard_count must be >= 1");
  }
  if (!options.clock) {
    return absl::InvalidArgumentError("cache: clock must be set");
  }
  size_t shards = 1;
  while (shards < options.shard_count && shards < kMaxShards) shards <<= 1;
  return std::unique_ptr<Cache>(new ShardedCache(std::move(options), shards));
}

}  // namespace tenancy
