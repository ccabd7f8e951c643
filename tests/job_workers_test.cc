#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "jobs_fixture.h"
#include "tenancy/jobs.h"
#include "tenancy/limiter.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using testing::JobsFixture;
using testing::WaitFor;

JobSpec Spec(std::string type, std::string payload = "p") {
  JobSpec spec;
  spec.type = std::move(type);
  spec.payload = std::move(payload);
  return spec;
}

// Threads of this process now.
int ThreadCount() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task")) {
    ++n;
  }
  return n;
}

bool ThreadsBackTo(int count) {
  return WaitFor([count] { return ThreadCount() <= count; }, absl::Seconds(30));
}

TEST_CASE("JobWorkers: a tenant's workers ack what succeeds and retry what fails",
          "[jobs][workers]") {
  JobsFixture f(/*fake_clock=*/false);
  f.jobs_options.backoff_base = absl::ZeroDuration();  // retry at once
  f.jobs_options.backoff_max = absl::ZeroDuration();
  f.Reopen();
  Tenant tenant = f.Create("acme");
  JobQueue jobs = tenant.jobs();

  absl::Mutex mu;
  std::map<std::string, int> runs;  // payload -> handler runs
  JobWorkersOptions options;
  options.threads = 3;
  options.handlers["ok"] = [&](const Tenant& t, const Job& job) {
    if (t.id() != "acme") return absl::InternalError("wrong tenant");
    absl::MutexLock lock(&mu);
    ++runs[job.payload];
    return absl::OkStatus();
  };
  options.handlers["fail"] = [&](const Tenant&, const Job& job) -> absl::Status {
    {
      absl::MutexLock lock(&mu);
      ++runs[job.payload];
    }
    if (job.payload == "throws") throw std::runtime_error("thrown");
    return absl::UnavailableError("downstream down");
  };
  for (int i = 0; i < 20; ++i) REQUIRE(jobs.Enqueue(Spec("ok", "ok-" + std::to_string(i))).ok());
  JobSpec failing = Spec("fail", "fails");
  failing.max_attempts = 3;
  REQUIRE(jobs.Enqueue(failing).ok());
  failing.payload = "throws";
  REQUIRE(jobs.Enqueue(failing).ok());
  REQUIRE(jobs.Enqueue(Spec("unhandled")).ok());

  auto workers = JobWorkers::ForTenant(tenant, options);
  REQUIRE(workers.ok());
  REQUIRE(WaitFor([&] {
    JobCounts counts = *jobs.Counts();
    return counts.dead == 2 && counts.claimed == 0 && counts.queued == 1;
  }));
  (*workers)->Stop();
  JobWorkersStats stats = (*workers)->stats();
  CHECK(stats.succeeded == 20);
  CHECK(stats.failed == 6);
  CHECK(stats.errors == 0);
  absl::MutexLock lock(&mu);
  for (int i = 0; i < 20; ++i) CHECK(runs["ok-" + std::to_string(i)] == 1);
  CHECK(runs["fails"] == 3);
  CHECK(runs["throws"] == 3);
  ListJobsOptions dead;
  dead.state = JobState::kDead;
  auto page = jobs.List(dead);
  REQUIRE(page.ok());
  CHECK(page->jobs.size() == 2);
  for (const Job& job : page->jobs) CHECK_FALSE(job.last_error.empty());
}

