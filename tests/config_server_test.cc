// The tenants file behind tenancyd: a real server on loopback, a real file on
// disk, and the HTTP answers a client sees as the file changes.

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "server_fixture.h"
#include "tenancy/config_file.h"
#include "tenancy/status.h"

namespace tenancy::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr char kAcmeKey[] = "tk_test_acme_0123456789abcdef";
constexpr char kBetaKey[] = "tk_test_beta_0123456789abcdef";

void WriteFile(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  fs::rename(tmp, path);  // as editors do: the watcher must see it
}

std::string Entry(const std::string& id, const std::string& key, const std::string& extra = "") {
  return "{\"id\": \"" + id + "\", \"api_key\": \"" + key + "\"" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

std::string File(const std::string& tenants) {
  return "{\"tenants\": [" + tenants +
         "], \"defaults\": {\"limits\": {\"llm\": 30, \"llm/student\": 2, "
         "\"llm/teacher\": 10, \"ocr\": 5}}, \"global_limits\": {\"llm\": 200}}";
}

// effective_limits.concurrency[cls] of an admin tenant detail, or -1.
int64_t EffectiveLimit(const Reply& detail, std::string_view cls) {
  auto limits = detail.Json("effective_limits");
  int64_t value = -1;
  if (!limits.has_value() || (*limits)["concurrency"][cls].get(value)) return -1;
  return value;
}

struct ConfigServer {
  ServerFixture server;
  fs::path file = server.dir.path() / "tenants.json";
  std::unique_ptr<ConfigFile> config;
  CollectorHandle metrics;

  explicit ConfigServer(const std::string& text, bool watch = false) {
    WriteFile(file, text);
    ConfigFileOptions options;
    options.path = file.string();
    options.watch = watch;
    options.poll_interval = milliseconds(100);
    options.logger = NewNullLogger();
    auto opened = ConfigFile::Open(server.engine.get(), options);
    REQUIRE(opened.ok());
    config = std::move(*opened);
    metrics = server.server->metrics().AddCollector(
        [c = config.get()](MetricSink& sink) { c->CollectMetrics(sink); });
  }
  ~ConfigServer() { metrics.Remove(); }

  // Rewrites the file and applies it at once (as SIGHUP does).
  absl::Status Apply(const std::string& text) {
    WriteFile(file, text);
    return config->Reload();
  }

  TestClient Client() { return server.Client(); }
};

TEST_CASE("tenants file over HTTP: a tenant added to the file authenticates within 5 s",
          "[config][server]") {
  ConfigServer s(File(Entry("acme", kAcmeKey)), /*watch=*/true);
  TestClient c = s.Client();
  CHECK(c.Get("/v1/kv/k", Bearer(kAcmeKey)).status == 404);
  CHECK(c.Get("/v1/kv/k", Bearer(kBetaKey)).status == 401);

  WriteFile(s.file, File(Entry("acme", kAcmeKey) + "," + Entry("beta", kBetaKey)));
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    status = c.Get("/v1/kv/k", Bearer(kBetaKey)).status;
    if (status != 401) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  CHECK(status == 404);  // authenticated; the key is simply not there yet
  CHECK(c.Put("/v1/kv/k", "v", Bearer(kBetaKey)).status == 204);
  CHECK(c.Get("/v1/kv/k", Bearer(kBetaKey)).body == "v");
}

TEST_CASE(
    "tenants file over HTTP: a quota lowered in the file refuses the next "
    "write with 507, raised it admits it",
    "[config][server]") {
  ConfigServer s(File(Entry("acme", kAcmeKey, "\"quota\": {\"storage_bytes\": 1000}")));
  TestClient c = s.Client();
  REQUIRE(c.Put("/v1/kv/a", std::string(100, 'x'), Bearer(kAcmeKey)).status == 204);

  REQUIRE(s.Apply(File(Entry("acme", kAcmeKey, "\"quota\": {\"storage_bytes\": 150}"))).ok());
  Reply refused = c.Put("/v1/kv/b", std::string(100, 'x'), Bearer(kAcmeKey));
  CHECK(refused.status == 507);
  CHECK(refused.ErrorCode() == "quota_exceeded");
  CHECK(c.Get("/v1/kv/b", Bearer(kAcmeKey)).status == 404);  // nothing written

  REQUIRE(s.Apply(File(Entry("acme", kAcmeKey, "\"quota_mb\": 1"))).ok());
  CHECK(c.Put("/v1/kv/b", std::string(100, 'x'), Bearer(kAcmeKey)).status == 204);
}

TEST_CASE(
    "tenants file over HTTP: a tenant removed from the file gets 403 and "
    "keeps its data",
    "[config][server]") {
  ConfigServer s(File(Entry("acme", kAcmeKey) + "," + Entry("beta", kBetaKey)));
  TestClient c = s.Client();
  REQUIRE(c.Put("/v1/kv/k", "kept", Bearer(kAcmeKey)).status == 204);

  REQUIRE(s.Apply(File(Entry("beta", kBetaKey))).ok());
  Reply denied = c.Get("/v1/kv/k", Bearer(kAcmeKey));
  CHECK(denied.status == 403);
  CHECK(denied.ErrorCode() == "tenant_disabled");
  Reply detail = c.Get("/admin/tenants/acme", Admin());
  REQUIRE(detail.status == 200);
  CHECK(detail.JsonString("state") == "disabled");
  CHECK(c.Get("/v1/kv/k", Bearer(kBetaKey)).status == 404);  // beta unaffected

  REQUIRE(s.Apply(File(Entry("acme", kAcmeKey) + "," + Entry("beta", kBetaKey))).ok());
  Reply back = c.Get("/v1/kv/k", Bearer(kAcmeKey));
  CHECK(back.status == 200);
  CHECK(back.body == "kept");
}

TEST_CASE(
    "tenants file over HTTP: the seeded default limits are in force for a "
    "tenant that names none",
    "[config][server]") {
  ConfigServer s(
      File(Entry("acme", kAcmeKey) + "," + Entry("beta", kBetaKey, "\"limits\": {\"llm\": 3}")));
  TestClient c = s.Client();
  Reply acme = c.Get("/admin/tenants/acme", Admin());
  REQUIRE(acme.status == 200);
  CHECK(EffectiveLimit(acme, "llm") == 30);
  CHECK(EffectiveLimit(acme, "llm/student") == 2);
  CHECK(EffectiveLimit(acme, "llm/teacher") == 10);
  CHECK(EffectiveLimit(acme, "ocr") == 5);
  // The server's own classes are still there beside the file's.
  CHECK(EffectiveLimit(acme, "requests") > 0);

  Reply beta = c.Get("/admin/tenants/beta", Admin());
  REQUIRE(beta.status == 200);
  CHECK(EffectiveLimit(beta, "llm") == 3);
  CHECK(EffectiveLimit(beta, "ocr") == 5);

  // And through the limiter itself: llm/student admits two at once.
  auto student = s.server.engine->limiter().Class("llm/student");
  REQUIRE(student.ok());
  Tenant tenant = *s.server.engine->GetTenant("acme");
  auto first = tenant.TryAcquire(*student);
  auto second = tenant.TryAcquire(*student);
  CHECK(first.ok());
  CHECK(second.ok());
  CHECK(GetErrorReason(tenant.TryAcquire(*student).status()) == ErrorReason::kConcurrencyLimited);
}

TEST_CASE(
    "tenants file over HTTP: a broken file changes nothing and the metrics "
    "say so, and a fixed file applies",
    "[config][server]") {
  ConfigServer s(File(Entry("acme", kAcmeKey)));
  TestClient c = s.Client();
  for (const std::string& broken : {
           std::string("{\"tenants\": [{\"id\": \"acme\""),                // bad JSON
           File(Entry("Not-A-Label!", kBetaKey)),                          // bad id
           File(Entry("acme", kAcmeKey, "\"quota_mb\": -1")),              // negative
           File(Entry("acme", kAcmeKey) + "," + Entry("acme", kBetaKey)),  // duplicate
           File(Entry("acme", kAcmeKey, "\"quota_gigabytes\": 1")),        // unknown
       }) {
    INFO(broken);
    CHECK(absl::IsInvalidArgument(s.Apply(broken)));
    CHECK(c.Put("/v1/kv/k", std::string(100, 'x'), Bearer(kAcmeKey)).status == 204);
    CHECK(c.Get("/v1/kv/k", Bearer(kBetaKey)).status == 401);
  }
  Reply metrics = c.Get("/metrics", Admin());
  REQUIRE(metrics.status == 200);
  CHECK(metrics.body.find("tenancy_config_version 1\n") != std::string::npos);
  CHECK(metrics.body.find("tenancy_config_reload_failures_total 5\n") != std::string::npos);
  CHECK(metrics.body.find("tenancy_config_last_reload_successful 0\n") != std::string::npos);

  REQUIRE(s.Apply(File(Entry("acme", kAcmeKey, "\"quota\": {\"storage_bytes\": 10}") + "," +
                       Entry("beta", kBetaKey)))
              .ok());
  CHECK(c.Put("/v1/kv/k2", std::string(100, 'x'), Bearer(kAcmeKey)).status == 507);
  CHECK(c.Get("/v1/kv/k", Bearer(kBetaKey)).status == 404);
  metrics = c.Get("/metrics", Admin());
  CHECK(metrics.body.find("tenancy_config_version 2\n") != std::string::npos);
  CHECK(metrics.body.find("tenancy_config_last_reload_successful 1\n") != std::string::npos);
}

}  // namespace
}  // namespace tenancy::testing
