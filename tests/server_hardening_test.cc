// tenancyd's HTTP hardening, with raw sockets: bodies refused before they
// are read, chunked bodies, header bounds, Expect: 100-continue, pipelining,
// and slow clients that must not stop a normal request.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"

namespace tenancy::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string Head(const std::string& request_line, const std::vector<std::string>& headers) {
  std::string out = request_line + "\r\nHost: test\r\n";
  for (const std::string& h : headers) out += h + "\r\n";
  return out + "\r\n";
}

TEST_CASE("Hardening: a body over the limit is 413 before it is read", "[server][hardening]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  SECTION("a value") {
    RawConnection raw(f.port());
    // The head alone: a server that read the body would wait for it.
    raw.Send(Head("PUT /v1/kv/big HTTP/1.1",
                  {"Authorization: Bearer " + key, "Content-Length: 100000000"}));
    Reply r = raw.ReadResponse(milliseconds(5000));
    CHECK(r.status == 413);
    CHECK(r.ErrorCode() == "too_large");
    CHECK(r.Header("Connection") == "close");
    CHECK(raw.ClosedByPeer());
  }
  SECTION("a JSON body, even without credentials") {
    RawConnection raw(f.port());
    raw.Send(Head("POST /admin/tenants HTTP/1.1", {"Content-Length: 999999999"}));
    Reply r = raw.ReadResponse(milliseconds(5000));
    CHECK(r.status == 413);
    CHECK(raw.ClosedByPeer());
  }
  SECTION("a body that is being sent gets its 413 too") {
    TestClient c = f.Client();
    Reply r = c.Put("/v1/kv/big", std::string((1 << 20) + 1, 'x'), Bearer(key));
    CHECK(r.status == 413);
  }
  CHECK(f.engine->GetTenant("alpha")->usage().keys == 0);
  CHECK(f.engine->registry().size() == 1);
}

TEST_CASE("Hardening: chunked request bodies are refused with 411", "[server][hardening]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  RawConnection raw(f.port());
  raw.Send(Head("PUT /v1/kv/k HTTP/1.1",
                {"Authorization: Bearer " + key, "Transfer-Encoding: chunked"}) +
           "5\r\nhello\r\n0\r\n\r\n");
  Reply r = raw.ReadResponse();
  CHECK(r.status == 411);
  CHECK(r.ErrorCode() == "length_required");
  CHECK(raw.ClosedByPeer());
  CHECK(f.engine->GetTenant("alpha")->usage().keys == 0);
  // Both framings at once is a smuggling attempt.
  RawConnection both(f.port());
  both.Send(Head("PUT /v1/kv/k HTTP/1.1", {"Authorization: Bearer " + key, "Content-Length: 5",
                                           "Transfer-Encoding: chunked"}) +
            "hello");
  CHECK(both.ReadResponse().status == 400);
  CHECK(f.engine->GetTenant("alpha")->usage().keys == 0);
}

TEST_CASE("Hardening: header count, header size and URI length are bounded",
          "[server][hardening]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  SECTION("10,000 headers") {
    RawConnection raw(f.port());
    std::string request = "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key +
                          "\r\nContent-Length: 1\r\n";
    for (int i = 0; i < 10000; ++i) request += "X-H" + std::to_string(i) + ": v\r\n";
    request += "\r\nv";
    raw.Send(request);
    Reply r = raw.ReadResponse();
    CHECK(r.status == 431);
    CHECK(r.ErrorCode() == "too_large");
    CHECK(raw.ClosedByPeer());
  }
  SECTION("one huge header") {
    RawConnection raw(f.port());
    raw.Send("GET /health HTTP/1.1\r\nX-Big: " + std::string(64 << 10, 'a') + "\r\n\r\n");
    CHECK(raw.ReadResponse().status == 431);
  }
  SECTION("a request line over 8 KiB") {
    RawConnection raw(f.port());
    raw.Send("GET /v1/kv/" + std::string(9000, 'k') + " HTTP/1.1\r\n\r\n");
    Reply r = raw.ReadResponse();
    CHECK(r.status == 414);
  }
  SECTION("duplicate Content-Length") {
    RawConnection raw(f.port());
    raw.Send(Head("PUT /v1/kv/k HTTP/1.1",
                  {"Authorization: Bearer " + key, "Content-Length: 1", "Content-Length: 2"}) +
             "vv");
    CHECK(raw.ReadResponse().status == 400);
  }
  SECTION("bare LF line ends and folded headers") {
    RawConnection lf(f.port());
    lf.Send("GET /health HTTP/1.1\nHost: x\n\n");
    CHECK(lf.ReadResponse().status == 400);
    RawConnection fold(f.port());
    fold.Send("GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n");
    CHECK(fold.ReadResponse().status == 400);
  }
  CHECK(f.engine->GetTenant("alpha")->usage().keys == 0);
  // The server still serves.
  TestClient c = f.Client();
  CHECK(c.Get("/health").status == 200);
}

