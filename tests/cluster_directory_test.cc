// The cluster's registry (lib/cluster/cluster_directory.h): two nodes, each
// an engine of its own with a ClusterDirectory, over a real etcd started by
// the test (tests/etcd_process.h).

#include "cluster_directory.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <thread>

#include "cluster_testing.h"
#include "engine_fixture.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

using testing::EngineFixture;
using testing::EtcdProcess;
using testing::Eventually;
using testing::kLiveWithin;

struct Node {
  EngineFixture fixture;
  std::unique_ptr<ClusterDirectory> directory;

  // REQUIRES (checked): etcd runs.
  Node(const EtcdProcess& etcd, std::string id) {
    REQUIRE(etcd.running());
    auto joined = ClusterDirectory::Join(fixture.engine.get(), Options(etcd, std::move(id)));
    REQUIRE(joined.ok());
    directory = *std::move(joined);
  }
  ~Node() { directory.reset(); }

  static ClusterOptions Options(const EtcdProcess& etcd, std::string id) {
    ClusterOptions options;
    options.etcd_url = etcd.url();
    options.node_id = id;
    options.advertise_url = "http://127.0.0.1:1" + std::to_string(id.size());
    options.lease_ttl = std::chrono::seconds(2);
    return options;
  }
  TenantRegistry& registry() { return fixture.registry(); }
  Engine& engine() { return *fixture.engine; }
};

TenantSpec Spec(std::string id) {
  TenantSpec spec;
  spec.id = std::move(id);
  return spec;
}

TEST_CASE("ClusterDirectory: a tenant made on one node is live on the other within 1 s",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  Node b(etcd, "bb");
  CHECK(a.directory->secret() == b.directory->secret());
  CHECK(a.directory->secret().size() == 64);

  auto created = a.directory->CreateTenant(Spec("acme"));
  REQUIRE(created.ok());
  // Read-your-writes on the node that made it.
  CHECK(a.engine().ResolveApiKey(created->key.secret)->id() == "acme");
  CHECK(a.registry().ListApiKeys("acme")->at(0).key_id == created->key.key_id);
  // The other node: spec, key (under the same key id) and placement.
  CHECK(Eventually([&] { return b.engine().ResolveApiKey(created->key.secret).ok(); }));
  CHECK(b.registry().ListApiKeys("acme")->at(0).key_id == created->key.key_id);
  const TenantOwner on_a = a.directory->OwnerOf("acme");
  const TenantOwner on_b = b.directory->OwnerOf("acme");
  CHECK(on_a.node_id == created->owner);
  CHECK(on_b.node_id == created->owner);
  CHECK((on_a.kind == TenantOwner::Kind::kSelf) == (created->owner == "a"));
  CHECK((on_b.kind == TenantOwner::Kind::kSelf) == (created->owner == "bb"));
  CHECK(a.directory->OwnerOf("nobody").kind == TenantOwner::Kind::kUnplaced);

  // Changed on b: live on a.
  TenantSpec bigger = Spec("acme");
  bigger.quota.storage_bytes = 1 << 20;
  auto put = b.directory->PutTenant(bigger);
  REQUIRE(put.ok());
  CHECK_FALSE(*put);
  CHECK(b.registry().Get("acme")->spec.quota.storage_bytes == 1 << 20);
  CHECK(Eventually([&] { return a.registry().Get("acme")->spec.quota.storage_bytes == 1 << 20; }));
  REQUIRE(b.directory->SetEnabled("acme", false).ok());
  CHECK(Eventually([&] { return a.registry().Get("acme")->state == TenantState::kDisabled; }));
  REQUIRE(a.directory->SetEnabled("acme", true).ok());
  CHECK(Eventually([&] { return b.registry().Get("acme")->state == TenantState::kActive; }));
}

