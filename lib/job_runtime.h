// The job queue's internals: the stored layout of jobs, the per-tenant state
// kept in memory, and the engine-wide JobRuntime that JobQueue and JobWorkers
// call into.
//
// Stored layout (user keys of the tenant's job namespaces; see key_encoding.h):
//
//   kJobs      id(8 BE)                              -> JobRecord
//   kJobIndex  'R' type 0x00 prio(4) run_at(8) id(8) -> state              queued or claimed
//              'D' run_at(8) id(8)                   -> type 0x00 prio(4) state   delayed
//              'X' id(8)                             -> type 0x00 prio(4) state pad(8) dead
//              'I' idempotency key                   -> id(8) [+ retired_until(8)]
//              'G' retired_until(8) idempotency key  -> ""  (expiry of retired keys)
//              'S'                                   -> highest id handed out(8)
//
// where state(21) = attempts(4) failure(1) lease_token(8) time(8): a claimed
// job's R entry holds its lease (token != 0) and the lease expiry as `time`;
// an X entry holds the time of death.
//
// prio(4) is ~(priority ^ 0x80000000) big-endian, so higher priorities sort
// first; times are microseconds with the sign bit flipped, big-endian, so byte
// order is time order. A type holds no 0x00 byte, so 'R' keys of one type are
// one contiguous range.
//
// Every job has its record and exactly one R, D or X entry; all three are the
// same size (43 bytes + the type). The record holds what a job is (type,
// payload, priority, max attempts, its ready time, the last nack's error) and
// changes only on Nack and Requeue; what happens to it (attempts, the last
// failure, the lease) lives in its index entry. A claim overwrites its R entry
// in place (one small write, no tombstone); ack, lease expiry and promotion
// move or delete one small entry and never rewrite the payload, and no state
// change but Enqueue (and a longer nack error) adds bytes to the tenant's
// usage (see jobs.h, "Storage").
//
// In memory, per tenant (TenantJobs, created and loaded at its first job call
// with one scan of its index): counts; the claimed jobs and their lease
// expiries (so Ack finds the entry without a read and expired leases without a
// scan; bounded by the jobs in flight); and per type a window of its smallest
// unclaimed R keys (at most kReadyWindow), so a claim picks its job without an
// iterator and one seek refills the window every kReadyWindow claims.
//
// Concurrency: every change to a tenant's jobs holds its TenantJobs::mu, which
// serialises claims (exactly-once) and makes the in-memory state and the sizes
// the writes replace exact. Lock order: TenantJobs::mu, then the tenant's
// range_mu (inside UsageLedger::ApplyKnown), then its `mu` (the spec).
// No code holds a worker group's mutex while it takes a TenantJobs::mu.
//
// Tombstones: promoted D entries and acked R entries become RocksDB tombstones
// that a seek from the start of a range would step over one by one until
// compaction drops them; seeks start from in-memory lower bounds instead
// (TypeQueue::window_end, the *_hint times).

#ifndef TENANCY_LIB_JOB_RUNTIME_H_
#define TENANCY_LIB_JOB_RUNTIME_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine_parts.h"
#include "tenancy/jobs.h"
#include "tenant_slot.h"
#include "usage_ledger.h"

namespace tenancy::internal {

inline constexpr int64_t kNoTime = std::numeric_limits<int64_t>::max();

// Why the last attempt failed.
enum class JobFailure : uint8_t { kNone = 0, kNacked = 1, kLeaseExpired = 2 };

// What a job is. Changes only on Nack (run_at, last_error) and Requeue.
struct JobRecord {
  int32_t priority = 0;
  uint32_t max_attempts = 0;
  int64_t created_us = 0;
  // When the job became (or becomes) claimable: the time in its R or D key.
  int64_t run_at_us = 0;
  std::string type;
  std::string idempotency_key;
  std::string last_error;  // the last Nack's error
  std::string payload;
};
std::string EncodeJobRecord(const JobRecord& record);
bool DecodeJobRecord(std::string_view input, JobRecord* record);
// 1 to kMaxJobTypeBytes bytes of [A-Za-z0-9_.:/-].
bool IsValidJobType(std::string_view type);
bool DecodeJobRecord(std::string_view input, JobRecord* record);

// Most unclaimed R keys a type keeps in memory.
inline constexpr size_t kReadyWindow = 16;

// Per-type ready queue, in memory.
struct TypeQueue {
  uint64_t ready = 0;  // unclaimed R entries
  // The smallest unclaimed R keys of the type (full user keys) and their
  // values: every unclaimed key below window_end, or every one when
  // window_end is empty.
  std::map<std::string, std::string> window;
  std::string window_end;
};

// A claimed job, as its R entry says (plus what the claim read, if it was
// this process's claim).
struct ClaimedJob {
  std::string ready_key;  // its R entry
  int64_t expiry_us = 0;
  uint64_t token = 0;
  uint32_t attempts = 0;
  JobFailure failure = JobFailure::kNone;
  // From the record, when known (else Ack reads the record).
  std::optional<size_t> record_size;
  std::string idempotency_key;
};

// One tenant's job state in memory, created at its first job call and loaded
// from its index under `mu` (one scan). Idle tenants that never used jobs
// have none.
struct TenantJobs {
  absl::Mutex mu;
  // Signalled (all) on every change that may make a job claimable sooner,
  // on purge, and to cancel waiting workers.
  absl::CondVar changed;

