#include "tenancy/jobs.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "jobs_fixture.h"
#include "tenancy/kv_store.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using testing::JobsFixture;

JobSpec Spec(std::string type, std::string payload = "p") {
  JobSpec spec;
  spec.type = std::move(type);
  spec.payload = std::move(payload);
  return spec;
}

ClaimOptions ClaimOf(std::string type, absl::Duration lease = absl::Seconds(30)) {
  ClaimOptions options;
  options.type = std::move(type);
  options.lease = lease;
  return options;
}

// Claims one job of `type`; fails the test if there is none.
Job MustClaim(const JobQueue& jobs, const std::string& type,
              absl::Duration lease = absl::Seconds(30)) {
  auto claimed = jobs.Claim(ClaimOf(type, lease));
  REQUIRE(claimed.ok());
  REQUIRE(claimed->has_value());
  return **claimed;
}

bool NothingToClaim(const JobQueue& jobs, const std::string& type) {
  auto claimed = jobs.Claim(ClaimOf(type));
  return claimed.ok() && !claimed->has_value();
}

bool IsStaleLease(const absl::Status& s) {
  return absl::IsFailedPrecondition(s) && GetErrorReason(s) == ErrorReason::kStaleLease;
}

void RequireUsageMatchesRecount(const Tenant& tenant) {
  auto recount = tenant.kv().Recount(/*repair=*/false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
  CHECK(tenant.usage() == recount->counted);
}

TEST_CASE("JobQueue: each job is claimed by exactly one of many concurrent claimers", "[jobs]") {
  JobsFixture f(/*fake_clock=*/false);
  JobQueue jobs = f.Create("acme").jobs();
  constexpr int kProducers = 2;
  constexpr int kPerProducer = 200;
  constexpr int kClaimers = 8;
  constexpr int kTotal = kProducers * kPerProducer;

  absl::Mutex mu;
  std::vector<std::string> enqueued, claimed;
  std::atomic<int> acked{0}, errors{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        auto r = jobs.Enqueue(Spec(i % 2 ? "a" : "b", std::to_string(p * 1000 + i)));
        if (!r.ok()) {
          errors++;
          continue;
        }
        absl::MutexLock lock(&mu);
        enqueued.push_back(r->id);
      }
    });
  }
  // A lost job must fail the test, not hang it.
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  for (int c = 0; c < kClaimers; ++c) {
    threads.emplace_back([&, c] {
      while (acked.load() < kTotal && errors.load() == 0 && absl::Now() < give_up) {
        ClaimOptions options;
        options.type = c % 3 == 0 ? "" : (c % 3 == 1 ? "a" : "b");
        options.lease = absl::Minutes(5);
        options.wait = absl::Milliseconds(50);
        auto job = jobs.Claim(options);
        if (!job.ok()) {
          errors++;
          return;
        }
        if (!job->has_value()) continue;
        {
          absl::MutexLock lock(&mu);
          claimed.push_back((*job)->id);
        }
        if (!jobs.Ack((*job)->id, (*job)->lease).ok()) errors++;
        acked++;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  REQUIRE(errors.load() == 0);
  std::sort(enqueued.begin(), enqueued.end());
  std::sort(claimed.begin(), claimed.end());
  REQUIRE(enqueued.size() == kTotal);
  CHECK(std::adjacent_find(claimed.begin(), claimed.end()) == claimed.end());
  CHECK(claimed == enqueued);
  CHECK(*jobs.Counts() == JobCounts{});
}

TEST_CASE("JobQueue: an expired lease makes the job claimable again", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  auto id = jobs.Enqueue(Spec("email"));
  REQUIRE(id.ok());
  Job first = MustClaim(jobs, "email", absl::Seconds(10));
  CHECK(first.id == id->id);
  CHECK(first.attempts == 1);
  CHECK(first.state == JobState::kClaimed);
  CHECK(first.lease_expires_at == f.clock->Now() + absl::Seconds(10));
  CHECK(NothingToClaim(jobs, "email"));

  f.clock->Advance(absl::Seconds(9));
  CHECK(NothingToClaim(jobs, "email"));  // not yet
  f.clock->Advance(absl::Seconds(1));
  Job second = MustClaim(jobs, "email", absl::Seconds(10));
  CHECK(second.id == first.id);
  CHECK(second.attempts == 2);
  CHECK(second.lease != first.lease);
  CHECK(second.last_error == "lease expired");
  CHECK(second.payload == "p");
  REQUIRE(jobs.Ack(second.id, second.lease).ok());
}

TEST_CASE("JobQueue: a late ack of an expired lease is refused", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  REQUIRE(jobs.Enqueue(Spec("email")).ok());
  Job first = MustClaim(jobs, "email", absl::Seconds(10));
  f.clock->Advance(absl::Seconds(11));

  SECTION("before anyone claimed it again") {
    CHECK(IsStaleLease(jobs.Ack(first.id, first.lease)));
    CHECK(IsStaleLease(jobs.Nack(first.id, first.lease).status()));
    CHECK(IsStaleLease(jobs.ExtendLease(first.id, first.lease, absl::Seconds(5)).status()));
    // Nothing changed: the job is still claimed (its lease expired).
    auto inspected = jobs.Inspect(first.id);
    REQUIRE(inspected.ok());
    CHECK(inspected->state == JobState::kClaimed);
    CHECK(inspected->lease.empty());
  }
  SECTION("after it was delivered again") {
    Job second = MustClaim(jobs, "email", absl::Seconds(10));
    REQUIRE(second.id == first.id);
    CHECK(IsStaleLease(jobs.Ack(first.id, first.lease)));
    CHECK(IsStaleLease(jobs.Nack(first.id, first.lease).status()));
    REQUIRE(jobs.Ack(second.id, second.lease).ok());
    CHECK(absl::IsNotFound(jobs.Ack(second.id, second.lease)));  // gone
  }
  SECTION("a lease that is not a lease") {
    CHECK(absl::IsInvalidArgument(jobs.Ack(first.id, "not-a-lease")));
    // Ids are opaque: one of another shape names no job.
    CHECK(absl::IsNotFound(jobs.Ack("zz", first.lease)));
  }
}

TEST_CASE("JobQueue: an extended lease outlives its first expiry", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  REQUIRE(jobs.Enqueue(Spec("email")).ok());
  Job job = MustClaim(jobs, "email", absl::Seconds(10));
  f.clock->Advance(absl::Seconds(8));
  auto extended = jobs.ExtendLease(job.id, job.lease, absl::Seconds(10));
  REQUIRE(extended.ok());
  CHECK(extended->lease == job.lease);
  f.clock->Advance(absl::Seconds(8));  // past the first expiry
  CHECK(NothingToClaim(jobs, "email"));
  REQUIRE(jobs.Ack(job.id, job.lease).ok());
}

TEST_CASE("JobQueue: nack retries after exponential backoff with jitter, then dead letter",
          "[jobs]") {
  JobsFixture f;
  f.jobs_options.backoff_base = absl::Seconds(1);
  f.jobs_options.backoff_max = absl::Seconds(3);
  f.jobs_options.backoff_jitter = 0.5;
  f.Reopen();
  JobQueue jobs = f.Create("acme").jobs();
  JobSpec spec = Spec("email");
  spec.max_attempts = 4;
  REQUIRE(jobs.Enqueue(spec).ok());

  const absl::Duration delays[] = {absl::Seconds(1), absl::Seconds(2), absl::Seconds(3)};
  for (int attempt = 1; attempt <= 3; ++attempt) {
    Job job = MustClaim(jobs, "email");
    CHECK(job.attempts == static_cast<uint32_t>(attempt));
    NackOptions nack;
    nack.error = "boom " + std::to_string(attempt);
    auto after = jobs.Nack(job.id, job.lease, nack);
    REQUIRE(after.ok());
    CHECK(after->state == JobState::kDelayed);
    CHECK(after->last_error == nack.error);
    absl::Duration wait = after->next_run_at - f.clock->Now();
    absl::Duration full = delays[attempt - 1];
    CHECK(wait >= full / 2);
    CHECK(wait <= full);
    CHECK(jobs.Counts()->delayed == 1);
    CHECK(NothingToClaim(jobs, "email"));  // not before the backoff
    f.clock->Advance(wait);
  }
  Job last = MustClaim(jobs, "email");
  CHECK(last.attempts == 4);
  auto dead = jobs.Nack(last.id, last.lease, NackOptions{"final", std::nullopt});
  REQUIRE(dead.ok());
  CHECK(dead->state == JobState::kDead);
  f.clock->Advance(absl::Hours(1));
  CHECK(NothingToClaim(jobs, "email"));
  CHECK(*jobs.Counts() == JobCounts{0, 0, 0, 1});

  ListJobsOptions list;
  list.state = JobState::kDead;
  auto page = jobs.List(list);
  REQUIRE(page.ok());
  REQUIRE(page->jobs.size() == 1);
  CHECK(page->jobs[0].id == last.id);
  CHECK(page->jobs[0].last_error == "final");

  // Dead letters can be requeued, with fresh attempts.
  auto requeued = jobs.Requeue(last.id);
  REQUIRE(requeued.ok());
  CHECK(requeued->state == JobState::kQueued);
  CHECK(requeued->attempts == 0);
  CHECK(absl::IsFailedPrecondition(jobs.Requeue(last.id).status()));
  Job again = MustClaim(jobs, "email");
  CHECK(again.attempts == 1);
  // A retry_after of zero makes it claimable at once.
  NackOptions now;
  now.retry_after = absl::ZeroDuration();
  REQUIRE(jobs.Nack(again.id, again.lease, now).ok());
  Job third = MustClaim(jobs, "email");
  REQUIRE(jobs.Ack(third.id, third.lease).ok());
  CHECK(*jobs.Counts() == JobCounts{});
}

TEST_CASE("JobQueue: an expired lease after the last attempt dead-letters the job", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  JobSpec spec = Spec("email");
  spec.max_attempts = 1;
  auto id = jobs.Enqueue(spec);
  REQUIRE(id.ok());
  MustClaim(jobs, "email", absl::Seconds(5));
  f.clock->Advance(absl::Seconds(6));
  CHECK(NothingToClaim(jobs, "email"));
  auto job = jobs.Inspect(id->id);
  REQUIRE(job.ok());
  CHECK(job->state == JobState::kDead);
  CHECK(job->last_error == "lease expired");
}

TEST_CASE("JobQueue: a retried enqueue with the same idempotency key does not duplicate",
          "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  JobSpec spec = Spec("charge", "first");
  spec.idempotency_key = std::string("order-42\0\xff", 10);
  auto first = jobs.Enqueue(spec);
  REQUIRE(first.ok());
  CHECK(first->created);
  spec.payload = "second";
  auto retry = jobs.Enqueue(spec);
  REQUIRE(retry.ok());
  CHECK_FALSE(retry->created);
  CHECK(retry->id == first->id);
  CHECK(jobs.Counts()->queued == 1);

  // Also once the job is done, for the retention period.
  Job job = MustClaim(jobs, "charge");
  CHECK(job.payload == "first");
  REQUIRE(jobs.Ack(job.id, job.lease).ok());
  auto late = jobs.Enqueue(spec);
  REQUIRE(late.ok());
  CHECK_FALSE(late->created);
  CHECK(late->id == first->id);
  CHECK(NothingToClaim(jobs, "charge"));

  // After it, the key makes a new job.
  f.clock->Advance(f.jobs_options.idempotency_retention + absl::Seconds(1));
  auto fresh = jobs.Enqueue(spec);
  REQUIRE(fresh.ok());
  CHECK(fresh->created);
  CHECK(fresh->id != first->id);
  RequireUsageMatchesRecount(jobs.tenant());

  SECTION("concurrent enqueues with one key make one job") {
    std::atomic<int> created{0}, failed{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 6; ++i) {
      threads.emplace_back([&] {
        JobSpec same = Spec("charge");
        same.idempotency_key = "race";
        auto r = jobs.Enqueue(same);
        if (!r.ok()) {
          failed++;
        } else if (r->created) {
          created++;
        }
      });
    }
    for (std::thread& t : threads) t.join();
    CHECK(failed.load() == 0);
    CHECK(created.load() == 1);
  }
}

TEST_CASE("JobQueue: claims take the highest priority first, then the oldest", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  auto enqueue = [&](int32_t priority, const std::string& payload,
                     absl::Duration delay = absl::ZeroDuration(), const std::string& type = "t") {
    JobSpec spec = Spec(type, payload);
    spec.priority = priority;
    spec.delay = delay;
    REQUIRE(jobs.Enqueue(spec).ok());
    f.clock->Advance(absl::Milliseconds(1));
  };
  enqueue(0, "x1");
  enqueue(5, "y1");
  enqueue(0, "x2");
  enqueue(5, "y2");
  enqueue(-3, "z");
  enqueue(2147483647, "max");
  enqueue(-2147483647 - 1, "min");
  enqueue(9, "later", absl::Seconds(10));  // high, but not yet due
  std::vector<std::string> order;
  for (int i = 0; i < 7; ++i) order.push_back(MustClaim(jobs, "t").payload);
  CHECK(order == std::vector<std::string>{"max", "y1", "y2", "x1", "x2", "z", "min"});
  CHECK(NothingToClaim(jobs, "t"));
  f.clock->Advance(absl::Seconds(10));
  CHECK(MustClaim(jobs, "t").payload == "later");

  // Without a type: the best job of any type.
  enqueue(1, "a1", absl::ZeroDuration(), "a");
  enqueue(2, "b2", absl::ZeroDuration(), "b");
  enqueue(1, "c1", absl::ZeroDuration(), "c");
  CHECK(MustClaim(jobs, "").payload == "b2");
  CHECK(MustClaim(jobs, "").payload == "a1");
  CHECK(MustClaim(jobs, "").payload == "c1");
}

TEST_CASE("JobQueue: claim order holds across many jobs, restarts and expired leases", "[jobs]") {
  JobsFixture f;
  f.Create("acme");
  auto jobs = [&f] { return f.Get("acme").jobs(); };
  // 200 jobs, priorities -3..3 in a scrambled order; served by priority,
  // then in enqueue order (the same clock reading: the id breaks the tie).
  constexpr int kJobs = 200;
  std::vector<std::pair<int, int>> expected;  // (-priority, index)
  for (int i = 0; i < kJobs; ++i) {
    JobSpec spec = Spec("t", std::to_string(i));
    spec.priority = (i * 7919) % 7 - 3;
    REQUIRE(jobs().Enqueue(spec).ok());
    expected.emplace_back(-spec.priority, i);
  }
  std::sort(expected.begin(), expected.end());
  auto payload_at = [&](int k) { return std::to_string(expected[k].second); };

  std::vector<Job> held;
  for (int k = 0; k < 50; ++k) {
    Job job = MustClaim(jobs(), "t", absl::Seconds(10));
    REQUIRE(job.payload == payload_at(k));
    held.push_back(job);
  }
  for (int k = 50; k < 80; ++k) {
    Job job = MustClaim(jobs(), "t", absl::Minutes(10));
    REQUIRE(job.payload == payload_at(k));
    REQUIRE(jobs().Ack(job.id, job.lease).ok());
  }
  CHECK(*jobs().Counts() == JobCounts{120, 0, 50, 0});
  f.Reopen();
  CHECK(*jobs().Counts() == JobCounts{120, 0, 50, 0});
  f.clock->Advance(absl::Seconds(11));
  // The expired ones come back first, at their old places, then the rest.
  for (int k = 0; k < 50; ++k) {
    Job job = MustClaim(jobs(), "t", absl::Minutes(10));
    REQUIRE(job.payload == payload_at(k));
    CHECK(job.attempts == 2);
    REQUIRE(jobs().Ack(job.id, job.lease).ok());
  }
  for (int k = 80; k < kJobs; ++k) {
    Job job = MustClaim(jobs(), "t", absl::Minutes(10));
    REQUIRE(job.payload == payload_at(k));
    REQUIRE(jobs().Ack(job.id, job.lease).ok());
  }
  CHECK(NothingToClaim(jobs(), "t"));
  CHECK(*jobs().Counts() == JobCounts{});
  for (const Job& job : held) CHECK(absl::IsNotFound(jobs().Ack(job.id, job.lease)));
  RequireUsageMatchesRecount(f.Get("acme"));
}

TEST_CASE("JobQueue: state survives close and reopen, with leases honoured", "[jobs]") {
  JobsFixture f;
  f.Create("acme");
  // A fresh handle per call: no handle may outlive the engine it came from.
  auto jobs = [&f] { return f.Get("acme").jobs(); };
  auto a = jobs().Enqueue(Spec("t", "a"));
  auto b = jobs().Enqueue(Spec("t", "b"));
  JobSpec delayed = Spec("t", "d");
  delayed.delay = absl::Minutes(1);
  auto d = jobs().Enqueue(delayed);
  auto c = jobs().Enqueue(Spec("other", "c"));
  REQUIRE((a.ok() && b.ok() && c.ok() && d.ok()));
  Job ca = MustClaim(jobs(), "t", absl::Minutes(10));
  Job cb = MustClaim(jobs(), "t", absl::Seconds(10));
  REQUIRE(ca.id == a->id);
  REQUIRE(cb.id == b->id);

  f.Reopen();
  CHECK(*jobs().Counts() == JobCounts{1, 1, 2, 0});
  CHECK(NothingToClaim(jobs(), "t"));  // a and b leased, d delayed
  CHECK(jobs().Inspect(d->id)->state == JobState::kDelayed);
  REQUIRE(jobs().Ack(ca.id, ca.lease).ok());  // the lease outlived the restart

  f.clock->Advance(absl::Seconds(11));
  Job again = MustClaim(jobs(), "t");
  CHECK(again.id == b->id);
  CHECK(again.attempts == 2);
  CHECK(IsStaleLease(jobs().Ack(cb.id, cb.lease)));
  REQUIRE(jobs().Ack(again.id, again.lease).ok());

  f.clock->Advance(absl::Minutes(1));
  CHECK(MustClaim(jobs(), "t").id == d->id);
  CHECK(MustClaim(jobs(), "other").id == c->id);

  // Ids are never reused, also across restarts.
  auto e = jobs().Enqueue(Spec("t"));
  REQUIRE(e.ok());
  CHECK(e->id > c->id);
  f.Reopen();
  auto g = jobs().Enqueue(Spec("t"));
  REQUIRE(g.ok());
  CHECK(g->id > e->id);
  RequireUsageMatchesRecount(f.Get("acme"));
}

TEST_CASE("JobQueue: two tenants' queues never see each other's jobs", "[jobs]") {
  JobsFixture f;
  JobQueue a = f.Create("a").jobs();
  JobQueue ab = f.Create("ab").jobs();
  JobSpec spec = Spec("t", "secret of a");
  spec.idempotency_key = "k";
  auto id = a.Enqueue(spec);
  REQUIRE(id.ok());

  CHECK(NothingToClaim(ab, "t"));
  CHECK(NothingToClaim(ab, ""));
  CHECK(absl::IsNotFound(ab.Inspect(id->id).status()));
  CHECK(absl::IsNotFound(ab.Delete(id->id)));
  CHECK(*ab.Counts() == JobCounts{});
  CHECK(ab.List(ListJobsOptions{})->jobs.empty());
  // The same idempotency key is another tenant's own.
  auto other = ab.Enqueue(Spec("t", "of ab"));
  REQUIRE(other.ok());
  JobSpec same_key = Spec("t", "of ab, keyed");
  same_key.idempotency_key = "k";
  CHECK(ab.Enqueue(same_key)->created);

  Job job = MustClaim(a, "t");
  CHECK(job.payload == "secret of a");
  // Ids are per tenant: ab has a job with this id too, but the lease is a's.
  absl::Status foreign = ab.Ack(job.id, job.lease);
  CHECK((absl::IsNotFound(foreign) || IsStaleLease(foreign)));
  CHECK(a.Counts()->claimed == 1);
  CHECK(ab.Counts()->queued == 2);
  for (int i = 0; i < 2; ++i) CHECK(MustClaim(ab, "t").payload.find("of ab") == 0);
}

TEST_CASE("JobQueue: usage equals a recount after job operations", "[jobs]") {
  JobsFixture f;
  {
    Tenant tenant = f.Create("acme");
    JobQueue jobs = tenant.jobs();
    REQUIRE(tenant.kv().Put("kv-key", "kv-value").ok());
    const Usage before = tenant.usage();

    std::vector<std::string> ids;
    for (int i = 0; i < 30; ++i) {
      JobSpec spec = Spec(i % 3 ? "short" : "a-much-longer-type-name",
                          std::string(static_cast<size_t>(i * 37), 'x'));
      spec.delay = i % 4 == 0 ? absl::Seconds(i) : absl::ZeroDuration();
      spec.max_attempts = 2;
      if (i % 5 == 0) spec.idempotency_key = "key-" + std::to_string(i);
      auto r = jobs.Enqueue(spec);
      REQUIRE(r.ok());
      ids.push_back(r->id);
    }
    CHECK(tenant.usage().bytes > before.bytes + 30 * 37 * 29 / 2);
    CHECK(tenant.usage().keys == before.keys);  // jobs are not kv keys
    RequireUsageMatchesRecount(tenant);

    // Claims, acks, nacks with errors, lease expiry, dead letters, deletes.
    for (int round = 0; round < 4; ++round) {
      for (int i = 0; i < 8; ++i) {
        auto claimed = jobs.Claim(ClaimOf("", absl::Seconds(5)));
        REQUIRE(claimed.ok());
        if (!claimed->has_value()) break;
        const Job& job = **claimed;
        if (i % 3 == 0) {
          REQUIRE(jobs.Ack(job.id, job.lease).ok());
        } else if (i % 3 == 1) {
          NackOptions nack;
          nack.error = std::string(static_cast<size_t>(10 * i), 'e');
          REQUIRE(jobs.Nack(job.id, job.lease, nack).ok());
        }  // else: let the lease expire
      }
      RequireUsageMatchesRecount(tenant);
      f.clock->Advance(absl::Minutes(20));
    }
    ListJobsOptions dead;
    dead.state = JobState::kDead;
    auto page = jobs.List(dead);
    REQUIRE(page.ok());
    for (const Job& job : page->jobs) REQUIRE(jobs.Delete(job.id).ok());
    RequireUsageMatchesRecount(tenant);
    for (const std::string& id : ids) {
      absl::Status s = jobs.Delete(id);
      REQUIRE((s.ok() || absl::IsNotFound(s)));
    }
    RequireUsageMatchesRecount(tenant);
    CHECK(*jobs.Counts() == JobCounts{});
    // Only retired idempotency keys remain; they go after the retention.
    f.clock->Advance(f.jobs_options.idempotency_retention + absl::Seconds(1));
    REQUIRE(jobs.Enqueue(Spec("t")).ok());  // expires them
    Job last = MustClaim(jobs, "t");
    REQUIRE(jobs.Ack(last.id, last.lease).ok());
    RequireUsageMatchesRecount(tenant);
    // Only the id block marker is left besides the kv entry: 1 + 8 bytes.
    CHECK(tenant.usage().bytes == before.bytes + 9);
  }
  f.Reopen();
  RequireUsageMatchesRecount(f.Get("acme"));
}

TEST_CASE("JobQueue: a job is charged its payload, twice its type and 79 bytes", "[jobs]") {
  JobsFixture f;
  Tenant tenant = f.Create("acme");
  JobQueue jobs = tenant.jobs();
  REQUIRE(jobs.Enqueue(Spec("first")).ok());  // also reserves the id block
  const uint64_t before = tenant.usage().bytes;
  const std::string type = "resize";
  const std::string payload(200, 'p');
  JobSpec spec = Spec(type, payload);
  REQUIRE(jobs.Enqueue(spec).ok());
  const uint64_t charged = tenant.usage().bytes - before;
  CHECK(charged == payload.size() + 2 * type.size() + 79);
  // Claims, short nacks and lease expiry move the job without new bytes.
  Job job = MustClaim(jobs, type, absl::Seconds(5));
  CHECK(tenant.usage().bytes - before == charged);
  REQUIRE(jobs.Nack(job.id, job.lease).ok());
  CHECK(tenant.usage().bytes - before == charged);
  f.clock->Advance(absl::Hours(1));
  MustClaim(jobs, type, absl::Seconds(5));
  f.clock->Advance(absl::Hours(1));
  CHECK(NothingToClaim(jobs, "first") == false);  // runs the lease expiry too
  CHECK(tenant.usage().bytes - before == charged);
  RequireUsageMatchesRecount(tenant);
}

TEST_CASE("JobQueue: quotas refuse enqueues, never draining", "[jobs]") {
  JobsFixture f;
  SECTION("max_queued_jobs") {
    Quota quota;
    quota.max_queued_jobs = 3;
    JobQueue jobs = f.Create("acme", quota).jobs();
    JobSpec once = Spec("t");
    once.max_attempts = 1;
    for (int i = 0; i < 3; ++i) REQUIRE(jobs.Enqueue(once).ok());
    absl::Status refused = jobs.Enqueue(once).status();
    CHECK(absl::IsResourceExhausted(refused));
    CHECK(GetErrorReason(refused) == ErrorReason::kQueuedJobsQuota);
    CHECK(IsQuotaExceeded(refused));
    CHECK(jobs.Counts()->queued == 3);
    // Claimed jobs still count; dead ones do not.
    Job job = MustClaim(jobs, "t");
    CHECK(GetErrorReason(jobs.Enqueue(once).status()) == ErrorReason::kQueuedJobsQuota);
    REQUIRE(jobs.Nack(job.id, job.lease)->state == JobState::kDead);
    REQUIRE(jobs.Enqueue(once).ok());
    // Requeueing a dead job is an enqueue too.
    CHECK(GetErrorReason(jobs.Requeue(job.id).status()) == ErrorReason::kQueuedJobsQuota);
  }
  SECTION("storage quota") {
    Quota quota;
    quota.storage_bytes = 3000;
    Tenant tenant = f.Create("acme", quota);
    JobQueue jobs = tenant.jobs();
    REQUIRE(jobs.Enqueue(Spec("t", std::string(1000, 'x'))).ok());
    REQUIRE(jobs.Enqueue(Spec("t", std::string(1000, 'y'))).ok());
    absl::Status refused = jobs.Enqueue(Spec("t", std::string(1000, 'z'))).status();
    CHECK(GetErrorReason(refused) == ErrorReason::kStorageQuota);
    CHECK(jobs.Counts()->queued == 2);
    // A tenant at its quota can still drain: claims, expiries and short
    // nacks never add bytes.
    Quota tight = quota;
    tight.storage_bytes = tenant.usage().bytes;
    TenantSpec spec = tenant.spec();
    spec.quota = tight;
    REQUIRE(f.registry().Update(spec).ok());
    Job a = MustClaim(jobs, "t", absl::Seconds(5));
    NackOptions long_error;
    long_error.error = std::string(500, 'e');  // kept short: the quota is full
    auto nacked = jobs.Nack(a.id, a.lease, long_error);
    REQUIRE(nacked.ok());
    CHECK(nacked->last_error.empty());
    Job b = MustClaim(jobs, "t", absl::Seconds(5));
    CHECK(b.id != a.id);               // a waits for its backoff
    f.clock->Advance(absl::Hours(1));  // a is due, b's lease expired
    for (int i = 0; i < 2; ++i) {
      Job again = MustClaim(jobs, "t", absl::Seconds(5));
      REQUIRE(jobs.Ack(again.id, again.lease).ok());
    }
    CHECK(*jobs.Counts() == JobCounts{});
    RequireUsageMatchesRecount(tenant);
  }
}

TEST_CASE("JobQueue: a blocking claim sleeps until an enqueue wakes it", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();

  SECTION("nothing comes: it returns none at its deadline") {
    ClaimOptions options = ClaimOf("t");
    options.wait = absl::Milliseconds(100);
    absl::Time start = absl::Now();
    auto claimed = jobs.Claim(options);
    REQUIRE(claimed.ok());
    CHECK_FALSE(claimed->has_value());
    CHECK(absl::Now() - start >= absl::Milliseconds(100));
  }
  SECTION("an enqueue wakes it long before its deadline") {
    absl::StatusOr<std::optional<Job>> claimed;
    absl::Duration waited;
    std::thread claimer([&] {
      ClaimOptions options = ClaimOf("t");
      options.wait = absl::Seconds(120);
      absl::Time start = absl::Now();
      claimed = jobs.Claim(options);
      waited = absl::Now() - start;
    });
    REQUIRE(testing::WaitFor([&] { return f.claim_waits->load() >= 1; }));  // it waits
    REQUIRE(jobs.Enqueue(Spec("other")).ok());  // wakes it, but not for it
    auto id = jobs.Enqueue(Spec("t"));
    REQUIRE(id.ok());
    claimer.join();
    REQUIRE(claimed.ok());
    REQUIRE(claimed->has_value());
    CHECK((*claimed)->id == id->id);
    CHECK(waited < absl::Seconds(60));
  }
  SECTION("a purge wakes it with the tenant's error") {
    absl::StatusOr<std::optional<Job>> claimed;
    std::thread claimer([&] {
      ClaimOptions options = ClaimOf("t");
      options.wait = absl::Seconds(120);
      claimed = jobs.Claim(options);
    });
    REQUIRE(testing::WaitFor([&] { return f.claim_waits->load() >= 1; }));
    absl::Time start = absl::Now();
    REQUIRE(f.registry().Purge("acme").ok());
    claimer.join();
    CHECK(absl::Now() - start < absl::Seconds(60));
    CHECK(GetErrorReason(claimed.status()) == ErrorReason::kTenantDeleted);
  }
  SECTION("its cancel flag ends the wait with none, counted as one call") {
    std::atomic<bool> cancel{false};
    const uint64_t calls_before =
        jobs.tenant().requests().calls_by_kind[static_cast<int>(CallKind::kJobs)];
    absl::StatusOr<std::optional<Job>> claimed;
    std::thread claimer([&] {
      ClaimOptions options = ClaimOf("t");
      options.wait = absl::Seconds(120);
      options.cancel = &cancel;
      claimed = jobs.Claim(options);
    });
    // Several polls of the flag pass unset first (each one waits again).
    REQUIRE(testing::WaitFor([&] { return f.claim_waits->load() >= 3; }));
    absl::Time start = absl::Now();
    cancel.store(true);
    claimer.join();
    CHECK(absl::Now() - start < absl::Seconds(60));
    REQUIRE(claimed.ok());
    CHECK_FALSE(claimed->has_value());
    CHECK(jobs.tenant().requests().calls_by_kind[static_cast<int>(CallKind::kJobs)] ==
          calls_before + 1);
    // Nothing was left claimed by the cancelled wait.
    REQUIRE(jobs.Enqueue(Spec("t")).ok());
    CHECK(jobs.Counts()->queued == 1);
  }
}

TEST_CASE("JobQueue: bad input is refused and changes nothing", "[jobs]") {
  JobsFixture f;
  Quota quota;
  quota.max_value_bytes = 100;
  Tenant tenant = f.Create("acme", quota);
  JobQueue jobs = tenant.jobs();
  const Usage before = tenant.usage();

  for (const std::string& type :
       {std::string(), std::string("has space"), std::string(kMaxJobTypeBytes + 1, 't'),
        std::string("nul\0", 4), std::string("\xff")}) {
    CHECK(absl::IsInvalidArgument(jobs.Enqueue(Spec(type)).status()));
  }
  JobSpec spec = Spec("t");
  spec.delay = -absl::Seconds(1);
  CHECK(absl::IsInvalidArgument(jobs.Enqueue(spec).status()));
  spec = Spec("t");
  spec.max_attempts = f.jobs_options.max_attempts_limit + 1;
  CHECK(absl::IsInvalidArgument(jobs.Enqueue(spec).status()));
  spec = Spec("t");
  spec.idempotency_key = std::string(kMaxIdempotencyKeyBytes + 1, 'k');
  CHECK(absl::IsInvalidArgument(jobs.Enqueue(spec).status()));
  absl::Status too_large = jobs.Enqueue(Spec("t", std::string(101, 'x'))).status();
  CHECK(absl::IsInvalidArgument(too_large));
  CHECK(GetErrorReason(too_large) == ErrorReason::kTooLarge);

  // Ids are opaque: one of any shape that names no job is NOT_FOUND.
  CHECK(absl::IsNotFound(jobs.Inspect("xyz").status()));
  CHECK(absl::IsNotFound(jobs.Inspect("00000000000000AB").status()));
  CHECK(absl::IsNotFound(jobs.Inspect("00000000000000ab").status()));
  ClaimOptions claim = ClaimOf("t", f.jobs_options.max_lease + absl::Seconds(1));
  CHECK(absl::IsInvalidArgument(jobs.Claim(claim).status()));
  claim = ClaimOf("t");
  claim.wait = f.jobs_options.max_claim_wait + absl::Seconds(1);
  CHECK(absl::IsInvalidArgument(jobs.Claim(claim).status()));
  CHECK(absl::IsInvalidArgument(jobs.Claim(ClaimOf("bad type")).status()));
  ListJobsOptions list;
  list.limit = 0;
  CHECK(absl::IsInvalidArgument(jobs.List(list).status()));
  list.limit = 10;
  list.cursor = "nothex";
  CHECK(absl::IsInvalidArgument(jobs.List(list).status()));

  CHECK(*jobs.Counts() == JobCounts{});
  CHECK(tenant.usage() == before);
}

TEST_CASE("JobQueue: bad engine job options are refused at Open", "[jobs]") {
  testing::TempDir dir;
  EngineOptions options;
  options.path = (dir.path() / "db").string();
  options.logger = NewNullLogger();
  SECTION("jitter") { options.jobs.backoff_jitter = 2; }
  SECTION("lease") { options.jobs.default_lease = options.jobs.max_lease + absl::Seconds(1); }
  SECTION("attempts") { options.jobs.default_max_attempts = 0; }
  SECTION("backoff") { options.jobs.backoff_max = options.jobs.backoff_base / 2; }
  CHECK(absl::IsInvalidArgument(Engine::Open(options).status()));
}

TEST_CASE("JobQueue: calls on a disabled, read-only or purged tenant fail cleanly", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  auto id = jobs.Enqueue(Spec("t"));
  REQUIRE(id.ok());

  REQUIRE(f.registry().SetReadOnly("acme", true).ok());
  CHECK(GetErrorReason(jobs.Enqueue(Spec("t")).status()) == ErrorReason::kTenantReadOnly);
  CHECK(GetErrorReason(jobs.Claim(ClaimOf("t")).status()) == ErrorReason::kTenantReadOnly);
  CHECK(jobs.Inspect(id->id).ok());
  CHECK(jobs.Counts()->queued == 1);
  REQUIRE(f.registry().SetReadOnly("acme", false).ok());

  REQUIRE(f.registry().Disable("acme").ok());
  CHECK(GetErrorReason(jobs.Enqueue(Spec("t")).status()) == ErrorReason::kTenantDisabled);
  CHECK(GetErrorReason(jobs.Inspect(id->id).status()) == ErrorReason::kTenantDisabled);
  REQUIRE(f.registry().Enable("acme").ok());
  CHECK(MustClaim(jobs, "t").id == id->id);

  REQUIRE(f.registry().Purge("acme").ok());
  CHECK(GetErrorReason(jobs.Enqueue(Spec("t")).status()) == ErrorReason::kTenantDeleted);
  CHECK(GetErrorReason(jobs.Counts().status()) == ErrorReason::kTenantDeleted);
  // A new tenant of the same id starts empty.
  JobQueue fresh = f.Create("acme").jobs();
  CHECK(*fresh.Counts() == JobCounts{});
  CHECK(absl::IsNotFound(fresh.Inspect(id->id).status()));
}

TEST_CASE("JobQueue: list pages through each state, with a type filter", "[jobs]") {
  JobsFixture f;
  JobQueue jobs = f.Create("acme").jobs();
  for (int i = 0; i < 25; ++i) {
    JobSpec spec = Spec(i % 2 ? "odd" : "even", std::to_string(i));
    spec.delay = i >= 20 ? absl::Seconds(i) : absl::ZeroDuration();
    REQUIRE(jobs.Enqueue(spec).ok());
  }
  for (int i = 0; i < 3; ++i) MustClaim(jobs, "even");
  CHECK(*jobs.Counts() == JobCounts{17, 5, 3, 0});

  auto all = [&](ListJobsOptions options) {
    std::vector<Job> out;
    for (int pages = 0; pages < 100; ++pages) {
      auto page = jobs.List(options);
      REQUIRE(page.ok());
      CHECK(page->jobs.size() <= options.limit);
      out.insert(out.end(), page->jobs.begin(), page->jobs.end());
      if (page->cursor.empty()) break;
      options.cursor = page->cursor;
    }
    return out;
  };
  ListJobsOptions options;
  options.limit = 4;
  options.include_payload = true;
  std::vector<Job> queued = all(options);
  CHECK(queued.size() == 17);
  std::set<std::string> distinct;
  for (const Job& job : queued) {
    CHECK(job.state == JobState::kQueued);
    CHECK_FALSE(job.payload.empty());
    distinct.insert(job.id);
  }
  CHECK(distinct.size() == 17);
  options.type = "odd";
  CHECK(all(options).size() == 10);
  options.state = JobState::kDelayed;
  options.type = "";
  CHECK(all(options).size() == 5);
  options.type = "even";
  CHECK(all(options).size() == 3);  // 20, 22, 24
  options.state = JobState::kClaimed;
  options.type = "";
  std::vector<Job> claimed = all(options);
  REQUIRE(claimed.size() == 3);
  CHECK(claimed[0].lease.empty());
  options.include_payload = false;
  options.state = JobState::kQueued;
  CHECK(all(options)[0].payload.empty());
}

}  // namespace
}  // namespace tenancy
