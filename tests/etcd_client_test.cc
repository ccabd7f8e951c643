// The etcd v3 JSON-gateway client (lib/cluster/etcd_client.h) against a real
// etcd started by the test (tests/etcd_process.h).

#include "etcd_client.h"

#include <catch2/catch.hpp>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "cluster_testing.h"

namespace tenancy::internal {
namespace {

using testing::EtcdProcess;

std::unique_ptr<EtcdClient> Connect(const EtcdProcess& etcd) {
  auto client = EtcdClient::Create(etcd.url());
  REQUIRE(client.ok());
  return *std::move(client);
}

TEST_CASE("EtcdClient: put, range by key and prefix, delete", "[etcd]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  REQUIRE(etcd.running());
  auto client = Connect(etcd);
  const std::string binary("v\0\xff\n\"", 5);
  auto first = client->Put("/t/a", binary);
  REQUIRE(first.ok());
  auto second = client->Put("/t/b", "2");
  REQUIRE(second.ok());
  CHECK(*second == *first + 1);
  REQUIRE(client->Put("/u/c", "3").ok());

  auto one = client->Range("/t/a");
  REQUIRE(one.ok());
  REQUIRE(one->kvs.size() == 1);
  CHECK(one->kvs[0].value == binary);
  CHECK(one->kvs[0].mod_revision == *first);
  CHECK(one->kvs[0].create_revision == *first);
  CHECK(one->kvs[0].version == 1);
  auto all = client->Range("/t/", {.prefix = true});
  REQUIRE(all.ok());
  REQUIRE(all->kvs.size() == 2);
  CHECK(all->kvs[1].key == "/t/b");
  CHECK(all->revision == *second + 1);
  // An older revision still holds what was there then.
  auto then = client->Range("/t/", {.prefix = true, .revision = *first});
  REQUIRE(then.ok());
  CHECK(then->kvs.size() == 1);

  REQUIRE(client->Delete("/t/", /*prefix=*/true).ok());
  CHECK(client->Range("/t/", {.prefix = true})->kvs.empty());
  CHECK(client->Range("/u/c")->kvs.size() == 1);
  CHECK(client->Range("/missing")->kvs.empty());
}

TEST_CASE("EtcdClient: a transaction runs one branch, atomically", "[etcd]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  REQUIRE(etcd.running());
  auto client = Connect(etcd);
  // Create both keys only if the first does not exist.
  EtcdTxn create;
  create.compare.push_back(
      {"/k/a", EtcdCompare::Target::kCreateRevision, EtcdCompare::Result::kEqual, 0});
  create.success = {EtcdOp::Put("/k/a", "1"), EtcdOp::Put("/k/b", "1")};
  create.failure = {EtcdOp::Get("/k/a")};
  auto made = client->Txn(create);
  REQUIRE(made.ok());
  CHECK(made->succeeded);
  CHECK(made->ranges.empty());
  auto again = client->Txn(create);
  REQUIRE(again.ok());
  CHECK_FALSE(again->succeeded);
  REQUIRE(again->ranges.size() == 1);
  REQUIRE(again->ranges[0].kvs.size() == 1);
  CHECK(again->ranges[0].kvs[0].mod_revision == made->revision);
  // Compare-and-swap on the mod revision.
  EtcdTxn swap;
  swap.compare.push_back(
      {"/k/a", EtcdCompare::Target::kModRevision, EtcdCompare::Result::kEqual, made->revision});
  swap.success = {EtcdOp::Put("/k/a", "2")};
  auto swapped = client->Txn(swap);
  REQUIRE(swapped.ok());
  CHECK(swapped->succeeded);
  auto stale = client->Txn(swap);
  REQUIRE(stale.ok());
  CHECK_FALSE(stale->succeeded);
  CHECK(client->Range("/k/a")->kvs[0].value == "2");
  // Greater than: the key exists.
  EtcdTxn exists;
  exists.compare.push_back(
      {"/k/b", EtcdCompare::Target::kVersion, EtcdCompare::Result::kGreater, 0});
  exists.success = {EtcdOp::Delete("/k/b")};
  CHECK(client->Txn(exists)->succeeded);
  CHECK_FALSE(client->Txn(exists)->succeeded);
}

TEST_CASE("EtcdClient: a lease keeps its keys until revoked or expired", "[etcd]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  REQUIRE(etcd.running());
  auto client = Connect(etcd);
  auto lease = client->LeaseGrant(30);
  REQUIRE(lease.ok());
  REQUIRE(client->Put("/nodes/n1", "up", *lease).ok());
  CHECK(client->Range("/nodes/n1")->kvs[0].lease == *lease);
  CHECK(client->LeaseKeepAlive(*lease).ok());
  REQUIRE(client->LeaseRevoke(*lease).ok());
  CHECK(client->Range("/nodes/n1")->kvs.empty());
  CHECK(absl::IsNotFound(client->LeaseKeepAlive(*lease)));
  CHECK(absl::IsNotFound(client->LeaseRevoke(*lease)));
  CHECK(absl::IsInvalidArgument(client->LeaseGrant(0).status()));
  // A key put on a lease that does not exist is refused, and not written.
  CHECK(absl::IsNotFound(client->Put("/nodes/n2", "up", *lease).status()));
  CHECK(client->Range("/nodes/n2")->kvs.empty());
}

// Runs a watch on a thread of its own and collects what it sees.
class Watcher {
 public:
  Watcher(const EtcdClient& client, std::string prefix, int64_t start) : watch_(client) {
    thread_ = std::thread([this, prefix, start] {
      absl::Status s = watch_.Run(
          prefix, start,
          [this](std::vector<EtcdEvent> events) {
            absl::MutexLock lock(&mu_);
            for (EtcdEvent& e : events) events_.push_back(std::move(e));
            changed_.SignalAll();
          },
          [this] {
            absl::MutexLock lock(&mu_);
            created_ = true;
            changed_.SignalAll();
          });
      absl::MutexLock lock(&mu_);
      result_ = s;
      done_ = true;
      changed_.SignalAll();
    });
  }
  ~Watcher() {
    watch_.Stop();
    thread_.join();
  }
  // Waits (up to 10 s) for `n` events; what there is then.
  std::vector<EtcdEvent> Events(size_t n) {
    absl::MutexLock lock(&mu_);
    WaitFor([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n || done_; });
    return events_;
  }
  void WaitCreated() {
    absl::MutexLock lock(&mu_);
    WaitFor([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return created_ || done_; });
  }
  // Waits (up to 10 s) for Run to return; its result.
  absl::Status Result() {
    absl::MutexLock lock(&mu_);
    WaitFor([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; });
    return done_ ? result_ : absl::DeadlineExceededError("still watching");
  }

