// torture: a crash torture test of the engine, after RocksDB's db_crashtest.
//
//   torture --cycles N --seconds S --seed X [--dir D]
//
// Each cycle spawns this binary again as a child (--child), which opens the
// engine and runs a mixed workload over 12 persistent tenants (4 dedicated)
// from several threads: KV puts, deletes and batches whose values are tagged
// "<tenant>|<key>|<sequence>", job enqueue/claim/ack/nack, cache sets, quota
// changes (TenantRegistry::Update), disable/enable, a tenants file applied
// (ConfigFile), and scratch tenants created, filled, exported, imported as a
// clone and purged. Some cycles run with EngineOptions::sync_writes, the
// others without it and with Engine::Flush checkpoints. The parent SIGKILLs
// the child at a seeded random moment: very early (during Open and its
// recovery), after a random time, or right as the child says (a byte on its
// stdout pipe) that it begins a purge, an import or a tenants-file apply.
// Then the parent reopens the engine and checks it against the oracle.
//
// The oracle is a log the child appends to (O_APPEND, one write() per line,
// so a line is whole or absent; a SIGKILL keeps what reached the page cache):
//   I <id> <op...>   an intent, written BEFORE the operation is called;
//   A <id> [result]  written AFTER the call returned OK (acknowledged);
//   F <id> <code>    written after the call failed;
//   X <src> <dst>    an archive of <src> was exported and closed (fsynced);
//   C                an Engine::Flush checkpoint succeeded.
// Every key, job and tenant is changed by one thread only, so per object the
// log is sequential. The parent replays it over the model it kept from the
// previous cycles: an acknowledged operation sets the expected state; one in
// flight at the kill (an intent without an outcome) or failed with an
// ambiguous code (INTERNAL, DATA_LOSS, UNKNOWN) lets either the old or the
// new state be there. Then it checks:
//   - every acknowledged write is present with its value (or an in-flight
//     later one), no key the model does not know is present, every value is
//     tagged with its own tenant and key (no key of one tenant in another);
//     an in-flight batch is all old or all new;
//   - Recount(false): counted == recorded for every tenant;
//   - jobs: every acknowledged enqueue is there (any state), no acked job
//     is back, no job is there twice (same payload), no unknown job;
//   - tenants: an acknowledged purge is gone, a purge in flight left the
//     tenant whole or gone (never "deleting": Open resumes it); an import in
//     flight left no target or a target equal to the exported source;
//     spec changes (enabled, quota, tenants file) acknowledged are in force;
//   - with the engine closed, the raw database (read-only) holds no key in
//     the shared column family and no dedicated column family of a tenant
//     number that is not a live tenant (nothing half purged or half imported).
// Acknowledged writes are required also in cycles without sync_writes that
// no Flush covered: a process crash loses nothing (EngineOptions).
//
// Prints one line per cycle and a final line; exits 0 only when every check
// of every cycle held.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "rocksdb/db.h"
#include "tenancy/archive.h"
#include "tenancy/config_file.h"
#include "tenancy/engine.h"
#include "tenancy/jobs.h"
#include "tenancy/kv_store.h"
#include "tenancy/lifecycle.h"
#include "tenancy/tenant_registry.h"

extern char** environ;

