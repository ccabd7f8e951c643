// tenancyd's cache and job routes (server/README.md), over real HTTP on
// loopback.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "json.h"
#include "server_fixture.h"
#include "tenancy/cache.h"
#include "tenancy/jobs.h"

namespace tenancy::testing {
namespace {

using std::chrono::nanoseconds;

// Clocks the tests move by hand: one for job times, one for cache TTLs.
struct Clocks {
  std::atomic<int64_t> job_us{int64_t{1704067200} * 1000000};
  std::atomic<int64_t> cache_ns{int64_t{1'000'000'000} * 3600};

  void Advance(absl::Duration d) {
    job_us.fetch_add(absl::ToInt64Microseconds(d));
    cache_ns.fetch_add(absl::ToInt64Nanoseconds(d));
  }
};

// A server whose engine reads its job and cache times from `clocks`.
struct JobsServer {
  std::shared_ptr<Clocks> clocks = std::make_shared<Clocks>();
  // Claims that started to wait (JobQueueOptions::on_claim_wait).
  std::shared_ptr<std::atomic<int>> claim_waits = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<ServerFixture> fixture;

  explicit JobsServer(ServerOptions options = ServerFixture::DefaultOptions()) {
    EngineOptions engine_options = ServerFixture::DefaultEngineOptions();
    std::shared_ptr<Clocks> c = clocks;
    engine_options.jobs.clock = [c] { return absl::FromUnixMicros(c->job_us.load()); };
    std::shared_ptr<std::atomic<int>> waits = claim_waits;
    engine_options.jobs.on_claim_wait = [waits](std::string_view) { waits->fetch_add(1); };
    CacheOptions cache_options;
    cache_options.default_tenant_budget_bytes = 1 << 20;
    cache_options.clock = [c] {
      return std::chrono::steady_clock::time_point(nanoseconds(c->cache_ns.load()));
    };
    engine_options.cache = *Cache::Create(cache_options);
    fixture = std::make_unique<ServerFixture>(options, engine_options);
  }

  ServerFixture& f() { return *fixture; }
  TestClient Client() { return fixture->Client(); }
  std::string CreateTenant(const std::string& id) { return fixture->CreateTenant(id); }
  JobQueue Jobs(const std::string& id) { return fixture->engine->GetTenant(id)->jobs(); }
  Tenant Get(const std::string& id) { return *fixture->engine->GetTenant(id); }
};

std::string CacheKey(const std::string& raw) { return "/v1/cache/" + raw; }

// Polls `done` (another thread brings it about) for up to 20 s.
template <typename Fn>
bool WaitUntil(Fn done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

std::string Enqueue(TestClient& c, const std::string& key, const std::string& body) {
  Reply r = c.Post("/v1/jobs", body, Bearer(key));
  INFO(r.body);
  REQUIRE(r.status == 201);
  return r.JsonString("id");
}

std::string LeaseBody(const std::string& lease) { return "{\"lease\":\"" + lease + "\"}"; }

uint64_t Calls(const Tenant& t, CallKind kind) {
  return t.requests().calls_by_kind[static_cast<int>(kind)];
}

TEST_CASE("Server jobs: enqueue, inspect, claim and ack", "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  std::string id =
      Enqueue(c, a, R"({"type":"email","payload":"hello","priority":3,"max_attempts":4})");
  CHECK(id.size() == 16);

  Reply inspect = c.Get("/v1/jobs/" + id, Bearer(a));
  REQUIRE(inspect.status == 200);
  CHECK(inspect.JsonString("state") == "queued");
  CHECK(inspect.JsonString("type") == "email");
  CHECK(inspect.JsonString("payload") == "hello");
  CHECK(inspect.JsonNumber("priority") == 3);
  CHECK(inspect.JsonNumber("max_attempts") == 4);
  CHECK(inspect.JsonNumber("attempts") == 0);

  Reply other_type = c.Post("/v1/jobs/claim?type=sms", "", Bearer(a));
  CHECK(other_type.status == 204);
  CHECK(other_type.body.empty());

  // The same routes under /t/{id}/.
  Reply claimed = c.Post("/t/alpha/v1/jobs/claim?type=email&lease_s=30", "", Bearer(a));
  REQUIRE(claimed.status == 200);
  CHECK(claimed.JsonString("id") == id);
  CHECK(claimed.JsonString("payload") == "hello");
  CHECK(claimed.JsonNumber("attempts") == 1);
  std::string lease = claimed.JsonString("lease");
  CHECK_FALSE(lease.empty());
  CHECK(claimed.JsonString("lease_expires_at") == "2024-01-01T00:00:30.000Z");
  CHECK(c.Get("/v1/jobs/" + id, Bearer(a)).JsonString("state") == "claimed");
  CHECK(c.Post("/v1/jobs/claim?type=email", "", Bearer(a)).status == 204);

  Reply acked = c.Post("/v1/jobs/" + id + "/ack", LeaseBody(lease), Bearer(a));
  CHECK(acked.status == 200);
  CHECK(c.Get("/v1/jobs/" + id, Bearer(a)).status == 404);
  Reply again = c.Post("/v1/jobs/" + id + "/ack", LeaseBody(lease), Bearer(a));
  CHECK(again.status == 404);
  CHECK(again.ErrorCode() == "not_found");
  CHECK(s.Jobs("alpha").Counts()->queued == 0);
}

TEST_CASE("Server jobs: nack retries, then the job is dead", "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  std::string id = Enqueue(c, a, R"({"type":"t","payload":"p","max_attempts":2})");

  Reply first = c.Post("/v1/jobs/claim?type=t", "", Bearer(a));
  REQUIRE(first.status == 200);
  Reply nacked = c.Post(
      "/v1/jobs/" + id + "/nack",
      R"({"lease":")" + first.JsonString("lease") + R"(","error":"smtp down","retry_after_s":60})",
      Bearer(a));
  REQUIRE(nacked.status == 200);
  CHECK(nacked.JsonString("state") == "delayed");
  CHECK(nacked.JsonString("last_error") == "smtp down");
  CHECK(nacked.JsonString("next_run_at") == "2024-01-01T00:01:00.000Z");
  CHECK(c.Post("/v1/jobs/claim?type=t", "", Bearer(a)).status == 204);

  s.clocks->Advance(absl::Seconds(61));
  Reply second = c.Post("/v1/jobs/claim?type=t", "", Bearer(a));
  REQUIRE(second.status == 200);
  CHECK(second.JsonNumber("attempts") == 2);
  Reply dead = c.Post("/v1/jobs/" + id + "/nack", LeaseBody(second.JsonString("lease")), Bearer(a));
  REQUIRE(dead.status == 200);
  CHECK(dead.JsonString("state") == "dead");
  Reply inspect = c.Get("/v1/jobs/" + id, Bearer(a));
  CHECK(inspect.JsonString("state") == "dead");
  CHECK(inspect.Json("next_run_at")->is_null());
  CHECK(s.Jobs("alpha").Counts()->dead == 1);
}

TEST_CASE("Server jobs: an expired or replaced lease is 409 and changes nothing",
          "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  std::string id = Enqueue(c, a, R"({"type":"t"})");
  Reply first = c.Post("/v1/jobs/claim?type=t&lease_s=10", "", Bearer(a));
  REQUIRE(first.status == 200);
  const std::string stale = first.JsonString("lease");

  s.clocks->Advance(absl::Seconds(11));
  Reply late = c.Post("/v1/jobs/" + id + "/ack", LeaseBody(stale), Bearer(a));
  CHECK(late.status == 409);
  CHECK(late.ErrorCode() == "conflict");
  CHECK(s.Jobs("alpha").Inspect(id).ok());

  // Claimed again by someone else: the old lease stays refused, for nack too.
  Reply second = c.Post("/v1/jobs/claim?type=t", "", Bearer(a));
  REQUIRE(second.status == 200);
  CHECK(second.JsonNumber("attempts") == 2);
  CHECK(c.Post("/v1/jobs/" + id + "/ack", LeaseBody(stale), Bearer(a)).status == 409);
  CHECK(c.Post("/v1/jobs/" + id + "/nack", LeaseBody(stale), Bearer(a)).status == 409);
  CHECK(c.Get("/v1/jobs/" + id, Bearer(a)).JsonNumber("attempts") == 2);
  CHECK(
      c.Post("/v1/jobs/" + id + "/ack", LeaseBody(second.JsonString("lease")), Bearer(a)).status ==
      200);
}

TEST_CASE("Server jobs: payloads arrive byte-exact, base64 where not UTF-8", "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  const std::string binary("\x00\xff\xfe\x80 \"\\\n", 8);
  const std::string text = "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\" \\ \n\t";

  std::string bin_id = Enqueue(c, a,
                               R"({"type":"bin","encoding":"base64","payload":")" +
                                   internal::Base64Encode(binary) + R"("})");
  internal::JsonWriter w;
  w.BeginObject().Key("type").String("txt").Key("payload").String(text).EndObject();
  std::string text_id = Enqueue(c, a, w.Release());

