#include "tenancy/cache.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tenancy/status.h"

namespace tenancy {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// A clock the test moves by hand, so TTL tests never sleep.
class FakeClock {
 public:
  FakeClock() = default;
  FakeClock(const FakeClock&) = delete;
  FakeClock& operator=(const FakeClock&) = delete;

  CacheOptions::Clock AsClock() {
    return [this] {
      return std::chrono::steady_clock::time_point(
          nanoseconds(now_ns_.load(std::memory_order_relaxed)));
    };
  }
  void Advance(nanoseconds d) { now_ns_.fetch_add(d.count()); }

 private:
  // Starts well away from zero, like a real steady clock.
  std::atomic<int64_t> now_ns_{int64_t{1'000'000'000} * 3600};
};

size_t Charge(std::string_view key, std::string_view value) {
  return key.size() + value.size() + kCacheEntryOverheadBytes;
}

std::unique_ptr<Cache> MakeCache(CacheOptions options) {
  absl::StatusOr<std::unique_ptr<Cache>> cache = Cache::Create(std::move(options));
  REQUIRE(cache.ok());
  return *std::move(cache);
}

std::unique_ptr<Cache> MakeCache(FakeClock& clock, size_t shards = 16) {
  CacheOptions options;
  options.clock = clock.AsClock();
  options.shard_count = shards;
  return MakeCache(std::move(options));
}

// The value, "<missing>" for NOT_FOUND; fails the test on any other error.
std::string ValueOr(Cache& cache, uint64_t tenant, std::string_view key) {
  absl::StatusOr<std::string> value = cache.Get(tenant, key);
  if (absl::IsNotFound(value.status())) return "<missing>";
  REQUIRE(value.ok());
  return *value;
}

// Fixed width, so every key has the same charge.
std::string Key(int i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "key-%04d", i);
  return buf;
}

TEST_CASE("Cache: a value is returned until its TTL passes and never after", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  REQUIRE(cache->Set(1, "k", "v", milliseconds(100)).ok());
  REQUIRE(cache->Set(1, "forever", "v").ok());

  clock.Advance(milliseconds(99));
  CHECK(ValueOr(*cache, 1, "k") == "v");
  clock.Advance(milliseconds(1));
  CHECK(absl::IsNotFound(cache->Get(1, "k").status()));
  CHECK(absl::IsNotFound(cache->Get(1, "k").status()));
  CHECK_FALSE(cache->Delete(1, "k"));  // Expired is not live.

  clock.Advance(std::chrono::hours(24 * 300));
  CHECK(ValueOr(*cache, 1, "forever") == "v");

  CacheStats stats = cache->TenantStats(1);
  CHECK(stats.expirations == 1);
  CHECK(stats.entries == 1);
  CHECK(stats.bytes == Charge("forever", "v"));
}

TEST_CASE("Cache: Set replaces a value and its TTL", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  REQUIRE(cache->Set(1, "k", "short", milliseconds(10)).ok());
  REQUIRE(cache->Set(1, "k", "longer value", seconds(10)).ok());
  clock.Advance(seconds(1));
  CHECK(ValueOr(*cache, 1, "k") == "longer value");
  REQUIRE(cache->Set(1, "k", "no ttl").ok());
  clock.Advance(seconds(100));
  CHECK(ValueOr(*cache, 1, "k") == "no ttl");
  CHECK(cache->TenantStats(1).bytes == Charge("k", "no ttl"));
  CHECK(cache->TenantStats(1).entries == 1);
}

TEST_CASE("Cache: expired entries are reclaimed by later writes without reads", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock, /*shards=*/1);
  for (int i = 0; i < 100; ++i) {
    REQUIRE(cache->Set(1, Key(i), "value", seconds(1)).ok());
  }
  REQUIRE(cache->TenantStats(1).entries == 100);
  clock.Advance(seconds(2));
  // Writes to another tenant reclaim a few expired entries each, oldest first;
  // nobody reads the expired keys.
  for (int i = 0; i < 50; ++i) {
    REQUIRE(cache->Set(2, Key(i), "value").ok());
  }
  CacheStats stats = cache->TenantStats(1);
  CHECK(stats.entries == 0);
  CHECK(stats.bytes == 0);
  CHECK(stats.expirations == 100);
  CHECK(cache->TotalStats().entries == 50);
}

TEST_CASE("Cache: concurrent increments from many threads sum exactly", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock, /*shards=*/4);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  std::atomic<bool> failed{false};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // One shared counter, one per tenant, and a few shared by tenants'
        // key bytes but not by tenant.
        if (!cache->Increment(1, "shared", 1).ok()) failed = true;
        if (!cache->Increment(1, "by-three", 3).ok()) failed = true;
        if (!cache->Increment(100 + t % 2, "shared", -1).ok()) failed = true;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  CHECK_FALSE(failed);
  CHECK(ValueOr(*cache, 1, "shared") == std::to_string(kThreads * kPerThread));
  CHECK(ValueOr(*cache, 1, "by-three") == std::to_string(3 * kThreads * kPerThread));
  CHECK(ValueOr(*cache, 100, "shared") == std::to_string(-kThreads / 2 * kPerThread));
  CHECK(ValueOr(*cache, 101, "shared") == std::to_string(-kThreads / 2 * kPerThread));
}

