// The tenancyd binary as an operator runs it: flags (--help, --version, usage
// errors), the "listening on" line, and SIGTERM / SIGINT draining requests in
// flight, flushing, exiting 0.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"
#include "tenancyd_process.h"

namespace tenancy::testing {
namespace {

using std::chrono::milliseconds;

// A running tenancyd child process, its log on the test's stderr.
using Tenancyd = TenancydProcess;

TEST_CASE(
    "tenancyd: prints where it listens, serves, and exits 0 on SIGTERM "
    "with its writes durable",
    "[server][process]") {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  std::string key;
  {
    Tenancyd d({"--data-dir", data, "--listen", "127.0.0.1:0", "--threads", "2"});
    int port = d.WaitListening();
    REQUIRE(port > 0);
    TestClient c(port);
    Reply created = c.Post("/admin/tenants", R"({"tenant_id":"acme"})", Admin());
    REQUIRE(created.status == 201);
    key = created.JsonString("api_key");
    REQUIRE(c.Put("/v1/kv/greeting", "hello", Bearer(key)).status == 204);
    d.Signal(SIGTERM);
    CHECK(d.Wait() == 0);
  }
  // Reopened by another process: the tenant, its key and its data are there.
  {
    Tenancyd d({"--data-dir", data, "--listen", "127.0.0.1:0"});
    int port = d.WaitListening();
    REQUIRE(port > 0);
    TestClient c(port);
    CHECK(c.Get("/v1/kv/greeting", Bearer(key)).body == "hello");
    d.Signal(SIGINT);
    CHECK(d.Wait() == 0);
  }
}

TEST_CASE("tenancyd: SIGTERM lets a request in flight finish", "[server][process]") {
  TempDir dir;
  Tenancyd d({"--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0"});
  int port = d.WaitListening();
  REQUIRE(port > 0);
  std::string key;
  {
    TestClient c(port);
    Reply created = c.Post("/admin/tenants", R"({"tenant_id":"acme"})", Admin());
    REQUIRE(created.status == 201);
    key = created.JsonString("api_key");
  }
  // A body larger than the reactor buffers: a worker is reading it when the
  // signal arrives.
  const size_t size = 512 << 10;
  RawConnection raw(port);
  raw.Send("PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key +
           "\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n");
  raw.Send(std::string(size / 2, 'a'));
  std::this_thread::sleep_for(milliseconds(200));
  d.Signal(SIGTERM);
  std::this_thread::sleep_for(milliseconds(200));
  raw.Send(std::string(size - size / 2, 'b'));
  Reply r = raw.ReadResponse();
  CHECK(r.status == 204);
  CHECK(r.Header("Connection") == "close");
  CHECK(d.Wait() == 0);
}

// What a tenancyd that exits by itself printed, and how it exited.
struct Finished {
  int exit_code = -1;
  std::string out;
  std::string err;
  // The first line of `err`.
  std::string FirstErrLine() const { return err.substr(0, err.find('\n')); }
};

// Runs tenancyd with `args` to its exit, reading its stdout and stderr.
// REQUIRES: tenancyd exits by itself (a usage error, --help, --version).
Finished RunToExit(std::vector<std::string> args) {
  int out[2];
  int err[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    ::setenv("TENANCY_ADMIN_KEY", kAdminKey, 1);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(TENANCY_TENANCYD));
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(TENANCY_TENANCYD, argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  Finished finished;
  // Both pipes until both are closed (the process has exited), so that
  // neither fills up while the other is read.
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&finished.out, &finished.err};
  int open_pipes = 2;
  while (open_pipes > 0) {
    REQUIRE(::poll(fds, 2, 60000) > 0);
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      }
    }
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  finished.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return finished;
}

// tenancyd's flags, as server/README.md documents them.
const char* const kFlags[] = {
    "--data-dir",
    "--listen",
    "--config",
    "--admin-key-file",
    "--auth",
    "--threads",
    "--default-tenant",
    "--host-suffix",
    "--metrics-public",
    "--max-connections",
    "--max-connections-per-peer",
    "--help",
    "--version",
};

TEST_CASE(
    "tenancyd: --help lists every flag with its default on stdout and "
    "exits 0",
    "[server][process]") {
  for (const char* help : {"--help", "-h"}) {
    INFO(help);
    Finished f = RunToExit({help});
    CHECK(f.exit_code == 0);
    CHECK(f.err.empty());
    CHECK(f.out.rfind("usage: tenancyd --data-dir DIR", 0) == 0);
    for (const char* flag : kFlags) {
      INFO(flag);
      CHECK(f.out.find(std::string("\n  ") + flag) != std::string::npos);
    }
    for (const char* shown_default : {"default: 127.0.0.1:8080\n", "default: api-key\n",
                                      "default: 8\n", "default: \"default\"\n", "default: false\n",
                                      "default: 1024\n", "default: 64\n", "default: none\n"}) {
      INFO(shown_default);
      CHECK(f.out.find(shown_default) != std::string::npos);
    }
  }
}

TEST_CASE("tenancyd: --version prints the version on stdout and exits 0", "[server][process]") {
  Finished f = RunToExit({"--version"});
  CHECK(f.exit_code == 0);
  CHECK(f.out == std::string("tenancyd ") + TENANCY_VERSION_STRING + "\n");
  CHECK(f.err.empty());
}

TEST_CASE(
    "tenancyd: an unknown flag prints one line naming it and the usage, "
    "and exits 2",
    "[server][process]") {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  // The underscore spelling of a flag's C++ name is not one of tenancyd's.
  for (const char* unknown : {"--bogus", "--bogus=1", "--data_dir=x"}) {
    INFO(unknown);
    Finished f = RunToExit({"--data-dir", data, unknown});
    CHECK(f.exit_code == 2);
    CHECK(f.out.empty());
    const std::string_view arg = unknown;
    const std::string name(arg.substr(0, arg.find('=')));
    CHECK(f.FirstErrLine() == "tenancyd: unknown flag " + name);
    CHECK(f.err.find("\nusage: tenancyd --data-dir DIR") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(data));  // nothing was started
  }
}

TEST_CASE("tenancyd: bad flags exit 2 with a message naming the flag", "[server][process]") {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  struct Case {
    std::vector<std::string> args;
    std::string named;  // in the first line of stderr
  };
  for (const Case& c : std::vector<Case>{
           {{}, "--data-dir"},
           {{"--data-dir", data, "--listen", "nowhere"}, "--listen"},
           {{"--data-dir", data, "--listen=127.0.0.1:65536"}, "--listen"},
           {{"--data-dir", data, "--auth", "magic"}, "--auth"},
           {{"--data-dir", data, "--threads", "0"}, "--threads"},
           {{"--data-dir", data, "--threads=1025"}, "--threads"},
           {{"--data-dir", data, "--threads", "+8"}, "--threads"},
           {{"--data-dir", data, "--threads"}, "--threads"},
           {{"--data-dir", data, "--max-connections", "0"}, "--max-connections"},
           {{"--data-dir", data, "--max-connections-per-peer=x"}, "--max-connections-per-peer"},
           {{"--data-dir", data, "--metrics-public=maybe"}, "--metrics-public"},
           {{"--data-dir", data, "stray"}, "\"stray\""},
           {{"--data-dir", data, "--admin-key-file", (dir.path() / "missing").string()},
            "--admin-key-file"},
       }) {
    Finished f = RunToExit(c.args);
    INFO(f.err);
    CHECK(f.exit_code == 2);
    CHECK(f.FirstErrLine().rfind("tenancyd: ", 0) == 0);
    CHECK(f.FirstErrLine().find(c.named) != std::string::npos);
  }
}

TEST_CASE("tenancyd: flags take effect as --name=value and as --name value", "[server][process]") {
  TempDir dir;
  Tenancyd d({"--data-dir=" + (dir.path() / "data").string(), "--listen=127.0.0.1:0", "--threads",
              "2", "--metrics-public", "--auth=trusted", "--default-tenant", "acme",
              "--host-suffix=example.test"});
  const int port = d.WaitListening();
  REQUIRE(port > 0);
  TestClient c(port);
  // --default-tenant: trusted mode made it at start.
  CHECK(c.Get("/admin/tenants/acme", Admin()).status == 200);
  REQUIRE(c.Post("/admin/tenants", R"({"tenant_id":"beta"})", Admin()).status == 201);
  // --auth trusted with --host-suffix: the Host names the tenant, the bare
  // suffix is --default-tenant, and another Host is refused.
  CHECK(c.Put("/v1/kv/k", "b", {{"Host", "beta.example.test"}}).status == 204);
  CHECK(c.Get("/v1/kv/k", {{"Host", "beta.example.test"}}).body == "b");
  CHECK(c.Put("/v1/kv/k", "a", {{"Host", "example.test"}}).status == 204);
  CHECK(c.Get("/t/acme/v1/kv/k").body == "a");
  CHECK(c.Get("/v1/kv/k", {{"Host", "elsewhere.test"}}).status == 400);
  // --metrics-public: no admin key needed.
  CHECK(c.Get("/metrics").status == 200);
  d.Signal(SIGTERM);
  CHECK(d.Wait() == 0);
}

TEST_CASE("tenancyd: --tenant-header is repeatable and replaces X-Tenant-ID", "[server][process]") {
  TempDir dir;
  Tenancyd d({"--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0", "--auth",
              "trusted", "--tenant-header", "X-SS-Tenant-ID", "--tenant-header=X-Org"});
  const int port = d.WaitListening();
  REQUIRE(port > 0);
  TestClient c(port);
  for (const char* id : {"jobs-a", "jobs-b"}) {
    std::string body = std::string(R"({"tenant_id":")") + id + R"("})";
    REQUIRE(c.Post("/admin/tenants", body, Admin()).status == 201);
  }
  CHECK(c.Put("/v1/kv/k", "a", {{"X-SS-Tenant-ID", "jobs-a"}}).status == 204);
  CHECK(c.Put("/v1/kv/k", "b", {{"X-Org", "jobs-b"}}).status == 204);
  CHECK(c.Get("/t/jobs-a/v1/kv/k").body == "a");
  CHECK(c.Get("/t/jobs-b/v1/kv/k").body == "b");
  // Both given and agreeing is fine; naming different tenants is 400.
  CHECK(c.Get("/v1/kv/k", {{"X-SS-Tenant-ID", "jobs-a"}, {"X-Org", "jobs-a"}}).body == "a");
  CHECK(c.Get("/v1/kv/k", {{"X-SS-Tenant-ID", "jobs-a"}, {"X-Org", "jobs-b"}}).status == 400);
  // X-Tenant-ID is no longer read: the request falls to the default tenant,
  // which trusted mode created at start.
  CHECK(c.Get("/v1/kv/k", {{"X-Tenant-ID", "jobs-a"}}).status == 404);
  CHECK(c.Get("/admin/tenants/default", Admin()).status == 200);
  d.Signal(SIGTERM);
  CHECK(d.Wait() == 0);
}

TEST_CASE("tenancyd: a --tenant-header that is not a header name exits 2", "[server][process]") {
  TempDir dir;
  Tenancyd d({"--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0", "--auth",
              "trusted", "--tenant-header", "X Tenant"});
  CHECK(d.Wait() == 2);
}

}  // namespace
}  // namespace tenancy::testing