  Reply bin = c.Post("/v1/jobs/claim?type=bin", "", Bearer(a));
  REQUIRE(bin.status == 200);
  CHECK(bin.JsonString("id") == bin_id);
  CHECK(bin.JsonString("encoding") == "base64");
  CHECK(*internal::Base64Decode(bin.JsonString("payload")) == binary);
  Reply txt = c.Post("/v1/jobs/claim?type=txt", "", Bearer(a));
  REQUIRE(txt.status == 200);
  CHECK(txt.JsonString("id") == text_id);
  CHECK_FALSE(txt.Json("encoding").has_value());
  CHECK(txt.JsonString("payload") == text);
  // And as the library stored them.
  CHECK(s.Jobs("alpha").Inspect(bin_id)->payload == binary);
  CHECK(s.Jobs("alpha").Inspect(text_id)->payload == text);
}

TEST_CASE(
    "Server jobs: an idempotency key makes a retried enqueue answer the "
    "same job",
    "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  const std::string body = R"({"type":"t","idempotency_key":"order-42"})";
  Reply first = c.Post("/v1/jobs", body, Bearer(a));
  REQUIRE(first.status == 201);
  CHECK(first.Json("created")->get_bool().value());
  Reply retry = c.Post("/v1/jobs", body, Bearer(a));
  CHECK(retry.status == 201);
  CHECK(retry.JsonString("id") == first.JsonString("id"));
  CHECK_FALSE(retry.Json("created")->get_bool().value());
  CHECK(s.Jobs("alpha").Counts()->queued == 1);
}

TEST_CASE("Server jobs: a waiting claim is woken by an enqueue", "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  Reply claimed;
  absl::Duration waited;
  std::thread claimer([&] {
    TestClient c = s.Client();
    absl::Time start = absl::Now();
    claimed = c.Post("/v1/jobs/claim?type=t&wait_s=20", "", Bearer(a));
    waited = absl::Now() - start;
  });
  // Once the claim waits, an enqueue must wake it long before its 20 s.
  REQUIRE(WaitUntil([&] { return s.claim_waits->load() >= 1; }));
  TestClient c = s.Client();
  std::string id = Enqueue(c, a, R"({"type":"t","payload":"wake"})");
  claimer.join();
  REQUIRE(claimed.status == 200);
  CHECK(claimed.JsonString("id") == id);
  CHECK(claimed.JsonString("payload") == "wake");
  CHECK(waited < absl::Seconds(15));
}

TEST_CASE("Server jobs: waiting claims are capped so they never hold every worker",
          "[server][jobs]") {
  // 4 workers: at most 2 claims wait at once, 1 per tenant.
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  std::string b = s.CreateTenant("beta");
  std::string g = s.CreateTenant("gamma");
  Tenant alpha = s.Get("alpha");

  std::vector<std::thread> waiters;
  std::vector<Reply> replies(2);
  std::atomic<int> started{0};
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      TestClient c = s.Client();
      started.fetch_add(1);
      replies[i] = c.Post("/v1/jobs/claim?type=t&wait_s=20", "", Bearer(i == 0 ? a : b));
    });
  }
  while (started.load() < 2) std::this_thread::yield();
  // Both are waiting (the engine says so).
  TestClient c = s.Client();
  REQUIRE(WaitUntil([&] { return s.claim_waits->load() >= 2; }));
  CHECK(Calls(alpha, CallKind::kJobs) == 1);

  // A second waiting claim of alpha's: over its per-tenant share.
  Reply busy = c.Post("/v1/jobs/claim?type=t&wait_s=20", "", Bearer(a));
  CHECK(busy.status == 429);
  CHECK(busy.ErrorCode() == "concurrency_limited");
  CHECK(busy.Header("Retry-After") == "1");
  // gamma's: over the total.
  CHECK(c.Post("/v1/jobs/claim?type=t&wait_s=20", "", Bearer(g)).status == 429);
  // A claim that does not wait, and one that finds a job, still go through,
  // and so do other requests.
  CHECK(c.Post("/v1/jobs/claim?type=t", "", Bearer(g)).status == 204);
  Enqueue(c, g, R"({"type":"u"})");
  CHECK(c.Post("/v1/jobs/claim?type=u&wait_s=20", "", Bearer(g)).status == 200);
  CHECK(c.Put(CacheKey("k"), "v", Bearer(g)).status == 204);

  // Wake the waiters.
  Enqueue(c, a, R"({"type":"t"})");
  Enqueue(c, b, R"({"type":"t"})");
  for (auto& t : waiters) t.join();
  CHECK(replies[0].status == 200);
  CHECK(replies[1].status == 200);
}

