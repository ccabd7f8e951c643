// core_bench: the core's figures (issue 2; targets in bench/README.md), measured
// against raw RocksDB in the same process.
//
//   tenant Get     <= 1.10x a raw RocksDB Get of the same data
//   tenant Put     <= 1.00x the design floor: raw RocksDB doing what exact
//                  accounting needs (WAL on, no sync; the floor over a raw
//                  Put is printed as an info line)
//   API key -> tenant resolution              < 200 ns
//   Engine::Open with 100,000 shared tenants  < 1 s
//   resident memory per idle shared tenant    < 1 KiB
//
// Get and Put: 100,000 keys of 16 bytes with 100-byte values, loaded into a
// tenant of an Engine and into a raw RocksDB configured like the engine's
// data column family (same block cache size, bloom filter, index/filter
// caching, memtable bloom, write buffer manager budget; WAL on, sync off,
// no_slowdown). The raw side does what a host without this library would:
// Get into a fresh std::string, Put of a prebuilt key. Reads are uniformly
// random over the keys, puts overwrite uniformly random keys of the same key
// space. Many short rounds alternate between the sides (rotating which goes
// first, each round on its own slice of the keys, the same slice on every
// side) and each side's figure is the median of its rounds, so drift and
// background flushes hit all sides alike. Reads are pooled over a few
// independently built pairs of databases, because where two databases'
// memtables and blocks land in memory moves a lookup by several percent.
// Times are the calling thread's CPU time (see ThreadCpuSeconds).
//
// Beside the raw Put, a third database measures the design floor of an exactly
// accounted put in raw RocksDB (read the old value, then a batch of the put and
// a ledger merge operand in a second column family): the tenant Put's baseline.
// The floor and the tenant Put over a raw Put are printed as an info line.
//
// Open time and memory: a registry of 100,000 shared tenants is created with
// CreateMany, closed, and reopened in fresh child processes (this binary with
// --child-open), each of which reports its Open time and resident set before
// and after Open. Memory per tenant is (RSS growth of that Open - RSS growth of
// an Open of an engine with no tenants) / 100,000, medians of a few children.
//
// Key resolution: one API key per tenant, resolved after a reopen, over 1,000
// hot keys and uniformly over all 100,000 (see MeasureTenants).
//
// Data lives under $TENANCY_BENCH_DIR, else /dev/shm (tmpfs: creating the
// registry is thousands of synced writes, which the figures do not include),
// else the system temp directory; it is removed at exit.
//
// Usage: core_bench [--quick] [--only kv|tenants]. Build in Release (bench/run
// does). Prints one line per figure:
//   figure | measured | baseline | ratio | target | PASS/FAIL
// Exit status 0 when every figure passes.

#include <benchmark/benchmark.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "bench_util.h"
#include "raw_rocksdb.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenancy/tenant.h"
#include "tenancy/tenant_registry.h"

namespace tenancy {
namespace {

using bench::Check;
using bench::Clock;
using bench::Die;
using bench::Figure;
using bench::Fmt;
using bench::Median;
using bench::PrintFigures;
using bench::ScratchDir;
using bench::Seconds;
using bench::ThreadCpuSeconds;

constexpr size_t kNumKeys = 100'000;
constexpr size_t kKeyBytes = 16;
constexpr size_t kValueBytes = 100;
constexpr size_t kNumTenants = 100'000;
constexpr size_t kCreateChunk = 10'000;

// Rounds are short and many, alternating raw and tenant, so that whatever
// else the machine does lands on both sides alike.
struct Config {
  int rounds = 31;    // per side, per figure (and per pair)
  int get_pairs = 3;  // independently built pairs for Get
  size_t gets_per_round = 10'000;
  size_t puts_per_round = 4'000;
  int resolve_rounds = 15;
  size_t resolves_per_round = 200'000;
  int open_children = 5;
};

size_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) Die("cannot read /proc/self/statm");
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) Die("cannot parse /proc/self/statm");
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