TEST_CASE("ClusterDirectory: a key revoked on one node stops working on every node", "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  Node b(etcd, "bb");
  auto created = a.directory->CreateTenant(Spec("acme"));
  REQUIRE(created.ok());
  auto second = b.directory->CreateApiKey("acme");
  REQUIRE(second.ok());
  CHECK(Eventually([&] { return a.engine().ResolveApiKey(second->secret).ok(); }));
  REQUIRE(b.directory->RevokeApiKey("acme", created->key.key_id).ok());
  CHECK(absl::IsUnauthenticated(b.engine().ResolveApiKey(created->key.secret).status()));
  CHECK(Eventually([&] {
    return absl::IsUnauthenticated(a.engine().ResolveApiKey(created->key.secret).status());
  }));
  CHECK(a.engine().ResolveApiKey(second->secret).ok());
  // Unknown tenants and keys change nothing.
  CHECK(absl::IsNotFound(b.directory->RevokeApiKey("acme", created->key.key_id)));
  CHECK(absl::IsNotFound(b.directory->RevokeApiKey("nobody", "x")));
  CHECK(absl::IsNotFound(b.directory->CreateApiKey("nobody").status()));
  CHECK(absl::IsNotFound(b.directory->SetEnabled("nobody", false)));
}

TEST_CASE("ClusterDirectory: tenants go to the node with the fewest, bad input changes nothing",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  Node b(etcd, "bb");
  // Each node must see the other before placing.
  REQUIRE(Eventually([&] { return a.directory->View().nodes.size() == 2; }));
  std::map<std::string, int> per_node;
  for (std::string id : {"t1", "t2", "t3", "t4"}) {
    auto created = (id == "t2" ? b : a).directory->CreateTenant(Spec(id));
    REQUIRE(created.ok());
    ++per_node[created->owner];
  }
  CHECK(per_node["a"] == 2);
  CHECK(per_node["bb"] == 2);
  REQUIRE(Eventually([&] {
    const ClusterView v = b.directory->View();
    return v.nodes.size() == 2 && v.nodes[0].tenants.size() + v.nodes[1].tenants.size() == 4;
  }));
  const ClusterView view = b.directory->View();
  CHECK(view.self == "bb");
  CHECK(view.etcd_connected);
  REQUIRE(view.nodes.size() == 2);
  CHECK(view.nodes[0].id == "a");
  CHECK(view.nodes[0].alive);
  CHECK(view.nodes[0].advertise_url == "http://127.0.0.1:11");
  CHECK(view.nodes[0].tenants.size() + view.nodes[1].tenants.size() == 4);
  Metrics metrics;
  CollectorHandle collector =
      metrics.AddCollector([&](MetricSink& sink) { a.directory->CollectMetrics(sink); });
  const std::string text = metrics.ExpositionText();
  CHECK(text.find("tenancy_cluster_etcd_connected 1\n") != std::string::npos);
  CHECK(text.find("tenancy_cluster_nodes_alive 2\n") != std::string::npos);
  CHECK(text.find("tenancy_cluster_tenants_owned 2\n") != std::string::npos);
  CHECK(text.find("tenancy_cluster_registry_revision ") != std::string::npos);

  auto etcd_client = EtcdClient::Create(etcd.url());
  REQUIRE(etcd_client.ok());
  const int64_t before = (*etcd_client)->Range("/tenancy/", {.prefix = true})->revision;
  CHECK(absl::IsAlreadyExists(b.directory->CreateTenant(Spec("t1")).status()));
  TenantSpec bad = Spec("t5");
  bad.limits["no spaces allowed"] = 1;
  CHECK(absl::IsInvalidArgument(a.directory->CreateTenant(bad).status()));
  CHECK(absl::IsInvalidArgument(a.directory->PutTenant(bad).status()));
  TenantSpec moved = Spec("t1");
  moved.placement = Placement::kDedicated;
  CHECK(absl::IsFailedPrecondition(a.directory->PutTenant(moved).status()));
  // Nothing was written to etcd.
  CHECK((*etcd_client)->Range("/tenancy/", {.prefix = true})->revision == before);
  // PUT of a new id creates and places it.
  auto put = a.directory->PutTenant(Spec("t5"));
  REQUIRE(put.ok());
  CHECK(*put);
  CHECK(a.directory->OwnerOf("t5").kind != TenantOwner::Kind::kUnplaced);
}

