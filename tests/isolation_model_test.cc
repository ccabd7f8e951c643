// Model-checked isolation: random operations across tenants with adversarial
// keys, each checked against an in-memory std::map per tenant.
//
// ctest runs 100,000 operations. TENANCY_MODEL_OPS=N runs N instead (e.g.
// TENANCY_MODEL_OPS=1000000 for the long mode) and TENANCY_MODEL_SEED=S
// another seed; both are printed, so a failure can be replayed.

#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <random>

#include "engine_fixture.h"

namespace tenancy {
namespace {

using testing::EngineFixture;
using Model = std::map<std::string, std::string>;

std::string BigEndian(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  return out;
}

constexpr size_t kMaxKey = 4096;  // EngineOptions::max_key_bytes' default

// The number of operations: TENANCY_MODEL_OPS, else 100,000.
int64_t OperationCount() {
  const char* env = std::getenv("TENANCY_MODEL_OPS");
  return env != nullptr ? std::atoll(env) : 100000;
}

uint64_t Seed() {
  const char* env = std::getenv("TENANCY_MODEL_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 20261123;
}

class KeyPool {
 public:
  explicit KeyPool(const std::vector<uint64_t>& numbers) {
    keys_ = {"", std::string(1, '\0'), std::string(2, '\0'), "\xff", std::string(5, '\xff'), "a",
             "a:b", "b:c", "a:", ":", "ab", "b", std::string(300, 'L'),
             std::string(300, 'L') + "\x01", std::string("\x00\xff\x00", 3),
             // Prefixes of each other, down to one byte, at both ends of
             // the byte range, and the namespace bytes of the encoding.
             std::string("a\0", 2), "a\xff", "a\xff\xff", "\x01", "\x02", "\x03",
             std::string("\xff\0", 2),
             // Keys of the maximum length (EngineOptions::max_key_bytes),
             // and those one byte shorter that prefix them.
             std::string(kMaxKey, '\xff'), std::string(kMaxKey - 1, '\xff'),
             std::string(kMaxKey, '\0'), std::string(kMaxKey - 1, '\0'),
             std::string(kMaxKey - 1, 'L') + "\x01"};
    // Keys that spell other tenants' internal prefixes (number + namespace).
    for (uint64_t n : numbers) {
      keys_.push_back(BigEndian(n));
      keys_.push_back(BigEndian(n) + "\x01");
      keys_.push_back(BigEndian(n) + "\x01" + "a");
      keys_.push_back(BigEndian(n + 1));
      keys_.push_back(BigEndian(n) + "\x02");  // another tenant's job records
      keys_.push_back(BigEndian(n) + "\x03");  // and its job index
      keys_.push_back(BigEndian(n - 1) + std::string(kMaxKey - 8, '\xff'));
      keys_.push_back(BigEndian(n).substr(0, 7));
    }
    for (int i = 0; i < 20; ++i) keys_.push_back("k" + std::to_string(i));
  }
  const std::string& Pick(std::mt19937_64& rng) const { return keys_[rng() % keys_.size()]; }

 private:
  std::vector<std::string> keys_;
};

// What a scan should return, computed from the model.
std::vector<KeyValue> ExpectedScan(const Model& model, const ScanOptions& o) {
  std::vector<KeyValue> all;
  for (const auto& [k, v] : model) {
    if (k.compare(0, o.prefix.size(), o.prefix) != 0) continue;
    if (k < o.start) continue;
    if (o.end.has_value() && k >= *o.end) continue;
    all.push_back(KeyValue{k, v});
  }
  if (o.reverse) std::reverse(all.begin(), all.end());
  if (all.size() > o.limit) all.resize(o.limit);
  return all;
}

std::vector<KeyValue> FullScan(const KvStore& kv) {
  std::vector<KeyValue> all;
  ScanOptions options;
  options.limit = 1000;
  while (true) {
    auto page = kv.Scan(options);
    REQUIRE(page.ok());
    all.insert(all.end(), page->items.begin(), page->items.end());
    if (page->cursor.empty()) return all;
    options.cursor = page->cursor;
  }
}

void CheckAllEqual(const std::vector<Tenant>& tenants, const std::vector<Model>& models) {
  for (size_t t = 0; t < tenants.size(); ++t) {
    INFO("tenant " << tenants[t].id());
    std::vector<KeyValue> expected;
    for (const auto& [k, v] : models[t]) expected.push_back(KeyValue{k, v});
    REQUIRE(FullScan(tenants[t].kv()) == expected);
    auto recount = tenants[t].kv().Recount(false);
    REQUIRE(recount.ok());
    REQUIRE(recount->counted == recount->recorded);
    REQUIRE(recount->counted.keys == models[t].size());
  }
}

TEST_CASE(
    "Isolation: random operations across tenants with adversarial keys "
    "never diverge from a per-tenant model",
    "[isolation]") {
  EngineFixture f;
  const std::vector<std::string> ids = {"a", "a-b", "ab", "b", "b-a", "ba", "x1", "dedi"};
  std::vector<Tenant> tenants;
  std::vector<uint64_t> numbers;
  for (const std::string& id : ids) {
    tenants.push_back(f.Create(id, {}, id == "dedi" ? Placement::kDedicated : Placement::kShared));
    numbers.push_back(tenants.back().number());
  }
  std::vector<Model> models(ids.size());
  KeyPool pool(numbers);
  const uint64_t seed = Seed();
  const int64_t operations = OperationCount();
  std::mt19937_64 rng(seed);
  INFO("TENANCY_MODEL_SEED=" << seed << " TENANCY_MODEL_OPS=" << operations);
  // A key one byte over the limit is refused, and changes nothing.
  REQUIRE(absl::IsInvalidArgument(tenants[0].kv().Put(std::string(kMaxKey + 1, 'x'), "v")));

  for (int64_t step = 0; step < operations; ++step) {
    size_t t = rng() % tenants.size();
    KvStore kv = tenants[t].kv();
    Model& model = models[t];
    const std::string& key = pool.Pick(rng);
    int op = static_cast<int>(rng() % 100);
    if (op < 35) {  // Put
      std::string value = (rng() % 8 == 0) ? std::string() : ids[t] + ":" + std::to_string(step);
      REQUIRE(kv.Put(key, value).ok());
      model[key] = value;
    } else if (op < 50) {  // Delete
      REQUIRE(kv.Delete(key).ok());
      model.erase(key);
    } else if (op < 75) {  // Get
      auto got = kv.Get(key);
      auto it = model.find(key);
      if (it == model.end()) {
        REQUIRE(absl::IsNotFound(got.status()));
      } else {
        REQUIRE(got.ok());
        REQUIRE(*got == it->second);
      }
    } else if (op < 88) {  // Scan
      ScanOptions options;
      switch (rng() % 3) {
        case 0:
          options.prefix = key.substr(0, rng() % (key.size() + 1));
          break;
        case 1:
          options.start = key;
          options.end = pool.Pick(rng);
          break;
        case 2:
          options.start = key;
          break;
      }
      if (options.end.has_value() && *options.end < options.start) {
        std::swap(*options.end, options.start);
      }
      options.reverse = rng() % 2 == 0;
      options.limit = 1 + rng() % 8;
      auto page = kv.Scan(options);
      REQUIRE(page.ok());
      REQUIRE(page->items == ExpectedScan(model, options));
    } else if (op < 96) {  // Batch
      WriteBatch batch;
      Model next = model;
      int n = 1 + static_cast<int>(rng() % 5);
      for (int i = 0; i < n; ++i) {
        const std::string& k = pool.Pick(rng);
        if (rng() % 3 == 0) {
          batch.Delete(k);
          next.erase(k);
        } else {
          std::string v = "batch" + std::to_string(step) + "/" + std::to_string(i);
          batch.Put(k, v);
          next[k] = v;
        }
      }
      REQUIRE(kv.Write(batch).ok());
      model = std::move(next);
    } else {  // DeleteRange
      std::string start = key, end = pool.Pick(rng);
      if (end < start) std::swap(start, end);
      auto removed = kv.DeleteRange(start, end);
      REQUIRE(removed.ok());
      uint64_t expected_removed = 0;
      for (auto it = model.lower_bound(start); it != model.end() && it->first < end;) {
        it = model.erase(it);
        ++expected_removed;
      }
      REQUIRE(*removed == expected_removed);
    }
    if (step % 20000 == 19999) CheckAllEqual(tenants, models);
  }
  CheckAllEqual(tenants, models);

  // Purge one tenant: every other tenant stays byte-identical.
  REQUIRE(f.registry().Purge("a-b").ok());
  size_t purged = 1;
  tenants.erase(tenants.begin() + purged);
  models.erase(models.begin() + purged);
  CheckAllEqual(tenants, models);
  REQUIRE(f.registry().Purge("dedi").ok());
  tenants.pop_back();
  models.pop_back();
  CheckAllEqual(tenants, models);
  tenants.clear();
  f.Reopen();
  for (const char* id : {"a", "ab", "b", "b-a", "ba", "x1"}) {
    tenants.push_back(*f.engine->GetTenant(id));
  }
  CheckAllEqual(tenants, models);
}

}  // namespace
}  // namespace tenancy
