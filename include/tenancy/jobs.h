// Jobs: a durable, tenant-scoped job queue (JobQueue) and the threads that
// run host handlers for its jobs (JobWorkers).
//
//   tenancy::JobQueue jobs = tenant.jobs();
//   auto id = jobs.Enqueue({.type = "email", .payload = "...", .priority = 5});
//   auto job = jobs.Claim({.type = "email", .lease = absl::Seconds(30)});
//   if (job.ok() && job->has_value()) {
//     Send((*job)->payload);
//     absl::Status s = jobs.Ack((*job)->id, (*job)->lease);
//   }
//
// A job lives in its tenant's own key range, committed with RocksDB write
// batches: every state change (enqueue, claim, ack, nack, lease expiry, dead
// letter) is one atomic batch that also carries the tenant's usage delta, so
// queued payloads count toward the tenant's storage quota exactly and a crash
// at any moment leaves every job in exactly one state.
//
// Life of a job:
//
//   Enqueue ──> queued ──Claim──> claimed ──Ack──> (gone)
//     │           ^                 │  │
//     │ delay     │ due             │  └─Nack / lease expires──> delayed or
//     v           │                 │     queued again (attempts < max),
//   delayed ──────┘                 │     else dead
//                                   v
//                                 dead ──Requeue──> queued;  Delete: gone
//
// - Claim hands out the claimable job of the asked type with the highest
//   priority, then the one claimable the longest (oldest first), and a lease:
//   an opaque token valid until lease_expires_at. Only the holder of the
//   current lease may Ack, Nack or extend it; a lease that expired (even if no
//   one has claimed the job since) or was replaced is refused with
//   FAILED_PRECONDITION and ErrorReason::kStaleLease (HTTP 409).
// - A lease that expires without an ack counts as a failed attempt: the job is
//   claimable again at once, at its old place in the queue (or dead, if it has
//   used all its attempts). This holds across a crash and restart: leases are
//   stored, and a lease that has not expired is honoured after a reopen.
// - Nack retries after an exponential backoff with jitter:
//     delay = min(backoff_max, backoff_base * 2^(attempts - 1))
//     wait  = delay * (1 - backoff_jitter * U[0, 1))
//   After max_attempts claims the job is dead (a dead letter): kept, listed
//   and counted, until it is requeued or deleted.
// - Due delayed jobs and expired leases are moved by the tenant's next Claim
//   (or a worker's), in bounded steps; until then Inspect reports a due
//   delayed job as queued and an expired claimed job as claimed (with a
//   lease_expires_at in the past).
//
// Storage. While it exists (dead jobs included) a job is charged against
// Quota::storage_bytes: its payload, twice its type, its idempotency key, its
// last error and 79 bytes (its record and one index entry); an idempotency key
// adds itself + 9 bytes more. Claim, ack, lease expiry, promotion and requeue
// never add to that charge, so a tenant at its quota can always drain its
// queue; only Enqueue (and a Nack that lengthens the stored error) may be
// refused for storage. Quota::max_queued_jobs bounds the jobs in state queued,
// delayed or claimed.
//
// Job ids are 16 lower-case hex digits: a per-tenant sequence, increasing in
// enqueue order, never reused (also across restarts). Types are 1 to 128
// bytes of [A-Za-z0-9_.:/-].
//
// Status codes common to every JobQueue call:
//   PERMISSION_DENIED  tenant disabled (kTenantDisabled) or, for calls that
//                      change jobs (everything but Inspect, List, Counts),
//                      read-only (kTenantReadOnly)
//   NOT_FOUND          tenant purged (kTenantDeleted); or no job with that id
//                      (ids are opaque: one of any shape names no job)
//   INVALID_ARGUMENT   a malformed lease, type or option; a payload over
//                      the tenant's value limit (kTooLarge)
//   UNAVAILABLE        RocksDB refused a write to avoid a stall (retry later)
//   INTERNAL / DATA_LOSS  RocksDB I/O or corruption errors
//
// Thread safety: JobQueue is a cheap value, safe for concurrent access from
// multiple threads without any external synchronization; the changes of one
// tenant's jobs are serialised (so each job is claimed by exactly one caller).
// JobWorkers is safe for concurrent access. The option and result structs are
// plain values (not thread-safe; copy them).

#ifndef TENANCY_JOBS_H_
#define TENANCY_JOBS_H_

#include <atomic>
#include <cstddef>
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
#include "absl/time/time.h"
#include "tenancy/tenant.h"