namespace tenancy::torture {
namespace {

constexpr int kPersistent = 12;
constexpr int kDedicated = 4;  // t00..t03
constexpr int kWorkers = 4;
constexpr int kKeysPerWorker = 40;
const char* const kConfigTenants[] = {"cf-a", "cf-b"};

std::string PersistentId(int i) {
  char buf[8];
  snprintf(buf, sizeof(buf), "t%02d", i);
  return buf;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

// Failures after which nothing was written (the library refuses before it
// writes); any other failure may or may not have been applied.
bool Definitive(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

struct Flags {
  int cycles = 10;
  double seconds = 2;
  uint64_t seed = 1;
  std::string dir;
  bool child = false;
  int cycle = 0;
  bool sync = false;
  bool stall = false;  // EngineOptions::fail_writes_on_stall in the child
  // The checker's own test: the child acknowledges some puts it never made
  // and writes some values tagged with another tenant; the run must fail.
  bool selftest = false;
};

EngineOptions BaseOptions(const std::string& dir) {
  EngineOptions options;
  options.path = dir + "/db";
  options.logger = NewNullLogger();
  // Small memtables: flushes (and so SST files, compactions) within a cycle.
  options.memtable_budget_bytes = 16 << 20;
  return options;
}

// ---------------------------------------------------------------- child --

class OracleLog {
 public:
  explicit OracleLog(const std::string& path)
      : fd_(open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
    if (fd_ < 0) _exit(6);
  }
  // One write() per line: whole or absent after a SIGKILL.
  void Line(std::string line) {
    line.push_back('\n');
    if (write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(6);
  }
  void Outcome(const std::string& id, const absl::Status& s, const std::string& extra = "") {
    if (s.ok()) {
      Line("A " + id + (extra.empty() ? "" : " " + extra));
    } else {
      Line("F " + id + " " + std::to_string(static_cast<int>(s.code())));
    }
  }

 private:
  int fd_;
};

void Marker(char c) {
  if (write(STDOUT_FILENO, &c, 1) != 1) _exit(7);
}

struct Child {
  Flags flags;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<OracleLog> log;

  std::string Tag(const std::string& tenant, const std::string& key, const std::string& seq) {
    return tenant + "|" + key + "|" + seq;
  }

  void Worker(int w) {
    std::mt19937_64 rng(flags.seed * 1000003 + flags.cycle * 101 + w);
    std::vector<Tenant> tenants;
    for (int i = 0; i < kPersistent; ++i) tenants.push_back(*engine->GetTenant(PersistentId(i)));
    const std::string ws = std::to_string(w);
    const std::string type = "w" + ws;
    for (uint64_t n = 1;; ++n) {
      const Tenant& tenant = tenants[rng() % kPersistent];
      const std::string& tid = tenant.id();
      const std::string id = "w" + ws + "." + std::to_string(n);
      const std::string seq =
          "c" + std::to_string(flags.cycle) + "." + ws + "." + std::to_string(n);
      auto key = [&] { return "w" + ws + "/k" + std::to_string(rng() % kKeysPerWorker); };
      int op = static_cast<int>(rng() % 100);
      if (op < 35) {
        std::string k = key();
        std::string v = Tag(tid, k, seq);
        if (flags.selftest && rng() % 20 == 0) {
          // A lost write and a cross-tenant value, for the checker to find.
          log->Line("I " + id + " P " + tid + " " + k + " " + v);
          log->Outcome(id, absl::OkStatus());
          (void)tenant.kv().Put(k + "x", Tag("t99", k + "x", seq));
          continue;
        }
        log->Line("I " + id + " P " + tid + " " + k + " " + v);
        log->Outcome(id, tenant.kv().Put(k, v));
      } else if (op < 50) {
        std::string k = key();
        log->Line("I " + id + " D " + tid + " " + k);
        log->Outcome(id, tenant.kv().Delete(k));
      } else if (op < 65) {
        // Distinct keys, so that "all old or all new" is well defined.
        std::set<std::string> keys;
        int want = 2 + static_cast<int>(rng() % 6);
        while (static_cast<int>(keys.size()) < want) keys.insert(key());
        WriteBatch batch;
        std::string line = "I " + id + " B " + tid + " " + std::to_string(keys.size());
        for (const std::string& k : keys) {
          if (rng() % 4 == 0) {
            batch.Delete(k);
            line += " " + k + " -";
          } else {
            std::string v = Tag(tid, k, seq);
            batch.Put(k, v);
            line += " " + k + " " + v;
          }
        }
        log->Line(line);
        log->Outcome(id, tenant.kv().Write(batch));
      } else if (op < 75) {
        JobSpec spec;
        spec.type = type;
        spec.payload = Tag(tid, "job", seq);
        spec.max_attempts = 100;
        log->Line("I " + id + " E " + tid + " " + spec.payload);
        auto r = tenant.jobs().Enqueue(spec);
        log->Outcome(id, r.status(), r.ok() ? r->id : "");
      } else if (op < 90) {
        ClaimOptions claim;
        claim.type = type;
        claim.lease = absl::Seconds(2);
        auto job = tenant.jobs().Claim(claim);
        if (!job.ok() || !job->has_value()) continue;
        if (rng() % 8 == 0) {
          // A nack keeps the job (delayed or queued): nothing to log.
          NackOptions nack;
          nack.retry_after = absl::ZeroDuration();
          (void)tenant.jobs().Nack((**job).id, (**job).lease, nack);
          continue;
        }
        log->Line("I " + id + " K " + tid + " " + (**job).id);
        log->Outcome(id, tenant.jobs().Ack((**job).id, (**job).lease));
      } else {
        // The cache is memory only: exercised, not checked after a crash.
        (void)tenant.cache().Set(key(), seq, std::chrono::seconds(60));
        (void)tenant.cache().Get(key());
      }
    }
  }

  // Registry work on persistent tenants, the tenants file and scratch
  // tenants, from one thread (so each tenant's spec changes are sequential).
  void Admin() {
    std::mt19937_64 rng(flags.seed * 7919 + flags.cycle);
    uint64_t n = 0;
    auto next_id = [&] { return "a." + std::to_string(++n); };
    TenantRegistry& registry = engine->registry();
    auto purge = [&](const std::string& tid) {
      std::string id = next_id();
      log->Line("I " + id + " U " + tid);
      Marker('P');
      log->Outcome(id, registry.Purge(tid));
    };
    // Scratch tenants a kill left behind: purge them (also killable).
    {
      ListOptions list;
      list.limit = 10000;
      auto page = registry.List(list);
      if (page.ok()) {
        for (const TenantInfo& info : page->tenants) {
          const std::string& tid = info.spec.id;
          if (tid.rfind("s-", 0) == 0 || tid.rfind("i-", 0) == 0) purge(tid);
        }
      }
    }
    for (int round = 0;; ++round) {
      int op = static_cast<int>(rng() % 100);
      if (op < 25) {
        std::string tid = PersistentId(static_cast<int>(rng() % kPersistent));
        std::string id = next_id();
        log->Line("I " + id + " S " + tid + " 0");
        log->Outcome(id, registry.Disable(tid));
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 30));
        id = next_id();
        log->Line("I " + id + " S " + tid + " 1");
        log->Outcome(id, registry.Enable(tid));
      } else if (op < 45) {
        std::string tid = PersistentId(static_cast<int>(rng() % kPersistent));
        auto info = registry.Get(tid);
        if (!info.ok()) continue;
        TenantSpec spec = info->spec;
        uint64_t choices[] = {0, 0, uint64_t{1} << 20, 20000 + rng() % 30000};
        spec.quota.storage_bytes = choices[rng() % 4];
        std::string id = next_id();
        log->Line("I " + id + " Q " + tid + " " + std::to_string(spec.quota.storage_bytes));
        log->Outcome(id, registry.Update(spec).status());
      } else if (op < 55) {
        uint64_t bytes = (1 + rng() % 64) << 20;
        std::string path = flags.dir + "/tenants.json";
        {
          std::ofstream out(path, std::ios::trunc);
          out << "{\"tenants\": [{\"id\": \"cf-a\", \"quota\": {\"storage_bytes\": " << bytes
              << "}}, {\"id\": \"cf-b\", \"placement\": \"dedicated\", \"quota\": "
                 "{\"storage_bytes\": "
              << bytes << "}}]}\n";
        }
        ConfigFileOptions options;
        options.path = path;
        options.watch = false;
        std::string id = next_id();
        log->Line("I " + id + " G " + std::to_string(bytes));
        Marker('G');
        log->Outcome(id, ConfigFile::Open(engine.get(), options).status());
      } else {
        Scratch(rng, round, next_id, purge);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
    }
  }

  template <typename NextId, typename Purge>
  void Scratch(std::mt19937_64& rng, int round, NextId& next_id, Purge& purge) {
    const std::string suffix = "c" + std::to_string(flags.cycle) + "-" + std::to_string(round);
    const std::string src = "s-" + suffix, dst = "i-" + suffix;
    TenantSpec spec;
    spec.id = src;
    spec.placement = rng() % 3 == 0 ? Placement::kDedicated : Placement::kShared;
    std::string id = next_id();
    log->Line("I " + id + " N " + src);
    absl::Status s = engine->registry().Create(spec).status();
    log->Outcome(id, s);
    if (!s.ok()) return;
    auto tenant = engine->GetTenant(src);
    if (!tenant.ok()) return;
    int batches = 1 + static_cast<int>(rng() % 6);
    for (int b = 0; b < batches; ++b) {
      id = next_id();
      WriteBatch batch;
      std::string line = "I " + id + " B " + src + " 50";
      for (int i = 0; i < 50; ++i) {
        std::string k = "s/k" + std::to_string(b * 50 + i);
        std::string v = Tag(src, k, id);
        batch.Put(k, v);
        line += " " + k + " " + v;
      }
      log->Line(line);
      s = tenant->kv().Write(batch);
      log->Outcome(id, s);
      if (!s.ok()) return;
    }
    std::string archive = flags.dir + "/archives/" + src + ".tnca";
    {
      auto sink = FileArchiveSink::Open(archive);
      if (!sink.ok()) return;
      if (!engine->lifecycle().Export(src, **sink).ok() || !(*sink)->Close().ok()) return;
    }
    log->Line("X " + src + " " + dst);
    auto source = FileArchiveSource::Open(archive);
    if (!source.ok()) return;
    ImportOptions import;
    import.tenant_id = dst;
    id = next_id();
    log->Line("I " + id + " M " + src + " " + dst);
    Marker('I');
    log->Outcome(id, engine->lifecycle().Import(**source, import).status());
    purge(src);
    if (rng() % 2 == 0) purge(dst);
  }

  void Flusher() {
    std::mt19937_64 rng(flags.seed + flags.cycle);
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 150));
      if (engine->Flush().ok()) log->Line("C");
    }
  }

