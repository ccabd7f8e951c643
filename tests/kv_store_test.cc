#include <catch2/catch.hpp>

#include "engine_fixture.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using testing::EngineFixture;

std::vector<std::string> Keys(const ScanResult& result) {
  std::vector<std::string> keys;
  for (const KeyValue& kv : result.items) keys.push_back(kv.key);
  return keys;
}

TEST_CASE("KvStore: get, put, delete and the empty key", "[kv]") {
  EngineFixture f;
  KvStore kv = f.Create("acme").kv();
  CHECK(absl::IsNotFound(kv.Get("missing").status()));
  REQUIRE(kv.Put("", "empty key").ok());
  REQUIRE(kv.Put(std::string("\0\xff", 2), std::string("\0v", 2)).ok());
  CHECK(*kv.Get("") == "empty key");
  CHECK(*kv.Get(std::string("\0\xff", 2)) == std::string("\0v", 2));
  REQUIRE(kv.Delete("").ok());
  REQUIRE(kv.Delete("").ok());  // idempotent
  CHECK(absl::IsNotFound(kv.Get("").status()));
  auto many = kv.MultiGet({std::string("\0\xff", 2), "nope"});
  REQUIRE(many.ok());
  CHECK((*many)[0] == std::string("\0v", 2));
  CHECK_FALSE((*many)[1].has_value());
}

TEST_CASE("KvStore: oversize keys and values are refused and change nothing", "[kv]") {
  EngineFixture f;
  Quota quota;
  quota.max_value_bytes = 10;
  KvStore kv = f.Create("acme", quota).kv();
  std::string big_key(f.engine->options().max_key_bytes + 1, 'k');
  absl::Status s = kv.Put(big_key, "v");
  CHECK(absl::IsInvalidArgument(s));
  CHECK(GetErrorReason(s) == ErrorReason::kTooLarge);
  s = kv.Put("k", std::string(11, 'v'));
  CHECK(GetErrorReason(s) == ErrorReason::kTooLarge);
  REQUIRE(kv.Put("k", std::string(10, 'v')).ok());
  WriteBatch batch;
  batch.Put("a", "1");
  batch.Put("b", std::string(11, 'v'));
  CHECK(GetErrorReason(kv.Write(batch)) == ErrorReason::kTooLarge);
  CHECK(absl::IsNotFound(kv.Get("a").status()));
  CHECK(kv.tenant().usage() == Usage{11, 1});
}

TEST_CASE("KvStore: scans by prefix and range, both directions, with cursors", "[kv]") {
  EngineFixture f;
  KvStore kv = f.Create("acme").kv();
  KvStore neighbour = f.Create("acme-2").kv();
  for (std::string k :
       std::vector<std::string>{"a", "a/1", "a/2", "a/3", "b", "b/1", std::string("\xff\xff")}) {
    REQUIRE(kv.Put(k, "v" + k).ok());
    REQUIRE(neighbour.Put(k, "n").ok());
  }
  ScanOptions options;
  options.prefix = "a/";
  CHECK(Keys(*kv.Scan(options)) == std::vector<std::string>{"a/1", "a/2", "a/3"});
  options.reverse = true;
  CHECK(Keys(*kv.Scan(options)) == std::vector<std::string>{"a/3", "a/2", "a/1"});

  ScanOptions range;
  range.start = "a/2";
  range.end = "b/1";
  CHECK(Keys(*kv.Scan(range)) == std::vector<std::string>{"a/2", "a/3", "b"});

  ScanOptions all;
  all.prefix = "\xff";
  CHECK(Keys(*kv.Scan(all)) == std::vector<std::string>{"\xff\xff"});

  for (bool reverse : {false, true}) {
    ScanOptions paged;
    paged.limit = 2;
    paged.reverse = reverse;
    std::vector<std::string> keys;
    int pages = 0;
    while (true) {
      auto page = kv.Scan(paged);
      REQUIRE(page.ok());
      ++pages;
      for (auto& k : Keys(*page)) keys.push_back(k);
      if (page->cursor.empty()) break;
      paged.cursor = page->cursor;
    }
    std::vector<std::string> expected = {"a", "a/1", "a/2", "a/3", "b", "b/1", "\xff\xff"};
    if (reverse) std::reverse(expected.begin(), expected.end());
    CHECK(keys == expected);
    CHECK(pages == 4);
  }

  ScanOptions bad;
  bad.limit = 0;
  CHECK(absl::IsInvalidArgument(kv.Scan(bad).status()));
  bad.limit = 1;
  bad.cursor = "zzz";
  CHECK(absl::IsInvalidArgument(kv.Scan(bad).status()));
}