namespace tenancy {

class Engine;
class Limiter;
namespace internal {
class JobWorkerGroup;
}  // namespace internal

// The longest job type, in bytes.
inline constexpr size_t kMaxJobTypeBytes = 128;
// The longest idempotency key, in bytes.
inline constexpr size_t kMaxIdempotencyKeyBytes = 256;
// The longest stored error message of a Nack, in bytes (longer is truncated).
inline constexpr size_t kMaxJobErrorBytes = 1024;
// How often a waiting Claim looks at ClaimOptions::cancel, in real time.
inline constexpr absl::Duration kClaimCancelPoll = absl::Milliseconds(100);

// Engine-wide job settings: EngineOptions::jobs. Intentionally copyable.
struct JobQueueOptions {
  // -------------------------------------------------------------------
  // Behavior

  // The clock for job times: created_at, delays, run times, lease expiry and
  // backoff. Tests inject a fake one. Blocking waits (ClaimOptions::wait,
  // JobWorkersOptions::idle_poll) are always real time, because a thread can
  // only sleep on real time. Must be thread-safe and cheap.
  // Default: empty, meaning absl::Now. Fixed after Open.
  std::function<absl::Time()> clock;

  // Called with the tenant's id each time a Claim that found nothing starts
  // to wait (ClaimOptions::wait), from the claiming thread, before it sleeps.
  // For tests and tracing: a test waits on it instead of sleeping to "let
  // the claim start waiting". Must be thread-safe and must not block.
  // Default: empty. Fixed after Open.
  std::function<void(std::string_view tenant_id)> on_claim_wait;

  // Attempts of a job whose JobSpec::max_attempts is 0. Must be in
  // [1, max_attempts_limit]. Default: 5. Fixed after Open.
  uint32_t default_max_attempts = 5;

  // Lease of a claim whose ClaimOptions::lease is zero. Must be in
  // (0, max_lease]. Default: 30 s. Fixed after Open.
  absl::Duration default_lease = absl::Seconds(30);

  // Backoff of the first retry; each later retry doubles it, up to
  // backoff_max. Default: 1 s and 10 min. Fixed after Open.
  absl::Duration backoff_base = absl::Seconds(1);
  absl::Duration backoff_max = absl::Minutes(10);

  // Fraction of each backoff that is randomised, in [0, 1]: the wait is drawn
  // from [delay * (1 - jitter), delay]. 0.5 is "equal jitter": retries of
  // jobs that failed together spread out, yet each waits at least half the
  // delay. Default: 0.5. Fixed after Open.
  double backoff_jitter = 0.5;

  // How long an idempotency key keeps answering with its job's id after the
  // job was acked or deleted, so a retried Enqueue of finished work does not
  // run it again. While the job exists its key always answers. Retired keys
  // are charged to the tenant's storage (about 25 bytes + the key) until they
  // expire. Zero: a key is forgotten with its job. Default: 24 h. Fixed after
  // Open.
  absl::Duration idempotency_retention = absl::Hours(24);

  // -------------------------------------------------------------------
  // Limits