  int Run() {
    EngineOptions options = BaseOptions(flags.dir);
    options.sync_writes = flags.sync;
    // Refused writes (UNAVAILABLE) in some cycles; writes that wait in others.
    options.fail_writes_on_stall = flags.stall;
    auto opened = Engine::Open(options);
    if (!opened.ok()) {
      fprintf(stderr, "torture child: open: %s\n", opened.status().ToString().c_str());
      return 2;
    }
    engine = std::move(*opened);
    std::filesystem::create_directories(flags.dir + "/archives");
    log =
        std::make_unique<OracleLog>(flags.dir + "/oracle-" + std::to_string(flags.cycle) + ".log");
    Marker('R');
    std::vector<std::thread> threads;
    for (int w = 0; w < kWorkers; ++w) threads.emplace_back([this, w] { Worker(w); });
    threads.emplace_back([this] { Admin(); });
    if (!flags.sync) threads.emplace_back([this] { Flusher(); });
    // The parent kills us; should it die first, do not run forever.
    std::this_thread::sleep_for(std::chrono::seconds(300));
    _exit(5);
  }
};

// --------------------------------------------------------------- parent --

using Allowed = std::vector<std::optional<std::string>>;  // nullopt: absent

bool Contains(const Allowed& allowed, const std::optional<std::string>& v) {
  for (const auto& a : allowed) {
    if (a == v) return true;
  }
  return false;
}

enum class Exists { kYes, kNo, kMaybe };

struct JobModel {
  std::string payload;
  enum { kLive, kMaybeAcked, kAcked } state = kLive;
};

struct TenantModel {
  Exists exists = Exists::kYes;
  std::string tag;  // the tenant its values are tagged with
  std::map<std::string, Allowed> keys;
  std::map<std::string, JobModel> jobs;
  std::vector<std::string> maybe_payloads;  // enqueues in flight
  std::set<int> enabled = {1};
  std::optional<std::set<uint64_t>> quota;  // nullopt: not checked
  bool config_managed = false;
};

struct CycleStats {
  uint64_t acked = 0;
  uint64_t uncovered = 0;  // acked after the last flush of a cycle without sync
  uint64_t checks = 0;
  uint64_t failures = 0;
};

class Checker {
 public:
  explicit Checker(std::string dir) : dir_(std::move(dir)) {}

