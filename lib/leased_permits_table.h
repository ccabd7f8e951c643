// PermitLeaseTable: what is behind PermitLeases (tenancy/leased_permits.h):
// the leased permits by token, their expiries in order, the counters, and the
// one sweeper thread that releases expired permits.
//
// Concurrency: one mutex, `mu_`, over all of it. Permits are given back to the
// Limiter after `mu_` is let go (a release may wake a waiter), and the Limiter
// is never called while `mu_` is held except to move a Permit, so the lock
// order is: a tenant slot's mu (disable, purge) -> mu_ -> the Limiter's locks.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_LIB_LEASED_PERMITS_TABLE_H_
#define TENANCY_LIB_LEASED_PERMITS_TABLE_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tenancy/leased_permits.h"
#include "tenancy/limiter.h"

namespace tenancy::internal {

class PermitLeaseTable {
 public:
  // INVALID_ARGUMENT for a reserved root that is not a valid class name.
  static absl::Status ValidateOptions(const PermitLeaseOptions& options);
  // REQUIRES: ValidateOptions(options) is OK; `limiter` outlives the result.
  static std::unique_ptr<PermitLeases> Create(Limiter* limiter, PermitLeaseOptions options);

  // Starts the sweeper.
  PermitLeaseTable(Limiter* limiter, PermitLeaseOptions options);
  PermitLeaseTable(const PermitLeaseTable&) = delete;
  PermitLeaseTable& operator=(const PermitLeaseTable&) = delete;
  // Stops the sweeper, then gives back every permit.
  ~PermitLeaseTable();

  // As PermitLeases.
  absl::StatusOr<LeasedPermit> Take(const Tenant& tenant, std::string_view class_name,
                                    absl::Duration lease,
                                    std::chrono::steady_clock::time_point deadline);
  absl::StatusOr<absl::Time> Renew(const Tenant& tenant, std::string_view token,
                                   absl::Duration lease);
  absl::Status Release(const Tenant& tenant, std::string_view token);
  size_t ReleaseTenant(std::string_view tenant_id, bool forget);
  std::vector<PermitLeaseCounters> Snapshot() const;

 private:
  // Shared by the leases of one (tenant, class) and the Take() calls in
  // flight, so that a purge may drop the row while they finish.
  struct Counters {
    int64_t in_use = 0;
    int64_t waiting = 0;
    int64_t granted = 0;
    int64_t waits = 0;
    int64_t wait_timeouts = 0;
    int64_t expired = 0;
  };
  struct Lease {
    std::string tenant_id;
    uint64_t tenant_number = 0;  // never reused: a recreated id is another tenant
    std::chrono::steady_clock::time_point expiry;
    std::shared_ptr<Counters> counters;
    Permit permit;
  };
  using LeaseMap = absl::flat_hash_map<std::string, Lease>;

  bool IsReserved(std::string_view class_name) const;
  std::shared_ptr<Counters> CountersForLocked(const std::string& tenant_id,
                                              std::string_view class_name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the lease and returns its permit, for the caller to give back
  // once `mu_` is released.
  Permit EraseLocked(LeaseMap::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Signals the sweeper if `expiry` comes before its wake-up.
  void WakeSweeperIfLaterThanLocked(std::chrono::steady_clock::time_point expiry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The sweeper thread: sleeps until the earliest expiry (or an earlier one
  // is added), releases what has expired, until the destructor stops it.
  void SweepUntilStopped() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction
  Limiter* const limiter_;
  const PermitLeaseOptions options_;
  std::thread sweeper_;

  // Protected by mu_
  mutable absl::Mutex mu_;
  absl::CondVar sweeper_cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // When the sweeper wakes next on its own (max(): only when signalled). No
  // lease expires before it.
  std::chrono::steady_clock::time_point sweeper_wakes_at_ ABSL_GUARDED_BY(mu_) =
      std::chrono::steady_clock::time_point::max();
  LeaseMap leases_ ABSL_GUARDED_BY(mu_);
  // (expiry, token) of every lease, earliest first.
  std::set<std::pair<std::chrono::steady_clock::time_point, std::string>> by_expiry_
      ABSL_GUARDED_BY(mu_);
  // By (tenant id, class name); ordered for Snapshot().
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Counters>> counters_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_LEASED_PERMITS_TABLE_H_
