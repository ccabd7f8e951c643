// TenantCache through the Engine: the engine's cache, bound to the registry.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.h"
#include "tenancy/cache.h"
#include "tenancy/engine.h"
#include "tenancy/logger.h"
#include "tenancy/status.h"
#include "tenancy/tenant_registry.h"

namespace tenancy {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr size_t kDefaultBudget = 64 << 10;

// A cache clock the test moves by hand.
class FakeCacheClock {
 public:
  CacheOptions::Clock AsClock() {
    return [this] {
      return std::chrono::steady_clock::time_point(
          nanoseconds(now_ns_.load(std::memory_order_relaxed)));
    };
  }
  void Advance(nanoseconds d) { now_ns_.fetch_add(d.count()); }

 private:
  std::atomic<int64_t> now_ns_{int64_t{1'000'000'000} * 3600};
};

std::shared_ptr<Cache> MakeCache(FakeCacheClock* clock) {
  CacheOptions options;
  options.default_tenant_budget_bytes = kDefaultBudget;
  options.global_budget_bytes = 64 << 20;
  options.shard_count = 4;
  if (clock != nullptr) options.clock = clock->AsClock();
  auto cache = Cache::Create(options);
  if (!cache.ok()) throw std::runtime_error(cache.status().ToString());
  return std::shared_ptr<Cache>(*std::move(cache));
}

struct CacheFixture {
  testing::TempDir dir;
  FakeCacheClock clock;
  std::unique_ptr<Engine> engine;

  CacheFixture() { Reopen(); }

  EngineOptions Options() {
    EngineOptions options;
    options.path = (dir.path() / "db").string();
    options.logger = NewNullLogger();
    options.memtable_budget_bytes = 32 << 20;
    options.block_cache_bytes = 8 << 20;
    options.max_key_bytes = 64;
    options.max_value_bytes = 4096;
    options.cache = MakeCache(&clock);
    return options;
  }

  void Reopen() {
    engine.reset();
    auto opened = Engine::Open(Options());
    if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
    engine = std::move(*opened);
  }

  Cache& cache() { return *engine->options().cache; }
  TenantRegistry& registry() { return engine->registry(); }

  Tenant Create(const std::string& id, uint64_t cache_bytes = 0) {
    TenantSpec spec;
    spec.id = id;
    spec.quota.cache_bytes = cache_bytes;
    auto info = registry().Create(spec);
    if (!info.ok()) throw std::runtime_error(info.status().ToString());
    return *engine->GetTenant(id);
  }

  absl::Status SetCacheBytes(const std::string& id, uint64_t cache_bytes) {
    auto info = registry().Get(id);
    if (!info.ok()) return info.status();
    TenantSpec spec = info->spec;
    spec.quota.cache_bytes = cache_bytes;
    return registry().Update(spec).status();
  }
};

TenantSpec Spec(const std::string& id) {
  TenantSpec spec;
  spec.id = id;
  return spec;
}

std::string Key(int i) { return "k" + std::to_string(i); }

// What one entry of a key from Key() and `value` is charged.
size_t Charge(int i, const std::string& value) {
  return Key(i).size() + value.size() + kCacheEntryOverheadBytes;
}

uint64_t CacheCalls(const Tenant& t) {
  return t.requests().calls_by_kind[static_cast<int>(CallKind::kCache)];
}

TEST_CASE("TenantCache: get, set with TTL, increment, delete and prefix delete", "[tenant_cache]") {
  CacheFixture f;
  TenantCache c = f.Create("acme").cache();

  REQUIRE(c.Set("plain", "v1").ok());
  REQUIRE(c.Set("short", "v2", seconds(10)).ok());
  CHECK(*c.Get("plain") == "v1");
  CHECK(*c.Get("short") == "v2");
  f.clock.Advance(seconds(10));
  CHECK(absl::IsNotFound(c.Get("short").status()));
  CHECK(*c.Get("plain") == "v1");

  CHECK(*c.Increment("n") == 1);
  CHECK(*c.Increment("n", 41) == 42);
  CHECK(*c.Get("n") == "42");
  absl::StatusOr<int64_t> not_a_number = c.Increment("plain", 1);
  CHECK(absl::IsInvalidArgument(not_a_number.status()));
  CHECK(*c.Get("plain") == "v1");

  CHECK(*c.Delete("plain") == true);
  CHECK(*c.Delete("plain") == false);
  CHECK(absl::IsNotFound(c.Get("plain").status()));

  REQUIRE(c.Set("p:1", "x").ok());
  REQUIRE(c.Set("p:2", "x").ok());
  REQUIRE(c.Set("q:1", "x").ok());
  CHECK(*c.DeletePrefix("p:") == 2);
  CHECK(c.Get("q:1").ok());
  CHECK(c.Stats().entries == 2);  // "n" and "q:1"
}

TEST_CASE("TenantCache: bad TTLs and oversize keys or values are refused", "[tenant_cache]") {
  CacheFixture f;
  TenantCache c = f.Create("acme").cache();
  CHECK(absl::IsInvalidArgument(c.Set("k", "v", seconds(0))));
  CHECK(absl::IsInvalidArgument(c.Set("k", "v", seconds(-1))));
  absl::Status long_key = c.Set(std::string(65, 'k'), "v");
  CHECK(GetErrorReason(long_key) == ErrorReason::kTooLarge);
  absl::Status big_value = c.Set("k", std::string(4097, 'v'));
  CHECK(GetErrorReason(big_value) == ErrorReason::kTooLarge);
  CHECK(GetErrorReason(c.Get(std::string(65, 'k')).status()) == ErrorReason::kTooLarge);
  // Errors name the tenant by its id, not by its internal number.
  CHECK(std::string(c.Set("k", "v", seconds(0)).message()).find("\"acme\"") != std::string::npos);
  CHECK(c.Stats().entries == 0);
}

TEST_CASE("TenantCache: two tenants never see each other's entries", "[tenant_cache]") {
  CacheFixture f;
  TenantCache a = f.Create("a").cache();
  TenantCache b = f.Create("b").cache();
  for (const std::string& key :
       {std::string(""), std::string("\0", 1), std::string("\xff"), std::string("same")}) {
    REQUIRE(a.Set(key, "from-a").ok());
    CHECK(absl::IsNotFound(b.Get(key).status()));
    REQUIRE(b.Set(key, "from-b").ok());
    CHECK(*a.Get(key) == "from-a");
    CHECK(*b.Get(key) == "from-b");
  }
  CHECK(*a.Increment("count", 5) == 5);
  CHECK(*b.Increment("count", 7) == 7);
  CHECK(*b.DeletePrefix("") == 5);
  CHECK(*a.Get("same") == "from-a");
  CHECK(*a.Get("count") == "5");
  CHECK(a.Stats().entries == 5);
  CHECK(b.Stats().entries == 0);
}

TEST_CASE("TenantCache: purging a tenant drops its entries and its budget", "[tenant_cache]") {
  CacheFixture f;
  Tenant gone = f.Create("gone", /*cache_bytes=*/8 << 10);
  Tenant kept = f.Create("kept");
  const uint64_t gone_number = gone.number();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(gone.cache().Set(Key(i), "v").ok());
    REQUIRE(kept.cache().Set(Key(i), "v").ok());
  }
  REQUIRE(f.cache().TenantStats(gone_number).budget_bytes == 8 << 10);

  REQUIRE(f.registry().Purge("gone").ok());
  CHECK(f.cache().TenantStats(gone_number).entries == 0);
  CHECK(f.cache().TenantStats(gone_number).budget_bytes == kDefaultBudget);
  CHECK(f.cache().TotalStats().entries == 20);
  CHECK(kept.cache().Stats().entries == 20);
  CHECK(*kept.cache().Get(Key(3)) == "v");
  // A handle kept across the purge refuses cleanly and writes nothing.
  absl::Status late = gone.cache().Set("late", "v");
  CHECK(GetErrorReason(late) == ErrorReason::kTenantDeleted);
  CHECK(GetErrorReason(gone.cache().Get(Key(1)).status()) == ErrorReason::kTenantDeleted);
  CHECK(f.cache().TenantStats(gone_number).entries == 0);
}

TEST_CASE(
    "TenantCache: disabling a tenant drops its entries, and enabled again "
    "it starts empty",
    "[tenant_cache]") {
  CacheFixture f;
  Tenant t = f.Create("acme");
  Tenant other = f.Create("other");
  for (int i = 0; i < 10; ++i) REQUIRE(t.cache().Set(Key(i), "v").ok());
  REQUIRE(other.cache().Set("k", "v").ok());

  REQUIRE(f.registry().Disable("acme").ok());
  CHECK(t.cache().Stats().entries == 0);
  CHECK(GetErrorReason(t.cache().Get(Key(1)).status()) == ErrorReason::kTenantDisabled);
  CHECK(GetErrorReason(t.cache().Set("k", "v")) == ErrorReason::kTenantDisabled);
  CHECK(t.cache().Stats().entries == 0);
  CHECK(*other.cache().Get("k") == "v");

  REQUIRE(f.registry().Enable("acme").ok());
  CHECK(absl::IsNotFound(t.cache().Get(Key(1)).status()));
  REQUIRE(t.cache().Set(Key(1), "again").ok());
  CHECK(*t.cache().Get(Key(1)) == "again");
}

TEST_CASE("TenantCache: a read-only tenant reads its cache and cannot change it",
          "[tenant_cache]") {
  CacheFixture f;
  Tenant t = f.Create("acme");
  REQUIRE(t.cache().Set("k", "v").ok());
  REQUIRE(t.cache().Set("n", "1").ok());
  REQUIRE(f.registry().SetReadOnly("acme", true).ok());
  CHECK(*t.cache().Get("k") == "v");
  CHECK(GetErrorReason(t.cache().Set("k", "w")) == ErrorReason::kTenantReadOnly);
  CHECK(GetErrorReason(t.cache().Increment("n").status()) == ErrorReason::kTenantReadOnly);
  CHECK(GetErrorReason(t.cache().Delete("k").status()) == ErrorReason::kTenantReadOnly);
  CHECK(GetErrorReason(t.cache().DeletePrefix("").status()) == ErrorReason::kTenantReadOnly);
  CHECK(*t.cache().Get("k") == "v");
  CHECK(*t.cache().Get("n") == "1");
  CHECK(t.cache().Stats().entries == 2);
}

TEST_CASE("TenantCache: the budget comes from the spec and changes live", "[tenant_cache]") {
  CacheFixture f;
  const std::string value(200, 'v');
  const size_t ten = 10 * Charge(10, value);
  Tenant t = f.Create("acme", /*cache_bytes=*/ten);
  Tenant neighbour = f.Create("neighbour");
  CHECK(t.cache().Stats().budget_bytes == ten);
  for (int i = 0; i < 20; ++i) REQUIRE(neighbour.cache().Set(Key(i), value).ok());

  SECTION("a tenant over its spec's budget evicts only its own entries") {
    for (int i = 10; i < 40; ++i) REQUIRE(t.cache().Set(Key(i), value).ok());
    CacheStats stats = t.cache().Stats();
    CHECK(stats.bytes <= ten);
    CHECK(stats.entries == 10);
    CHECK(stats.evictions == 20);
    CHECK(t.cache().Get(Key(39)).ok());  // the newest stays
    CHECK(neighbour.cache().Stats().entries == 20);
  }
  SECTION("a lower budget in an update evicts at once") {
    for (int i = 10; i < 20; ++i) REQUIRE(t.cache().Set(Key(i), value).ok());
    REQUIRE(f.SetCacheBytes("acme", 4 * Charge(10, value)).ok());
    CacheStats stats = t.cache().Stats();
    CHECK(stats.budget_bytes == 4 * Charge(10, value));
    CHECK(stats.entries == 4);
    CHECK(neighbour.cache().Stats().entries == 20);
  }
  SECTION("0 in the spec means the cache's default") {
    REQUIRE(f.SetCacheBytes("acme", 0).ok());
    CHECK(t.cache().Stats().budget_bytes == kDefaultBudget);
    for (int i = 10; i < 40; ++i) REQUIRE(t.cache().Set(Key(i), value).ok());
    CHECK(t.cache().Stats().entries == 30);
  }
  SECTION("an entry larger than the budget is refused as too large") {
    REQUIRE(f.SetCacheBytes("acme", 300).ok());
    CHECK(GetErrorReason(t.cache().Set("k", value)) == ErrorReason::kTooLarge);
  }
}

TEST_CASE("TenantCache: the spec's budget applies again after a reopen", "[tenant_cache]") {
  CacheFixture f;
  {
    Tenant t = f.Create("acme", /*cache_bytes=*/12345);
    REQUIRE(t.cache().Set("k", "v").ok());
  }
  f.Reopen();
  Tenant again = *f.engine->GetTenant("acme");
  CHECK(again.cache().Stats().budget_bytes == 12345);
  CHECK(absl::IsNotFound(again.cache().Get("k").status()));  // memory only
  CHECK(f.cache().TotalStats().entries == 0);
}

TEST_CASE("TenantCache: calls count as cache calls of the tenant", "[tenant_cache]") {
  CacheFixture f;
  Tenant t = f.Create("acme");
  const uint64_t before = CacheCalls(t);
  REQUIRE(t.cache().Set("k", "v").ok());
  REQUIRE(t.cache().Get("k").ok());
  CHECK(absl::IsNotFound(t.cache().Get("absent").status()));
  REQUIRE(t.cache().Increment("n").ok());
  REQUIRE(t.cache().Delete("k").ok());
  REQUIRE(t.cache().DeletePrefix("x").ok());
  (void)t.cache().Stats();
  CHECK(CacheCalls(t) == before + 6);
  CHECK(t.requests().calls_by_kind[static_cast<int>(CallKind::kGet)] == 0);
}

TEST_CASE("TenantCache: writes racing a disable leave nothing behind", "[tenant_cache]") {
  CacheFixture f;
  Tenant t = f.Create("acme", /*cache_bytes=*/1 << 20);
  constexpr int kWriters = 4;
  constexpr int kRounds = 30;
  std::atomic<bool> stop{false};
  std::atomic<int> round{0};
  // Per writer: the last round in which it saw a refusal.
  std::vector<std::atomic<int>> refused_in(kWriters);
  std::atomic<uint64_t> written{0};
  std::atomic<int> unexpected{0};  // errors other than the disable's
  for (auto& r : refused_in) r.store(-1);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (uint64_t i = 0; !stop.load(); ++i) {
        const int r = round.load();
        const bool increment = i % 3 == 0;
        std::string key =
            std::string(increment ? "n" : "s") + std::to_string(w) + ":" + std::to_string(i % 512);
        absl::Status s = increment ? t.cache().Increment(key, 1).status() : t.cache().Set(key, "v");
        if (s.ok()) {
          written.fetch_add(1);
        } else {
          if (GetErrorReason(s) != ErrorReason::kTenantDisabled) unexpected.fetch_add(1);
          refused_in[w].store(r);
          std::this_thread::yield();
        }
      }
    });
  }
  for (int r = 0; r < kRounds; ++r) {
    const uint64_t seen = written.load();
    // Let the writers write (they are refused until the enable).
    REQUIRE(f.registry().Enable("acme").ok());
    while (written.load() < seen + 50) std::this_thread::yield();
    REQUIRE(f.registry().Disable("acme").ok());
    round.store(r);
    // Every writer has been refused since the disable: none is still in a
    // write that started before it.
    for (int w = 0; w < kWriters; ++w) {
      while (refused_in[w].load() < r) std::this_thread::yield();
    }
    REQUIRE(t.cache().Stats().entries == 0);
  }
  stop.store(true);
  for (auto& w : writers) w.join();
  CHECK(unexpected.load() == 0);
  CHECK(f.cache().TotalStats().entries == 0);
}