  // Largest JobSpec::max_attempts accepted. Default: 1000. Fixed after Open.
  uint32_t max_attempts_limit = 1000;
  // Longest lease a claim may ask for. Default: 12 h. Fixed after Open.
  absl::Duration max_lease = absl::Hours(12);
  // Longest JobSpec::delay accepted. Default: 365 days. Fixed after Open.
  absl::Duration max_delay = absl::Hours(24 * 365);
  // Longest ClaimOptions::wait accepted. Default: 5 min. Fixed after Open.
  absl::Duration max_claim_wait = absl::Minutes(5);
};

// Where a job is in its life (see the diagram above).
enum class JobState {
  kQueued,   // claimable now
  kDelayed,  // claimable from next_run_at (a delay or a retry backoff)
  kClaimed,  // leased to a claimer until lease_expires_at
  kDead,     // used all its attempts; kept until requeued or deleted
};

// "queued", "delayed", "claimed", "dead".
std::string_view JobStateName(JobState state);

// What Enqueue is asked to store. Intentionally copyable.
struct JobSpec {
  // 1 to kMaxJobTypeBytes bytes of [A-Za-z0-9_.:/-]. Claims ask for a type.
  std::string type;
  // Opaque bytes, at most the tenant's value limit (Quota::max_value_bytes,
  // else EngineOptions::max_value_bytes).
  std::string payload;
  // Not claimable before now + delay. Must be in [0, max_delay].
  absl::Duration delay = absl::ZeroDuration();
  // Higher is claimed first. Any int32.
  int32_t priority = 0;
  // Claims before the job is dead. 0: JobQueueOptions::default_max_attempts.
  // Must be <= JobQueueOptions::max_attempts_limit.
  uint32_t max_attempts = 0;
  // Optional, at most kMaxIdempotencyKeyBytes arbitrary bytes. An Enqueue
  // with the key of a job that exists (or finished less than
  // idempotency_retention ago) stores nothing and returns that job's id.
  // The first spec wins: a retry with a different payload gets the old id.
  std::string idempotency_key;
};

// What Enqueue did. Intentionally copyable.
struct EnqueueResult {
  std::string id;
  // False when the idempotency key matched an existing job (nothing stored).
  bool created = true;
};

// A job as Claim, Inspect, List and Nack report it. Intentionally copyable.
struct Job {
  std::string id;
  std::string type;
  // Empty in List results unless ListJobsOptions::include_payload.
  std::string payload;
  JobState state = JobState::kQueued;
  int32_t priority = 0;
  // Claims so far (the current one included).
  uint32_t attempts = 0;
  uint32_t max_attempts = 0;
  absl::Time created_at = absl::InfinitePast();
  // Queued or delayed: when it is (or was) claimable. Claimed: the lease
  // expiry. Dead: absl::InfiniteFuture().
  absl::Time next_run_at = absl::InfiniteFuture();
  // The lease token: set only in the result of Claim (and ExtendLease); pass
  // it to Ack, Nack and ExtendLease. Empty everywhere else.
  std::string lease;
  // Claimed: when the lease expires. Otherwise absl::InfinitePast().
  absl::Time lease_expires_at = absl::InfinitePast();
  // Why the last attempt failed: the Nack's error, or "lease expired".
  // Empty if no attempt failed.
  std::string last_error;
  std::string idempotency_key;
};

struct ClaimOptions {
  // Claim only a job of this type. Empty: any type (slower with many types).
  std::string type;
  // How long the claimer holds the job. Zero: JobQueueOptions::default_lease.
  // Must be in [0, max_lease].
  absl::Duration lease = absl::ZeroDuration();
  // When nothing is claimable, wait up to this long (real time) for a job:
  // the wait wakes on an enqueue, a due delayed job or an expired lease of
  // the tenant; it does not poll. Zero: return at once. Must be in
  // [0, max_claim_wait].
  absl::Duration wait = absl::ZeroDuration();
  // Optional (nullptr: none). While the claim waits, it gives up and returns
  // nullopt once *cancel is true, within kClaimCancelPoll: a server uses it to
  // end long polls when it shuts down. Read only; must outlive the call.
  const std::atomic<bool>* cancel = nullptr;
};

struct NackOptions {
  // Stored as the job's last_error (truncated to kMaxJobErrorBytes). If the
  // longer error would pass the storage quota, the previous one is kept.
  std::string error;
  // Retry after this long instead of the backoff (zero: claimable at once).
  // Must be in [0, max_delay].
  std::optional<absl::Duration> retry_after;
};

// Jobs per state. Intentionally copyable.
struct JobCounts {
  uint64_t queued = 0;   // claimable (including promoted retries)
  uint64_t delayed = 0;  // waiting for their run time (due ones until the
                         // next claim moves them)
  uint64_t claimed = 0;  // leased (expired leases until the next claim)
  uint64_t dead = 0;

  friend bool operator==(const JobCounts&, const JobCounts&) = default;
};

struct ListJobsOptions {
  // Jobs in this state, in the order they are served: queued by type, then
  // priority (highest first), then oldest; delayed by run time; claimed by
  // lease expiry; dead by id.
  JobState state = JobState::kQueued;
  // Only jobs of this type. Empty: all types.
  std::string type;
  // Page size, in [1, 1000]. Default: 100.
  size_t limit = 100;
  // Fill Job::payload. Default: false.
  bool include_payload = false;
  // Continue after a previous page: JobPage::cursor of the same options.
  std::string cursor;
};

struct JobPage {
  std::vector<Job> jobs;
  // Opaque (hex); non-empty when more jobs may follow.
  std::string cursor;
};

// One tenant's jobs. A cheap handle from Tenant::jobs(); copying it copies a
// Tenant handle.
class JobQueue {
 public:
  // Intentionally copyable: a JobQueue is a Tenant handle.
  JobQueue(const JobQueue&) = default;
  JobQueue& operator=(const JobQueue&) = default;

  const Tenant& tenant() const { return tenant_; }

  // Stores a new job (or finds the one with spec.idempotency_key).
  // RESOURCE_EXHAUSTED: kQueuedJobsQuota if the tenant holds max_queued_jobs
  // jobs that are queued, delayed or claimed; kStorageQuota if the job would
  // pass the storage quota. Nothing is written on any error.
  absl::StatusOr<EnqueueResult> Enqueue(const JobSpec& spec) const;