TenantSpec MakeSpec(std::string id) {
  TenantSpec spec;
  spec.id = std::move(id);
  return spec;
}

// --- The data set ---

struct DataSet {
  std::vector<std::string> keys;  // kNumKeys keys of kKeyBytes
  std::string value_pool;         // values are kValueBytes windows of it
  // Key indexes for each round: round r of either side uses the r-th slice,
  // so raw and tenant read (or write) the same keys, and rounds differ.
  std::vector<uint32_t> get_order;
  std::vector<uint32_t> put_order;

  std::string_view Value(size_t i) const {
    size_t offset = (i * 7919) % (value_pool.size() - kValueBytes);
    return std::string_view(value_pool).substr(offset, kValueBytes);
  }
};

DataSet MakeDataSet(const Config& config) {
  DataSet data;
  std::mt19937_64 rng(20240601);
  data.keys.reserve(kNumKeys);
  char buf[32];
  for (size_t i = 0; i < kNumKeys; ++i) {
    std::snprintf(buf, sizeof(buf), "user%012zu", i);
    data.keys.emplace_back(buf, kKeyBytes);
  }
  std::uniform_int_distribution<int> byte('!', '~');
  data.value_pool.resize(1 << 16);
  for (char& c : data.value_pool) c = static_cast<char>(byte(rng));
  std::uniform_int_distribution<uint32_t> index(0, kNumKeys - 1);
  data.get_order.resize(config.gets_per_round * (config.rounds + 1));
  for (uint32_t& i : data.get_order) i = index(rng);
  data.put_order.resize(config.puts_per_round * (config.rounds + 1));
  for (uint32_t& i : data.put_order) i = index(rng);
  return data;
}

// --- The raw RocksDB baselines, configured like the engine's data family ---

// Adds usage operands, two little-endian int64 (bytes, keys), like the
// engine's ledger (lib/meta_records.cc).
class LedgerAdd : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& key, const rocksdb::Slice* existing,
             const rocksdb::Slice& operand, std::string* merged,
             rocksdb::Logger* logger) const override {
    int64_t sum[2] = {0, 0}, add[2];
    if (existing != nullptr && existing->size() == sizeof(sum)) {
      std::memcpy(sum, existing->data(), sizeof(sum));
    }
    if (operand.size() != sizeof(add)) return false;
    std::memcpy(add, operand.data(), sizeof(add));
    sum[0] += add[0];
    sum[1] += add[1];
    merged->assign(reinterpret_cast<const char*>(sum), sizeof(sum));
    return true;
  }
  const char* Name() const override { return "core_bench.LedgerAdd"; }
};

class RawDb {
 public:
  // With `ledger`, the database also has a "ledger" column family with
  // LedgerAdd, for the design-floor baseline.
  RawDb(const std::string& path, const EngineOptions& engine, bool ledger) {
    const rocksdb::DBOptions db_options = bench::RawDbOptions(engine);
    const rocksdb::ColumnFamilyOptions data_options = bench::RawDataFamilyOptions(engine);
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, data_options}};
    if (ledger) {
      rocksdb::ColumnFamilyOptions ledger_options;
      ledger_options.table_factory = data_options.table_factory;
      ledger_options.merge_operator = std::make_shared<LedgerAdd>();
      families.emplace_back("ledger", ledger_options);
    }
    rocksdb::DB* db = nullptr;
    Check(rocksdb::DB::Open(db_options, path, families, &handles_, &db), "raw open");
    db_.reset(db);
    write_options_.sync = engine.sync_writes;
    write_options_.no_slowdown = engine.fail_writes_on_stall;
  }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  ~RawDb() {
    for (rocksdb::ColumnFamilyHandle* h : handles_) {
      db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    }
  }

  rocksdb::DB& db() { return *db_; }
  rocksdb::ColumnFamilyHandle* data() { return handles_[0]; }
  rocksdb::ColumnFamilyHandle* ledger() { return handles_.at(1); }
  const rocksdb::WriteOptions& write_options() const { return write_options_; }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::WriteOptions write_options_;
};

// --- The table ---