TEST_CASE("Engine: a cache serves one open engine at a time and is left empty", "[tenant_cache]") {
  testing::TempDir dir;
  std::shared_ptr<Cache> cache = MakeCache(nullptr);
  EngineOptions options;
  options.logger = NewNullLogger();
  options.memtable_budget_bytes = 32 << 20;
  options.block_cache_bytes = 8 << 20;
  options.cache = cache;

  options.path = (dir.path() / "one").string();
  auto one = Engine::Open(options);
  REQUIRE(one.ok());
  CHECK((*one)->options().cache == cache);
  REQUIRE((*one)->registry().Create(Spec("acme")).ok());
  {
    Tenant acme = *(*one)->GetTenant("acme");
    REQUIRE(acme.cache().Set("k", "v").ok());
  }

  options.path = (dir.path() / "two").string();
  CHECK(absl::IsInvalidArgument(Engine::Open(options).status()));

  // A cache holding entries is refused too: tenant numbers would collide.
  std::shared_ptr<Cache> used = MakeCache(nullptr);
  REQUIRE(used->Set(1, "k", "v").ok());
  EngineOptions with_used = options;
  with_used.cache = used;
  CHECK(absl::IsInvalidArgument(Engine::Open(with_used).status()));
  CHECK(used->TotalStats().entries == 1);  // the host's own, untouched

  // Closed, the first engine leaves the cache empty and free for another.
  CHECK(cache->TotalStats().entries == 1);
  one->reset();
  CHECK(cache->TotalStats().entries == 0);
  auto two = Engine::Open(options);
  REQUIRE(two.ok());
  REQUIRE((*two)->registry().Create(Spec("beta")).ok());
  Tenant beta = *(*two)->GetTenant("beta");
  CHECK(absl::IsNotFound(beta.cache().Get("k").status()));
}

TEST_CASE("Engine: without a cache in the options it makes its own", "[tenant_cache]") {
  testing::TempDir dir;
  EngineOptions options;
  options.path = dir.str();
  options.logger = NewNullLogger();
  options.memtable_budget_bytes = 32 << 20;
  options.block_cache_bytes = 8 << 20;
  auto engine = Engine::Open(options);
  REQUIRE(engine.ok());
  REQUIRE((*engine)->options().cache != nullptr);
  REQUIRE((*engine)->registry().Create(Spec("acme")).ok());
  Tenant t = *(*engine)->GetTenant("acme");
  REQUIRE(t.cache().Set("k", "v").ok());
  CHECK(t.cache().Stats().budget_bytes == CacheOptions{}.default_tenant_budget_bytes);
  CHECK((*engine)->options().cache->TotalStats().entries == 1);
}

}  // namespace
}  // namespace tenancy
