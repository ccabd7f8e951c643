// The tiered limiter: concurrency and rate limits per tenant and for the whole
// process, on named, hierarchical limit classes.
//
// A limit class is a name such as "llm" or "llm/student". Names are
// hierarchical by '/': a permit for "llm/student" holds a slot of "llm" and a
// slot of "llm/student". Every class has numbers at two tiers:
//
//   tenant tier  each tenant has its own semaphore per class. Its limit is the
//                tenant's override (SetTenantLimits, from the tenant's spec) if
//                it has one, else the per-tenant default (LimiterOptions::
//                default_tenant_limits / SetDefaultTenantLimits).
//   global tier  one semaphore per class shared by all tenants
//                (LimiterOptions::global_limits / SetGlobalLimits).
//
// A class with no number at a tier is unlimited there. Token buckets (requests
// per second + burst) sit beside the semaphores at both tiers, per class and
// for all classes together (the class name kAllClasses).
//
// Acquiring a permit:
//   1. takes one token from every rate limit that applies (tenant-wide, tenant
//      per class, global-wide, global per class); an empty bucket refuses at
//      once (RESOURCE_EXHAUSTED, ErrorReason::kRateLimited, with Retry-After)
//      and gives back the tokens already taken. The limiter never sleeps for a
//      token: a caller over its rate should be told to come back, not queued.
//   2. takes the semaphores in one fixed order: tenant tier parent then child,
//      then global tier parent then child. Permits are given back in reverse.
//      Acquire() waits for a full semaphore until its deadline; TryAcquire()
//      never waits.
//
// Why the fixed order cannot deadlock. Rank every semaphore by (tier, depth):
// all tenant-tier semaphores before all global-tier ones, a parent before its
// children. An acquisition walks one class path, so the ranks it takes strictly
// increase, and a thread only ever waits for a semaphore ranked above every
// semaphore it holds (in particular it never holds a global permit while it
// waits for a tenant permit). Take the highest-ranked semaphore S that any
// blocked thread waits for. A holder of S that were blocked would be waiting
// for a semaphore ranked above S, against the choice of S; so every holder of
// S runs, and gives S back when its permit is released. So some waiter always
// makes progress, and no cycle of waits can form.
// The argument covers one acquisition at a time per thread: a thread that
// already holds a Permit and asks for another may wait while holding global
// slots, so it must pass a finite deadline (or use TryAcquire).
//
// Fairness. A full semaphore with waiters serves them in rotation by tenant
// (one grant per tenant with waiters, in turn; first come, first served within
// a tenant), and a release hands the freed slot straight to the next waiter in
// that rotation, never to a newcomer. So at the global tier a tenant with
// 1,000 waiters cannot starve a tenant with one: the lone waiter is served
// within as many releases as there are tenants waiting ahead of it.
//
// Cost. The uncontended path is lock-free: one atomic operation per semaphore
// to take a slot and one to give it back, one per limited token bucket, one
// for the admitted counter, and one clock read if any rate limit applies; no
// string hashing and no process-wide lock, provided callers resolve a
// LimitClass and a LimiterTenant once and keep them. Only a semaphore that is
// full or has callers queued (or a tenant's first use of a class) takes a
// mutex. bench/limiter_bench measures it.
//
// Thread safety: Limiter, LimiterTenant and LimitClass are safe for concurrent
// access from multiple threads without any external synchronization. A Permit
// is a value owned by one thread at a time (it may be moved to another thread).

#ifndef TENANCY_LIMITER_H_
#define TENANCY_LIMITER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tenancy {

namespace internal {
class LimiterRep;
struct ClassNode;
struct TenantClassState;
struct LimiterTenantState;
}  // namespace internal

class Limiter;

// The class name that, in a RateLimits map, means "every request, whatever its
// class": the tenant-wide request rate (tenant tier) or the process-wide one
// (global tier). Not a valid class name anywhere else.
inline constexpr std::string_view kAllClasses = "";

// The longest class path: "a/b/c/d/e/f/g/h" has depth 8.
inline constexpr int kMaxLimitClassDepth = 8;