// Runs rounds of every function in `sides` (each given the round number,
// returning ns/op), rotating which goes first; appends each side's samples.
void Alternate(int rounds, const std::vector<std::function<double(int)>>& sides,
               std::vector<std::vector<double>>& samples) {
  samples.resize(sides.size());
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < sides.size(); ++k) {
      size_t side = (k + static_cast<size_t>(r)) % sides.size();
      samples[side].push_back(sides[side](r));
    }
  }
}

// The r-th slice of `order`, `per_round` long.
std::pair<const uint32_t*, const uint32_t*> Slice(const std::vector<uint32_t>& order,
                                                  size_t per_round, int r) {
  const uint32_t* begin = order.data() + per_round * static_cast<size_t>(r);
  return {begin, begin + per_round};
}

// --- Get and Put against raw RocksDB ---

// One engine with its tenant, and the raw databases, loaded with `data`.
struct KvSetup {
  std::unique_ptr<Engine> engine;
  std::optional<KvStore> kv;
  std::unique_ptr<RawDb> raw;
  // The design floor of an exactly accounted put, in raw RocksDB: read the
  // old value, then one batch of the put and a ledger merge operand in a
  // second column family; no locks, no checks.
  std::unique_ptr<RawDb> floor;
};

KvSetup LoadKv(const ScratchDir& dir, int n, const DataSet& data) {
  EngineOptions options;
  options.path = dir.Sub(("kv-engine-" + std::to_string(n)).c_str());
  options.logger = NewNullLogger();
  KvSetup setup;
  auto engine = Engine::Open(options);
  Check(engine.status(), "engine open");
  setup.engine = *std::move(engine);
  Check(setup.engine->registry().Create(MakeSpec("bench")).status(), "create tenant");
  auto tenant = setup.engine->GetTenant("bench");
  Check(tenant.status(), "get tenant");
  setup.kv.emplace(tenant->kv());
  setup.raw =
      std::make_unique<RawDb>(dir.Sub(("kv-raw-" + std::to_string(n)).c_str()), options, false);
  setup.floor =
      std::make_unique<RawDb>(dir.Sub(("kv-floor-" + std::to_string(n)).c_str()), options, true);
  // The same data into all, in batches of 1,000.
  for (size_t start = 0; start < kNumKeys; start += 1000) {
    WriteBatch batch;
    rocksdb::WriteBatch raw_batch;
    for (size_t i = start; i < std::min(kNumKeys, start + 1000); ++i) {
      batch.Put(data.keys[i], data.Value(i));
      Check(raw_batch.Put(data.keys[i], rocksdb::Slice(data.Value(i).data(), kValueBytes)),
            "raw batch");
    }
    Check(setup.kv->Write(batch), "tenant load");
    Check(setup.raw->db().Write(setup.raw->write_options(), &raw_batch), "raw load");
    Check(setup.floor->db().Write(setup.floor->write_options(), &raw_batch), "floor load");
  }
  return setup;
}

