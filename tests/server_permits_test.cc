// tenancyd's permit routes over real HTTP on loopback: POST /v1/permits,
// POST /v1/permits/{permit}/renew, DELETE /v1/permits/{permit}.

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"
#include "tenancy/leased_permits.h"

namespace tenancy::testing {
namespace {

using Clock = std::chrono::steady_clock;

// True once `done` holds, polling for up to 10 s.
bool WaitUntil(const std::function<bool()>& done) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return done();
}

// A server whose tenants default to the seeded limits: llm 30, of which
// llm/student 2, and ocr 5.
struct PermitServer : ServerFixture {
  PermitServer() : ServerFixture(DefaultOptions(), EngineWithLimits()) {}
  static EngineOptions EngineWithLimits() {
    EngineOptions o = DefaultEngineOptions();
    o.limiter.default_tenant_limits = {{"llm", 30}, {"llm/student", 2}, {"ocr", 5}};
    return o;
  }
  // The library's row for (tenant, class).
  PermitLeaseCounters Row(std::string_view tenant, std::string_view cls) {
    for (const PermitLeaseCounters& row : engine->permits().Snapshot()) {
      if (row.tenant_id == tenant && row.class_name == cls) return row;
    }
    return {};
  }
};

Reply Take(TestClient& c, const std::string& key, const std::string& body,
           const std::string& prefix = "") {
  return c.Post(prefix + "/v1/permits", body, Bearer(key));
}

TEST_CASE("Server permits: take, renew and release a permit", "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  Reply taken = Take(c, a, R"({"class":"llm/student","lease_s":30})");
  REQUIRE(taken.status == 201);
  CHECK(taken.Header("Content-Type") == "application/json");
  const std::string permit = taken.JsonString("permit");
  CHECK(permit.rfind("pt_", 0) == 0);
  CHECK(taken.JsonString("class") == "llm/student");
  const std::string expires = taken.JsonString("expires_at");
  absl::Time expires_at;
  std::string error;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, expires, &expires_at, &error));
  CHECK(expires_at > absl::Now() + absl::Seconds(25));
  CHECK(expires_at <= absl::Now() + absl::Seconds(30));
  CHECK(s.Row("alpha", "llm/student").in_use == 1);

  Reply renewed = c.Post("/v1/permits/" + permit + "/renew", R"({"lease_s":600})", Bearer(a));
  REQUIRE(renewed.status == 200);
  absl::Time renewed_at;
  REQUIRE(
      absl::ParseTime(absl::RFC3339_full, renewed.JsonString("expires_at"), &renewed_at, &error));
  CHECK(renewed_at > absl::Now() + absl::Seconds(590));

  CHECK(c.Delete("/v1/permits/" + permit, Bearer(a)).status == 204);
  CHECK(s.Row("alpha", "llm/student").in_use == 0);
  Reply again = c.Delete("/v1/permits/" + permit, Bearer(a));
  CHECK(again.status == 404);
  CHECK(again.ErrorCode() == "not_found");
  CHECK(c.Post("/v1/permits/" + permit + "/renew", R"({"lease_s":5})", Bearer(a)).status == 404);
}

TEST_CASE("Server permits: the routes are served under /t/{id}/ too", "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  // The tenant's own key, and the admin key acting on the tenant.
  for (const httplib::Headers& auth : {Bearer(a), Admin()}) {
    Reply taken = c.Post("/t/alpha/v1/permits", R"({"class":"ocr"})", auth);
    REQUIRE(taken.status == 201);
    const std::string permit = taken.JsonString("permit");
    CHECK(s.Row("alpha", "ocr").in_use == 1);
    CHECK(c.Post("/t/alpha/v1/permits/" + permit + "/renew", "{}", auth).status == 200);
    CHECK(c.Delete("/t/alpha/v1/permits/" + permit, auth).status == 204);
    CHECK(s.Row("alpha", "ocr").in_use == 0);
  }
  CHECK(c.Get("/v1/permits", Bearer(a)).status == 405);
  CHECK(c.Get("/v1/permits/x", Bearer(a)).status == 405);
  CHECK(c.Post("/v1/permits/x/other", "{}", Bearer(a)).status == 404);
}