namespace tenancy::testing {
namespace {

TEST_CASE(
    "tenancyd: SIGKILL in the middle of an import over HTTP leaves no half "
    "tenant after a restart",
    "[server][process][lifecycle]") {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  const std::string backups = (dir.path() / "elsewhere").string();
  std::string archive;
  {
    Tenancyd d({"--data-dir", data, "--listen", "127.0.0.1:0", "--backup-dir", backups});
    int port = d.WaitListening();
    REQUIRE(port > 0);
    TestClient c(port);
    REQUIRE(c.Post("/admin/tenants", R"({"tenant_id":"src"})", Admin()).status == 201);
    // 10,000 keys of 400 bytes: several data chunks, so that half the
    // archive is past the first.
    for (int round = 0; round < 5; ++round) {
      std::string batch = R"({"ops":[)";
      for (int i = 0; i < 2000; ++i) {
        if (i > 0) batch += ",";
        batch += R"({"op":"put","key":"k)" + std::to_string(round) + "_" + std::to_string(i) +
                 R"(","value":")" + std::string(400, 'a' + i % 26) + "\"}";
      }
      batch += "]}";
      REQUIRE(c.Post("/t/src/v1/batch", batch, Admin()).status == 200);
    }
    Reply exported = c.Get("/admin/tenants/src/export", Admin());
    REQUIRE(exported.status == 200);
    archive = exported.body;
    REQUIRE(archive.size() > 3000000);
    // --backup-dir is where backups go.
    REQUIRE(c.Post("/admin/backups", "", Admin()).status == 201);
    CHECK(std::filesystem::exists(backups + "/engine"));

    // Half the archive, then the server dies.
    RawConnection raw(port);
    REQUIRE(raw.Send(std::string("POST /admin/tenants/half/import HTTP/1.1\r\nHost: x\r\n") +
                     "X-Admin-Key: " + kAdminKey +
                     "\r\nContent-Length: " + std::to_string(archive.size()) + "\r\n\r\n"));
    REQUIRE(raw.Send(std::string_view(archive).substr(0, archive.size() / 2)));
    // Killed once the import is writing its SST files (its staging
    // directory exists): in the middle, not before it began.
    auto staging = [&] {
      for (const auto& entry : std::filesystem::directory_iterator(data)) {
        if (entry.path().filename().string().rfind("tenancy-import-", 0) == 0) return true;
      }
      return false;
    };
    for (int i = 0; i < 500 && !staging(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(staging());
    d.Signal(SIGKILL);
    CHECK(d.Wait() == 128 + SIGKILL);
  }
  Tenancyd d({"--data-dir", data, "--listen", "127.0.0.1:0"});
  int port = d.WaitListening();
  REQUIRE(port > 0);
  TestClient c(port);
  CHECK(c.Get("/admin/tenants/half", Admin()).status == 404);
  for (const auto& entry : std::filesystem::directory_iterator(data)) {
    CHECK(entry.path().filename().string().rfind("tenancy-import-", 0) != 0);
  }
  // The whole archive imports afterwards and equals the source.
  Reply imported = c.Post("/admin/tenants/half/import", archive, Admin());
  REQUIRE(imported.status == 201);
  CHECK(imported.JsonNumber("keys") == 10000);
  CHECK(c.Get("/t/half/v1/kv/k3_7", Admin()).body == c.Get("/t/src/v1/kv/k3_7", Admin()).body);
  d.Signal(SIGTERM);
  CHECK(d.Wait() == 0);
}

}  // namespace
}  // namespace tenancy::testing
