// The engine's internals, shared by Engine, TenantRegistry, Tenant and KvStore.
//
// Concurrency design:
// - Registry changes are serialised by `admin_mu_` (rare, and each one is a
//   synced RocksDB write). Lookups take `index_mu_` in shared mode only.
// - A data call registers itself in its tenant's `inflight` counter before it
//   reads the state; Purge sets the state to deleting and then waits for the
//   counter to drain, so no call can write after the purge has started.
// - Writes to one key are serialised by a striped lock (the write learns the
//   size it replaces, so two writers of one key must not both count it as new).
// - Writes take their tenant's `range_mu` shared; DeleteRange and Recount take
//   it exclusive, because they must see a range that does not change under them.

#ifndef TENANCY_LIB_ENGINE_CORE_H_
#define TENANCY_LIB_ENGINE_CORE_H_

#include <array>
#include <cstring>
#include <optional>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "key_encoding.h"
#include "rocksdb/db.h"
#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenancy/status.h"
#include "tenancy/tenant.h"
#include "tenancy/tenant_registry.h"

#if defined(__SANITIZE_THREAD__)
#define TENANCY_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TENANCY_THREAD_SANITIZER 1
#endif
#endif
#ifndef TENANCY_THREAD_SANITIZER
#define TENANCY_THREAD_SANITIZER 0
#endif

namespace tenancy::internal {

using Sha256Digest = std::array<uint8_t, 32>;
struct TenantRecord;
class JobRuntime;

// "tenant-<number>": the column family of a dedicated tenant.
std::string DedicatedColumnFamilyName(uint64_t number);

// The live state of one tenant. Shared by the registry index and every handle.
class TenantSlot {
 public:
  TenantSlot(std::string id, uint64_t number, Placement placement,
             std::shared_ptr<rocksdb::ColumnFamilyHandle> cf)
      : id(std::move(id)), number(number), placement(placement),
        cf(std::move(cf)) {}
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

  // The usage ledger in memory; equal to the persisted ledger once a write
  // commits. Reservations are taken here before a write is attempted.
  std::atomic<int64_t> used_bytes{0};
  std::atomic<int64_t> used_keys{0};
  std::atomic<bool> warned_bytes{false};
  std::atomic<bool> warned_keys{false};

  // Request counters.
  std::array<std::atomic<uint64_t>, kNumCallKinds> calls{};
  std::atomic<int64_t> calls_day{0};  // UTC day number of calls_today
  std::atomic<uint64_t> calls_today{0};
  std::atomic<int64_t> last_active_ms{0};  // 0: never

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

// Registers a data call with its tenant for as long as it lives, and checks the
// tenant's state once registered (see the file comment).
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

absl::Status CheckReadableState(const TenantSlot& slot);
absl::Status CheckWritableState(const TenantSlot& slot);

// One write to a tenant's range, in a namespace. Keys are user keys (no prefix).
struct LedgerOp {
  Namespace ns = Namespace::kKv;
  bool is_put = true;
  std::string_view key;
  std::string_view value;
};

class EngineCore {
 public:
  static absl::StatusOr<std::unique_ptr<EngineCore>> Open(EngineOptions options);
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;
  ~EngineCore();

  // --- Registry (tenant_registry.cc) ---
  absl::StatusOr<std::vector<TenantInfo>> CreateTenants(
      const std::vector<TenantSpec>& specs);
  absl::StatusOr<TenantInfo> UpdateTenant(const TenantSpec& spec);
  absl::StatusOr<TenantRegistry::UpsertResult> UpsertTenant(
      const TenantSpec& spec);
  absl::StatusOr<TenantInfo> GetTenantInfo(std::string_view id) const;
  absl::StatusOr<TenantPage> ListTenants(const ListOptions& options) const;
  size_t TenantCount() const;
  absl::Status SetFlags(std::string_view id, std::optional<bool> enabled,
                        std::optional<bool> read_only);
  absl::Status PurgeTenant(std::string_view id);
  absl::StatusOr<NewApiKey> CreateApiKey(std::string_view id);
  absl::StatusOr<ApiKeyInfo> ImportApiKeyDigest(std::string_view id,
                                                const Sha256Digest& digest,
                                                std::string key_id,
                                                std::string prefix);
  absl::Status RevokeApiKey(std::string_view id, std::string_view key_id);
  absl::StatusOr<std::vector<ApiKeyInfo>> ListApiKeys(std::string_view id) const;
  absl::StatusOr<ApiKeyOwner> FindApiKeyOwner(const Sha256Digest& digest) const;