void MeasureGetPut(const Config& config, const ScratchDir& dir, std::vector<Figure>& figures) {
  const DataSet data = MakeDataSet(config);
  KvSetup* setup = nullptr;  // the pair being measured

  const size_t gets = config.gets_per_round;
  auto raw_get = [&](int r) {
    auto [begin, end] = Slice(data.get_order, gets, r);
    rocksdb::DB& db = setup->raw->db();
    double start = ThreadCpuSeconds();
    for (const uint32_t* i = begin; i != end; ++i) {
      std::string value;
      rocksdb::Status s = db.Get(rocksdb::ReadOptions(), data.keys[*i], &value);
      if (!s.ok()) Die("raw get: " + s.ToString());
      benchmark::DoNotOptimize(value);
    }
    return (ThreadCpuSeconds() - start) * 1e9 / static_cast<double>(gets);
  };
  auto tenant_get = [&](int r) {
    auto [begin, end] = Slice(data.get_order, gets, r);
    const KvStore& kv = *setup->kv;
    double start = ThreadCpuSeconds();
    for (const uint32_t* i = begin; i != end; ++i) {
      absl::StatusOr<std::string> value = kv.Get(data.keys[*i]);
      if (!value.ok()) Die("tenant get: " + value.status().ToString());
      benchmark::DoNotOptimize(value);
    }
    return (ThreadCpuSeconds() - start) * 1e9 / static_cast<double>(gets);
  };
  auto add_ratio = [&](const char* name, const std::vector<double>& measured,
                       const std::vector<double>& baseline, double target) {
    double m = Median(measured), b = Median(baseline);
    figures.push_back({name, Fmt("%.0f ns", m), Fmt("%.0f ns", b), m / b, Fmt("<= %.2fx", target),
                       m / b <= target});
  };

  // Where the memtables and blocks of two databases happen to land in memory
  // moves a point lookup by several percent either way, so reads are measured
  // on a few independently built pairs and the rounds pooled. On each pair:
  // reads while the data is in the memtables (fresh writes), then from SST
  // files through the block cache (the steady state of a loaded store). A
  // warm-up round first, on the one slice the measured rounds do not use.
  std::vector<std::vector<double>> memtable, sst;
  std::vector<KvSetup> setups;
  for (int pair = 0; pair < config.get_pairs; ++pair) {
    setups.push_back(LoadKv(dir, pair, data));
    setup = &setups.back();
    raw_get(config.rounds);
    tenant_get(config.rounds);
    Alternate(config.rounds, {raw_get, tenant_get}, memtable);
    Check(setup->engine->Flush(), "engine flush");
    Check(setup->raw->db().Flush(rocksdb::FlushOptions()), "raw flush");
    Check(setup->floor->db().Flush(rocksdb::FlushOptions()), "floor flush");
    raw_get(config.rounds);
    tenant_get(config.rounds);
    Alternate(config.rounds, {raw_get, tenant_get}, sst);
    if (pair + 1 < config.get_pairs) setups.pop_back();  // keep the last
  }
  add_ratio("tenant Get vs raw Get (memtable)", memtable[1], memtable[0], 1.10);
  add_ratio("tenant Get vs raw Get (SST, block cache)", sst[1], sst[0], 1.10);

  const size_t puts = config.puts_per_round;
  auto value_for = [&](uint32_t i, int r) { return data.Value(i + static_cast<size_t>(r) + 1); };
  auto raw_put = [&](int r) {
    auto [begin, end] = Slice(data.put_order, puts, r);
    double start = ThreadCpuSeconds();
    for (const uint32_t* i = begin; i != end; ++i) {
      std::string_view v = value_for(*i, r);
      rocksdb::Status s = setup->raw->db().Put(setup->raw->write_options(), data.keys[*i],
                                               rocksdb::Slice(v.data(), v.size()));
      if (!s.ok()) Die("raw put: " + s.ToString());
    }
    return (ThreadCpuSeconds() - start) * 1e9 / static_cast<double>(puts);
  };
  auto floor_put = [&](int r) {
    auto [begin, end] = Slice(data.put_order, puts, r);
    RawDb& floor = *setup->floor;
    const std::string ledger_key = "U00000001";
    double start = ThreadCpuSeconds();
    for (const uint32_t* i = begin; i != end; ++i) {
      std::string_view v = value_for(*i, r);
      const std::string& key = data.keys[*i];
      int64_t delta[2] = {static_cast<int64_t>(key.size() + v.size()), 1};
      rocksdb::PinnableSlice old;
      rocksdb::Status s = floor.db().Get(rocksdb::ReadOptions(), floor.data(), key, &old);
      if (s.ok()) {
        delta[0] -= static_cast<int64_t>(key.size() + old.size());
        delta[1] = 0;
      } else if (!s.IsNotFound()) {
        Die("floor get: " + s.ToString());
      }
      old.Reset();
      rocksdb::WriteBatch batch;
      s = batch.Put(floor.data(), key, rocksdb::Slice(v.data(), v.size()));
      if (s.ok()) {
        s = batch.Merge(floor.ledger(), ledger_key,
                        rocksdb::Slice(reinterpret_cast<const char*>(delta), sizeof(delta)));
      }
      if (s.ok()) s = floor.db().Write(floor.write_options(), &batch);
      if (!s.ok()) Die("floor put: " + s.ToString());
    }
    return (ThreadCpuSeconds() - start) * 1e9 / static_cast<double>(puts);
  };
  auto tenant_put = [&](int r) {
    auto [begin, end] = Slice(data.put_order, puts, r);
    double start = ThreadCpuSeconds();
    for (const uint32_t* i = begin; i != end; ++i) {
      absl::Status s = setup->kv->Put(data.keys[*i], value_for(*i, r));
      if (!s.ok()) Die("tenant put: " + s.ToString());
    }
    return (ThreadCpuSeconds() - start) * 1e9 / static_cast<double>(puts);
  };
  raw_put(config.rounds);
  floor_put(config.rounds);
  tenant_put(config.rounds);
  std::vector<std::vector<double>> put;
  Alternate(config.rounds, {raw_put, floor_put, tenant_put}, put);
  // The figure is the tenant Put over the design floor: what exact accounting
  // costs (the floor over a raw Put) is the design's price, not the code's,
  // and is printed beside it.
  add_ratio("tenant Put (exact accounting) vs design floor", put[2], put[1], 1.00);
  const double raw_ns = Median(put[0]), floor_ns = Median(put[1]);
  std::printf(
      "info: design floor, raw Get + Put + ledger Merge: %.0f ns = %.2fx "
      "raw Put; tenant Put = %.2fx raw Put\n",
      floor_ns, floor_ns / raw_ns, Median(put[2]) / raw_ns);

  // The ledger must still be exact after all that (else the figure is moot).
  auto recount = setup->kv->Recount(/*repair=*/false);
  Check(recount.status(), "recount");
  if (!(recount->counted == recount->recorded) || recount->counted.keys != kNumKeys) {
    Die("usage ledger does not match a recount after the put rounds");
  }
}