TEST_CASE("Server permits: a full class answers 429 once the wait ends", "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  REQUIRE(Take(c, a, R"({"class":"llm/student"})").status == 201);
  REQUIRE(Take(c, a, R"({"class":"llm/student"})").status == 201);
  SECTION("without a wait") {
    Reply busy = Take(c, a, R"({"class":"llm/student"})");
    CHECK(busy.status == 429);
    CHECK(busy.ErrorCode() == "concurrency_limited");
    CHECK(busy.Header("Retry-After") == "1");
  }
  SECTION("after a wait") {
    const auto start = Clock::now();
    Reply busy = Take(c, a, R"({"class":"llm/student","wait_s":0.3})");
    CHECK(busy.status == 429);
    CHECK(busy.ErrorCode() == "concurrency_limited");
    CHECK(busy.Header("Retry-After") == "1");
    CHECK(Clock::now() - start >= std::chrono::milliseconds(300));
    CHECK(s.Row("alpha", "llm/student").wait_timeouts == 1);
  }
  CHECK(s.Row("alpha", "llm/student").in_use == 2);
}

TEST_CASE("Server permits: a waiting request gets a permit released meanwhile",
          "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  Reply first = Take(c, a, R"({"class":"llm/student"})");
  REQUIRE(first.status == 201);
  REQUIRE(Take(c, a, R"({"class":"llm/student"})").status == 201);
  Reply waited;
  std::thread waiter([&] {
    TestClient w = s.Client();
    waited = Take(w, a, R"({"class":"llm/student","wait_s":20})");
  });
  REQUIRE(WaitUntil([&] { return s.Row("alpha", "llm/student").waiting == 1; }));
  // The tenant's other requests are not held up by the waiting one.
  CHECK(c.Put("/v1/kv/k", "v", Bearer(a)).status == 204);
  CHECK(c.Delete("/v1/permits/" + first.JsonString("permit"), Bearer(a)).status == 204);
  waiter.join();
  CHECK(waited.status == 201);
  CHECK(s.Row("alpha", "llm/student").in_use == 2);
}

TEST_CASE("Server permits: a permit whose lease ends is released without a release call",
          "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  REQUIRE(Take(c, a, R"({"class":"llm/student","lease_s":60})").status == 201);
  Reply short_lease = Take(c, a, R"({"class":"llm/student","lease_s":0.2})");
  REQUIRE(short_lease.status == 201);
  // Full now; only the expiry can make room for this one.
  Reply next = Take(c, a, R"({"class":"llm/student","wait_s":10})");
  CHECK(next.status == 201);
  CHECK(s.Row("alpha", "llm/student").expired == 1);
  const std::string stale = short_lease.JsonString("permit");
  CHECK(c.Post("/v1/permits/" + stale + "/renew", "{}", Bearer(a)).status == 404);
  CHECK(c.Delete("/v1/permits/" + stale, Bearer(a)).status == 404);
}

TEST_CASE("Server permits: bad input is 400 and takes nothing", "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  const char* bad[] = {
      R"({"class":"llm","wait_s":21})",       // wait over 20 s
      R"({"class":"llm","wait_s":-1})",       // negative wait
      R"({"class":"nope"})",                  // no limit names it
      R"({"class":"llm/nope"})",              // nor this child
      R"({"class":"requests"})",              // the server's own
      R"({"class":"requests/writes"})",       //
      R"({"class":"requests/scans"})",        //
      R"({"class":"requests.claim-waits"})",  //
      R"({"class":"llm","lease_s":0})",       // lease out of (0, 3600]
      R"({"class":"llm","lease_s":3601})",    //
      R"({"class":"llm","lease_s":-5})",      //
      R"({"class":"llm","lease_s":"10"})",    // not a number
      R"({"class":"a//b"})",                  // not a class name
      R"({"lease_s":10})",                    // no class
      R"({"class":"llm","colour":"red"})",    // unknown field
      R"(["llm"])",                           // not an object
      "{",                                    // not JSON
  };
  for (const char* body : bad) {
    INFO(body);
    Reply r = Take(c, a, body);
    CHECK(r.status == 400);
    CHECK(r.ErrorCode() == "invalid_argument");
  }
  CHECK(c.Post("/v1/permits?wait_s=1", R"({"class":"llm"})", Bearer(a)).status == 400);
  CHECK(s.engine->permits().Snapshot().empty());
  // 20 s and 3600 s are allowed.
  Reply ok = Take(c, a, R"({"class":"llm","lease_s":3600,"wait_s":20})");
  REQUIRE(ok.status == 201);
  const std::string renew = "/v1/permits/" + ok.JsonString("permit") + "/renew";
  CHECK(c.Post(renew, R"({"lease_s":3601})", Bearer(a)).status == 400);
  CHECK(c.Post(renew, R"({"lease_s":0})", Bearer(a)).status == 400);
  CHECK(c.Post(renew, R"({"lease":5})", Bearer(a)).status == 400);
  CHECK(c.Post(renew, R"({"lease_s":5})", Bearer(a)).status == 200);
}

