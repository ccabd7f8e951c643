// tenancyd's routes, over real HTTP on loopback: every route and error row of
// server/README.md (except jobs, cache and the tenants file, served
// elsewhere).

#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"

namespace tenancy::testing {
namespace {

std::string Key(const std::string& raw) { return "/v1/kv/" + raw; }

TEST_CASE("Server: health and version answer without credentials", "[server]") {
  ServerFixture f;
  f.CreateTenant("acme");
  TestClient c = f.Client();
  Reply health = c.Get("/health");
  CHECK(health.status == 200);
  CHECK(health.body == R"({"status":"ok"})");
  CHECK(c.Get("/t/acme/health").status == 200);
  Reply version = c.Get("/version");
  CHECK(version.status == 200);
  CHECK(version.JsonString("version") == TENANCY_VERSION_STRING);
  CHECK(c.Get("/t/NOT_AN_ID/health").status == 400);
}

TEST_CASE("Server: the cluster's routes answer 404 on a node alone", "[server]") {
  ServerFixture f;
  TestClient c = f.Client();
  f.CreateTenant("acme");
  CHECK(c.Get("/admin/cluster", Admin()).status == 404);
  CHECK(
      c.Put("/admin/cluster/limits", R"({"global_limits":{"llm":1}})", Admin(), "application/json")
          .status == 404);
  Reply move = c.Post("/admin/tenants/acme/move", R"({"to":"n2"})", Admin());
  CHECK(move.status == 404);
  CHECK(move.body.find("not in a cluster") != std::string::npos);
  CHECK(c.Post("/cluster/tenants/acme/archive", "x", {{"X-Tenancy-Cluster-Secret", "s"}}).status ==
        404);
  // The admin key is asked for first, as on every admin route.
  CHECK(c.Get("/admin/cluster").status == 401);
  CHECK(c.Post("/admin/tenants/acme/move", R"({"to":"n2"})").status == 401);
}

TEST_CASE("Server: two tenants write the same key and each reads its own", "[server]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  std::string b = f.CreateTenant("beta");
  TestClient c = f.Client();
  REQUIRE(c.Put(Key("shared"), "from-alpha", Bearer(a)).status == 204);
  REQUIRE(c.Put(Key("shared"), "from-beta", Bearer(b)).status == 204);
  Reply ra = c.Get(Key("shared"), Bearer(a));
  Reply rb = c.Get(Key("shared"), Bearer(b));
  CHECK(ra.status == 200);
  CHECK(ra.body == "from-alpha");
  CHECK(ra.Header("Content-Type") == "application/octet-stream");
  CHECK(rb.body == "from-beta");
  // The /t/{id}/ mirror of the same routes.
  CHECK(c.Get("/t/alpha" + Key("shared"), Bearer(a)).body == "from-alpha");
  // A delete by one leaves the other's key alone; deletes are idempotent.
  CHECK(c.Delete(Key("shared"), Bearer(a)).status == 204);
  CHECK(c.Delete(Key("shared"), Bearer(a)).status == 204);
  Reply gone = c.Get(Key("shared"), Bearer(a));
  CHECK(gone.status == 404);
  CHECK(gone.ErrorCode() == "not_found");
  CHECK(c.Get(Key("shared"), Bearer(b)).body == "from-beta");
}

TEST_CASE("Server: a tenant's key names only its own tenant", "[server][auth]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  f.CreateTenant("beta");
  TestClient c = f.Client();
  REQUIRE(c.Put(Key("k"), "v", Bearer(a)).status == 204);
  Reply other = c.Get("/t/beta" + Key("k"), Bearer(a));
  CHECK(other.status == 403);
  CHECK(other.ErrorCode() == "forbidden");
  CHECK(c.Put("/t/beta" + Key("k"), "x", Bearer(a)).status == 403);
  httplib::Headers h = Bearer(a);
  h.emplace("X-Tenant-ID", "beta");
  CHECK(c.Get(Key("k"), h).status == 403);
  httplib::Headers own = Bearer(a);
  own.emplace("X-Tenant-ID", "alpha");
  CHECK(c.Get(Key("k"), own).body == "v");
  CHECK(c.Get("/t/alpha" + Key("k"), Bearer(a)).body == "v");
  // beta got nothing.
  auto beta = f.engine->GetTenant("beta");
  REQUIRE(beta.ok());
  CHECK(beta->usage().keys == 0);
}

TEST_CASE("Server: missing, wrong and malformed keys are 401 and change nothing",
          "[server][auth]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  std::vector<httplib::Headers> bad = {
      {},
      {{"Authorization", "Bearer tk_0000000000000000_wrongwrongwrongwrong"}},
      {{"Authorization", "Bearer"}},
      {{"Authorization", "Basic " + a}},
      {{"Authorization", a}},
      {{"Authorization", "Bearer " + a + "%00"}},
      {{"Authorization", "Bearer " + a + "%0d%0a"}},
      {{"Authorization", "Bearer " + a + "%20"}},
      {{"Authorization", "Bearer " + a.substr(0, a.size() - 1)}},
      {{"Authorization", "Bearer " + a + "x"}},
  };
  for (const httplib::Headers& h : bad) {
    INFO("Authorization: " << (h.empty() ? "<none>" : h.begin()->second));
    Reply r = c.Put(Key("k"), "v", h);
    CHECK(r.status == 401);
    CHECK(r.ErrorCode() == "unauthenticated");
    CHECK(r.Header("WWW-Authenticate") == "Bearer");
  }
  // A NUL byte inside the credential, sent raw.
  {
    RawConnection raw(f.port());
    std::string request = "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a +
                          std::string("\0", 1) + "\r\nContent-Length: 1\r\n\r\nv";
    raw.Send(request);
    Reply r = raw.ReadResponse();
    CHECK((r.status == 400 || r.status == 401));
  }
  // A CR inside the credential (not a line end), sent raw.
  {
    RawConnection raw(f.port());
    raw.Send("PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a +
             "\rX-Injected: 1\r\nContent-Length: 1\r\n\r\nv");
    Reply r = raw.ReadResponse();
    CHECK(r.status == 400);
  }
  auto alpha = f.engine->GetTenant("alpha");
  REQUIRE(alpha.ok());
  CHECK(alpha->usage().keys == 0);
  CHECK(c.Put(Key("k"), "v", Bearer(a)).status == 204);
}

TEST_CASE("Server: unknown tenants are 404, disabled ones 403 until enabled",
          "[server][lifecycle]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  REQUIRE(c.Put(Key("k"), "v", Bearer(a)).status == 204);
  CHECK(c.Get("/admin/tenants/nosuch", Admin()).status == 404);
  CHECK(c.Get("/t/nosuch" + Key("k"), Admin()).status == 404);

  Reply disabled = c.Delete("/admin/tenants/alpha", Admin());
  CHECK(disabled.status == 200);
  CHECK(disabled.JsonString("status") == "disabled");
  Reply r = c.Get(Key("k"), Bearer(a));
  CHECK(r.status == 403);
  CHECK(r.ErrorCode() == "tenant_disabled");
  CHECK(c.Put(Key("k2"), "v", Bearer(a)).status == 403);
  // Idempotent.
  CHECK(c.Delete("/admin/tenants/alpha", Admin()).status == 200);

  Reply enabled = c.Post("/admin/tenants/alpha/enable", "", Admin());
  CHECK(enabled.status == 200);
  CHECK(enabled.JsonString("status") == "active");
  CHECK(c.Get(Key("k"), Bearer(a)).body == "v");
  CHECK(c.Put(Key("k2"), "v", Bearer(a)).status == 204);
}

TEST_CASE("Server: a read-only tenant reads, and its writes are 403", "[server][lifecycle]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  REQUIRE(c.Put(Key("k"), "v", Bearer(a)).status == 204);
  REQUIRE(
      c.Put("/admin/tenants/alpha", R"({"read_only":true})", Admin(), "application/json").status ==
      200);
  Reply w = c.Put(Key("k"), "new", Bearer(a));
  CHECK(w.status == 403);
  CHECK(w.ErrorCode() == "tenant_read_only");
  CHECK(c.Delete(Key("k"), Bearer(a)).status == 403);
  CHECK(c.Post("/v1/batch", R"({"ops":[{"op":"delete","key":"k"}]})", Bearer(a)).status == 403);
  CHECK(c.Get(Key("k"), Bearer(a)).body == "v");
}

TEST_CASE("Server: purge removes the tenant, its data and its keys", "[server][lifecycle]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(c.Put(Key("k" + std::to_string(i)), "value", Bearer(a)).status == 204);
  }
  Reply purged = c.Post("/admin/tenants/alpha/purge", "", Admin());
  CHECK(purged.status == 200);
  CHECK(purged.JsonString("status") == "purged");
  CHECK(c.Get(Key("k1"), Bearer(a)).status == 401);
  CHECK(c.Get("/admin/tenants/alpha", Admin()).status == 404);
  CHECK(c.Post("/admin/tenants/alpha/purge", "", Admin()).status == 404);
  // The id can be used again, and the new tenant starts empty.
  std::string again = f.CreateTenant("alpha");
  CHECK(c.Get(Key("k1"), Bearer(again)).status == 404);
  Reply stats = c.Get("/admin/tenants/alpha/stats", Admin());
  CHECK(stats.JsonNumber("keys") == 0);
  CHECK(stats.JsonNumber("storage_used_bytes") == 0);
}

