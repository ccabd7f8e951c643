// Resource isolation over real HTTP: no tenant, and no client without
// credentials, can crash tenancyd or take it from the others. Each case is
// one way of trying (a Range header, a connection hog, slow readers, big
// batches, big scans, keys of the maximum length, huge quotas, a forged
// Host).

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"
#include "tenancy/kv_store.h"

namespace tenancy::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string Head(const std::string& request_line, const std::vector<std::string>& headers) {
  std::string out = request_line + "\r\nHost: test\r\n";
  for (const std::string& h : headers) out += h + "\r\n";
  return out + "\r\n";
}

// Polls `done` until it holds or 20 s pass; the observer tests use instead
// of sleeping.
template <typename Fn>
bool Eventually(Fn done) {
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return done();
}

TEST_CASE(
    "Isolation: Range headers are ignored and responses are never "
    "compressed",
    "[server][isolation]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  TestClient c = f.Client();
  const std::string value(1 << 20, 'v');
  REQUIRE(c.Put("/v1/kv/big", value, Bearer(key)).status == 204);

  for (int ranges : {1, 100, 2700}) {
    std::string spec = "bytes=0-";
    for (int i = 1; i < ranges; ++i) spec += ",0-";
    RawConnection raw(f.port());
    raw.Send(Head("GET /v1/kv/big HTTP/1.1", {"Authorization: Bearer " + key, "Range: " + spec}));
    Reply r = raw.ReadResponse(milliseconds(20000));
    CHECK(r.status == 200);
    CHECK(r.Header("Content-Range").empty());
    CHECK(r.body.size() == value.size());
  }
  // A JSON response (what httplib compressed when asked) stays identity.
  for (const char* encoding : {"br", "gzip", "deflate", "br, gzip;q=0.8"}) {
    Reply r = c.Get("/v1/kv?limit=5",
                    {{"Authorization", "Bearer " + key}, {"Accept-Encoding", encoding}});
    CHECK(r.status == 200);
    CHECK(r.Header("Content-Encoding").empty());
    CHECK(r.body.find("\"items\"") != std::string::npos);
  }
  // The server is still there.
  CHECK(c.Get("/health").status == 200);
}

TEST_CASE(
    "Isolation: one address at its connection cap does not keep "
    "another address out",
    "[server][isolation][connections]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.transport.max_connections_per_peer = 8;
  options.transport.max_connections = 64;
  ServerFixture f(options);

  // Eight busy connections from 127.0.0.3: each has sent part of a head, so
  // none is idle and none can be closed to make room. (The test's own
  // scrapes come from 127.0.0.1.)
  std::vector<std::unique_ptr<RawConnection>> hog;
  for (int i = 0; i < 8; ++i) {
    hog.push_back(std::make_unique<RawConnection>(f.port(), "127.0.0.3"));
    hog.back()->Send("GET /health HTTP/1.1\r\n");
  }
  REQUIRE(Eventually([&] {
    return Metric(f, "tenancy_http_open_connections") >= 9;  // 8 + the scrape
  }));

  RawConnection ninth(f.port(), "127.0.0.3");
  ninth.Send(Head("GET /health HTTP/1.1", {}));
  Reply refused = ninth.ReadResponse();
  CHECK(refused.status == 503);
  CHECK(refused.ErrorCode() == "unavailable");
  CHECK(refused.Header("Retry-After") == "1");
  CHECK(ninth.ClosedByPeer());

  RawConnection other(f.port(), "127.0.0.2");
  other.Send(Head("GET /health HTTP/1.1", {}));
  CHECK(other.ReadResponse().status == 200);

  CHECK(Metric(f, "tenancy_http_connections_refused_total{cap=\"peer\"}") >= 1);
}