// Which tier refused (or an event concerns).
enum class LimitTier { kTenant = 0, kGlobal = 1 };

// Whether a refusal came from a semaphore or a token bucket.
enum class LimitKind { kConcurrency = 0, kRate = 1 };

// "tenant" / "global".
std::string_view LimitTierName(LimitTier tier);
// "concurrency" / "rate".
std::string_view LimitKindName(LimitKind kind);

// A token bucket: `per_second` tokens accrue each second up to `burst`; each
// request takes one. Over any interval T at most per_second * T + burst
// requests are admitted.
// Intentionally copyable.
struct RateLimit {
  // Sustained rate, requests per second. REQUIRES: 0 < per_second <= 1e9.
  double per_second = 1;
  // Requests that may be admitted at once after an idle period.
  // REQUIRES: 1 <= burst <= 1e9.
  double burst = 1;
};

// Class name -> maximum permits held at once (>= 0; 0 admits nothing). The
// same type as TenantSpec::limits, so a spec's limits pass straight through.
using ConcurrencyLimits = std::map<std::string, int64_t>;
// Class name (or kAllClasses) -> token bucket.
using RateLimits = std::map<std::string, RateLimit>;

// One step of an acquisition or release, reported to a LimiterObserver.
// Intentionally copyable. The string_views are valid only during the call.
struct LimiterEvent {
  enum class Type {
    kWaiting,   // the caller found the semaphore full and starts to wait
    kAcquired,  // the caller now holds a slot of the semaphore
    kReleased,  // the slot is about to be given back
  };
  Type type = Type::kAcquired;
  LimitTier tier = LimitTier::kTenant;
  std::string_view tenant_id;
  std::string_view class_name;
};

// Sees every semaphore step the limiter takes, in the order it takes them, on
// the thread that takes it: for tests, tracing and debugging. Implementations
// must be thread-safe and fast, must not throw and must not call back into the
// Limiter.
class LimiterObserver {
 public:
  LimiterObserver() = default;
  LimiterObserver(const LimiterObserver&) = delete;
  LimiterObserver& operator=(const LimiterObserver&) = delete;
  virtual ~LimiterObserver() = default;

  virtual void OnEvent(const LimiterEvent& event) = 0;
};

struct LimiterOptions {
  // -------------------------------------------------------------------
  // Limits. Every class name must be valid (see Limiter::Class); Create()
  // refuses the options otherwise.

  // Maximum permits one tenant may hold at once per class, for tenants without
  // an override for that class. A class absent here is unlimited at the tenant
  // tier. Example (the seeded defaults): {{"llm", 30}, {"llm/student", 2},
  // {"llm/teacher", 10}, {"ocr", 5}}.
  // Default: empty. May change at runtime: SetDefaultTenantLimits().
  ConcurrencyLimits default_tenant_limits;

  // Maximum permits all tenants together may hold at once per class. A class
  // absent here is unlimited at the global tier. Example: {{"llm", 200}}.
  // Default: empty. May change at runtime: SetGlobalLimits().
  ConcurrencyLimits global_limits;

  // Request rate per tenant, per class; the key kAllClasses limits a tenant's
  // requests over all classes together. Tenants may override (SetTenantRates).
  // Default: empty (no rate limit). May change at runtime:
  // SetDefaultTenantRates().
  RateLimits default_tenant_rates;

  // Request rate shared by all tenants, per class; kAllClasses limits every
  // request through this Limiter.
  // Default: empty. May change at runtime: SetGlobalRates().
  RateLimits global_rates;

  // -------------------------------------------------------------------
  // Behavior

  // The Retry-After hint attached to concurrency refusals (rate refusals carry
  // the exact wait for a token instead).
  // Default: 1 s. Constant after Create().
  std::chrono::nanoseconds concurrency_retry_after = std::chrono::seconds(1);

