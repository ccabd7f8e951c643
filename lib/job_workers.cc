// JobWorkers: threads that claim jobs and run host handlers, for one tenant or
// for every tenant in fair rotation.
//
// All-tenant rotation: a FIFO of tenant numbers (`run_`) holds each tenant
// that may have a claimable job of a handled type at most once. A thread pops
// the front tenant, claims ONE job, puts the tenant back at the tail before it
// runs the handler, and so every tenant with work gets one claim per turn.
// A tenant whose claim finds nothing leaves the FIFO: it is parked until the
// job clock reaches its next due time (a delayed job or a lease expiry), or
// forgotten if it has none, until an enqueue (JobRuntime::NotifyGroups) brings
// it back. Tenants that are disabled or read-only, or whose acquire hook
// refused, are looked at again after a real-time pause.

#include <algorithm>
#include <deque>
#include <exception>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "access.h"
#include "job_runtime.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/engine.h"
#include "tenancy/jobs.h"
#include "tenancy/limiter.h"
#include "tenancy/status.h"

namespace tenancy {
namespace internal {
namespace {

constexpr int kMaxWorkerThreads = 1024;

// The tenant no longer accepts the worker's writes: disabled, read-only or
// purged.
bool TenantStopped(const absl::Status& s) {
  ErrorReason reason = GetErrorReason(s);
  return reason == ErrorReason::kTenantDisabled || reason == ErrorReason::kTenantReadOnly ||
         reason == ErrorReason::kTenantDeleted;
}

absl::Duration RetryAfterOr(const absl::Status& s, absl::Duration fallback) {
  std::optional<std::chrono::nanoseconds> after = GetRetryAfter(s);
  if (!after.has_value() || after->count() <= 0) return fallback;
  return std::min(absl::FromChrono(*after), absl::Minutes(1));
}

// What both kinds of group share: threads, stop, stats and running a job.
class WorkerGroupBase : public JobWorkerGroup {
 public:
  WorkerGroupBase(JobRuntime* runtime, JobWorkersOptions options)
      : runtime_(runtime),
        options_(std::move(options)),
        types_(TypesOf(options_)),
        lease_(options_.lease == absl::ZeroDuration() ? runtime->options().default_lease
                                                      : options_.lease),
        // Valid: ValidateWorkerOptions resolved it already.
        limit_class_(options_.limiter != nullptr ? *options_.limiter->Class(options_.limit_class)
                                                 : LimitClass()) {}

  ~WorkerGroupBase() override = default;

  absl::Status Start() {
    absl::MutexLock lock(&threads_mu_);
    running_.store(options_.threads);
    for (int i = 0; i < options_.threads; ++i) {
      try {
        threads_.emplace_back([this, i] {
          Run(i);
          running_.fetch_sub(1);
        });
      } catch (const std::system_error& e) {
        running_.fetch_sub(options_.threads - i);
        stop_.store(true);
        return absl::ResourceExhaustedError(
            StrCat("job workers: cannot start thread ", i, ": ", e.what()));
      }
    }
    return absl::OkStatus();
  }

  void Stop() override {
    StopThreads();
    bool detach = false;
    {
      absl::MutexLock lock(&threads_mu_);
      detach = !detached_;
      detached_ = true;
    }
    if (detach) runtime_->RemoveGroup(this);
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&threads_mu_);
      detached_ = true;  // the runtime is going away: never call it again
    }
    StopThreads();
  }

  bool Running() const override { return running_.load() > 0; }

  JobWorkersStats Stats() const override {
    JobWorkersStats stats;
    stats.succeeded = succeeded_.load(std::memory_order_relaxed);
    stats.failed = failed_.load(std::memory_order_relaxed);
    stats.lost_leases = lost_leases_.load(std::memory_order_relaxed);
    stats.errors = errors_.load(std::memory_order_relaxed);
    return stats;
  }

 protected:
  // The body of thread `index`; returns when stop_ is set (or, for a
  // per-tenant group, when the tenant stops accepting writes).
  virtual void Run(int index) = 0;
  // Wakes threads that wait, after stop_ was set.
  virtual void WakeThreads() = 0;
  // Drops every Tenant handle; the threads are gone.
  virtual void DropTenants() = 0;