TEST_CASE("Cache: Increment starts at zero and its TTL applies to a new key only", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  absl::StatusOr<int64_t> v = cache->Increment(1, "n", 5, seconds(10));
  REQUIRE(v.ok());
  CHECK(*v == 5);
  clock.Advance(seconds(6));
  v = cache->Increment(1, "n", 2, seconds(10));  // Keeps the first window.
  REQUIRE(v.ok());
  CHECK(*v == 7);
  CHECK(ValueOr(*cache, 1, "n") == "7");
  clock.Advance(seconds(4));
  CHECK(absl::IsNotFound(cache->Get(1, "n").status()));
  v = cache->Increment(1, "n", -2);  // Expired counts as absent.
  REQUIRE(v.ok());
  CHECK(*v == -2);

  REQUIRE(cache->Set(1, "text", "-9223372036854775807").ok());
  v = cache->Increment(1, "text", -1);
  REQUIRE(v.ok());
  CHECK(*v == std::numeric_limits<int64_t>::min());
  CHECK(ValueOr(*cache, 1, "text") == "-9223372036854775808");
}

TEST_CASE(
    "Cache: incrementing a value that is not a decimal int64 is "
    "InvalidArgument and changes nothing",
    "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  const std::string bad =
      GENERATE(as<std::string>{}, "", "abc", "12a", "+1", " 1", "1 ", "-", "1.5", "0x10",
               "9223372036854775808", "-9223372036854775809", std::string("1\0", 2));
  CAPTURE(bad);
  REQUIRE(cache->Set(1, "k", bad).ok());
  const CacheStats before = cache->TenantStats(1);
  absl::StatusOr<int64_t> v = cache->Increment(1, "k", 1);
  CHECK(absl::IsInvalidArgument(v.status()));
  CHECK(ValueOr(*cache, 1, "k") == bad);
  CHECK(cache->TenantStats(1).bytes == before.bytes);
}

TEST_CASE(
    "Cache: an increment that would overflow is OutOfRange and changes "
    "nothing",
    "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  REQUIRE(cache->Set(1, "max", "9223372036854775807").ok());
  CHECK(absl::IsOutOfRange(cache->Increment(1, "max", 1).status()));
  CHECK(ValueOr(*cache, 1, "max") == "9223372036854775807");
  REQUIRE(cache->Set(1, "min", "-9223372036854775808").ok());
  CHECK(absl::IsOutOfRange(cache->Increment(1, "min", -1).status()));
  CHECK(ValueOr(*cache, 1, "min") == "-9223372036854775808");
  // Absent key: by itself never overflows.
  absl::StatusOr<int64_t> v = cache->Increment(1, "new", std::numeric_limits<int64_t>::max());
  REQUIRE(v.ok());
  CHECK(absl::IsOutOfRange(cache->Increment(1, "new", 1).status()));
}