TEST_CASE("Server permits: a token of another tenant, or a malformed one, is 404",
          "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  std::string b = s.CreateTenant("beta");
  TestClient c = s.Client();
  Reply taken = Take(c, a, R"({"class":"ocr"})");
  REQUIRE(taken.status == 201);
  const std::string permit = taken.JsonString("permit");
  CHECK(c.Delete("/v1/permits/" + permit, Bearer(b)).status == 404);
  CHECK(c.Post("/v1/permits/" + permit + "/renew", "{}", Bearer(b)).status == 404);
  for (const std::string& bad :
       {std::string("nope"), permit + "x", permit.substr(0, permit.size() - 1),
        std::string("pt_%00") + permit.substr(5), std::string("..%2F..%2Fkv")}) {
    INFO(bad);
    Reply r = c.Delete("/v1/permits/" + bad, Bearer(a));
    CHECK(r.status == 404);
    CHECK(r.ErrorCode() == "not_found");
    CHECK(c.Post("/v1/permits/" + bad + "/renew", "{}", Bearer(a)).status == 404);
  }
  // Still alpha's, still held.
  CHECK(s.Row("alpha", "ocr").in_use == 1);
  CHECK(c.Delete("/v1/permits/" + permit, Bearer(a)).status == 204);
}

TEST_CASE("Server permits: tenant tier parent then child, then the global tier",
          "[server][permits]") {
  PermitServer s;
  REQUIRE(s.engine->limiter().SetGlobalLimits({{"llm/student", 3}}).ok());
  std::string a = s.CreateTenant("alpha");
  std::string b = s.CreateTenant("beta", R"("limits":{"llm":30,"llm/student":2})");
  TestClient c = s.Client();
  REQUIRE(Take(c, a, R"({"class":"llm/student"})").status == 201);
  REQUIRE(Take(c, a, R"({"class":"llm/student"})").status == 201);
  Reply tenant_full = Take(c, a, R"({"class":"llm/student"})");
  CHECK(tenant_full.status == 429);
  CHECK(tenant_full.body.find("at the tenant tier") != std::string::npos);
  // beta has room at its tenant tier; the global tier (3) has one slot.
  REQUIRE(Take(c, b, R"({"class":"llm/student"})").status == 201);
  Reply global_full = Take(c, b, R"({"class":"llm/student"})");
  CHECK(global_full.status == 429);
  CHECK(global_full.body.find("at the global tier") != std::string::npos);
  // Every child permit holds its parent: llm has 28 of alpha's 30 left.
  auto alpha = s.engine->limiter().GetTenant("alpha");
  REQUIRE(alpha != nullptr);
  auto llm = s.engine->limiter().Class("llm");
  CHECK(s.engine->limiter().TenantCounters(*alpha, *llm).in_use == 2);
  CHECK(Take(c, a, R"({"class":"llm"})").status == 201);
  // A tenant's lower limit binds before the defaults.
  REQUIRE(c.Put("/admin/tenants/beta", R"({"limits":{"llm":1,"llm/student":2}})", Admin()).status ==
          200);
  CHECK(Take(c, b, R"({"class":"llm"})").status == 429);
}