TEST_CASE(
    "Isolation: at a connection cap the oldest idle keep-alive "
    "connection makes room",
    "[server][isolation][connections]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.transport.max_connections_per_peer = 4;
  options.transport.max_connections = 6;
  ServerFixture f(options);

  SECTION("per address") {
    // Four idle keep-alive connections from 127.0.0.2, each served once.
    std::vector<std::unique_ptr<RawConnection>> idle;
    for (int i = 0; i < 4; ++i) {
      idle.push_back(std::make_unique<RawConnection>(f.port(), "127.0.0.2"));
      idle.back()->Send(Head("GET /health HTTP/1.1", {}));
      REQUIRE(idle.back()->ReadResponse().status == 200);
    }
    // A fifth is served; the oldest idle one was closed to make room.
    RawConnection fifth(f.port(), "127.0.0.2");
    fifth.Send(Head("GET /health HTTP/1.1", {}));
    CHECK(fifth.ReadResponse().status == 200);
    CHECK(idle[0]->ClosedByPeer());
    CHECK_FALSE(idle[3]->ClosedByPeer(milliseconds(200)));
  }
  SECTION("in all") {
    std::vector<std::unique_ptr<RawConnection>> idle;
    for (const char* from : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
      for (int i = 0; i < 2; ++i) {
        idle.push_back(std::make_unique<RawConnection>(f.port(), from));
        idle.back()->Send(Head("GET /health HTTP/1.1", {}));
        REQUIRE(idle.back()->ReadResponse().status == 200);
      }
    }
    RawConnection seventh(f.port(), "127.0.0.5");
    seventh.Send(Head("GET /health HTTP/1.1", {}));
    CHECK(seventh.ReadResponse().status == 200);
    CHECK(idle[0]->ClosedByPeer());
  }
  CHECK(Metric(f, "tenancy_http_idle_connections_evicted_total") >= 1);
}

TEST_CASE(
    "Isolation: slow readers of one tenant neither refuse nor cut short "
    "another tenant's large transfers",
    "[server][isolation][slow]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.threads = 2;
  EngineOptions engine_options = ServerFixture::DefaultEngineOptions();
  engine_options.max_value_bytes = 4 << 20;
  ServerFixture f(options, engine_options);
  std::string a = f.CreateTenant("alpha");
  std::string b = f.CreateTenant("beta");
  TestClient c = f.Client();
  const std::string big(4 << 20, 'x');
  REQUIRE(c.Put("/v1/kv/big", big, Bearer(a)).status == 204);

  // Ten connections of alpha's ask for 4 MiB each and read nothing.
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 10; ++i) {
    slow.push_back(std::make_unique<RawConnection>(f.port(), nullptr, 4096));
    slow.back()->Send(Head("GET /v1/kv/big HTTP/1.1", {"Authorization: Bearer " + a}));
  }
  // beta moves 4 MiB each way, whole, again and again.
  for (int i = 0; i < 5; ++i) {
    Reply put = c.Put("/v1/kv/b" + std::to_string(i), big, Bearer(b));
    REQUIRE(put.status == 204);
    Reply get = c.Get("/v1/kv/b" + std::to_string(i), Bearer(b));
    CHECK(get.status == 200);
    CHECK(get.body.size() == big.size());
  }
}

TEST_CASE(
    "Isolation: a response the client does not take in time closes the "
    "connection and is counted, never truncated silently",
    "[server][isolation][slow]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.transport.io_timeout = milliseconds(200);
  options.transport.min_transfer_bytes_per_second = 16 << 20;
  EngineOptions engine_options = ServerFixture::DefaultEngineOptions();
  engine_options.max_value_bytes = 4 << 20;
  ServerFixture f(options, engine_options);
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  const std::string big(4 << 20, 'x');
  REQUIRE(c.Put("/v1/kv/big", big, Bearer(a)).status == 204);

  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(std::make_unique<RawConnection>(f.port(), nullptr, 4096));
    slow.back()->Send(Head("GET /v1/kv/big HTTP/1.1", {"Authorization: Bearer " + a}));
  }
  REQUIRE(Eventually([&] { return Metric(f, "tenancy_http_aborted_responses_total") >= 1; }));
  // What such a client gets is a short body and a close: its Content-Length
  // tells it so. (A response the kernel's buffers took whole arrives whole.)
  int short_bodies = 0;
  for (auto& connection : slow) {
    Reply r = connection->ReadResponse(milliseconds(5000));
    CHECK(r.status == 200);
    CHECK(r.Header("Content-Length") == std::to_string(big.size()));
    if (r.body.size() < big.size()) {
      ++short_bodies;
      CHECK(connection->ClosedByPeer());
    }
  }
  CHECK(short_bodies >= 1);
  CHECK(short_bodies == Metric(f, "tenancy_http_aborted_responses_total"));
  // Nothing stays reserved for them.
  CHECK(Eventually([&] { return Metric(f, "tenancy_http_buffered_bytes") == 0; }));
}

