// The engine's own series (Engine::CollectMetrics): what a host that embeds
// the library gets for its /metrics without writing any of it.

#include <catch2/catch.hpp>
#include <string>

#include "engine_fixture.h"
#include "tenancy/metrics.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using testing::EngineFixture;

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST_CASE(
    "Engine metrics: a host gets usage, quota, calls, refusals and limits "
    "per tenant",
    "[metrics][engine]") {
  EngineFixture f;
  Quota quota;
  quota.storage_bytes = 10;
  quota.max_value_bytes = 8;
  Tenant acme = f.Create("acme", quota);
  Tenant beta = f.Create("beta");
  REQUIRE(acme.kv().Put("k", "v").ok());                            // 2 bytes
  CHECK(IsQuotaExceeded(acme.kv().Put("k2", "12345678")));          // over 10
  CHECK(absl::IsInvalidArgument(acme.kv().Put("k", "123456789")));  // over 8
  REQUIRE(f.registry().SetReadOnly("beta", true).ok());
  CHECK(absl::IsPermissionDenied(beta.kv().Put("k", "v")));
  auto gpu = f.engine->limiter().Class("gpu");
  REQUIRE(gpu.ok());
  REQUIRE(f.engine->limiter().SetDefaultTenantLimits({{"gpu", 1}}).ok());
  auto held = acme.TryAcquire(*gpu);
  REQUIRE(held.ok());
  CHECK(IsRateOrConcurrencyLimited(acme.TryAcquire(*gpu).status()));

  Metrics metrics;
  CollectorHandle handle =
      metrics.AddCollector([&](MetricSink& sink) { f.engine->CollectMetrics(sink); });
  const std::string text = metrics.ExpositionText();
  CHECK(Has(text, R"(tenancy_storage_bytes{tenant="acme"} 2)"));
  CHECK(Has(text, R"(tenancy_keys{tenant="acme"} 1)"));
  CHECK(Has(text, R"(tenancy_quota_bytes{tenant="acme"} 10)"));
  // A call refused on its arguments (too large) is not counted as a call.
  CHECK(Has(text, R"(tenancy_calls_total{tenant="acme",kind="put"} 2)"));
  CHECK(Has(text, R"(tenancy_rejections_total{tenant="acme",reason="quota_exceeded"} 1)"));
  CHECK(Has(text, R"(tenancy_rejections_total{tenant="acme",reason="too_large"} 1)"));
  CHECK(Has(text, R"(tenancy_rejections_total{tenant="acme",reason="concurrency_limited"} 1)"));
  CHECK(Has(text, R"(tenancy_rejections_total{tenant="beta",reason="tenant_read_only"} 1)"));
  CHECK(Has(text, R"(tenancy_limiter_in_use{tenant="acme",class="gpu"} 1)"));
  CHECK(Has(text, R"(tenancy_tenants{state="read_only"} 1)"));
  CHECK(Has(text, R"(tenancy_tenants_active 1)"));
  // The library's own counters say the same.
  CHECK(acme.requests().rejections[static_cast<int>(Rejection::kQuotaExceeded)] == 1);
}

}  // namespace
}  // namespace tenancy
