// Tenant data lifecycle in the library: archives (export, import as a clone,
// a move or a replace), refusals of bad archives with nothing changed, a
// crash in the middle of an import, backups with restore of one tenant, and
// archives kept on purge.

#include "tenancy/lifecycle.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "engine_fixture.h"
#include "rocksdb/db.h"
#include "tenancy/archive.h"
#include "tenancy/jobs.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using testing::EngineFixture;
namespace fs = std::filesystem;

// An archive in memory.
class StringSink final : public ArchiveSink {
 public:
  absl::Status Append(std::string_view data) override {
    bytes.append(data);
    return absl::OkStatus();
  }
  std::string bytes;
};

class StringSource final : public ArchiveSource {
 public:
  explicit StringSource(std::string bytes) : bytes_(std::move(bytes)) {}
  absl::StatusOr<size_t> Read(char* buffer, size_t capacity) override {
    // Small, uneven reads: chunk boundaries must not matter.
    size_t n = std::min({capacity, bytes_.size() - pos_, size_t{7777}});
    std::memcpy(buffer, bytes_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string bytes_;
  size_t pos_ = 0;
};

std::map<std::string, std::string> AllKv(const Tenant& tenant) {
  std::map<std::string, std::string> out;
  ScanOptions options;
  options.limit = 1000;
  while (true) {
    auto page = tenant.kv().Scan(options);
    if (!page.ok()) throw std::runtime_error(page.status().ToString());
    for (const auto& item : page->items) out[item.key] = item.value;
    if (page->cursor.empty()) break;
    options.cursor = page->cursor;
  }
  return out;
}

// Every job of the tenant with what an archive must carry, in a stable text.
std::vector<std::string> AllJobs(const Tenant& tenant) {
  std::vector<std::string> out;
  for (JobState state :
       {JobState::kQueued, JobState::kDelayed, JobState::kClaimed, JobState::kDead}) {
    ListJobsOptions options;
    options.state = state;
    options.limit = 1000;
    options.include_payload = true;
    auto page = tenant.jobs().List(options);
    if (!page.ok()) throw std::runtime_error(page.status().ToString());
    for (const Job& job : page->jobs) {
      out.push_back(absl::StrCat(job.id, "|", job.type, "|", job.payload, "|",
                                 static_cast<int>(job.state), "|", job.attempts, "|", job.priority,
                                 "|", absl::FormatTime(job.next_run_at), "|", job.last_error));
    }
  }
  return out;
}

// A tenant with key-value data of varied sizes and jobs in every state.
void Fill(Tenant& tenant, int keys, const std::string& tag = "v") {
  std::mt19937 rng(7);
  for (int i = 0; i < keys; ++i) {
    std::string key = absl::StrCat("key/", i);
    std::string value = absl::StrCat(tag, std::string(rng() % 300, 'x'), i);
    REQUIRE(tenant.kv().Put(key, value).ok());
  }
  for (int i = 0; i < 6; ++i) {
    JobSpec spec;
    spec.type = i % 2 == 0 ? "email" : "resize";
    spec.payload = absl::StrCat("payload-", i);
    spec.priority = i;
    spec.max_attempts = 1;
    if (i == 5) spec.delay = absl::Hours(1);
    REQUIRE(tenant.jobs().Enqueue(spec).ok());
  }
  ClaimOptions claim;
  claim.lease = absl::Minutes(5);
  auto claimed = tenant.jobs().Claim(claim);  // stays claimed
  REQUIRE(claimed.ok());
  REQUIRE(claimed->has_value());
  auto failed = tenant.jobs().Claim(claim);
  REQUIRE(failed.ok());
  REQUIRE(failed->has_value());
  NackOptions nack;
  nack.error = "boom";
  REQUIRE(tenant.jobs().Nack((*failed)->id, (*failed)->lease, nack).ok());  // dead (1 attempt)
}

std::string ExportToString(Engine& engine, const std::string& id) {
  StringSink sink;
  auto summary = engine.lifecycle().Export(id, sink);
  if (!summary.ok()) throw std::runtime_error(summary.status().ToString());
  return sink.bytes;
}

TEST_CASE("Lifecycle: export then import under another id equals the source", "[lifecycle]") {
  EngineFixture f;
  Tenant source = f.Create("source");
  Fill(source, 2000);
  auto key = f.registry().CreateApiKey("source");
  REQUIRE(key.ok());
  std::string archive = ExportToString(*f.engine, "source");

  StringSource input(archive);
  ImportOptions options;
  options.tenant_id = "clone";
  auto result = f.engine->lifecycle().Import(input, options);
  REQUIRE(result.ok());
  CHECK(result->archive.tenant_id == "source");
  CHECK(result->archive.keys == 2000);
  CHECK(result->archive.jobs == 6);
  CHECK(result->archive.archive_bytes == archive.size());
  // A clone gets a new key; the source's keys stay the source's.
  REQUIRE(result->new_key.has_value());
  auto owner = f.engine->ResolveApiKey(result->new_key->secret);
  REQUIRE(owner.ok());
  CHECK(owner->id() == "clone");
  CHECK(f.engine->ResolveApiKey(key->secret)->id() == "source");

  Tenant clone = *f.engine->GetTenant("clone");
  CHECK(AllKv(clone) == AllKv(source));
  CHECK(AllJobs(clone) == AllJobs(source));
  CHECK(AllJobs(clone).size() == 6);
  auto recount = clone.kv().Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
  CHECK(f.registry().Get("clone")->usage == f.registry().Get("source")->usage);
  CHECK(result->usage == f.registry().Get("source")->usage);

  // The clone is a tenant like any other: writable, and apart from the source.
  REQUIRE(clone.kv().Put("key/0", "changed").ok());
  CHECK(*source.kv().Get("key/0") != "changed");
}

TEST_CASE(
    "Lifecycle: a write fence holds every acknowledged write in the export, later ones "
    "refused",
    "[lifecycle]") {
  EngineFixture f;
  Tenant tenant = f.Create("acme");
  Tenant neighbour = f.Create("neighbour");
  // Writers that record what was acknowledged, racing the fence.
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0};
  std::vector<std::set<std::string>> acked(3);
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop.load(); ++i) {
        const std::string key = absl::StrCat("w", w, "/", i);
        absl::Status s;
        if (w == 2) {
          WriteBatch batch;
          batch.Put(key, "v");
          batch.Put(key + "b", "v");
          s = tenant.kv().Write(batch);
        } else {
          s = tenant.kv().Put(key, "v");
        }
        if (s.ok()) {
          acked[w].insert(key);
        } else if (absl::IsUnavailable(s) && GetRetryAfter(s).has_value()) {
          refused.fetch_add(1);
        } else {
          throw std::runtime_error(s.ToString());
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto fence = f.engine->lifecycle().FenceWrites("acme");
  REQUIRE(fence.ok());
  CHECK(fence->holding());
  // A second fence of the same tenant is refused; reads and other tenants go on.
  CHECK(absl::IsAborted(f.engine->lifecycle().FenceWrites("acme").status()));
  CHECK(absl::IsNotFound(f.engine->lifecycle().FenceWrites("nobody").status()));
  CHECK(neighbour.kv().Put("k", "v").ok());
  const std::string archive = ExportToString(*f.engine, "acme");
  const int refused_before = refused.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  stop = true;
  for (auto& t : writers) t.join();
  CHECK(refused.load() > refused_before);  // the writers kept trying, and were refused
  // Every acknowledged write is in the archive, and nothing else was written.
  StringSource input(archive);
  ImportOptions options;
  options.tenant_id = "copy";
  REQUIRE(f.engine->lifecycle().Import(input, options).ok());
  const auto exported = AllKv(*f.engine->GetTenant("copy"));
  CHECK(AllKv(tenant) == exported);
  size_t acknowledged = 0;
  for (int w = 0; w < 3; ++w) {
    for (const std::string& key : acked[w]) {
      acknowledged += w == 2 ? 2 : 1;
      CHECK(exported.contains(key));
      if (w == 2) CHECK(exported.contains(key + "b"));
    }
  }
  CHECK(exported.size() == acknowledged);
  // Jobs and deletes are writes too.
  JobSpec job;
  job.type = "email";
  CHECK(absl::IsUnavailable(tenant.jobs().Enqueue(job).status()));
  CHECK(absl::IsUnavailable(tenant.kv().Delete("w0/0")));
  CHECK(tenant.kv().Get("w0/0").ok());
  // Released: writes again.
  fence->Release();
  CHECK_FALSE(fence->holding());
  CHECK(tenant.kv().Put("after", "v").ok());
  CHECK(f.engine->lifecycle().FenceWrites("acme").ok());  // released again at once
  CHECK(tenant.kv().Put("after2", "v").ok());
}

TEST_CASE("Lifecycle: ClearData empties a tenant's data and keeps its spec and keys",
          "[lifecycle]") {
  EngineFixture f;
  {
    Tenant tenant = f.Create("acme");
    Fill(tenant, 300);
  }
  auto key = f.registry().CreateApiKey("acme");
  REQUIRE(key.ok());
  const TenantSpec spec = f.registry().Get("acme")->spec;
  REQUIRE(f.engine->lifecycle().ClearData("acme").ok());
  {
    Tenant now = *f.engine->GetTenant("acme");
    CHECK(AllKv(now).empty());
    CHECK(AllJobs(now).empty());
    auto info = f.registry().Get("acme");
    REQUIRE(info.ok());
    CHECK(info->usage.bytes == 0);
    CHECK(info->usage.keys == 0);
    CHECK(info->spec == spec);
    CHECK(f.engine->ResolveApiKey(key->secret)->id() == "acme");
    CHECK(now.kv().Put("k", "v").ok());
  }
  CHECK(absl::IsNotFound(f.engine->lifecycle().ClearData("nobody")));
  // The old range stays gone after a restart.
  f.Reopen();
  CHECK(AllKv(*f.engine->GetTenant("acme")) == std::map<std::string, std::string>{{"k", "v"}});
  auto recount = f.engine->GetTenant("acme")->kv().Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
}

TEST_CASE("Lifecycle: an imported tenant survives a restart", "[lifecycle]") {
  EngineFixture f;
  std::map<std::string, std::string> before;
  {
    Tenant source = f.Create("source");
    Fill(source, 500);
    StringSource input(ExportToString(*f.engine, "source"));
    ImportOptions options;
    options.tenant_id = "clone";
    REQUIRE(f.engine->lifecycle().Import(input, options).ok());
    before = AllKv(*f.engine->GetTenant("clone"));
  }
  f.Reopen();
  CHECK(AllKv(*f.engine->GetTenant("clone")) == before);
  auto recount = f.engine->GetTenant("clone")->kv().Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
}

TEST_CASE("Lifecycle: an archive imported under its own id carries its keys and spec",
          "[lifecycle]") {
  EngineFixture f;
  TenantSpec spec;
  spec.id = "mover";
  spec.quota.storage_bytes = 10 << 20;
  spec.labels["team"] = "blue";
  auto created = f.registry().CreateWithKey(spec);
  REQUIRE(created.ok());
  Tenant mover = *f.engine->GetTenant("mover");
  Fill(mover, 100);
  auto kv = AllKv(mover);
  std::string archive = ExportToString(*f.engine, "mover");
  REQUIRE(f.registry().Purge("mover").ok());
  CHECK(!f.engine->ResolveApiKey(created->key.secret).ok());

  StringSource input(archive);
  auto result = f.engine->lifecycle().Import(input, ImportOptions{});
  REQUIRE(result.ok());
  CHECK(!result->new_key.has_value());
  auto back = f.engine->ResolveApiKey(created->key.secret);
  REQUIRE(back.ok());
  CHECK(back->id() == "mover");
  CHECK(AllKv(*back) == kv);
  auto info = f.registry().Get("mover");
  REQUIRE(info.ok());
  CHECK(info->spec == spec);
  CHECK(absl::ToUnixMicros(info->created_at) == absl::ToUnixMicros(created->info.created_at));

  // Importing again as a new tenant: it exists.
  StringSource again(archive);
  CHECK(absl::IsAlreadyExists(f.engine->lifecycle().Import(again, ImportOptions{}).status()));
  // Replacing an unknown tenant: not found.
  StringSource unknown(archive);
  ImportOptions replace;
  replace.tenant_id = "nobody";
  replace.mode = ImportMode::kReplace;
  CHECK(absl::IsNotFound(f.engine->lifecycle().Import(unknown, replace).status()));
}

TEST_CASE("Lifecycle: a replace is atomic for readers", "[lifecycle]") {
  EngineFixture f;
  Tenant t = f.Create("swap");
  constexpr int kKeys = 300;
  for (int i = 0; i < kKeys; ++i) REQUIRE(t.kv().Put(absl::StrCat("k", i), "new").ok());
  std::string archive = ExportToString(*f.engine, "swap");
  for (int i = 0; i < kKeys; ++i) REQUIRE(t.kv().Put(absl::StrCat("k", i), "old").ok());

  std::atomic<bool> stop{false};
  std::atomic<int> mixed{0}, scans{0}, saw_new{0}, errors{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto tenant = f.engine->GetTenant("swap");
        if (!tenant.ok()) {
          errors++;
          continue;
        }
        ScanOptions options;
        options.limit = 1000;
        auto page = tenant->kv().Scan(options);
        if (!page.ok()) continue;  // a handle taken just before the swap: NOT_FOUND
        std::set<std::string> values;
        for (const auto& item : page->items) values.insert(item.value);
        if (values.size() != 1 || page->items.size() != kKeys) mixed++;
        if (values.count("new")) saw_new++;
        scans++;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(50));
  StringSource input(archive);
  ImportOptions options;
  options.mode = ImportMode::kReplace;
  auto result = f.engine->lifecycle().Import(input, options);
  absl::SleepFor(absl::Milliseconds(50));
  stop = true;
  for (auto& reader : readers) reader.join();
  REQUIRE(result.ok());
  CHECK(mixed.load() == 0);
  CHECK(errors.load() == 0);
  CHECK(scans.load() > 0);
  CHECK(saw_new.load() > 0);
  Tenant after = *f.engine->GetTenant("swap");
  CHECK(*after.kv().Get("k0") == "new");
  // The old handle is refused, not pointed at the replaced data.
  CHECK(absl::IsNotFound(t.kv().Get("k0").status()));
  auto recount = after.kv().Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
}

TEST_CASE("Lifecycle: corrupt, truncated and foreign archives change nothing", "[lifecycle]") {
  EngineFixture f;
  Tenant t = f.Create("victim");
  Fill(t, 3000);
  auto kv = AllKv(t);
  auto jobs = AllJobs(t);
  std::string archive = ExportToString(*f.engine, "victim");
  REQUIRE(archive.size() > 100000);
  auto db_files = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(f.Options().path)) {
      names.push_back(e.path().filename().string());
    }
    return names;
  };

