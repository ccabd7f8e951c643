// lifecycle_bench: tenant export and import (tenancy/lifecycle.h) against raw
// RocksDB doing the same data movement, in the same process (targets in
// bench/README.md).
//
//   export    >= 0.5x the speed of a raw RocksDB full scan of the same data
//   import    >= 0.5x the speed of raw SstFileWriter + IngestExternalFile
//   peak RSS growth during an export, and during an import   < 64 MiB each
//   a neighbour tenant's longest Put while an import runs     < 100 ms
//
// Data: one tenant of 1,000,000 keys of 16 bytes with 100-byte values of
// random bytes (so that compression flatters neither side), loaded through
// the tenant's KvStore and flushed, exported once to an archive file and
// imported back once as tenant "base" (untimed; this also warms both code
// paths). Each import figure run loads that archive file as a new tenant;
// each export figure run exports "base".
//
// What each side reads and writes, so that neither reads memtables while the
// other reads SST files:
//   - export: "base" is as an import leaves a tenant: SST files of at most
//     about 64 MiB written by SstFileWriter and ingested into the bottom
//     level, nothing in memtables. The raw scan reads the database the last
//     raw import run built: the same keys in SST files of the same size,
//     ingested the same way. Both sides iterate with fill_cache=false and a
//     2 MiB readahead, as the export does.
//   - import: the engine reads the archive file and writes SST files in a
//     staging directory in its data directory; the raw side takes the sorted
//     keys and values from memory and writes SST files (same options as its
//     column family, same 64 MiB rule) in its database directory. Both ingest
//     with move_files and verify_checksums_before_ingest, as the import does.
// Every file is on the same filesystem ($TENANCY_BENCH_DIR, else /dev/shm,
// else the temp directory) and was written by this process shortly before it
// is read, and an untimed warm-up pass of each side runs before the timed
// ones: the page cache is warm for both sides alike.
//
// Raw and engine runs alternate (three each by default, rotating which goes
// first); each figure is the median of the calling thread's CPU time (see
// ThreadCpuSeconds), with the wall times printed as info lines. An export's
// time includes closing (fsyncing) its file.
// Memory: the growth of the peak resident set over each timed run (VmHWM,
// reset through /proc/self/clear_refs, else the maximum of VmRSS sampled
// every 2 ms), after returning freed heap to the system; the largest over
// the runs. Neighbour: a thread puts 100-byte values to another tenant of
// the same engine every 100 us or so, before and during three more imports
// (untimed for the import figure), and each Put is timed on the wall.
//
// Usage: lifecycle_bench [--keys N] [--runs N]. Build in Release (bench/run
// does). Prints one line per figure:
//   figure | measured | baseline | ratio | target | PASS/FAIL
// plus info: lines. Exit status 0 when every figure passes.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "raw_rocksdb.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "tenancy/archive.h"
#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenancy/lifecycle.h"
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

constexpr size_t kKeyBytes = 16;
constexpr size_t kValueBytes = 100;
// What the import ingests at once (lib/tenant_archive.cc); the raw side
// closes its files by the same rule.
constexpr uint64_t kIngestFileBytes = uint64_t{64} << 20;

struct Config {
  size_t keys = 1'000'000;
  int runs = 3;
};

struct Timing {
  double wall = 0;  // seconds
  double cpu = 0;   // seconds of the calling thread
};

class Timer {
 public:
  Timing Elapsed() const { return {Seconds(wall_), ThreadCpuSeconds() - cpu_}; }

 private:
  Clock::time_point wall_ = Clock::now();
  double cpu_ = ThreadCpuSeconds();
};

// The medians of the CPU times and of the wall times, separately.
Timing Median(const std::vector<Timing>& runs) {
  std::vector<double> wall, cpu;
  for (const Timing& t : runs) {
    wall.push_back(t.wall);
    cpu.push_back(t.cpu);
  }
  return {Median(wall), Median(cpu)};
}

// --- The data set ---

