#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "engine_fixture.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using testing::EngineFixture;

TenantSpec Spec(const std::string& id) {
  TenantSpec spec;
  spec.id = id;
  return spec;
}

TEST_CASE("Registry: bad tenant ids are refused and nothing is created", "[registry]") {
  EngineFixture f;
  for (std::string id :
       std::vector<std::string>{"A", "-a", "a-", "a_b", "../x", std::string(64, 'a'), "", "a/b",
                                "a b", "a.b", std::string("a\0b", 3)}) {
    INFO("id: " << id);
    auto created = f.registry().Create(Spec(id));
    CHECK(absl::IsInvalidArgument(created.status()));
    CHECK(absl::IsInvalidArgument(f.engine->GetTenant(id).status()));
  }
  CHECK(f.registry().size() == 0);
  CHECK(f.registry().Create(Spec(std::string(63, 'a'))).ok());
  CHECK(f.registry().Create(Spec("a")).ok());
  CHECK(f.registry().Create(Spec("0-9")).ok());
}

TEST_CASE("Registry: create is idempotent for an identical spec", "[registry]") {
  EngineFixture f;
  auto first = f.registry().Create(Spec("acme"));
  REQUIRE(first.ok());
  auto again = f.registry().Create(Spec("acme"));
  REQUIRE(again.ok());
  CHECK(again->number == first->number);
  TenantSpec different = Spec("acme");
  different.quota.storage_bytes = 10;
  CHECK(absl::IsAlreadyExists(f.registry().Create(different).status()));
  CHECK(f.registry().Get("acme")->spec.quota.storage_bytes == 0);
}

TEST_CASE("Registry: transitions are idempotent and persist across reopen", "[registry]") {
  EngineFixture f;
  {
    Tenant t = f.Create("acme");
    REQUIRE(t.kv().Put("k", "v").ok());
    REQUIRE(f.registry().Disable("acme").ok());
    REQUIRE(f.registry().Disable("acme").ok());
    CHECK(t.state() == TenantState::kDisabled);
    auto denied = t.kv().Get("k");
    CHECK(absl::IsPermissionDenied(denied.status()));
    CHECK(GetErrorReason(denied.status()) == ErrorReason::kTenantDisabled);
  }
  f.Reopen();
  CHECK(f.registry().Get("acme")->state == TenantState::kDisabled);
  REQUIRE(f.registry().Enable("acme").ok());
  REQUIRE(f.registry().Enable("acme").ok());
  Tenant again = *f.engine->GetTenant("acme");
  CHECK(*again.kv().Get("k") == "v");

  REQUIRE(f.registry().SetReadOnly("acme", true).ok());
  REQUIRE(f.registry().SetReadOnly("acme", true).ok());
  CHECK(*again.kv().Get("k") == "v");
  absl::Status write = again.kv().Put("k", "w");
  CHECK(absl::IsPermissionDenied(write));
  CHECK(GetErrorReason(write) == ErrorReason::kTenantReadOnly);
  CHECK(*again.kv().Get("k") == "v");
  CHECK(absl::IsNotFound(f.registry().Disable("nobody")));
}

TEST_CASE("Registry: update is live and placement is fixed", "[registry]") {
  EngineFixture f;
  TenantSpec spec = Spec("acme");
  {
    Tenant t = f.Create("acme");
    spec.quota.max_keys = 1;
    spec.labels["plan"] = "pro";
    spec.limits["llm"] = 3;
    REQUIRE(f.registry().Update(spec).ok());
    REQUIRE(t.kv().Put("a", "1").ok());
    CHECK(IsQuotaExceeded(t.kv().Put("b", "1")));
  }
  spec.placement = Placement::kDedicated;
  CHECK(absl::IsFailedPrecondition(f.registry().Update(spec).status()));
  f.Reopen();
  TenantInfo info = *f.registry().Get("acme");
  CHECK(info.spec.labels.at("plan") == "pro");
  CHECK(info.spec.limits.at("llm") == 3);
  CHECK(info.spec.quota.max_keys == 1);
  TenantSpec bad = Spec("acme");
  bad.limits["LLM!"] = 1;
  CHECK(absl::IsInvalidArgument(f.registry().Update(bad).status()));
  bad = Spec("acme");
  bad.limits["llm"] = -1;
  CHECK(absl::IsInvalidArgument(f.registry().Update(bad).status()));
}

TEST_CASE("Registry: numbers are never reused, also after purge and reopen", "[registry]") {
  EngineFixture f;
  std::set<uint64_t> numbers;
  numbers.insert(f.Create("a").number());
  numbers.insert(f.Create("b").number());
  REQUIRE(f.registry().Purge("b").ok());
  CHECK(absl::IsNotFound(f.registry().Get("b").status()));
  f.Reopen();
  numbers.insert(f.Create("b").number());
  REQUIRE(f.registry().Purge("a").ok());
  REQUIRE(f.registry().Purge("b").ok());
  f.Reopen();
  numbers.insert(f.Create("c").number());
  numbers.insert(f.Create("a").number());
  CHECK(numbers.size() == 5);
}