TEST_CASE(
    "Cache: a TTL that is zero, negative or over max_ttl is "
    "InvalidArgument and changes nothing",
    "[cache]") {
  FakeClock clock;
  CacheOptions options;
  options.clock = clock.AsClock();
  options.max_ttl = std::chrono::hours(1);
  auto cache = MakeCache(std::move(options));
  REQUIRE(cache->Set(1, "k", "old").ok());
  const nanoseconds bad =
      GENERATE(nanoseconds(0), nanoseconds(-1), nanoseconds(std::chrono::hours(-5)),
               nanoseconds(std::chrono::hours(1)) + nanoseconds(1), nanoseconds::max());
  CAPTURE(bad.count());
  CHECK(absl::IsInvalidArgument(cache->Set(1, "k", "new", bad)));
  CHECK(absl::IsInvalidArgument(cache->Set(1, "other", "new", bad)));
  CHECK(absl::IsInvalidArgument(cache->Increment(1, "n", 1, bad).status()));
  CHECK(ValueOr(*cache, 1, "k") == "old");
  CHECK(ValueOr(*cache, 1, "other") == "<missing>");
  CHECK(ValueOr(*cache, 1, "n") == "<missing>");
  CHECK(cache->TenantStats(1).entries == 1);
  // The maximum itself is fine.
  CHECK(cache->Set(1, "k", "new", std::chrono::hours(1)).ok());
}

TEST_CASE(
    "Cache: a tenant over its budget evicts only its own least recently "
    "used entries",
    "[cache]") {
  FakeClock clock;
  const std::string value(100, 'v');
  const size_t per_entry = Charge(Key(0), value);
  constexpr int kFits = 10;

  SECTION("exact LRU order within one shard") {
    auto cache = MakeCache(clock, /*shards=*/1);
    cache->SetTenantBudget(1, per_entry * kFits);
    for (int i = 0; i < 5; ++i) REQUIRE(cache->Set(2, Key(i), "other").ok());
    for (int i = 0; i < kFits; ++i) REQUIRE(cache->Set(1, Key(i), value).ok());
    // Touch key-0 and key-1, so key-2 and key-3 are now the oldest.
    REQUIRE(cache->Get(1, Key(0)).ok());
    REQUIRE(cache->Get(1, Key(1)).ok());
    REQUIRE(cache->Set(1, Key(100), value).ok());
    REQUIRE(cache->Set(1, Key(101), value).ok());
    CHECK(ValueOr(*cache, 1, Key(0)) == value);
    CHECK(ValueOr(*cache, 1, Key(1)) == value);
    CHECK(ValueOr(*cache, 1, Key(2)) == "<missing>");
    CHECK(ValueOr(*cache, 1, Key(3)) == "<missing>");
    for (int i = 4; i < kFits; ++i) CHECK(ValueOr(*cache, 1, Key(i)) == value);
    CHECK(cache->TenantStats(1).evictions == 2);
    CHECK(cache->TenantStats(1).bytes == per_entry * kFits);
    for (int i = 0; i < 5; ++i) CHECK(ValueOr(*cache, 2, Key(i)) == "other");
    CHECK(cache->TenantStats(2).evictions == 0);
  }

  SECTION("many shards: the budget holds and other tenants are untouched") {
    auto cache = MakeCache(clock, /*shards=*/16);
    cache->SetTenantBudget(1, per_entry * kFits);
    for (int i = 0; i < 200; ++i) REQUIRE(cache->Set(2, Key(i), "b").ok());
    for (int i = 0; i < 1000; ++i) {
      REQUIRE(cache->Set(1, Key(i % 1000), value).ok());
      REQUIRE(cache->TenantStats(1).bytes <= per_entry * kFits);
    }
    CacheStats a = cache->TenantStats(1);
    CHECK(a.entries == kFits);
    CHECK(a.evictions == 1000 - kFits);
    // The most recent write is always kept.
    CHECK(ValueOr(*cache, 1, Key(999)) == value);
    for (int i = 0; i < 200; ++i) CHECK(ValueOr(*cache, 2, Key(i)) == "b");
    CacheStats b = cache->TenantStats(2);
    CHECK(b.evictions == 0);
    CHECK(b.entries == 200);
  }
}

TEST_CASE(
    "Cache: an entry larger than the tenant budget is refused as too "
    "large and changes nothing",
    "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  cache->SetTenantBudget(1, 1000);
  REQUIRE(cache->Set(1, "k", "small").ok());
  const std::string huge(1000, 'x');
  absl::Status s = cache->Set(1, "k", huge);
  CHECK(absl::IsInvalidArgument(s));
  CHECK(GetErrorReason(s) == ErrorReason::kTooLarge);
  CHECK(ValueOr(*cache, 1, "k") == "small");
  // Just fits: the exact charge equals the budget.
  const std::string fits(1000 - kCacheEntryOverheadBytes - 1, 'x');
  CHECK(cache->Set(1, "k", fits).ok());
  CHECK(cache->TenantStats(1).bytes == 1000);

  cache->SetTenantBudget(1, 0);  // Keeps the tenant out of the cache.
  CHECK(ValueOr(*cache, 1, "k") == "<missing>");
  s = cache->Set(1, "k", "");
  CHECK(GetErrorReason(s) == ErrorReason::kTooLarge);
  CHECK(GetErrorReason(cache->Increment(1, "n", 1).status()) == ErrorReason::kTooLarge);
}