// Keys "user%012zu" (sorted by index), values 100-byte windows of a pool of
// random bytes. Consecutive values are disjoint windows (stride 101), so no
// SST block holds a repeat for the compressor to find.
class DataSet {
 public:
  explicit DataSet(size_t n) : n_(n), keys_(n * kKeyBytes, '\0'), pool_(size_t{1} << 20, '\0') {
    char buf[32];
    for (size_t i = 0; i < n; ++i) {
      std::snprintf(buf, sizeof(buf), "user%012zu", i);
      std::memcpy(keys_.data() + i * kKeyBytes, buf, kKeyBytes);
    }
    std::mt19937_64 rng(20251203);
    for (size_t i = 0; i < pool_.size(); i += 8) {
      uint64_t r = rng();
      std::memcpy(pool_.data() + i, &r, 8);
    }
  }
  size_t size() const { return n_; }
  std::string_view Key(size_t i) const {
    return std::string_view(keys_).substr(i * kKeyBytes, kKeyBytes);
  }
  std::string_view Value(size_t i) const {
    return std::string_view(pool_).substr((i * 101) % (pool_.size() - kValueBytes), kValueBytes);
  }
  // The user's bytes (keys and values), the unit of the MB/s figures.
  double Bytes() const { return static_cast<double>(n_ * (kKeyBytes + kValueBytes)); }

 private:
  size_t n_;
  std::string keys_;
  std::string pool_;
};

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

// --- Memory ---

long StatusKib(const char* field) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) Die("cannot read /proc/self/status");
  char line[256];
  long kib = -1;
  size_t len = std::strlen(field);
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') {
      kib = std::strtol(line + len + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  if (kib < 0) Die(std::string("no ") + field + " in /proc/self/status");
  return kib;
}

// The growth of the resident set's peak over a phase. The kernel's
// high-water mark (VmHWM) when it can be reset (writing "5" to clear_refs);
// else a thread samples VmRSS every 2 ms.
class PeakRss {
 public:
  PeakRss() {
    int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      exact_ = ::write(fd, "5", 1) == 1;
      ::close(fd);
    }
  }
  bool exact() const { return exact_; }

  void Start() {
    // Freed heap the allocator still holds would hide a phase's demand.
    malloc_trim(0);
    if (exact_) {
      int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, "5", 1) != 1) Die("cannot reset VmHWM");
      ::close(fd);
    }
    start_kib_ = StatusKib("VmRSS");
    max_kib_ = start_kib_;
    if (!exact_) {
      stop_ = false;
      sampler_ = std::thread([this] {
        while (!stop_.load(std::memory_order_relaxed)) {
          long rss = StatusKib("VmRSS");
          if (rss > max_kib_.load(std::memory_order_relaxed)) max_kib_ = rss;
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
      });
    }
  }

  // MiB.
  double Stop() {
    long peak;
    if (exact_) {
      peak = StatusKib("VmHWM");
    } else {
      stop_ = true;
      sampler_.join();
      peak = std::max(max_kib_.load(), StatusKib("VmRSS"));
    }
    return static_cast<double>(peak - start_kib_) / 1024.0;
  }

 private:
  bool exact_ = false;
  long start_kib_ = 0;
  std::atomic<long> max_kib_{0};
  std::atomic<bool> stop_{false};
  std::thread sampler_;
};

// --- The raw RocksDB baseline, configured like the engine's data family ---

class RawDb {
 public:
  RawDb(const std::string& path, const EngineOptions& engine)
      : path_(path), cf_options_(bench::RawDataFamilyOptions(engine)) {
    const rocksdb::DBOptions db_options = bench::RawDbOptions(engine);
    rocksdb::DB* db = nullptr;
    Check(rocksdb::DB::Open(rocksdb::Options(db_options, cf_options_), path, &db), "raw open");
    db_.reset(db);
  }

  rocksdb::DB& db() { return *db_; }
  const std::string& path() const { return path_; }
  // What SstFileWriter is given: the family's options, as the import does.
  rocksdb::Options SstOptions() const {
    return rocksdb::Options(rocksdb::DBOptions(), cf_options_);
  }

 private:
  std::string path_;
  rocksdb::ColumnFamilyOptions cf_options_;
  std::unique_ptr<rocksdb::DB> db_;
};