TEST_CASE("ClusterDirectory: a node that leaves is not alive, its tenants are down", "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  auto b = std::make_unique<Node>(etcd, "bb");
  REQUIRE(b->directory->PutTenant(Spec("t1")).ok());  // on a (fewest, smaller id)
  REQUIRE(a.directory->PutTenant(Spec("t2")).ok());   // on bb
  REQUIRE(a.directory->OwnerOf("t2").kind == TenantOwner::Kind::kPeer);
  CHECK(a.directory->OwnerOf("t2").advertise_url == "http://127.0.0.1:12");
  // An alive node's id cannot be taken by another address.
  ClusterOptions twin = Node::Options(etcd, "bb");
  twin.advertise_url = "http://127.0.0.1:9";
  EngineFixture other;
  CHECK(absl::IsAlreadyExists(ClusterDirectory::Join(other.engine.get(), twin).status()));
  b.reset();  // revokes its lease
  CHECK(Eventually([&] { return a.directory->OwnerOf("t2").kind == TenantOwner::Kind::kDown; }));
  const ClusterView view = a.directory->View();
  REQUIRE(view.nodes.size() == 2);
  CHECK_FALSE(view.nodes[1].alive);
  CHECK(view.nodes[1].tenants == std::vector<std::string>{"t2"});
  // Once it is gone the id is free again, at any address.
  CHECK(ClusterDirectory::Join(other.engine.get(), twin).ok());
}

TEST_CASE("ClusterDirectory: a node whose lease ended registers again", "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  Node b(etcd, "bb");
  REQUIRE(a.directory->PutTenant(Spec("t1")).ok());  // on a
  REQUIRE(Eventually([&] { return b.directory->OwnerOf("t1").kind == TenantOwner::Kind::kPeer; }));
  // As if etcd had dropped it (a lease that ran out while etcd was away).
  auto client = EtcdClient::Create(etcd.url());
  REQUIRE(client.ok());
  auto node = (*client)->Range("/tenancy/nodes/a");
  REQUIRE(node.ok());
  REQUIRE(node->kvs.size() == 1);
  const int64_t ended = node->kvs[0].lease;
  REQUIRE((*client)->LeaseRevoke(ended).ok());
  // Within a third of its 2 s lease, it renews, finds the lease gone, and
  // registers again, on a new lease.
  CHECK(Eventually(
      [&] {
        auto again = (*client)->Range("/tenancy/nodes/a");
        return again.ok() && again->kvs.size() == 1 && again->kvs[0].lease != ended;
      },
      std::chrono::seconds(5)));
  CHECK(Eventually([&] { return b.directory->OwnerOf("t1").kind == TenantOwner::Kind::kPeer; }));
}

TEST_CASE(
    "ClusterDirectory: without etcd changes are UNAVAILABLE, and after it the copy catches up",
    "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  Node b(etcd, "bb");
  auto created = a.directory->CreateTenant(Spec("acme"));
  REQUIRE(created.ok());
  REQUIRE(Eventually([&] { return b.engine().ResolveApiKey(created->key.secret).ok(); }));

  etcd.Stop();
  absl::Status refused = a.directory->CreateTenant(Spec("later")).status();
  CHECK(absl::IsUnavailable(refused));
  CHECK(GetRetryAfter(refused).has_value());
  CHECK(absl::IsUnavailable(b.directory->SetEnabled("acme", false)));
  CHECK(absl::IsUnavailable(b.directory->CreateApiKey("acme").status()));
  CHECK(Eventually([&] { return !a.directory->View().etcd_connected; }, std::chrono::seconds(5)));
  // The copy stays: owner lookups and keys go on.
  CHECK(b.directory->OwnerOf("acme").node_id == created->owner);
  CHECK(b.engine().ResolveApiKey(created->key.secret).ok());

  etcd.Start();
  REQUIRE(etcd.running());
  // The watch comes back; a change made now reaches the other node.
  std::unique_ptr<ClusterDirectory::Created> later;
  REQUIRE(Eventually(
      [&] {
        auto made = a.directory->CreateTenant(Spec("later"));
        if (made.ok()) later = std::make_unique<ClusterDirectory::Created>(*std::move(made));
        return made.ok();
      },
      std::chrono::seconds(10)));
  CHECK(Eventually([&] { return b.engine().ResolveApiKey(later->key.secret).ok(); }));
  CHECK(Eventually([&] { return b.directory->View().etcd_connected; }));
}