  // Leases the best claimable job (see the file comment), or returns nullopt
  // when none is claimable within options.wait. The result carries the lease.
  absl::StatusOr<std::optional<Job>> Claim(const ClaimOptions& options) const;

  // Finishes the job: it is deleted (its idempotency key is retained, see
  // JobQueueOptions::idempotency_retention).
  // FAILED_PRECONDITION (kStaleLease): `lease` is not the job's current,
  // unexpired lease. NOT_FOUND: no job `id` (e.g. already acked).
  absl::Status Ack(std::string_view id, std::string_view lease) const;

  // Gives the job back after a failed attempt: delayed by the backoff (or
  // options.retry_after), or dead if it used max_attempts. Returns the job
  // as it is now. Errors as for Ack.
  absl::StatusOr<Job> Nack(std::string_view id, std::string_view lease,
                           const NackOptions& options = {}) const;

  // Moves the lease expiry to now + `lease` (a heartbeat for long work); the
  // token stays the same. Returns the job (with its lease). Errors as for Ack;
  // INVALID_ARGUMENT if `lease` is not in (0, max_lease].
  absl::StatusOr<Job> ExtendLease(std::string_view id, std::string_view lease,
                                  absl::Duration lease_duration) const;

  // The job now, without its lease token. NOT_FOUND: no job `id`.
  absl::StatusOr<Job> Inspect(std::string_view id) const;

  // One page of the jobs in options.state.
  absl::StatusOr<JobPage> List(const ListJobsOptions& options) const;

  // Jobs per state. The first job call of a tenant after Open counts its
  // jobs with one scan of its job index; later calls are O(1).
  absl::StatusOr<JobCounts> Counts() const;

  // Deletes the job in any state; a claimer's later Ack gets NOT_FOUND.
  // NOT_FOUND: no job `id`.
  absl::Status Delete(std::string_view id) const;

  // Makes a dead job queued again, with its attempts reset to zero. Returns
  // the job. FAILED_PRECONDITION: the job is not dead. RESOURCE_EXHAUSTED
  // (kQueuedJobsQuota): as for Enqueue.
  absl::StatusOr<Job> Requeue(std::string_view id) const;

 private:
  friend class Tenant;
  explicit JobQueue(Tenant tenant) : tenant_(std::move(tenant)) {}

  Tenant tenant_;
};

// --- Workers ---

// Runs one job. Return OK to ack it; any error nacks it with the status's
// message as last_error, retrying after GetRetryAfter(status) if the status
// carries one (see tenancy/status.h), else after the backoff. Handlers run on
// JobWorkers' threads, several at once (also for one tenant); they must be
// thread-safe. An exception thrown by a handler counts as an error.
using JobHandler = std::function<absl::Status(const Tenant& tenant, const Job& job)>;

// Whatever a JobAcquire hook hands out: destroying it gives back what was
// taken. Move-only; an empty permit holds nothing.
class JobPermit {
 public:
  JobPermit() = default;
  // `release` runs once, when the permit is destroyed or Reset.
  explicit JobPermit(std::function<void()> release) : release_(std::move(release)) {}
  // Keeps `resource` (a limiter Permit, say) until the permit goes.
  template <typename T>
  static JobPermit Holding(T resource) {
    auto held = std::make_shared<T>(std::move(resource));
    return JobPermit([held]() mutable { held.reset(); });
  }
  JobPermit(JobPermit&& other) noexcept : release_(std::move(other.release_)) {
    other.release_ = nullptr;
  }
  JobPermit& operator=(JobPermit&& other) noexcept {
    if (this != &other) {
      Reset();
      release_ = std::move(other.release_);
      other.release_ = nullptr;
    }
    return *this;
  }
  JobPermit(const JobPermit&) = delete;
  JobPermit& operator=(const JobPermit&) = delete;
  ~JobPermit() { Reset(); }

  bool empty() const { return !release_; }
  // Gives back what is held now.
  void Reset() {
    if (release_) {
      std::function<void()> release = std::move(release_);
      release_ = nullptr;
      release();
    }
  }

 private:
  std::function<void()> release_;
};

// Taken before each claim on behalf of `tenant` (after the limiter's permit,
// if JobWorkersOptions::limiter is set) and held until the job's handler has
// returned and its ack or nack is written: the place to hold any other
// resource per job. An error skips the tenant's turn (all-tenant workers) or
// waits (per-tenant workers) for the error's GetRetryAfter(), else idle_poll,
// before trying again. All-tenant workers share their threads among tenants,
// so the hook should not block there: refuse at once rather than wait.
using JobAcquire = std::function<absl::StatusOr<JobPermit>(const Tenant& tenant)>;

struct JobWorkersOptions {
  // -------------------------------------------------------------------
  // Behavior