TEST_CASE("Server jobs: shutting down ends waiting claims at once", "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  Tenant alpha = s.Get("alpha");
  Reply claimed;
  std::thread claimer([&] {
    TestClient c = s.Client();
    claimed = c.Post("/v1/jobs/claim?type=t&wait_s=20", "", Bearer(a));
  });
  REQUIRE(WaitUntil([&] { return s.claim_waits->load() >= 1; }));
  REQUIRE(Calls(alpha, CallKind::kJobs) == 1);
  absl::Time start = absl::Now();
  s.f().server->Shutdown();
  claimer.join();
  CHECK(absl::Now() - start < absl::Seconds(10));
  CHECK(claimed.status == 204);
}

TEST_CASE("Server jobs: bad input is refused and changes nothing", "[server][jobs]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  std::string id = Enqueue(c, a, R"({"type":"t"})");
  auto unchanged = [&] {
    JobCounts counts = *s.Jobs("alpha").Counts();
    return counts.queued == 1 && counts.claimed == 0 && counts.delayed == 0 && counts.dead == 0;
  };

  SECTION("enqueue bodies") {
    for (const std::string body :
         {"", "{", "[]", R"({"type":"t",})", R"({"payload":"p"})", R"({"type":"t","unknown":1})",
          R"({"type":"t","type":"u"})", R"({"type":"bad type!"})", R"({"type":"t","priority":1.5})",
          R"({"type":"t","priority":3000000000})", R"({"type":"t","delay_s":-1})",
          R"({"type":"t","max_attempts":-1})", R"({"type":"t","payload":7})",
          R"({"type":"t","encoding":"hex","payload":"00"})",
          R"({"type":"t","encoding":"base64","payload":"!!"})"}) {
      INFO(body);
      Reply r = c.Post("/v1/jobs", body, Bearer(a));
      CHECK(r.status == 400);
      CHECK(r.ErrorCode() == "invalid_argument");
    }
  }
  SECTION("unknown and malformed job ids") {
    Reply unknown = c.Get("/v1/jobs/00000000000000ff", Bearer(a));
    CHECK(unknown.status == 404);
    CHECK(unknown.ErrorCode() == "not_found");
    CHECK(c.Post("/v1/jobs/00000000000000ff/ack", LeaseBody("00000000000000000000"), Bearer(a))
              .status != 200);
    // Ids are opaque: one of any shape that names no job is 404.
    for (const std::string id : {"nope-123", "not-a-job-id", "00FF", "0000000000000000ff"}) {
      INFO(id);
      Reply r = c.Get("/v1/jobs/" + id, Bearer(a));
      CHECK(r.status == 404);
      CHECK(r.ErrorCode() == "not_found");
      CHECK(c.Post("/v1/jobs/" + id + "/ack", LeaseBody("0000000000000001"), Bearer(a)).status ==
            404);
    }
    // A target that is not percent-encoded right is a malformed request.
    CHECK(c.Get("/v1/jobs/%zz", Bearer(a)).status == 400);
  }
  SECTION("claim parameters") {
    for (const std::string query :
         {"?wait_s=21", "?wait_s=-1", "?wait_s=abc", "?lease_s=0", "?lease_s=1e3", "?color=red",
          "?type=t&type=t", "?type=bad%20type"}) {
      INFO(query);
      CHECK(c.Post("/v1/jobs/claim" + query, "", Bearer(a)).status == 400);
    }
  }
  SECTION("ack and nack bodies") {
    for (const std::string body :
         {"", "{}", R"({"lease":""})", R"({"lease":"x","extra":1})", R"({"lease":5})"}) {
      INFO(body);
      CHECK(c.Post("/v1/jobs/" + id + "/ack", body, Bearer(a)).status == 400);
      CHECK(c.Post("/v1/jobs/" + id + "/nack", body, Bearer(a)).status == 400);
    }
    CHECK(c.Post("/v1/jobs/" + id + "/nack", R"({"lease":"x","retry_after_s":"soon"})", Bearer(a))
              .status == 400);
  }
  SECTION("wrong methods") {
    CHECK(c.Get("/v1/jobs", Bearer(a)).status == 405);
    CHECK(c.Get("/v1/jobs/claim", Bearer(a)).status == 405);
    CHECK(c.Delete("/v1/jobs/" + id, Bearer(a)).status == 405);
    CHECK(c.Get("/v1/jobs/" + id + "/ack", Bearer(a)).status == 405);
  }
  CHECK(unchanged());
  CHECK(s.Jobs("alpha").Inspect(id)->attempts == 0);
}