TEST_CASE("Server: key rotation and revocation take effect at once", "[server][auth]") {
  ServerFixture f;
  std::string first = f.CreateTenant("alpha");
  TestClient c = f.Client();
  Reply created = c.Post("/admin/tenants/alpha/keys", "", Admin());
  REQUIRE(created.status == 201);
  std::string second = created.JsonString("api_key");
  std::string second_id = created.JsonString("key_id");
  CHECK(second != first);
  // Both work during the rotation.
  CHECK(c.Put(Key("k"), "1", Bearer(first)).status == 204);
  CHECK(c.Get(Key("k"), Bearer(second)).body == "1");
  // Keys are listed without their secrets.
  Reply listed = c.Get("/admin/tenants/alpha/keys", Admin());
  CHECK(listed.status == 200);
  CHECK(listed.body.find(second_id) != std::string::npos);
  CHECK(listed.body.find(second) == std::string::npos);
  Reply detail = c.Get("/admin/tenants/alpha", Admin());
  CHECK(detail.body.find(first) == std::string::npos);
  // Revoke the first: refused at once, the second goes on.
  std::string first_id = first.substr(3, 16);
  CHECK(c.Delete("/admin/tenants/alpha/keys/" + first_id, Admin()).status == 204);
  CHECK(c.Get(Key("k"), Bearer(first)).status == 401);
  CHECK(c.Get(Key("k"), Bearer(second)).status == 200);
  CHECK(c.Delete("/admin/tenants/alpha/keys/" + first_id, Admin()).status == 404);
}