TEST_CASE(
    "Isolation: a tenant's large batches do not hold up another "
    "tenant's small reads",
    "[server][isolation][fair]") {
  ServerFixture f;  // 4 workers, 1 background worker
  std::string a = f.CreateTenant("alpha");
  std::string b = f.CreateTenant("beta");
  TestClient setup = f.Client();
  REQUIRE(setup.Put("/v1/kv/k", "small", Bearer(b)).status == 204);

  std::string body = R"({"ops":[)";
  for (int i = 0; i < 10000; ++i) {
    if (i > 0) body += ",";
    body += R"({"op":"put","key":"key-)" + std::to_string(i) + R"(","value":"0123456789"})";
  }
  body += "]}";

  // The eight batches run one after another, so the last waits for seven:
  // its client must wait that long too. Their statuses are checked on this
  // thread (Catch2's assertions are not thread-safe).
  std::atomic<int> batches_done{0};
  std::vector<int> statuses(8);
  std::vector<std::thread> batches;
  for (int i = 0; i < 8; ++i) {
    batches.emplace_back([&, i] {
      TestClient c = f.Client();
      c.set_read_timeout(std::chrono::seconds(600));
      statuses[i] = c.Post("/v1/batch", body, Bearer(a)).status;
      batches_done.fetch_add(1);
    });
  }
  // alpha's batches wait in its own lane behind the one running.
  REQUIRE(Eventually([&] { return Metric(f, "tenancy_http_queued_requests") >= 2; }));
  TestClient c = f.Client();
  for (int i = 0; i < 20; ++i) {
    Reply r = c.Get("/v1/kv/k", Bearer(b));
    REQUIRE(r.status == 200);
  }
  const int done_when_beta_finished = batches_done.load();
  for (auto& t : batches) t.join();
  // beta was served while alpha's batches ran one after another, not after
  // them all.
  CHECK(done_when_beta_finished <= 2);
  CHECK(batches_done.load() == 8);
  for (int status : statuses) CHECK(status == 200);
}

TEST_CASE(
    "Isolation: a scan's page is bounded in bytes and its cursor "
    "continues it",
    "[server][isolation][scan]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.max_scan_response_bytes = 1 << 20;
  ServerFixture f(options);
  std::string key = f.CreateTenant("alpha");
  TestClient c = f.Client();
  for (int i = 0; i < 40; ++i) {
    char name[8];
    std::snprintf(name, sizeof(name), "k%02d", i);
    REQUIRE(c.Put(std::string("/v1/kv/") + name, std::string(100 << 10, 'a' + i % 26), Bearer(key))
                .status == 204);
  }
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    Reply r = c.Get("/v1/kv?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor), Bearer(key));
    REQUIRE(r.status == 200);
    CHECK(r.body.size() <= (1 << 20) + (110 << 10));
    simdjson::dom::parser parser;
    simdjson::dom::element root = parser.parse(r.body);
    for (simdjson::dom::element item : root["items"].get_array()) {
      seen.emplace_back(std::string_view(item["key"].get_string()));
    }
    cursor = root["cursor"].is_null() ? "" : std::string(root["cursor"].get_string().value());
    ++pages;
  } while (!cursor.empty() && pages < 100);
  CHECK(pages >= 4);
  REQUIRE(seen.size() == 40);
  for (int i = 0; i < 40; ++i) {
    char name[8];
    std::snprintf(name, sizeof(name), "k%02d", i);
    CHECK(seen[i] == name);
  }
}

