#include "tenancy/limiter.h"

#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tenancy/status.h"

namespace tenancy {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

std::unique_ptr<Limiter> MakeLimiter(LimiterOptions options) {
  absl::StatusOr<std::unique_ptr<Limiter>> limiter = Limiter::Create(std::move(options));
  REQUIRE(limiter.ok());
  return *std::move(limiter);
}

LimitClass ClassOf(Limiter& limiter, std::string_view name) {
  absl::StatusOr<LimitClass> cls = limiter.Class(name);
  REQUIRE(cls.ok());
  return *cls;
}

steady_clock::time_point FarDeadline() { return steady_clock::now() + seconds(60); }

// Polls `condition` until it holds (true) or a generous timeout passes
// (false). Waiting for a state to be reached, not sleeping in its place.
template <typename Condition>
bool Eventually(Condition condition) {
  const auto give_up = steady_clock::now() + seconds(60);
  while (!condition()) {
    if (steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

// A steady clock the test moves by hand.
class FakeClock {
 public:
  steady_clock::time_point Now() const { return steady_clock::time_point(nanoseconds(ns_.load())); }
  void Advance(nanoseconds d) { ns_.fetch_add(d.count()); }
  std::function<steady_clock::time_point()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> ns_{1'000'000'000};
};

// Counts holders per (tier, tenant, class) from the limiter's own events,
// which it sends after taking a slot and before giving it back, so the counts
// here never exceed the true number of holders.
class HolderCountingObserver : public LimiterObserver {
 public:
  using Key = std::tuple<LimitTier, std::string, std::string>;

  // Declares the semaphores to watch and their limits. Call before use.
  void Watch(LimitTier tier, const std::string& tenant, const std::string& cls, int64_t limit) {
    slots_.emplace(std::piecewise_construct, std::forward_as_tuple(tier, tenant, cls),
                   std::forward_as_tuple(limit));
  }

  void OnEvent(const LimiterEvent& event) override {
    const std::string tenant =
        event.tier == LimitTier::kGlobal ? std::string() : std::string(event.tenant_id);
    auto it = slots_.find(Key(event.tier, tenant, std::string(event.class_name)));
    if (it == slots_.end()) return;
    Slot& slot = it->second;
    if (event.type == LimiterEvent::Type::kAcquired) {
      const int64_t now = slot.holders.fetch_add(1) + 1;
      if (now > slot.limit) violations_.fetch_add(1);
      int64_t peak = slot.peak.load();
      while (now > peak && !slot.peak.compare_exchange_weak(peak, now)) {
      }
    } else if (event.type == LimiterEvent::Type::kReleased) {
      slot.holders.fetch_sub(1);
    }
  }

  int64_t violations() const { return violations_.load(); }
  int64_t peak(LimitTier tier, const std::string& tenant, const std::string& cls) const {
    return slots_.at(Key(tier, tenant, cls)).peak.load();
  }

 private:
  struct Slot {
    explicit Slot(int64_t l) : limit(l) {}
    const int64_t limit;
    std::atomic<int64_t> holders{0};
    std::atomic<int64_t> peak{0};
  };
  // Filled before the threads start; only the atomics change afterwards.
  std::map<Key, Slot> slots_;
  std::atomic<int64_t> violations_{0};
};

TEST_CASE("Limiter: never more holders than the limit at any tier", "[limiter]") {
  const std::vector<std::string> tenants = {"a", "b", "c", "d"};
  const ConcurrencyLimits tenant_limits = {{"llm", 3}, {"llm/student", 2}, {"ocr", 2}};
  const ConcurrencyLimits global_limits = {
      {"llm", 5}, {"llm/student", 3}, {"llm/teacher", 2}, {"ocr", 3}};
  auto observer = std::make_shared<HolderCountingObserver>();
  for (const auto& [cls, limit] : global_limits) {
    observer->Watch(LimitTier::kGlobal, "", cls, limit);
  }
  for (const std::string& tenant : tenants) {
    for (const auto& [cls, limit] : tenant_limits) {
      observer->Watch(LimitTier::kTenant, tenant, cls, limit);
    }
  }
  LimiterOptions options;
  options.default_tenant_limits = tenant_limits;
  options.global_limits = global_limits;
  options.observer = observer;
  auto limiter = MakeLimiter(options);
  const std::vector<LimitClass> classes = {
      ClassOf(*limiter, "llm"), ClassOf(*limiter, "llm/student"), ClassOf(*limiter, "llm/teacher"),
      ClassOf(*limiter, "ocr")};
  std::vector<std::shared_ptr<LimiterTenant>> handles;
  for (const std::string& tenant : tenants) {
    handles.push_back(limiter->AddTenant(tenant));
  }

  constexpr int kThreads = 16;
  constexpr int kIterations = 600;
  std::atomic<int64_t> admitted{0};
  std::atomic<int64_t> refused{0};
  std::atomic<int64_t> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kIterations; ++i) {
        LimiterTenant& tenant = *handles[rng() % handles.size()];
        const LimitClass& cls = classes[rng() % classes.size()];
        absl::StatusOr<Permit> permit =
            rng() % 3 == 0
                ? limiter->TryAcquire(tenant, cls)
                : limiter->Acquire(tenant, cls,
                                   steady_clock::now() + std::chrono::microseconds(rng() % 2000));
        if (!permit.ok()) {
          refused.fetch_add(1);
          if (GetErrorReason(permit.status()) != ErrorReason::kConcurrencyLimited) {
            unexpected.fetch_add(1);
          }
          continue;
        }
        admitted.fetch_add(1);
        for (int spin = rng() % 50; spin > 0; --spin) std::this_thread::yield();
        if (rng() % 2 == 0) permit->Release();
      }
    });
  }
  for (auto& thread : threads) thread.join();

  CHECK(observer->violations() == 0);
  CHECK(unexpected.load() == 0);
  CHECK(admitted.load() > 0);
  CHECK(refused.load() > 0);
  // The limits were actually reached, so the test could have seen a breach.
  CHECK(observer->peak(LimitTier::kGlobal, "", "llm") == 5);
  CHECK(observer->peak(LimitTier::kTenant, "a", "llm/student") == 2);
  for (const LimiterCounters& row : limiter->Snapshot()) {
    INFO(row.tenant_id << " " << row.class_name);
    CHECK(row.in_use == 0);
    CHECK(row.waiting == 0);
  }
}

TEST_CASE(
    "Limiter: all counts return to zero after random acquires, timeouts, "
    "early releases and exceptions",
    "[limiter]") {
  LimiterOptions options;
  options.default_tenant_limits = {{"llm", 2}, {"llm/student", 1}, {"ocr", 1}};
  options.global_limits = {{"llm", 3}, {"ocr", 2}};
  auto limiter = MakeLimiter(options);
  const std::vector<LimitClass> classes = {
      ClassOf(*limiter, "llm"), ClassOf(*limiter, "llm/student"), ClassOf(*limiter, "ocr")};
  std::vector<std::shared_ptr<LimiterTenant>> handles = {
      limiter->AddTenant("a"), limiter->AddTenant("b"), limiter->AddTenant("c")};

  constexpr int kThreads = 8;
  constexpr int kIterations = 1000;
  std::atomic<int64_t> successes{0};
  std::atomic<int64_t> refusals{0};
  std::atomic<int64_t> caught{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      auto attempt = [&]() -> absl::StatusOr<Permit> {
        LimiterTenant& tenant = *handles[rng() % handles.size()];
        const LimitClass& cls = classes[rng() % classes.size()];
        if (rng() % 2 == 0) return limiter->TryAcquire(tenant, cls);
        // Short deadlines: a thread that already holds a permit must not
        // wait forever for another (see the header).
        return limiter->Acquire(tenant, cls,
                                steady_clock::now() + std::chrono::microseconds(rng() % 1000));
      };
      auto count = [&](const absl::StatusOr<Permit>& p) {
        (p.ok() ? successes : refusals).fetch_add(1);
      };
      for (int i = 0; i < kIterations; ++i) {
        switch (rng() % 5) {
          case 0: {  // Acquire and let the scope release it.
            absl::StatusOr<Permit> p = attempt();
            count(p);
            break;
          }
          case 1: {  // Early release, then the destructor must do nothing.
            absl::StatusOr<Permit> p = attempt();
            count(p);
            if (p.ok()) {
              p->Release();
              p->Release();
            }
            break;
          }
          case 2: {  // An exception leaves the scope with the permit held.
            try {
              absl::StatusOr<Permit> p = attempt();
              count(p);
              if (p.ok()) throw std::runtime_error("request failed");
            } catch (const std::runtime_error&) {
              caught.fetch_add(1);
            }
            break;
          }
          case 3: {  // Two at once, moved around.
            absl::StatusOr<Permit> p1 = attempt();
            count(p1);
            absl::StatusOr<Permit> p2 = attempt();
            count(p2);
            if (p1.ok() && p2.ok()) {
              Permit moved = std::move(*p1);
              *p1 = std::move(*p2);    // p1's (empty) slot takes p2's permit
              moved = std::move(*p1);  // releases the first, takes the second
            }
            break;
          }
          default: {  // Hold a little while.
            absl::StatusOr<Permit> p = attempt();
            count(p);
            std::this_thread::yield();
            break;
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();

  CHECK(successes.load() > 0);
  CHECK(refusals.load() > 0);
  CHECK(caught.load() > 0);
  int64_t admitted = 0;
  int64_t rejected = 0;
  for (const LimiterCounters& row : limiter->Snapshot()) {
    INFO(LimitTierName(row.tier) << " " << row.tenant_id << " " << row.class_name);
    CHECK(row.in_use == 0);
    CHECK(row.waiting == 0);
    admitted += row.admitted;
    rejected += row.rejected_concurrency + row.rejected_rate;
  }
  CHECK(admitted == successes.load());
  CHECK(rejected == refusals.load());
  // And the limiter is still whole: every slot can be taken again.
  for (auto& tenant : handles) {
    CHECK(limiter->TryAcquire(*tenant, classes[1]).ok());
  }
}

// Records every event of every thread, in order.
class RecordingObserver : public LimiterObserver {
 public:
  void OnEvent(const LimiterEvent& event) override {
    std::lock_guard<std::mutex> lock(mu_);
    Held& held = held_[std::this_thread::get_id()];
    switch (event.type) {
      case LimiterEvent::Type::kWaiting:
        if (event.tier == LimitTier::kTenant) {
          ++tenant_waits_;
          if (held.global > 0) ++waits_holding_global_;
        }
        break;
      case LimiterEvent::Type::kAcquired:
        ++(event.tier == LimitTier::kTenant ? held.tenant : held.global);
        break;
      case LimiterEvent::Type::kReleased:
        --(event.tier == LimitTier::kTenant ? held.tenant : held.global);
        break;
    }
    log_.push_back(std::string(event.type == LimiterEvent::Type::kWaiting    ? "wait "
                               : event.type == LimiterEvent::Type::kAcquired ? "take "
                                                                             : "give ") +
                   std::string(LimitTierName(event.tier)) + " " + std::string(event.class_name));
  }

  std::vector<std::string> log() const {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  int tenant_waits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tenant_waits_;
  }
  int waits_holding_global() const {
    std::lock_guard<std::mutex> lock(mu_);
    return waits_holding_global_;
  }

 private:
  struct Held {
    int tenant = 0;
    int global = 0;
  };
  mutable std::mutex mu_;
  std::vector<std::string> log_;
  std::map<std::thread::id, Held> held_;
  int tenant_waits_ = 0;
  int waits_holding_global_ = 0;
};

TEST_CASE(
    "Limiter: permits are taken tenant tier then global tier, parent before "
    "child, and given back in reverse",
    "[limiter]") {
  auto recorder = std::make_shared<RecordingObserver>();
  LimiterOptions options;
  options.default_tenant_limits = {{"llm", 30}, {"llm/student", 2}};
  options.global_limits = {{"llm", 200}};
  options.observer = recorder;
  auto limiter = MakeLimiter(options);
  auto tenant = limiter->AddTenant("a");
  const LimitClass student = ClassOf(*limiter, "llm/student");
  {
    absl::StatusOr<Permit> permit = limiter->Acquire(*tenant, student, FarDeadline());
    REQUIRE(permit.ok());
  }
  const std::vector<std::string> expected = {
      "take tenant llm",         "take tenant llm/student", "take global llm",
      "take global llm/student", "give global llm/student", "give global llm",
      "give tenant llm/student", "give tenant llm",
  };
  CHECK(recorder->log() == expected);
}

TEST_CASE(
    "Limiter: no thread holds a global permit while it waits for a "
    "tenant permit",
    "[limiter]") {
  auto recorder = std::make_shared<RecordingObserver>();
  LimiterOptions options;
  options.default_tenant_limits = {{"llm", 1}};
  options.global_limits = {{"llm", 10}, {"llm/student", 10}};
  options.observer = recorder;
  auto limiter = MakeLimiter(options);
  auto tenant = limiter->AddTenant("a");
  const LimitClass llm = ClassOf(*limiter, "llm");
  const LimitClass student = ClassOf(*limiter, "llm/student");

  absl::StatusOr<Permit> holder = limiter->TryAcquire(*tenant, llm);
  REQUIRE(holder.ok());
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&] {
      absl::StatusOr<Permit> p = limiter->Acquire(*tenant, student, FarDeadline());
      CHECK(p.ok());
    });
  }
  REQUIRE(Eventually([&] { return limiter->TenantCounters(*tenant, student).waiting == 4; }));
  // Everybody is blocked on the tenant's "llm": nobody may hold the global
  // "llm" beyond the holder, nor the tenant's child class.
  CHECK(limiter->GlobalCounters(llm).in_use == 1);
  CHECK(limiter->GlobalCounters(student).in_use == 0);
  CHECK(limiter->TenantCounters(*tenant, student).in_use == 0);
  holder->Release();
  for (auto& waiter : waiters) waiter.join();
  CHECK(recorder->tenant_waits() >= 4);
  CHECK(recorder->waits_holding_global() == 0);
  CHECK(limiter->GlobalCounters(llm).in_use == 0);
}

TEST_CASE(
    "Limiter: a tenant with one waiter is served within a few releases while "
    "another floods the global tier",
    "[limiter]") {
  LimiterOptions options;
  options.global_limits = {{"llm", 1}};  // no tenant-tier limit at all
  auto limiter = MakeLimiter(options);
  auto flood = limiter->AddTenant("flood");
  auto lone = limiter->AddTenant("lone");
  const LimitClass llm = ClassOf(*limiter, "llm");

  absl::StatusOr<Permit> holder = limiter->TryAcquire(*flood, llm);
  REQUIRE(holder.ok());
  constexpr int kFloodWaiters = 100;
  std::atomic<int> next_rank{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kFloodWaiters; ++i) {
    threads.emplace_back([&] {
      absl::StatusOr<Permit> p = limiter->Acquire(*flood, llm, FarDeadline());
      CHECK(p.ok());
      next_rank.fetch_add(1);
    });
  }
  // The worst case for the lone tenant: every flood waiter is queued first.
  REQUIRE(Eventually([&] { return limiter->GlobalCounters(llm).waiting == kFloodWaiters; }));
  int lone_rank = -1;
  threads.emplace_back([&] {
    absl::StatusOr<Permit> p = limiter->Acquire(*lone, llm, FarDeadline());
    CHECK(p.ok());
    lone_rank = next_rank.fetch_add(1);
  });
  REQUIRE(Eventually([&] { return limiter->GlobalCounters(llm).waiting == kFloodWaiters + 1; }));
  holder->Release();
  for (auto& thread : threads) thread.join();
  // Rotation by tenant: one flood waiter, then the lone one (first come,
  // first served would make it the 101st).
  CHECK(lone_rank >= 0);
  CHECK(lone_rank <= 1);
  CHECK(limiter->GlobalCounters(llm).in_use == 0);
}

// Two threads, each asking at `rate_per_thread` per simulated second, for
// `steps` steps of `step`; returns how many were admitted. The fake clock is
// the only time that matters: the test takes milliseconds of real time.
int64_t RunRateRound(Limiter& limiter, FakeClock& clock, LimiterTenant& tenant,
                     const LimitClass& cls, int steps, nanoseconds step,
                     std::vector<nanoseconds>* retry_afters) {
  std::atomic<int64_t> admitted{0};
  std::mutex mu;
  std::barrier sync(2, [&]() noexcept { clock.Advance(step); });
  auto worker = [&] {
    for (int i = 0; i < steps; ++i) {
      absl::StatusOr<Permit> p = limiter.TryAcquire(tenant, cls);
      if (p.ok()) {
        admitted.fetch_add(1);
      } else {
        CHECK(GetErrorReason(p.status()) == ErrorReason::kRateLimited);
        std::lock_guard<std::mutex> lock(mu);
        retry_afters->push_back(GetRetryAfter(p.status()).value_or(nanoseconds(-1)));
      }
      sync.arrive_and_wait();
    }
  };
  std::thread a(worker);
  std::thread b(worker);
  a.join();
  b.join();
  return admitted.load();
}

TEST_CASE(
    "Limiter: a token bucket admits between 0.95*rate*T and rate*T+burst "
    "over 2 s of the steady clock",
    "[limiter]") {
  constexpr double kRate = 100;
  constexpr double kBurst = 10;
  constexpr double kSeconds = 2;
  // Each of two threads asks at kRate: twice the rate in all.
  constexpr nanoseconds kStep = milliseconds(10);
  constexpr int kSteps = 200;

  FakeClock clock;
  LimiterOptions options;
  options.clock = clock.AsFunction();
  const RateLimits rate = {{"llm", {kRate, kBurst}}};
  const RateLimits all = {{std::string(kAllClasses), {kRate, kBurst}}};
  std::string where;
  SECTION("tenant tier, per class") {
    options.default_tenant_rates = rate;
    where = "tenant llm";
  }
  SECTION("tenant tier, all classes") {
    options.default_tenant_rates = all;
    where = "tenant all";
  }
  SECTION("global tier, per class") {
    options.global_rates = rate;
    where = "global llm";
  }
  SECTION("global tier, all classes") {
    options.global_rates = all;
    where = "global all";
  }
  INFO(where);
  auto limiter = MakeLimiter(options);
  auto tenant = limiter->AddTenant("a");
  const LimitClass student = ClassOf(*limiter, "llm/student");

  std::vector<nanoseconds> retry_afters;
  const int64_t admitted =
      RunRateRound(*limiter, clock, *tenant, student, kSteps, kStep, &retry_afters);
  CHECK(admitted <= (kRate * kSeconds + kBurst) * 1.01);
  CHECK(admitted >= 0.95 * kRate * kSeconds);
  REQUIRE_FALSE(retry_afters.empty());
  for (nanoseconds wait : retry_afters) {
    CHECK(wait > nanoseconds(0));
    CHECK(wait <= milliseconds(10));  // one token's worth at 100/s
  }
  CHECK(limiter->TenantCounters(*tenant, student).rejected_rate ==
        static_cast<int64_t>(retry_afters.size()));
  CHECK(limiter->TenantCounters(*tenant, student).admitted == admitted);
}

TEST_CASE(
    "Limiter: on the real steady clock, two threads at twice the rate get "
    "the rate",
    "[limiter]") {
  constexpr double kRate = 100;
  // A deep bucket, so that a loaded machine stalling both threads for up to
  // half a second costs no tokens.
  constexpr double kBurst = 50;
  LimiterOptions options;
  options.default_tenant_rates = {{"ocr", {kRate, kBurst}}};
  auto limiter = MakeLimiter(options);
  auto tenant = limiter->AddTenant("a");
  const LimitClass ocr = ClassOf(*limiter, "ocr");

  std::atomic<int64_t> admitted{0};
  const auto start = steady_clock::now();
  const auto end = start + seconds(2);
  auto worker = [&] {
    // Attempts on a fixed schedule at kRate per thread; a late thread catches
    // up instead of asking less.
    for (int i = 0;; ++i) {
      const auto when =
          start + std::chrono::duration_cast<nanoseconds>(std::chrono::duration<double>(i / kRate));
      if (when >= end) break;
      std::this_thread::sleep_until(when);
      if (limiter->TryAcquire(*tenant, ocr).ok()) admitted.fetch_add(1);
    }
  };
  std::thread a(worker);
  std::thread b(worker);
  a.join();
  b.join();
  const double elapsed = std::chrono::duration<double>(steady_clock::now() - start).count();
  CHECK(admitted.load() <= (kRate * elapsed + kBurst) * 1.01);
  CHECK(admitted.load() >= 0.95 * kRate * 2);
}

TEST_CASE("Limiter: deadlines and TryAcquire return the right codes", "[limiter]") {
  LimiterOptions options;
  options.default_tenant_limits = {{"llm/student", 1}};
  options.global_limits = {{"ocr", 1}};
  options.concurrency_retry_after = milliseconds(1500);
  auto limiter = MakeLimiter(options);
  auto a = limiter->AddTenant("a");
  auto b = limiter->AddTenant("b");
  const LimitClass student = ClassOf(*limiter, "llm/student");
  const LimitClass ocr = ClassOf(*limiter, "ocr");

  absl::StatusOr<Permit> held = limiter->TryAcquire(*a, student);
  REQUIRE(held.ok());
  CHECK(held->held());

  SECTION("TryAcquire on a full tenant semaphore") {
    absl::StatusOr<Permit> p = limiter->TryAcquire(*a, student);
    REQUIRE_FALSE(p.ok());
    CHECK(absl::IsResourceExhausted(p.status()));
    CHECK(GetErrorReason(p.status()) == ErrorReason::kConcurrencyLimited);
    CHECK(IsRateOrConcurrencyLimited(p.status()));
    std::optional<LimitRejection> why = GetLimitRejection(p.status());
    REQUIRE(why.has_value());
    CHECK(why->tier == LimitTier::kTenant);
    CHECK(why->kind == LimitKind::kConcurrency);
    CHECK(why->class_name == "llm/student");
    CHECK(why->retry_after == milliseconds(1500));
    CHECK(GetRetryAfter(p.status()) == milliseconds(1500));
    // Another tenant is not affected by a's tenant-tier limit.
    CHECK(limiter->TryAcquire(*b, student).ok());
  }
  SECTION("Acquire times out with DEADLINE_EXCEEDED") {
    const auto start = steady_clock::now();
    absl::StatusOr<Permit> p = limiter->Acquire(*a, student, start + milliseconds(50));
    REQUIRE_FALSE(p.ok());
    CHECK(absl::IsDeadlineExceeded(p.status()));
    CHECK(GetErrorReason(p.status()) == ErrorReason::kConcurrencyLimited);
    CHECK(steady_clock::now() - start >= milliseconds(50));
    std::optional<LimitRejection> why = GetLimitRejection(p.status());
    REQUIRE(why.has_value());
    CHECK(why->tier == LimitTier::kTenant);
    CHECK(why->class_name == "llm/student");
    CHECK(limiter->TenantCounters(*a, student).rejected_concurrency == 1);
    CHECK(limiter->TenantCounters(*a, student).total_wait >= milliseconds(50));
  }
  SECTION("a past deadline still succeeds when nothing needs waiting for") {
    absl::StatusOr<Permit> p = limiter->Acquire(*b, student, steady_clock::now() - seconds(1));
    CHECK(p.ok());
    absl::StatusOr<Permit> q = limiter->Acquire(*a, student, steady_clock::now() - seconds(1));
    CHECK(absl::IsDeadlineExceeded(q.status()));
  }
  SECTION("the global tier names itself") {
    absl::StatusOr<Permit> first = limiter->TryAcquire(*a, ocr);
    REQUIRE(first.ok());
    absl::StatusOr<Permit> p = limiter->TryAcquire(*b, ocr);
    REQUIRE_FALSE(p.ok());
    std::optional<LimitRejection> why = GetLimitRejection(p.status());
    REQUIRE(why.has_value());
    CHECK(why->tier == LimitTier::kGlobal);
    CHECK(why->class_name == "ocr");
    absl::StatusOr<Permit> q = limiter->Acquire(*b, ocr, steady_clock::now() + milliseconds(20));
    CHECK(absl::IsDeadlineExceeded(q.status()));
    CHECK(GetLimitRejection(q.status())->tier == LimitTier::kGlobal);
  }
  SECTION("a waiter gets the slot when the holder releases") {
    std::thread waiter([&] {
      absl::StatusOr<Permit> p = limiter->Acquire(*a, student, FarDeadline());
      CHECK(p.ok());
    });
    REQUIRE(Eventually([&] { return limiter->TenantCounters(*a, student).waiting == 1; }));
    held->Release();
    CHECK_FALSE(held->held());
    waiter.join();
    CHECK(limiter->TenantCounters(*a, student).admitted == 2);
  }
  SECTION("names: unknown tenant, bad class, good ones") {
    CHECK(absl::IsNotFound(limiter->TryAcquire("nobody", "llm").status()));
    CHECK(absl::IsInvalidArgument(limiter->TryAcquire("b", "llm//x").status()));
    CHECK(limiter->TryAcquire("b", "llm/student").ok());
    CHECK(absl::IsDeadlineExceeded(
        limiter->Acquire("a", "llm/student", steady_clock::now()).status()));
    CHECK(absl::IsResourceExhausted(limiter->TryAcquire("a", "llm/student").status()));
  }
  SECTION("a non-limiter status has no rejection") {
    CHECK_FALSE(GetLimitRejection(absl::OkStatus()).has_value());
    CHECK_FALSE(GetLimitRejection(absl::InternalError("x")).has_value());
  }
}

TEST_CASE(
    "Limiter: a rate refusal names its tier and class and carries the "
    "wait for a token",
    "[limiter]") {
  FakeClock clock;
  LimiterOptions options;
  options.clock = clock.AsFunction();
  options.default_tenant_rates = {{std::string(kAllClasses), {1000, 100}}, {"llm/student", {2, 1}}};
  options.global_rates = {{"llm", {1000, 100}}};
  options.default_tenant_limits = {{"llm/student", 1}};
  auto limiter = MakeLimiter(options);
  auto a = limiter->AddTenant("a");
  const LimitClass student = ClassOf(*limiter, "llm/student");

  REQUIRE(limiter->TryAcquire(*a, student).ok());
  absl::StatusOr<Permit> p = limiter->TryAcquire(*a, student);
  REQUIRE_FALSE(p.ok());
  CHECK(absl::IsResourceExhausted(p.status()));
  CHECK(GetErrorReason(p.status()) == ErrorReason::kRateLimited);
  std::optional<LimitRejection> why = GetLimitRejection(p.status());
  REQUIRE(why.has_value());
  CHECK(why->tier == LimitTier::kTenant);
  CHECK(why->kind == LimitKind::kRate);
  CHECK(why->class_name == "llm/student");
  CHECK(why->retry_after == milliseconds(500));  // 2/s, fake time frozen
  clock.Advance(milliseconds(499));
  CHECK(GetLimitRejection(limiter->TryAcquire(*a, student).status())->retry_after ==
        milliseconds(1));
  clock.Advance(milliseconds(1));

  SECTION("a concurrency refusal gives the tokens back") {
    absl::StatusOr<Permit> held = limiter->TryAcquire(*a, student);
    REQUIRE(held.ok());
    clock.Advance(milliseconds(500));
    // The semaphore (limit 1) refuses; the token this took is refunded...
    CHECK(GetErrorReason(limiter->TryAcquire(*a, student).status()) ==
          ErrorReason::kConcurrencyLimited);
    held->Release();
    // ...so it is still there for the next request.
    CHECK(limiter->TryAcquire(*a, student).ok());
  }
  SECTION("the tenant-wide and global buckets refuse by their own names") {
    REQUIRE(limiter->SetTenantRates("a", {{std::string(kAllClasses), {1, 1}}}).ok());
    const LimitClass ocr = ClassOf(*limiter, "ocr");
    REQUIRE(limiter->TryAcquire(*a, ocr).ok());
    std::optional<LimitRejection> all = GetLimitRejection(limiter->TryAcquire(*a, ocr).status());
    REQUIRE(all.has_value());
    CHECK(all->tier == LimitTier::kTenant);
    CHECK(all->class_name == "");
    CHECK(all->retry_after == seconds(1));

    auto b = limiter->AddTenant("b");
    REQUIRE(limiter->SetGlobalRates({{"llm", {1, 1}}}).ok());
    const LimitClass llm = ClassOf(*limiter, "llm");
    REQUIRE(limiter->TryAcquire(*b, llm).ok());
    std::optional<LimitRejection> global = GetLimitRejection(limiter->TryAcquire(*b, llm).status());
    REQUIRE(global.has_value());
    CHECK(global->tier == LimitTier::kGlobal);
    CHECK(global->class_name == "llm");
  }
}

TEST_CASE(
    "Limiter: live limit changes apply to new acquisitions and keep "
    "held permits",
    "[limiter]") {
  LimiterOptions options;
  options.default_tenant_limits = {{"llm", 3}};
  auto limiter = MakeLimiter(options);
  auto a = limiter->AddTenant("a");
  auto b = limiter->AddTenant("b");
  const LimitClass llm = ClassOf(*limiter, "llm");

  SECTION("lowering the default") {
    std::vector<Permit> held;
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<Permit> p = limiter->TryAcquire(*a, llm);
      REQUIRE(p.ok());
      held.push_back(*std::move(p));
    }
    REQUIRE(limiter->SetDefaultTenantLimits({{"llm", 1}}).ok());
    CHECK(limiter->TenantCounters(*a, llm).limit == 1);
    CHECK(limiter->TenantCounters(*a, llm).in_use == 3);  // still valid
    CHECK_FALSE(limiter->TryAcquire(*a, llm).ok());
    held.pop_back();
    held.pop_back();
    CHECK_FALSE(limiter->TryAcquire(*a, llm).ok());  // 1 in use, limit 1
    held.clear();
    CHECK(limiter->TryAcquire(*a, llm).ok());
    // b never held anything and gets the new default too.
    absl::StatusOr<Permit> b1 = limiter->TryAcquire(*b, llm);
    REQUIRE(b1.ok());
    CHECK_FALSE(limiter->TryAcquire(*b, llm).ok());
  }
  SECTION("a tenant override, then its removal") {
    REQUIRE(limiter->SetTenantLimits("a", {{"llm", 1}}).ok());
    absl::StatusOr<Permit> a1 = limiter->TryAcquire(*a, llm);
    REQUIRE(a1.ok());
    CHECK_FALSE(limiter->TryAcquire(*a, llm).ok());
    // Only a is overridden.
    absl::StatusOr<Permit> b1 = limiter->TryAcquire(*b, llm);
    absl::StatusOr<Permit> b2 = limiter->TryAcquire(*b, llm);
    CHECK((b1.ok() && b2.ok()));
    // An empty override map falls back to the default (3).
    REQUIRE(limiter->SetTenantLimits("a", {}).ok());
    CHECK(limiter->TryAcquire(*a, llm).ok());
    CHECK(absl::IsNotFound(limiter->SetTenantLimits("nobody", {})));
  }
  SECTION("raising a limit wakes a waiter") {
    REQUIRE(limiter->SetTenantLimits("a", {{"llm", 0}}).ok());
    std::thread waiter([&] {
      absl::StatusOr<Permit> p = limiter->Acquire(*a, llm, FarDeadline());
      CHECK(p.ok());
    });
    REQUIRE(Eventually([&] { return limiter->TenantCounters(*a, llm).waiting == 1; }));
    REQUIRE(limiter->SetTenantLimits("a", {{"llm", 1}}).ok());
    waiter.join();
    CHECK(limiter->TenantCounters(*a, llm).admitted == 1);
  }
  SECTION("global limits, set and removed") {
    REQUIRE(limiter->SetGlobalLimits({{"llm", 1}}).ok());
    absl::StatusOr<Permit> a1 = limiter->TryAcquire(*a, llm);
    REQUIRE(a1.ok());
    CHECK(GetLimitRejection(limiter->TryAcquire(*b, llm).status())->tier == LimitTier::kGlobal);
    REQUIRE(limiter->SetGlobalLimits({}).ok());
    CHECK_FALSE(limiter->GlobalCounters(llm).limit.has_value());
    CHECK(limiter->TryAcquire(*b, llm).ok());
    CHECK(limiter->GlobalCounters(llm).in_use == 1);  // a1 is still counted
  }
  SECTION("lowering a rate live") {
    FakeClock clock;
    LimiterOptions rated;
    rated.clock = clock.AsFunction();
    rated.default_tenant_rates = {{"llm", {1000, 1000}}};
    auto rl = MakeLimiter(rated);
    auto t = rl->AddTenant("t");
    const LimitClass cls = ClassOf(*rl, "llm");
    for (int i = 0; i < 10; ++i) REQUIRE(rl->TryAcquire(*t, cls).ok());
    REQUIRE(rl->SetTenantRates("t", {{"llm", {1, 1}}}).ok());
    // Tokens already spent stay spent: the lower rate admits nothing more
    // until its own interval has passed.
    CHECK(GetErrorReason(rl->TryAcquire(*t, cls).status()) == ErrorReason::kRateLimited);
    clock.Advance(seconds(1));
    CHECK(rl->TryAcquire(*t, cls).ok());
    CHECK_FALSE(rl->TryAcquire(*t, cls).ok());
    REQUIRE(rl->SetDefaultTenantRates({}).ok());
    REQUIRE(rl->SetTenantRates("t", {}).ok());
    CHECK(rl->TryAcquire(*t, cls).ok());
  }
}

TEST_CASE("Limiter: a removed tenant's permits stay valid and release safely", "[limiter]") {
  LimiterOptions options;
  options.default_tenant_limits = {{"llm", 1}};
  options.global_limits = {{"llm", 1}};
  auto limiter = MakeLimiter(options);
  const LimitClass llm = ClassOf(*limiter, "llm");
  std::shared_ptr<LimiterTenant> tenant = limiter->AddTenant("gone");
  CHECK(limiter->AddTenant("gone") == tenant);  // idempotent
  absl::StatusOr<Permit> permit = limiter->TryAcquire(*tenant, llm);
  REQUIRE(permit.ok());

  CHECK(limiter->RemoveTenant("gone"));
  CHECK_FALSE(limiter->RemoveTenant("gone"));
  CHECK(limiter->GetTenant("gone") == nullptr);
  absl::StatusOr<Permit> refused = limiter->TryAcquire(*tenant, llm);
  CHECK(absl::IsNotFound(refused.status()));
  CHECK(GetErrorReason(refused.status()) == ErrorReason::kTenantDeleted);
  tenant.reset();  // the last handle goes; the permit keeps the state alive

  // A new tenant of the same id starts afresh, but the global slot is still
  // held by the old permit.
  std::shared_ptr<LimiterTenant> again = limiter->AddTenant("gone");
  CHECK(again != nullptr);
  CHECK(limiter->TenantCounters(*again, llm).admitted == 0);
  CHECK(GetLimitRejection(limiter->TryAcquire(*again, llm).status())->tier == LimitTier::kGlobal);
  permit->Release();  // into the removed tenant's semaphores (ASan watches)
  CHECK(limiter->TryAcquire(*again, llm).ok());
  CHECK(limiter->GlobalCounters(llm).in_use == 0);

  // The next removal frees the old state, now unreachable; a permit of the
  // removed "other" still held across that sweep must keep "other" alive.
  limiter->AddTenant("other");
  absl::StatusOr<Permit> other = limiter->TryAcquire("other", "llm");
  REQUIRE(other.ok());
  CHECK(limiter->RemoveTenant("other"));
  CHECK(limiter->RemoveTenant("again") == false);
  CHECK(limiter->RemoveTenant("gone"));
  other->Release();
  CHECK(limiter->GlobalCounters(llm).in_use == 0);
}

TEST_CASE(
    "Limiter: a permit is given back exactly once, also through moves "
    "and exceptions",
    "[limiter]") {
  LimiterOptions options;
  options.default_tenant_limits = {{"ocr", 2}};
  auto limiter = MakeLimiter(options);
  auto tenant = limiter->AddTenant("a");
  const LimitClass ocr = ClassOf(*limiter, "ocr");
  auto in_use = [&] { return limiter->TenantCounters(*tenant, ocr).in_use; };

  try {
    absl::StatusOr<Permit> p = limiter->TryAcquire(*tenant, ocr);
    REQUIRE(p.ok());
    CHECK(in_use() == 1);
    throw std::runtime_error("handler failed");
  } catch (const std::runtime_error&) {
  }
  CHECK(in_use() == 0);

  absl::StatusOr<Permit> p = limiter->TryAcquire(*tenant, ocr);
  REQUIRE(p.ok());
  Permit moved(std::move(*p));
  CHECK_FALSE(p->held());
  CHECK(moved.held());
  p->Release();  // nothing to release
  CHECK(in_use() == 1);
  Permit assigned;
  assigned = std::move(moved);
  CHECK(in_use() == 1);
  absl::StatusOr<Permit> other = limiter->TryAcquire(*tenant, ocr);
  REQUIRE(other.ok());
  CHECK(in_use() == 2);
  assigned = std::move(*other);  // releases the first, keeps the second
  CHECK(in_use() == 1);
  assigned.Release();
  assigned.Release();
  CHECK(in_use() == 0);
}

TEST_CASE(
    "Limiter: counters report in use, waiting, admitted, rejected and "
    "wait time",
    "[limiter]") {
  LimiterOptions options;
  options.default_tenant_limits = {{"llm", 1}, {"llm/student", 1}};
  options.global_limits = {{"llm", 5}};
  auto limiter = MakeLimiter(options);
  auto a = limiter->AddTenant("a");
  const LimitClass llm = ClassOf(*limiter, "llm");
  const LimitClass student = ClassOf(*limiter, "llm/student");

  absl::StatusOr<Permit> held = limiter->TryAcquire(*a, student);
  REQUIRE(held.ok());
  CHECK_FALSE(limiter->TryAcquire(*a, llm).ok());
  std::thread waiter([&] {
    absl::StatusOr<Permit> p = limiter->Acquire(*a, llm, FarDeadline());
    CHECK(p.ok());
  });
  REQUIRE(Eventually([&] { return limiter->TenantCounters(*a, llm).waiting == 1; }));
  LimiterCounters parent = limiter->TenantCounters(*a, llm);
  CHECK(parent.in_use == 1);  // held through the child
  CHECK(parent.limit == 1);
  CHECK(parent.rejected_concurrency == 1);
  CHECK(parent.admitted == 0);
  std::this_thread::sleep_for(milliseconds(5));  // time passes for the waiter
  held->Release();
  waiter.join();

  parent = limiter->TenantCounters(*a, llm);
  CHECK(parent.waiting == 0);
  CHECK(parent.admitted == 1);
  CHECK(parent.total_wait >= milliseconds(5));
  const LimiterCounters child = limiter->TenantCounters(*a, student);
  CHECK(child.admitted == 1);
  CHECK(child.in_use == 0);

  const std::vector<LimiterCounters> rows = limiter->Snapshot();
  // (a, llm), (a, llm/student), then global llm and llm/student.
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].tier == LimitTier::kTenant);
  CHECK(rows[0].tenant_id == "a");
  CHECK(rows[0].class_name == "llm");
  CHECK(rows[0].admitted == 1);
  CHECK(rows[1].class_name == "llm/student");
  CHECK(rows[2].tier == LimitTier::kGlobal);
  CHECK(rows[2].class_name == "llm");
  CHECK(rows[2].limit == 5);
  CHECK(rows[3].class_name == "llm/student");
  CHECK_FALSE(rows[3].limit.has_value());

  // A tenant that never used a class reports zeros and its effective limit.
  auto fresh = limiter->AddTenant("fresh");
  const LimiterCounters none = limiter->TenantCounters(*fresh, student);
  CHECK(none.admitted == 0);
  CHECK(none.limit == 1);
}