  void AddTenant(const std::string& tid) {
    TenantModel& t = tenants_[tid];
    t.tag = tid;
    t.quota = std::set<uint64_t>{0};
  }

  CycleStats Replay(const std::string& path, bool sync);
  void Check(CycleStats& stats, std::vector<std::string>& messages);

 private:
  struct Batch {
    std::string tenant;
    std::vector<std::pair<std::string, std::optional<std::string>>> ops;
    std::vector<Allowed> before;
  };

  void SetKey(TenantModel& t, const std::string& key, std::optional<std::string> v, bool definite) {
    auto it = t.keys.find(key);
    if (definite) {
      t.keys[key] = Allowed{std::move(v)};
    } else if (it == t.keys.end()) {
      t.keys[key] = Allowed{std::nullopt, std::move(v)};
    } else if (!Contains(it->second, v)) {
      it->second.push_back(std::move(v));
    }
  }

  void Apply(const std::vector<std::string>& intent, const std::vector<std::string>& outcome,
             bool definite);
  void Fail(CycleStats& stats, std::vector<std::string>& messages, std::string message) {
    ++stats.failures;
    if (messages.size() < 30) messages.push_back(std::move(message));
  }

  std::string dir_;
  std::map<std::string, TenantModel> tenants_;
  std::map<std::string, std::map<std::string, std::string>> snapshots_;  // X: dst -> content
  std::vector<Batch> inflight_batches_;
};

// Applies one operation (intent tokens from "I", the outcome's tokens) to the
// model: definitely, or as one more possibility.
void Checker::Apply(const std::vector<std::string>& in, const std::vector<std::string>& outcome,
                    bool definite) {
  const std::string& op = in[2];
  if (op == "P" || op == "D") {
    SetKey(tenants_[in[3]], in[4], op == "P" ? std::optional<std::string>(in[5]) : std::nullopt,
           definite);
  } else if (op == "B") {
    TenantModel& t = tenants_[in[3]];
    size_t count = std::stoul(in[4]);
    Batch batch;
    batch.tenant = in[3];
    for (size_t i = 0; i < count; ++i) {
      const std::string& k = in[5 + 2 * i];
      const std::string& v = in[6 + 2 * i];
      auto value = v == "-" ? std::nullopt : std::optional<std::string>(v);
      auto it = t.keys.find(k);
      batch.before.push_back(it == t.keys.end() ? Allowed{std::nullopt} : it->second);
      batch.ops.emplace_back(k, value);
      SetKey(t, k, value, definite);
    }
    if (!definite) inflight_batches_.push_back(std::move(batch));
  } else if (op == "E") {
    TenantModel& t = tenants_[in[3]];
    if (definite) {
      t.jobs[outcome.at(2)] = JobModel{in[4]};
    } else {
      t.maybe_payloads.push_back(in[4]);
    }
  } else if (op == "K") {
    auto& jobs = tenants_[in[3]].jobs;
    auto it = jobs.find(in[4]);
    if (it != jobs.end()) it->second.state = definite ? JobModel::kAcked : JobModel::kMaybeAcked;
  } else if (op == "N") {
    bool known = tenants_.count(in[3]) != 0;
    TenantModel& t = tenants_[in[3]];
    t.tag = in[3];
    if (definite) {
      t.exists = Exists::kYes;
    } else if (!known || t.exists != Exists::kYes) {
      t.exists = Exists::kMaybe;
    }
  } else if (op == "U") {
    TenantModel& t = tenants_[in[3]];
    if (definite) {
      t.exists = Exists::kNo;
      t.keys.clear();
      t.jobs.clear();
    } else if (t.exists != Exists::kNo) {
      t.exists = Exists::kMaybe;
    }
  } else if (op == "M") {
    TenantModel& t = tenants_[in[4]];
    t.tag = in[3];
    t.keys.clear();
    for (const auto& [k, v] : snapshots_[in[4]]) t.keys[k] = Allowed{v};
    t.exists = definite ? Exists::kYes : Exists::kMaybe;
  } else if (op == "S") {
    TenantModel& t = tenants_[in[3]];
    int v = std::stoi(in[4]);
    if (definite) t.enabled.clear();
    t.enabled.insert(v);
  } else if (op == "Q") {
    TenantModel& t = tenants_[in[3]];
    uint64_t v = std::stoull(in[4]);
    if (!t.quota.has_value() || definite) t.quota = std::set<uint64_t>();
    t.quota->insert(v);
  } else if (op == "G") {
    for (const char* tid : kConfigTenants) {
      TenantModel& t = tenants_[tid];
      t.tag = tid;
      t.config_managed = true;
      uint64_t v = std::stoull(in[3]);
      if (definite) {
        t.exists = Exists::kYes;
        t.quota = std::set<uint64_t>{v};
      } else {
        if (t.exists == Exists::kNo || !t.quota.has_value()) {
          t.exists = Exists::kMaybe;
          t.quota = std::set<uint64_t>();
        }
        t.quota->insert(v);
      }
    }
  }
}

CycleStats Checker::Replay(const std::string& path, bool sync) {
  CycleStats stats;
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A torn last line (no newline) is dropped: its write() did not finish.
  size_t end = content.rfind('\n');
  content = end == std::string::npos ? "" : content.substr(0, end);
  std::map<std::string, std::vector<std::string>> pending;
  std::vector<std::string> pending_order;
  uint64_t since_flush = 0;
  inflight_batches_.clear();
  for (const std::string& line : Split(content, '\n')) {
    if (line.empty()) continue;
    std::vector<std::string> tokens = Split(line, ' ');
    const std::string& kind = tokens[0];
    if (kind == "I") {
      pending[tokens[1]] = tokens;
      pending_order.push_back(tokens[1]);
    } else if (kind == "A" || kind == "F") {
      auto it = pending.find(tokens[1]);
      if (it == pending.end()) continue;
      if (kind == "A") {
        ++stats.acked;
        ++since_flush;
        Apply(it->second, tokens, true);
      } else if (!Definitive(static_cast<absl::StatusCode>(std::stoi(tokens[2])))) {
        Apply(it->second, tokens, false);
      }
      pending.erase(it);
    } else if (kind == "X") {
      std::map<std::string, std::string> content_of_src;
      for (const auto& [k, allowed] : tenants_[tokens[1]].keys) {
        if (allowed.size() == 1 && allowed[0].has_value()) content_of_src[k] = *allowed[0];
      }
      snapshots_[tokens[2]] = std::move(content_of_src);
    } else if (kind == "C") {
      since_flush = 0;
    }
  }
  // Operations in flight at the kill.
  for (const std::string& id : pending_order) {
    auto it = pending.find(id);
    if (it != pending.end()) Apply(it->second, {}, false);
  }
  stats.uncovered = sync ? 0 : since_flush;
  return stats;
}

bool ListAllJobs(const JobQueue& jobs, std::map<std::string, std::string>& out) {
  for (JobState state :
       {JobState::kQueued, JobState::kDelayed, JobState::kClaimed, JobState::kDead}) {
    ListJobsOptions options;
    options.state = state;
    options.limit = 1000;
    options.include_payload = true;
    while (true) {
      auto page = jobs.List(options);
      if (!page.ok()) return false;
      for (const Job& job : page->jobs) out[job.id] = job.payload;
      if (page->cursor.empty()) break;
      options.cursor = page->cursor;
    }
  }
  return true;
}

std::string BigEndian(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  return out;
}

uint64_t FromBigEndian(std::string_view s) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n = (n << 8) | static_cast<uint8_t>(s[i]);
  return n;
}

