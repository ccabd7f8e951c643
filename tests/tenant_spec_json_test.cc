// The one reader of tenant specs in JSON (tenancy/tenant_spec_json.h), and
// the one limit-class rule: whatever the Limiter accepts, a tenant's spec may
// override, whichever way the spec arrives.

#include "tenancy/tenant_spec_json.h"

#include <catch2/catch.hpp>

#include "engine_fixture.h"
#include "tenancy/config_file.h"
#include "tenancy/limiter.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using testing::EngineFixture;

TEST_CASE("TenantSpecJson: every field of the format is read", "[spec]") {
  auto spec = ParseTenantSpecJson(R"({"tenant_id":"acme","quota_mb":1.5,
      "quota":{"max_keys":10,"max_value_bytes":100,"requests_per_second":5,
               "burst":7,"max_queued_jobs":3,"cache_mb":2},
      "limits":{"llm":30,"llm/student":2},"placement":"dedicated",
      "enabled":false,"read_only":true,"labels":{"plan":"gold"}})");
  REQUIRE(spec.ok());
  CHECK(spec->id == "acme");
  CHECK(spec->quota.storage_bytes == 1572864);
  CHECK(spec->quota.max_keys == 10);
  CHECK(spec->quota.max_value_bytes == 100);
  CHECK(spec->quota.requests_per_second == 5);
  CHECK(spec->quota.burst == 7);
  CHECK(spec->quota.max_queued_jobs == 3);
  CHECK(spec->quota.cache_bytes == 2 << 20);
  CHECK(spec->limits == ConcurrencyLimits{{"llm", 30}, {"llm/student", 2}});
  CHECK(spec->placement == Placement::kDedicated);
  CHECK_FALSE(spec->enabled);
  CHECK(spec->read_only);
  CHECK(spec->labels.at("plan") == "gold");
}

TEST_CASE(
    "TenantSpecJson: the id comes from the body or the caller, and they "
    "must agree",
    "[spec]") {
  CHECK(ParseTenantSpecJson("{}", "acme")->id == "acme");
  CHECK(ParseTenantSpecJson("", "acme")->id == "acme");
  CHECK(ParseTenantSpecJson(R"({"id":"acme"})")->id == "acme");
  CHECK(ParseTenantSpecJson(R"({"tenant_id":"acme"})", "acme")->id == "acme");
  CHECK(absl::IsInvalidArgument(ParseTenantSpecJson("{}").status()));
  CHECK(absl::IsInvalidArgument(ParseTenantSpecJson(R"({"tenant_id":"b"})", "a").status()));
  CHECK(absl::IsInvalidArgument(ParseTenantSpecJson(R"({"tenant_id":"a","id":"b"})").status()));
  CHECK(absl::IsInvalidArgument(ParseTenantSpecJson(R"({"tenant_id":"Bad"})").status()));
}

TEST_CASE("TenantSpecJson: a written spec reads back equal", "[spec]") {
  TenantSpec spec;
  spec.id = "acme";
  spec.quota = {.storage_bytes = 123456789,
                .max_keys = 10,
                .max_value_bytes = 100,
                .requests_per_second = 0.1,
                .burst = 7.25,
                .max_queued_jobs = 3,
                .cache_bytes = 2 << 20};
  spec.limits = {{"llm", 30}, {"llm/student", 2}};
  spec.placement = Placement::kDedicated;
  spec.enabled = false;
  spec.read_only = true;
  spec.labels = {{"plan", "gold \"quoted\" \\ \n\x01 \xc3\xa9"}, {"owner", ""}};
  const std::string json = TenantSpecToJson(spec);
  auto back = ParseTenantSpecJson(json);
  REQUIRE(back.ok());
  CHECK(*back == spec);
  TenantSpec defaults;
  defaults.id = "b";
  auto plain = ParseTenantSpecJson(TenantSpecToJson(defaults));
  REQUIRE(plain.ok());
  CHECK(*plain == defaults);
}