TEST_CASE("Server cache: set, get, TTL expiry, increment and delete", "[server][cache]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();

  REQUIRE(c.Put(CacheKey("plain"), "v1", Bearer(a)).status == 204);
  REQUIRE(c.Put(CacheKey("short"), "v2", Bearer(a)).status == 204);
  REQUIRE(c.Put(CacheKey("short") + "?ttl=5", "v3", Bearer(a)).status == 204);
  REQUIRE(c.Put(CacheKey("half") + "?ttl=0.5", "v4", Bearer(a)).status == 204);
  Reply got = c.Get(CacheKey("short"), Bearer(a));
  CHECK(got.status == 200);
  CHECK(got.body == "v3");
  CHECK(got.Header("Content-Type") == "application/octet-stream");
  s.clocks->Advance(absl::Milliseconds(500));
  CHECK(c.Get(CacheKey("half"), Bearer(a)).status == 404);
  CHECK(c.Get(CacheKey("short"), Bearer(a)).status == 200);
  s.clocks->Advance(absl::Milliseconds(4500));
  Reply expired = c.Get(CacheKey("short"), Bearer(a));
  CHECK(expired.status == 404);
  CHECK(expired.ErrorCode() == "not_found");
  CHECK(c.Get(CacheKey("plain"), Bearer(a)).body == "v1");

  Reply n = c.Post(CacheKey("n") + "/incr", "", Bearer(a));
  REQUIRE(n.status == 200);
  CHECK(n.JsonNumber("value") == 1);
  CHECK(c.Post(CacheKey("n") + "/incr?by=41", "", Bearer(a)).JsonNumber("value") == 42);
  CHECK(c.Post(CacheKey("n") + "/incr?by=-50", "", Bearer(a)).JsonNumber("value") == -8);
  CHECK(c.Get(CacheKey("n"), Bearer(a)).body == "-8");
  // A counter with a window: the TTL applies when the incr creates it.
  REQUIRE(c.Post(CacheKey("window") + "/incr?ttl=10", "", Bearer(a)).status == 200);
  REQUIRE(c.Post(CacheKey("window") + "/incr?ttl=1000", "", Bearer(a)).status == 200);
  s.clocks->Advance(absl::Seconds(10));
  CHECK(c.Get(CacheKey("window"), Bearer(a)).status == 404);

  // Keys are percent-encoded bytes; values are bytes, byte-exact.
  const std::string binary("\x00\xff\r\n", 4);
  REQUIRE(c.Put(CacheKey("a%2Fb%00"), binary, Bearer(a)).status == 204);
  CHECK(c.Get(CacheKey("a%2Fb%00"), Bearer(a)).body == binary);
  CHECK(*s.Get("alpha").cache().Get(std::string("a/b\0", 4)) == binary);

  CHECK(c.Delete(CacheKey("plain"), Bearer(a)).status == 204);
  CHECK(c.Delete(CacheKey("plain"), Bearer(a)).status == 204);
  CHECK(c.Get(CacheKey("plain"), Bearer(a)).status == 404);
  // Under /t/{id}/ too.
  CHECK(c.Get("/t/alpha" + CacheKey("n"), Bearer(a)).body == "-8");
}

