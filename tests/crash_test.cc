// Crash consistency: a child process (crash_writer.cc) writes under load and is killed with
// SIGKILL at a random moment; the parent reopens the engine and checks that
// the usage ledger equals a recount and every acknowledged synced write is
// there.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>
#include <thread>

#include "engine_fixture.h"

namespace tenancy {
namespace {

using testing::TempDir;

EngineOptions CrashOptions(const TempDir& dir) {
  EngineOptions options;
  options.path = (dir.path() / "db").string();
  options.logger = NewNullLogger();
  return options;
}

TEST_CASE(
    "Crash: after SIGKILL under load, usage equals a recount and every "
    "acknowledged synced write is present",
    "[crash]") {
  TempDir dir;
  {
    auto engine = Engine::Open(CrashOptions(dir));
    REQUIRE(engine.ok());
    for (const char* id : {"alpha", "beta", "journal"}) {
      TenantSpec spec;
      spec.id = id;
      REQUIRE((*engine)->registry().Create(spec).ok());
    }
  }
  std::mt19937 rng(42);
  for (int round = 0; round < 4; ++round) {
    // A separate process (crash_writer), not a fork: this process already
    // has RocksDB's background threads.
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::string db = CrashOptions(dir).path;
    char* child_argv[] = {const_cast<char*>(TENANCY_CRASH_WRITER), db.data(), nullptr};
    pid_t child;
    REQUIRE(posix_spawn(&child, TENANCY_CRASH_WRITER, &actions, nullptr, child_argv, environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    // Let it run until it has acknowledged some writes, plus a random delay.
    uint32_t seq = 0;
    int64_t acknowledged = -1;
    while (acknowledged < 20 && read(fds[0], &seq, sizeof(seq)) == sizeof(seq)) {
      acknowledged = seq;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 300));
    REQUIRE(kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    while (read(fds[0], &seq, sizeof(seq)) == sizeof(seq)) acknowledged = seq;
    close(fds[0]);
    REQUIRE(acknowledged >= 20);

    auto engine = Engine::Open(CrashOptions(dir));
    REQUIRE(engine.ok());
    for (const char* id : {"alpha", "beta", "journal"}) {
      INFO("round " << round << " tenant " << id);
      Tenant tenant = *(*engine)->GetTenant(id);
      auto recount = tenant.kv().Recount(false);
      REQUIRE(recount.ok());
      CHECK(recount->counted == recount->recorded);
    }
    KvStore journal = (*engine)->GetTenant("journal")->kv();
    for (int64_t s = 0; s <= acknowledged; ++s) {
      REQUIRE(journal.Get("seq" + std::to_string(s)).ok());
    }
    // Start the next round with an empty journal.
    REQUIRE(journal.DeleteRange("", "z").ok());
  }
}

}  // namespace
}  // namespace tenancy
