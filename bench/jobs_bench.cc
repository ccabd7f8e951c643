// jobs_bench: what a durable job costs, as a ratio to raw RocksDB writes of
// the same payload measured in the same process.
//
// Figure (target from issue 6):
//   job_cycle_vs_raw_put_delete  <= 3x  JobQueue Enqueue + Claim + Ack of a
//                                       100-byte job, against a raw RocksDB
//                                       Put + Delete of a 100-byte value
// Both sides write the WAL without sync, one thread, wall time. The raw
// database is opened with the engine's table options (bloom filter, block
// cache, memtable budget) in a directory of its own.
// Info (no target): Enqueue alone against one raw Put.
//
// Run: cmake --build <dir> --target jobs_bench && <dir>/bench/jobs_bench
// (RelWithDebInfo or Release). Exit status 0 when the targeted figure passes.

#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "median_reporter.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "tenancy/engine.h"
#include "tenancy/jobs.h"
#include "tenancy/tenant_registry.h"

namespace tenancy {
namespace {

constexpr size_t kPayloadBytes = 100;
constexpr double kTargetRatio = 3.0;
constexpr int kRepetitions = 7;

std::string TempDir(const char* name) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / (std::string(name) + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) std::abort();
  return pattern;
}

struct Fixture {
  std::string engine_dir = TempDir("jobs-bench-engine");
  std::string raw_dir = TempDir("jobs-bench-raw");
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Tenant> tenant;
  std::unique_ptr<rocksdb::DB> raw;
  const std::string payload = std::string(kPayloadBytes, 'j');

  Fixture() {
    EngineOptions options;
    options.path = engine_dir;
    options.logger = NewNullLogger();
    auto opened = Engine::Open(options);
    if (!opened.ok()) Die(opened.status().ToString());
    engine = std::move(*opened);
    TenantSpec spec;
    spec.id = "bench";
    if (!engine->registry().Create(spec).ok()) Die("create tenant");
    tenant = std::make_unique<Tenant>(*engine->GetTenant("bench"));

    // The same table and memory settings as the engine's data families.
    rocksdb::Options raw_options;
    raw_options.create_if_missing = true;
    raw_options.max_background_jobs = options.background_jobs;
    raw_options.write_buffer_manager =
        std::make_shared<rocksdb::WriteBufferManager>(options.memtable_budget_bytes);
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.cache_index_and_filter_blocks = true;
    raw_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    raw_options.memtable_whole_key_filtering = true;
    raw_options.memtable_prefix_bloom_size_ratio = 0.02;
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(raw_options, raw_dir, &db);
    if (!s.ok()) Die(s.ToString());
    raw.reset(db);
  }

  ~Fixture() {
    tenant.reset();
    engine.reset();
    raw.reset();
    std::error_code ignored;
    std::filesystem::remove_all(engine_dir, ignored);
    std::filesystem::remove_all(raw_dir, ignored);
  }