TEST_CASE("KvStore: a batch is atomic and later ops on a key win", "[kv]") {
  EngineFixture f;
  Quota quota;
  quota.max_keys = 3;
  KvStore kv = f.Create("acme", quota).kv();
  WriteBatch batch;
  batch.Put("a", "1");
  batch.Put("a", "22");
  batch.Put("b", "1");
  batch.Delete("b");
  batch.Put("c", "3");
  REQUIRE(kv.Write(batch).ok());
  CHECK(*kv.Get("a") == "22");
  CHECK(absl::IsNotFound(kv.Get("b").status()));
  CHECK(kv.tenant().usage() == Usage{3 + 2, 2});

  WriteBatch too_many;
  too_many.Put("d", "4");
  too_many.Put("e", "5");
  absl::Status s = kv.Write(too_many);
  CHECK(GetErrorReason(s) == ErrorReason::kKeyQuota);
  CHECK(absl::IsNotFound(kv.Get("d").status()));
  CHECK(kv.tenant().usage() == Usage{5, 2});
}

TEST_CASE("KvStore: delete range removes exactly the range and counts it", "[kv]") {
  EngineFixture f;
  KvStore kv = f.Create("acme").kv();
  KvStore other = f.Create("other").kv();
  for (char c = 'a'; c <= 'f'; ++c) {
    REQUIRE(kv.Put(std::string(1, c), "xx").ok());
    REQUIRE(other.Put(std::string(1, c), "xx").ok());
  }
  auto removed = kv.DeleteRange("b", "e");
  REQUIRE(removed.ok());
  CHECK(*removed == 3);
  CHECK(Keys(*kv.Scan({})) == std::vector<std::string>{"a", "e", "f"});
  CHECK(kv.tenant().usage() == Usage{9, 3});
  CHECK(other.Scan({})->items.size() == 6);
  CHECK(absl::IsInvalidArgument(kv.DeleteRange("z", "a").status()));
  CHECK(*kv.DeleteRange("q", "q") == 0);
  auto recount = kv.Recount(false);
  REQUIRE(recount.ok());
  CHECK(recount->counted == recount->recorded);
}

TEST_CASE("KvStore: request counters count calls and last activity", "[kv]") {
  EngineFixture f;
  {
    Tenant t = f.Create("acme");
    CHECK(t.requests().calls_today == 0);
    CHECK(t.requests().last_active == absl::InfinitePast());
    REQUIRE(t.kv().Put("k", "v").ok());
    REQUIRE(t.kv().Get("k").ok());
    t.RecordCall(CallKind::kOther);
    CHECK(t.requests().calls_today == 3);
    CHECK(t.requests().calls_total == 3);
    CHECK(t.requests().calls_by_kind[static_cast<int>(CallKind::kPut)] == 1);
    CHECK(t.requests().calls_by_kind[static_cast<int>(CallKind::kGet)] == 1);
    CHECK(t.requests().calls_by_kind[static_cast<int>(CallKind::kOther)] == 1);
    CHECK(t.requests().last_active > absl::Now() - absl::Minutes(1));
  }
  f.Reopen();
  CHECK(f.registry().Get("acme")->requests.calls_today == 3);
}