void Checker::Check(CycleStats& stats, std::vector<std::string>& messages) {
  std::set<uint64_t> live_numbers;
  {
    auto opened = Engine::Open(BaseOptions(dir_));
    if (!opened.ok()) {
      Fail(stats, messages, "reopen failed: " + opened.status().ToString());
      return;
    }
    Engine& engine = **opened;
    std::map<std::string, TenantInfo> present;
    ListOptions list;
    list.limit = 10000;
    auto page = engine.registry().List(list);
    if (!page.ok()) {
      Fail(stats, messages, "list: " + page.status().ToString());
      return;
    }
    for (const TenantInfo& info : page->tenants) {
      present[info.spec.id] = info;
      live_numbers.insert(info.number);
    }
    for (const auto& [tid, info] : present) {
      ++stats.checks;
      if (tenants_.count(tid) == 0) Fail(stats, messages, "unknown tenant " + tid);
      if (info.state == TenantState::kDeleting) {
        Fail(stats, messages, tid + " still deleting after Open");
      }
    }
    for (auto it = tenants_.begin(); it != tenants_.end();) {
      const std::string& tid = it->first;
      TenantModel& t = it->second;
      ++stats.checks;
      auto p = present.find(tid);
      if (p == present.end()) {
        if (t.exists == Exists::kYes) Fail(stats, messages, "tenant lost: " + tid);
        it = tenants_.erase(it);
        continue;
      }
      if (t.exists == Exists::kNo) Fail(stats, messages, "purged tenant back: " + tid);
      t.exists = Exists::kYes;
      const TenantInfo& info = p->second;
      // Spec changes.
      ++stats.checks;
      if (t.enabled.count(info.spec.enabled ? 1 : 0) == 0) {
        Fail(stats, messages, tid + ": enabled=" + std::to_string(info.spec.enabled));
      }
      if (t.quota.has_value()) {
        ++stats.checks;
        if (t.quota->count(info.spec.quota.storage_bytes) == 0) {
          Fail(stats, messages,
               tid + ": quota " + std::to_string(info.spec.quota.storage_bytes) + " unexpected");
        }
        t.quota = std::set<uint64_t>{info.spec.quota.storage_bytes};
      }
      if (t.config_managed) {
        ++stats.checks;
        auto label = info.spec.labels.find(std::string(kManagedByLabel));
        if (label == info.spec.labels.end() || label->second != kManagedByValue) {
          Fail(stats, messages, tid + ": not marked as managed by the tenants file");
        }
      }
      if (!info.spec.enabled) {
        // To read it; the model follows.
        if (!engine.registry().Enable(tid).ok()) Fail(stats, messages, tid + ": enable failed");
      }
      t.enabled = {1};
      auto tenant = engine.GetTenant(tid);
      if (!tenant.ok()) {
        Fail(stats, messages, tid + ": GetTenant " + tenant.status().ToString());
        ++it;
        continue;
      }
      // Key-value: every item is known, tagged with its tenant and key.
      std::map<std::string, std::string> seen;
      ScanOptions scan;
      scan.limit = 1000;
      while (true) {
        auto items = tenant->kv().Scan(scan);
        if (!items.ok()) {
          Fail(stats, messages, tid + ": scan " + items.status().ToString());
          break;
        }
        for (const KeyValue& kv : items->items) {
          ++stats.checks;
          seen[kv.key] = kv.value;
          std::vector<std::string> tag = Split(kv.value, '|');
          if (tag.size() != 3 || tag[0] != t.tag || tag[1] != kv.key) {
            Fail(stats, messages, "isolation: " + tid + " key " + kv.key + " holds " + kv.value);
          }
          auto m = t.keys.find(kv.key);
          if (m == t.keys.end()) {
            Fail(stats, messages, tid + ": unexpected key " + kv.key + " = " + kv.value);
          } else if (!Contains(m->second, kv.value)) {
            Fail(stats, messages,
                 tid + ": key " + kv.key + " = " + kv.value + ", not acknowledged");
          }
        }
        if (items->cursor.empty()) break;
        scan.cursor = items->cursor;
      }
      for (auto& [key, allowed] : t.keys) {
        ++stats.checks;
        if (seen.count(key) == 0 && !Contains(allowed, std::nullopt)) {
          Fail(stats, messages, tid + ": acknowledged key lost: " + key);
        }
      }
      // Batches in flight: all old or all new.
      for (const Batch& batch : inflight_batches_) {
        if (batch.tenant != tid) continue;
        ++stats.checks;
        int olds = 0, news = 0;
        for (size_t i = 0; i < batch.ops.size(); ++i) {
          auto s = seen.find(batch.ops[i].first);
          std::optional<std::string> v =
              s == seen.end() ? std::nullopt : std::optional<std::string>(s->second);
          bool is_new = v == batch.ops[i].second;
          bool is_old = Contains(batch.before[i], v);
          if (is_new && !is_old) ++news;
          if (is_old && !is_new) ++olds;
        }
        if (olds > 0 && news > 0) Fail(stats, messages, tid + ": torn batch");
      }
      // The model becomes what was seen (each value was allowed).
      t.keys.clear();
      for (const auto& [k, v] : seen) t.keys[k] = Allowed{v};
      // Usage.
      ++stats.checks;
      auto recount = tenant->kv().Recount(false);
      if (!recount.ok()) {
        Fail(stats, messages, tid + ": recount " + recount.status().ToString());
      } else if (!(recount->counted == recount->recorded)) {
        Fail(stats, messages,
             tid + ": usage recorded " + std::to_string(recount->recorded.bytes) + "/" +
                 std::to_string(recount->recorded.keys) + " counted " +
                 std::to_string(recount->counted.bytes) + "/" +
                 std::to_string(recount->counted.keys));
      }
      // Jobs.
      std::map<std::string, std::string> jobs;
      if (!ListAllJobs(tenant->jobs(), jobs)) {
        Fail(stats, messages, tid + ": listing jobs failed");
      }
      std::map<std::string, int> payloads;
      for (const auto& [jid, payload] : jobs) {
        ++stats.checks;
        if (++payloads[payload] > 1) Fail(stats, messages, tid + ": job twice: " + payload);
        auto m = t.jobs.find(jid);
        if (m == t.jobs.end()) {
          auto mp = std::find(t.maybe_payloads.begin(), t.maybe_payloads.end(), payload);
          if (mp == t.maybe_payloads.end()) {
            Fail(stats, messages, tid + ": unknown job " + jid + " " + payload);
          } else {
            t.maybe_payloads.erase(mp);
          }
        } else if (m->second.state == JobModel::kAcked) {
          Fail(stats, messages, tid + ": acked job back: " + jid);
        } else if (m->second.payload != payload) {
          Fail(stats, messages, tid + ": job " + jid + " payload " + payload);
        }
      }
      for (const auto& [jid, job] : t.jobs) {
        ++stats.checks;
        if (job.state == JobModel::kLive && jobs.count(jid) == 0) {
          Fail(stats, messages, tid + ": acknowledged job lost: " + jid);
        }
      }
      t.jobs.clear();
      t.maybe_payloads.clear();
      for (const auto& [jid, payload] : jobs) t.jobs[jid] = JobModel{payload};
      ++it;
    }
  }
  inflight_batches_.clear();
  // The raw database: no data of a tenant number that is not live.
  rocksdb::DBOptions db_options;
  std::vector<std::string> families;
  const std::string path = dir_ + "/db";
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, path, &families);
  if (!s.ok()) {
    Fail(stats, messages, "raw: list column families: " + s.ToString());
    return;
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : families) {
    ++stats.checks;
    if (name.rfind("tenant-", 0) == 0) {
      uint64_t number = std::stoull(name.substr(7));
      if (live_numbers.count(number) == 0) {
        Fail(stats, messages, "raw: column family " + name + " of no live tenant");
      }
    }
    // Only the shared family is read; the others are opened because a
    // read-only open wants every family it names, not all of them.
    if (name == "tenancy.shared" || name == rocksdb::kDefaultColumnFamilyName) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  s = rocksdb::DB::OpenForReadOnly(db_options, path, descriptors, &handles, &raw);
  if (!s.ok()) {
    Fail(stats, messages, "raw: open: " + s.ToString());
    return;
  }
  for (size_t i = 0; i < descriptors.size(); ++i) {
    if (descriptors[i].name != "tenancy.shared") continue;
    std::unique_ptr<rocksdb::Iterator> iter(raw->NewIterator(rocksdb::ReadOptions(), handles[i]));
    for (iter->SeekToFirst(); iter->Valid();) {
      ++stats.checks;
      if (iter->key().size() < 8) {
        Fail(stats, messages, "raw: short key in the shared family");
        iter->Next();
        continue;
      }
      uint64_t number = FromBigEndian(std::string_view(iter->key().data(), 8));
      if (live_numbers.count(number) == 0) {
        Fail(stats, messages,
             "raw: data of tenant number " + std::to_string(number) + ", which is no live tenant");
      }
      if (number == UINT64_MAX) break;
      iter->Seek(BigEndian(number + 1));
    }
    if (!iter->status().ok()) Fail(stats, messages, "raw: " + iter->status().ToString());
  }
  for (auto* handle : handles) raw->DestroyColumnFamilyHandle(handle);
  delete raw;
}