TEST_CASE("Server: admin routes need the admin key", "[server][admin]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  std::vector<std::string> paths = {"/admin/tenants", "/admin/tenants/alpha",
                                    "/admin/tenants/alpha/stats", "/metrics"};
  for (const std::string& p : paths) {
    Reply none = c.Get(p);
    CHECK(none.status == 401);
    CHECK(none.ErrorCode() == "unauthenticated");
    CHECK(c.Get(p, {{"X-Admin-Key", "wrong"}}).status == 401);
    CHECK(c.Get(p, Bearer("wrong")).status == 401);
    // A tenant's key is not the admin key.
    CHECK(c.Get(p, Bearer(a)).status == 401);
    CHECK(c.Get(p, Bearer(kAdminKey)).status == 200);
    CHECK(c.Get(p, Admin()).status == 200);
  }
  // A wrong key changes nothing.
  CHECK(c.Post("/admin/tenants", R"({"tenant_id":"beta"})", {{"X-Admin-Key", "x"}}).status == 401);
  CHECK(c.Get("/admin/tenants/beta", Admin()).status == 404);
}

TEST_CASE("Server: without an admin key configured, every admin route is 403", "[server][admin]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.admin_key.clear();
  ServerFixture f(options);
  TestClient c = f.Client();
  Reply r = c.Post("/admin/tenants", R"({"tenant_id":"alpha"})", Admin());
  CHECK(r.status == 403);
  CHECK(r.ErrorCode() == "forbidden");
  CHECK(c.Get("/admin/tenants", Admin()).status == 403);
  CHECK(c.Get("/metrics", Admin()).status == 403);
  CHECK(c.Get("/admin/tenants", {{"X-Admin-Key", ""}}).status == 403);
  CHECK(f.engine->registry().size() == 0);
}

TEST_CASE(
    "Server: --metrics-public serves /metrics without the admin key, and "
    "only /metrics",
    "[server][admin]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.metrics_public = true;
  ServerFixture f(options);
  TestClient c = f.Client();
  Reply r = c.Get("/metrics");
  CHECK(r.status == 200);
  CHECK(r.body.find("# TYPE tenancy_tenants_active gauge") != std::string::npos);
  CHECK(c.Get("/admin/tenants").status == 401);
}

TEST_CASE("Server: POST /admin/tenants returns a key once, and an existing id is 409",
          "[server][admin]") {
  ServerFixture f;
  TestClient c = f.Client();
  Reply r = c.Post("/admin/tenants", R"({"tenant_id":"alpha","quota_mb":2})", Admin());
  REQUIRE(r.status == 201);
  CHECK(r.JsonString("tenant_id") == "alpha");
  CHECK(r.JsonString("status") == "active");
  std::string key = r.JsonString("api_key");
  CHECK(key.rfind("tk_", 0) == 0);
  CHECK(r.JsonString("key_id").size() == 16);
  Reply again = c.Post("/admin/tenants", R"({"tenant_id":"alpha","quota_mb":2})", Admin());
  CHECK(again.status == 409);
  CHECK(again.ErrorCode() == "already_exists");
  Reply other = c.Post("/admin/tenants", R"({"tenant_id":"alpha","quota_mb":5})", Admin());
  CHECK(other.status == 409);
  // The 409s changed nothing: one key, the first quota.
  auto info = f.engine->registry().Get("alpha");
  REQUIRE(info.ok());
  CHECK(info->keys.size() == 1);
  CHECK(info->spec.quota.storage_bytes == 2u << 20);
  Reply detail = c.Get("/admin/tenants/alpha", Admin());
  CHECK(detail.body.find(key) == std::string::npos);
}

TEST_CASE("Server: PUT /admin/tenants/{id} creates or replaces a spec, live at once",
          "[server][admin]") {
  ServerFixture f;
  TestClient c = f.Client();
  Reply created = c.Put("/admin/tenants/alpha",
                        R"({"quota":{"storage_mb":1,"max_keys":3},"labels":{"plan":"free"},
                            "limits":{"requests":7}})",
                        Admin(), "application/json");
  REQUIRE(created.status == 200);
  CHECK(created.JsonString("tenant_id") == "alpha");
  CHECK(created.JsonString("state") == "active");
  CHECK(created.body.find(R"("requests":7)") != std::string::npos);
  CHECK(created.body.find(R"("plan":"free")") != std::string::npos);
  auto info = f.engine->registry().Get("alpha");
  REQUIRE(info.ok());
  CHECK(info->spec.quota.max_keys == 3);
  CHECK(info->spec.limits.at("requests") == 7);

  Reply key = c.Post("/admin/tenants/alpha/keys", "", Admin());
  std::string k = key.JsonString("api_key");
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c.Put(Key("k" + std::to_string(i)), "v", Bearer(k)).status == 204);
  }
  CHECK(c.Put(Key("k3"), "v", Bearer(k)).status == 507);
  // Raise the key quota: the next write passes.
  REQUIRE(c.Put("/admin/tenants/alpha", R"({"quota":{"max_keys":10}})", Admin(), "application/json")
              .status == 200);
  CHECK(c.Put(Key("k3"), "v", Bearer(k)).status == 204);
  // The id in the body must agree with the URL; bad specs change nothing.
  CHECK(c.Put("/admin/tenants/alpha", R"({"tenant_id":"beta"})", Admin(), "application/json")
            .status == 400);
  CHECK(c.Put("/admin/tenants/alpha", R"({"placement":"dedicated"})", Admin(), "application/json")
            .status == 409);
  CHECK(f.engine->registry().Get("alpha")->spec.quota.max_keys == 10);
}