  auto refused = [&](const std::string& bytes, ImportMode mode) {
    StringSource input(bytes);
    ImportOptions options;
    options.mode = mode;
    options.tenant_id = mode == ImportMode::kReplace ? "victim" : "other";
    return f.engine->lifecycle().Import(input, options).status();
  };
  std::vector<size_t> offsets = {0, 5, 9, 11, 12, 13, 17, 20, 40, 60, 100, 1000, 5000, 50000};
  for (size_t i = 1; i < 12; ++i) offsets.push_back(archive.size() * i / 12);
  for (size_t back : {1, 2, 4, 5, 9, 20, 40, 48}) offsets.push_back(archive.size() - back);
  for (ImportMode mode : {ImportMode::kReplace, ImportMode::kCreate}) {
    for (size_t offset : offsets) {
      std::string flipped = archive;
      flipped[offset] = static_cast<char>(flipped[offset] ^ 0x20);
      absl::Status s = refused(flipped, mode);
      INFO("flipped byte at " << offset << ": " << s.ToString());
      CHECK(absl::IsInvalidArgument(s));
      absl::Status t2 = refused(archive.substr(0, offset), mode);
      INFO("truncated at " << offset << ": " << t2.ToString());
      CHECK(absl::IsInvalidArgument(t2));
    }
  }
  CHECK(absl::IsInvalidArgument(refused(archive + "x", ImportMode::kCreate)));
  CHECK(absl::IsInvalidArgument(refused("", ImportMode::kCreate)));
  CHECK(absl::IsInvalidArgument(refused(std::string(4096, 'z'), ImportMode::kCreate)));
  CHECK(absl::IsInvalidArgument(refused("{\"tenants\": []}", ImportMode::kCreate)));
  std::string newer = archive;
  newer[8] = 2;  // major version 2
  absl::Status version = refused(newer, ImportMode::kCreate);
  CHECK(absl::IsInvalidArgument(version));
  CHECK(std::string(version.message()).find("version 2.0") != std::string::npos);