// The rotation: `big` has 10,000 queued jobs; `small` tenants enqueue one job
// each while one worker thread drains big. Each small job must be claimed
// within one rotation of its enqueue: at most one claim per other tenant with
// work (here: one of big's) in between. Claim times come from a job clock
// that ticks on every reading, so they order the claims exactly, whatever the
// thread scheduling; a starving rotation would show thousands.
TEST_CASE("JobWorkers: fair rotation serves a tenant's single job within one rotation",
          "[jobs][workers]") {
  JobsFixture f;
  f.clock->set_tick(absl::Microseconds(1));
  constexpr int kBigJobs = 10000;
  const absl::Duration kLease = absl::Hours(1);
  {
    JobQueue big = f.Create("big").jobs();
    for (int i = 0; i < kBigJobs; ++i) REQUIRE(big.Enqueue(Spec("work")).ok());
    // One small tenant also has a job from before the workers start.
    REQUIRE(f.Create("early").jobs().Enqueue(Spec("work")).ok());
  }

  absl::Mutex mu;
  std::vector<absl::Time> big_claims;     // claim times of big's jobs
  std::map<std::string, Job> small_jobs;  // tenant -> its job as claimed
  JobWorkersOptions options;
  options.threads = 1;
  options.lease = kLease;
  options.handlers["work"] = [&](const Tenant& t, const Job& job) {
    absl::MutexLock lock(&mu);
    if (t.id() == "big") {
      big_claims.push_back(job.lease_expires_at - kLease);
    } else {
      small_jobs[t.id()] = job;
    }
    return absl::OkStatus();
  };
  // Big's claims strictly between `after` and `before`.
  auto big_claims_between = [&](absl::Time after, absl::Time before) {
    absl::MutexLock lock(&mu);
    return std::count_if(big_claims.begin(), big_claims.end(),
                         [&](absl::Time t) { return t > after && t < before; });
  };
  auto small_done = [&](const std::string& id) {
    return WaitFor([&] {
      absl::MutexLock lock(&mu);
      return small_jobs.count(id) == 1;
    });
  };

  auto workers = JobWorkers::ForAllTenants(*f.engine, options);
  REQUIRE(workers.ok());
  REQUIRE(small_done("early"));
  {
    Job early;
    {
      absl::MutexLock lock(&mu);
      early = small_jobs["early"];
    }
    CHECK(big_claims_between(absl::InfinitePast(), early.lease_expires_at - kLease) <= 1);
  }

  for (int round = 0; round < 5; ++round) {
    const std::string id = "small-" + std::to_string(round);
    JobQueue small = f.Create(id).jobs();
    // Mid-stream: big is being drained.
    REQUIRE(WaitFor([&] {
      absl::MutexLock lock(&mu);
      return big_claims.size() >= 200u * (round + 1);
    }));
    REQUIRE(small.Enqueue(Spec("work")).ok());
    // The promise starts when Enqueue returns (the job is visible to the
    // workers); the clock ticks, so this reading orders against the claims.
    const absl::Time enqueued = f.clock->Now();
    REQUIRE(small_done(id));
    Job job;
    {
      absl::MutexLock lock(&mu);
      job = small_jobs[id];
    }
    auto between = big_claims_between(enqueued, job.lease_expires_at - kLease);
    INFO("big's claims between the small job's enqueue and its claim: " << between);
    CHECK(between <= 1);
  }
  (*workers)->Stop();
  CHECK_FALSE((*workers)->running());
  CHECK(f.Get("big").jobs().Counts()->queued > 0);  // big was busy throughout
}

TEST_CASE("JobWorkers: all-tenant workers resume jobs of reopened and re-enabled tenants",
          "[jobs][workers]") {
  JobsFixture f;  // fake job clock: delays only pass when the test says so
  {
    JobSpec delayed = Spec("work", "delayed");
    delayed.delay = absl::Minutes(5);
    REQUIRE(f.Create("a").jobs().Enqueue(delayed).ok());
    REQUIRE(f.Create("b").jobs().Enqueue(Spec("work")).ok());
    REQUIRE(f.registry().Disable("b").ok());
  }
  f.Reopen();

  std::atomic<int> done{0};
  JobWorkersOptions options;
  options.threads = 2;
  options.idle_poll = absl::Milliseconds(20);
  options.handlers["work"] = [&](const Tenant&, const Job&) {
    done++;
    return absl::OkStatus();
  };
  auto workers = JobWorkers::ForAllTenants(*f.engine, options);
  REQUIRE(workers.ok());
  REQUIRE(f.registry().Enable("b").ok());
  REQUIRE(WaitFor([&] { return done.load() == 1; }));  // b's, once enabled
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(done.load() == 1);  // a's job is not due yet
  f.clock->Advance(absl::Minutes(5));
  REQUIRE(WaitFor([&] { return done.load() == 2; }));
  CHECK(*f.Get("a").jobs().Counts() == JobCounts{});
}