  // The clock that drives the token buckets and rate Retry-After values. It
  // must be monotonic, thread-safe and cheap; tests inject a fake one.
  // Acquire() deadlines and wait-time counters always use the real
  // std::chrono::steady_clock, because a thread can only sleep on real time.
  // Default: empty, meaning std::chrono::steady_clock::now. Constant.
  std::function<std::chrono::steady_clock::time_point()> clock;

  // Told about every semaphore step (see LimiterObserver).
  // Default: nullptr. Constant after Create().
  std::shared_ptr<LimiterObserver> observer;
};

// A resolved limit class: resolve it once with Limiter::Class() and keep it, so
// acquisitions neither parse nor hash the name. Cheap to copy; valid as long as
// the Limiter that made it. A default-constructed LimitClass is invalid.
// Intentionally copyable.
class LimitClass {
 public:
  LimitClass() = default;

  bool valid() const { return node_ != nullptr; }
  // The full name, e.g. "llm/student". REQUIRES: valid().
  std::string_view name() const;

 private:
  friend class Limiter;
  friend class internal::LimiterRep;
  explicit LimitClass(const internal::ClassNode* node) : node_(node) {}

  const internal::ClassNode* node_ = nullptr;
};

// One tenant as the limiter sees it: its tenant-tier semaphores, token buckets
// and counters. Obtained from Limiter::AddTenant(); shared by every caller
// acting for the tenant. Keeping the handle avoids a map lookup per request.
// After Limiter::RemoveTenant() the handle stays safe to hold and destroy, but
// acquisitions through it fail with NOT_FOUND. The Limiter holds a reference
// too, and frees a removed tenant (at a later RemoveTenant, or with the
// Limiter) only once no handle and no permit of it is left, so a Permit needs
// no reference of its own. A handle may outlive the Limiter, but is then good
// only for destruction.
class LimiterTenant {
 public:
  LimiterTenant(const LimiterTenant&) = delete;
  LimiterTenant& operator=(const LimiterTenant&) = delete;
  ~LimiterTenant();

  const std::string& id() const;

 private:
  friend class Limiter;
  friend class internal::LimiterRep;
  explicit LimiterTenant(std::unique_ptr<internal::LimiterTenantState> state);

  const std::unique_ptr<internal::LimiterTenantState> state_;
};

// The right to run one request of one class for one tenant: a slot of every
// semaphore on the class path at both tiers. Destroying the Permit (or calling
// Release) gives every slot back, in reverse order of acquisition, exactly
// once, also when the holder's scope is left by an exception.
//
// REQUIRES: the Limiter that issued the permit outlives it. The tenant need
// not: a permit of a removed tenant stays valid and releases safely (the
// Limiter keeps the tenant's semaphores until the last such permit is gone).
// Move-only; two words, no reference count.
class Permit {
 public:
  // A permit that holds nothing.
  Permit() = default;
  Permit(Permit&& other) noexcept;
  // Releases what *this holds, then takes over `other`'s slots.
  Permit& operator=(Permit&& other) noexcept;
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit() {
    if (leaf_ != nullptr) Release();
  }

  // Gives the slots back now. Does nothing if the permit holds nothing.
  void Release();

  // True while the permit holds its slots.
  bool held() const { return leaf_ != nullptr; }

 private:
  friend class internal::LimiterRep;

  // Tenant-tier state of the class asked for; nullptr when holding nothing.
  internal::TenantClassState* leaf_ = nullptr;
  // How many levels of the class path are held at each tier, counted from the
  // root: a permit under construction may hold only a prefix of the path.
  uint8_t tenant_levels_ = 0;
  uint8_t global_levels_ = 0;
};

// What a refusal from the limiter was about, read from the Status payload so
// that servers and metrics do not parse messages.
// Intentionally copyable.
struct LimitRejection {
  LimitTier tier = LimitTier::kTenant;
  LimitKind kind = LimitKind::kConcurrency;
  // The class whose semaphore or bucket refused; kAllClasses ("") for a
  // tenant-wide or global-wide rate limit.
  std::string class_name;
  // How long the caller should wait before retrying (the same value as
  // GetRetryAfter()).
  std::chrono::nanoseconds retry_after{0};
};

