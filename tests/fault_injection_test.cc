// The engine under storage faults (tests/fault_injection_fs.h): failed
// writes are refused as UNAVAILABLE and give their usage back, nothing
// that was not durable is acknowledged, RocksDB's background error state is
// reported (Engine::Health, one log line, tenancy_engine_degraded) and left
// through DB::Resume (after a failed flush) or a reopen (after a failed
// WAL), with every acknowledged write present and usage equal to a
// recount.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine_fixture.h"
#include "fault_injection_fs.h"
#include "tenancy/metrics.h"
#include "tenancy/status.h"

namespace tenancy::testing {
namespace {

using std::chrono::milliseconds;

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

struct FaultFixture {
  TempDir dir;
  std::shared_ptr<RecordingLogger> logger = std::make_shared<RecordingLogger>();
  std::shared_ptr<FaultInjectingFileSystem> fs = std::make_shared<FaultInjectingFileSystem>();
  bool sync_writes = false;
  std::unique_ptr<Engine> engine;

  explicit FaultFixture(bool sync = false) : sync_writes(sync) { Reopen(); }

  EngineOptions Options() const {
    EngineOptions options;
    options.path = (dir.path() / "db").string();
    options.logger = logger;
    options.keep_mutex_deadlock_detection = true;
    options.memtable_budget_bytes = 64 << 20;
    options.block_cache_bytes = 16 << 20;
    options.sync_writes = sync_writes;
    options.file_system = fs;
    options.storage_resume_interval = milliseconds(50);
    return options;
  }
  void Reopen() {
    engine.reset();
    auto opened = Engine::Open(Options());
    if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
    engine = std::move(*opened);
  }
  Tenant Create(const std::string& id, Placement placement = Placement::kShared) {
    TenantSpec spec;
    spec.id = id;
    spec.placement = placement;
    auto info = engine->registry().Create(spec);
    if (!info.ok()) throw std::runtime_error(info.status().ToString());
    return *engine->GetTenant(id);
  }
  Tenant Get(const std::string& id) { return *engine->GetTenant(id); }
  size_t LogLines(std::string_view part) const {
    size_t n = 0;
    for (const std::string& m : logger->Messages()) n += Contains(m, part);
    return n;
  }
  std::string Metrics() const {
    tenancy::Metrics metrics;
    CollectorHandle handle =
        metrics.AddCollector([&](MetricSink& sink) { engine->CollectMetrics(sink); });
    return metrics.ExpositionText();
  }
};

bool IsStorageUnavailable(const absl::Status& s) {
  return absl::IsUnavailable(s) && GetErrorReason(s) == ErrorReason::kStorageUnavailable &&
         GetRetryAfter(s).has_value();
}

// Usage as recorded equals a fresh count of the data.
void CheckRecount(const Tenant& tenant) {
  auto recount = tenant.kv().Recount(/*repair=*/false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
  CHECK(recount->counted == tenant.usage());
}

}  // namespace

TEST_CASE("fault injection: a WAL append that fails is refused and usage is given back",
          "[fault]") {
  const Fault fault = GENERATE(Fault::kNoSpace, Fault::kIoError);
  const std::string cause = fault == Fault::kNoSpace ? "injected ENOSPC" : "injected EIO";
  FaultFixture f;
  Usage before;
  {  // Handles of this engine die before it is reopened.
    Tenant acme = f.Create("acme");
    REQUIRE(acme.kv().Put("k1", "v1").ok());
    before = acme.usage();

    f.fs->Inject(kWrite, kWal, fault);
    absl::Status put = acme.kv().Put("k2", "value-2");
    INFO(put.ToString());
    CHECK(IsStorageUnavailable(put));
    CHECK(Contains(std::string(put.message()), cause));
    CHECK(Contains(std::string(put.message()), "degraded"));
    // The reservation was given back.
    CHECK(acme.usage() == before);
    // RocksDB stops writes after a failed WAL write: the engine is degraded.
    EngineHealth health = f.engine->Health();
    CHECK_FALSE(health.ok);
    CHECK(Contains(health.reason, "write"));
    CHECK(Contains(health.reason, cause));
    CHECK(Contains(health.summary, "restart to recover"));
    CHECK(Contains(f.Metrics(), "tenancy_engine_degraded 1"));
    // Reads keep working.
    auto v1 = acme.kv().Get("k1");
    REQUIRE(v1.ok());
    CHECK(*v1 == "v1");
    // A delete (which shrinks usage) is refused the same way.
    CHECK(IsStorageUnavailable(acme.kv().Delete("k1")));
    CHECK(acme.usage() == before);

    // RocksDB 7.8 cannot write to a WAL that failed, even after DB::Resume():
    // the engine refuses to resume and stays degraded, whatever the writes.
    f.fs->Clear();
    absl::Status resumed = f.engine->Resume();
    INFO(resumed.ToString());
    CHECK(IsStorageUnavailable(resumed));
    CHECK(Contains(std::string(resumed.message()), "reopening"));
    std::this_thread::sleep_for(milliseconds(60));
    CHECK(IsStorageUnavailable(acme.kv().Put("k3", "v3")));
    CHECK_FALSE(f.engine->Health().ok);
    CHECK(acme.usage() == before);
    CHECK(f.LogLines("engine: degraded") == 1);
  }
  // A reopen recovers: every acknowledged write, nothing refused, usage
  // equal to a recount, writes accepted.
  f.Reopen();
  CHECK(f.engine->Health().ok);
  Tenant reopened = f.Get("acme");
  CHECK(reopened.usage() == before);
  CHECK(reopened.kv().Get("k1").ok());
  CHECK(absl::IsNotFound(reopened.kv().Get("k2").status()));
  CHECK(absl::IsNotFound(reopened.kv().Get("k3").status()));
  CheckRecount(reopened);
  REQUIRE(reopened.kv().Put("k4", "v4").ok());
  CheckRecount(reopened);
}

TEST_CASE("fault injection: with sync_writes a failed WAL sync is not acknowledged", "[fault]") {
  FaultFixture f(/*sync=*/true);
  {  // Handles of this engine die before it is reopened.
    Tenant acme = f.Create("acme");
    REQUIRE(acme.kv().Put("k1", "v1").ok());
    const Usage before = acme.usage();

    f.fs->Inject(kSync, kWal, Fault::kIoError);
    absl::Status put = acme.kv().Put("k2", "value-2");
    INFO(put.ToString());
    CHECK(IsStorageUnavailable(put));
    CHECK(Contains(std::string(put.message()), "injected EIO"));
    CHECK(acme.usage() == before);
    CHECK_FALSE(f.engine->Health().ok);
    // Not in the memtable: RocksDB inserts only after the WAL write succeeded.
    CHECK(absl::IsNotFound(acme.kv().Get("k2").status()));

    f.fs->Clear();
  }
  f.Reopen();
  Tenant reopened = f.Get("acme");
  CHECK(reopened.kv().Get("k1").ok());
  // The record whose sync failed had been appended: its bytes are in the
  // WAL file, as they would be in the page cache after a real failed fsync.
  // RocksDB promises nothing about a write that returned an error, and WAL
  // recovery at reopen replays what the file holds. What the engine
  // promises: it was never acknowledged, and usage matches the data
  // whichever way it went, since the usage delta is in the same batch.
  auto k2 = reopened.kv().Get("k2");
  INFO("k2 after reopen: " << (k2.ok() ? "present" : k2.status().ToString()));
  CHECK((k2.ok() || absl::IsNotFound(k2.status())));
  CheckRecount(reopened);
  REQUIRE(reopened.kv().Put("k4", "v4").ok());
  CheckRecount(reopened);
}

TEST_CASE("fault injection: a failed flush degrades the engine until it resumes or reopens",
          "[fault]") {
  // SST appends full (ENOSPC), SST creation failing, SST sync failing (EIO).
  const int which = GENERATE(0, 1, 2);
  const bool resumable = which == 0;
  FaultFixture f;
  {  // Handles of this engine die before it is reopened.
    Tenant shared = f.Create("acme");
    Tenant dedicated = f.Create("solo", Placement::kDedicated);
    for (int i = 0; i < 50; ++i) {
      REQUIRE(shared.kv().Put("a" + std::to_string(i), std::string(100, 'x')).ok());
      REQUIRE(dedicated.kv().Put("b" + std::to_string(i), std::string(100, 'y')).ok());
    }
    const Usage shared_before = shared.usage();
    const Usage dedicated_before = dedicated.usage();

    if (which == 0) f.fs->Inject(kWrite, kSst, Fault::kNoSpace);
    if (which == 1) f.fs->Inject(kCreate, kSst, Fault::kIoError);
    if (which == 2) f.fs->Inject(kSync, kSst, Fault::kIoError);
    absl::Status flushed = f.engine->Flush();
    INFO(flushed.ToString());
    CHECK_FALSE(flushed.ok());
    EngineHealth health = f.engine->Health();
    CHECK_FALSE(health.ok);
    CHECK(Contains(health.reason, "flush"));
    CHECK(Contains(f.Metrics(), "tenancy_engine_degraded 1"));

    // Reads work; writes are refused, naming the state; usage is unchanged.
    for (int i = 0; i < 50; i += 7) {
      CHECK(shared.kv().Get("a" + std::to_string(i)).ok());
      CHECK(dedicated.kv().Get("b" + std::to_string(i)).ok());
    }
    absl::Status put = shared.kv().Put("new", "value");
    INFO(put.ToString());
    CHECK(IsStorageUnavailable(put));
    CHECK(Contains(std::string(put.message()), "degraded"));
    CHECK(Contains(std::string(put.message()), "flush"));
    CHECK(IsStorageUnavailable(dedicated.kv().Put("new", "value")));
    CHECK(shared.usage() == shared_before);
    CHECK(dedicated.usage() == dedicated_before);
    // Resuming while the fault persists fails and stays degraded.
    absl::Status resumed = f.engine->Resume();
    INFO(resumed.ToString());
    CHECK(IsStorageUnavailable(resumed));
    CHECK_FALSE(f.engine->Health().ok);
    // One log line per episode, however many writes and resumes fail.
    CHECK(f.LogLines("engine: degraded") == 1);

    f.fs->Clear();
    if (resumable) {
      // The fault clears: the next write after storage_resume_interval
      // resumes.
      std::this_thread::sleep_for(milliseconds(60));
      absl::Status after = shared.kv().Put("new", "value");
      INFO(after.ToString());
      CHECK(after.ok());
      CHECK(f.engine->Health().ok);
      CHECK(Contains(f.Metrics(), "tenancy_engine_degraded 0"));
      CHECK(f.LogLines("writes accepted again") == 1);
      REQUIRE(dedicated.kv().Put("new", "value").ok());
      REQUIRE(f.engine->Flush().ok());
    } else {
      // RocksDB 7.8 rates an EIO in a flush fatal: DB::Resume() refuses it
      // even after the fault cleared, and the engine says so.
      CHECK(Contains(f.engine->Health().summary, "restart to recover"));
      std::this_thread::sleep_for(milliseconds(60));
      CHECK(IsStorageUnavailable(shared.kv().Put("new", "value")));
      CHECK(IsStorageUnavailable(f.engine->Resume()));
      CHECK_FALSE(f.engine->Health().ok);
    }
    for (int i = 0; i < 50; ++i) {
      CHECK(shared.kv().Get("a" + std::to_string(i)).ok());
      CHECK(dedicated.kv().Get("b" + std::to_string(i)).ok());
    }
    CheckRecount(shared);
    CheckRecount(dedicated);
    CHECK(f.fs->injected() > 0);
  }
  // A reopen keeps every acknowledged write (in the WAL or in SST files),
  // usage equal to a recount, and takes writes.
  f.Reopen();
  CHECK(f.engine->Health().ok);
  for (const char* id : {"acme", "solo"}) {
    Tenant t = f.Get(id);
    if (!resumable) REQUIRE(t.kv().Put("new", "value").ok());
    CHECK(t.kv().Get("new").ok());
    CHECK(t.kv().Get(std::string(id) == "acme" ? "a49" : "b49").ok());
    CheckRecount(t);
  }
}

TEST_CASE("fault injection: writers racing a fault get an answer each, and usage matches the data",
          "[fault]") {
  FaultFixture f;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<std::vector<int>> acked(kThreads);
  std::atomic<int> unexpected{0};  // failures other than kStorageUnavailable
  size_t total = 0;
  {  // Handles of this engine die before it is reopened.
    Tenant acme = f.Create("acme");
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
          absl::Status s = acme.kv().Put(key, std::string(64, 'v'));
          if (s.ok()) {
            acked[t].push_back(i);
          } else if (!IsStorageUnavailable(s)) {
            unexpected.fetch_add(1);
          }
        }
      });
    }
    // The WAL fails while the writers run; each gets an answer, success or
    // UNAVAILABLE, and only the successes count.
    std::this_thread::sleep_for(milliseconds(10));
    f.fs->Inject(kWrite, kWal, Fault::kIoError);
    for (std::thread& w : writers) w.join();
    f.fs->Clear();
    CHECK(unexpected.load() == 0);
    for (int t = 0; t < kThreads; ++t) {
      for (int i : acked[t]) {
        CHECK(acme.kv().Get("t" + std::to_string(t) + "-" + std::to_string(i)).ok());
      }
      total += acked[t].size();
    }
    CheckRecount(acme);
  }
  // A failed WAL needs a reopen (see the first test).
  f.Reopen();
  Tenant reopened = f.Get("acme");
  for (int t = 0; t < kThreads; ++t) {
    for (int i : acked[t]) {
      CHECK(reopened.kv().Get("t" + std::to_string(t) + "-" + std::to_string(i)).ok());
    }
  }
  CheckRecount(reopened);
  CHECK(reopened.usage().keys == total);
}

TEST_CASE("fault injection: a failed read is an error for that read only", "[fault]") {
  FaultFixture f;
  {
    Tenant acme = f.Create("acme");
    REQUIRE(acme.kv().Put("k", "v").ok());
    REQUIRE(f.engine->Flush().ok());
  }
  f.Reopen();  // an empty block cache: the read below goes to the file
  Tenant reopened = f.Get("acme");
  f.fs->Inject(kRead, kSst, Fault::kIoError);
  auto got = reopened.kv().Get("k");
  INFO(got.status().ToString());
  CHECK_FALSE(got.ok());
  CHECK(f.engine->Health().ok);
  CHECK(reopened.kv().Put("k2", "v2").ok());
  f.fs->Clear();
  auto again = reopened.kv().Get("k");
  REQUIRE(again.ok());
  CHECK(*again == "v");
}

}  // namespace tenancy::testing
