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

namespace tenancy::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// The sample keys of examples/tenants.json (README, "Running tenancyd").
constexpr char kSampleWillKey[] = "tk_sample_will_NOT_A_SECRET_replace_me";
constexpr char kSampleNotepadKey[] = "tk_sample_notepad_NOT_A_SECRET_replace_me";

std::string ReadWhole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A tenancyd child process; its stderr (the log) goes to `log`.
class TenancydProcess {
 public:
  TenancydProcess(std::vector<std::string> args, const fs::path& log) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (err >= 0) ::dup2(err, STDERR_FILENO);
      ::setenv("TENANCY_ADMIN_KEY", kAdminKey, 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(TENANCY_TENANCYD));
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(TENANCY_TENANCYD, argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = out[0];
  }
  TenancydProcess(const TenancydProcess&) = delete;
  TenancydProcess& operator=(const TenancydProcess&) = delete;
  ~TenancydProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }

  // The port from "tenancyd listening on 127.0.0.1:PORT", or -1 (also when
  // the process exits first).
  int WaitListening() {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char ch;
      if (::read(out_, &ch, 1) != 1) return -1;
      if (ch == '\n') break;
      line.push_back(ch);
    }
    const std::string prefix = "tenancyd listening on 127.0.0.1:";
    if (line.rfind(prefix, 0) != 0) return -1;
    return std::stoi(line.substr(prefix.size()));
  }

  void Signal(int sig) { ::kill(pid_, sig); }

  // The exit status, or -1 if it did not exit within a minute.
  int Wait() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool exited_ = false;
};

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