TEST_CASE("Server: GET /admin/tenants lists tenants with state and usage, in pages",
          "[server][admin]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  f.CreateTenant("beta");
  f.CreateTenant("gamma");
  TestClient c = f.Client();
  REQUIRE(c.Put(Key("k"), "12345", Bearer(a)).status == 204);
  REQUIRE(c.Delete("/admin/tenants/beta", Admin()).status == 200);
  Reply all = c.Get("/admin/tenants", Admin());
  REQUIRE(all.status == 200);
  CHECK(all.body.find(R"("tenant_id":"alpha","state":"active")") != std::string::npos);
  CHECK(all.body.find(R"("tenant_id":"beta","state":"disabled")") != std::string::npos);
  CHECK(all.body.find(R"("storage_used_bytes":6,"keys":1)") != std::string::npos);
  Reply page = c.Get("/admin/tenants?limit=2", Admin());
  CHECK(page.JsonString("next_start_after") == "beta");
  Reply rest = c.Get("/admin/tenants?limit=2&start_after=beta", Admin());
  CHECK(rest.body.find("gamma") != std::string::npos);
  CHECK(rest.body.find("alpha") == std::string::npos);
  CHECK(c.Get("/admin/tenants?limit=0", Admin()).status == 400);
  CHECK(c.Get("/admin/tenants?bogus=1", Admin()).status == 400);
}

TEST_CASE("Server: stats report storage, quota, keys, calls and last activity", "[server][admin]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha", R"("quota_mb":3)");
  TestClient c = f.Client();
  Reply before = c.Get("/admin/tenants/alpha/stats", Admin());
  REQUIRE(before.status == 200);
  CHECK(before.JsonNumber("api_calls_today") == 0);
  CHECK(before.Json("last_active")->is_null());
  REQUIRE(c.Put(Key("abc"), std::string(1000, 'x'), Bearer(a)).status == 204);
  REQUIRE(c.Get(Key("abc"), Bearer(a)).status == 200);
  Reply s = c.Get("/admin/tenants/alpha/stats", Admin());
  CHECK(s.JsonString("tenant_id") == "alpha");
  CHECK(s.JsonNumber("storage_used_bytes") == 1003);
  CHECK(s.JsonNumber("storage_used_mb") == Approx(1003.0 / 1048576));
  CHECK(s.JsonNumber("quota_mb") == 3);
  CHECK(s.JsonNumber("keys") == 1);
  CHECK(s.JsonNumber("api_calls_today") == 2);
  CHECK(s.JsonString("last_active").size() == 24);  // 2026-11-23T10:44:51.943Z
  Reply usage = c.Get("/v1/usage", Bearer(a));
  CHECK(usage.status == 200);
  CHECK(usage.JsonNumber("storage_used_bytes") == 1003);
  CHECK(usage.JsonNumber("quota_mb") == 3);
}

TEST_CASE("Server: a write that would pass the quota is 507 and writes nothing",
          "[server][quota]") {
  ServerFixture f;
  // 1 KiB of storage.
  std::string a = f.CreateTenant("alpha", R"("quota":{"storage_bytes":1024})");
  TestClient c = f.Client();
  REQUIRE(c.Put(Key("a"), std::string(500, 'x'), Bearer(a)).status == 204);
  Reply over = c.Put(Key("b"), std::string(600, 'y'), Bearer(a));
  CHECK(over.status == 507);
  CHECK(over.ErrorCode() == "quota_exceeded");
  CHECK(c.Get(Key("b"), Bearer(a)).status == 404);
  // A batch over the quota writes none of its operations.
  Reply batch = c.Post("/v1/batch",
                       R"({"ops":[{"op":"put","key":"c","value":"1"},
                                  {"op":"put","key":"d","value":")" +
                           std::string(700, 'z') + R"("}]})",
                       Bearer(a));
  CHECK(batch.status == 507);
  CHECK(c.Get(Key("c"), Bearer(a)).status == 404);
  auto t = f.engine->GetTenant("alpha");
  CHECK(t->usage().bytes == 501);
  // Deletes are always admitted, and free the space.
  CHECK(c.Delete(Key("a"), Bearer(a)).status == 204);
  CHECK(c.Put(Key("b"), std::string(600, 'y'), Bearer(a)).status == 204);
}

TEST_CASE("Server: keys are percent-encoded bytes", "[server][kv]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  struct Case {
    std::string encoded;
    std::string bytes;
  };
  std::vector<Case> cases = {
      {"a%2Fb", "a/b"},
      {"a/b", "a/b"},
      {"%00", std::string("\0", 1)},
      {"%FF%FE", "\xFF\xFE"},
      {"a+b", "a+b"},
      {"a%20b", "a b"},
      {"%25", "%"},
      {"..", ".."},
      {"%2e%2e", ".."},
      {"", ""},
  };
  int i = 0;
  for (const Case& k : cases) {
    std::string value = "v" + std::to_string(i++);
    REQUIRE(c.Put(Key(k.encoded), value, Bearer(a)).status == 204);
    auto t = f.engine->GetTenant("alpha");
    auto stored = t->kv().Get(k.bytes);
    REQUIRE(stored.ok());
    CHECK(*stored == value);
  }
  CHECK(c.Get(Key("%zz"), Bearer(a)).status == 400);
  CHECK(c.Get(Key("%4"), Bearer(a)).status == 400);
  // A key over the engine's limit (4096 bytes) is 413.
  Reply big = c.Put(Key(std::string(4097, 'k')), "v", Bearer(a));
  CHECK(big.status == 413);
  CHECK(big.ErrorCode() == "too_large");
}

