// Leased permits: the tiered limiter (tenancy/limiter.h) for callers that are
// not threads of this process. A remote worker takes a permit of a limit class
// for a tenant, gets an unguessable token and an expiry, renews the lease
// while it works and releases the permit when done. A permit whose lease ends
// is released by the engine, so a worker that dies cannot hold a slot for
// longer than its lease.
//
//   tenancy::PermitLeases& leases = engine->permits();
//   auto permit = leases.Take(acme, "llm/student", absl::Seconds(60),
//                             std::chrono::steady_clock::now() + std::chrono::seconds(5));
//   if (!permit.ok()) ...;                      // e.g. DEADLINE_EXCEEDED: try later
//   ... hand permit->token to the worker ...
//   leases.Renew(acme, permit->token, absl::Seconds(60));
//   leases.Release(acme, permit->token);
//
// A leased permit is a Limiter Permit like any other: taking one takes the
// tenant tier parent then child, then the global tier (Limiter::Acquire), with
// the limiter's fairness between tenants, and it counts in the limiter's
// in_use numbers while held. Leases only add the token, the expiry and the
// release of expired permits.
//
// Which classes may be taken. A class must be named by a concurrency limit
// (the engine's per-tenant defaults, the tenant's spec limits, or a global
// limit): a class that no limit names would be unlimited, and creating classes
// from request data would fill the limiter's class table. Classes under
// PermitLeaseOptions::reserved_class_roots (those a server holds per request,
// "requests" by default) cannot be taken: a remote caller holding them would
// take the server's own admission slots.
//
// Expiry. One sweeper thread per PermitLeases sleeps until the earliest
// expiry and releases what has expired, so a caller blocked in Take() for the
// slot an abandoned permit holds gets it when the lease ends (a lazy sweep on
// the next call would leave that caller waiting). Renew() and Release() of a
// permit whose lease has ended answer NOT_FOUND even before the sweeper runs.
//
// Tenants. When a tenant is disabled or purged, its leased permits are
// released at once (the engine calls ReleaseTenant()). Permits live in memory
// only: they do not survive the Engine.
//
// Ownership: the Engine owns its PermitLeases (Engine::permits()); it is valid
// as long as the Engine, and every permit it holds is given back when the
// Engine closes.
//
// Thread safety: PermitLeases is safe for concurrent access from multiple
// threads without any external synchronization. LeasedPermit and
// PermitLeaseCounters are plain values.

#ifndef TENANCY_LEASED_PERMITS_H_
#define TENANCY_LEASED_PERMITS_H_

#include <chrono>
#include <cstdint>
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
class PermitLeaseTable;
}  // namespace internal

class Tenant;

// The longest lease one Take() or Renew() may ask for. Renew to hold longer.
inline constexpr absl::Duration kMaxPermitLease = absl::Seconds(3600);

struct PermitLeaseOptions {
  // Limits

  // Classes that cannot be leased: a root `r` reserves the class `r`, its
  // children `r/...` and its siblings by name `r.…` (such as tenancyd's
  // "requests.claim-waits"). Default: {"requests"}, the classes tenancyd holds
  // for every request. Fixed after Engine::Open.
  std::vector<std::string> reserved_class_roots = {"requests"};
};

// A permit as Take() grants it. Intentionally copyable.
struct LeasedPermit {
  // The token that names the permit to Renew() and Release(): "pt_" and 32
  // base64url characters (192 random bits). A bearer secret of the tenant's.
  std::string token;
  std::string class_name;
  // When the lease ends unless renewed (wall clock, for callers elsewhere).
  absl::Time expires_at;
};

// Counters of one (tenant, class), for metrics. Intentionally copyable.
struct PermitLeaseCounters {
  std::string tenant_id;
  std::string class_name;
  // Leased permits held now.
  int64_t in_use = 0;
  // Take() calls inside a wait now (those given a deadline in the future).
  int64_t waiting = 0;
  // Permits granted.
  int64_t granted = 0;
  // Take() calls given a deadline in the future (allowed to wait), and those
  // of them whose deadline passed without a permit.
  int64_t waits = 0;
  int64_t wait_timeouts = 0;
  // Permits released because their lease ended.
  int64_t expired = 0;
};

class PermitLeases {
 public:
  PermitLeases(const PermitLeases&) = delete;
  PermitLeases& operator=(const PermitLeases&) = delete;
  // Releases every permit still leased. REQUIRES: the Limiter outlives it.
  ~PermitLeases();

  // Takes a permit of `class_name` for `tenant` for `lease` (0 < lease <=
  // kMaxPermitLease), waiting for it until `deadline` (steady clock; a past
  // deadline takes only a free slot). The token is the caller's to keep.
  // INVALID_ARGUMENT: a bad lease, a malformed or reserved class, or a class
  //   that no limit names (see the top of this file).
  // DEADLINE_EXCEEDED (kConcurrencyLimited): no slot before the deadline.
  // RESOURCE_EXHAUSTED (kRateLimited): a token bucket of the class is empty.
  // PERMISSION_DENIED / NOT_FOUND: the tenant is disabled / purged.
  // (As Tenant::Acquire; read the details with GetLimitRejection().)
  absl::StatusOr<LeasedPermit> Take(const Tenant& tenant, std::string_view class_name,
                                    absl::Duration lease,
                                    std::chrono::steady_clock::time_point deadline);

  // Extends the lease of `token` to `lease` from now; returns the new expiry.
  // INVALID_ARGUMENT: a bad lease. NOT_FOUND: the token is malformed, unknown,
  // another tenant's, released, or its lease has ended.
  absl::StatusOr<absl::Time> Renew(const Tenant& tenant, std::string_view token,
                                   absl::Duration lease);

  // Releases the permit of `token`.
  // NOT_FOUND: as for Renew().
  absl::Status Release(const Tenant& tenant, std::string_view token);

  // Releases every permit of tenant `tenant_id` (the engine calls it when the
  // tenant is disabled or purged); `forget` also drops its counters (purge).
  // Returns how many were released.
  size_t ReleaseTenant(std::string_view tenant_id, bool forget);

  // A row per (tenant, class) that Take() was asked for, by tenant then
  // class. Takes the mutex for the duration: for scrapes, not per request.
  std::vector<PermitLeaseCounters> Snapshot() const;

 private:
  friend class internal::PermitLeaseTable;
  explicit PermitLeases(std::unique_ptr<internal::PermitLeaseTable> table);

  const std::unique_ptr<internal::PermitLeaseTable> table_;
};

}  // namespace tenancy

#endif  // TENANCY_LEASED_PERMITS_H_