TEST_CASE("Registry: 10,000 tenants are created, listed in pages and reopened", "[registry]") {
  EngineFixture f;
  std::vector<TenantSpec> specs;
  for (int i = 0; i < 10000; ++i) specs.push_back(Spec("t" + std::to_string(i)));
  REQUIRE(f.registry().CreateMany(specs).ok());
  f.Reopen();
  CHECK(f.registry().size() == 10000);
  std::set<std::string> seen;
  ListOptions options;
  options.limit = 777;
  std::string previous;
  while (true) {
    auto page = f.registry().List(options);
    REQUIRE(page.ok());
    for (const TenantInfo& info : page->tenants) {
      CHECK(info.spec.id > previous);
      previous = info.spec.id;
      seen.insert(info.spec.id);
    }
    if (page->next_start_after.empty()) break;
    options.start_after = page->next_start_after;
  }
  CHECK(seen.size() == 10000);
  options.limit = 0;
  CHECK(absl::IsInvalidArgument(f.registry().List(options).status()));
}

TEST_CASE("Registry: CreateMany refuses a bad batch whole", "[registry]") {
  EngineFixture f;
  CHECK(absl::IsInvalidArgument(f.registry().CreateMany({Spec("ok"), Spec("Bad")}).status()));
  CHECK(absl::IsInvalidArgument(f.registry().CreateMany({Spec("ok"), Spec("ok")}).status()));
  CHECK(f.registry().size() == 0);
}

TEST_CASE(
    "Registry: a dedicated tenant lives in its own column family and "
    "purges by dropping it",
    "[registry]") {
  EngineFixture f;
  REQUIRE(f.Create("shared").kv().Put("k", "shared").ok());
  REQUIRE(f.Create("big", {}, Placement::kDedicated).kv().Put("k", "big").ok());
  f.Reopen();
  {
    Tenant dedicated = *f.engine->GetTenant("big");
    CHECK(dedicated.placement() == Placement::kDedicated);
    CHECK(*dedicated.kv().Get("k") == "big");
    REQUIRE(f.registry().Purge("big").ok());
    CHECK(absl::IsNotFound(dedicated.kv().Get("k").status()));
  }
  f.Reopen();
  CHECK(*f.engine->GetTenant("shared")->kv().Get("k") == "shared");
  Tenant reborn = f.Create("big", {}, Placement::kDedicated);
  CHECK(absl::IsNotFound(reborn.kv().Get("k").status()));
}

TEST_CASE("Registry: a handle to a purged tenant fails cleanly", "[registry]") {
  EngineFixture f;
  Tenant t = f.Create("gone");
  REQUIRE(t.kv().Put("k", "v").ok());
  REQUIRE(f.registry().Purge("gone").ok());
  auto got = t.kv().Get("k");
  CHECK(absl::IsNotFound(got.status()));
  CHECK(GetErrorReason(got.status()) == ErrorReason::kTenantDeleted);
  CHECK(absl::IsNotFound(t.kv().Put("k", "v")));
  CHECK(absl::IsNotFound(f.registry().Purge("gone")));
  // Recreating the id gives a new, empty tenant.
  Tenant fresh = f.Create("gone");
  CHECK(fresh.number() != t.number());
  CHECK(absl::IsNotFound(fresh.kv().Get("k").status()));
}

TEST_CASE(
    "Registry: purge reclaims the space of a shared tenant and leaves "
    "its neighbours",
    "[registry]") {
  EngineFixture f;
  {
    KvStore big = f.Create("big").kv();
    KvStore small = f.Create("small").kv();
    REQUIRE(small.Put("k", "kept").ok());
    std::mt19937 rng(7);
    std::string value(1024, '\0');
    for (int i = 0; i < 8000; ++i) {
      for (char& c : value) c = static_cast<char>(rng());  // incompressible
      REQUIRE(big.Put("key" + std::to_string(i), value).ok());
    }
  }
  REQUIRE(f.engine->Flush().ok());
  uint64_t before = *f.engine->GetIntProperty("rocksdb.total-sst-files-size");
  CHECK(before > 1000000);
  REQUIRE(f.registry().Purge("big").ok());
  uint64_t after = *f.engine->GetIntProperty("rocksdb.total-sst-files-size");
  CHECK(after < before / 10);
  CHECK(*f.engine->GetTenant("small")->kv().Get("k") == "kept");
}

TEST_CASE(
    "Registry: quota values above 2^63-1 are refused and nothing is "
    "created",
    "[registry]") {
  EngineFixture f;
  for (int field = 0; field < 5; ++field) {
    TenantSpec spec;
    spec.id = "huge";
    uint64_t* values[] = {&spec.quota.storage_bytes, &spec.quota.max_keys,
                          &spec.quota.max_value_bytes, &spec.quota.max_queued_jobs,
                          &spec.quota.cache_bytes};
    *values[field] = uint64_t{1} << 63;
    CHECK(absl::IsInvalidArgument(f.registry().Create(spec).status()));
    *values[field] = static_cast<uint64_t>(INT64_MAX);
    REQUIRE(f.registry().Create(spec).ok());
    REQUIRE(f.registry().Purge("huge").ok());
  }
  CHECK(absl::IsNotFound(f.registry().Get("huge").status()));
}

}  // namespace
}  // namespace tenancy