TEST_CASE("Server permits: waiting permit requests are capped like waiting claims",
          "[server][permits]") {
  // 4 workers: at most 2 requests wait at once, 1 per tenant.
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  Reply held = Take(c, a, R"({"class":"llm/student"})");
  REQUIRE(held.status == 201);
  REQUIRE(Take(c, a, R"({"class":"llm/student"})").status == 201);
  Reply waited;
  std::thread waiter([&] {
    TestClient w = s.Client();
    waited = Take(w, a, R"({"class":"llm/student","wait_s":20})");
  });
  REQUIRE(WaitUntil([&] { return s.Row("alpha", "llm/student").waiting == 1; }));
  // alpha's share of waiting requests is taken: this one does not wait.
  Reply busy = Take(c, a, R"({"class":"llm/student","wait_s":20})");
  CHECK(busy.status == 429);
  CHECK(busy.ErrorCode() == "concurrency_limited");
  CHECK(busy.Header("Retry-After") == "1");
  CHECK(s.Row("alpha", "llm/student").waits == 1);
  // Nor may a claim wait meanwhile: the two share the slots.
  CHECK(c.Post("/v1/jobs/claim?type=t&wait_s=20", "", Bearer(a)).status == 429);
  CHECK(c.Delete("/v1/permits/" + held.JsonString("permit"), Bearer(a)).status == 204);
  waiter.join();
  CHECK(waited.status == 201);
}

TEST_CASE("Server permits: disabling a tenant releases its permits", "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  Reply taken = Take(c, a, R"({"class":"llm/student"})");
  REQUIRE(taken.status == 201);
  REQUIRE(c.Delete("/admin/tenants/alpha", Admin()).status == 200);
  CHECK(s.Row("alpha", "llm/student").in_use == 0);
  CHECK(Take(c, a, R"({"class":"llm/student"})").status == 403);
  REQUIRE(c.Post("/admin/tenants/alpha/enable", "", Admin()).status == 200);
  CHECK(c.Delete("/v1/permits/" + taken.JsonString("permit"), Bearer(a)).status == 404);
}

TEST_CASE("Server permits: /metrics shows permits per tenant and class", "[server][permits]") {
  PermitServer s;
  std::string a = s.CreateTenant("alpha");
  TestClient c = s.Client();
  REQUIRE(Take(c, a, R"({"class":"llm/student"})").status == 201);
  REQUIRE(Take(c, a, R"({"class":"llm/student","lease_s":0.05})").status == 201);
  REQUIRE(Take(c, a, R"({"class":"llm/student","wait_s":10})").status == 201);
  REQUIRE(Take(c, a, R"({"class":"llm/student","wait_s":0.05})").status == 429);
  Reply r = c.Get("/metrics", Admin());
  REQUIRE(r.status == 200);
  INFO(r.body);
  auto has = [&](const std::string& line) {
    return r.body.find("\n" + line + "\n") != std::string::npos;
  };
  CHECK(has(R"(tenancy_permits_in_use{tenant="alpha",class="llm/student"} 2)"));
  CHECK(has(R"(tenancy_permits_granted_total{tenant="alpha",class="llm/student"} 3)"));
  CHECK(has(R"(tenancy_permit_waits_total{tenant="alpha",class="llm/student"} 2)"));
  CHECK(has(R"(tenancy_permit_wait_timeouts_total{tenant="alpha",class="llm/student"} 1)"));
  CHECK(has(R"(tenancy_permits_expired_total{tenant="alpha",class="llm/student"} 1)"));
  CHECK(has(R"(tenancy_permits_waiting{tenant="alpha",class="llm/student"} 0)"));
  CHECK(has(R"(tenancy_limiter_in_use{tenant="alpha",class="llm"} 2)"));
  CHECK(r.body.find(R"(tenancy_request_duration_seconds_count{route="permit_take"} 4)") !=
        std::string::npos);
#ifdef TENANCY_PROMTOOL
  TempDir tmp;
  const std::string file = (tmp.path() / "metrics.txt").string();
  {
    std::ofstream out(file);
    out << r.body;
  }
  const std::string command = std::string(TENANCY_PROMTOOL) + " check metrics < " + file;
  CHECK(std::system(command.c_str()) == 0);
#endif
  // A purged tenant's permit series are gone.
  REQUIRE(c.Post("/admin/tenants/alpha/purge", "", Admin()).status == 200);
  CHECK(c.Get("/metrics", Admin()).body.find("tenancy_permits_in_use{tenant=\"alpha\"") ==
        std::string::npos);
}

}  // namespace
}  // namespace tenancy::testing