// --- Open time and memory per idle tenant (child processes) ---

struct OpenSample {
  double open_ms = 0;
  double rss_growth = 0;  // bytes
};

// In the child: open the engine at `path`, report, close.
int ChildOpen(const std::string& path) {
  EngineOptions options;
  options.path = path;
  options.logger = NewNullLogger();
  size_t before = ResidentBytes();
  auto start = Clock::now();
  auto engine = Engine::Open(options);
  double seconds = Seconds(start);
  size_t after = ResidentBytes();
  Check(engine.status(), "child open");
  std::printf("open_ms=%.3f rss_before=%zu rss_after=%zu tenants=%zu\n", seconds * 1e3, before,
              after, (*engine)->registry().size());
  return 0;
}

std::string SelfPath() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) Die("cannot resolve /proc/self/exe");
  return path.string();
}

OpenSample RunChildOpen(const std::string& path, size_t expect_tenants) {
  // GCC 12 warns (-Wrestrict, a false positive) on "'" + std::string&&.
  std::string command;
  command.append("'").append(SelfPath()).append("' --child-open '");
  command.append(path).append("'");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) Die("popen");
  double open_ms = 0;
  size_t before = 0, after = 0, tenants = 0;
  int n = std::fscanf(pipe, "open_ms=%lf rss_before=%zu rss_after=%zu tenants=%zu", &open_ms,
                      &before, &after, &tenants);
  int rc = pclose(pipe);
  if (n != 4 || rc != 0 || tenants != expect_tenants) {
    Die("child open of " + path + " failed");
  }
  return {open_ms, static_cast<double>(after) - static_cast<double>(before)};
}

struct OpenFigures {
  double open_ms_median;
  double open_ms_first;
  double bytes_per_tenant;
};