TEST_CASE("Hardening: a head that does not arrive in time is 408", "[server][hardening]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.transport.head_timeout = milliseconds(300);
  ServerFixture f(options);
  RawConnection raw(f.port());
  raw.Send("GET /health HTTP/1.1\r\nHo");
  Reply r = raw.ReadResponse(milliseconds(10000));
  CHECK(r.status == 408);
  CHECK(raw.ClosedByPeer());
}

TEST_CASE("Hardening: Expect: 100-continue is answered before the body", "[server][hardening]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  SECTION("admitted: 100, then the response") {
    RawConnection raw(f.port());
    raw.Send(Head("PUT /v1/kv/k HTTP/1.1",
                  {"Authorization: Bearer " + key, "Content-Length: 5", "Expect: 100-continue"}));
    Reply cont = raw.ReadResponse();
    REQUIRE(cont.status == 100);
    raw.Send("hello");
    CHECK(raw.ReadResponse().status == 204);
    CHECK(*f.engine->GetTenant("alpha")->kv().Get("k") == "hello");
  }
  SECTION("refused: the refusal, never a 100") {
    RawConnection raw(f.port());
    raw.Send(Head("PUT /v1/kv/k HTTP/1.1",
                  {"Authorization: Bearer wrong", "Content-Length: 5", "Expect: 100-continue"}));
    Reply r = raw.ReadResponse();
    CHECK(r.status == 401);
    CHECK(r.ErrorCode() == "unauthenticated");
    CHECK(raw.ClosedByPeer());
    CHECK(f.engine->GetTenant("alpha")->usage().keys == 0);
  }
}

TEST_CASE(
    "Hardening: a request is refused as soon as its head arrives, "
    "before a small body",
    "[server][hardening]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  SECTION("a body is expected: refused, then closed") {
    RawConnection raw(f.port());
    raw.Send(Head("PUT /v1/kv/k HTTP/1.1", {"Authorization: Bearer wrong", "Content-Length: 10"}));
    Reply r = raw.ReadResponse(milliseconds(5000));
    CHECK(r.status == 401);
    CHECK(r.Header("Connection") == "close");
    CHECK(raw.ClosedByPeer());
  }
  SECTION("no body: refused, and the connection serves the next request") {
    RawConnection raw(f.port());
    raw.Send(Head("GET /v1/kv/k HTTP/1.1", {"Authorization: Bearer wrong"}) +
             Head("GET /nope HTTP/1.1", {}) +
             Head("PUT /v1/kv/k HTTP/1.1", {"Authorization: Bearer " + key, "Content-Length: 2"}) +
             "ok" + Head("GET /v1/kv/k HTTP/1.1", {"Authorization: Bearer " + key}));
    Reply first = raw.ReadResponse();
    CHECK(first.status == 401);
    CHECK(first.Header("WWW-Authenticate") == "Bearer");
    CHECK(first.ErrorCode() == "unauthenticated");
    CHECK(first.Header("Connection").empty());
    CHECK(raw.ReadResponse().status == 404);
    CHECK(raw.ReadResponse().status == 204);
    Reply last = raw.ReadResponse();
    CHECK(last.status == 200);
    CHECK(last.body == "ok");
  }
  CHECK(f.engine->GetTenant("alpha")->usage().keys <= 1);
}