TEST_CASE("JobWorkers: no thread is left after stop, disable, purge or engine close",
          "[jobs][workers]") {
  JobsFixture f(/*fake_clock=*/false);
  f.Create("a");
  f.Create("b");
  JobWorkersOptions options;
  options.handlers["work"] = [](const Tenant&, const Job&) { return absl::OkStatus(); };
  options.idle_poll = absl::Milliseconds(20);
  const int base = ThreadCount();

  SECTION("stop") {
    options.threads = 3;
    auto workers = JobWorkers::ForTenant(f.Get("a"), options);
    REQUIRE(workers.ok());
    CHECK(ThreadCount() >= base + 3);
    CHECK((*workers)->running());
    (*workers)->Stop();
    CHECK_FALSE((*workers)->running());
    CHECK(ThreadsBackTo(base));
    (*workers)->Stop();  // idempotent
  }
  SECTION("disable") {
    options.threads = 2;
    auto workers = JobWorkers::ForTenant(f.Get("a"), options);
    REQUIRE(workers.ok());
    REQUIRE(f.registry().Disable("a").ok());
    CHECK(WaitFor([&] { return !(*workers)->running(); }));
    CHECK(ThreadsBackTo(base));
  }
  SECTION("purge") {
    options.threads = 2;
    auto workers = JobWorkers::ForTenant(f.Get("b"), options);
    REQUIRE(workers.ok());
    REQUIRE(f.registry().Purge("b").ok());
    CHECK(WaitFor([&] { return !(*workers)->running(); }));
    CHECK(ThreadsBackTo(base));
  }
  SECTION("engine close") {
    options.threads = 2;
    auto one = JobWorkers::ForTenant(f.Get("a"), options);
    REQUIRE(one.ok());
    options.threads = 3;
    auto all = JobWorkers::ForAllTenants(*f.engine, options);
    REQUIRE(all.ok());
    REQUIRE(f.Get("a").jobs().Enqueue(Spec("work")).ok());
    CHECK(ThreadCount() >= base + 5);
    f.engine.reset();
    CHECK_FALSE((*one)->running());
    CHECK_FALSE((*all)->running());
    CHECK(ThreadsBackTo(base));
    // The workers outlive the engine harmlessly.
    (*one)->Stop();
    one->reset();
    all->reset();
  }
  SECTION("a tenant that does not accept writes gets no workers") {
    REQUIRE(f.registry().SetReadOnly("a", true).ok());
    options.threads = 1;
    CHECK(GetErrorReason(JobWorkers::ForTenant(f.Get("a"), options).status()) ==
          ErrorReason::kTenantReadOnly);
    CHECK(ThreadCount() == base);
  }
  SECTION("bad options start nothing") {
    JobWorkersOptions bad = options;
    bad.threads = 0;
    CHECK(absl::IsInvalidArgument(JobWorkers::ForTenant(f.Get("a"), bad).status()));
    bad = options;
    bad.handlers.clear();
    CHECK(absl::IsInvalidArgument(JobWorkers::ForAllTenants(*f.engine, bad).status()));
    bad = options;
    bad.handlers["bad type"] = options.handlers["work"];
    CHECK(absl::IsInvalidArgument(JobWorkers::ForAllTenants(*f.engine, bad).status()));
    CHECK(ThreadCount() == base);
  }
}

// An acquire hook that admits at most `limit` holders at once, like a
// limiter's "jobs" class; refusals carry a Retry-After.
struct CountingHook {
  explicit CountingHook(int limit) : limit(limit) {}
  const int limit;
  std::atomic<int> held{0};
  std::atomic<int> refused{0};

  JobAcquire Hook() {
    return [this](const Tenant& tenant) -> absl::StatusOr<JobPermit> {
      if (tenant.id() == "blocked") {
        refused++;
        return WithRetryAfter(MakeError(absl::StatusCode::kResourceExhausted,
                                        ErrorReason::kConcurrencyLimited, "blocked"),
                              std::chrono::milliseconds(5));
      }
      int now = held.fetch_add(1) + 1;
      if (now > limit) {
        held.fetch_sub(1);
        refused++;
        return WithRetryAfter(MakeError(absl::StatusCode::kResourceExhausted,
                                        ErrorReason::kConcurrencyLimited, "full"),
                              std::chrono::milliseconds(1));
      }
      return JobPermit([this] { held.fetch_sub(1); });
    };
  }
};