  static std::vector<std::string> TypesOf(const JobWorkersOptions& options) {
    std::vector<std::string> types;
    for (const auto& [type, handler] : options.handlers) types.push_back(type);
    return types;
  }

  void Log(LogLevel level, std::string_view message) const {
    runtime_->engine().logger().Log(level, message);
  }

  // What a job of `slot`'s tenant runs inside: a permit of the limiter's
  // class (waiting up to idle_poll if `wait`, else refused at once), then the
  // acquire hook's. Destroying the result gives both back, in reverse order.
  absl::StatusOr<JobPermit> Acquire(const std::shared_ptr<TenantSlot>& slot, bool wait) {
    JobPermit limited;
    if (options_.limiter != nullptr) {
      std::shared_ptr<LimiterTenant> tenant = LimiterTenantOf(*slot);
      absl::StatusOr<Permit> permit =
          wait ? options_.limiter->Acquire(*tenant, limit_class_,
                                           std::chrono::steady_clock::now() +
                                               absl::ToChronoNanoseconds(options_.idle_poll))
               : options_.limiter->TryAcquire(*tenant, limit_class_);
      if (!permit.ok()) return permit.status();
      limited = JobPermit::Holding(*std::move(permit));
    }
    if (!options_.acquire) return limited;
    absl::StatusOr<JobPermit> hooked;
    try {
      hooked = options_.acquire(Access::MakeTenant(slot, &runtime_->engine()));
    } catch (const std::exception& e) {
      hooked = absl::InternalError(StrCat("job workers: acquire hook threw: ", e.what()));
    } catch (...) {
      hooked = absl::InternalError("job workers: acquire hook threw");
    }
    if (!hooked.ok() || limited.empty()) return hooked;
    // The pair is destroyed second member first: the hook's, then the limit.
    return JobPermit::Holding(std::make_pair(std::move(limited), *std::move(hooked)));
  }

  // The limiter's handle of the tenant, resolved once per tenant.
  std::shared_ptr<LimiterTenant> LimiterTenantOf(const TenantSlot& slot) {
    absl::MutexLock lock(&limiter_mu_);
    std::shared_ptr<LimiterTenant>& tenant = limiter_tenants_[slot.number];
    if (tenant == nullptr) tenant = options_.limiter->AddTenant(slot.id);
    return tenant;
  }

  void ForgetLimiterTenant(uint64_t number) {
    absl::MutexLock lock(&limiter_mu_);
    limiter_tenants_.erase(number);
  }

  void ForgetLimiterTenants() {
    absl::MutexLock lock(&limiter_mu_);
    limiter_tenants_.clear();
  }

  // Runs the handler of `job`, then acks or nacks it.
  void RunJob(const std::shared_ptr<TenantSlot>& slot, const Job& job) {
    RecordCall(*slot, CallKind::kJobs);
    absl::Status result;
    auto handler = options_.handlers.find(job.type);
    if (handler == options_.handlers.end() || !handler->second) {
      result = absl::InternalError("no handler for the job's type");
    } else {
      try {
        result = handler->second(Access::MakeTenant(slot, &runtime_->engine()), job);
      } catch (const std::exception& e) {
        result = absl::InternalError(StrCat("handler threw: ", e.what()));
      } catch (...) {
        result = absl::InternalError("handler threw an exception");
      }
    }
    absl::Status written;
    std::atomic<uint64_t>* counter;
    if (result.ok()) {
      written = runtime_->Ack(slot, job.id, job.lease);
      counter = &succeeded_;
    } else {
      NackOptions nack;
      nack.error = std::string(result.message());
      if (GetRetryAfter(result).has_value()) {
        nack.retry_after =
            std::min(RetryAfterOr(result, absl::ZeroDuration()), runtime_->options().max_delay);
      }
      written = runtime_->Nack(slot, job.id, job.lease, nack).status();
      counter = &failed_;
    }
    if (written.ok()) {
      counter->fetch_add(1, std::memory_order_relaxed);
    } else if (GetErrorReason(written) == ErrorReason::kStaleLease || absl::IsNotFound(written)) {
      lost_leases_.fetch_add(1, std::memory_order_relaxed);
    } else if (!TenantStopped(written)) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      Log(LogLevel::kWarning,
          StrCat("tenant \"", slot->id, "\": job ", job.id, ": ", result.ok() ? "ack" : "nack",
                 " failed: ", written.ToString()));
    }
  }

