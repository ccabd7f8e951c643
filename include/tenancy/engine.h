// Engine: one RocksDB directory serving many isolated tenants. The Engine owns
// the tenant registry and every per-tenant store.
//
//   tenancy::EngineOptions options;
//   options.path = "/var/lib/tenancy";
//   auto engine = tenancy::Engine::Open(options);
//   if (!engine.ok()) ...;
//   auto info = (*engine)->registry().Create({.id = "acme"});
//   auto acme = (*engine)->GetTenant("acme");
//   absl::Status s = acme->kv().Put("greeting", "hello");
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization. REQUIRES: every Tenant, KvStore, JobQueue,
// TenantCache and TenantRegistry reference obtained from an Engine is dropped
// before the Engine is destroyed.

#ifndef TENANCY_ENGINE_H_
#define TENANCY_ENGINE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tenancy/cache.h"
#include "tenancy/jobs.h"
#include "tenancy/leased_permits.h"
#include "tenancy/lifecycle.h"
#include "tenancy/limiter.h"
#include "tenancy/logger.h"
#include "tenancy/metrics.h"
#include "tenancy/tenant.h"
#include "tenancy/tenant_registry.h"

// Declared, not included: the public headers do not include RocksDB's, so a
// host that does not use EngineOptions::file_system needs none of them (and
// RocksDB's headers stay out of every translation unit of the host). A host
// that does use it includes rocksdb/file_system.h itself.
namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace tenancy {

namespace internal {
class Access;
struct EngineParts;
}  // namespace internal

struct EngineOptions {
  // Behavior

  // RocksDB directory. Created if missing and `create_if_missing`.
  std::string path;
  // Default: true.
  bool create_if_missing = true;
  // Where the library reports. Default (nullptr): stderr, level info.
  std::shared_ptr<Logger> logger;
  // Fraction of a storage or key quota whose crossing logs one warning per
  // crossing. Default: 0.9. Fixed after Open.
  double quota_warning_fraction = 0.9;
  // fsync the WAL on every write. Default: false (WAL written, not synced; a
  // process crash loses nothing, a machine crash may lose the last writes).
  bool sync_writes = false;
  // Where backups of the engine and archives of purged tenants go
  // (Engine::lifecycle(), tenancy/lifecycle.h). Default (empty): `path` +
  // ".backups", beside the data directory. Fixed after Open.
  std::string backup_dir;
  // Adopts a plain single-tenant RocksDB directory in place: when not empty,
  // Open moves every key of the `default` column family (where a program
  // that is not this library keeps its data) into this tenant's key-value
  // store, creating the tenant if absent (shared placement, default spec).
  // Keys move in batches, each one WriteBatch that writes the keys to the
  // tenant, deletes them from `default` and carries the exact usage delta:
  // after a crash every key is in exactly one place and the next Open with
  // the option resumes. With `default` empty it does nothing, so it can stay
  // set. Before moving anything Open scans `default` and refuses
  // (INVALID_ARGUMENT, naming the key, nothing moved) a key over
  // max_key_bytes or a value over max_value_bytes; it also refuses a
  // directory with column families that are not the engine's (naming them;
  // nothing changed). Adoption is an operator's act: the tenant's quotas do
  // not refuse it. A directory written with a comparator other than
  // RocksDB's bytewise one is refused by RocksDB itself at Open; one whose
  // `default` holds merge operands fails to adopt (the engine has no merge
  // operator for it). Progress is logged. Without the option, Open logs a
  // warning when `default` holds any key. Default: "" (off).
  std::string adopt_existing_data;
  // The file system the database runs on (RocksDB's FileSystem interface,
  // wrapped into an Env with rocksdb::NewCompositeEnv). For hosts with a
  // file system of their own and for tests that inject faults (see
  // tests/fault_injection_fs.h). Backups, exports and archives
  // (Engine::lifecycle()) still use the default file system. Default
  // (nullptr): RocksDB's default. Fixed after Open.
  std::shared_ptr<rocksdb::FileSystem> file_system;

  // Storage errors

  // After a storage error that stops writes (disk full, I/O error on the WAL,
  // a flush or a compaction; see Engine::Health()), the engine asks RocksDB
  // to resume at most this often, on the first write attempt after the
  // interval (and on Engine::Resume()). Refused writes carry it as their
  // retry-after. Default: 1 s.
  std::chrono::milliseconds storage_resume_interval{1000};

  // Limits

  // Largest key accepted, in bytes. Default: 4096. Fixed after Open.
  size_t max_key_bytes = 4096;
  // Largest value accepted, in bytes, unless a tenant's quota sets a smaller
  // one. Default: 4 MiB. Fixed after Open.
  size_t max_value_bytes = size_t{4} << 20;

  // Performance

  // Memory for all memtables of all column families together (one RocksDB
  // WriteBufferManager). Default: 256 MiB.
  size_t memtable_budget_bytes = size_t{256} << 20;
  // Block cache shared by all column families. Default: 256 MiB.
  size_t block_cache_bytes = size_t{256} << 20;
  // WAL size that forces a flush of the column families pinning the oldest
  // log, so cold dedicated tenants do not pin the WAL. Default: 512 MiB.
  uint64_t max_total_wal_size = uint64_t{512} << 20;
  // RocksDB background flush + compaction threads. Default: 2.
  int background_jobs = 2;
  // Request threads write with RocksDB's no_slowdown: a write stall comes back
  // as UNAVAILABLE instead of blocking the caller. Default: true.
  bool fail_writes_on_stall = true;
  // Leave Abseil's Mutex deadlock detection as the process has it. Debian
  // bookworm's Abseil is built without NDEBUG, so detection is on by default:
  // every absl::Mutex acquisition then goes through a process-wide lock-order
  // graph behind a global lock (about 3x the cost of an uncontended lock, and
  // a point of contention between all threads) and every mutex ever locked
  // keeps a graph node. When false, Open turns detection off for the whole
  // process (absl::SetMutexDeadlockDetectionMode(kIgnore)), as a release
  // build of Abseil would have it. Tests that want lock-order checking set
  // true. Default: false.
  bool keep_mutex_deadlock_detection = false;

  // Concurrency and rate limits
  // The engine's Limiter (tenancy/limiter.h, Engine::limiter()): per-tenant
  // defaults and global limits for every limit class the host uses. A tenant's
  // spec overrides the defaults per class (TenantSpec::limits) and its quota's
  // requests_per_second/burst become its kAllClasses rate; the engine keeps
  // the limiter in step with the registry (create, update, purge).
  // Default: LimiterOptions{} (no limits). Limits and rates may change at
  // runtime through Engine::limiter().
  LimiterOptions limiter;

  // Permits leased to remote callers (tenancy/leased_permits.h,
  // Engine::permits()): which classes cannot be leased.
  // Default: PermitLeaseOptions{} ("requests" and its classes are reserved).
  // Fixed after Open.
  PermitLeaseOptions permits;

  // Jobs

  // Leases, backoff, limits and the clock of every tenant's JobQueue (see
  // tenancy/jobs.h). Default: JobQueueOptions{}. Fixed after Open.
  JobQueueOptions jobs;

  // Cache

  // The in-memory cache behind every tenant's TenantCache (Tenant::cache(),
  // tenancy/cache.h). A tenant's budget in it is its spec's
  // Quota::cache_bytes, or the cache's default_tenant_budget_bytes when that
  // is 0. Default (nullptr): the engine creates one with CacheOptions{} (256
  // MiB in all, 16 MiB per tenant). Pass one made with Cache::Create to size
  // it or to give it a clock; after Open, options().cache is the cache in use
  // (its TotalStats() are the engine's totals). The engine shares ownership.
  // One Cache serves one Engine at a time: tenants are named to it by their
  // engine-local numbers, so Open refuses (INVALID_ARGUMENT) a cache that
  // another open Engine uses or that holds entries, and the Engine drops all
  // its entries and budgets when it is destroyed. Fixed after Open.
  std::shared_ptr<Cache> cache;
};

// What Engine::Health() reports. Intentionally copyable.
struct EngineHealth {
  // False while the database refuses writes after a storage error (RocksDB's
  // background error state: a WAL write or sync, a flush or a compaction
  // failed with ENOSPC or EIO). Reads keep working; writes are UNAVAILABLE
  // (ErrorReason::kStorageUnavailable) until a resume succeeds.
  bool ok = true;
  // Empty when ok; else what failed and how, as RocksDB reports it (it may
  // name files): "flush: IO error: No space left on device: While appending
  // to file: ...". For logs and operators.
  std::string reason;
  // Empty when ok; else the same without file names, fit to show to anyone
  // (tenancyd's GET /health): "flush: no space left on device", or "write:
  // I/O error (the WAL failed: restart to recover)".
  std::string summary;
};

class Engine {
 public:
  // Opens (or creates) the engine at options.path, loads the registry and
  // resumes any purge a crash interrupted.
  // Returns INVALID_ARGUMENT for bad options, or the RocksDB error
  // (e.g. UNAVAILABLE/INTERNAL when another process holds the directory).
  static absl::StatusOr<std::unique_ptr<Engine>> Open(EngineOptions options);

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Flushes request counters and closes the database.
  ~Engine();

  // The registry. Valid as long as the Engine.
  TenantRegistry& registry();

  // A handle to tenant `id` in any state but deleting. NOT_FOUND if there is no
  // such tenant; INVALID_ARGUMENT for a malformed id.
  absl::StatusOr<Tenant> GetTenant(std::string_view id) const;

  // A handle to the tenant owning API key `secret`. UNAUTHENTICATED for an
  // unknown, revoked or malformed key. Does not check the tenant's state.
  absl::StatusOr<Tenant> ResolveApiKey(std::string_view secret) const;

  // Flushes memtables and request counters to disk.
  absl::Status Flush();

  // Whether the database accepts writes (see EngineHealth). The engine logs
  // one error when it becomes degraded and one notice when it recovers, and
  // exports tenancy_engine_degraded (CollectMetrics). Cheap: no I/O.
  EngineHealth Health() const;

  // Asks RocksDB to resume writing after a storage error now (DB::Resume():
  // it flushes the memtables to new files), rather than on the next write
  // after EngineOptions::storage_resume_interval. OK when not degraded or
  // when resumed; otherwise UNAVAILABLE (kStorageUnavailable) with the
  // cause, and the engine stays degraded. After a failed WAL append or sync
  // it always fails: RocksDB 7.8 would keep writing to the failed WAL, so
  // only reopening the engine (restarting the host) recovers; Health()'s
  // reason then says "restart to recover".
  // RocksDB's own automatic recovery is off: the engine is the one party
  // that resumes, so the two never race (RocksDB answers a manual resume
  // during its own recovery with Busy).
  absl::Status Resume();

  // A RocksDB property of the default-or-shared column family, e.g.
  // "rocksdb.estimate-num-keys". NOT_FOUND if RocksDB does not know it.
  absl::StatusOr<uint64_t> GetIntProperty(std::string_view property) const;

  // Writes the engine's series to `sink` (for Metrics::AddCollector):
  //   per tenant: tenancy_storage_bytes, tenancy_keys, tenancy_quota_bytes
  //     (with a storage quota), tenancy_calls_total{kind},
  //     tenancy_rejections_total{reason} (RejectionName),
  //     tenancy_limiter_in_use / _limit / _admitted_total /
  //     _rejected_total{class,kind};
  //   in all: tenancy_tenants{state}, tenancy_tenants_active,
  //     tenancy_engine_degraded (1 while Health() is not ok),
  //     tenancy_limiter_global_in_use / _waiting / _limit{class}, and a few
  //     RocksDB gauges (tenancy_rocksdb_*);
  //   per tenant and class of leased permits (permits()):
  //     tenancy_permits_in_use, tenancy_permits_waiting,
  //     tenancy_permits_granted_total, tenancy_permit_waits_total,
  //     tenancy_permit_wait_timeouts_total, tenancy_permits_expired_total.
  // Cost: a pass over the tenants (no lock held across it) per call.
  void CollectMetrics(MetricSink& sink) const;

  // The tiered limiter every tenant of this engine acquires through
  // (Tenant::Acquire). Resolve classes here once (Limiter::Class) and change
  // defaults and global limits live. Valid as long as the Engine.
  Limiter& limiter();

  // Permits of the limiter leased under a token, for callers outside the
  // process (a REST host's remote workers). The engine releases a tenant's
  // leased permits when it is disabled or purged. Valid as long as the Engine.
  PermitLeases& permits();

  // Export and import of tenants, backups with restore of one tenant, and
  // archives of purged tenants. Valid as long as the Engine.
  TenantLifecycle& lifecycle();

  const EngineOptions& options() const;
  Logger& logger() const;

 private:
  friend class internal::Access;
  explicit Engine(std::unique_ptr<internal::EngineParts> parts);

  std::unique_ptr<internal::EngineParts> parts_;
  TenantRegistry registry_;
  std::unique_ptr<TenantLifecycle> lifecycle_;
};

}  // namespace tenancy

#endif  // TENANCY_ENGINE_H_