const char* KillName(int plan) {
  static const char* const kNames[] = {"early", "timed", "purge", "import", "tenants-file"};
  return kNames[plan];
}

int RunParent(const Flags& flags, const char* self) {
  std::string dir = flags.dir;
  if (dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "torture-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return 2;
    dir = pattern;
  } else {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  Checker checker(dir);
  {
    auto engine = Engine::Open(BaseOptions(dir));
    if (!engine.ok()) {
      fprintf(stderr, "torture: open: %s\n", engine.status().ToString().c_str());
      return 2;
    }
    for (int i = 0; i < kPersistent; ++i) {
      TenantSpec spec;
      spec.id = PersistentId(i);
      spec.placement = i < kDedicated ? Placement::kDedicated : Placement::kShared;
      if (!(*engine)->registry().Create(spec).ok()) return 2;
      checker.AddTenant(spec.id);
    }
  }
  std::mt19937_64 rng(flags.seed);
  CycleStats total;
  auto started = std::chrono::steady_clock::now();
  for (int cycle = 1; cycle <= flags.cycles; ++cycle) {
    bool sync = rng() % 2 == 0;
    bool stall = rng() % 4 == 0;
    int plan = static_cast<int>(rng() % 10);
    // 0 early (in Open), 1 at a random time, 2 in a purge, 3 in an import,
    // 4 while a tenants file is applied.
    plan = plan == 0 ? 0 : plan < 4 ? 1 : plan < 7 ? 2 : plan < 9 ? 3 : 4;
    double at = flags.seconds * (0.05 + 0.95 * std::uniform_real_distribution<>(0, 1)(rng));
    int early_ms = static_cast<int>(rng() % 60);
    int marker_delay_us = rng() % 3 == 0 ? 0 : static_cast<int>(rng() % 5000);
    // Which purge or import: the first is often a leftover's, at the start.
    int markers_wanted = 1 + static_cast<int>(rng() % 3);

    int fds[2];
    if (pipe(fds) != 0) return 2;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> args = {self,      "--child",
                                     "--dir",   dir,
                                     "--cycle", std::to_string(cycle),
                                     "--sync",  sync ? "1" : "0",
                                     "--stall", stall ? "1" : "0",
                                     "--seed",  std::to_string(flags.seed)};
    if (flags.selftest) args.push_back("--selftest");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t child;
    if (posix_spawn(&child, self, &actions, nullptr, argv.data(), environ) != 0) return 2;
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    auto spawned = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - spawned).count();
    };
    bool ready = false, exited = false;
    // Reads the child's markers for up to `ms`; true when `want` came.
    auto wait_marker = [&](char want, int ms) {
      struct pollfd p = {fds[0], POLLIN, 0};
      if (poll(&p, 1, ms) <= 0) return false;
      char buf[256];
      ssize_t n = read(fds[0], buf, sizeof(buf));
      if (n <= 0) {
        exited = true;
        return false;
      }
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == 'R') ready = true;
        if (buf[i] == want) --markers_wanted;
      }
      return markers_wanted <= 0;
    };
    if (plan == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(early_ms));
    } else if (plan == 1) {
      while (!exited && elapsed() < at + 30 && !(ready && elapsed() >= at)) {
        wait_marker('R', 10);
      }
    } else {
      char want = plan == 2 ? 'P' : plan == 3 ? 'I' : 'G';
      if (want == 'G') markers_wanted = 1;  // applies are rarer than purges
      // Markers before the child is ready cannot be, but read them anyway.
      while (!exited && elapsed() < flags.seconds * 3 + 30) {
        if (wait_marker(want, 50) && ready) break;
        if (ready && elapsed() > flags.seconds * 3) break;
      }
      if (marker_delay_us > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(marker_delay_us));
    }
    double killed_at = elapsed();
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    close(fds[0]);
    std::vector<std::string> messages;
    CycleStats stats;
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
      stats.failures++;
      messages.push_back("child ended on its own, status " + std::to_string(status));
    }
    std::string log = dir + "/oracle-" + std::to_string(cycle) + ".log";
    CycleStats replay = checker.Replay(log, sync);
    stats.acked = replay.acked;
    stats.uncovered = replay.uncovered;
    checker.Check(stats, messages);
    printf(
        "cycle %d: sync=%d kill=%s at %.3fs ready=%d acked=%llu (unflushed %llu) checks=%llu "
        "failures=%llu\n",
        cycle, sync ? 1 : 0, KillName(plan), killed_at, ready ? 1 : 0,
        static_cast<unsigned long long>(stats.acked),
        static_cast<unsigned long long>(stats.uncovered),
        static_cast<unsigned long long>(stats.checks),
        static_cast<unsigned long long>(stats.failures));
    for (const std::string& m : messages) printf("  FAIL %s\n", m.c_str());
    fflush(stdout);
    total.acked += stats.acked;
    total.checks += stats.checks;
    total.failures += stats.failures;
    if (flags.dir.empty()) std::filesystem::remove(log);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  printf(
      "torture: cycles=%d operations_acknowledged=%llu checks=%llu failures=%llu "
      "seconds=%.1f seed=%llu\n",
      flags.cycles, static_cast<unsigned long long>(total.acked),
      static_cast<unsigned long long>(total.checks),
      static_cast<unsigned long long>(total.failures), seconds,
      static_cast<unsigned long long>(flags.seed));
  if (flags.dir.empty()) std::filesystem::remove_all(dir);
  return total.failures == 0 ? 0 : 1;
}