TEST_CASE(
    "Cache: one tenant filling the cache never evicts a tenant within "
    "its fair share",
    "[cache]") {
  FakeClock clock;
  CacheOptions options;
  options.clock = clock.AsClock();
  options.shard_count = 8;
  options.global_budget_bytes = 64 * 1024;
  // Overcommitted: each tenant alone could fill the cache.
  options.default_tenant_budget_bytes = 64 * 1024;
  auto cache = MakeCache(std::move(options));
  const std::string value(200, 'v');

  // Tenants 2 and 3 hold a little each, well under a third of the cache.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(cache->Set(2, Key(i), value).ok());
    REQUIRE(cache->Set(3, Key(i), value).ok());
  }
  // Tenant 1 writes far more than the global budget.
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(cache->Set(1, Key(i), value).ok());
    REQUIRE(cache->TotalStats().bytes <= 64 * 1024);
  }
  for (int i = 0; i < 20; ++i) {
    CHECK(ValueOr(*cache, 2, Key(i)) == value);
    CHECK(ValueOr(*cache, 3, Key(i)) == value);
  }
  CHECK(cache->TenantStats(2).evictions == 0);
  CHECK(cache->TenantStats(3).evictions == 0);
  CHECK(cache->TenantStats(1).evictions > 0);

  // Now a small tenant writes into the full cache: the big one pays.
  const uint64_t before = cache->TenantStats(1).entries;
  for (int i = 20; i < 40; ++i) REQUIRE(cache->Set(2, Key(i), value).ok());
  CHECK(cache->TenantStats(2).entries == 40);
  CHECK(cache->TenantStats(2).evictions == 0);
  CHECK(cache->TenantStats(3).evictions == 0);
  CHECK(cache->TenantStats(1).entries < before);
  CHECK(cache->TotalStats().bytes <= 64 * 1024);
}

TEST_CASE("Cache: dropping a tenant removes all its entries and nothing else", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  cache->SetTenantBudget(1, 1 << 20);
  for (int i = 0; i < 100; ++i) {
    REQUIRE(cache->Set(1, Key(i), "a", i % 2 ? std::optional(seconds(60)) : std::nullopt).ok());
    REQUIRE(cache->Set(2, Key(i), "b").ok());
  }
  REQUIRE(cache->Get(1, Key(0)).ok());
  cache->DropTenant(1);
  for (int i = 0; i < 100; ++i) {
    CHECK(ValueOr(*cache, 1, Key(i)) == "<missing>");
    CHECK(ValueOr(*cache, 2, Key(i)) == "b");
  }
  CacheStats dropped = cache->TenantStats(1);
  CHECK(dropped.entries == 0);
  CHECK(dropped.bytes == 0);
  CHECK(dropped.hits == 0);                   // Counters reset.
  CHECK(dropped.budget_bytes == (1u << 20));  // The override stays.
  CHECK(cache->TotalStats().entries == 100);
  CHECK(cache->TotalStats().bytes == cache->TenantStats(2).bytes);

  // The tenant can come back.
  REQUIRE(cache->Set(1, "again", "x").ok());
  CHECK(ValueOr(*cache, 1, "again") == "x");
  CHECK(cache->TenantStats(1).entries == 1);
  cache->DropTenant(7);  // Unknown tenant: nothing happens.
}

TEST_CASE(
    "Cache: tenants never see each other's keys, adversarial keys "
    "included",
    "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  const std::vector<std::string> keys = {"",
                                         std::string(1, '\0'),
                                         std::string(3, '\xff'),
                                         "a",
                                         "a:b",
                                         std::string(10000, 'k'),
                                         std::string("\0\0\0\0\0\0\0\x01", 8)};
  for (const std::string& key : keys) {
    REQUIRE(cache->Set(1, key, "one:" + key).ok());
    REQUIRE(cache->Set(256, key, "two:" + key).ok());
  }
  for (const std::string& key : keys) {
    CHECK(ValueOr(*cache, 1, key) == "one:" + key);
    CHECK(ValueOr(*cache, 256, key) == "two:" + key);
    CHECK(ValueOr(*cache, 0, key) == "<missing>");
  }
  CHECK(cache->Delete(1, ""));
  CHECK(ValueOr(*cache, 256, "") == "two:");
  CHECK(cache->DeletePrefix(256, "a") == 2);
  CHECK(ValueOr(*cache, 1, "a:b") == "one:a:b");
}

