// Model-checked isolation: random operations across tenants with adversarial
// keys, each checked against an in-memory std::map per tenant.

#include <catch2/catch.hpp>
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

class KeyPool {
 public:
  explicit KeyPool(const std::vector<uint64_t>& numbers) {
    keys_ = {"",
             std::string(1, '\0'),
             std::string(2, '\0'),
             "\xff",
             std::string(5, '\xff'),
             "a",
             "a:b",
             "b:c",
             "a:",
             ":",
             "ab",
             "b",
             std::string(300, 'L'),
             std::string(300, 'L') + "\x01",
             std::string("\x00\xff\x00", 3)};
    // Keys that spell other tenants' internal prefixes (number + namespace).
    for (uint64_t n : numbers) {
      keys_.push_back(BigEndian(n));
      keys_.push_back(BigEndian(n) + "\x01");
      keys_.push_back(BigEndian(n) + "\x01" + "a");
      keys_.push_back(BigEndian(n + 1));
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
  std::mt19937_64 rng(20261123);
  constexpr int kOperations = 100000;

  for (int step = 0; step < kOperations; ++step) {
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
