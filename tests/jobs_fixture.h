// An Engine in a temporary directory whose job clock the test moves by hand,
// for the JobQueue and JobWorkers tests.

#ifndef TENANCY_TESTS_JOBS_FIXTURE_H_
#define TENANCY_TESTS_JOBS_FIXTURE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine_fixture.h"
#include "tenancy/engine.h"
#include "tenancy/jobs.h"
#include "tenancy/tenant_registry.h"

namespace tenancy::testing {

// A job clock that only moves when told to, or by `tick` on every reading
// (so readings are strictly ordered). Starts at 2024-01-01 UTC.
class FakeClock {
 public:
  absl::Time Now() const { return absl::FromUnixMicros(us_.fetch_add(tick_us_.load())); }
  void Advance(absl::Duration d) { us_.fetch_add(absl::ToInt64Microseconds(d)); }
  void set_tick(absl::Duration tick) { tick_us_.store(absl::ToInt64Microseconds(tick)); }

 private:
  mutable std::atomic<int64_t> us_{int64_t{1704067200} * 1000000};
  std::atomic<int64_t> tick_us_{0};
};

struct JobsFixture {
  TempDir dir;
  std::shared_ptr<RecordingLogger> logger = std::make_shared<RecordingLogger>();
  std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
  // Tests may change these before Reopen(). Job times follow `clock` when
  // use_fake_clock, else the real time.
  JobQueueOptions jobs_options;
  bool use_fake_clock = true;
  // Claims that started to wait (JobQueueOptions::on_claim_wait), for tests
  // that need a claim to be waiting before they act.
  std::shared_ptr<std::atomic<int>> claim_waits = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<Engine> engine;

  explicit JobsFixture(bool fake_clock = true) : use_fake_clock(fake_clock) { Reopen(); }

  EngineOptions Options() const {
    EngineOptions options;
    options.path = (dir.path() / "db").string();
    options.logger = logger;
    options.memtable_budget_bytes = 64 << 20;
    options.block_cache_bytes = 16 << 20;
    options.jobs = jobs_options;
    std::shared_ptr<std::atomic<int>> waits = claim_waits;
    options.jobs.on_claim_wait = [waits](std::string_view) { waits->fetch_add(1); };
    if (use_fake_clock) {
      std::shared_ptr<FakeClock> c = clock;
      options.jobs.clock = [c] { return c->Now(); };
    }
    return options;
  }

  void Reopen() {
    engine.reset();
    auto opened = Engine::Open(Options());
    if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
    engine = std::move(*opened);
  }

  TenantRegistry& registry() { return engine->registry(); }

  Tenant Create(const std::string& id, Quota quota = {}) {
    TenantSpec spec;
    spec.id = id;
    spec.quota = quota;
    auto info = registry().Create(spec);
    if (!info.ok()) throw std::runtime_error(info.status().ToString());
    return *engine->GetTenant(id);
  }

  Tenant Get(const std::string& id) { return *engine->GetTenant(id); }
};

// Waits (real time, polling) until `done` holds or `timeout` passes; returns
// whether it holds. For conditions another thread brings about.
inline bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(60)) {
  absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_JOBS_FIXTURE_H_
