// The first day of each team that asked for tenancyd, over real HTTP on
// loopback: the tenant header and the
// default tenant (job service), integers in JSON and health of an unknown
// tenant (database), opaque job ids, cache prefix delete and a replayed
// enqueue (framework).

#include <catch2/catch.hpp>
#include <string>

#include "server_fixture.h"
#include "tenancy/cache.h"
#include "tenancy/tenant_registry.h"

namespace tenancy::testing {
namespace {

ServerOptions Trusted(std::vector<std::string> headers = {"X-Tenant-ID"}) {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.auth = AuthMode::kTrusted;
  options.tenant_headers = std::move(headers);
  return options;
}

TEST_CASE("Way in: a configured tenant header names the tenant, two disagreeing are 400",
          "[server][way-in]") {
  ServerFixture f(Trusted({"X-SS-Tenant-ID", "X-Tenant-ID"}));
  f.CreateTenant("jobs-a");
  f.CreateTenant("jobs-b");
  TestClient c = f.Client();
  REQUIRE(c.Put("/v1/kv/k", "a", {{"X-SS-Tenant-ID", "jobs-a"}}).status == 204);
  REQUIRE(c.Put("/v1/kv/k", "b", {{"X-Tenant-ID", "jobs-b"}}).status == 204);
  CHECK(*f.engine->GetTenant("jobs-a")->kv().Get("k") == "a");
  CHECK(*f.engine->GetTenant("jobs-b")->kv().Get("k") == "b");
  // Header names are case-insensitive.
  CHECK(c.Get("/v1/kv/k", {{"x-ss-tenant-id", "jobs-a"}}).body == "a");
  // Agreeing headers and prefix are fine.
  CHECK(
      c.Get("/t/jobs-a/v1/kv/k", {{"X-SS-Tenant-ID", "jobs-a"}, {"X-Tenant-ID", "jobs-a"}}).body ==
      "a");
  // Disagreeing: 400, and nothing written.
  Reply two = c.Put("/v1/kv/x", "v", {{"X-SS-Tenant-ID", "jobs-a"}, {"X-Tenant-ID", "jobs-b"}});
  CHECK(two.status == 400);
  CHECK(two.ErrorCode() == "invalid_argument");
  CHECK(c.Put("/t/jobs-b/v1/kv/x", "v", {{"X-SS-Tenant-ID", "jobs-a"}}).status == 400);
  CHECK(c.Put("/v1/kv/x", "v", {{"X-SS-Tenant-ID", "Not_A_Slug"}}).status == 400);
  CHECK(f.engine->GetTenant("jobs-a")->usage().keys == 1);
  CHECK(f.engine->GetTenant("jobs-b")->usage().keys == 1);
}

TEST_CASE("Way in: in api-key mode a configured tenant header naming another tenant is 403",
          "[server][way-in]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.tenant_headers = {"X-SS-Tenant-ID"};
  ServerFixture f(options);
  const std::string a = f.CreateTenant("alpha");
  f.CreateTenant("beta");
  TestClient c = f.Client();
  CHECK(c.Put("/v1/kv/k", "v", {{"Authorization", "Bearer " + a}, {"X-SS-Tenant-ID", "alpha"}})
            .status == 204);
  CHECK(c.Put("/v1/kv/k", "v", {{"Authorization", "Bearer " + a}, {"X-SS-Tenant-ID", "beta"}})
            .status == 403);
  // The admin key acts on the tenant the configured header names.
  CHECK(c.Get("/v1/kv/k", {{"X-Admin-Key", kAdminKey}, {"X-SS-Tenant-ID", "alpha"}}).body == "v");
}

TEST_CASE("Way in: trusted mode creates the default tenant at start, once", "[server][way-in]") {
  ServerOptions options = Trusted();
  options.default_tenant = "main";
  ServerFixture f(options);
  TestClient c = f.Client();
  // No tenant named: the default one, which exists without an admin.
  REQUIRE(c.Post("/v1/jobs", R"({"type":"t","payload":"p"})").status == 201);
  REQUIRE(c.Put("/v1/kv/k", "v").status == 204);
  CHECK(f.engine->registry().Get("main").ok());
  // A restart over the same data keeps it as it is (idempotent).
  f.server.reset();
  auto again = HttpServer::Start(options, f.engine.get());
  REQUIRE(again.ok());
  f.server = *std::move(again);
  TestClient c2 = f.Client();
  CHECK(c2.Get("/v1/kv/k").body == "v");
  // One an admin disabled stays disabled across a restart.
  REQUIRE(f.engine->registry().Disable("main").ok());
  f.server.reset();
  again = HttpServer::Start(options, f.engine.get());
  REQUIRE(again.ok());
  f.server = *std::move(again);
  CHECK(f.Client().Get("/v1/kv/k").status == 403);
}

TEST_CASE("Way in: api-key mode does not create a default tenant", "[server][way-in]") {
  ServerFixture f;
  CHECK(absl::IsNotFound(f.engine->registry().Get("default").status()));
}

TEST_CASE("Way in: /t/{id}/health is 404 for an unknown tenant and 403 for a disabled one",
          "[server][way-in]") {
  ServerFixture f;
  f.CreateTenant("alpha");
  f.CreateTenant("beta");
  TestClient c = f.Client();
  CHECK(c.Get("/health").status == 200);
  CHECK(c.Get("/t/alpha/health").status == 200);
  Reply unknown = c.Get("/t/nosuch/health");
  CHECK(unknown.status == 404);
  CHECK(unknown.ErrorCode() == "not_found");
  REQUIRE(c.Delete("/admin/tenants/beta", Admin()).status == 200);
  CHECK(c.Get("/t/beta/health").status == 403);
}

TEST_CASE("Way in: whole numbers in JSON answers are integers (quota_mb 1000)",
          "[server][way-in]") {
  ServerFixture f;
  const std::string a = f.CreateTenant("alpha", R"("quota":{"storage_mb":1000})");
  TestClient c = f.Client();
  struct Case {
    std::string path;
    std::string field;
  };
  for (const Case& k : {Case{"/admin/tenants/alpha", "\"storage_mb\":1000"},
                        Case{"/admin/tenants/alpha/stats", "\"quota_mb\":1000"},
                        Case{"/admin/tenants", "\"quota_mb\":1000"}}) {
    INFO(k.path);
    Reply r = c.Get(k.path, Admin());
    REQUIRE(r.status == 200);
    CHECK(r.body.find(k.field) != std::string::npos);
    CHECK(r.body.find("e+") == std::string::npos);
  }
  Reply usage = c.Get("/v1/usage", Bearer(a));
  REQUIRE(usage.status == 200);
  CHECK(usage.body.find("\"quota_mb\":1000") != std::string::npos);
  CHECK(usage.body.find("e+") == std::string::npos);
}

TEST_CASE("Way in: DELETE /v1/cache?prefix=P drops the tenant's entries under P only",
          "[server][way-in]") {
  ServerFixture f;
  const std::string a = f.CreateTenant("alpha");
  const std::string b = f.CreateTenant("beta");
  TestClient c = f.Client();
  for (const std::string key : {"user:1", "user:2", "user:3", "session:1"}) {
    REQUIRE(c.Put("/v1/cache/" + key, "v", Bearer(a)).status == 204);
    REQUIRE(c.Put("/v1/cache/" + key, "v", Bearer(b)).status == 204);
  }
  Reply r = c.Delete("/v1/cache?prefix=user%3A", Bearer(a));
  REQUIRE(r.status == 200);
  CHECK(r.JsonNumber("deleted") == 3);
  CHECK(c.Get("/v1/cache/user:1", Bearer(a)).status == 404);
  CHECK(c.Get("/v1/cache/session:1", Bearer(a)).status == 200);
  // The other tenant's entries under the same prefix are untouched.
  CHECK(c.Get("/v1/cache/user:1", Bearer(b)).status == 200);
  // Also under /t/{id}/; an empty prefix drops the tenant's whole cache.
  Reply all = c.Delete("/t/alpha/v1/cache?prefix=", Bearer(a));
  REQUIRE(all.status == 200);
  CHECK(all.JsonNumber("deleted") == 1);
  CHECK(c.Get("/v1/cache/session:1", Bearer(a)).status == 404);
  CHECK(c.Delete("/v1/cache?prefix=", Bearer(a)).JsonNumber("deleted") == 0);
  // Without prefix, or with an unknown parameter: 400, nothing dropped.
  CHECK(c.Delete("/v1/cache", Bearer(b)).status == 400);
  CHECK(c.Delete("/v1/cache?prefix=user&color=red", Bearer(b)).status == 400);
  CHECK(c.Get("/v1/cache/user:2", Bearer(b)).status == 200);
  CHECK(c.Get("/v1/cache/session:1", Bearer(b)).status == 200);
  // It needs the tenant's key.
  CHECK(c.Delete("/v1/cache?prefix=").status == 401);
}

TEST_CASE("Way in: a replayed enqueue is 201 with the stored job's id and created false",
          "[server][way-in]") {
  ServerFixture f;
  const std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  const std::string body = R"({"type":"email","payload":"p","idempotency_key":"order-7"})";
  Reply first = c.Post("/v1/jobs", body, Bearer(a));
  REQUIRE(first.status == 201);
  CHECK(first.Json("created")->get_bool().value() == true);
  Reply replay = c.Post("/v1/jobs", body, Bearer(a));
  CHECK(replay.status == 201);
  CHECK(replay.JsonString("id") == first.JsonString("id"));
  CHECK(replay.Json("created")->get_bool().value() == false);
}

TEST_CASE("Way in: a node alone gives the cluster's forwarding headers no trust",
          "[server][way-in]") {
  ServerFixture f;
  const std::string key = f.CreateTenant("acme");
  TestClient c = f.Client();
  const httplib::Headers marker = {{"X-Tenancy-Forwarded-Tenant", "acme"},
                                   {"X-Tenancy-Cluster-Secret", "anything"}};
  // Without credentials they are nothing: 401.
  CHECK(c.Put("/v1/kv/k", "v", marker).status == 401);
  CHECK(f.engine->GetTenant("acme")->usage().keys == 0);
  // With a key, the key decides, as always.
  httplib::Headers with_key = marker;
  with_key.emplace("Authorization", "Bearer " + key);
  CHECK(c.Put("/v1/kv/k", "v", with_key).status == 204);
}

}  // namespace
}  // namespace tenancy::testing