TEST_CASE("Cache: a prefix delete removes only that tenant's matching keys", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  for (int i = 0; i < 50; ++i) {
    REQUIRE(cache->Set(1, "user:" + std::to_string(i), "x").ok());
    REQUIRE(cache->Set(1, "session:" + std::to_string(i), "x").ok());
    REQUIRE(cache->Set(2, "user:" + std::to_string(i), "x").ok());
  }
  REQUIRE(cache->Set(1, "user", "x").ok());  // Shorter than the prefix.
  REQUIRE(cache->Set(1, "user:expired", "x", seconds(1)).ok());
  clock.Advance(seconds(2));
  CHECK(cache->DeletePrefix(1, "user:") == 50);  // The expired one not counted.
  for (int i = 0; i < 50; ++i) {
    CHECK(ValueOr(*cache, 1, "user:" + std::to_string(i)) == "<missing>");
    CHECK(ValueOr(*cache, 1, "session:" + std::to_string(i)) == "x");
    CHECK(ValueOr(*cache, 2, "user:" + std::to_string(i)) == "x");
  }
  CHECK(ValueOr(*cache, 1, "user") == "x");
  CHECK(cache->TenantStats(1).entries == 51);
  CHECK(cache->DeletePrefix(1, "") == 51);
  CHECK(cache->TenantStats(1).bytes == 0);
  CHECK(cache->TenantStats(2).entries == 50);
}

TEST_CASE("Cache: lowering a tenant's budget evicts down to it at once", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  const std::string value(100, 'v');
  const size_t per_entry = Charge(Key(0), value);
  for (int i = 0; i < 10; ++i) REQUIRE(cache->Set(1, Key(i), value).ok());
  CHECK(cache->TenantStats(1).budget_bytes == CacheOptions().default_tenant_budget_bytes);
  cache->SetTenantBudget(1, per_entry * 3);
  CacheStats stats = cache->TenantStats(1);
  CHECK(stats.entries == 3);
  CHECK(stats.bytes == per_entry * 3);
  CHECK(stats.budget_bytes == per_entry * 3);
  CHECK(stats.evictions == 7);
  cache->SetTenantBudget(1, std::nullopt);
  CHECK(cache->TenantStats(1).budget_bytes == CacheOptions().default_tenant_budget_bytes);
  for (int i = 0; i < 10; ++i) REQUIRE(cache->Set(1, Key(i), value).ok());
  CHECK(cache->TenantStats(1).entries == 10);
  // An override set before the tenant's first write applies to it.
  cache->SetTenantBudget(9, per_entry);
  REQUIRE(cache->Set(9, Key(0), value).ok());
  REQUIRE(cache->Set(9, Key(1), value).ok());
  CHECK(cache->TenantStats(9).entries == 1);
}

TEST_CASE("Cache: hits, misses and bytes are counted per tenant and in total", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock);
  REQUIRE(cache->Set(1, "a", "12345").ok());
  REQUIRE(cache->Set(2, "b", "1").ok());
  REQUIRE(cache->Get(1, "a").ok());
  REQUIRE(cache->Get(1, "a").ok());
  CHECK(absl::IsNotFound(cache->Get(1, "nope").status()));
  CHECK(absl::IsNotFound(cache->Get(2, "a").status()));
  CHECK(absl::IsNotFound(cache->Get(3, "a").status()));  // Never seen.
  CacheStats one = cache->TenantStats(1);
  CHECK(one.hits == 2);
  CHECK(one.misses == 1);
  CHECK(one.entries == 1);
  CHECK(one.bytes == Charge("a", "12345"));
  CHECK(cache->TenantStats(2).misses == 1);
  CHECK(cache->TenantStats(3).misses == 0);
  CacheStats total = cache->TotalStats();
  CHECK(total.hits == 2);
  CHECK(total.misses == 3);
  CHECK(total.entries == 2);
  CHECK(total.bytes == Charge("a", "12345") + Charge("b", "1"));
  CHECK(total.budget_bytes == CacheOptions().global_budget_bytes);
}