TEST_CASE("Server cache: bad input is refused and changes nothing", "[server][cache]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  REQUIRE(c.Put(CacheKey("k"), "old", Bearer(a)).status == 204);
  REQUIRE(c.Put(CacheKey("n"), "5", Bearer(a)).status == 204);

  for (const std::string ttl : {"0", "-1", "abc", "1e3", "", "5s", "0.0000000001"}) {
    INFO(ttl);
    Reply r = c.Put(CacheKey("k") + "?ttl=" + ttl, "new", Bearer(a));
    CHECK(r.status == 400);
    CHECK(r.ErrorCode() == "invalid_argument");
  }
  // Past the cache's max_ttl (365 days).
  CHECK(c.Put(CacheKey("k") + "?ttl=40000000", "new", Bearer(a)).status == 400);
  for (const std::string by : {"abc", "1.5", "", "99999999999999999999", "+1", "1e3"}) {
    INFO(by);
    CHECK(c.Post(CacheKey("n") + "/incr?by=" + by, "", Bearer(a)).status == 400);
  }
  // An increment of a value that is not an integer, or one that overflows.
  CHECK(c.Post(CacheKey("k") + "/incr", "", Bearer(a)).status == 400);
  CHECK(c.Post(CacheKey("n") + "/incr?by=9223372036854775807", "", Bearer(a)).status == 400);
  CHECK(c.Get(CacheKey("k") + "?ttl=5", Bearer(a)).status == 400);
  CHECK(c.Put(CacheKey("k") + "?color=red", "new", Bearer(a)).status == 400);
  CHECK(c.Post(CacheKey("k"), "", Bearer(a)).status == 405);
  CHECK(c.Put(CacheKey("k%zz"), "new", Bearer(a)).status == 400);
  // Over the engine's key limit (4096 bytes) and value limit (1 MiB).
  CHECK(c.Put(CacheKey(std::string(5000, 'k')), "v", Bearer(a)).status == 413);
  CHECK(c.Put(CacheKey("big"), std::string((1 << 20) + 1, 'v'), Bearer(a)).status == 413);

  CHECK(c.Get(CacheKey("k"), Bearer(a)).body == "old");
  CHECK(c.Get(CacheKey("n"), Bearer(a)).body == "5");
  CHECK(c.Get(CacheKey("big"), Bearer(a)).status == 404);
  CHECK(s.Get("alpha").cache().Stats().entries == 2);
}