  JobRuntime* const runtime_;  // valid while threads run
  const JobWorkersOptions options_;
  const std::vector<std::string> types_;
  const absl::Duration lease_;
  const LimitClass limit_class_;  // valid when options_.limiter is set
  std::atomic<bool> stop_{false};
  std::atomic<int> running_{0};
  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> lost_leases_{0};
  std::atomic<uint64_t> errors_{0};

 private:
  // Serialised, so a second Stop returns only when the threads are gone.
  void StopThreads() ABSL_LOCKS_EXCLUDED(threads_mu_) {
    absl::MutexLock stopping(&stop_mu_);
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&threads_mu_);
      stop_.store(true);
      threads.swap(threads_);
    }
    if (threads.empty()) return;
    WakeThreads();
    for (std::thread& t : threads) t.join();
    DropTenants();
    ForgetLimiterTenants();
  }

  absl::Mutex limiter_mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<LimiterTenant>> limiter_tenants_
      ABSL_GUARDED_BY(limiter_mu_);
  absl::Mutex stop_mu_ ABSL_ACQUIRED_BEFORE(threads_mu_);
  absl::Mutex threads_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(threads_mu_);
  bool detached_ ABSL_GUARDED_BY(threads_mu_) = false;
};

// --- One tenant ---

class TenantWorkerGroup final : public WorkerGroupBase {
 public:
  TenantWorkerGroup(JobRuntime* runtime, std::shared_ptr<TenantSlot> slot,
                    JobWorkersOptions options)
      : WorkerGroupBase(runtime, std::move(options)),
        number_(slot->number),
        slot_(std::move(slot)) {}

  bool all_tenants() const override { return false; }
  void OnWork(const std::shared_ptr<TenantSlot>&, std::string_view, int64_t) override {}
  void OnPurge(uint64_t) override {}  // the runtime wakes the waiters itself

 private:
  void Run(int) override {
    while (!stop_.load()) {
      absl::StatusOr<JobPermit> permit = Acquire(slot_, /*wait=*/true);
      if (!permit.ok()) {
        if (TenantStopped(permit.status())) return;
        // A full class: Acquire already waited idle_poll; look at stop_.
        if (absl::IsDeadlineExceeded(permit.status())) continue;
        Pause(RetryAfterOr(permit.status(), options_.idle_poll));
        continue;
      }
      absl::StatusOr<JobRuntime::ClaimAttempt> attempt =
          runtime_->TryClaim(slot_, types_, lease_, /*record_call=*/false);
      if (!attempt.ok()) {
        if (TenantStopped(attempt.status())) return;
        errors_.fetch_add(1, std::memory_order_relaxed);
        Log(LogLevel::kWarning, StrCat("tenant \"", slot_->id, "\": job workers: claim failed: ",
                                       attempt.status().ToString()));
        Pause(options_.idle_poll);
        continue;
      }
      if (!attempt->job.has_value()) {
        permit->Reset();  // do not hold a permit while idle
        runtime_->WaitForChange(number_, attempt->generation, attempt->due_us,
                                absl::Now() + options_.idle_poll, &stop_);
        continue;
      }
      RunJob(slot_, *attempt->job);
    }
  }

  // Sleeps up to `d` (real time), or until Stop.
  void Pause(absl::Duration d) {
    absl::MutexLock lock(&pause_mu_);
    absl::Time deadline = absl::Now() + d;
    while (!stop_.load()) {
      if (pause_cv_.WaitWithDeadline(&pause_mu_, deadline)) break;
    }
  }

  void WakeThreads() override {
    runtime_->Wake(number_);
    absl::MutexLock lock(&pause_mu_);
    pause_cv_.SignalAll();
  }

  void DropTenants() override { slot_.reset(); }