TEST_CASE("Cache: Create rejects invalid options", "[cache]") {
  CacheOptions options;
  SECTION("zero global budget") { options.global_budget_bytes = 0; }
  SECTION("zero tenant budget") { options.default_tenant_budget_bytes = 0; }
  SECTION("zero shards") { options.shard_count = 0; }
  SECTION("no clock") { options.clock = nullptr; }
  SECTION("non-positive max_ttl") { options.max_ttl = nanoseconds(0); }
  CHECK(absl::IsInvalidArgument(Cache::Create(std::move(options)).status()));
}

TEST_CASE("Cache: random operations match a reference model", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock, /*shards=*/4);
  struct Item {
    std::string value;
    int64_t expires_ms;  // -1: never.
  };
  std::map<std::pair<uint64_t, std::string>, Item> model;
  int64_t now_ms = 0;
  std::mt19937 rng(12345);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  const std::vector<std::string> keys = {"",  std::string(1, '\0'),   "a", "ab",
                                         "b", std::string(2, '\xff'), "10"};
  auto live = [&](uint64_t t, const std::string& k) -> const Item* {
    auto it = model.find({t, k});
    if (it == model.end()) return nullptr;
    if (it->second.expires_ms >= 0 && now_ms >= it->second.expires_ms) {
      model.erase(it);
      return nullptr;
    }
    return &it->second;
  };
  for (int step = 0; step < 20000; ++step) {
    const uint64_t t = static_cast<uint64_t>(pick(3));
    const std::string& k = keys[pick(static_cast<int>(keys.size()))];
    CAPTURE(step, t, k);
    switch (pick(7)) {
      case 0: {
        const Item* item = live(t, k);
        absl::StatusOr<std::string> got = cache->Get(t, k);
        if (item == nullptr) {
          REQUIRE(absl::IsNotFound(got.status()));
        } else {
          REQUIRE(got.ok());
          REQUIRE(*got == item->value);
        }
        break;
      }
      case 1: {
        // Leading zeros vary the length (so values move between
        // allocations) and keep every value a decimal int64.
        const std::string v = std::string(pick(80), '0') + std::to_string(pick(100));
        const bool with_ttl = pick(2) == 0;
        const int ttl_ms = 1 + pick(50);
        REQUIRE(
            cache
                ->Set(t, k, v,
                      with_ttl ? std::optional<nanoseconds>(milliseconds(ttl_ms)) : std::nullopt)
                .ok());
        model[{t, k}] = Item{v, with_ttl ? now_ms + ttl_ms : -1};
        break;
      }
      case 2: {
        const bool was_live = live(t, k) != nullptr;
        REQUIRE(cache->Delete(t, k) == was_live);
        model.erase({t, k});
        break;
      }
      case 3: {
        const int by = pick(21) - 10;
        const int ttl_ms = 1 + pick(50);
        const Item* item = live(t, k);
        absl::StatusOr<int64_t> got = cache->Increment(t, k, by, milliseconds(ttl_ms));
        if (item == nullptr) {
          REQUIRE(got.ok());
          REQUIRE(*got == by);
          model[{t, k}] = Item{std::to_string(by), now_ms + ttl_ms};
        } else {
          REQUIRE(got.ok());  // Every value this test stores is a number.
          const int64_t next = std::stoll(item->value) + by;
          REQUIRE(*got == next);
          model[{t, k}].value = std::to_string(next);
        }
        break;
      }
      case 4: {
        const std::string prefix = k.substr(0, pick(2));
        size_t expected = 0;
        for (const std::string& key : keys) {
          if (key.compare(0, prefix.size(), prefix) == 0 && live(t, key) != nullptr) {
            ++expected;
            model.erase({t, key});
          }
        }
        REQUIRE(cache->DeletePrefix(t, prefix) == expected);
        break;
      }
      case 5:
        if (pick(20) == 0) {
          cache->DropTenant(t);
          for (auto it = model.begin(); it != model.end();) {
            it = it->first.first == t ? model.erase(it) : std::next(it);
          }
        }
        break;
      case 6: {
        const int ms = pick(10);
        clock.Advance(milliseconds(ms));
        now_ms += ms;
        break;
      }
    }
  }
  // Bytes and entries agree with the model, once expired entries are gone.
  clock.Advance(seconds(1));
  now_ms += 1000;
  for (uint64_t t = 0; t < 3; ++t) {
    uint64_t entries = 0;
    uint64_t bytes = 0;
    for (const std::string& k : keys) {
      const Item* item = live(t, k);
      const bool present = cache->Get(t, k).ok();  // Reclaims if expired.
      REQUIRE(present == (item != nullptr));
      if (item != nullptr) {
        ++entries;
        bytes += Charge(k, item->value);
      }
    }
    CHECK(cache->TenantStats(t).entries == entries);
    CHECK(cache->TenantStats(t).bytes == bytes);
  }
}

