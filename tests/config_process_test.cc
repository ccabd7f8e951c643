// tenancyd --config as an operator runs it: the README's sample tenants file
// on an empty data directory, SIGHUP, and a file refused at start.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"
#include "tenancyd_process.h"

namespace tenancy::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// The sample keys of examples/tenants.json (README, "Running tenancyd").
constexpr char kSampleWillKey[] = "tk_sample_will_NOT_A_SECRET_replace_me";
constexpr char kSampleNotepadKey[] = "tk_sample_notepad_NOT_A_SECRET_replace_me";

TEST_CASE(
    "tenancyd --config: on an empty data directory the sample tenants "
    "file's keys and limits work at once",
    "[config][process]") {
  TempDir dir;
  fs::path log = dir.path() / "tenancyd.log";
  TenancydProcess d({"--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0",
                     "--threads", "2", "--config", TENANCY_SOURCE_DIR "/examples/tenants.json"},
                    log);
  int port = d.WaitListening();
  INFO(ReadWhole(log));
  REQUIRE(port > 0);
  TestClient c(port);
  CHECK(c.Put("/v1/kv/hello", "world", Bearer(kSampleWillKey)).status == 204);
  CHECK(c.Get("/v1/kv/hello", Bearer(kSampleWillKey)).body == "world");
  CHECK(c.Get("/v1/kv/hello", Bearer(kSampleNotepadKey)).status == 404);
  Reply will = c.Get("/admin/tenants/will", Admin());
  REQUIRE(will.status == 200);
  int64_t student = -1;
  CHECK(!(*will.Json("effective_limits"))["concurrency"]["llm/student"].get(student));
  CHECK(student == 2);
  Reply metrics = c.Get("/metrics", Admin());
  CHECK(metrics.body.find("tenancy_config_version 1\n") != std::string::npos);
  d.Signal(SIGTERM);
  CHECK(d.Wait() == 0);
  // The plaintext sample key is nowhere in the data directory.
  for (const auto& entry : fs::recursive_directory_iterator(dir.path() / "data")) {
    if (!entry.is_regular_file()) continue;
    INFO(entry.path());
    CHECK(ReadWhole(entry.path()).find(kSampleWillKey) == std::string::npos);
  }
}

TEST_CASE("tenancyd --config: SIGHUP applies the file at once", "[config][process]") {
  TempDir dir;
  fs::path file = dir.path() / "tenants.json";
  fs::path log = dir.path() / "tenancyd.log";
  const std::string key = "tk_test_hup_0123456789abcdef";
  // reload_on_change off: only SIGHUP can apply the change below.
  std::ofstream(file) << "{\"tenants\": [], \"reload_on_change\": false}";
  TenancydProcess d({"--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0",
                     "--threads", "2", "--config", file.string()},
                    log);
  int port = d.WaitListening();
  INFO(ReadWhole(log));
  REQUIRE(port > 0);
  TestClient c(port);
  std::ofstream(file) << "{\"tenants\": [{\"id\": \"hup\", \"api_key\": \"" + key +
                             "\"}], \"reload_on_change\": false}";
  CHECK(c.Get("/v1/kv/k", Bearer(key)).status == 401);
  d.Signal(SIGHUP);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    status = c.Get("/v1/kv/k", Bearer(key)).status;
    if (status != 401) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  CHECK(status == 404);
  d.Signal(SIGTERM);
  CHECK(d.Wait() == 0);
}

TEST_CASE("tenancyd --config: a file refused at start stops tenancyd", "[config][process]") {
  TempDir dir;
  fs::path file = dir.path() / "tenants.json";
  fs::path log = dir.path() / "tenancyd.log";
  std::ofstream(file) << "{\"tenants\": [{\"id\": \"a\", \"quota_mb\": -1}]}";
  for (const fs::path& config : {file, dir.path() / "missing.json"}) {
    TenancydProcess d({"--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0",
                       "--config", config.string()},
                      log);
    CHECK(d.WaitListening() == -1);
    CHECK(d.Wait() == 1);
  }
  INFO(ReadWhole(log));
  CHECK(ReadWhole(log).find("tenants[0].quota_mb") != std::string::npos);
}

}  // namespace
}  // namespace tenancy::testing