OpenFigures MeasureOpen(const Config& config, const std::string& empty_path,
                        const std::string& full_path, size_t tenants) {
  std::vector<double> empty_growth, full_growth, full_ms;
  double first_ms = 0;
  for (int i = 0; i < config.open_children; ++i) {
    empty_growth.push_back(RunChildOpen(empty_path, 0).rss_growth);
    OpenSample full = RunChildOpen(full_path, tenants);
    if (i == 0) first_ms = full.open_ms;
    full_growth.push_back(full.rss_growth);
    full_ms.push_back(full.open_ms);
  }
  return {Median(full_ms), first_ms, (Median(full_growth) - Median(empty_growth)) / tenants};
}

// The latency of one load that misses every cache: a dependent walk of a
// random cycle through 64 MiB (larger than the last-level cache), in ns.
double MemoryMissNs() {
  constexpr size_t kSlots = (size_t{64} << 20) / 64;  // one per cache line
  std::vector<uint32_t> order(kSlots);
  for (size_t i = 0; i < kSlots; ++i) order[i] = static_cast<uint32_t>(i);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  std::vector<uint64_t> next(kSlots * 8);  // 64-byte stride
  for (size_t i = 0; i < kSlots; ++i) {
    next[size_t{order[i]} * 8] = size_t{order[(i + 1) % kSlots]} * 8;
  }
  constexpr size_t kSteps = 2'000'000;
  uint64_t at = 0;
  double start = ThreadCpuSeconds();
  for (size_t i = 0; i < kSteps; ++i) at = next[at];
  double ns = (ThreadCpuSeconds() - start) * 1e9 / kSteps;
  benchmark::DoNotOptimize(at);
  return ns;
}

std::string TenantId(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "t%06zu", i);
  return buf;
}