// Raw import: the sorted keys into SST files closed at 64 MiB, then each file
// ingested as the import does. Returns seconds.
Timing RawImport(RawDb& raw, const DataSet& data) {
  Timer timer;
  std::vector<std::string> files;
  std::unique_ptr<rocksdb::SstFileWriter> writer;
  const rocksdb::Options options = raw.SstOptions();
  for (size_t i = 0; i < data.size(); ++i) {
    if (writer == nullptr) {
      files.push_back(raw.path() + "/staged-" + std::to_string(files.size()) + ".sst");
      writer = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), options);
      Check(writer->Open(files.back()), "raw sst open");
    }
    Check(writer->Put(ToSlice(data.Key(i)), ToSlice(data.Value(i))), "raw sst put");
    if (writer->FileSize() >= kIngestFileBytes) {
      Check(writer->Finish(), "raw sst finish");
      writer.reset();
    }
  }
  if (writer != nullptr) Check(writer->Finish(), "raw sst finish");
  writer.reset();
  for (const std::string& file : files) {
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;
    ingest.verify_checksums_before_ingest = true;
    ingest.allow_blocking_flush = false;
    Check(raw.db().IngestExternalFile({file}, ingest), "raw ingest");
  }
  return timer.Elapsed();
}

// Raw scan: every entry, reading every key and value byte's length and
// touching their ends, with the export's read options. Returns seconds.
Timing RawScan(RawDb& raw, size_t expect) {
  Timer timer;
  rocksdb::ReadOptions read;
  read.fill_cache = false;
  read.readahead_size = size_t{2} << 20;
  std::unique_ptr<rocksdb::Iterator> it(raw.db().NewIterator(read));
  size_t entries = 0;
  uint64_t sum = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rocksdb::Slice key = it->key(), value = it->value();
    sum += key.size() + value.size() + static_cast<uint8_t>(key[key.size() - 1]) +
           static_cast<uint8_t>(value[0]) + static_cast<uint8_t>(value[value.size() - 1]);
    ++entries;
  }
  Check(it->status(), "raw scan");
  benchmark::DoNotOptimize(sum);
  Timing seconds = timer.Elapsed();
  if (entries != expect) Die("raw scan saw " + std::to_string(entries) + " entries");
  return seconds;
}

// Counts the bytes and drops them: an export without the file.
class NullSink final : public ArchiveSink {
 public:
  absl::Status Append(std::string_view data) override {
    bytes_ += data.size();
    return absl::OkStatus();
  }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_ = 0;
};

// Exports `id` to a file at `path` (closed, so fsynced). Returns seconds.
Timing ExportToFile(Engine& engine, const std::string& id, const std::string& path, size_t expect) {
  Timer timer;
  auto sink = FileArchiveSink::Open(path);
  Check(sink.status(), "archive sink");
  auto summary = engine.lifecycle().Export(id, **sink);
  Check(summary.status(), "export");
  Check((*sink)->Close(), "archive close");
  Timing seconds = timer.Elapsed();
  if (summary->keys != expect) Die("export wrote " + std::to_string(summary->keys) + " keys");
  return seconds;
}

Timing ExportToNull(Engine& engine, const std::string& id, size_t expect) {
  Timer timer;
  NullSink sink;
  auto summary = engine.lifecycle().Export(id, sink);
  Check(summary.status(), "export");
  Timing seconds = timer.Elapsed();
  if (summary->keys != expect) Die("export wrote " + std::to_string(summary->keys) + " keys");
  return seconds;
}

Timing ImportFile(Engine& engine, const std::string& path, const std::string& id, size_t expect) {
  Timer timer;
  auto source = FileArchiveSource::Open(path);
  Check(source.status(), "archive source");
  ImportOptions options;
  options.tenant_id = id;
  auto result = engine.lifecycle().Import(**source, options);
  Check(result.status(), "import");
  Timing seconds = timer.Elapsed();
  if (result->usage.keys != expect) Die("import counted the wrong keys");
  return seconds;
}

// --- The neighbour ---

// Puts to tenant `kv` about every 100 us until stopped, recording when each
// Put started and how long it took (wall).
class Neighbour {
 public:
  struct Sample {
    Clock::time_point at;
    double ms;
  };