TEST_CASE("Server: scan pages through keys in order with prefix, range and reverse",
          "[server][kv]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  for (int i = 0; i < 25; ++i) {
    char key[16];
    std::snprintf(key, sizeof(key), "p%02d", i);
    REQUIRE(c.Put(Key(key), std::to_string(i), Bearer(a)).status == 204);
  }
  REQUIRE(c.Put(Key("q"), "other", Bearer(a)).status == 204);
  REQUIRE(c.Put(Key("%FF"), "binary", Bearer(a)).status == 204);

  // Forward pages of 10 under the prefix.
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    std::string path = "/v1/kv?prefix=p&limit=10";
    if (!cursor.empty()) path += "&cursor=" + cursor;
    Reply r = c.Get(path, Bearer(a));
    REQUIRE(r.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(r.body);
    for (simdjson::dom::element item : doc["items"].get_array()) {
      seen.emplace_back(std::string_view(item["key"].get_string()));
    }
    if (doc["cursor"].is_null()) break;
    cursor = std::string(std::string_view(doc["cursor"].get_string()));
  }
  REQUIRE(seen.size() == 25);
  for (int i = 0; i < 25; ++i) {
    char key[16];
    std::snprintf(key, sizeof(key), "p%02d", i);
    CHECK(seen[i] == key);
  }
  // A range, reversed.
  Reply range = c.Get("/v1/kv?start=p05&end=p08&reverse=true", Bearer(a));
  REQUIRE(range.status == 200);
  CHECK(
      range.body ==
      R"({"items":[{"key":"p07","value":"7"},{"key":"p06","value":"6"},{"key":"p05","value":"5"}],"cursor":null})");
  // Reverse pages continue backwards.
  Reply first = c.Get("/v1/kv?prefix=p&reverse=1&limit=2", Bearer(a));
  std::string rc = first.JsonString("cursor");
  Reply second = c.Get("/v1/kv?prefix=p&reverse=1&limit=2&cursor=" + rc, Bearer(a));
  CHECK(second.body.find(R"("key":"p22")") != std::string::npos);
  CHECK(second.body.find(R"("key":"p21")") != std::string::npos);
  // Bytes that are not UTF-8 come back base64-encoded.
  Reply bin = c.Get("/v1/kv?start=r", Bearer(a));
  CHECK(bin.body ==
        R"({"items":[{"key":"/w==","value":"YmluYXJ5","encoding":"base64"}],"cursor":null})");
  // Bad parameters.
  CHECK(c.Get("/v1/kv?limit=0", Bearer(a)).status == 400);
  CHECK(c.Get("/v1/kv?limit=10001", Bearer(a)).status == 400);
  CHECK(c.Get("/v1/kv?limit=x", Bearer(a)).status == 400);
  CHECK(c.Get("/v1/kv?reverse=maybe", Bearer(a)).status == 400);
  CHECK(c.Get("/v1/kv?cursor=!!", Bearer(a)).status == 400);
  CHECK(c.Get("/v1/kv?prefix=a&prefix=b", Bearer(a)).status == 400);
  CHECK(c.Get("/v1/kv?bogus=1", Bearer(a)).status == 400);
  // A forward cursor in a reverse scan.
  CHECK(c.Get("/v1/kv?reverse=true&cursor=" + cursor, Bearer(a)).status == 400);
}

TEST_CASE("Server: a scan's response is bounded and the cursor continues it", "[server][kv]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.max_scan_response_bytes = 3000;
  ServerFixture f(options);
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(c.Put(Key("k" + std::to_string(i)), std::string(1000, 'a' + i), Bearer(a)).status ==
            204);
  }
  size_t total = 0;
  std::string cursor;
  int pages = 0;
  do {
    std::string path = "/v1/kv?limit=100";
    if (!cursor.empty()) path += "&cursor=" + cursor;
    Reply r = c.Get(path, Bearer(a));
    REQUIRE(r.status == 200);
    CHECK(r.body.size() < 3000 + 1100);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(r.body);
    total += doc["items"].get_array().size();
    cursor =
        doc["cursor"].is_null() ? "" : std::string(std::string_view(doc["cursor"].get_string()));
    ++pages;
  } while (!cursor.empty() && pages < 20);
  CHECK(total == 10);
  CHECK(pages >= 4);
}

TEST_CASE("Server: a batch applies every operation atomically", "[server][kv]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  REQUIRE(c.Put(Key("old"), "x", Bearer(a)).status == 204);
  Reply r = c.Post("/v1/batch",
                   R"({"ops":[{"op":"put","key":"a","value":"1"},
                              {"op":"put","key":"AP8=","value":"AAE=","encoding":"base64"},
                              {"op":"delete","key":"old"}]})",
                   Bearer(a));
  REQUIRE(r.status == 200);
  CHECK(r.JsonNumber("applied") == 3);
  auto t = f.engine->GetTenant("alpha");
  CHECK(*t->kv().Get("a") == "1");
  CHECK(*t->kv().Get(std::string("\0\xFF", 2)) == std::string("\0\x01", 2));
  CHECK(absl::IsNotFound(t->kv().Get("old").status()));
  CHECK(c.Post("/v1/batch", R"({"ops":[]})", Bearer(a)).JsonNumber("applied") == 0);
}

