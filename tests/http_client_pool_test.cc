// The cluster's HTTP clients (lib/cluster/): SigpipeBlock, which keeps a
// write on a closed connection from ending the process, and HttpClientPool,
// which does not send on a keep-alive connection its server has closed or is
// about to close. The server is tenancyd's own (the peer a forwarding node
// talks to).

#include "http_client_pool.h"

#include <httplib.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "server_fixture.h"
#include "sigpipe_block.h"

namespace tenancy::testing {
namespace {

using internal::HttpClientPool;
using internal::HttpClientPoolOptions;
using internal::ParseHttpUrl;
using internal::SigpipeBlock;
using std::chrono::milliseconds;

bool SigpipeIsDefault() {
  struct sigaction current {};
  sigaction(SIGPIPE, nullptr, &current);
  return current.sa_handler == SIG_DFL;
}

bool SigpipeBlockedHere() {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, SIGPIPE) == 1;
}

bool SigpipePending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) == 1;
}

// A loopback listener whose connections complete in its backlog; nothing
// reads them.
class Listener {
 public:
  Listener() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
          ::listen(fd_, 4) == 0 &&
          ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return ok_; }
  int port() const { return port_; }

 private:
  int fd_;
  bool ok_ = false;
  int port_ = 0;
};

TEST_CASE("SigpipeBlock: a write on a shut connection fails instead of ending the process",
          "[cluster][sigpipe]") {
  // The default action (end the process) is what the block must keep away;
  // with SIGPIPE ignored this test would prove nothing.
  REQUIRE(SigpipeIsDefault());
  Listener listener;
  REQUIRE(listener.ok());
  httplib::Client client("127.0.0.1", listener.port());
  // What EtcdWatch::Stop does to a stream as it opens (CI saw the watch's
  // test die of SIGPIPE): the socket is shut before httplib writes.
  client.set_socket_options([](int sock) { ::shutdown(sock, SHUT_WR); });
  REQUIRE_FALSE(SigpipeBlockedHere());
  httplib::Error error = httplib::Error::Success;
  {
    SigpipeBlock no_sigpipe;
    CHECK(SigpipeBlockedHere());
    error = client.Post("/v3/watch", std::string(1 << 16, 'x'), "application/json").error();
  }
  CHECK(error == httplib::Error::Write);
  // The signal the write raised was taken, and the thread's mask is back.
  CHECK_FALSE(SigpipePending());
  CHECK_FALSE(SigpipeBlockedHere());
}

TEST_CASE("SigpipeBlock: a SIGPIPE pending before the scope is left for its owner",
          "[cluster][sigpipe]") {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigset_t before;
  pthread_sigmask(SIG_BLOCK, &pipe, &before);
  pthread_kill(pthread_self(), SIGPIPE);
  REQUIRE(SigpipePending());
  { SigpipeBlock no_sigpipe; }
  CHECK(SigpipePending());
  CHECK(SigpipeBlockedHere());  // blocked before, blocked after
  const timespec now{0, 0};
  CHECK(sigtimedwait(&pipe, nullptr, &now) == SIGPIPE);
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

// tenancyd closing idle keep-alive connections after 300 ms.
ServerOptions ShortKeepAlive() {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.transport.keep_alive_timeout = milliseconds(300);
  return options;
}

constexpr char kAccepted[] = "tenancy_http_connections_accepted_total";

int Version(HttpClientPool& pool) {
  httplib::Request req;
  req.method = "GET";
  req.path = "/version";
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  if (!pool.Acquire().Send(req, res, error)) return -1;
  return res.status;
}

TEST_CASE("HttpClientPool: a connection the server closed while idle is not sent on",
          "[cluster][pool]") {
  REQUIRE(SigpipeIsDefault());
  ServerFixture f(ShortKeepAlive());
  HttpClientPool pool(*ParseHttpUrl("http://127.0.0.1:" + std::to_string(f.port())),
                      HttpClientPoolOptions{.max_idle_time = std::chrono::seconds(60)});
  REQUIRE(Version(pool) == 200);
  REQUIRE(Version(pool) == 200);                 // the same connection, kept alive
  const double accepted = Metric(f, kAccepted);  // this scrape is one more
  // tenancyd closes the pooled connection (max_idle_time has not passed, so
  // the pool keeps it); the next call must see that (httplib's check before
  // it writes) and dial again rather than write to it and get no answer.
  std::this_thread::sleep_for(milliseconds(900));
  for (int i = 0; i < 3; ++i) CHECK(Version(pool) == 200);
  CHECK(Metric(f, kAccepted) == accepted + 2);  // one new connection, and the scrape
}

TEST_CASE("HttpClientPool: a connection idle longer than max_idle_time is not reused",
          "[cluster][pool]") {
  ServerFixture f;  // keeps connections for 5 s
  HttpClientPool pool(*ParseHttpUrl("http://127.0.0.1:" + std::to_string(f.port())),
                      HttpClientPoolOptions{.max_idle_time = milliseconds(500)});
  REQUIRE(Version(pool) == 200);
  const double accepted = Metric(f, kAccepted);
  CHECK(Version(pool) == 200);  // reused at once
  CHECK(Metric(f, kAccepted) == accepted + 1);
  std::this_thread::sleep_for(milliseconds(1000));
  CHECK(Version(pool) == 200);  // dialled again
  CHECK(Metric(f, kAccepted) == accepted + 3);
}

}  // namespace
}  // namespace tenancy::testing