  [[noreturn]] static void Die(const std::string& why) {
    std::fprintf(stderr, "jobs_bench: %s\n", why.c_str());
    std::exit(2);
  }
};

Fixture& F() {
  static Fixture* fixture = new Fixture();
  return *fixture;
}

// The engine's data writes (WAL on, no sync).
rocksdb::WriteOptions RawWriteOptions() {
  rocksdb::WriteOptions options;
  options.sync = false;
  return options;
}

void BM_JobCycle(benchmark::State& state) {
  JobQueue jobs = F().tenant->jobs();
  JobSpec spec;
  spec.type = "bench";
  spec.payload = F().payload;
  ClaimOptions claim;
  claim.type = "bench";
  for (auto _ : state) {
    auto id = jobs.Enqueue(spec);
    auto job = jobs.Claim(claim);
    if (!id.ok() || !job.ok() || !job->has_value()) {
      state.SkipWithError("enqueue or claim failed");
      break;
    }
    absl::Status acked = jobs.Ack((*job)->id, (*job)->lease);
    if (!acked.ok()) {
      state.SkipWithError("ack failed");
      break;
    }
  }
}

void BM_RawPutDelete(benchmark::State& state) {
  rocksdb::DB* db = F().raw.get();
  const rocksdb::WriteOptions options = RawWriteOptions();
  uint64_t i = 0;
  char key[32];
  for (auto _ : state) {
    int n = std::snprintf(key, sizeof(key), "job-%016llx", static_cast<unsigned long long>(i++));
    rocksdb::Slice k(key, static_cast<size_t>(n));
    rocksdb::Status put = db->Put(options, k, F().payload);
    rocksdb::Status del = db->Delete(options, k);
    if (!put.ok() || !del.ok()) {
      state.SkipWithError("raw write failed");
      break;
    }
  }
}

void BM_Enqueue(benchmark::State& state) {
  JobQueue jobs = F().tenant->jobs();
  JobSpec spec;
  spec.type = "enqueue-only";
  spec.payload = F().payload;
  for (auto _ : state) {
    if (!jobs.Enqueue(spec).ok()) {
      state.SkipWithError("enqueue failed");
      break;
    }
  }
}

void BM_RawPut(benchmark::State& state) {
  rocksdb::DB* db = F().raw.get();
  const rocksdb::WriteOptions options = RawWriteOptions();
  uint64_t i = 0;
  char key[32];
  for (auto _ : state) {
    int n = std::snprintf(key, sizeof(key), "put-%016llx", static_cast<unsigned long long>(i++));
    if (!db->Put(options, rocksdb::Slice(key, static_cast<size_t>(n)), F().payload).ok()) {
      state.SkipWithError("raw put failed");
      break;
    }
  }
}

// Wall time: both sides make system calls (the WAL write), which CPU time of
// the thread would hide unevenly.
BENCHMARK(BM_JobCycle)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)->UseRealTime();
BENCHMARK(BM_RawPutDelete)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)->UseRealTime();
BENCHMARK(BM_Enqueue)->Repetitions(3)->ReportAggregatesOnly(true)->UseRealTime();
BENCHMARK(BM_RawPut)->Repetitions(3)->ReportAggregatesOnly(true)->UseRealTime();

// One figure line: figure | measured | baseline | ratio | target | verdict.
bool PrintFigure(const char* figure, double measured, double baseline, double target) {
  const double ratio = measured / baseline;
  const bool pass = measured > 0 && baseline > 0 && (target <= 0 || ratio <= target);
  char target_text[32] = "info";
  if (target > 0) std::snprintf(target_text, sizeof(target_text), "<= %.2fx", target);
  std::printf("%-34s | %9.0f ns | %9.0f ns | %6.2fx | %-9s | %s\n", figure, measured, baseline,
              ratio, target_text, target <= 0 ? "-" : (pass ? "PASS" : "FAIL"));
  return pass;
}

}  // namespace
}  // namespace tenancy

int main(int argc, char** argv) {
  // Interleave repetitions so that machine noise falls on both sides alike.
  // A flag given on the command line comes later and wins.
  std::vector<char*> args(argv, argv + argc);
  char interleave[] = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave);
  argc = static_cast<int>(args.size());
  argv = args.data();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  tenancy::bench::MedianReporter reporter(tenancy::bench::MedianReporter::Time::kReal);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\n%-34s | %12s | %12s | %7s | %-9s | %s\n", "figure", "measured", "baseline",
              "ratio", "target", "verdict");
  bool pass = tenancy::PrintFigure("job_cycle_vs_raw_put_delete", reporter.Median("BM_JobCycle"),
                                   reporter.Median("BM_RawPutDelete"), tenancy::kTargetRatio);
  tenancy::PrintFigure("enqueue_vs_raw_put", reporter.Median("BM_Enqueue"),
                       reporter.Median("BM_RawPut"), 0);
  delete &tenancy::F();
  return pass ? 0 : 1;
}