TEST_CASE(
    "Server: malformed JSON, wrong types and unknown fields are 400 and "
    "change nothing",
    "[server][input]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  const std::vector<std::string> bad_batches = {
      "",
      "{",
      "[]",
      "null",
      R"({"ops":{}})",
      R"({"ops":[1]})",
      R"({"ops":[{"op":"put","key":"a"}]})",
      R"({"ops":[{"op":"delete","key":"a","value":"x"}]})",
      R"({"ops":[{"op":"upsert","key":"a","value":"x"}]})",
      R"({"ops":[{"op":"put","key":1,"value":"x"}]})",
      R"({"ops":[{"op":"put","key":"a","value":2}]})",
      R"({"ops":[{"op":"put","key":"a","value":"x","ttl":3}]})",
      R"({"ops":[{"op":"put","key":"a","value":"x","key":"b"}]})",
      R"({"ops":[{"op":"put","key":"!!","value":"x","encoding":"base64"}]})",
      R"({"ops":[{"op":"put","key":"a","value":"x","encoding":"hex"}]})",
      R"({"ops":[],"extra":true})",
      "{\"ops\":[{\"op\":\"put\",\"key\":\"\xFF\",\"value\":\"x\"}]}",
      R"({"ops":[{"op":"put","key":"a","value":"x"}]} trailing)",
  };
  for (const std::string& body : bad_batches) {
    Reply r = c.Post("/v1/batch", body, Bearer(a));
    INFO(body);
    CHECK(r.status == 400);
    CHECK(r.ErrorCode() == "invalid_argument");
  }
  const std::vector<std::string> bad_specs = {
      "{",
      R"({"quota_mb":"big"})",
      R"({"quota_mb":-1})",
      R"({"quota":{"storage_mb":1,"storage_bytes":5}})",
      R"({"quota":{"max_keys":1.5}})",
      R"({"quota":{"bogus":1}})",
      R"({"limits":{"bad name":1}})",
      R"({"limits":{"llm":-1}})",
      R"({"placement":"moon"})",
      R"({"enabled":"yes"})",
      R"({"labels":{"a":1}})",
      R"({"unknown":1})",
  };
  for (const std::string& body : bad_specs) {
    Reply r = c.Post("/admin/tenants", "{\"tenant_id\":\"beta\"," + body.substr(1), Admin());
    INFO(body);
    CHECK(r.status == 400);
    CHECK(r.ErrorCode() == "invalid_argument");
  }
  CHECK(c.Post("/admin/tenants", R"({"quota_mb":1})", Admin()).status == 400);
  auto t = f.engine->GetTenant("alpha");
  CHECK(t->usage().keys == 0);
  CHECK(f.engine->registry().size() == 1);
}

TEST_CASE("Server: bad tenant ids are 400", "[server][input]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  const std::vector<std::string> bad = {"A",   "..",  "a%2Fb", std::string(64, 'a'), "%2e%2e", "-a",
                                        "a_b", "%00", "a%00"};
  for (const std::string& id : bad) {
    INFO(id);
    Reply admin = c.Get("/admin/tenants/" + id, Admin());
    CHECK(admin.status == 400);
    CHECK(admin.ErrorCode() == "invalid_argument");
    CHECK(c.Put("/admin/tenants/" + id, "{}", Admin(), "application/json").status == 400);
    CHECK(c.Get("/t/" + id + "/v1/kv/k", Bearer(a)).status == 400);
    CHECK(c.Post("/admin/tenants", "{\"tenant_id\":\"" + id + "\"}", Admin()).status == 400);
  }
  // "../x" as a raw path segment is not normalised away.
  RawConnection raw(f.port());
  raw.Send(std::string("GET /admin/tenants/../x HTTP/1.1\r\nHost: x\r\nX-Admin-Key: ") + kAdminKey +
           "\r\n\r\n");
  CHECK(raw.ReadResponse().status == 400);
  CHECK(f.engine->registry().size() == 1);
}

TEST_CASE("Server: unknown routes are 404, wrong methods 405 with Allow", "[server][input]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  TestClient c = f.Client();
  Reply nf = c.Get("/nope");
  CHECK(nf.status == 404);
  CHECK(nf.ErrorCode() == "not_found");
  CHECK(c.Get("/v1/nope", Bearer(a)).status == 404);
  CHECK(c.Get("/t/alpha/nope", Bearer(a)).status == 404);
  Reply wrong = c.Post("/v1/kv/k", "", Bearer(a));
  CHECK(wrong.status == 405);
  CHECK(wrong.ErrorCode() == "method_not_allowed");
  CHECK(wrong.Header("Allow") == "GET, HEAD, PUT, DELETE");
  CHECK(c.Put("/v1/batch", "{}", Bearer(a)).status == 405);
  CHECK(c.Delete("/admin/tenants", Admin()).status == 405);
}

TEST_CASE(
    "Server: trusted mode takes the tenant from the path, header, host or "
    "default",
    "[server][auth]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  options.auth = AuthMode::kTrusted;
  options.host_suffix = "example.test";
  options.default_tenant = "fallback";
  ServerFixture f(options);
  // The default tenant was made at start; the others are not.
  for (const char* id : {"alpha", "beta", "gamma"}) f.CreateTenant(id);
  TestClient c = f.Client();
  REQUIRE(c.Put("/t/alpha/v1/kv/k", "from-path").status == 204);
  REQUIRE(c.Put("/v1/kv/k", "from-header", {{"X-Tenant-ID", "beta"}}).status == 204);
  REQUIRE(c.Put("/v1/kv/k", "from-host", {{"Host", "gamma.example.test:8080"}}).status == 204);
  REQUIRE(c.Put("/v1/kv/k", "from-default", {{"Host", "example.test"}}).status == 204);
  CHECK(*f.engine->GetTenant("alpha")->kv().Get("k") == "from-path");
  CHECK(*f.engine->GetTenant("beta")->kv().Get("k") == "from-header");
  CHECK(*f.engine->GetTenant("gamma")->kv().Get("k") == "from-host");
  CHECK(*f.engine->GetTenant("fallback")->kv().Get("k") == "from-default");
  CHECK(c.Get("/t/nosuch/v1/kv/k").status == 404);
  CHECK(c.Get("/v1/kv/k", {{"X-Tenant-ID", "Bad"}}).status == 400);
  CHECK(c.Get("/v1/kv/k", {{"Host", "nosuch.example.test"}}).status == 404);
  // Admin routes still need the admin key.
  CHECK(c.Get("/admin/tenants").status == 401);
}

TEST_CASE("Server: the admin key acts on any tenant through /t/{id}/", "[server][auth]") {
  ServerFixture f;
  f.CreateTenant("alpha");
  TestClient c = f.Client();
  CHECK(c.Put("/t/alpha/v1/kv/k", "by-admin", Bearer(kAdminKey)).status == 204);
  CHECK(c.Get("/t/alpha/v1/kv/k", Admin()).body == "by-admin");
  Reply bare = c.Get("/v1/kv/k", Admin());
  CHECK(bare.status == 400);
  CHECK(c.Get("/t/nosuch/v1/kv/k", Admin()).status == 404);
}