TEST_CASE("Limiter: bad class names, limits and rates are INVALID_ARGUMENT", "[limiter]") {
  auto limiter = MakeLimiter(LimiterOptions());
  for (std::string_view bad : {"", "/", "llm/", "/llm", "llm//student", "llm student", "llm\n",
                               "a/b/c/d/e/f/g/h/i", "é"}) {
    INFO(bad);
    CHECK(absl::IsInvalidArgument(limiter->Class(bad).status()));
  }
  CHECK(absl::IsInvalidArgument(limiter->Class(std::string(256, 'a')).status()));
  absl::StatusOr<LimitClass> deep = limiter->Class("a/b/c/d/e/f/g/h");
  REQUIRE(deep.ok());
  CHECK(deep->name() == "a/b/c/d/e/f/g/h");
  absl::StatusOr<LimitClass> again = limiter->Class("llm/student_v2.x-y");
  REQUIRE(again.ok());
  CHECK(limiter->Class("llm/student_v2.x-y")->name() == again->name());

  CHECK(absl::IsInvalidArgument(limiter->SetGlobalLimits({{"llm", -1}})));
  CHECK(absl::IsInvalidArgument(limiter->SetGlobalLimits({{"", 1}})));
  CHECK(absl::IsInvalidArgument(limiter->SetDefaultTenantLimits({{"a b", 1}})));
  CHECK(absl::IsInvalidArgument(limiter->SetGlobalRates({{"llm", {0, 1}}})));
  CHECK(absl::IsInvalidArgument(limiter->SetGlobalRates({{"llm", {1, 0.5}}})));
  CHECK(absl::IsInvalidArgument(limiter->SetDefaultTenantRates({{"llm", {std::nan(""), 1}}})));
  CHECK(limiter->SetGlobalRates({{std::string(kAllClasses), {5, 5}}}).ok());

  LimiterOptions bad;
  bad.default_tenant_limits = {{"llm//x", 1}};
  CHECK(absl::IsInvalidArgument(Limiter::Create(bad).status()));
  LimiterOptions bad_rate;
  bad_rate.global_rates = {{"llm", {-1, 1}}};
  CHECK(absl::IsInvalidArgument(Limiter::Create(bad_rate).status()));
}

}  // namespace
}  // namespace tenancy
