// A tenancyd child process, as an operator runs it, for the tests that start
// the binary: its stdout (the start line) is read here, its stderr (the log)
// goes to a file, or to the test's own stderr. REQUIRES: TENANCY_TENANCYD is
// the binary's path.

#ifndef TENANCY_TESTS_TENANCYD_PROCESS_H_
#define TENANCY_TESTS_TENANCYD_PROCESS_H_

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

inline std::string ReadWhole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A tenancyd child process with the test's admin key; its stderr (the log)
// goes to `log` (the test's stderr when empty).
class TenancydProcess {
 public:
  explicit TenancydProcess(std::vector<std::string> args, const std::filesystem::path& log = {}) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      if (!log.empty()) {
        int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (err >= 0) ::dup2(err, STDERR_FILENO);
      }
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

  // The next stdout line, or what came of it if the process closed stdout
  // or `timeout` passed first.
  std::string ReadLine(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
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

  // The port from "tenancyd listening on 127.0.0.1:PORT", or -1 (also when
  // the process exits first).
  int WaitListening() {
    const std::string line = ReadLine();
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
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool exited_ = false;
};

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_TENANCYD_PROCESS_H_