TEST_CASE(
    "Server: over the tenant's request rate is 429 rate_limited with "
    "Retry-After",
    "[server][limits]") {
  ServerFixture f;
  // One token per 100 s, two in the bucket.
  std::string a = f.CreateTenant("alpha", R"("quota":{"requests_per_second":0.01,"burst":2})");
  std::string b = f.CreateTenant("beta");
  TestClient c = f.Client();
  CHECK(c.Put(Key("k1"), "v", Bearer(a)).status == 204);
  CHECK(c.Get(Key("k1"), Bearer(a)).status == 200);
  Reply limited = c.Put(Key("k2"), "v", Bearer(a));
  CHECK(limited.status == 429);
  CHECK(limited.ErrorCode() == "rate_limited");
  CHECK(std::stoi(limited.Header("Retry-After")) >= 50);
  CHECK(c.Get(Key("k1"), Bearer(a)).status == 429);
  // Nothing written; other tenants are not affected.
  CHECK(f.engine->GetTenant("alpha")->usage().keys == 1);
  for (int i = 0; i < 5; ++i) CHECK(c.Put(Key("k"), "v", Bearer(b)).status == 204);
  // Removing the rate is live at once.
  REQUIRE(c.Put("/admin/tenants/alpha", "{}", Admin(), "application/json").status == 200);
  CHECK(c.Put(Key("k2"), "v", Bearer(a)).status == 204);
  // And so is setting one.
  REQUIRE(c.Put("/admin/tenants/beta", R"({"quota":{"requests_per_second":0.01,"burst":1}})",
                Admin(), "application/json")
              .status == 200);
  CHECK(c.Get(Key("k"), Bearer(b)).status == 200);
  CHECK(c.Get(Key("k"), Bearer(b)).status == 429);
  std::string metrics = c.Get("/metrics", Admin()).body;
  CHECK(metrics.find(R"(tenancy_rejections_total{tenant="alpha",reason="rate_limited"} 2)") !=
        std::string::npos);
}