// The rejection details of a status returned by Acquire/TryAcquire, or
// nullopt if `status` is not a limiter refusal.
std::optional<LimitRejection> GetLimitRejection(const absl::Status& status);

// Counters of one semaphore, for metrics. Counts since the tenant was added
// (or, at the global tier, since the Limiter was created).
// Intentionally copyable.
struct LimiterCounters {
  LimitTier tier = LimitTier::kTenant;
  // Empty at the global tier.
  std::string tenant_id;
  std::string class_name;
  // The effective concurrency limit now; nullopt when unlimited.
  std::optional<int64_t> limit;
  // Slots held now, including those held through a child class (a permit for
  // "llm/student" counts in "llm" and in "llm/student").
  int64_t in_use = 0;
  // Tenant tier: callers of this tenant that asked for exactly this class and
  // are blocked in Acquire() (at either tier). Global tier: callers queued at
  // this class's global semaphore.
  int64_t waiting = 0;
  // Tenant tier only (zero at the global tier), by the class asked for:
  // permits granted, refusals by semaphores (TryAcquire refusals and Acquire
  // timeouts) and by token buckets, and the total time callers spent blocked.
  int64_t admitted = 0;
  int64_t rejected_concurrency = 0;
  int64_t rejected_rate = 0;
  std::chrono::nanoseconds total_wait{0};
};

class Limiter {
 public:
  // Returns a limiter configured by `options`.
  // INVALID_ARGUMENT: a class name, limit or rate in `options` is invalid.
  static absl::StatusOr<std::unique_ptr<Limiter>> Create(LimiterOptions options);

  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;
  // REQUIRES: no Permit of this Limiter is alive and no thread is inside one
  // of its methods.
  ~Limiter();

  // ---------------------------------------------------------------------
  // Classes and tenants (slow path: take a process-wide mutex)

  // Resolves (creating on first use) the class `name` and all its parents.
  // A name is 1 to 8 '/'-separated segments of [A-Za-z0-9_.-], at most 255
  // bytes in all: "llm", "llm/student". Classes are never forgotten, so a
  // Limiter holds at most 4096 of them: do not make names from request data.
  // INVALID_ARGUMENT: `name` is not a valid class name.
  // RESOURCE_EXHAUSTED: `name` is new and the Limiter already holds 4096.
  absl::StatusOr<LimitClass> Class(std::string_view name);

  // The one rule for limit class names, wherever they come from (a spec's
  // limits, a tenants file, options): OK, or INVALID_ARGUMENT saying why.
  static absl::Status ValidateClassName(std::string_view name);

  // Returns the tenant `tenant_id`, adding it (with the default limits and no
  // overrides) if it is not there. Idempotent: a second call returns the same
  // handle. The id is used only as a name; the tenant registry validates ids.
  std::shared_ptr<LimiterTenant> AddTenant(std::string_view tenant_id);

  // The tenant `tenant_id`, or nullptr if it was never added or was removed.
  std::shared_ptr<LimiterTenant> GetTenant(std::string_view tenant_id) const;

  // Forgets the tenant: its permits stay valid and release safely, its handles
  // stay safe to hold, but new acquisitions through them fail with NOT_FOUND.
  // A later AddTenant() of the same id starts afresh. Returns false if the
  // tenant was not there.
  bool RemoveTenant(std::string_view tenant_id);

  // ---------------------------------------------------------------------
  // Live configuration. Each call replaces the whole map it sets: a class
  // missing from the new map falls back (tenant overrides -> defaults) or
  // becomes unlimited. Changes apply to new acquisitions at once; permits
  // already held stay valid, so after a limit is lowered in_use may exceed the
  // limit until enough permits are released. Raising a limit wakes waiters.
  // A validation failure changes nothing.
  // INVALID_ARGUMENT: a class name, limit or rate is invalid.