TEST_CASE("KvStore: physical size is reported beside the logical one", "[kv]") {
  EngineFixture f;
  KvStore kv = f.Create("acme").kv();
  CHECK(*kv.ApproximatePhysicalBytes() == 0);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(kv.Put("key" + std::to_string(i), std::string(1000, 'x')).ok());
  }
  REQUIRE(f.engine->Flush().ok());
  CHECK(*kv.ApproximatePhysicalBytes() > 0);
}

}  // namespace
}  // namespace tenancy

namespace tenancy {
namespace {

TEST_CASE(
    "KvStore: a large delete range (range tombstone path) is exact and "
    "bounded to the tenant",
    "[kv]") {
  testing::EngineFixture f;
  KvStore kv = f.Create("acme").kv();
  KvStore other = f.Create("other").kv();
  WriteBatch batch;
  for (int i = 0; i < 1500; ++i) batch.Put("k" + std::to_string(10000 + i), "v");
  REQUIRE(kv.Write(batch).ok());
  REQUIRE(other.Write(batch).ok());
  REQUIRE(kv.Put("z", "stays").ok());
  auto removed = kv.DeleteRange("k", "l");
  REQUIRE(removed.ok());
  CHECK(*removed == 1500);
  CHECK(kv.tenant().usage() == Usage{6, 1});
  CHECK(other.tenant().usage().keys == 1500);
  ScanOptions everything;
  everything.limit = 10000;
  CHECK(other.Scan(everything)->items.size() == 1500);
  auto recount = kv.Recount(false);
  CHECK(recount->counted == recount->recorded);
}

TEST_CASE("KvStore: a scan page is bounded in bytes and always holds one item", "[kv][scan]") {
  EngineFixture f;
  KvStore kv = f.Create("acme").kv();
  for (int i = 0; i < 20; ++i) {
    REQUIRE(kv.Put("k" + std::to_string(100 + i), std::string(1000, 'v')).ok());
  }
  for (bool reverse : {false, true}) {
    ScanOptions options;
    options.limit = 1000;
    options.reverse = reverse;
    options.max_bytes = 4 * 1004;  // four items of 4 + 1000 bytes
    std::vector<std::string> all;
    int pages = 0;
    do {
      auto page = kv.Scan(options);
      REQUIRE(page.ok());
      CHECK(page->items.size() <= 4);
      for (const KeyValue& item : page->items) all.push_back(item.key);
      options.cursor = page->cursor;
      ++pages;
    } while (!options.cursor.empty() && pages < 100);
    CHECK(pages == 5);
    REQUIRE(all.size() == 20);
    CHECK(all.front() == (reverse ? "k119" : "k100"));
  }
  // One item larger than the budget still comes back, alone.
  REQUIRE(kv.Put("huge", std::string(100000, 'h')).ok());
  ScanOptions options;
  options.prefix = "huge";
  options.max_bytes = 10;
  auto page = kv.Scan(options);
  REQUIRE(page.ok());
  CHECK(page->items.size() == 1);
  options.max_bytes = 0;
  CHECK(absl::IsInvalidArgument(kv.Scan(options).status()));
}

TEST_CASE("KvStore: a cursor continues after a key of the maximum length", "[kv][scan]") {
  EngineFixture f;
  KvStore kv = f.Create("acme").kv();
  const size_t max_key = f.engine->options().max_key_bytes;
  std::string a(max_key, 'a'), b(max_key, 'b');
  REQUIRE(kv.Put(a, "1").ok());
  REQUIRE(kv.Put(b, "2").ok());
  for (bool reverse : {false, true}) {
    ScanOptions options;
    options.reverse = reverse;
    options.cursor = KvStore::ScanCursorAfter(options, reverse ? b : a);
    auto page = kv.Scan(options);
    REQUIRE(page.ok());
    REQUIRE(page->items.size() == 1);
    CHECK(page->items[0].key == (reverse ? a : b));
  }
}

}  // namespace
}  // namespace tenancy