  // Nothing changed: no new tenant, the victim's data as it was, no staged
  // files left, and usage still exact.
  CHECK(f.registry().size() == 1);
  CHECK(AllKv(t) == kv);
  CHECK(AllJobs(t) == jobs);
  for (const std::string& name : db_files()) CHECK(name.rfind("tenancy-import-", 0) != 0);
  auto recount = t.kv().Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
}

TEST_CASE("Lifecycle: an import that would pass the quota or take another's key is refused",
          "[lifecycle]") {
  EngineFixture f;
  Tenant big = f.Create("big");
  Fill(big, 1000);
  auto key = f.registry().CreateApiKey("big");
  REQUIRE(key.ok());
  std::string archive = ExportToString(*f.engine, "big");
  Quota small;
  small.storage_bytes = 1000;
  Tenant tiny = f.Create("tiny", small);
  REQUIRE(tiny.kv().Put("mine", "yes").ok());
  StringSource input(archive);
  ImportOptions options;
  options.tenant_id = "tiny";
  options.mode = ImportMode::kReplace;
  absl::Status quota = f.engine->lifecycle().Import(input, options).status();
  CHECK(absl::IsResourceExhausted(quota));
  CHECK(*tiny.kv().Get("mine") == "yes");

  // The archive's key now belongs to another tenant.
  REQUIRE(f.registry().RevokeApiKey("big", key->key_id).ok());
  f.Create("thief");
  REQUIRE(f.registry().ImportApiKey("thief", key->secret).ok());
  REQUIRE(big.kv().Put("after", "export").ok());
  StringSource again(archive);
  ImportOptions replace;
  replace.mode = ImportMode::kReplace;
  CHECK(absl::IsAlreadyExists(f.engine->lifecycle().Import(again, replace).status()));
  CHECK(*big.kv().Get("after") == "export");
  CHECK(f.engine->ResolveApiKey(key->secret)->id() == "thief");
}