  // The tenant's own concurrency limits (from its spec), overriding defaults.
  // NOT_FOUND: no tenant `tenant_id`.
  absl::Status SetTenantLimits(std::string_view tenant_id, const ConcurrencyLimits& overrides);
  // The tenant's own rate limits, overriding default_tenant_rates per key.
  // NOT_FOUND: no tenant `tenant_id`.
  absl::Status SetTenantRates(std::string_view tenant_id, const RateLimits& overrides);
  absl::Status SetDefaultTenantLimits(const ConcurrencyLimits& limits);
  absl::Status SetDefaultTenantRates(const RateLimits& rates);
  absl::Status SetGlobalLimits(const ConcurrencyLimits& limits);
  absl::Status SetGlobalRates(const RateLimits& rates);

  // The maps last set (or given in LimiterOptions).
  ConcurrencyLimits DefaultTenantLimits() const;
  ConcurrencyLimits GlobalLimits() const;
  // The tenant-tier limits in force for a tenant whose overrides are
  // `overrides`: the defaults now, overlaid with them. For display.
  ConcurrencyLimits EffectiveTenantLimits(const ConcurrencyLimits& overrides) const;

  // ---------------------------------------------------------------------
  // Acquisition (fast path: lock-free unless a semaphore is full)

  // Takes a permit for `cls` on behalf of `tenant`, waiting for full
  // semaphores until `deadline` (on std::chrono::steady_clock; a deadline in
  // the past still succeeds if no wait is needed). The caller owns the Permit.
  // REQUIRES: `tenant` and `cls` come from this Limiter; cls.valid(); the
  // caller keeps `tenant` alive for the call (holds its shared_ptr).
  // Errors (read the details with GetLimitRejection()):
  //   RESOURCE_EXHAUSTED, ErrorReason::kRateLimited: a token bucket is empty;
  //     GetRetryAfter() is the time until it has a token.
  //   DEADLINE_EXCEEDED, ErrorReason::kConcurrencyLimited: no slot of some
  //     semaphore before the deadline; Retry-After is a hint.
  //   NOT_FOUND, ErrorReason::kTenantDeleted: the tenant was removed.
  absl::StatusOr<Permit> Acquire(LimiterTenant& tenant, const LimitClass& cls,
                                 std::chrono::steady_clock::time_point deadline);

  // Like Acquire(), but never waits: a full semaphore (or one with callers
  // already queued) refuses at once with RESOURCE_EXHAUSTED,
  // ErrorReason::kConcurrencyLimited.
  absl::StatusOr<Permit> TryAcquire(LimiterTenant& tenant, const LimitClass& cls);

  // Conveniences by name for hosts that do not care about speed: they look
  // the tenant and class up under the limiter's mutex on every call.
  // NOT_FOUND: no tenant `tenant_id`. INVALID_ARGUMENT: bad class name.
  // Otherwise as above.
  absl::StatusOr<Permit> Acquire(std::string_view tenant_id, std::string_view class_name,
                                 std::chrono::steady_clock::time_point deadline);
  absl::StatusOr<Permit> TryAcquire(std::string_view tenant_id, std::string_view class_name);

  // ---------------------------------------------------------------------
  // Counters (cheap: atomic loads, no waiting on the fast path)

  // The counters of `tenant`'s semaphore for `cls` (zeros and the effective
  // limit if the tenant never used the class). REQUIRES: as for Acquire().
  LimiterCounters TenantCounters(const LimiterTenant& tenant, const LimitClass& cls) const;
  // The counters of the global semaphore for `cls`. REQUIRES: cls.valid().
  LimiterCounters GlobalCounters(const LimitClass& cls) const;
  // Every semaphore in use so far: a row per (tenant, class) a tenant has
  // used, by tenant id then class name, then a row per class at the global
  // tier, by class name. Removed tenants are left out. Takes the limiter's
  // mutex for the duration: call it at scrape intervals, not per request.
  std::vector<LimiterCounters> Snapshot() const;

 private:
  explicit Limiter(std::unique_ptr<internal::LimiterRep> rep);

  const std::unique_ptr<internal::LimiterRep> rep_;
};

}  // namespace tenancy

#endif  // TENANCY_LIMITER_H_