  // --- Lookup ---
  absl::StatusOr<Tenant> GetTenant(std::string_view id);
  absl::StatusOr<Tenant> ResolveApiKey(std::string_view secret);
  TenantInfo InfoOf(const TenantSlot& slot) const;

  // --- Data path (kv_store.cc) ---
  // Applies `ops` atomically, with exact accounting: the write is refused with
  // a quota error before anything is written if it would pass a quota.
  absl::Status ApplyWrites(TenantSlot& slot, const std::vector<LedgerOp>& ops);
  // ApplyWrites of one op, without the batch path's allocations.
  absl::Status ApplyWrite(TenantSlot& slot, const LedgerOp& op);
  absl::StatusOr<uint64_t> DeleteRange(TenantSlot& slot, Namespace ns,
                                       std::string_view start,
                                       std::string_view end);
  absl::StatusOr<RecountResult> Recount(TenantSlot& slot, bool repair);
  absl::Status ValidateKey(const TenantSlot& slot, std::string_view key) const;
  absl::Status ValidateValue(const TenantSlot& slot,
                             std::string_view value) const;

  // Called with a tenant's number after its purge completes, so components
  // that keep per-tenant state (cache, jobs, limiter) drop it.
  // REQUIRES: only during Engine::Open, before any other call.
  void AddPurgeListener(std::function<void(uint64_t)> listener) {
    purge_listeners_.push_back(std::move(listener));
  }

  // Every write to RocksDB goes through here.
  rocksdb::Status Commit(const rocksdb::WriteOptions& options,
                         rocksdb::WriteBatch* batch);

  // --- Jobs (job_queue.cc) ---
  JobRuntime& jobs() const { return *jobs_; }
  Limiter& limiter() const { return *limiter_; }
  // The slot's tenant at the limiter, added (with the spec's limits and
  // rate) on first use. NOT_FOUND (kTenantDeleted) for a purged tenant.
  absl::StatusOr<LimiterTenant*> LimiterTenantOf(TenantSlot& slot);
  ConcurrencyLimits EffectiveLimits(const TenantSlot& slot) const;
  // One write whose caller knows the size of the value it replaces (nullopt:
  // absent), because it serialises every writer of the key itself (the job
  // queue holds its tenant's job mutex). ApplyKnownWrites applies them as
  // ApplyWrites does, with exact accounting and quota refusal, but without
  // reading the old values or taking key stripes.
  struct KnownWrite {
    LedgerOp op;
    std::optional<size_t> old_size;
  };
  absl::Status ApplyKnownWrites(TenantSlot& slot,
                                const std::vector<KnownWrite>& writes);
  // Every tenant now (all states).
  std::vector<std::shared_ptr<TenantSlot>> SlotsSnapshot() const;

  // --- Cache (tenant_cache.cc) ---
  // The engine's cache (options().cache, set by OpenCache).
  Cache& cache() const { return *options_.cache; }
  // Creates the cache if options().cache is unset, claims it for this engine
  // (INVALID_ARGUMENT if another open engine has it or it holds entries) and
  // registers the purge listener that drops a purged tenant's entries.
  // REQUIRES: during Open, before LoadRegistry.
  absl::Status OpenCache();
  // Drops every tenant's entries and budget override and gives the claim
  // back. Idempotent; called by ~EngineCore.
  void CloseCache();
  // Applies the slot's spec to the cache: its budget (Quota::cache_bytes, 0:
  // the cache's default), and, once the state says disabled or deleting, drops
  // its entries. Called by ApplySpecToSlot after the state is stored, which
  // TenantCache's writes rely on (see tenant_cache.cc).
  void ApplyCacheSpecLocked(TenantSlot& slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);

  // --- Misc ---
  absl::Status Flush();
  absl::Status FlushRequestStats();
  void RecordCall(TenantSlot& slot, CallKind kind);
  RequestStats RequestStatsOf(const TenantSlot& slot) const;
  Tenant MakeHandle(std::shared_ptr<TenantSlot> slot) {
    return Tenant(std::move(slot), this);
  }

  // Constant after construction
  const EngineOptions& options() const { return options_; }
  Logger& logger() const { return *options_.logger; }
  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* meta_cf() const { return meta_cf_; }
  rocksdb::ColumnFamilyHandle* shared_cf() const { return shared_cf_.get(); }
  const rocksdb::WriteOptions& data_write_options() const {
    return data_write_options_;
  }
  // Default read options, built once: the point paths use them per call.
  const rocksdb::ReadOptions& point_read_options() const {
    return point_read_options_;
  }
  TenantRegistry& registry() { return registry_; }
  void Log(LogLevel level, std::string_view message) const {
    options_.logger->Log(level, message);
  }