TEST_CASE("Isolation: scans page through keys of the maximum length", "[server][isolation][scan]") {
  ServerFixture f;
  std::string key = f.CreateTenant("alpha");
  Tenant alpha = *f.engine->GetTenant("alpha");
  const size_t max_key = f.engine->options().max_key_bytes;
  for (int i = 0; i < 40; ++i) {
    std::string k(max_key - 2, 'k');
    k += static_cast<char>('A' + i / 26);
    k += static_cast<char>('a' + i % 26);
    REQUIRE(alpha.kv().Put(k, "v").ok());
  }
  TestClient c = f.Client();
  for (const char* direction : {"false", "true"}) {
    Reply whole = c.Get(std::string("/v1/kv?reverse=") + direction, Bearer(key));
    REQUIRE(whole.status == 200);
    std::set<std::string> seen;
    std::string cursor;
    int pages = 0;
    do {
      Reply r = c.Get(std::string("/v1/kv?limit=7&reverse=") + direction +
                          (cursor.empty() ? "" : "&cursor=" + cursor),
                      Bearer(key));
      REQUIRE(r.status == 200);
      simdjson::dom::parser parser;
      simdjson::dom::element root = parser.parse(r.body);
      for (simdjson::dom::element item : root["items"].get_array()) {
        CHECK(seen.emplace(std::string_view(item["key"].get_string())).second);
      }
      cursor = root["cursor"].is_null() ? "" : std::string(root["cursor"].get_string().value());
      ++pages;
    } while (!cursor.empty() && pages < 100);
    CHECK(seen.size() == 40);
  }
}

TEST_CASE(
    "Isolation: quota and limit values above 2^63-1 are 400 and change "
    "nothing",
    "[server][isolation][input]") {
  ServerFixture f;
  TestClient c = f.Client();
  for (const char* field :
       {"storage_bytes", "max_keys", "max_value_bytes", "max_queued_jobs", "cache_bytes"}) {
    for (const char* value : {"9223372036854775808", "18446744073709551615"}) {
      std::string quota = std::string(R"("quota":{")") + field + "\":" + value + "}";
      Reply created = c.Post("/admin/tenants", R"({"tenant_id":"huge",)" + quota + "}", Admin());
      CHECK(created.status == 400);
      CHECK(created.ErrorCode() == "invalid_argument");
      Reply put = c.Put("/admin/tenants/huge", "{" + quota + "}", Admin(), "application/json");
      CHECK(put.status == 400);
    }
  }
  Reply limit = c.Put("/admin/tenants/huge", R"({"limits":{"llm":9223372036854775808}})", Admin(),
                      "application/json");
  CHECK(limit.status == 400);
  CHECK(c.Get("/admin/tenants/huge", Admin()).status == 404);
  // The largest value that fits is a quota like any other.
  Reply ok = c.Put("/admin/tenants/huge", R"({"quota":{"storage_bytes":9223372036854775807}})",
                   Admin(), "application/json");
  CHECK(ok.status == 200);
  std::string key = c.Post("/admin/tenants/huge/keys", "", Admin()).JsonString("api_key");
  CHECK(c.Put("/v1/kv/k", "v", Bearer(key)).status == 204);
}

TEST_CASE(
    "Isolation: with --host-suffix a missing, repeated or foreign Host "
    "is 400, never the default tenant",
    "[server][isolation][auth]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.auth = AuthMode::kTrusted;
  options.host_suffix = "example.com";
  ServerFixture f(options);  // makes the default tenant
  f.CreateTenant("beta");
  auto send = [&](const std::string& headers) {
    RawConnection raw(f.port());
    raw.Send("PUT /v1/kv/k HTTP/1.1\r\n" + headers + "Content-Length: 1\r\n\r\nx");
    return raw.ReadResponse();
  };
  CHECK(send("").status == 400);
  CHECK(send("Host: beta.example.com\r\nHost: beta.example.com\r\n").status == 400);
  CHECK(send("Host: example.org\r\n").status == 400);
  CHECK(send("Host: beta.example.com.evil\r\n").status == 400);
  CHECK(send("Host: xexample.com\r\n").status == 400);
  CHECK(send("Host: 127.0.0.1:8080\r\n").status == 400);
  CHECK(f.engine->GetTenant("default")->usage().keys == 0);
  CHECK(f.engine->GetTenant("beta")->usage().keys == 0);
  // One trailing dot is the same name; a port is not part of it.
  CHECK(send("Host: beta.example.com.\r\n").status == 204);
  CHECK(send("Host: BETA.Example.com:8080\r\n").status == 204);
  CHECK(send("Host: example.com.\r\n").status == 204);
  CHECK(f.engine->GetTenant("beta")->usage().keys == 1);
  CHECK(f.engine->GetTenant("default")->usage().keys == 1);
}

}  // namespace
}  // namespace tenancy::testing