TEST_CASE("Server: a full limit class is 429 concurrency_limited at once", "[server][limits]") {
  ServerOptions options = ServerFixture::DefaultOptions();
  // The slow write below must not time out while the test looks around,
  // however slow the build (sanitizers) makes it.
  options.transport.io_timeout = std::chrono::seconds(30);
  ServerFixture f(options);
  std::string a = f.CreateTenant("alpha", R"("limits":{"requests/writes":1})");
  TestClient c = f.Client();
  // A write whose body is still arriving holds the tenant's one write permit
  // (the body is larger than what the server buffers before admitting).
  const size_t size = 200 << 10;
  RawConnection slow(f.port());
  slow.Send("PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a +
            "\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n" + std::string(1000, 's'));
  // Wait until the server has admitted it: the limiter's gauge shows the
  // permit held (probing with writes would race it for the permit).
  const std::string gauge = R"(tenancy_limiter_in_use{tenant="alpha",class="requests/writes"} 1)";
  bool admitted = false;
  for (int i = 0; i < 500 && !admitted; ++i) {
    admitted = c.Get("/metrics", Admin()).body.find(gauge) != std::string::npos;
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(admitted);
  Reply held = c.Put(Key("other"), "v", Bearer(a));
  CHECK(held.status == 429);
  CHECK(held.ErrorCode() == "concurrency_limited");
  CHECK(held.Header("Retry-After") == "1");
  // Reads take another class.
  CHECK(c.Get(Key("never-written"), Bearer(a)).status == 404);
  // Once the slow write finishes, writes are admitted again.
  slow.Send(std::string(size - 1000, 's'));
  CHECK(slow.ReadResponse().status == 204);
  CHECK(c.Put(Key("other"), "v", Bearer(a)).status == 204);
  std::string metrics = c.Get("/metrics", Admin()).body;
  CHECK(
      metrics.find(R"(tenancy_rejections_total{tenant="alpha",reason="concurrency_limited"} 1)") !=
      std::string::npos);
}

// A sample of a Prometheus text exposition.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the text format 0.0.4 strictly enough to catch what matters: every
// sample belongs to a family declared by a "# TYPE" line before it (a
// histogram's _bucket, _sum and _count included), label values are quoted
// with valid escapes, values are numbers, every line ends in '\n'. Returns
// the samples; sets *error on the first problem.
std::vector<Sample> ParseExposition(const std::string& text, std::string* error) {
  std::vector<Sample> out;
  std::map<std::string, std::string> types;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) {
      *error = "last line does not end in a newline";
      return out;
    }
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      size_t sp = rest.find(' ');
      std::string type = rest.substr(sp + 1);
      if (type != "counter" && type != "gauge" && type != "histogram") {
        *error = "bad type: " + line;
        return out;
      }
      if (!types.emplace(rest.substr(0, sp), type).second) {
        *error = "TYPE given twice: " + line;
        return out;
      }
      continue;
    }
    if (line.empty() || line[0] == '#') {
      *error = "unexpected line: " + line;
      return out;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && (std::isalnum(static_cast<unsigned char>(line[i])) ||
                               line[i] == '_' || line[i] == ':')) {
      ++i;
    }
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find("=\"", i);
        if (eq == std::string::npos) {
          *error = "bad labels: " + line;
          return out;
        }
        std::string label = line.substr(i, eq - i);
        std::string value;
        i = eq + 2;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            ++i;
            if (i >= line.size() || (line[i] != '\\' && line[i] != '"' && line[i] != 'n')) {
              *error = "bad escape: " + line;
              return out;
            }
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
          ++i;
        }
        ++i;  // closing quote
        s.labels[label] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') {
      *error = "no value: " + line;
      return out;
    }
    std::string value = line.substr(i + 1);
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0') {
      if (value != "+Inf" && value != "-Inf" && value != "NaN") {
        *error = "bad value: " + line;
        return out;
      }
    }
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string sfx = suffix;
      if (!types.count(family) && family.size() > sfx.size() &&
          family.compare(family.size() - sfx.size(), sfx.size(), sfx) == 0 &&
          types.count(family.substr(0, family.size() - sfx.size())) &&
          types[family.substr(0, family.size() - sfx.size())] == "histogram") {
        family = family.substr(0, family.size() - sfx.size());
      }
    }
    if (!types.count(family)) {
      *error = "sample without TYPE: " + line;
      return out;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<double> Find(const std::vector<Sample>& samples, const std::string& name,
                           const std::map<std::string, std::string>& labels = {}) {
  for (const Sample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

TEST_CASE("Server: /metrics is valid Prometheus text and counts what the test did",
          "[server][metrics]") {
  ServerFixture f;
  std::string a = f.CreateTenant("alpha");
  std::string b = f.CreateTenant("beta", R"("quota":{"storage_bytes":100})");
  TestClient c = f.Client();
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c.Put(Key("k" + std::to_string(i)), "0123456789", Bearer(a)).status == 204);
  }
  REQUIRE(c.Get(Key("k0"), Bearer(a)).status == 200);
  REQUIRE(c.Get(Key("nope"), Bearer(a)).status == 404);
  REQUIRE(c.Delete(Key("k2"), Bearer(a)).status == 204);
  REQUIRE(c.Put(Key("x"), "1", Bearer(b)).status == 204);
  REQUIRE(c.Put(Key("y"), std::string(200, 'y'), Bearer(b)).status == 507);
  REQUIRE(c.Get(Key("x"), Bearer("wrong")).status == 401);
  REQUIRE(c.Delete("/admin/tenants/beta", Admin()).status == 200);

  Reply r = c.Get("/metrics", Admin());
  REQUIRE(r.status == 200);
  CHECK(r.Header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  std::string error;
  std::vector<Sample> samples = ParseExposition(r.body, &error);
  INFO(r.body);
  REQUIRE(error.empty());

  using L = std::map<std::string, std::string>;
  CHECK(Find(samples, "tenancy_api_calls_total", L{{"tenant", "alpha"}, {"method", "PUT"}}) == 3);
  CHECK(Find(samples, "tenancy_api_calls_total", L{{"tenant", "alpha"}, {"method", "GET"}}) == 2);
  CHECK(Find(samples, "tenancy_api_calls_total", L{{"tenant", "alpha"}, {"method", "DELETE"}}) ==
        1);
  CHECK(Find(samples, "tenancy_api_calls_total", L{{"tenant", "beta"}, {"method", "PUT"}}) == 2);
  CHECK(Find(samples, "tenancy_rejections_total",
             L{{"tenant", "beta"}, {"reason", "quota_exceeded"}}) == 1);
  CHECK(Find(samples, "tenancy_rejections_total",
             L{{"tenant", "alpha"}, {"reason", "quota_exceeded"}}) == 0);
  // alpha holds k0 and k1: 2 x (2 + 10) bytes.
  CHECK(Find(samples, "tenancy_storage_bytes", L{{"tenant", "alpha"}}) == 24);
  CHECK(Find(samples, "tenancy_keys", L{{"tenant", "alpha"}}) == 2);
  CHECK(Find(samples, "tenancy_storage_bytes", L{{"tenant", "beta"}}) == 2);
  CHECK(Find(samples, "tenancy_quota_bytes", L{{"tenant", "beta"}}) == 100);
  CHECK_FALSE(Find(samples, "tenancy_quota_bytes", L{{"tenant", "alpha"}}).has_value());
  CHECK(Find(samples, "tenancy_tenants_active") == 1);
  CHECK(Find(samples, "tenancy_tenants", L{{"state", "disabled"}}) == 1);
  CHECK(Find(samples, "tenancy_http_responses_total", L{{"code", "401"}}) == 1);
  CHECK(Find(samples, "tenancy_http_responses_total", L{{"code", "507"}}) == 1);
  CHECK(Find(samples, "tenancy_request_duration_seconds_count", L{{"route", "kv_put"}}) == 5);
  CHECK(Find(samples, "tenancy_request_duration_seconds_bucket",
             L{{"route", "kv_put"}, {"le", "+Inf"}}) == 5);
  CHECK(Find(samples, "tenancy_request_duration_seconds_count", L{{"route", "kv_get"}}) == 3);
  CHECK(Find(samples, "tenancy_http_open_connections").value_or(0) >= 1);
  CHECK(Find(samples, "tenancy_rocksdb_estimated_keys").has_value());

#ifdef TENANCY_PROMTOOL
  TempDir tmp;
  std::string file = (tmp.path() / "metrics.txt").string();
  {
    std::ofstream out(file);
    out << r.body;
  }
  std::string command = std::string(TENANCY_PROMTOOL) + " check metrics < " + file;
  CHECK(std::system(command.c_str()) == 0);
#endif

  // A purged tenant's series are gone.
  REQUIRE(c.Post("/admin/tenants/alpha/purge", "", Admin()).status == 200);
  std::vector<Sample> after = ParseExposition(c.Get("/metrics", Admin()).body, &error);
  REQUIRE(error.empty());
  CHECK_FALSE(Find(after, "tenancy_api_calls_total", L{{"tenant", "alpha"}, {"method", "PUT"}})
                  .has_value());
  CHECK_FALSE(Find(after, "tenancy_storage_bytes", L{{"tenant", "alpha"}}).has_value());
}

}  // namespace
}  // namespace tenancy::testing