  const uint64_t number_;
  // Constant while threads run; dropped once they are gone.
  std::shared_ptr<TenantSlot> slot_;
  absl::Mutex pause_mu_;
  absl::CondVar pause_cv_;
};

// --- Every tenant, in rotation ---

class AllTenantsWorkerGroup final : public WorkerGroupBase {
 public:
  AllTenantsWorkerGroup(JobRuntime* runtime, JobWorkersOptions options)
      : WorkerGroupBase(runtime, std::move(options)) {}

  bool all_tenants() const override { return true; }

  void OnWork(const std::shared_ptr<TenantSlot>& slot, std::string_view ready_type,
              int64_t due_us) override {
    const bool ready = !ready_type.empty() &&
                       options_.handlers.find(std::string(ready_type)) != options_.handlers.end();
    if (!ready && due_us == kNoTime) return;
    absl::MutexLock lock(&mu_);
    if (stop_.load()) return;
    Entry& e = EntryLocked(slot);
    if (e.in_run) return;
    if (ready) {
      MakeRunnableLocked(slot->number, e);
      cv_.Signal();
    } else if (due_us < e.parked_due) {
      ParkLocked(slot->number, e, due_us);
      cv_.Signal();  // a waiter may need to wake earlier
    }
  }

  void OnPurge(uint64_t number) override {
    {
      absl::MutexLock lock(&mu_);
      ForgetLocked(number);
    }
    ForgetLimiterTenant(number);
  }

 private:
  struct Entry {
    std::shared_ptr<TenantSlot> slot;
    bool in_run = false;                             // in run_
    int64_t parked_due = kNoTime;                    // in parked_ (job clock, µs)
    absl::Time recheck_at = absl::InfiniteFuture();  // in recheck_ (real time)
  };

  void Run(int index) override {
    if (index == 0) Discover();
    for (;;) {
      uint64_t number = 0;
      std::shared_ptr<TenantSlot> slot;
      {
        absl::MutexLock lock(&mu_);
        for (;;) {
          if (stop_.load()) return;
          PromoteDueLocked();
          if (!run_.empty()) {
            number = run_.front();
            run_.pop_front();
            auto it = entries_.find(number);
            if (it == entries_.end()) continue;  // purged meanwhile
            it->second.in_run = false;
            slot = it->second.slot;
            break;
          }
          cv_.WaitWithDeadline(&mu_, NextWakeLocked());
        }
      }
      ServeTurn(number, slot);
    }
  }

