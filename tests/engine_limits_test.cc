// The engine's Limiter kept in step with the registry: defaults from
// EngineOptions, overrides and rates from tenant specs (live), purge.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <vector>

#include "engine_fixture.h"
#include "tenancy/limiter.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using std::chrono::steady_clock;

TenantSpec Spec(std::string id) {
  TenantSpec spec;
  spec.id = std::move(id);
  return spec;
}

// A clock the test moves by hand, for the token buckets.
struct FakeClock {
  std::shared_ptr<std::atomic<int64_t>> nanos =
      std::make_shared<std::atomic<int64_t>>(1'000'000'000);
  std::function<steady_clock::time_point()> AsFunction() const {
    return [n = nanos] { return steady_clock::time_point(std::chrono::nanoseconds(n->load())); };
  }
  void Advance(std::chrono::nanoseconds d) { nanos->fetch_add(d.count()); }
};

struct LimitsFixture {
  testing::TempDir dir;
  FakeClock clock;
  std::unique_ptr<Engine> engine;

  LimitsFixture() { Reopen(); }

  void Reopen() {
    engine.reset();
    EngineOptions options;
    options.path = (dir.path() / "db").string();
    options.logger = std::make_shared<testing::RecordingLogger>();
    options.memtable_budget_bytes = 16 << 20;
    options.block_cache_bytes = 8 << 20;
    // The seeded defaults of examples/tenants.json.
    options.limiter.default_tenant_limits = {
        {"llm", 30}, {"llm/student", 2}, {"llm/teacher", 10}, {"ocr", 5}};
    options.limiter.global_limits = {{"ocr", 7}};
    options.limiter.clock = clock.AsFunction();
    auto opened = Engine::Open(options);
    REQUIRE(opened.ok());
    engine = std::move(*opened);
  }

  LimitClass Class(std::string_view name) {
    auto cls = engine->limiter().Class(name);
    REQUIRE(cls.ok());
    return *cls;
  }

  Tenant Create(TenantSpec spec) {
    REQUIRE(engine->registry().Create(spec).ok());
    auto tenant = engine->GetTenant(spec.id);
    REQUIRE(tenant.ok());
    return *tenant;
  }