bool ParseFlags(int argc, char** argv, Flags& flags) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    try {
      if (a == "--child") {
        flags.child = true;
      } else if (a == "--cycles") {
        flags.cycles = std::stoi(value());
      } else if (a == "--seconds") {
        flags.seconds = std::stod(value());
      } else if (a == "--seed") {
        flags.seed = std::stoull(value());
      } else if (a == "--dir") {
        flags.dir = value();
      } else if (a == "--cycle") {
        flags.cycle = std::stoi(value());
      } else if (a == "--sync") {
        flags.sync = value() == "1";
      } else if (a == "--selftest") {
        flags.selftest = true;
      } else if (a == "--stall") {
        flags.stall = value() == "1";
      } else {
        return false;
      }
    } catch (const std::exception&) {
      return false;
    }
  }
  return flags.cycles >= 1 && flags.seconds > 0;
}

}  // namespace
}  // namespace tenancy::torture

int main(int argc, char** argv) {
  tenancy::torture::Flags flags;
  if (!tenancy::torture::ParseFlags(argc, argv, flags)) {
    fprintf(stderr, "usage: torture --cycles N --seconds S --seed X [--dir D]\n");
    return 2;
  }
  if (flags.child) {
    tenancy::torture::Child child;
    child.flags = flags;
    return child.Run();
  }
  // The child is this binary again: a fresh process, not a fork of one that
  // has RocksDB's threads.
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  return tenancy::torture::RunParent(flags, self.c_str());
}
