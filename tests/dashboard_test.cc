// The dashboard's routes (GET /admin/ui and its script and style): public,
// compiled in, loading nothing from elsewhere, with the security headers;
// and the admin API, which a page of another origin cannot use (no CORS).
// tests/dashboard_browser_test.py drives the page itself in Chromium.

#include <catch2/catch.hpp>
#include <regex>
#include <string>

#include "server_fixture.h"

namespace tenancy::testing {
namespace {

constexpr char kPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

TEST_CASE("Dashboard: the page, its script and style are public, with the security headers",
          "[dashboard]") {
  ServerFixture f;
  TestClient c = f.Client();
  const std::pair<const char*, const char*> files[] = {
      {"/admin/ui", "text/html; charset=utf-8"},
      {"/admin/ui/app.js", "text/javascript; charset=utf-8"},
      {"/admin/ui/app.css", "text/css; charset=utf-8"},
  };
  for (const auto& [path, type] : files) {
    INFO(path);
    // No key at all: the files hold no data.
    Reply r = c.Get(path);
    CHECK(r.status == 200);
    CHECK(r.Header("Content-Type") == type);
    CHECK(r.Header("Content-Security-Policy") == kPolicy);
    CHECK(r.Header("X-Frame-Options") == "DENY");
    CHECK(r.Header("X-Content-Type-Options") == "nosniff");
    CHECK(r.Header("Access-Control-Allow-Origin").empty());
    CHECK(r.body.size() > 500);
    // A wrong key does not matter either.
    CHECK(c.Get(path, {{"X-Admin-Key", "wrong"}}).status == 200);
  }
}

TEST_CASE("Dashboard: the page loads its own files only, with no inline script or style",
          "[dashboard]") {
  ServerFixture f;
  TestClient c = f.Client();
  const std::string html = c.Get("/admin/ui").body;
  CHECK(html.find("<script src=\"/admin/ui/app.js\"") != std::string::npos);
  CHECK(html.find("<link rel=\"stylesheet\" href=\"/admin/ui/app.css\">") != std::string::npos);
  // Every script has a src (none is inline), no style element or attribute,
  // no event-handler attribute, and nothing from another origin.
  CHECK(std::regex_search(html, std::regex("<script(?![^>]*\\ssrc=)")) == false);
  CHECK(html.find("<style") == std::string::npos);
  CHECK(html.find(" style=") == std::string::npos);
  CHECK(std::regex_search(html, std::regex("\\son[a-z]+=")) == false);
  for (const std::string& body :
       {html, c.Get("/admin/ui/app.js").body, c.Get("/admin/ui/app.css").body}) {
    CHECK(body.find("http://") == std::string::npos);
    CHECK(body.find("https://") == std::string::npos);
    CHECK(body.find("//cdn") == std::string::npos);
  }
  // The key is kept for the tab only.
  const std::string script = c.Get("/admin/ui/app.js").body;
  CHECK(script.find("sessionStorage") != std::string::npos);
  CHECK(script.find("localStorage") == std::string::npos);
  CHECK(script.find("document.cookie") == std::string::npos);
}

TEST_CASE("Dashboard: the admin API sends no CORS headers, and a preflight is refused",
          "[dashboard]") {
  ServerFixture f;
  TestClient c = f.Client();
  const httplib::Headers cross_origin = {{"Origin", "http://evil.example"},
                                         {"X-Admin-Key", kAdminKey}};
  for (const char* path : {"/admin/tenants", "/admin/ui", "/metrics", "/health"}) {
    INFO(path);
    Reply r = c.Get(path, cross_origin);
    CHECK(r.status == 200);
    CHECK(r.Header("Access-Control-Allow-Origin").empty());
    CHECK(r.Header("Access-Control-Allow-Credentials").empty());
    CHECK(r.Header("Access-Control-Allow-Headers").empty());
  }
  // The preflight a browser sends before a cross-origin call with
  // X-Admin-Key: refused, so the browser never sends the call.
  RawConnection raw(f.port());
  REQUIRE(raw.Send(
      "OPTIONS /admin/tenants HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n"
      "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-admin-key\r\n"
      "Content-Length: 0\r\n\r\n"));
  Reply preflight = raw.ReadResponse();
  CHECK(preflight.status == 405);
  CHECK(preflight.Header("Access-Control-Allow-Origin").empty());
  CHECK(preflight.Header("Access-Control-Allow-Headers").empty());
  CHECK(preflight.Header("Access-Control-Allow-Methods").empty());
}

TEST_CASE("Dashboard: the list it reads carries usage, calls and limits per tenant",
          "[dashboard]") {
  ServerFixture f;
  const std::string key = f.CreateTenant("acme", R"("quota_mb":1,"limits":{"llm":3})");
  TestClient c = f.Client();
  REQUIRE(c.Put("/v1/kv/a", std::string(1000, 'x'), Bearer(key)).status == 204);
  Reply list = c.Get("/admin/tenants", Admin());
  REQUIRE(list.status == 200);
  CHECK(list.JsonNumber("quota_warning_fraction") == 0.9);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE(parser.parse(list.body).get(root) == simdjson::SUCCESS);
  simdjson::dom::element t = root["tenants"].at(0);
  uint64_t n = 0;
  CHECK(t["api_keys"].get(n) == simdjson::SUCCESS);
  CHECK(n == 1);
  CHECK(t["api_calls_today"].get(n) == simdjson::SUCCESS);
  CHECK(n == 1);
  CHECK(t["storage_used_bytes"].get(n) == simdjson::SUCCESS);
  CHECK(n == 1001);
  int64_t llm = 0;
  CHECK(t["limits"]["llm"].get(llm) == simdjson::SUCCESS);
  CHECK(llm == 3);
  std::string_view last_active;
  CHECK(t["last_active"].get(last_active) == simdjson::SUCCESS);
}

}  // namespace
}  // namespace tenancy::testing