  // Takes permits of `cls` until refused; returns how many, keeping them.
  static int FillClass(const Tenant& tenant, const LimitClass& cls, std::vector<Permit>& held) {
    int n = 0;
    for (; n < 1000; ++n) {
      auto permit = tenant.TryAcquire(cls);
      if (!permit.ok()) {
        CHECK(GetErrorReason(permit.status()) == ErrorReason::kConcurrencyLimited);
        break;
      }
      held.push_back(*std::move(permit));
    }
    return n;
  }
};

TEST_CASE("Engine limits: the option defaults apply to a tenant that names none", "[limits]") {
  LimitsFixture f;
  Tenant t = f.Create(Spec("school"));
  std::vector<Permit> held;
  CHECK(LimitsFixture::FillClass(t, f.Class("llm/student"), held) == 2);
  CHECK(LimitsFixture::FillClass(t, f.Class("llm/teacher"), held) == 10);
  // llm holds 12 already, through its children: 18 more.
  CHECK(LimitsFixture::FillClass(t, f.Class("llm"), held) == 18);
  CHECK(t.EffectiveLimits() ==
        ConcurrencyLimits{{"llm", 30}, {"llm/student", 2}, {"llm/teacher", 10}, {"ocr", 5}});
  held.clear();
  CHECK(LimitsFixture::FillClass(t, f.Class("llm/student"), held) == 2);
}

TEST_CASE("Engine limits: a spec's limits override the defaults and change live", "[limits]") {
  LimitsFixture f;
  TenantSpec spec = Spec("acme");
  spec.limits = {{"llm/student", 4}};
  Tenant t = f.Create(spec);
  LimitClass student = f.Class("llm/student");
  std::vector<Permit> held;
  CHECK(LimitsFixture::FillClass(t, student, held) == 4);
  CHECK(t.EffectiveLimits().at("llm/student") == 4);

  // Raised live: two more at once, the four held stay valid.
  spec.limits = {{"llm/student", 6}};
  REQUIRE(f.engine->registry().Update(spec).ok());
  CHECK(LimitsFixture::FillClass(t, student, held) == 2);

  // Override removed: back to the default (2); nothing more until releases.
  spec.limits.clear();
  REQUIRE(f.engine->registry().Update(spec).ok());
  CHECK(LimitsFixture::FillClass(t, student, held) == 0);
  held.clear();
  CHECK(LimitsFixture::FillClass(t, student, held) == 2);

  // Defaults changed at the limiter apply to tenants without an override.
  REQUIRE(f.engine->limiter().SetDefaultTenantLimits({{"llm/student", 3}}).ok());
  held.clear();
  CHECK(LimitsFixture::FillClass(t, student, held) == 3);
  CHECK(t.EffectiveLimits() == ConcurrencyLimits{{"llm/student", 3}});
}

TEST_CASE("Engine limits: a tenant's spec limits are in force again after reopen", "[limits]") {
  LimitsFixture f;
  TenantSpec spec = Spec("acme");
  spec.limits = {{"ocr", 1}};
  f.Create(spec);
  f.Reopen();
  auto t = f.engine->GetTenant("acme");
  REQUIRE(t.ok());
  std::vector<Permit> held;
  CHECK(LimitsFixture::FillClass(*t, f.Class("ocr"), held) == 1);
}

TEST_CASE("Engine limits: the global tier is shared by all tenants", "[limits]") {
  LimitsFixture f;
  Tenant a = f.Create(Spec("a"));
  Tenant b = f.Create(Spec("b"));
  LimitClass ocr = f.Class("ocr");
  std::vector<Permit> held;
  CHECK(LimitsFixture::FillClass(a, ocr, held) == 5);  // tenant tier
  CHECK(LimitsFixture::FillClass(b, ocr, held) == 2);  // global 7
  auto refused = b.TryAcquire(ocr);
  REQUIRE_FALSE(refused.ok());
  auto rejection = GetLimitRejection(refused.status());
  REQUIRE(rejection.has_value());
  CHECK(rejection->tier == LimitTier::kGlobal);
  CHECK(rejection->class_name == "ocr");
}

TEST_CASE("Engine limits: the quota's request rate is the tenant's token bucket", "[limits]") {
  LimitsFixture f;
  TenantSpec spec = Spec("acme");
  spec.quota.requests_per_second = 2;
  spec.quota.burst = 3;
  Tenant t = f.Create(spec);
  LimitClass ocr = f.Class("ocr");
  for (int i = 0; i < 3; ++i) CHECK(t.TryAcquire(ocr).ok());
  auto refused = t.TryAcquire(ocr);
  REQUIRE_FALSE(refused.ok());
  CHECK(GetErrorReason(refused.status()) == ErrorReason::kRateLimited);
  REQUIRE(GetRetryAfter(refused.status()).has_value());
  CHECK(*GetRetryAfter(refused.status()) > std::chrono::nanoseconds(0));
  f.clock.Advance(std::chrono::milliseconds(500));  // one token at 2/s
  CHECK(t.TryAcquire(ocr).ok());
  CHECK_FALSE(t.TryAcquire(ocr).ok());

  // Rate removed live: no bucket at all.
  spec.quota.requests_per_second = 0;
  spec.quota.burst = 0;
  REQUIRE(f.engine->registry().Update(spec).ok());
  for (int i = 0; i < 20; ++i) CHECK(t.TryAcquire(ocr).ok());
}

TEST_CASE("Engine limits: idle tenants cost the limiter nothing", "[limits]") {
  LimitsFixture f;
  Tenant t = f.Create(Spec("idle"));
  f.Create(Spec("used"));
  auto used = f.engine->GetTenant("used");
  REQUIRE(used.ok());
  CHECK(used->TryAcquire(f.Class("ocr")).ok());
  CHECK(f.engine->limiter().GetTenant("idle") == nullptr);
  CHECK(f.engine->limiter().GetTenant("used") != nullptr);
}

TEST_CASE("Engine limits: disabled and purged tenants get no permits", "[limits]") {
  LimitsFixture f;
  LimitClass ocr = f.Class("ocr");
  Tenant t = f.Create(Spec("acme"));
  auto held = t.TryAcquire(ocr);
  REQUIRE(held.ok());

  REQUIRE(f.engine->registry().Disable("acme").ok());
  auto disabled = t.TryAcquire(ocr);
  CHECK(absl::IsPermissionDenied(disabled.status()));
  CHECK(GetErrorReason(disabled.status()) == ErrorReason::kTenantDisabled);
  REQUIRE(f.engine->registry().Enable("acme").ok());

  REQUIRE(f.engine->registry().Purge("acme").ok());
  CHECK(f.engine->limiter().GetTenant("acme") == nullptr);
  auto purged = t.TryAcquire(ocr);
  CHECK(absl::IsNotFound(purged.status()));
  CHECK(GetErrorReason(purged.status()) == ErrorReason::kTenantDeleted);
  held->Release();  // a permit taken before the purge releases safely

  // The same id again is a new tenant with fresh counts.
  Tenant again = f.Create(Spec("acme"));
  std::vector<Permit> permits;
  CHECK(LimitsFixture::FillClass(again, ocr, permits) == 5);
}

TEST_CASE("Engine limits: invalid limits in a spec or the options are refused", "[limits]") {
  LimitsFixture f;
  TenantSpec deep = Spec("deep");
  deep.limits = {{"a/b/c/d/e/f/g/h/i", 1}};
  CHECK(absl::IsInvalidArgument(f.engine->registry().Create(deep).status()));
  TenantSpec fast = Spec("fast");
  fast.quota.requests_per_second = 2e9;
  CHECK(absl::IsInvalidArgument(f.engine->registry().Create(fast).status()));
  CHECK(absl::IsNotFound(f.engine->GetTenant("deep").status()));

  f.engine.reset();
  EngineOptions options;
  options.path = (f.dir.path() / "db").string();
  options.logger = std::make_shared<testing::RecordingLogger>();
  options.limiter.default_tenant_limits = {{"bad name", 1}};
  CHECK(absl::IsInvalidArgument(Engine::Open(options).status()));
}

}  // namespace
}  // namespace tenancy