TEST_CASE("Cache: writes racing DropTenant leave nothing behind a purge", "[cache]") {
  FakeClock clock;
  auto cache = MakeCache(clock, /*shards=*/2);
  std::atomic<int> failures{0};  // Catch2 assertions are not thread-safe.
  std::atomic<uint64_t> miscounted{0};
  std::atomic<uint64_t> leftover{0};
  for (int round = 0; round < 200; ++round) {
    std::atomic<bool> done{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < 2; ++w) {
      writers.emplace_back([&, w] {
        for (int i = 0; i < 200; ++i) {
          if (!cache->Set(1, Key((i + w) % 16), "v").ok()) ++failures;
        }
      });
    }
    std::thread dropper([&] {
      while (!done.load()) cache->DropTenant(1);
    });
    for (std::thread& th : writers) th.join();
    done = true;
    dropper.join();
    // Every entry left is counted by the tenant's current counters: none
    // is charged to a dropped state the registry has forgotten...
    if (cache->TenantStats(1).entries != cache->TotalStats().entries) {
      ++miscounted;
    }
    // ...so a purge after the writes stop leaves the cache empty.
    cache->DropTenant(1);
    leftover += cache->TotalStats().entries;
  }
  CHECK(failures == 0);
  CHECK(miscounted == 0);
  CHECK(leftover == 0);
}

TEST_CASE(
    "Cache: concurrent mixed operations keep budgets and counts "
    "consistent",
    "[cache]") {
  FakeClock clock;
  CacheOptions options;
  options.clock = clock.AsClock();
  options.shard_count = 4;
  options.global_budget_bytes = 40 * 1024;
  options.default_tenant_budget_bytes = 16 * 1024;
  auto cache = MakeCache(std::move(options));
  constexpr int kThreads = 6;
  constexpr int kTenants = 5;
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      std::mt19937 rng(th);
      for (int i = 0; i < 4000; ++i) {
        const uint64_t t = 1 + rng() % kTenants;
        const std::string key = Key(static_cast<int>(rng() % 200));
        switch (rng() % 10) {
          case 0:
          case 1:
          case 2:
            (void)cache->Set(t, key, std::string(rng() % 300, 'v'),
                             rng() % 2 ? std::optional(milliseconds(5)) : std::nullopt);
            break;
          case 3:
            (void)cache->Increment(t, "n" + key.substr(7, 1), 1);
            break;
          case 4:
            cache->Delete(t, key);
            break;
          case 5:
            if (rng() % 50 == 0) cache->DeletePrefix(t, "key-01");
            break;
          case 6:
            if (rng() % 20 == 0) cache->DropTenant(t);
            break;
          case 7:
            if (rng() % 100 == 0) {
              cache->SetTenantBudget(t, rng() % 2 ? std::optional<size_t>(4 * 1024) : std::nullopt);
            }
            break;
          case 8:
            clock.Advance(milliseconds(1));
            break;
          default:
            (void)cache->Get(t, key);
            break;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();

  // Quiescent: every budget holds and the per-tenant counts add up to the
  // shards' own, so no entry was charged to a forgotten tenant.
  CacheStats total = cache->TotalStats();
  CHECK(total.bytes <= 40 * 1024);
  uint64_t entries = 0;
  uint64_t bytes = 0;
  for (uint64_t t = 1; t <= kTenants; ++t) {
    CacheStats s = cache->TenantStats(t);
    CHECK(s.bytes <= s.budget_bytes);
    entries += s.entries;
    bytes += s.bytes;
  }
  CHECK(entries == total.entries);
  CHECK(bytes == total.bytes);
  for (uint64_t t = 1; t <= kTenants; ++t) cache->DropTenant(t);
  CHECK(cache->TotalStats().entries == 0);
  CHECK(cache->TotalStats().bytes == 0);
}

}  // namespace
}  // namespace tenancy