 private:
  template <typename Fn>
  void WaitFor(Fn done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!done() && !changed_.WaitWithDeadline(&mu_, deadline)) {
    }
  }

  EtcdWatch watch_;
  absl::Mutex mu_;
  absl::CondVar changed_;
  std::vector<EtcdEvent> events_ ABSL_GUARDED_BY(mu_);
  bool created_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status result_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

TEST_CASE("EtcdWatch: events from a revision on, resumed without a gap", "[etcd]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  REQUIRE(etcd.running());
  auto client = Connect(etcd);
  auto first = client->Put("/w/a", "1");
  REQUIRE(first.ok());
  REQUIRE(client->Put("/other", "x").ok());
  int64_t last = 0;
  {
    // From a past revision: the history first, then what happens.
    Watcher w(*client, "/w/", *first);
    w.WaitCreated();
    REQUIRE(client->Delete("/w/a").ok());
    auto events = w.Events(2);
    REQUIRE(events.size() == 2);
    CHECK(events[0].type == EtcdEvent::Type::kPut);
    CHECK(events[0].kv.key == "/w/a");
    CHECK(events[0].kv.value == "1");
    CHECK(events[1].type == EtcdEvent::Type::kDelete);
    last = events[1].kv.mod_revision;
  }
  // Changes while no watch runs are seen by one resumed from last + 1.
  REQUIRE(client->Put("/w/b", "2").ok());
  REQUIRE(client->Put("/w/c", "3").ok());
  Watcher resumed(*client, "/w/", last + 1);
  auto events = resumed.Events(2);
  REQUIRE(events.size() == 2);
  CHECK(events[0].kv.key == "/w/b");
  CHECK(events[1].kv.key == "/w/c");
}

TEST_CASE("EtcdWatch: a compacted revision is OUT_OF_RANGE, a lost etcd UNAVAILABLE", "[etcd]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  REQUIRE(etcd.running());
  auto client = Connect(etcd);
  auto first = client->Put("/w/a", "1");
  REQUIRE(first.ok());
  auto second = client->Put("/w/a", "2");
  REQUIRE(second.ok());
  REQUIRE(client->Compact(*second).ok());
  {
    Watcher w(*client, "/w/", *first);
    CHECK(absl::IsOutOfRange(w.Result()));
  }
  Watcher w(*client, "/w/", *second + 1);
  w.WaitCreated();
  etcd.Stop();
  CHECK(absl::IsUnavailable(w.Result()));
}

TEST_CASE("EtcdWatch: Stop ends a watch at once, however far it has got", "[etcd]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  REQUIRE(etcd.running());
  auto client = Connect(etcd);
  // Stops that land before, while and after the stream's connection is
  // opened: each ends Run well before the watch's idle timeout would.
  for (int i = 0; i < 40; ++i) {
    const auto start = std::chrono::steady_clock::now();
    {
      Watcher w(*client, "/w/", 1);
      std::this_thread::sleep_for(std::chrono::microseconds(100 * (i % 20)));
    }  // ~Watcher: Stop, then join
    CHECK(std::chrono::steady_clock::now() - start < EtcdWatch::kWatchIdleTimeout / 2);
  }
}

TEST_CASE("EtcdClient: an etcd that cannot be reached is UNAVAILABLE, a bad URL refused",
          "[etcd]") {
  // Nothing listens on port 1 of the loopback.
  auto client = EtcdClient::Create("http://127.0.0.1:1");
  REQUIRE(client.ok());
  auto range = (*client)->Range("/x");
  CHECK(absl::IsUnavailable(range.status()));
  CHECK(range.status().message().find("http://127.0.0.1:1") != std::string::npos);
  CHECK(absl::IsUnavailable((*client)->Put("/x", "y").status()));
  EtcdWatch watch(**client);
  CHECK(absl::IsUnavailable(watch.Run("/x", 1, [](std::vector<EtcdEvent>) {})));
  for (const char* bad :
       {"127.0.0.1:2379", "https://127.0.0.1:2379", "http://127.0.0.1", "http://127.0.0.1:0",
        "http://127.0.0.1:99999", "http://h:1/path", "http://::1:2379", "http://:2379"}) {
    INFO(bad);
    CHECK(absl::IsInvalidArgument(EtcdClient::Create(bad).status()));
  }
  CHECK(ParseHttpUrl("http://[::1]:2379/")->host == "::1");
  CHECK(ParseHttpUrl("http://[::1]:2379/")->text == "http://[::1]:2379");
  CHECK(PrefixRangeEnd("/tenancy/") == "/tenancy0");
  CHECK(PrefixRangeEnd(std::string("a\xff", 2)) == "b");
}

}  // namespace
}  // namespace tenancy::internal