TEST_CASE("Server jobs and cache: a tenant sees none of another's jobs or entries",
          "[server][jobs][cache]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  std::string b = s.CreateTenant("beta");
  TestClient c = s.Client();
  std::string b_job = Enqueue(c, b, R"({"type":"t","payload":"beta's"})");
  REQUIRE(c.Put(CacheKey("k"), "beta's", Bearer(b)).status == 204);
  Reply b_claim = c.Post("/v1/jobs/claim?type=t&lease_s=60", "", Bearer(b));
  REQUIRE(b_claim.status == 200);
  Enqueue(c, b, R"({"type":"t"})");

  CHECK(c.Get("/v1/jobs/" + b_job, Bearer(a)).status == 404);
  CHECK(c.Post("/v1/jobs/claim?type=t", "", Bearer(a)).status == 204);
  CHECK(c.Post("/v1/jobs/claim", "", Bearer(a)).status == 204);
  CHECK(c.Post("/v1/jobs/" + b_job + "/ack", LeaseBody(b_claim.JsonString("lease")), Bearer(a))
            .status == 404);
  CHECK(c.Get(CacheKey("k"), Bearer(a)).status == 404);
  CHECK(c.Delete(CacheKey("k"), Bearer(a)).status == 204);
  CHECK(c.Post(CacheKey("k") + "/incr", "", Bearer(a)).JsonNumber("value") == 1);
  // Naming beta with alpha's key is refused.
  CHECK(c.Get("/t/beta/v1/jobs/" + b_job, Bearer(a)).status == 403);
  CHECK(c.Get("/t/beta" + CacheKey("k"), Bearer(a)).status == 403);
  CHECK(c.Post("/t/beta/v1/jobs/claim", "", Bearer(a)).status == 403);

  // beta's are untouched.
  CHECK(c.Get(CacheKey("k"), Bearer(b)).body == "beta's");
  CHECK(c.Get("/v1/jobs/" + b_job, Bearer(b)).JsonString("state") == "claimed");
  CHECK(s.Jobs("beta").Counts()->queued == 1);
  CHECK(c.Post("/v1/jobs/" + b_job + "/ack", LeaseBody(b_claim.JsonString("lease")), Bearer(b))
            .status == 200);
}

TEST_CASE(
    "Server jobs and cache: a disabled or read-only tenant is refused as "
    "for the kv routes",
    "[server][jobs][cache]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  std::string id = Enqueue(c, a, R"({"type":"t"})");
  REQUIRE(c.Put(CacheKey("k"), "v", Bearer(a)).status == 204);

  REQUIRE(c.Put("/admin/tenants/alpha", R"({"read_only":true})", Admin()).status == 200);
  CHECK(c.Get(CacheKey("k"), Bearer(a)).body == "v");
  CHECK(c.Get("/v1/jobs/" + id, Bearer(a)).status == 200);
  for (Reply r :
       {c.Put(CacheKey("k"), "w", Bearer(a)), c.Post(CacheKey("n") + "/incr", "", Bearer(a)),
        c.Post("/v1/jobs", R"({"type":"t"})", Bearer(a)),
        c.Post("/v1/jobs/claim", "", Bearer(a))}) {
    CHECK(r.status == 403);
    CHECK(r.ErrorCode() == "tenant_read_only");
  }

  REQUIRE(c.Delete("/admin/tenants/alpha", Admin()).status == 200);
  Reply disabled = c.Get(CacheKey("k"), Bearer(a));
  CHECK(disabled.status == 403);
  CHECK(disabled.ErrorCode() == "tenant_disabled");
  CHECK(c.Get("/v1/jobs/" + id, Bearer(a)).ErrorCode() == "tenant_disabled");
  // Disabling dropped the tenant's cache entries.
  REQUIRE(c.Post("/admin/tenants/alpha/enable", "", Admin()).status == 200);
  CHECK(c.Get(CacheKey("k"), Bearer(a)).status == 404);
  CHECK(c.Get("/v1/jobs/" + id, Bearer(a)).status == 200);
}

TEST_CASE("Server jobs and cache: metrics and request counters count the calls",
          "[server][jobs][cache][metrics]") {
  JobsServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  Tenant alpha = s.Get("alpha");
  std::string id = Enqueue(c, a, R"({"type":"t"})");
  Reply claimed = c.Post("/v1/jobs/claim?type=t", "", Bearer(a));
  REQUIRE(claimed.status == 200);
  REQUIRE(c.Post("/v1/jobs/claim?type=t", "", Bearer(a)).status == 204);
  REQUIRE(c.Get("/v1/jobs/" + id, Bearer(a)).status == 200);
  REQUIRE(
      c.Post("/v1/jobs/" + id + "/ack", LeaseBody(claimed.JsonString("lease")), Bearer(a)).status ==
      200);
  REQUIRE(c.Put(CacheKey("k"), "v", Bearer(a)).status == 204);
  REQUIRE(c.Get(CacheKey("k"), Bearer(a)).status == 200);
  REQUIRE(c.Get(CacheKey("nope"), Bearer(a)).status == 404);
  REQUIRE(c.Post(CacheKey("n") + "/incr", "", Bearer(a)).status == 200);
  REQUIRE(c.Delete(CacheKey("k"), Bearer(a)).status == 204);
  REQUIRE(c.Put(CacheKey("k") + "?ttl=0", "v", Bearer(a)).status == 400);

  // The library's counters: one call per request that reached it.
  CHECK(Calls(alpha, CallKind::kJobs) == 5);
  CHECK(Calls(alpha, CallKind::kCache) == 5);

  std::string metrics = c.Get("/metrics", Admin()).body;
  INFO(metrics);
  CHECK(MetricValue(metrics, R"(tenancy_api_calls_total{tenant="alpha",method="POST"})") == 5);
  CHECK(MetricValue(metrics, R"(tenancy_api_calls_total{tenant="alpha",method="GET"})") == 3);
  CHECK(MetricValue(metrics, R"(tenancy_api_calls_total{tenant="alpha",method="PUT"})") == 2);
  CHECK(MetricValue(metrics, R"(tenancy_request_duration_seconds_count{route="job_claim"})") == 2);
  CHECK(MetricValue(metrics, R"(tenancy_request_duration_seconds_count{route="job_enqueue"})") ==
        1);
  CHECK(MetricValue(metrics, R"(tenancy_request_duration_seconds_count{route="job_ack"})") == 1);
  CHECK(MetricValue(metrics, R"(tenancy_request_duration_seconds_count{route="cache_put"})") == 2);
  CHECK(MetricValue(metrics, R"(tenancy_request_duration_seconds_count{route="cache_incr"})") == 1);
}

}  // namespace
}  // namespace tenancy::testing
