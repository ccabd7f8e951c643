// tenancyd over a file system that fails on command
// (tests/fault_injection_fs.h): while the engine is degraded, writes are 503
// with Retry-After (never 500), reads are served, /health says so; when the
// fault clears, writes work again.

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "fault_injection_fs.h"
#include "server_fixture.h"

namespace tenancy::testing {
namespace {

using std::chrono::milliseconds;

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("Server: fault injection - a storage error makes writes 503 and /health degraded",
          "[server][fault]") {
  auto fs = std::make_shared<FaultInjectingFileSystem>();
  EngineOptions engine_options = ServerFixture::DefaultEngineOptions();
  engine_options.file_system = fs;
  engine_options.storage_resume_interval = milliseconds(50);
  ServerFixture f(ServerFixture::DefaultOptions(), engine_options);
  const std::string key = f.CreateTenant("acme");
  TestClient c = f.Client();
  REQUIRE(c.Put("/v1/kv/k1", "v1", Bearer(key)).status == 204);
  Reply health = c.Get("/health");
  CHECK(health.status == 200);
  CHECK(health.JsonString("status") == "ok");

  // A flush that finds the disk full: RocksDB stops writes.
  REQUIRE(c.Put("/v1/kv/k0", "v0", Bearer(key)).status == 204);
  fs->Inject(kWrite, kSst, Fault::kNoSpace);
  CHECK_FALSE(f.engine->Flush().ok());
  Reply put = c.Put("/v1/kv/k2", "v2", Bearer(key));
  INFO(put.body);
  CHECK(put.status == 503);
  CHECK(Contains(put.body, R"("code":"unavailable")"));
  CHECK(put.Header("Retry-After") == "1");
  // The tenant is told the state, not the server's file names.
  CHECK(Contains(put.body, "storage unavailable"));
  CHECK_FALSE(Contains(put.body, f.dir.str()));

  health = c.Get("/health");
  INFO(health.body);
  CHECK(health.status == 200);
  CHECK(health.JsonString("status") == "degraded");
  CHECK(health.JsonString("reason") == "flush: no space left on device");
  CHECK(c.Get("/t/acme/health").JsonString("status") == "degraded");

  // Reads are served; every write route is 503.
  Reply got = c.Get("/v1/kv/k1", Bearer(key));
  CHECK(got.status == 200);
  CHECK(got.body == "v1");
  CHECK(c.Delete("/v1/kv/k1", Bearer(key)).status == 503);
  Reply job = c.Post("/v1/jobs", R"({"type":"t","payload":"p"})", Bearer(key));
  INFO(job.body);
  CHECK(job.status == 503);
  CHECK(job.Header("Retry-After") == "1");
  Reply metrics = c.Get("/metrics", Admin());
  CHECK(Contains(metrics.body, "tenancy_engine_degraded 1"));
  Reply usage = c.Get("/v1/usage", Bearer(key));
  CHECK(usage.status == 200);
  CHECK(Contains(usage.body, R"("keys":2)"));

  // The disk has room again: the next write resumes the engine.
  fs->Clear();
  std::this_thread::sleep_for(milliseconds(60));
  CHECK(c.Put("/v1/kv/k3", "v3", Bearer(key)).status == 204);
  CHECK(c.Get("/health").JsonString("status") == "ok");
  CHECK(c.Get("/v1/kv/k2", Bearer(key)).status == 404);
  CHECK(c.Get("/v1/kv/k1", Bearer(key)).status == 200);
  CHECK(Contains(c.Get("/metrics", Admin()).body, "tenancy_engine_degraded 0"));
}

}  // namespace tenancy::testing
