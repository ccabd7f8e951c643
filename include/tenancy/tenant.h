// Tenants: what an operator sets (TenantSpec), what the registry reports
// (TenantInfo), and the handle every data call goes through (Tenant).
//
// Thread safety: TenantSpec, Quota, Usage and TenantInfo are plain values (not
// thread-safe; copy them). Tenant is safe for concurrent access from multiple
// threads without any external synchronization.

#ifndef TENANCY_TENANT_H_
#define TENANCY_TENANT_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/limiter.h"

namespace tenancy {

namespace internal {
class Access;
class TenantSlot;
struct EngineParts;
}  // namespace internal

class KvStore;
class JobQueue;
class JobWorkers;
class TenantCache;

// Where a tenant's data lives.
enum class Placement {
  // In the shared column family, with many other tenants. Cheap: thousands to
  // hundreds of thousands of tenants.
  kShared,
  // In a column family of its own (own memtables and compactions); purge is a
  // DropColumnFamily. For a few large or noisy tenants only: RocksDB advises
  // against more than a few hundred column families.
  kDedicated,
};

// Lifecycle state. Derived from the spec's `enabled` and `read_only` flags,
// except kDeleting, which only Purge sets.
enum class TenantState {
  kActive,    // reads and writes
  kReadOnly,  // reads yes, writes refused (PERMISSION_DENIED, kTenantReadOnly)
  kDisabled,  // data calls refused (PERMISSION_DENIED, kTenantDisabled)
  kDeleting,  // data being purged; the id is not reusable until done
};

std::string_view TenantStateName(TenantState state);  // "active", ...
std::string_view PlacementName(Placement placement);  // "shared", "dedicated"

// What a tenant may not pass. Zero means "no limit" (or, where said, "the
// engine's default"). All fields may change at runtime (TenantRegistry::Update)
// and take effect for the next call.
struct Quota {
  // Logical bytes stored: user key + value sizes of every entry, without
  // internal prefixes, across the key-value store and queued jobs.
  uint64_t storage_bytes = 0;
  // Number of keys in the key-value store.
  uint64_t max_keys = 0;
  // Largest value accepted. 0: EngineOptions::max_value_bytes.
  uint64_t max_value_bytes = 0;
  // Token-bucket request rate for the tenant as a whole. 0: unlimited.
  double requests_per_second = 0;
  // Bucket depth in requests. 0: max(1, requests_per_second).
  double burst = 0;
  // Jobs in state queued, delayed or claimed. 0: unlimited.
  uint64_t max_queued_jobs = 0;
  // In-memory cache budget in bytes. 0: the engine's default.
  uint64_t cache_bytes = 0;

  friend bool operator==(const Quota&, const Quota&) = default;
};

// What an operator sets. Intentionally copyable.
struct TenantSpec {
  // A DNS label: ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$. Anything else is
  // INVALID_ARGUMENT.
  std::string id;
  Quota quota;
  // Concurrency limits per limit class ("llm", "llm/student", ...), overriding
  // the engine's per-tenant defaults. Values must be >= 0.
  std::map<std::string, int64_t> limits;
  // Fixed at creation; an update that changes it is FAILED_PRECONDITION.
  Placement placement = Placement::kShared;
  bool enabled = true;
  bool read_only = false;
  // Free-form operator labels (owner, plan, ...). Not interpreted.
  std::map<std::string, std::string> labels;

  friend bool operator==(const TenantSpec&, const TenantSpec&) = default;
};

// What a tenant uses now. Intentionally copyable.
struct Usage {
  uint64_t bytes = 0;  // logical bytes (see Quota::storage_bytes)
  uint64_t keys = 0;   // keys in the key-value store