  // One turn of one tenant: at most one claim.
  void ServeTurn(uint64_t number, const std::shared_ptr<TenantSlot>& slot) {
    ::tenancy::TenantState state = slot->state.load();
    if (state == ::tenancy::TenantState::kDeleting) return Forget(number);
    if (state != ::tenancy::TenantState::kActive) return Recheck(number, options_.idle_poll);
    absl::StatusOr<JobPermit> permit = Acquire(slot, /*wait=*/false);
    if (!permit.ok()) {
      if (GetErrorReason(permit.status()) == ErrorReason::kTenantDeleted) {
        return Forget(number);
      }
      return Recheck(number, RetryAfterOr(permit.status(), options_.idle_poll));
    }
    absl::StatusOr<JobRuntime::ClaimAttempt> attempt =
        runtime_->TryClaim(slot, types_, lease_, /*record_call=*/false);
    if (!attempt.ok()) {
      if (GetErrorReason(attempt.status()) == ErrorReason::kTenantDeleted) {
        return Forget(number);
      }
      if (!TenantStopped(attempt.status())) {
        errors_.fetch_add(1, std::memory_order_relaxed);
        Log(LogLevel::kWarning, StrCat("tenant \"", slot->id, "\": job workers: claim failed: ",
                                       attempt.status().ToString()));
      }
      return Recheck(number, options_.idle_poll);
    }
    if (!attempt->job.has_value()) {
      permit->Reset();
      return ParkOrForget(number, attempt->due_us);
    }
    // The turn is over: back to the tail before the handler runs, so the
    // tenant's next job waits for every other tenant's turn.
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(number);
      if (it != entries_.end() && !it->second.in_run) {
        MakeRunnableLocked(number, it->second);
        cv_.Signal();
      }
    }
    RunJob(slot, *attempt->job);
  }

  // Finds the tenants with jobs from before the workers started.
  void Discover() {
    std::vector<std::shared_ptr<TenantSlot>> slots = runtime_->engine().catalog->Snapshot();
    for (const std::shared_ptr<TenantSlot>& slot : slots) {
      if (stop_.load()) return;
      absl::StatusOr<bool> pending = false;
      {
        CallGuard guard(*slot);
        if (slot->state.load() == ::tenancy::TenantState::kDeleting) continue;
        pending = runtime_->HasPendingJobs(*slot);
      }
      if (!pending.ok()) {
        Log(LogLevel::kWarning,
            StrCat("tenant \"", slot->id, "\": job workers: ", pending.status().ToString()));
        continue;
      }
      if (!*pending) continue;
      absl::MutexLock lock(&mu_);
      Entry& e = EntryLocked(slot);
      if (!e.in_run) {
        MakeRunnableLocked(slot->number, e);
        cv_.Signal();
      }
    }
  }

  Entry& EntryLocked(const std::shared_ptr<TenantSlot>& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = entries_[slot->number];
    if (e.slot == nullptr) e.slot = slot;
    return e;
  }

  void MakeRunnableLocked(uint64_t number, Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    UnparkLocked(number, e);
    e.in_run = true;
    run_.push_back(number);
  }

  void ParkLocked(uint64_t number, Entry& e, int64_t due) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.parked_due != kNoTime) parked_.erase({e.parked_due, number});
    e.parked_due = due;
    parked_.insert({due, number});
  }

  void UnparkLocked(uint64_t number, Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.parked_due != kNoTime) parked_.erase({e.parked_due, number});
    e.parked_due = kNoTime;
    if (e.recheck_at != absl::InfiniteFuture()) recheck_.erase({e.recheck_at, number});
    e.recheck_at = absl::InfiniteFuture();
  }

  void ForgetLocked(uint64_t number) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = entries_.find(number);
    if (it == entries_.end()) return;
    UnparkLocked(number, it->second);
    entries_.erase(it);  // a stale number left in run_ is skipped
  }

  void Forget(uint64_t number) {
    absl::MutexLock lock(&mu_);
    ForgetLocked(number);
  }

  void Recheck(uint64_t number, absl::Duration after) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(number);
    if (it == entries_.end() || it->second.in_run) return;
    Entry& e = it->second;
    UnparkLocked(number, e);
    e.recheck_at = absl::Now() + after;
    recheck_.insert({e.recheck_at, number});
    cv_.Signal();
  }

  void ParkOrForget(uint64_t number, int64_t due) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(number);
    if (it == entries_.end() || it->second.in_run) return;
    if (due == kNoTime) {
      ForgetLocked(number);
    } else {
      ParkLocked(number, it->second, due);
      cv_.Signal();
    }
  }

  // Moves parked and rechecked tenants whose time has come to run_.
  void PromoteDueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!parked_.empty()) {
      const int64_t now_us = runtime_->NowMicros();
      while (!parked_.empty() && parked_.begin()->first <= now_us) {
        uint64_t number = parked_.begin()->second;
        MakeRunnableLocked(number, entries_[number]);
      }
    }
    if (!recheck_.empty()) {
      const absl::Time now = absl::Now();
      while (!recheck_.empty() && recheck_.begin()->first <= now) {
        uint64_t number = recheck_.begin()->second;
        MakeRunnableLocked(number, entries_[number]);
      }
    }
  }

  absl::Time NextWakeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time now = absl::Now();
    absl::Time wake = now + options_.idle_poll;
    if (!parked_.empty()) {
      int64_t until = parked_.begin()->first - runtime_->NowMicros();
      wake = std::min(wake, now + absl::Microseconds(std::max<int64_t>(0, until)));
    }
    if (!recheck_.empty()) wake = std::min(wake, recheck_.begin()->first);
    return wake;
  }

  void WakeThreads() override {
    absl::MutexLock lock(&mu_);
    cv_.SignalAll();
  }

  void DropTenants() override {
    absl::MutexLock lock(&mu_);
    run_.clear();
    entries_.clear();
    parked_.clear();
    recheck_.clear();
  }

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<uint64_t> run_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int64_t, uint64_t>> parked_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, uint64_t>> recheck_ ABSL_GUARDED_BY(mu_);
};