TEST_CASE("ClusterDirectory: a node joining reads the registry, dropping keys etcd revoked",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  EngineFixture b_engine;
  std::string secret;
  std::string key_id;
  {
    auto b = ClusterDirectory::Join(b_engine.engine.get(), Node::Options(etcd, "bb"));
    REQUIRE(b.ok());
    auto created = a.directory->CreateTenant(Spec("acme"));
    REQUIRE(created.ok());
    secret = created->key.secret;
    key_id = created->key.key_id;
    REQUIRE(Eventually([&] { return b_engine.engine->ResolveApiKey(secret).ok(); }));
  }
  // Revoked while bb is away, and the history compacted: bb learns it from
  // its full read when it joins again.
  REQUIRE(a.directory->RevokeApiKey("acme", key_id).ok());
  auto etcd_client = EtcdClient::Create(etcd.url());
  REQUIRE(etcd_client.ok());
  auto now = (*etcd_client)->Range("/tenancy/", {.prefix = true});
  REQUIRE(now.ok());
  REQUIRE((*etcd_client)->Compact(now->revision).ok());
  CHECK(b_engine.engine->ResolveApiKey(secret).ok());  // still, locally
  auto b = ClusterDirectory::Join(b_engine.engine.get(), Node::Options(etcd, "bb"));
  REQUIRE(b.ok());
  CHECK(absl::IsUnauthenticated(b_engine.engine->ResolveApiKey(secret).status()));
}

TEST_CASE("ClusterDirectory: a placement switch is a compare-and-swap on its revision",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  Node b(etcd, "bb");
  REQUIRE(Eventually([&] { return a.directory->AdvertiseUrlOf("bb").has_value(); }));
  auto created = a.directory->CreateTenant(Spec("acme"));
  REQUIRE(created.ok());
  auto placed = a.directory->ReadPlacement("acme");
  REQUIRE(placed.ok());
  REQUIRE(placed->has_value());
  const ClusterDirectory::PlacementRecord before = **placed;
  CHECK(before.node == created->owner);
  CHECK(before.revision > 0);
  CHECK(a.directory->ReadPlacement("nobody")->has_value() == false);
  const std::string other = before.node == "a" ? "bb" : "a";
  // A node that is not alive is refused, and so is a stale revision.
  CHECK(*a.directory->SwitchPlacement("acme", before, "zz") == false);
  ClusterDirectory::PlacementRecord stale = before;
  stale.revision -= 1;
  CHECK(*a.directory->SwitchPlacement("acme", stale, other) == false);
  CHECK(a.directory->OwnerOf("acme").node_id == before.node);
  // The revision read: switched, applied here at once and on the other node
  // within a second; the revision it was read at is stale now.
  CHECK(*a.directory->SwitchPlacement("acme", before, other) == true);
  CHECK(a.directory->OwnerOf("acme").node_id == other);
  CHECK(Eventually([&] { return b.directory->OwnerOf("acme").node_id == other; }));
  CHECK(*b.directory->SwitchPlacement("acme", before, before.node) == false);
  CHECK((*a.directory->ReadPlacement("acme"))->node == other);
  // Tenants this node holds that are placed elsewhere.
  const std::vector<std::string> expected{"acme"};
  CHECK((other == "a" ? b : a).directory->PlacedElsewhere() == expected);
  CHECK((other == "a" ? a : b).directory->PlacedElsewhere().empty());
  // Without etcd: UNAVAILABLE with a time to retry, nothing switched.
  etcd.Stop();
  auto away = a.directory->SwitchPlacement("acme", before, "a");
  CHECK(absl::IsUnavailable(away.status()));
  CHECK(GetRetryAfter(away.status()).has_value());
  CHECK(absl::IsUnavailable(a.directory->ReadPlacement("acme").status()));
}