TEST_CASE("Hardening: pipelined requests are answered in order", "[server][hardening]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  RawConnection raw(f.port());
  std::string auth = "Authorization: Bearer " + key;
  raw.Send(Head("PUT /v1/kv/a HTTP/1.1", {auth, "Content-Length: 1"}) + "1" +
           Head("PUT /v1/kv/b HTTP/1.1", {auth, "Content-Length: 2"}) + "22" +
           Head("GET /v1/kv/a HTTP/1.1", {auth}) + Head("GET /v1/kv/b HTTP/1.1", {auth}));
  CHECK(raw.ReadResponse().status == 204);
  CHECK(raw.ReadResponse().status == 204);
  Reply a = raw.ReadResponse();
  Reply b = raw.ReadResponse();
  CHECK(a.body == "1");
  CHECK(b.body == "22");
}

TEST_CASE(
    "Hardening: a body a route does not take is not read, and the "
    "connection closes after the response",
    "[server][hardening]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  RawConnection raw(f.port());
  // If the server parsed this body as a request it would write "smuggled".
  std::string smuggled =
      Head("PUT /v1/kv/smuggled HTTP/1.1", {"Authorization: Bearer " + key, "Content-Length: 1"}) +
      "x";
  raw.Send(Head("GET /health HTTP/1.1", {"Content-Length: " + std::to_string(smuggled.size())}) +
           smuggled);
  Reply r = raw.ReadResponse();
  CHECK(r.status == 200);
  CHECK(raw.ClosedByPeer());
  CHECK(f.engine->GetTenant("alpha")->usage().keys == 0);
}

TEST_CASE(
    "Hardening: slow clients holding connections do not stop a normal "
    "request",
    "[server][hardening][slow]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.threads = 2;
  ServerFixture f(options);
  std::string key = f.CreateTenant("alpha");
  std::string slow_key = f.CreateTenant("slowpoke");
  const std::string auth = "Authorization: Bearer " + slow_key;

  // More slow connections than worker threads, of every kind: heads sent a
  // byte at a time, idle keep-alive connections, and bodies sent a byte at a
  // time (one of them over the size the reactor buffers itself).
  std::vector<std::unique_ptr<RawConnection>> slow;
  std::vector<std::string> pending;
  for (int i = 0; i < 6; ++i) {
    slow.push_back(std::make_unique<RawConnection>(f.port()));
    pending.push_back("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'z') +
                      "\r\n\r\n");
  }
  for (int i = 0; i < 4; ++i) {
    slow.push_back(std::make_unique<RawConnection>(f.port()));
    pending.push_back("");  // idle
  }
  for (int i = 0; i < 4; ++i) {
    auto c = std::make_unique<RawConnection>(f.port());
    size_t length = i == 0 ? (256 << 10) : 1000;
    c->Send(Head("PUT /v1/kv/slow" + std::to_string(i) + " HTTP/1.1",
                 {auth, "Content-Length: " + std::to_string(length)}));
    slow.push_back(std::move(c));
    pending.push_back(std::string(length, 'b'));
  }
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    while (!stop.load()) {
      for (size_t i = 0; i < slow.size(); ++i) {
        if (!pending[i].empty()) {
          slow[i]->Send(pending[i].substr(0, 1));
          pending[i].erase(0, 1);
        }
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  });
  std::this_thread::sleep_for(milliseconds(300));

  // Normal requests, each on a new connection, keep being answered quickly.
  TestClient c = f.Client();
  for (int i = 0; i < 10; ++i) {
    auto start = Clock::now();
    Reply r = c.Put("/v1/kv/k" + std::to_string(i), "v", Bearer(key));
    auto took = Clock::now() - start;
    CHECK(r.status == 204);
    CHECK(took < std::chrono::seconds(2));
    TestClient fresh = f.Client();
    start = Clock::now();
    CHECK(fresh.Get("/health").status == 200);
    CHECK(Clock::now() - start < std::chrono::seconds(2));
    std::this_thread::sleep_for(milliseconds(100));
  }
  stop = true;
  trickler.join();
}

}  // namespace
}  // namespace tenancy::testing