  // Job type -> handler. Workers claim only these types. Must not be empty;
  // types must be valid. Fixed at start.
  std::map<std::string, JobHandler> handlers;

  // Runs each handler inside a permit of class `limit_class` for the job's
  // tenant (tenancy/limiter.h: the tenant tier, then the global tier), held
  // from before the claim until the ack or nack is written. Tenants are named
  // to the limiter by id; one it does not know is added with the default
  // limits (Limiter::AddTenant). All-tenant workers use TryAcquire: a full
  // class or an empty bucket skips the tenant's turn until its Retry-After.
  // Per-tenant workers use Acquire, waiting up to idle_poll at a time.
  // Default: nullptr (no limiter). Fixed at start; the workers share
  // ownership of the limiter.
  std::shared_ptr<Limiter> limiter;
  // The limit class, e.g. "jobs" or "jobs/email". Must be a valid class name
  // when `limiter` is set. Default: "jobs". Fixed at start.
  std::string limit_class = "jobs";

  // Optional (empty: none). See JobAcquire. Fixed at start.
  JobAcquire acquire;

  // Lease of each claim; a handler that runs longer should call ExtendLease,
  // or its job is delivered again. Zero: JobQueueOptions::default_lease.
  // Fixed at start.
  absl::Duration lease = absl::ZeroDuration();

  // -------------------------------------------------------------------
  // Performance

  // Threads. Must be in [1, 1024]. Default: 1. Fixed at start.
  int threads = 1;

  // Longest real time an idle thread sleeps before it looks again at state it
  // is not woken for: a tenant disabled or made read-only (per-tenant
  // workers stop), re-enabled (all-tenant workers resume it), or a fake
  // clock's time. Enqueues, due jobs and Stop wake threads at once.
  // Must be in (0, 1 min]. Default: 200 ms. Fixed at start.
  absl::Duration idle_poll = absl::Milliseconds(200);
};

// Counters since start. Intentionally copyable.
struct JobWorkersStats {
  uint64_t succeeded = 0;    // handler OK and ack written
  uint64_t failed = 0;       // handler error (or exception) and nack written
  uint64_t lost_leases = 0;  // ack or nack refused (lease expired meanwhile)
  uint64_t errors = 0;       // claims, acks or acquires that failed otherwise
};

// Threads that claim jobs and run handlers: for one tenant, or for every
// tenant in fair rotation.
//
// All-tenant workers serve tenants round-robin: a tenant with a claimable job
// of a handled type waits in a FIFO of tenants and gets one claim per turn,
// then goes to the back. So a tenant with 10,000 queued jobs delays another
// tenant's single job by at most one rotation (one claim per tenant that has
// work). Disabled and read-only tenants are skipped until they are writable
// again; purged ones are dropped.
//
// Threads stop, with nothing left behind, when Stop() is called or the
// JobWorkers is destroyed, when the Engine is destroyed (after the running
// handlers return), and, for per-tenant workers, when the tenant is disabled,
// made read-only or purged (see running()).
class JobWorkers {
 public:
  // Starts options.threads threads serving `tenant`.
  // INVALID_ARGUMENT: bad options. Tenant state errors as for JobQueue.
  static absl::StatusOr<std::unique_ptr<JobWorkers>> ForTenant(const Tenant& tenant,
                                                               JobWorkersOptions options);

  // Starts options.threads threads serving every tenant of `engine`, in fair
  // rotation. At start they look (in the background, one seek per tenant) for
  // tenants with jobs from before; later enqueues reach them at once.
  // INVALID_ARGUMENT: bad options.
  static absl::StatusOr<std::unique_ptr<JobWorkers>> ForAllTenants(Engine& engine,
                                                                   JobWorkersOptions options);

  JobWorkers(const JobWorkers&) = delete;
  JobWorkers& operator=(const JobWorkers&) = delete;
  // Stop().
  ~JobWorkers();

  // Stops every thread and waits for them (and their running handlers) to
  // finish. Idempotent. REQUIRES: not called from a handler.
  void Stop();

  // True while any thread still runs: false after Stop, after the Engine was
  // destroyed, and for per-tenant workers once the tenant stopped accepting
  // writes.
  bool running() const;

  JobWorkersStats stats() const;

 private:
  explicit JobWorkers(std::shared_ptr<internal::JobWorkerGroup> group);

  const std::shared_ptr<internal::JobWorkerGroup> group_;
};

}  // namespace tenancy

#endif  // TENANCY_JOBS_H_
