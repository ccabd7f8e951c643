// A real etcd for the cluster tests: a child process on free loopback ports,
// over a data directory of its own, killed at scope end. etcd takes no port
// 0, so ports are picked by binding port 0 and closing, and a start that
// loses the port to another process is tried again on others.
//
//   if (!EtcdProcess::Available()) { WARN(EtcdProcess::kMissing); return; }
//   EtcdProcess etcd;
//   REQUIRE(etcd.running());
//   ... etcd.url() ...  etcd.Stop(); etcd.Start();  // the same ports and data
//
// REQUIRES: TENANCY_ETCD is the etcd binary's path ("" when CMake found none).

#ifndef TENANCY_TESTS_ETCD_PROCESS_H_
#define TENANCY_TESTS_ETCD_PROCESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.h"

namespace tenancy::testing {

class EtcdProcess {
 public:
  static constexpr const char* kMissing =
      "etcd is not installed (Debian: apt-get install etcd-server, as .ci/deps --test does): "
      "this cluster test did not run";

  static bool Available() {
    return std::string(TENANCY_ETCD).size() > 0 && ::access(TENANCY_ETCD, X_OK) == 0;
  }

  EtcdProcess() {
    for (int attempt = 0; attempt < 5 && !running(); ++attempt) {
      client_port_ = FreePort();
      peer_port_ = FreePort();
      if (client_port_ == peer_port_) continue;
      Start();
    }
  }
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;
  ~EtcdProcess() { Stop(); }

  // A port free on the loopback now (bound and closed): another process may
  // take it before it is used, so a start on it must be tried again.
  static int FreePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    int port = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    ::close(fd);
    return port;
  }

  // The client URL, http://127.0.0.1:PORT.
  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
  int port() const { return client_port_; }
  bool running() const { return pid_ > 0; }

  // Starts etcd on its ports and data directory and waits (up to 20 s) until
  // it answers; running() tells whether it does.
  void Start() {
    const std::string client = url();
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    const std::string log = (dir_.path() / "etcd.log").string();
    // A name of its own: another test's etcd that took the port answers
    // too, but with its name.
    name_ = "test-" + std::to_string(::getpid()) + "-" + std::to_string(client_port_);
    std::vector<std::string> args = {TENANCY_ETCD,
                                     "--name=" + name_,
                                     "--data-dir=" + (dir_.path() / "data").string(),
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=" + name_ + "=" + peer,
                                     "--log-level=error"};
    pid_ = ::fork();
    if (pid_ == 0) {
      // A test that dies (a failed REQUIRE in a sanitizer build aborts)
      // leaves no etcd behind.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(TENANCY_ETCD, argv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: the port was taken
        pid_ = -1;
        return;
      }
      if (Healthy()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Stop();
  }

  // Kills etcd (SIGKILL: as a crash or a lost machine) and waits for it.
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  // This etcd answers, under its name (the member list says).
  bool Healthy() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(client_port_));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      const std::string request =
          "POST /v3/cluster/member/list HTTP/1.0\r\nHost: 127.0.0.1\r\n"
          "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
      if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
        std::string answer;
        char buf[512];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof(buf))) > 0) answer.append(buf, static_cast<size_t>(n));
        ok = answer.find("\"name\":\"" + name_ + "\"") != std::string::npos;
      }
    }
    ::close(fd);
    return ok;
  }

  TempDir dir_;
  std::string name_;
  int client_port_ = -1;
  int peer_port_ = -1;
  pid_t pid_ = -1;
};

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_ETCD_PROCESS_H_