TEST_CASE("JobWorkers: every handler runs inside a permit from the acquire hook",
          "[jobs][workers]") {
  JobsFixture f(/*fake_clock=*/false);
  JobQueue jobs = f.Create("acme").jobs();
  JobQueue blocked = f.Create("blocked").jobs();
  CountingHook hook(2);
  std::atomic<int> running{0}, max_running{0}, outside_permit{0}, done{0};
  JobWorkersOptions options;
  options.acquire = hook.Hook();
  options.handlers["work"] = [&](const Tenant&, const Job&) {
    int now = running.fetch_add(1) + 1;
    int seen = max_running.load();
    while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
    }
    if (hook.held.load() < 1) outside_permit++;
    // Overlap handlers, so a permit released too early shows.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    running.fetch_sub(1);
    done++;
    return absl::OkStatus();
  };
  for (int i = 0; i < 30; ++i) REQUIRE(jobs.Enqueue(Spec("work")).ok());
  REQUIRE(blocked.Enqueue(Spec("work")).ok());

  SECTION("one tenant") {
    options.threads = 6;
    auto workers = JobWorkers::ForTenant(jobs.tenant(), options);
    REQUIRE(workers.ok());
    REQUIRE(WaitFor([&] { return done.load() == 30; }));
    (*workers)->Stop();
  }
  SECTION("all tenants: a refused tenant is skipped, the others go on") {
    options.threads = 6;
    auto workers = JobWorkers::ForAllTenants(*f.engine, options);
    REQUIRE(workers.ok());
    REQUIRE(WaitFor([&] { return done.load() == 30; }));
    REQUIRE(WaitFor([&] { return hook.refused.load() > 2; }));
    (*workers)->Stop();
    CHECK(blocked.Counts()->queued == 1);
  }
  CHECK(max_running.load() <= 2);
  CHECK(outside_permit.load() == 0);
  CHECK(hook.held.load() == 0);  // every permit given back
  CHECK(jobs.Counts()->queued == 0);
}

TEST_CASE("JobWorkers: handlers run inside the limiter's jobs class, at both tiers",
          "[jobs][workers]") {
  JobsFixture f(/*fake_clock=*/false);
  LimiterOptions limits;
  limits.default_tenant_limits = {{"jobs", 2}};
  limits.global_limits = {{"jobs", 3}};
  std::shared_ptr<Limiter> limiter = *Limiter::Create(limits);
  constexpr int kPerTenant = 20;
  const std::vector<std::string> ids = {"a", "b", "c"};
  for (const std::string& id : ids) {
    JobQueue jobs = f.Create(id).jobs();
    for (int i = 0; i < kPerTenant; ++i) REQUIRE(jobs.Enqueue(Spec("work")).ok());
  }

  absl::Mutex mu;
  std::map<std::string, int> running;  // tenant -> handlers running now
  int running_total = 0, max_total = 0, max_one = 0, done = 0;
  JobWorkersOptions options;
  options.limiter = limiter;  // limit_class "jobs" by default
  options.handlers["work"] = [&](const Tenant& t, const Job&) {
    {
      absl::MutexLock lock(&mu);
      max_one = std::max(max_one, ++running[t.id()]);
      max_total = std::max(max_total, ++running_total);
    }
    // Overlap handlers, so a permit released too early shows.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    absl::MutexLock lock(&mu);
    --running[t.id()];
    --running_total;
    ++done;
    return absl::OkStatus();
  };

  SECTION("all tenants") {
    options.threads = 8;
    auto workers = JobWorkers::ForAllTenants(*f.engine, options);
    REQUIRE(workers.ok());
    REQUIRE(WaitFor([&] {
      absl::MutexLock lock(&mu);
      return done == kPerTenant * static_cast<int>(ids.size());
    }));
    (*workers)->Stop();
    absl::MutexLock lock(&mu);
    CHECK(max_one <= 2);
    CHECK(max_total <= 3);
  }
  SECTION("one tenant") {
    options.threads = 6;
    auto workers = JobWorkers::ForTenant(f.Get("a"), options);
    REQUIRE(workers.ok());
    REQUIRE(WaitFor([&] {
      absl::MutexLock lock(&mu);
      return done == kPerTenant;
    }));
    (*workers)->Stop();
    absl::MutexLock lock(&mu);
    CHECK(max_one <= 2);
  }
  // Every job was admitted by the limiter, and every permit given back.
  auto cls = limiter->Class("jobs");
  REQUIRE(cls.ok());
  int64_t admitted = 0;
  for (const std::string& id : ids) {
    std::shared_ptr<LimiterTenant> tenant = limiter->GetTenant(id);
    if (tenant == nullptr) continue;
    LimiterCounters counters = limiter->TenantCounters(*tenant, *cls);
    admitted += counters.admitted;
    CHECK(counters.in_use == 0);
  }
  {
    absl::MutexLock lock(&mu);
    CHECK(admitted >= done);
  }
  CHECK(limiter->GlobalCounters(*cls).in_use == 0);

  JobWorkersOptions bad = options;
  bad.limit_class = "not a class!";
  CHECK(absl::IsInvalidArgument(JobWorkers::ForAllTenants(*f.engine, bad).status()));
}

}  // namespace
}  // namespace tenancy
