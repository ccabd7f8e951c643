// A loopback TCP proxy in front of etcd that loses one request, or one
// answer, on purpose: what a network can do to a node between etcd and it.
// A lost answer is the case a client cannot tell from the outside: etcd
// committed the transaction, and the node never heard.
//
//   EtcdFaultProxy proxy(etcd.port());
//   ... start a node with --cluster-etcd proxy.url() ...
//   proxy.Arm("/v3/kv/txn", Base64("/tenancy/placement/acme"),
//             EtcdFaultProxy::Fault::kLoseAnswer);
//   ... the node's next txn naming that key is committed, its answer lost ...
//   CHECK(proxy.fired());
//
// Requests are relayed byte for byte, read as HTTP/1.1 with a Content-Length
// body (what the cluster's etcd client sends), so that the armed one is found
// by its path and a string of its body (etcd's gateway carries keys in
// base64). A lost request is never sent to etcd; a lost answer is read from
// etcd and thrown away. Either way the node's connection is then closed,
// as a broken network would leave it.

#ifndef TENANCY_TESTS_ETCD_FAULT_PROXY_H_
#define TENANCY_TESTS_ETCD_FAULT_PROXY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace tenancy::testing {

class EtcdFaultProxy {
 public:
  enum class Fault { kLoseRequest, kLoseAnswer };

  explicit EtcdFaultProxy(int etcd_port) : etcd_port_(etcd_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = Loopback(0);
    socklen_t len = sizeof(addr);
    if (listener_ >= 0 &&
        ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::listen(listener_, 64) == 0 &&
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
      acceptor_ = std::thread([this] { AcceptLoop(); });
    }
  }
  EtcdFaultProxy(const EtcdFaultProxy&) = delete;
  EtcdFaultProxy& operator=(const EtcdFaultProxy&) = delete;
  ~EtcdFaultProxy() {
    if (listener_ >= 0) ::shutdown(listener_, SHUT_RDWR);  // wakes accept()
    if (acceptor_.joinable()) acceptor_.join();
    std::vector<std::unique_ptr<Link>> links;
    {
      absl::MutexLock lock(&mu_);
      links.swap(links_);
    }
    for (auto& link : links) link->Break();
    for (auto& link : links) {
      link->up.join();
      link->down.join();
      ::close(link->client);
      ::close(link->etcd);
    }
    if (listener_ >= 0) ::close(listener_);
  }

  bool running() const { return port_ > 0; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // The next request to `path` whose body contains `needle` meets `fault`.
  void Arm(std::string path, std::string needle, Fault fault) {
    absl::MutexLock lock(&mu_);
    armed_ = Armed{std::move(path), std::move(needle), fault};
    fired_ = false;
  }
  // Whether the armed request came, and met its fault.
  bool fired() const {
    absl::MutexLock lock(&mu_);
    return fired_;
  }

 private:
  struct Armed {
    std::string path;
    std::string needle;
    Fault fault;
  };
  // One node connection and the proxy's connection to etcd for it.
  struct Link {
    int client = -1;
    int etcd = -1;
    std::thread up;    // node -> etcd, request by request
    std::thread down;  // etcd -> node
    // Set before a request whose answer is to be lost is sent on.
    std::atomic<bool> lose_answer{false};
    void Break() {
      ::shutdown(client, SHUT_RDWR);
      ::shutdown(etcd, SHUT_RDWR);
    }
  };

  static sockaddr_in Loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    return addr;
  }

  static bool SendAll(int fd, const char* data, size_t size) {
    while (size > 0) {
      const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
      if (n <= 0) return false;
      data += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  }

  void AcceptLoop() {
    while (true) {
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;  // the listener was shut down
      const int etcd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = Loopback(etcd_port_);
      if (etcd < 0 || ::connect(etcd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(client);
        if (etcd >= 0) ::close(etcd);
        continue;
      }
      auto link = std::make_unique<Link>();
      link->client = client;
      link->etcd = etcd;
      Link* raw = link.get();
      link->up = std::thread([this, raw] { RelayRequests(raw); });
      link->down = std::thread([raw] { RelayAnswers(raw); });
      absl::MutexLock lock(&mu_);
      links_.push_back(std::move(link));
    }
  }

  // The armed fault, taken, if this request is the one.
  std::optional<Fault> Take(std::string_view path, std::string_view body) {
    absl::MutexLock lock(&mu_);
    if (!armed_.has_value() || path != armed_->path ||
        body.find(armed_->needle) == std::string_view::npos) {
      return std::nullopt;
    }
    const Fault fault = armed_->fault;
    armed_.reset();
    fired_ = true;
    return fault;
  }

  void RelayRequests(Link* link) {
    std::string pending;
    char buffer[16384];
    while (true) {
      // Every complete request in `pending` goes on (or meets the fault).
      while (true) {
        const size_t head_end = pending.find("\r\n\r\n");
        if (head_end == std::string::npos) break;
        const std::string head = pending.substr(0, head_end + 4);
        size_t body_size = 0;
        for (const char* name : {"\r\nContent-Length:", "\r\ncontent-length:"}) {
          const size_t at = head.find(name);
          if (at != std::string::npos) {
            body_size =
                std::strtoul(head.c_str() + at + std::string_view(name).size(), nullptr, 10);
          }
        }
        if (pending.size() < head.size() + body_size) break;
        const size_t first_space = head.find(' ');
        const std::string path =
            head.substr(first_space + 1, head.find(' ', first_space + 1) - first_space - 1);
        const std::string request = pending.substr(0, head.size() + body_size);
        pending.erase(0, request.size());
        const std::optional<Fault> fault =
            Take(path, std::string_view(request).substr(head.size()));
        if (fault == Fault::kLoseRequest) {
          link->Break();
          return;
        }
        if (fault == Fault::kLoseAnswer) link->lose_answer = true;
        if (!SendAll(link->etcd, request.data(), request.size())) {
          link->Break();
          return;
        }
      }
      const ssize_t n = ::recv(link->client, buffer, sizeof(buffer), 0);
      if (n <= 0) {
        link->Break();
        return;
      }
      pending.append(buffer, static_cast<size_t>(n));
    }
  }

  static void RelayAnswers(Link* link) {
    char buffer[16384];
    while (true) {
      const ssize_t n = ::recv(link->etcd, buffer, sizeof(buffer), 0);
      // An answer to be lost: etcd has answered, so it has committed; the
      // node hears nothing more on this connection.
      if (n <= 0 || link->lose_answer.load() ||
          !SendAll(link->client, buffer, static_cast<size_t>(n))) {
        link->Break();
        return;
      }
    }
  }

  const int etcd_port_;
  int listener_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  mutable absl::Mutex mu_;
  std::optional<Armed> armed_ ABSL_GUARDED_BY(mu_);
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Link>> links_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_ETCD_FAULT_PROXY_H_