void MeasureTenants(const Config& config, const ScratchDir& dir, std::vector<Figure>& figures) {
  EngineOptions options;
  options.logger = NewNullLogger();
  // An engine with no tenants, opened and closed once, for the baseline.
  options.path = dir.Sub("empty-engine");
  Check(Engine::Open(options).status(), "empty engine");

  options.path = dir.Sub("tenants-engine");
  {
    auto engine = Engine::Open(options);
    Check(engine.status(), "tenants engine");
    std::vector<TenantSpec> specs;
    for (size_t start = 0; start < kNumTenants; start += kCreateChunk) {
      specs.clear();
      for (size_t i = start; i < std::min(kNumTenants, start + kCreateChunk); ++i) {
        specs.push_back(MakeSpec(TenantId(i)));
      }
      Check((*engine)->registry().CreateMany(specs).status(), "create many");
    }
  }
  OpenFigures open = MeasureOpen(config, dir.Sub("empty-engine"), options.path, kNumTenants);
  figures.push_back({"Engine::Open, 100,000 shared tenants", Fmt("%.0f ms", open.open_ms_median),
                     "-", open.open_ms_median / 1000.0, "< 1000 ms", open.open_ms_median < 1000.0});
  figures.push_back({"RSS per idle shared tenant (after reopen)",
                     Fmt("%.0f B", open.bytes_per_tenant), "-", open.bytes_per_tenant / 1024.0,
                     "< 1024 B", open.bytes_per_tenant < 1024.0});
  std::printf(
      "info: first reopen after creating the tenants (WAL recovery) "
      "took %.0f ms\n",
      open.open_ms_first);

  // One API key per tenant, then resolve random ones. A server resolves the
  // key it has just parsed out of a request, so each batch of secrets is
  // first copied (untimed) into a small staging area the resolution reads
  // from; the registry's index is as cold or warm as the key pattern makes it.
  // Measured over a hot set of 1,000 keys (the cost of the code path, with
  // few cache misses) and uniformly over all 100,000.
  std::vector<std::string> secrets;
  secrets.reserve(kNumTenants);
  auto resolve = [&](const Engine& engine, size_t distinct) {
    constexpr size_t kBatch = 256;
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<size_t> pick(0, distinct - 1);
    std::vector<std::string> staged(kBatch, std::string(128, ' '));
    std::vector<double> ns;
    for (int r = 0; r < config.resolve_rounds; ++r) {
      double timed = 0;
      size_t done = 0;
      while (done < config.resolves_per_round) {
        for (std::string& secret : staged) secret = secrets[pick(rng)];
        double start = ThreadCpuSeconds();
        for (const std::string& secret : staged) {
          absl::StatusOr<Tenant> t = engine.ResolveApiKey(secret);
          if (!t.ok()) Die("resolve: " + t.status().ToString());
          benchmark::DoNotOptimize(t);
        }
        timed += ThreadCpuSeconds() - start;
        done += kBatch;
      }
      ns.push_back(timed * 1e9 / static_cast<double>(done));
    }
    return Median(ns);
  };
  {
    auto engine = Engine::Open(options);
    Check(engine.status(), "tenants engine");
    auto start = Clock::now();
    for (size_t i = 0; i < kNumTenants; ++i) {
      auto key = (*engine)->registry().CreateApiKey(TenantId(i));
      Check(key.status(), "create api key");
      secrets.push_back(std::move(key->secret));
    }
    std::printf(
        "info: created %zu API keys in %.1f s; resolution in that "
        "process: %.0f ns\n",
        kNumTenants, Seconds(start), resolve(**engine, kNumTenants));
  }
  // Shuffled, so the hot set is not a run of neighbouring tenants.
  std::shuffle(secrets.begin(), secrets.end(), std::mt19937_64(11));
  {
    auto engine = Engine::Open(options);
    Check(engine.status(), "tenants engine");
    double hot = resolve(**engine, 1000);
    double uniform = resolve(**engine, kNumTenants);
    figures.push_back({"API key -> tenant, 1,000 hot keys of 100,000", Fmt("%.0f ns", hot), "-",
                       hot / 200.0, "< 200 ns", hot < 200.0});
    // Every key equally likely: the index and the tenants' slots no longer
    // fit in the CPU caches, so each resolution waits on main memory (the
    // index probe, the slot) about twice, and one wait alone is longer than
    // the 200 ns figure on this kind of machine. Printed as context, in units
    // of one such wait measured here; the figure is the hot set above (the
    // tenants a server is serving right now).
    const double miss_ns = MemoryMissNs();
    std::printf(
        "info: API key -> tenant, uniform over 100,000 keys: %.0f ns = %.1f "
        "main-memory waits of %.0f ns\n",
        uniform, uniform / miss_ns, miss_ns);
  }
  OpenFigures keyed = MeasureOpen(config, dir.Sub("empty-engine"), options.path, kNumTenants);
  std::printf("info: with one API key each: Open %.0f ms, RSS per tenant %.0f B\n",
              keyed.open_ms_median, keyed.bytes_per_tenant);
}

}  // namespace
}  // namespace tenancy

int main(int argc, char** argv) {
  tenancy::Config config;
  std::string_view only;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--child-open" && i + 1 < argc) {
      return tenancy::ChildOpen(argv[i + 1]);
    } else if (arg == "--only" && i + 1 < argc) {
      only = argv[++i];
      if (only != "kv" && only != "tenants") {
        std::fprintf(stderr, "--only takes kv or tenants\n");
        return 2;
      }
    } else if (arg == "--quick") {
      config.rounds = 5;
      config.get_pairs = 1;
      config.resolve_rounds = 3;
      config.open_children = 1;
    } else {
      std::fprintf(stderr, "usage: core_bench [--quick] [--only kv|tenants]\n");
      return 2;
    }
  }
  std::vector<tenancy::Figure> figures;
  {
    tenancy::bench::ScratchDir dir("core-bench");
    if (only != "tenants") tenancy::MeasureGetPut(config, dir, figures);
    if (only != "kv") tenancy::MeasureTenants(config, dir, figures);
  }
  tenancy::PrintFigures(
      "core figures (medians; per-operation times are the calling "
      "thread's CPU time; raw RocksDB measured in the same process)",
      figures);
  bool pass =
      std::all_of(figures.begin(), figures.end(), [](const tenancy::Figure& f) { return f.pass; });
  return pass ? 0 : 1;
}