TEST_CASE("Lifecycle: dedicated tenants export and import", "[lifecycle]") {
  EngineFixture f;
  {
    Tenant t = f.Create("own", Quota{}, Placement::kDedicated);
    Fill(t, 500);
    std::string archive = ExportToString(*f.engine, "own");
    StringSource input(archive);
    ImportOptions options;
    options.tenant_id = "own-copy";
    REQUIRE(f.engine->lifecycle().Import(input, options).ok());
    Tenant copy = *f.engine->GetTenant("own-copy");
    CHECK(f.registry().Get("own-copy")->spec.placement == Placement::kDedicated);
    CHECK(AllKv(copy) == AllKv(t));
    StringSource replace_input(archive);
    ImportOptions replace;
    replace.mode = ImportMode::kReplace;
    REQUIRE(t.kv().Put("extra", "1").ok());
    REQUIRE(f.engine->lifecycle().Import(replace_input, replace).ok());
    CHECK(absl::IsNotFound(f.engine->GetTenant("own")->kv().Get("extra").status()));
  }
  f.Reopen();
  CHECK(AllKv(*f.engine->GetTenant("own")) == AllKv(*f.engine->GetTenant("own-copy")));
}

// Counts the keys of the engine's shared column family, read raw.
size_t SharedKeys(const std::string& path) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : names) {
    rocksdb::ColumnFamilyOptions options;
    if (name == "tenancy.meta") continue;
    descriptors.emplace_back(name, options);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  REQUIRE(
      rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), path, descriptors, &handles, &db).ok());
  size_t count = 0;
  for (auto* h : handles) {
    if (h->GetName() != "tenancy.shared") continue;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  delete db;
  return count;
}