  bool loaded ABSL_GUARDED_BY(mu) = false;
  bool purged ABSL_GUARDED_BY(mu) = false;
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
  uint64_t id_limit ABSL_GUARDED_BY(mu) = 0;  // persisted in 'S'
  bool has_id_limit_key ABSL_GUARDED_BY(mu) = false;
  uint64_t queued ABSL_GUARDED_BY(mu) = 0;
  uint64_t delayed ABSL_GUARDED_BY(mu) = 0;
  absl::flat_hash_map<uint64_t, ClaimedJob> claimed_jobs ABSL_GUARDED_BY(mu);
  // (lease expiry, id) of every claimed job.
  std::set<std::pair<int64_t, uint64_t>> leases ABSL_GUARDED_BY(mu);
  uint64_t dead ABSL_GUARDED_BY(mu) = 0;
  // Lower bounds (job clock, microseconds) of the earliest D entry and G
  // entry; kNoTime when there is none.
  int64_t delayed_hint ABSL_GUARDED_BY(mu) = kNoTime;
  int64_t retired_hint ABSL_GUARDED_BY(mu) = kNoTime;
  absl::flat_hash_map<std::string, TypeQueue> types ABSL_GUARDED_BY(mu);
};

// A group of worker threads, as the runtime sees it (job_workers.cc).
class JobWorkerGroup {
 public:
  JobWorkerGroup() = default;
  JobWorkerGroup(const JobWorkerGroup&) = delete;
  JobWorkerGroup& operator=(const JobWorkerGroup&) = delete;
  virtual ~JobWorkerGroup() = default;

  // All-tenant groups only: `slot` may have claimable work of `ready_type`
  // now (empty: none new), or at `due_us` on the job clock (kNoTime: none).
  // Called without any TenantJobs::mu held. Must be fast.
  virtual void OnWork(const std::shared_ptr<TenantSlot>& slot, std::string_view ready_type,
                      int64_t due_us) = 0;
  // The tenant `number` was purged.
  virtual void OnPurge(uint64_t number) = 0;
  // The engine is going away: stop and join every thread, drop every Tenant
  // handle, and never call the runtime again.
  virtual void Shutdown() = 0;
  // True for groups that serve every tenant (receive OnWork).
  virtual bool all_tenants() const = 0;
  // Runtime-side stats.
  virtual JobWorkersStats Stats() const = 0;
  virtual bool Running() const = 0;
  virtual void Stop() = 0;
};

// The engine's job machinery. One per engine; created in EngineParts::Open.
class JobRuntime {
 public:
  // REQUIRES: `engine` outlives the runtime; OnPurge is registered as a
  // purge listener of its catalog.
  explicit JobRuntime(EngineParts* engine);
  JobRuntime(const JobRuntime&) = delete;
  JobRuntime& operator=(const JobRuntime&) = delete;
  ~JobRuntime();

  static absl::Status ValidateOptions(const JobQueueOptions& options);

