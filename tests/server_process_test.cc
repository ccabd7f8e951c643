// The tenancyd binary as an operator runs it: flags, the "listening on" line,
// and SIGTERM / SIGINT draining requests in flight, flushing, exiting 0.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "server_fixture.h"

namespace tenancy::testing {
namespace {

using std::chrono::milliseconds;

// A running tenancyd child process.
class Tenancyd {
 public:
  explicit Tenancyd(std::vector<std::string> args, bool with_admin_key = true) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      if (with_admin_key) {
        ::setenv("TENANCY_ADMIN_KEY", kAdminKey, 1);
      } else {
        ::unsetenv("TENANCY_ADMIN_KEY");
      }
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
  Tenancyd(const Tenancyd&) = delete;
  Tenancyd& operator=(const Tenancyd&) = delete;
  ~Tenancyd() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }

  // The first stdout line, or "" if none came within `timeout`.
  std::string ReadLine(milliseconds timeout = milliseconds(60000)) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char ch;
      if (::read(out_, &ch, 1) != 1) break;
      if (ch == '\n') return line;
      line.push_back(ch);
    }
    return line;
  }

  // The port from "tenancyd listening on 127.0.0.1:PORT", or -1.
  int WaitListening() {
    std::string line = ReadLine();
    const std::string prefix = "tenancyd listening on 127.0.0.1:";
    if (line.rfind(prefix, 0) != 0) return -1;
    return std::stoi(line.substr(prefix.size()));
  }

  void Signal(int sig) { ::kill(pid_, sig); }

  // The exit status, or -1 if it did not exit within `timeout`.
  int Wait(milliseconds timeout = milliseconds(60000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
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

TEST_CASE("tenancyd: prints where it listens, serves, and exits 0 on SIGTERM "
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
  Tenancyd d({"--data-dir", (dir.path() / "data").string(), "--listen",
              "127.0.0.1:0"});
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

TEST_CASE("tenancyd: bad flags exit 2 with a message", "[server][process]") {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {},
           {"--data-dir", data, "--listen", "nowhere"},
           {"--data-dir", data, "--auth", "magic"},
           {"--data-dir", data, "--threads", "0"},
           {"--data-dir", data, "--bogus"},
           {"--data-dir", data, "--admin-key-file", (dir.path() / "missing").string()},
       }) {
    Tenancyd d(args);
    CHECK(d.Wait() == 2);
  }
}

}  // namespace
}  // namespace tenancy::testing