absl::Status ValidateWorkerOptions(const JobWorkersOptions& options, const JobQueueOptions& jobs) {
  if (options.handlers.empty()) {
    return absl::InvalidArgumentError("job workers: no handlers");
  }
  for (const auto& [type, handler] : options.handlers) {
    if (!IsValidJobType(type)) {
      return absl::InvalidArgumentError(StrCat("job workers: bad job type (", type.size(),
                                               " bytes): must be 1 to ", kMaxJobTypeBytes,
                                               " bytes of [A-Za-z0-9_.:/-]"));
    }
    if (!handler) {
      return absl::InvalidArgumentError(StrCat("job workers: empty handler for type ", type));
    }
  }
  if (options.threads < 1 || options.threads > kMaxWorkerThreads) {
    return absl::InvalidArgumentError(
        StrCat("job workers: threads must be in [1, ", kMaxWorkerThreads, "]"));
  }
  if (options.idle_poll <= absl::ZeroDuration() || options.idle_poll > absl::Minutes(1)) {
    return absl::InvalidArgumentError("job workers: idle_poll must be in (0, 1 min]");
  }
  if (options.lease < absl::ZeroDuration() || options.lease > jobs.max_lease) {
    return absl::InvalidArgumentError("job workers: lease must be in [0, max_lease]");
  }
  if (options.limiter != nullptr) {
    TENANCY_RETURN_IF_ERROR(options.limiter->Class(options.limit_class).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<JobWorkerGroup>> StartGroup(JobRuntime& runtime,
                                                           std::shared_ptr<WorkerGroupBase> group) {
  if (!runtime.AddGroup(group)) {
    return absl::FailedPreconditionError("job workers: the engine is closing");
  }
  absl::Status started = group->Start();
  if (!started.ok()) {
    group->Stop();
    return started;
  }
  return std::shared_ptr<JobWorkerGroup>(std::move(group));
}

}  // namespace
}  // namespace internal

JobWorkers::JobWorkers(std::shared_ptr<internal::JobWorkerGroup> group)
    : group_(std::move(group)) {}

JobWorkers::~JobWorkers() { Stop(); }

void JobWorkers::Stop() { group_->Stop(); }

bool JobWorkers::running() const { return group_->Running(); }

JobWorkersStats JobWorkers::stats() const { return group_->Stats(); }

absl::StatusOr<std::unique_ptr<JobWorkers>> JobWorkers::ForTenant(const Tenant& tenant,
                                                                  JobWorkersOptions options) {
  internal::JobRuntime& runtime = *internal::Access::Parts(tenant).jobs;
  TENANCY_RETURN_IF_ERROR(internal::ValidateWorkerOptions(options, runtime.options()));
  {
    internal::CallGuard guard(internal::Access::Slot(tenant));
    TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(internal::Access::Slot(tenant)));
  }
  TENANCY_ASSIGN_OR_RETURN(
      std::shared_ptr<internal::JobWorkerGroup> group,
      internal::StartGroup(runtime,
                           std::make_shared<internal::TenantWorkerGroup>(
                               &runtime, internal::Access::SlotPtr(tenant), std::move(options))));
  return std::unique_ptr<JobWorkers>(new JobWorkers(std::move(group)));
}

absl::StatusOr<std::unique_ptr<JobWorkers>> JobWorkers::ForAllTenants(Engine& engine,
                                                                      JobWorkersOptions options) {
  internal::JobRuntime& runtime = *internal::Access::Parts(engine).jobs;
  TENANCY_RETURN_IF_ERROR(internal::ValidateWorkerOptions(options, runtime.options()));
  TENANCY_ASSIGN_OR_RETURN(
      std::shared_ptr<internal::JobWorkerGroup> group,
      internal::StartGroup(runtime, std::make_shared<internal::AllTenantsWorkerGroup>(
                                        &runtime, std::move(options))));
  return std::unique_ptr<JobWorkers>(new JobWorkers(std::move(group)));
}

}  // namespace tenancy