TEST_CASE("ClusterDirectory: global limits are split among the alive nodes and rebalanced",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  EtcdProcess etcd;
  Node a(etcd, "a");
  auto b = std::make_unique<Node>(etcd, "bb");
  REQUIRE(Eventually([&] { return a.directory->AdvertiseUrlOf("bb").has_value(); }));
  // The engine's own global limits of other classes are kept.
  REQUIRE(a.engine().limiter().SetGlobalLimits({{"ocr", 7}}).ok());
  REQUIRE(a.directory->SetGlobalLimits({{"llm", 11}, {"batch", 1}}).ok());
  // Applied on the node that set them when it returns; 6 + 5 = 11, 1 + 0 = 1.
  const ConcurrencyLimits on_a{{"batch", 1}, {"llm", 6}, {"ocr", 7}};
  CHECK(a.engine().limiter().GlobalLimits() == on_a);
  const ConcurrencyLimits on_b{{"batch", 0}, {"llm", 5}};
  CHECK(Eventually([&] { return b->engine().limiter().GlobalLimits() == on_b; }));
  CHECK(a.directory->View().global_limits == ConcurrencyLimits{{"batch", 1}, {"llm", 11}});
  CHECK(b->directory->View().global_limits_here == on_b);
  // A node leaves: the one left holds the whole limit.
  b.reset();
  const ConcurrencyLimits alone{{"batch", 1}, {"llm", 11}, {"ocr", 7}};
  CHECK(Eventually([&] { return a.engine().limiter().GlobalLimits() == alone; }));
  // A third joins: split again, between a and c.
  Node c(etcd, "c");
  CHECK(c.engine().limiter().GlobalLimits() == ConcurrencyLimits{{"batch", 0}, {"llm", 5}});
  CHECK(Eventually([&] { return a.engine().limiter().GlobalLimits() == on_a; }));
  // A class dropped from the cluster's limits is unlimited again; the
  // engine's own stay.
  REQUIRE(c.directory->SetGlobalLimits({{"llm", 4}}).ok());
  CHECK(Eventually([&] {
    return a.engine().limiter().GlobalLimits() == ConcurrencyLimits{{"llm", 2}, {"ocr", 7}};
  }));
  // Bad input changes nothing.
  CHECK(absl::IsInvalidArgument(a.directory->SetGlobalLimits({{"llm", -1}})));
  CHECK(absl::IsInvalidArgument(a.directory->SetGlobalLimits({{"bad name", 1}})));
  CHECK(c.engine().limiter().GlobalLimits() == ConcurrencyLimits{{"llm", 2}});
  // A malformed value written to etcd by hand is refused; the last good stay.
  auto raw = EtcdClient::Create(etcd.url());
  REQUIRE(raw.ok());
  REQUIRE((*raw)->Put("/tenancy/cluster/global_limits", R"({"llm":"many"})").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(c.engine().limiter().GlobalLimits() == ConcurrencyLimits{{"llm", 2}});
}

TEST_CASE("ClusterDirectory: bad options and an unreachable etcd are refused at Join",
          "[cluster]") {
  EngineFixture f;
  ClusterOptions options;
  options.etcd_url = "http://127.0.0.1:1";
  options.node_id = "n1";
  options.advertise_url = "http://127.0.0.1:8080";
  CHECK(absl::IsUnavailable(ClusterDirectory::Join(f.engine.get(), options).status()));
  for (auto bad : std::vector<std::function<void(ClusterOptions&)>>{
           [](ClusterOptions& o) { o.node_id = "Not_A_Label"; },
           [](ClusterOptions& o) { o.node_id = ""; },
           [](ClusterOptions& o) { o.advertise_url = "127.0.0.1:8080"; },
           [](ClusterOptions& o) { o.etcd_url = "etcd:2379"; },
           [](ClusterOptions& o) { o.lease_ttl = std::chrono::seconds(0); },
           [](ClusterOptions& o) { o.prefix = "/tenancy"; },
       }) {
    ClusterOptions o = options;
    bad(o);
    CHECK(absl::IsInvalidArgument(ClusterDirectory::Join(f.engine.get(), o).status()));
  }
}

}  // namespace
}  // namespace tenancy::internal