  // --- JobQueue (the slot is the caller's; each registers its own call) ---
  absl::StatusOr<EnqueueResult> Enqueue(const std::shared_ptr<TenantSlot>& slot,
                                        const JobSpec& spec);
  // One claim attempt, never waiting. `types` empty: any type. Also moves
  // due delayed jobs and expired leases (bounded steps). `record_call`:
  // count the call in the tenant's request counters.
  struct ClaimAttempt {
    std::optional<Job> job;
    // For WaitForChange: the tenant's change generation seen by the attempt,
    // and the earliest time (job clock, µs) at which a job may become
    // claimable without an enqueue (kNoTime: none known).
    uint64_t generation = 0;
    int64_t due_us = kNoTime;
  };
  absl::StatusOr<ClaimAttempt> TryClaim(const std::shared_ptr<TenantSlot>& slot,
                                        const std::vector<std::string>& types, absl::Duration lease,
                                        bool record_call);
  // Waits (real time) until the tenant's jobs change after `generation`, the
  // job clock reaches `due_us`, `deadline` passes, the tenant is purged, or
  // `*cancel` is true (checked under the tenant's mutex: set it, then Wake()).
  void WaitForChange(uint64_t number, uint64_t generation, int64_t due_us, absl::Time deadline,
                     const std::atomic<bool>* cancel);
  // TryClaim, then WaitForChange until `deadline`, in a loop; nullopt when
  // the deadline passes with nothing claimable, or once `*cancel` (if not
  // null) is true, which it looks at every kClaimCancelPoll.
  absl::StatusOr<std::optional<Job>> Claim(const std::shared_ptr<TenantSlot>& slot,
                                           const std::vector<std::string>& types,
                                           absl::Duration lease, absl::Time deadline,
                                           const std::atomic<bool>* cancel);
  absl::Status Ack(const std::shared_ptr<TenantSlot>& slot, std::string_view id,
                   std::string_view lease);
  absl::StatusOr<Job> Nack(const std::shared_ptr<TenantSlot>& slot, std::string_view id,
                           std::string_view lease, const NackOptions& options);
  absl::StatusOr<Job> ExtendLease(const std::shared_ptr<TenantSlot>& slot, std::string_view id,
                                  std::string_view lease, absl::Duration lease_duration);
  absl::StatusOr<Job> Inspect(const std::shared_ptr<TenantSlot>& slot, std::string_view id);
  absl::StatusOr<JobPage> List(const std::shared_ptr<TenantSlot>& slot,
                               const ListJobsOptions& options);
  absl::StatusOr<JobCounts> Counts(const std::shared_ptr<TenantSlot>& slot);
  absl::Status Delete(const std::shared_ptr<TenantSlot>& slot, std::string_view id);
  absl::StatusOr<Job> Requeue(const std::shared_ptr<TenantSlot>& slot, std::string_view id);

  // True if the tenant has any queued, delayed or claimed job on disk (one
  // seek; loads nothing into memory).
  absl::StatusOr<bool> HasPendingJobs(const TenantSlot& slot);

  // Wakes every thread waiting in Claim for tenant `number`.
  void Wake(uint64_t number);

  // --- Worker groups ---
  // Returns false (and registers nothing) once the runtime is shut down.
  bool AddGroup(std::shared_ptr<JobWorkerGroup> group);
  void RemoveGroup(const JobWorkerGroup* group);
  // Stops every group. Called first thing by ~EngineParts.
  void Shutdown();

  int64_t NowMicros() const;
  const JobQueueOptions& options() const { return engine_->options.jobs; }
  EngineParts& engine() const { return *engine_; }

  // A tenant's purge is done: its state and waiters go. A purge listener of
  // the catalog (EngineParts::Open registers it).
  void OnPurge(uint64_t number);

 private:
  // The tenant's state, created if absent / nullptr if absent.
  std::shared_ptr<TenantJobs> StateOf(uint64_t number);
  std::shared_ptr<TenantJobs> FindState(uint64_t number) const;
  void NotifyGroups(const std::shared_ptr<TenantSlot>& slot, std::string_view ready_type,
                    int64_t due_us);

  EngineParts* const engine_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<TenantJobs>> tenants_ ABSL_GUARDED_BY(mu_);

  absl::Mutex groups_mu_;
  std::vector<std::shared_ptr<JobWorkerGroup>> groups_ ABSL_GUARDED_BY(groups_mu_);
  bool shut_down_ ABSL_GUARDED_BY(groups_mu_) = false;
  // Groups that receive OnWork; read without the lock on every job change.
  std::atomic<int> broadcast_groups_{0};
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_JOB_RUNTIME_H_