TEST_CASE("Lifecycle: SIGKILL in the middle of an import leaves no half tenant", "[lifecycle]") {
  testing::TempDir dir;
  std::string db = (dir.path() / "db").string();
  std::string archive_path = (dir.path() / "source.tnca").string();
  std::map<std::string, std::string> kv;
  {
    EngineOptions options;
    options.path = db;
    options.logger = NewNullLogger();
    auto engine = Engine::Open(options);
    REQUIRE(engine.ok());
    TenantSpec spec;
    spec.id = "source";
    REQUIRE((*engine)->registry().Create(spec).ok());
    Tenant source = *(*engine)->GetTenant("source");
    for (int i = 0; i < 40000; ++i) {
      REQUIRE(source.kv().Put(absl::StrCat("key", i), std::string(200, 'a' + i % 26)).ok());
    }
    kv = AllKv(source);
    auto sink = FileArchiveSink::Open(archive_path);
    REQUIRE(sink.ok());
    REQUIRE((*engine)->lifecycle().Export("source", **sink).ok());
    REQUIRE((*sink)->Close().ok());
  }
  size_t shared_before = SharedKeys(db);
  for (const char* mode : {"create", "replace"}) {
    INFO(mode);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::string mode_arg = mode;
    char* child_argv[] = {const_cast<char*>(TENANCY_LIFECYCLE_CHILD), db.data(),
                          archive_path.data(), mode_arg.data(), nullptr};
    pid_t child;
    REQUIRE(posix_spawn(&child, TENANCY_LIFECYCLE_CHILD, &actions, nullptr, child_argv, environ) ==
            0);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    // The child says "halfway" once half the archive has been read (its SST
    // files are being written), then goes on; it is killed at once.
    std::string said;
    char c;
    while (said.find("halfway\n") == std::string::npos && read(fds[0], &c, 1) == 1) said += c;
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    close(fds[0]);
    REQUIRE(said.find("halfway\n") != std::string::npos);
    CHECK(WIFSIGNALED(status));

    EngineOptions options;
    options.path = db;
    options.logger = NewNullLogger();
    {
      auto engine = Engine::Open(options);
      REQUIRE(engine.ok());
      CHECK(absl::IsNotFound((*engine)->registry().Get("target").status()));
      CHECK((*engine)->registry().size() == 1);
      CHECK(AllKv(*(*engine)->GetTenant("source")) == kv);
    }
    // No staged files and no orphaned keys: the shared column family holds
    // the source's keys only, as before.
    for (const auto& e : fs::directory_iterator(db)) {
      CHECK(e.path().filename().string().rfind("tenancy-import-", 0) != 0);
    }
    CHECK(SharedKeys(db) == shared_before);
  }
  // And the import done whole afterwards works.
  EngineOptions options;
  options.path = db;
  options.logger = NewNullLogger();
  auto engine = Engine::Open(options);
  REQUIRE(engine.ok());
  auto source = FileArchiveSource::Open(archive_path);
  REQUIRE(source.ok());
  ImportOptions import;
  import.tenant_id = "target";
  REQUIRE((*engine)->lifecycle().Import(**source, import).ok());
  CHECK(AllKv(*(*engine)->GetTenant("target")) == kv);
}