 private:
  explicit EngineCore(EngineOptions options);

  struct KeyEntry {
    std::shared_ptr<TenantSlot> slot;
    std::string key_id;
  };
  struct DigestHash {
    size_t operator()(const Sha256Digest& d) const {
      size_t h;
      std::memcpy(&h, d.data(), sizeof(h));  // already uniformly distributed
      return h;
    }
  };
  struct DigestEq {
    bool operator()(const Sha256Digest& a, const Sha256Digest& b) const;
  };

  absl::Status OpenDatabase();
  absl::Status LoadRegistry();
  absl::Status ResumePurges();

  std::shared_ptr<TenantSlot> FindSlot(std::string_view id) const
      ABSL_LOCKS_EXCLUDED(index_mu_);
  absl::StatusOr<std::shared_ptr<TenantSlot>> FindLiveSlot(
      std::string_view id) const ABSL_LOCKS_EXCLUDED(index_mu_);
  std::shared_ptr<rocksdb::ColumnFamilyHandle> AdoptHandle(
      rocksdb::ColumnFamilyHandle* handle);
  absl::Status PersistTenant(const TenantSlot& slot, bool deleting)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_);
  void ApplySpecToSlot(TenantSlot& slot, const TenantSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);
  // For LoadRegistry only: fill in a slot no other thread can reach yet,
  // without locking its `mu` (see engine_core.cc for why).
  void InitUnpublishedSlot(TenantSlot& slot, const TenantRecord& record)
      ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void AddKeyToUnpublishedSlot(TenantSlot& slot, ApiKeyInfo key,
                               const Sha256Digest& digest)
      ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Pushes the spec's limits and rate to the slot's limiter tenant, if it has
  // one yet.
  void ApplyLimitsLocked(TenantSlot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);
  absl::Status PurgeSlotData(TenantSlot& slot);
  absl::Status ValidateSpec(const TenantSpec& spec) const;
  absl::Status ReserveUsage(TenantSlot& slot, int64_t delta_bytes,
                            int64_t delta_keys);
  void ReleaseUsage(TenantSlot& slot, int64_t delta_bytes, int64_t delta_keys);
  void CheckWarning(TenantSlot& slot, std::atomic<bool>& warned,
                    int64_t used, uint64_t limit, std::string_view what);
  absl::Mutex& KeyLock(uint64_t tenant, Namespace ns, std::string_view key);

  // Constant after construction
  EngineOptions options_;
  rocksdb::WriteOptions data_write_options_;
  rocksdb::WriteOptions registry_write_options_;
  const rocksdb::ReadOptions point_read_options_;
  TenantRegistry registry_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;
  std::shared_ptr<rocksdb::ColumnFamilyHandle> shared_cf_;
  rocksdb::ColumnFamilyOptions data_cf_options_;
  // Dedicated column families found at Open, until their tenants claim them;
  // any left over are orphans and are dropped. Tenant handles are destroyed
  // with their last shared_ptr.
  absl::flat_hash_map<std::string, std::shared_ptr<rocksdb::ColumnFamilyHandle>>
      pending_dedicated_;
  std::vector<std::function<void(uint64_t)>> purge_listeners_;
  bool cache_claimed_ = false;  // OpenCache claimed options_.cache
  std::unique_ptr<Limiter> limiter_;  // set in Open
  std::unique_ptr<JobRuntime> jobs_;  // set in Open; stopped first in ~EngineCore
#if TENANCY_THREAD_SANITIZER
  // RocksDB's group commit hands one thread's batch to another through
  // synchronisation that TSan cannot see in Debian's uninstrumented library;
  // TSan builds commit one batch at a time so reports are about our code.
  absl::Mutex tsan_commit_mu_;
#endif
  static constexpr size_t kKeyLockStripes = 4096;
  std::unique_ptr<absl::Mutex[]> key_locks_;

  // Purges are serialised; registry changes other than a purge's data
  // deletion are serialised by admin_mu_.
  absl::Mutex purge_mu_ ABSL_ACQUIRED_BEFORE(admin_mu_);
  absl::Mutex admin_mu_ ABSL_ACQUIRED_BEFORE(index_mu_);
  uint64_t next_number_ ABSL_GUARDED_BY(admin_mu_) = 1;

  mutable absl::Mutex index_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<TenantSlot>> by_id_
      ABSL_GUARDED_BY(index_mu_);
  absl::flat_hash_map<Sha256Digest, KeyEntry, DigestHash, DigestEq> keys_
      ABSL_GUARDED_BY(index_mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_ENGINE_CORE_H_
