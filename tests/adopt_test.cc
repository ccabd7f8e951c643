// Adoption of a plain single-tenant RocksDB directory
// (EngineOptions::adopt_existing_data): the keys of its `default` column
// family become a tenant's key-value data in place, exactly once, with exact
// usage, across a crash half way.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "engine_fixture.h"
#include "plain_rocksdb.h"
#include "rocksdb/comparator.h"

namespace tenancy::testing {
namespace {

constexpr int kKeys = 100000;

EngineOptions AdoptOptions(const std::string& path, const std::string& tenant,
                           std::shared_ptr<Logger> logger) {
  EngineOptions options;
  options.path = path;
  options.adopt_existing_data = tenant;
  options.logger = std::move(logger);
  options.keep_mutex_deadlock_detection = true;
  options.memtable_budget_bytes = 64 << 20;
  options.block_cache_bytes = 16 << 20;
  return options;
}

bool AnyMessageHas(const RecordingLogger& logger, const std::string& text) {
  for (const std::string& m : logger.Messages()) {
    if (m.find(text) != std::string::npos) return true;
  }
  return false;
}

// Every key [0, n) of the plain directory is in `tenant` with its value, the
// usage is `extra` more than their sizes and equals a recount.
void CheckAdopted(Engine& engine, const std::string& tenant, int n, int64_t plain_bytes,
                  Usage extra = {}) {
  auto handle = engine.GetTenant(tenant);
  REQUIRE(handle.ok());
  KvStore kv = handle->kv();
  int wrong = 0;
  for (int i = 0; i < n; ++i) {
    auto value = kv.Get(PlainKey(i));
    if (!value.ok() || *value != PlainValue(i)) {
      if (++wrong <= 3) UNSCOPED_INFO("key " << i << ": " << value.status());
    }
  }
  CHECK(wrong == 0);
  Usage expected{static_cast<uint64_t>(plain_bytes) + extra.bytes,
                 static_cast<uint64_t>(n) + extra.keys};
  CHECK(handle->usage() == expected);
  auto recount = kv.Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == expected);
  CHECK(recount->recorded == expected);
}

TEST_CASE("Adopt: a plain RocksDB directory becomes tenant default in place, once",
          "[adopt][engine]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  const int64_t bytes = MakePlainDb(path, kKeys);
  REQUIRE(bytes > 0);
  auto logger = std::make_shared<RecordingLogger>();
  {
    auto engine = Engine::Open(AdoptOptions(path, "default", logger));
    REQUIRE(engine.ok());
    CheckAdopted(**engine, "default", kKeys, bytes);
    auto info = (*engine)->registry().Get("default");
    REQUIRE(info.ok());
    CHECK(info->spec.placement == Placement::kShared);
  }
  for (const std::string& m : logger->Messages()) UNSCOPED_INFO(m);
  CHECK(AnyMessageHas(*logger, "progress: 50000 of 100000 keys moved"));
  CHECK(AnyMessageHas(*logger, "done: 100000 keys moved"));
  CHECK(logger->Count(LogLevel::kWarning) == 0);
  CHECK(RawKeyCount(path, "default") == 0);
  CHECK(RawKeyCount(path, "tenancy.shared") == kKeys);

  // Again: nothing left to move, nothing changes.
  auto again = std::make_shared<RecordingLogger>();
  {
    auto engine = Engine::Open(AdoptOptions(path, "default", again));
    REQUIRE(engine.ok());
    CheckAdopted(**engine, "default", kKeys, bytes);
  }
  CHECK(AnyMessageHas(*again, "nothing to adopt"));
  CHECK_FALSE(AnyMessageHas(*again, "keys moved"));
  CHECK(RawKeyCount(path, "tenancy.shared") == kKeys);
}

TEST_CASE(
    "Adopt: into an existing tenant the adopted values win and usage counts "
    "what they replace",
    "[adopt][engine]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  const int n = 5000;
  const int64_t bytes = MakePlainDb(path, n);
  REQUIRE(bytes > 0);
  {
    // An engine directory whose tenant "legacy" already holds two of the
    // keys (with other values) and one of its own.
    EngineOptions options = AdoptOptions(path, "", NewNullLogger());
    auto engine = Engine::Open(options);
    REQUIRE(engine.ok());
    TenantSpec spec;
    spec.id = "legacy";
    spec.quota.storage_bytes = 1000;  // adoption is not refused by quotas
    REQUIRE((*engine)->registry().Create(spec).ok());
    KvStore kv = (*engine)->GetTenant("legacy")->kv();
    REQUIRE(kv.Put(PlainKey(0), "old").ok());
    REQUIRE(kv.Put(PlainKey(7), std::string(500, 'o')).ok());
    REQUIRE(kv.Put("own", "12345").ok());
  }
  auto logger = std::make_shared<RecordingLogger>();
  auto engine = Engine::Open(AdoptOptions(path, "legacy", logger));
  REQUIRE(engine.ok());
  CheckAdopted(**engine, "legacy", n, bytes, Usage{3 + 5, 1});
  CHECK(*(*engine)->GetTenant("legacy")->kv().Get("own") == "12345");
  CHECK(AnyMessageHas(*logger, "done: 5000 keys moved"));
  CHECK_FALSE(AnyMessageHas(*logger, "created tenant"));
}

TEST_CASE("Adopt: crash half way, and the next Open finishes with every key once",
          "[adopt][engine][crash]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  const int64_t bytes = MakePlainDb(path, kKeys);
  REQUIRE(bytes > 0);

  int fds[2];
  REQUIRE(pipe(fds) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::string db = path, tenant = "legacy";
  char* child_argv[] = {const_cast<char*>(TENANCY_ADOPT_CHILD), db.data(), tenant.data(), nullptr};
  pid_t child;
  REQUIRE(posix_spawn(&child, TENANCY_ADOPT_CHILD, &actions, nullptr, child_argv, environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  // The child stops in its logger at the first progress line: kill it there.
  std::string out;
  char ch;
  while (out.find("progress:") == std::string::npos && read(fds[0], &ch, 1) == 1) out += ch;
  INFO(out);
  REQUIRE(out.find("progress:") != std::string::npos);
  REQUIRE(kill(child, SIGKILL) == 0);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  close(fds[0]);

  // Half way for real: keys in both places, none in both.
  const int64_t left = RawKeyCount(path, "default");
  const int64_t moved = RawKeyCount(path, "tenancy.shared");
  CHECK(left > 0);
  CHECK(moved > 0);
  CHECK(left + moved == kKeys);

  auto logger = std::make_shared<RecordingLogger>();
  {
    auto engine = Engine::Open(AdoptOptions(path, "legacy", logger));
    REQUIRE(engine.ok());
    CheckAdopted(**engine, "legacy", kKeys, bytes);
  }
  for (const std::string& m : logger->Messages()) UNSCOPED_INFO(m);
  UNSCOPED_INFO("left " << left << " moved " << moved);
  CHECK(AnyMessageHas(*logger, "moving " + std::to_string(left) + " keys"));
  CHECK(RawKeyCount(path, "default") == 0);
  CHECK(RawKeyCount(path, "tenancy.shared") == kKeys);
}

TEST_CASE("Adopt: without the option the data stays in default and Open warns once",
          "[adopt][engine]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  REQUIRE(MakePlainDb(path, 1000) > 0);
  auto logger = std::make_shared<RecordingLogger>();
  {
    auto engine = Engine::Open(AdoptOptions(path, "", logger));
    REQUIRE(engine.ok());
    CHECK((*engine)->registry().size() == 0);
  }
  CHECK(logger->Count(LogLevel::kWarning) == 1);
  CHECK(AnyMessageHas(*logger, "adopt_existing_data"));
  CHECK(AnyMessageHas(*logger, "--adopt-existing-data ID"));
  CHECK(RawKeyCount(path, "default") == 1000);

  // An engine directory with nothing in default says nothing.
  TempDir fresh;
  auto quiet = std::make_shared<RecordingLogger>();
  auto engine = Engine::Open(AdoptOptions((fresh.path() / "db").string(), "", quiet));
  REQUIRE(engine.ok());
  CHECK(quiet->Count(LogLevel::kWarning) == 0);
}

TEST_CASE("Adopt: a directory with another column family is refused, unchanged",
          "[adopt][engine]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  REQUIRE(MakePlainDb(path, 1000, {"events"}) > 0);
  auto engine = Engine::Open(AdoptOptions(path, "legacy", NewNullLogger()));
  REQUIRE_FALSE(engine.ok());
  CHECK(engine.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(engine.status().message().find("\"events\"") != absl::string_view::npos);
  CHECK(ColumnFamilies(path) == std::vector<std::string>{"default", "events"});
  CHECK(RawKeyCount(path, "default") == 1000);
}

TEST_CASE("Adopt: a value over max_value_bytes refuses the adoption before any key moves",
          "[adopt][engine]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  REQUIRE(MakePlainDb(path, 3000) > 0);
  auto logger = std::make_shared<RecordingLogger>();
  EngineOptions options = AdoptOptions(path, "legacy", logger);
  options.max_value_bytes = 598;  // values are up to 599 bytes
  auto engine = Engine::Open(options);
  REQUIRE_FALSE(engine.ok());
  CHECK(engine.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(engine.status().message().find("max_value_bytes") != absl::string_view::npos);
  CHECK(engine.status().message().find("nothing was moved") != absl::string_view::npos);
  CHECK(logger->Count(LogLevel::kError) == 1);
  CHECK(RawKeyCount(path, "default") == 3000);
  CHECK(RawKeyCount(path, "tenancy.shared") == 0);

  // The same directory with the limit raised adopts.
  options.max_value_bytes = 600;
  engine = Engine::Open(options);
  REQUIRE(engine.ok());
  CHECK((*engine)->GetTenant("legacy")->usage().keys == 3000);
}

TEST_CASE("Adopt: a directory written with another comparator is refused by RocksDB at Open",
          "[adopt][engine]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  REQUIRE(MakePlainDb(path, 100, {}, rocksdb::ReverseBytewiseComparator()) > 0);
  auto engine = Engine::Open(AdoptOptions(path, "legacy", NewNullLogger()));
  REQUIRE_FALSE(engine.ok());
  INFO(engine.status());
  CHECK(engine.status().message().find("comparator") != absl::string_view::npos);
}

TEST_CASE("Adopt: a malformed tenant id is INVALID_ARGUMENT before anything opens",
          "[adopt][engine]") {
  TempDir dir;
  const std::string path = (dir.path() / "db").string();
  auto engine = Engine::Open(AdoptOptions(path, "Not A Tenant", NewNullLogger()));
  REQUIRE_FALSE(engine.ok());
  CHECK(engine.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace tenancy::testing