TEST_CASE("Lifecycle: backup, more writes, restore one tenant", "[lifecycle]") {
  EngineFixture f;
  Tenant a = f.Create("alpha");
  Tenant b = f.Create("beta");
  Fill(a, 300, "one");
  Fill(b, 300, "one");
  auto a_then = AllKv(a);
  auto a_jobs_then = AllJobs(a);
  auto backup = f.engine->lifecycle().CreateBackup();
  REQUIRE(backup.ok());
  CHECK(backup->size_bytes > 0);
  REQUIRE(f.engine->lifecycle().VerifyBackup(backup->backup_id).ok());

  for (int i = 0; i < 300; ++i) {
    REQUIRE(a.kv().Put(absl::StrCat("key/", i), "two").ok());
    REQUIRE(b.kv().Put(absl::StrCat("key/", i), "two").ok());
  }
  REQUIRE(a.kv().Put("only-after", "x").ok());
  auto b_now = AllKv(b);
  auto second = f.engine->lifecycle().CreateBackup();  // incremental
  REQUIRE(second.ok());
  auto listed = f.engine->lifecycle().ListBackups();
  REQUIRE(listed.ok());
  CHECK(listed->size() == 2);

  auto restored = f.engine->lifecycle().RestoreTenant("alpha", backup->backup_id);
  INFO(restored.status().ToString());
  REQUIRE(restored.ok());
  Tenant a_after = *f.engine->GetTenant("alpha");
  CHECK(AllKv(a_after) == a_then);
  CHECK(AllJobs(a_after) == a_jobs_then);
  CHECK(AllKv(b) == b_now);  // the neighbour keeps its newer writes
  auto recount = a_after.kv().Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
  // The scratch directory is gone; only the backups remain.
  for (const auto& e : fs::directory_iterator(f.engine->lifecycle().backup_dir())) {
    CHECK(e.path().filename() == "engine");
  }

  // A purged tenant comes back from a backup too.
  REQUIRE(f.registry().Purge("beta").ok());
  REQUIRE(f.engine->lifecycle().RestoreTenant("beta", second->backup_id).ok());
  CHECK(AllKv(*f.engine->GetTenant("beta")) == b_now);

  CHECK(absl::IsNotFound(f.engine->lifecycle().RestoreTenant("alpha", 999).status()));
  CHECK(absl::IsNotFound(f.engine->lifecycle().RestoreTenant("gamma", 1).status()));
  CHECK(absl::IsNotFound(f.engine->lifecycle().DeleteBackup(999)));
  REQUIRE(f.engine->lifecycle().DeleteBackup(backup->backup_id).ok());
  CHECK(f.engine->lifecycle().ListBackups()->size() == 1);
  CHECK(absl::IsNotFound(f.engine->lifecycle().VerifyBackup(backup->backup_id)));
}