  explicit Neighbour(KvStore kv) : kv_(std::move(kv)) {
    samples_.reserve(4'000'000);
    thread_ = std::thread([this] { Run(); });
  }
  ~Neighbour() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
  }
  // REQUIRES: stopped.
  const std::vector<Sample>& samples() const { return samples_; }
  const std::vector<Clock::time_point>& refused() const { return refused_; }

 private:
  void Run() {
    std::string value(kValueBytes, 'n');
    char key[32];
    for (uint64_t i = 0; !stop_.load(std::memory_order_relaxed); ++i) {
      std::snprintf(key, sizeof(key), "nbr%013llu", static_cast<unsigned long long>(i % 10'000));
      std::memcpy(value.data(), key, 8);
      auto start = Clock::now();
      absl::Status s = kv_.Put(std::string_view(key, kKeyBytes), value);
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (s.ok()) {
        if (samples_.size() < samples_.capacity()) samples_.push_back({start, ms});
      } else if (absl::IsUnavailable(s)) {
        refused_.push_back(start);  // a write stall, refused (no_slowdown)
      } else {
        Die("neighbour put: " + s.ToString());
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  KvStore kv_;
  std::atomic<bool> stop_{false};
  std::vector<Sample> samples_;
  std::vector<Clock::time_point> refused_;
  std::thread thread_;
};

struct LatencyStats {
  size_t count = 0;
  double p99 = 0;
  double max = 0;
};

LatencyStats Stats(std::vector<double> ms) {
  LatencyStats stats;
  stats.count = ms.size();
  if (ms.empty()) return stats;
  std::sort(ms.begin(), ms.end());
  stats.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  stats.max = ms.back();
  return stats;
}

// --- The table ---

TenantSpec MakeSpec(std::string id) {
  TenantSpec spec;
  spec.id = std::move(id);
  return spec;
}

void Run(const Config& config, std::vector<Figure>& figures) {
  ScratchDir dir("lifecycle-bench");
  const DataSet data(config.keys);
  const double mb = data.Bytes() / 1e6;
  const size_t n = data.size();

  EngineOptions options;
  options.path = dir.Sub("engine");
  options.logger = NewNullLogger();
  auto opened = Engine::Open(options);
  Check(opened.status(), "engine open");
  std::unique_ptr<Engine> engine = *std::move(opened);
  Check(engine->registry().Create(MakeSpec("source")).status(), "create source");
  Check(engine->registry().Create(MakeSpec("neighbour")).status(), "create neighbour");

  // Load through the tenant's API, in batches; a batch refused by a write
  // stall (the engine's no_slowdown) is retried.
  auto load_start = Clock::now();
  {
    auto tenant = engine->GetTenant("source");
    Check(tenant.status(), "get source");
    KvStore kv = tenant->kv();
    WriteBatch batch;
    for (size_t start = 0; start < n; start += 1000) {
      batch.Clear();
      for (size_t i = start; i < std::min(n, start + 1000); ++i)
        batch.Put(data.Key(i), data.Value(i));
      absl::Status s;
      while (absl::IsUnavailable(s = kv.Write(batch))) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      Check(s, "load source");
    }
  }
  Check(engine->Flush(), "engine flush");
  std::printf("info: loaded %zu keys into tenant \"source\" in %.1f s\n", n, Seconds(load_start));

  // The archive every import reads, and tenant "base" every export reads
  // (see the file comment). Untimed; also the warm-up of both paths.
  const std::string archive = dir.Sub("source.tnca");
  double first_export = ExportToFile(*engine, "source", archive, n).wall;
  double first_import = ImportFile(*engine, archive, "base", n).wall;
  std::printf(
      "info: archive of %.1f MB; untimed: export of the put-loaded tenant %.2f s, "
      "first import %.2f s\n",
      static_cast<double>(std::filesystem::file_size(archive)) / 1e6, first_export, first_import);

  PeakRss rss;
  std::printf("info: peak RSS from %s\n",
              rss.exact() ? "VmHWM, reset through /proc/self/clear_refs"
                          : "VmRSS sampled every 2 ms (clear_refs not permitted)");

  // --- Import, alternating with the raw baseline ---
  std::vector<Timing> raw_import_s, import_s;
  std::vector<double> import_mib;
  std::unique_ptr<RawDb> raw;  // the last raw import's database, kept for the scan
  auto drop_raw = [&] {
    if (raw == nullptr) return;
    std::string path = raw->path();
    raw.reset();
    std::filesystem::remove_all(path);
  };
  // Each run's output is deleted (untimed) before the next run: on a virtual
  // machine the first touch of guest memory never used before costs a fault
  // in the hypervisor per page, which would otherwise slow whichever side
  // comes later in the sequence; this way every run writes into memory that
  // earlier ones freed.
  raw = std::make_unique<RawDb>(dir.Sub("raw-warm"), options);
  RawImport(*raw, data);  // warm-up of the raw path
  for (int r = 0; r < config.runs; ++r) {
    drop_raw();
    raw = std::make_unique<RawDb>(dir.Sub("raw-" + std::to_string(r)), options);
    const std::string copy = "copy" + std::to_string(r + 1);
    auto import_once = [&] {
      rss.Start();
      import_s.push_back(ImportFile(*engine, archive, copy, n));
      import_mib.push_back(rss.Stop());
    };
    // Rotate which side goes first.
    if (r % 2 == 0) {
      raw_import_s.push_back(RawImport(*raw, data));
      import_once();
    } else {
      import_once();
      raw_import_s.push_back(RawImport(*raw, data));
    }
    Check(engine->registry().Purge(copy), "purge copy");
  }

  // --- Export, alternating with the raw scan ---
  std::vector<Timing> raw_scan_s, export_s, null_s;
  std::vector<double> export_mib;
  {
    // Where the ingested files landed (the file comment says the bottom level).
    std::printf("info: raw scan database, SST files per level:");
    for (int level = 0; level < raw->db().NumberLevels(); ++level) {
      std::string files;
      raw->db().GetProperty("rocksdb.num-files-at-level" + std::to_string(level), &files);
      std::printf(" %s", files.c_str());
    }
    std::printf("\n");
  }
  // Warm-up of each path, its file removed like every run's.
  RawScan(*raw, n);
  ExportToNull(*engine, "base", n);
  ExportToFile(*engine, "base", dir.Sub("export-warm.tnca"), n);
  std::filesystem::remove(dir.Sub("export-warm.tnca"));
  for (int r = 0; r < config.runs; ++r) {
    const std::string path = dir.Sub("export-" + std::to_string(r) + ".tnca");
    auto export_once = [&] {
      rss.Start();
      export_s.push_back(ExportToFile(*engine, "base", path, n));
      export_mib.push_back(rss.Stop());
    };
    if (r % 2 == 0) {
      raw_scan_s.push_back(RawScan(*raw, n));
      export_once();
    } else {
      export_once();
      raw_scan_s.push_back(RawScan(*raw, n));
    }
    null_s.push_back(ExportToNull(*engine, "base", n));
    std::filesystem::remove(path);
  }

  // --- A neighbour's puts during imports ---
  LatencyStats quiet, during;
  size_t refused_during = 0, refused_quiet = 0;
  {
    auto tenant = engine->GetTenant("neighbour");
    Check(tenant.status(), "get neighbour");
    std::vector<std::pair<Clock::time_point, Clock::time_point>> windows;
    Neighbour neighbour(tenant->kv());
    std::this_thread::sleep_for(std::chrono::seconds(1));  // alone first
    auto quiet_end = Clock::now();
    for (int r = 0; r < config.runs; ++r) {
      auto start = Clock::now();
      ImportFile(*engine, archive, "nbr" + std::to_string(r + 1), n);
      windows.emplace_back(start, Clock::now());
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    neighbour.Stop();
    auto in_import = [&](Clock::time_point at) {
      for (const auto& [begin, end] : windows) {
        if (at >= begin && at < end) return true;
      }
      return false;
    };
    std::vector<double> quiet_ms, during_ms;
    for (const Neighbour::Sample& s : neighbour.samples()) {
      if (s.at < quiet_end) {
        quiet_ms.push_back(s.ms);
      } else if (in_import(s.at)) {
        during_ms.push_back(s.ms);
      }
    }
    for (Clock::time_point at : neighbour.refused()) {
      if (at < quiet_end) ++refused_quiet;
      if (in_import(at)) ++refused_during;
    }
    quiet = Stats(std::move(quiet_ms));
    during = Stats(std::move(during_ms));
  }

  // --- Figures ---
  // MB/s of the user's bytes from thread CPU time (the figures) and from
  // wall time (info).
  auto speed = [&](const std::vector<Timing>& runs) {
    Timing t = Median(runs);
    return Timing{mb / t.wall, mb / t.cpu};
  };
  const Timing export_mbs = speed(export_s), scan_mbs = speed(raw_scan_s);
  const Timing null_mbs = speed(null_s);
  figures.push_back({"export to a file vs raw RocksDB full scan", Fmt("%.0f MB/s", export_mbs.cpu),
                     Fmt("%.0f MB/s", scan_mbs.cpu), export_mbs.cpu / scan_mbs.cpu, ">= 0.50x",
                     export_mbs.cpu / scan_mbs.cpu >= 0.5});
  std::printf(
      "info: export to a null sink (no file): %.0f MB/s = %.3fx the raw scan (CPU); "
      "raw scan %.2f M keys/s\n",
      null_mbs.cpu, null_mbs.cpu / scan_mbs.cpu, static_cast<double>(n) * scan_mbs.cpu / mb / 1e6);
  std::printf(
      "info: on the wall: export to a file %.0f MB/s, to a null sink %.0f MB/s, raw scan "
      "%.0f MB/s: %.3fx and %.3fx\n",
      export_mbs.wall, null_mbs.wall, scan_mbs.wall, export_mbs.wall / scan_mbs.wall,
      null_mbs.wall / scan_mbs.wall);
  const Timing import_mbs = speed(import_s), raw_mbs = speed(raw_import_s);
  figures.push_back({"import from a file vs raw SST write + ingest",
                     Fmt("%.0f MB/s", import_mbs.cpu), Fmt("%.0f MB/s", raw_mbs.cpu),
                     import_mbs.cpu / raw_mbs.cpu, ">= 0.50x",
                     import_mbs.cpu / raw_mbs.cpu >= 0.5});
  std::printf("info: on the wall: import %.0f MB/s, raw SST write + ingest %.0f MB/s: %.3fx\n",
              import_mbs.wall, raw_mbs.wall, import_mbs.wall / raw_mbs.wall);
  auto runs_line = [](const char* what, const std::vector<Timing>& runs) {
    std::printf("info: runs, %s (CPU s / wall s):", what);
    for (const Timing& t : runs) std::printf(" %.3f/%.3f", t.cpu, t.wall);
    std::printf("\n");
  };
  runs_line("export", export_s);
  runs_line("raw scan", raw_scan_s);
  runs_line("export to null", null_s);
  runs_line("import", import_s);
  runs_line("raw import", raw_import_s);
  const double export_peak = *std::max_element(export_mib.begin(), export_mib.end());
  const double import_peak = *std::max_element(import_mib.begin(), import_mib.end());
  figures.push_back({"peak RSS growth during an export", Fmt("%.1f MiB", export_peak), "-",
                     export_peak / 64.0, "< 64 MiB", export_peak < 64.0});
  figures.push_back({"peak RSS growth during an import", Fmt("%.1f MiB", import_peak), "-",
                     import_peak / 64.0, "< 64 MiB", import_peak < 64.0});
  // A Put refused by a stall (UNAVAILABLE under no_slowdown) fails the
  // figure too: it is the stall, reported as an error instead of a wait.
  figures.push_back({"neighbour's longest Put during imports", Fmt("%.1f ms", during.max),
                     Fmt("alone %.1f ms", quiet.max), during.max / 100.0, "< 100 ms",
                     during.max < 100.0 && refused_during == 0});
  std::printf(
      "info: neighbour Puts during %d imports: %zu, p99 %.2f ms, max %.1f ms, refused %zu; "
      "alone (1 s before): %zu, p99 %.2f ms, max %.1f ms, refused %zu\n",
      config.runs, during.count, during.p99, during.max, refused_during, quiet.count, quiet.p99,
      quiet.max, refused_quiet);
}

}  // namespace
}  // namespace tenancy

int main(int argc, char** argv) {
  tenancy::Config config;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--keys" && i + 1 < argc) {
      config.keys = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--runs" && i + 1 < argc) {
      config.runs = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: lifecycle_bench [--keys N] [--runs N]\n");
      return 2;
    }
  }
  if (config.keys == 0 || config.runs < 1) {
    std::fprintf(stderr, "lifecycle_bench: --keys and --runs must be positive\n");
    return 2;
  }
  std::vector<tenancy::Figure> figures;
  tenancy::Run(config, figures);
  tenancy::PrintFigures(
      "lifecycle figures (medians; MB/s of the user's key and value bytes over "
      "the calling thread's CPU time; raw RocksDB measured in the same process)",
      figures);
  bool pass =
      std::all_of(figures.begin(), figures.end(), [](const tenancy::Figure& f) { return f.pass; });
  return pass ? 0 : 1;
}