TEST_CASE("TenantSpecJson: bad input is refused with the field's path", "[spec]") {
  struct Case {
    const char* json;
    const char* path;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"tenant_id":"a","quota_gb":1})", "quota_gb"},
           {R"({"tenant_id":"a","tenant_id":"a"})", "tenant_id"},
           {R"({"tenant_id":"a","quota":{"storage_mb":-1}})", "quota.storage_mb"},
           {R"({"tenant_id":"a","quota":{"max_keys":1.5}})", "quota.max_keys"},
           {R"({"tenant_id":"a","quota_mb":1,"quota":{"storage_mb":1}})", "quota_mb"},
           {R"({"tenant_id":"a","limits":{"llm":1000000001}})", "limits.llm"},
           {R"({"tenant_id":"a","limits":{"a//b":1}})", "limits.a//b"},
           {R"({"tenant_id":"a","placement":"both"})", "placement"},
           {R"({"tenant_id":"a","enabled":"yes"})", "enabled"},
           {R"({"tenant_id":"a","api_key":"tk_0123456789abcdef0123"})", "api_key"},
           {R"([1,2])", "spec"},
       }) {
    auto spec = ParseTenantSpecJson(c.json);
    INFO(c.json);
    REQUIRE(absl::IsInvalidArgument(spec.status()));
    CHECK(std::string(spec.status().message()).find(c.path) != std::string::npos);
  }
  CHECK(absl::IsInvalidArgument(ParseTenantSpecJson("{not json").status()));
}

TEST_CASE(
    "TenantSpecJson: the tenants file reserves its own label, the API "
    "does not",
    "[spec]") {
  auto api = ParseTenantSpecJson(R"({"tenant_id":"a","labels":{"managed-by":"me"}})");
  CHECK(api.ok());
  auto file = ParseTenantsFile(R"({"tenants":[{"id":"a","labels":{"managed-by":"me"}}]})");
  CHECK(absl::IsInvalidArgument(file.status()));
}

TEST_CASE(
    "Limit classes: a class the Limiter accepts can be overridden per "
    "tenant, whichever way the spec arrives",
    "[spec][limits]") {
  EngineFixture f;
  // Upper case is valid for the Limiter: once it was refused by the registry
  // and the tenants file, so such a class could never be overridden.
  REQUIRE(Limiter::ValidateClassName("GPU").ok());
  REQUIRE(f.engine->limiter().Class("GPU").ok());

  SECTION("the registry") {
    TenantSpec spec;
    spec.id = "acme";
    spec.limits = {{"GPU", 3}, {"Llm/Student.v2", 1}};
    REQUIRE(f.registry().Create(spec).ok());
    Tenant acme = *f.engine->GetTenant("acme");
    CHECK(acme.EffectiveLimits().at("GPU") == 3);
    auto gpu = f.engine->limiter().Class("GPU");
    std::vector<Permit> held;
    for (int i = 0; i < 3; ++i) held.push_back(*acme.TryAcquire(*gpu));
    CHECK(IsRateOrConcurrencyLimited(acme.TryAcquire(*gpu).status()));
  }
  SECTION("JSON") {
    auto spec = ParseTenantSpecJson(R"({"tenant_id":"acme","limits":{"GPU":3}})");
    REQUIRE(spec.ok());
    REQUIRE(f.registry().Create(*spec).ok());
    CHECK(f.engine->GetTenant("acme")->EffectiveLimits().at("GPU") == 3);
  }
  SECTION("the tenants file") {
    auto config = ParseTenantsFile(R"({"tenants":[{"id":"acme","limits":{"GPU":3}}],
                                       "defaults":{"limits":{"GPU":1}}})");
    REQUIRE(config.ok());
    CHECK(config->tenants[0].spec.limits.at("GPU") == 3);
  }
  // What the Limiter refuses, every reader refuses.
  TenantSpec bad;
  bad.id = "bad";
  bad.limits = {{"gpu!", 1}};
  CHECK(absl::IsInvalidArgument(f.registry().Create(bad).status()));
  CHECK(absl::IsInvalidArgument(
      ParseTenantSpecJson(R"({"tenant_id":"bad","limits":{"gpu!":1}})").status()));
  CHECK(absl::IsInvalidArgument(
      ParseTenantsFile(R"({"tenants":[{"id":"bad","limits":{"gpu!":1}}]})").status()));
}

}  // namespace
}  // namespace tenancy