TEST_CASE("Lifecycle: purge with an archive, listed and brought back", "[lifecycle]") {
  EngineFixture f;
  Tenant t = f.Create("leaver");
  Fill(t, 200);
  auto kv = AllKv(t);
  auto jobs = AllJobs(t);
  auto name = f.engine->lifecycle().ArchiveAndPurge("leaver");
  REQUIRE(name.ok());
  CHECK(absl::IsNotFound(f.registry().Get("leaver").status()));
  auto archives = f.engine->lifecycle().ListArchives();
  REQUIRE(archives.ok());
  REQUIRE(archives->size() == 1);
  CHECK((*archives)[0].name == *name);
  CHECK((*archives)[0].tenant_id == "leaver");
  CHECK((*archives)[0].size_bytes > 0);

  auto back = f.engine->lifecycle().RestoreArchive(*name, "");
  REQUIRE(back.ok());
  Tenant restored = *f.engine->GetTenant("leaver");
  CHECK(AllKv(restored) == kv);
  CHECK(AllJobs(restored) == jobs);
  // Disabled to be archived, it comes back enabled.
  CHECK(f.registry().Get("leaver")->state == TenantState::kActive);

  CHECK(absl::IsNotFound(f.engine->lifecycle().RestoreArchive("nope.tnca", "x").status()));
  CHECK(absl::IsInvalidArgument(
      f.engine->lifecycle().RestoreArchive("../../etc/passwd", "x").status()));
  CHECK(absl::IsNotFound(f.engine->lifecycle().ArchiveAndPurge("ghost").status()));
}

}  // namespace
}  // namespace tenancy

namespace tenancy {
namespace {

TEST_CASE("Lifecycle: an archive is held to the importing engine's size limits", "[lifecycle]") {
  testing::EngineFixture f;
  Tenant big = f.Create("big");
  REQUIRE(big.kv().Put("large", std::string(5000, 'x')).ok());
  std::string archive = ExportToString(*f.engine, "big");

  testing::TempDir dir;
  EngineOptions options;
  options.path = (dir.path() / "small").string();
  options.logger = NewNullLogger();
  options.max_value_bytes = 1000;
  auto small = Engine::Open(options);
  REQUIRE(small.ok());
  StringSource input(archive);
  absl::Status s = (*small)->lifecycle().Import(input, ImportOptions{}).status();
  CHECK(absl::IsInvalidArgument(s));
  CHECK(std::string(s.message()).find("max_value_bytes") != std::string::npos);
  CHECK((*small)->registry().size() == 0);
}

}  // namespace
}  // namespace tenancy