  friend bool operator==(const Usage&, const Usage&) = default;
};

// An API key as the registry reports it: never the secret.
struct ApiKeyInfo {
  std::string key_id;  // stable identifier, used to revoke
  std::string prefix;  // public prefix of the secret, for telling keys apart
  absl::Time created_at;
};

// A freshly made API key. The secret is shown here once and never again: the
// registry stores only its SHA-256.
struct NewApiKey {
  std::string key_id;
  std::string prefix;
  std::string secret;
};

// What a caller did, for request counters (RequestStats, metrics).
enum class CallKind { kGet, kPut, kDelete, kScan, kBatch, kCache, kJobs, kOther };
inline constexpr int kNumCallKinds = 8;
std::string_view CallKindName(CallKind kind);  // "get", "put", ...

// Why a tenant's call was refused, as the library counts it (and as the
// metric label tenancy_rejections_total{reason} names it).
enum class Rejection {
  kRateLimited,         // "rate_limited": a token bucket was empty
  kConcurrencyLimited,  // "concurrency_limited": no permit of a limit class
  kQuotaExceeded,       // "quota_exceeded": storage, key or queued-jobs quota
  kTooLarge,            // "too_large": a key or value over its limit
  kTenantDisabled,      // "tenant_disabled"
  kTenantReadOnly,      // "tenant_read_only": a write to a read-only tenant
};
inline constexpr int kNumRejections = 6;
std::string_view RejectionName(Rejection rejection);

// Per-tenant request counters kept by the library.
struct RequestStats {
  // Calls by kind since the engine opened, indexed by CallKind.
  std::array<uint64_t, kNumCallKinds> calls_by_kind{};
  uint64_t calls_total = 0;                       // since the engine opened
  uint64_t calls_today = 0;                       // in the current UTC day
  absl::Time last_active = absl::InfinitePast();  // InfinitePast(): never
  // Calls refused since the engine opened, indexed by Rejection. Each is
  // counted once, where the library refuses it.
  std::array<uint64_t, kNumRejections> rejections{};
};

// What the registry reports about a tenant. Intentionally copyable.
struct TenantInfo {
  TenantSpec spec;
  // Internal number: assigned once, never reused (also across restarts and
  // after purge). Prefixes every stored key. Not a secret.
  uint64_t number = 0;
  TenantState state = TenantState::kActive;
  absl::Time created_at;
  absl::Time updated_at;
  std::vector<ApiKeyInfo> keys;
  Usage usage;
  RequestStats requests;
};

// A cheap, shared handle to one tenant. Copying it copies a shared pointer.
// Every data call checks the tenant's state first: holding a handle never
// blocks Disable or Purge, and calls on a purged tenant fail cleanly with
// NOT_FOUND (kTenantDeleted).
//
// REQUIRES: a Tenant must not outlive the Engine it came from.
class Tenant {
 public:
  // Intentionally copyable.
  Tenant(const Tenant&) = default;
  Tenant& operator=(const Tenant&) = default;
  Tenant(Tenant&&) = default;
  Tenant& operator=(Tenant&&) = default;
  ~Tenant();

  const std::string& id() const;
  uint64_t number() const;
  TenantState state() const;
  Placement placement() const;

  // The tenant's current spec (a copy).
  TenantSpec spec() const;

  // The tenant's key-value store. Cheap; the result holds this handle.
  KvStore kv() const;

  // The tenant's job queue (tenancy/jobs.h). Cheap; the result holds this
  // handle.
  JobQueue jobs() const;

  // The tenant's part of the engine's cache (tenancy/cache.h). Cheap; the
  // result holds this handle.
  TenantCache cache() const;

  // Exact usage now.
  Usage usage() const;

  // Request counters now.
  RequestStats requests() const;

  // Counts one call of `kind` (calls today, last active). Data calls of the
  // library count themselves; a host counts calls the library does not see.
  void RecordCall(CallKind kind) const;

  // A permit of limit class `cls` (from Engine::limiter().Class()) on behalf
  // of this tenant: the tenant tier (the spec's limits over the engine's
  // defaults, and the quota's request rate), then the global tier. See
  // Limiter::Acquire for the waiting rules and the errors; also NOT_FOUND
  // (kTenantDeleted) once the tenant is purged. The caller owns the Permit;
  // it must not outlive the Engine.
  absl::StatusOr<Permit> Acquire(const LimitClass& cls,
                                 std::chrono::steady_clock::time_point deadline) const;
  // As Acquire, but never waits (Limiter::TryAcquire).
  absl::StatusOr<Permit> TryAcquire(const LimitClass& cls) const;
  // The concurrency limits in force for this tenant: the limiter's current
  // defaults overlaid with the spec's limits. For display.
  ConcurrencyLimits EffectiveLimits() const;

  // OK when the tenant accepts reads (active or read-only); PERMISSION_DENIED
  // (kTenantDisabled) or NOT_FOUND (kTenantDeleted) otherwise.
  absl::Status CheckReadable() const;
  // As CheckReadable, and PERMISSION_DENIED (kTenantReadOnly) when read-only.
  absl::Status CheckWritable() const;

 private:
  friend class internal::Access;
  Tenant(std::shared_ptr<internal::TenantSlot> slot, internal::EngineParts* parts);

  std::shared_ptr<internal::TenantSlot> slot_;
  internal::EngineParts* parts_;  // owned by the Engine
};

// Returns OK if `id` is a valid tenant id, INVALID_ARGUMENT otherwise.
absl::Status ValidateTenantId(std::string_view id);

}  // namespace tenancy

#endif  // TENANCY_TENANT_H_
