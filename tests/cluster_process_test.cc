// A cluster as an operator runs it: a real etcd and three tenancyd processes
// on loopback (tenancyd --cluster-etcd --node-id --advertise), driven over
// HTTP. The registry's own behaviour is tests/cluster_directory_test.cc.

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "cluster_testing.h"
#include "etcd_client.h"
#include "etcd_fault_proxy.h"
#include "server_fixture.h"
#include "temp_dir.h"
#include "tenancyd_process.h"

namespace tenancy {
namespace {

using testing::Admin;
using testing::Bearer;
using testing::EtcdFaultProxy;
using testing::EtcdProcess;
using testing::Eventually;
using testing::kLiveWithin;
using testing::Reply;
using testing::TempDir;
using testing::TenancydProcess;
using testing::TestClient;

// One tenancyd node of the cluster, on a port of its own (kept across
// restarts, as its advertised URL is).
class Node {
 public:
  Node(std::string id, std::string etcd_url) : id_(std::move(id)), etcd_url_(std::move(etcd_url)) {}

  // Starts the node; false if it did not come up (its log is in the data
  // directory's parent).
  bool Start() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (port_ <= 0 || attempt > 0) port_ = EtcdProcess::FreePort();
      const std::string url = "http://127.0.0.1:" + std::to_string(port_);
      process_ = std::make_unique<TenancydProcess>(
          std::vector<std::string>{"--data-dir", (dir_.path() / "data").string(), "--listen",
                                   "127.0.0.1:" + std::to_string(port_), "--threads", "4",
                                   "--cluster-etcd", etcd_url_, "--node-id", id_, "--advertise",
                                   url},
          dir_.path() / "tenancyd.log");
      if (process_->WaitListening() == port_) return true;
      process_.reset();
      if (restarting_) return false;  // its port is its address: no other
    }
    return false;
  }
  // SIGTERM: it drains and leaves the cluster.
  void Stop() {
    process_->Signal(SIGTERM);
    CHECK(process_->Wait() == 0);
    process_.reset();
    restarting_ = true;
  }

  // SIGKILL: no drain, no goodbye; its lease in etcd runs out.
  void Kill() {
    process_->Signal(SIGKILL);
    process_->Wait();
    process_.reset();
    restarting_ = true;
  }

  TestClient Client() const { return TestClient(port_); }
  const std::string& id() const { return id_; }
  std::string Log() const { return testing::ReadWhole(dir_.path() / "tenancyd.log"); }

 private:
  const std::string id_;
  const std::string etcd_url_;
  TempDir dir_;
  int port_ = 0;
  bool restarting_ = false;
  std::unique_ptr<TenancydProcess> process_;
};

struct Cluster {
  EtcdProcess etcd;
  // With n1_behind_proxy, node n1 reaches etcd through it.
  std::unique_ptr<EtcdFaultProxy> proxy;
  std::vector<std::unique_ptr<Node>> nodes;

  // REQUIRES: etcd is available.
  explicit Cluster(bool n1_behind_proxy = false) {
    REQUIRE(etcd.running());
    if (n1_behind_proxy) {
      proxy = std::make_unique<EtcdFaultProxy>(etcd.port());
      REQUIRE(proxy->running());
    }
    for (const char* id : {"n1", "n2", "n3"}) {
      const bool proxied = proxy != nullptr && std::string_view(id) == "n1";
      nodes.push_back(std::make_unique<Node>(id, proxied ? proxy->url() : etcd.url()));
      REQUIRE(nodes.back()->Start());
    }
    // Every node sees the three.
    for (auto& node : nodes) {
      REQUIRE(Eventually(
          [&] {
            Reply r = node->Client().Get("/admin/cluster", Admin());
            return r.status == 200 && r.body.find("\"id\":\"n3\"") != std::string::npos &&
                   r.body.find("\"alive\":false") == std::string::npos;
          },
          std::chrono::seconds(10)));
    }
  }
  Node& operator[](size_t i) { return *nodes[i]; }

  // Creates `id` through node `via`; its API key.
  std::string CreateTenant(size_t via, const std::string& id) {
    Reply r =
        nodes[via]->Client().Post("/admin/tenants", "{\"tenant_id\":\"" + id + "\"}", Admin());
    REQUIRE(r.status == 201);
    return r.JsonString("api_key");
  }
  // The index of the node that owns `tenant`, from GET /admin/cluster.
  size_t OwnerOf(const std::string& tenant) {
    Reply r = nodes[0]->Client().Get("/admin/cluster", Admin());
    REQUIRE(r.status == 200);
    auto list = r.Json("nodes");
    REQUIRE(list.has_value());
    for (simdjson::dom::element node : list->get_array()) {
      for (simdjson::dom::element t : node["tenants"].get_array()) {
        if (std::string_view(t.get_string()) == tenant) {
          const std::string_view id = node["id"].get_string();
          for (size_t i = 0; i < nodes.size(); ++i) {
            if (nodes[i]->id() == id) return i;
          }
        }
      }
    }
    FAIL("tenant " << tenant << " has no owner in /admin/cluster");
    return 0;
  }
};

TEST_CASE("Cluster: a tenant made on node 1 is used through node 3 within 1 s", "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  Cluster c;
  const std::string key = c.CreateTenant(0, "acme");
  // A write through node 3, whichever node owns the tenant.
  CHECK(Eventually(
      [&] { return c[2].Client().Put("/v1/kv/greeting", "hello", Bearer(key)).status == 204; }));
  for (size_t i = 0; i < 3; ++i) {
    INFO("node " << c[i].id());
    Reply r = c[i].Client().Get("/v1/kv/greeting", Bearer(key));
    CHECK(r.status == 200);
    CHECK(r.body == "hello");
    // The owner's answer comes back as it is, errors too.
    Reply missing = c[i].Client().Get("/v1/kv/missing", Bearer(key));
    CHECK(missing.status == 404);
    CHECK(missing.ErrorCode() == "not_found");
    // A JSON body goes on with its Content-Type.
    Reply batch = c[i].Client().Post(
        "/v1/batch", R"({"ops":[{"op":"put","key":"n)" + std::to_string(i) + R"(","value":"v"}]})",
        Bearer(key));
    CHECK(batch.status == 200);
  }
  // Only the owner holds the data: the others' engines know the tenant
  // (its spec and keys) but not its keys-value entries.
  const size_t owner = c.OwnerOf("acme");
  Reply stats = c[owner].Client().Get("/admin/tenants/acme/stats", Admin());
  CHECK(stats.status == 200);
  CHECK(stats.JsonNumber("keys") == 4);
  Reply elsewhere = c[(owner + 1) % 3].Client().Get("/admin/tenants/acme/stats", Admin());
  CHECK(elsewhere.status == 409);
  CHECK(elsewhere.body.find("data is on node") != std::string::npos);
  CHECK(elsewhere.body.find(c[owner].id()) != std::string::npos);
  // Every node lists the tenant (the registry is everywhere).
  for (size_t i = 0; i < 3; ++i) {
    CHECK(c[i].Client().Get("/admin/tenants/acme", Admin()).status == 200);
  }
  // A wrong key is refused where it arrives.
  CHECK(c[1].Client().Get("/v1/kv/greeting", Bearer("tk_0000000000000000_nope")).status == 401);
}

TEST_CASE("Cluster: a key revoked on node 2 stops working on every node", "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  Cluster c;
  const std::string first = c.CreateTenant(0, "acme");
  Reply made = c[1].Client().Post("/admin/tenants/acme/keys", "", Admin());
  REQUIRE(made.status == 201);
  const std::string second = made.JsonString("api_key");
  const std::string first_id = first.substr(3, 16);
  REQUIRE(Eventually([&] {
    for (size_t i = 0; i < 3; ++i) {
      if (c[i].Client().Get("/v1/usage", Bearer(first)).status != 200) return false;
      if (c[i].Client().Get("/v1/usage", Bearer(second)).status != 200) return false;
    }
    return true;
  }));
  REQUIRE(c[1].Client().Delete("/admin/tenants/acme/keys/" + first_id, Admin()).status == 204);
  CHECK(c[1].Client().Get("/v1/usage", Bearer(first)).status == 401);
  CHECK(Eventually([&] {
    return c[0].Client().Get("/v1/usage", Bearer(first)).status == 401 &&
           c[2].Client().Get("/v1/usage", Bearer(first)).status == 401;
  }));
  for (size_t i = 0; i < 3; ++i) {
    CHECK(c[i].Client().Get("/v1/usage", Bearer(second)).status == 200);
  }
  // Disabled on node 3: 403 on every node; enabled on node 1: back.
  REQUIRE(c[2].Client().Delete("/admin/tenants/acme", Admin()).status == 200);
  CHECK(Eventually([&] {
    for (size_t i = 0; i < 3; ++i) {
      Reply r = c[i].Client().Get("/v1/usage", Bearer(second));
      if (r.status != 403 || r.ErrorCode() != "tenant_disabled") return false;
    }
    return true;
  }));
  REQUIRE(c[0].Client().Post("/admin/tenants/acme/enable", "", Admin()).status == 200);
  CHECK(Eventually([&] { return c[2].Client().Get("/v1/usage", Bearer(second)).status == 200; }));
  // A spec changed on one node (PUT) is live on the others.
  REQUIRE(c[1].Client()
              .Put("/admin/tenants/acme", R"({"quota_mb":1})", Admin(), "application/json")
              .status == 200);
  CHECK(Eventually([&] {
    Reply r = c[2].Client().Get("/admin/tenants/acme", Admin());
    return r.body.find("\"storage_mb\":1,") != std::string::npos;
  }));
  // Bad input changes nothing, in etcd either.
  CHECK(c[0].Client().Post("/admin/tenants", R"({"tenant_id":"acme"})", Admin()).status == 409);
  CHECK(c[0].Client().Post("/admin/tenants", R"({"tenant_id":"bad id"})", Admin()).status == 400);
  CHECK(c[0].Client().Delete("/admin/tenants/acme/keys/" + first_id, Admin()).status == 404);
  CHECK(c[0].Client().Post("/admin/tenants/acme/purge", "", Admin()).status == 501);
  CHECK(c[0].Client().Get("/admin/tenants/acme", Admin()).status == 200);
}

TEST_CASE("Cluster: forwarded requests need the cluster's secret and are never forwarded again",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  Cluster c;
  const std::string key = c.CreateTenant(0, "acme");
  const size_t owner = c.OwnerOf("acme");
  const size_t other = (owner + 1) % 3;
  REQUIRE(Eventually(
      [&] { return c[other].Client().Put("/v1/kv/k", "v", Bearer(key)).status == 204; }));
  auto etcd = internal::EtcdClient::Create(c.etcd.url());
  REQUIRE(etcd.ok());
  auto secret = (*etcd)->Range("/tenancy/cluster/secret");
  REQUIRE(secret.ok());
  REQUIRE(secret->kvs.size() == 1);
  const std::string right = secret->kvs[0].value;
  auto forwarded = [&](const std::string& secret_value) -> httplib::Headers {
    return {{"X-Tenancy-Forwarded-Tenant", "acme"}, {"X-Tenancy-Cluster-Secret", secret_value}};
  };
  // Without the secret, the header is nothing: 401 anywhere.
  CHECK(c[owner].Client().Get("/v1/kv/k", forwarded("wrong")).status == 401);
  CHECK(c[owner].Client().Get("/v1/kv/k", {{"X-Tenancy-Forwarded-Tenant", "acme"}}).status == 401);
  // With it, the owner serves the tenant named...
  Reply served = c[owner].Client().Get("/v1/kv/k", forwarded(right));
  CHECK(served.status == 200);
  CHECK(served.body == "v");
  // ...and another node does not send it on: no loop, whatever it believes.
  Reply refused = c[other].Client().Get("/v1/kv/k", forwarded(right));
  CHECK(refused.status == 503);
  CHECK(refused.Header("Retry-After") == "1");
  // A tenant the owner does not know yet (the forwarding node saw it made
  // first): retry, rather than a 404 that would be wrong a moment later.
  Reply lagging = c[owner].Client().Get(
      "/v1/kv/k", {{"X-Tenancy-Forwarded-Tenant", "nobody"}, {"X-Tenancy-Cluster-Secret", right}});
  CHECK(lagging.status == 503);
  CHECK(lagging.Header("Retry-After") == "1");
  // A marker that names another tenant than the path's prefix is refused.
  CHECK(c[owner].Client().Get("/t/other/v1/kv/k", forwarded(right)).status == 400);
}

TEST_CASE("Cluster: without etcd the nodes serve their tenants, registry changes answer 503",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  Cluster c;
  std::vector<std::string> keys;
  for (const char* id : {"t1", "t2", "t3"}) keys.push_back(c.CreateTenant(0, id));
  REQUIRE(Eventually([&] {
    return c[2].Client().Get("/v1/usage", Bearer(keys[0])).status == 200 &&
           c[2].Client().Get("/v1/usage", Bearer(keys[2])).status == 200;
  }));
  Reply metrics = c[1].Client().Get("/metrics", Admin());
  CHECK(metrics.body.find("tenancy_cluster_etcd_connected 1\n") != std::string::npos);
  CHECK(metrics.body.find("tenancy_cluster_nodes_alive 3\n") != std::string::npos);
  c.etcd.Stop();
  REQUIRE(Eventually(
      [&] {
        Reply r = c[1].Client().Get("/admin/cluster", Admin());
        return r.body.find("\"etcd_connected\":false") != std::string::npos;
      },
      std::chrono::seconds(5)));
  metrics = c[1].Client().Get("/metrics", Admin());
  CHECK(metrics.body.find("tenancy_cluster_etcd_connected 0\n") != std::string::npos);
  // Reads and writes, on the owner and forwarded through the others.
  for (size_t t = 0; t < keys.size(); ++t) {
    for (size_t i = 0; i < 3; ++i) {
      INFO("tenant t" << t + 1 << " through " << c[i].id());
      const std::string k = "/v1/kv/k" + std::to_string(i);
      CHECK(c[i].Client().Put(k, "v", Bearer(keys[t])).status == 204);
      CHECK(c[i].Client().Get(k, Bearer(keys[t])).body == "v");
    }
  }
  // Registry changes are refused, with a time to retry.
  Reply create = c[1].Client().Post("/admin/tenants", R"({"tenant_id":"later"})", Admin());
  CHECK(create.status == 503);
  CHECK(create.Header("Retry-After") == "1");
  CHECK(c[0].Client().Delete("/admin/tenants/t1", Admin()).status == 503);
  CHECK(c[2].Client().Post("/admin/tenants/t1/keys", "", Admin()).status == 503);
  CHECK(c[2].Client().Get("/v1/usage", Bearer(keys[0])).status == 200);

  // etcd returns: the nodes catch up, and a change is live everywhere again.
  c.etcd.Start();
  REQUIRE(c.etcd.running());
  std::string later;
  REQUIRE(Eventually(
      [&] {
        Reply r = c[1].Client().Post("/admin/tenants", R"({"tenant_id":"later"})", Admin());
        if (r.status == 201) later = r.JsonString("api_key");
        return r.status == 201;
      },
      std::chrono::seconds(10)));
  CHECK(Eventually([&] { return c[2].Client().Get("/v1/usage", Bearer(later)).status == 200; }));
  CHECK(Eventually([&] { return c[0].Client().Get("/v1/usage", Bearer(later)).status == 200; }));
  REQUIRE(c[0].Client().Delete("/admin/tenants/t1", Admin()).status == 200);
  CHECK(Eventually([&] { return c[2].Client().Get("/v1/usage", Bearer(keys[0])).status == 403; }));
}

TEST_CASE("Cluster: a stopped node's tenants answer 503 elsewhere until it returns", "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  Cluster c;
  const std::string key = c.CreateTenant(0, "acme");
  const size_t owner = c.OwnerOf("acme");
  const size_t other = (owner + 1) % 3;
  REQUIRE(Eventually(
      [&] { return c[other].Client().Put("/v1/kv/k", "kept", Bearer(key)).status == 204; }));
  c[owner].Stop();
  CHECK(Eventually([&] {
    Reply r = c[other].Client().Get("/v1/kv/k", Bearer(key));
    return r.status == 503 && r.Header("Retry-After") == "5";
  }));
  Reply view = c[other].Client().Get("/admin/cluster", Admin());
  CHECK(view.body.find("\"alive\":false") != std::string::npos);
  REQUIRE(c[owner].Start());
  CHECK(Eventually(
      [&] {
        Reply r = c[other].Client().Get("/v1/kv/k", Bearer(key));
        return r.status == 200 && r.body == "kept";
      },
      std::chrono::seconds(5)));
}

// Writes through one node, each key once, remembering which were
// acknowledged (204), refused for the move (503 with Retry-After: nothing
// written) and left unknown (no answer: the node died under it).
class CountingWriter {
 public:
  CountingWriter(Node& via, std::string key) : via_(via), key_(std::move(key)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~CountingWriter() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Only once stopped.
  const std::vector<int>& acked() const { return acked_; }
  const std::vector<int>& unknown() const { return unknown_; }
  const std::vector<std::string>& unexpected() const { return unexpected_; }
  int refused() const { return refused_.load(); }
  int acked_so_far() const { return acked_count_.load(); }

  static std::string Key(int i) { return "/v1/kv/w" + std::to_string(i); }
  static std::string Value(int i) { return "value-" + std::to_string(i); }

  // How many acknowledged writes (every `step`-th from `first`) do not read
  // back as written through `node`. Only once stopped.
  size_t MissingThrough(Node& node, size_t first = 0, size_t step = 1) const {
    TestClient client = node.Client();
    size_t missing = 0;
    for (size_t j = first; j < acked_.size(); j += step) {
      Reply r = client.Get(Key(acked_[j]), Bearer(key_));
      missing += r.status != 200 || r.body != Value(acked_[j]);
    }
    return missing;
  }

 private:
  void Run() {
    auto client = std::make_unique<TestClient>(via_.Client());
    for (int i = 0; !stop_.load(); ++i) {
      Reply r = client->Put(Key(i), Value(i), Bearer(key_));
      if (r.status == 204) {
        acked_.push_back(i);
        acked_count_.fetch_add(1);
      } else if (r.status == 503 && !r.Header("Retry-After").empty()) {
        refused_.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } else if (r.status == 0) {
        unknown_.push_back(i);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        client = std::make_unique<TestClient>(via_.Client());
      } else {
        unexpected_.push_back(std::to_string(r.status) + " " + r.body);
      }
    }
  }

  Node& via_;
  const std::string key_;
  std::atomic<bool> stop_{false};
  std::atomic<int> refused_{0};
  std::atomic<int> acked_count_{0};
  std::vector<int> acked_;
  std::vector<int> unknown_;
  std::vector<std::string> unexpected_;
  std::thread thread_;
};

// The bytes of the tenant's data a node holds (its usage there).
double StoredBytes(Node& node, const std::string& tenant) {
  Reply r = node.Client().Get("/admin/tenants/" + tenant, Admin());
  auto usage = r.Json("usage");
  double bytes = -1;
  if (usage.has_value() && (*usage)["storage_used_bytes"].get_double().get(bytes)) return -1;
  return bytes;
}

// `count` keys "p/{i}" of `value_bytes` each, through `node`.
void Preload(Node& node, const std::string& key, int count, size_t value_bytes) {
  TestClient client = node.Client();
  const std::string value(value_bytes, 'x');
  for (int start = 0; start < count; start += 200) {
    std::string body = R"({"ops":[)";
    for (int i = start; i < std::min(count, start + 200); ++i) {
      if (i > start) body += ",";
      body += R"({"op":"put","key":"p/)" + std::to_string(i) + R"(","value":")" + value + R"("})";
    }
    body += "]}";
    REQUIRE(client.Post("/v1/batch", body, Bearer(key)).status == 200);
  }
}

// A cluster with tenant "acme" loaded on its owner `from`, a node to move
// it `to`, and the third node, `via`, which the test's client writes through.
struct MoveScene {
  Cluster c;
  std::string key;
  size_t from = 0, to = 0, via = 0;

  MoveScene(int keys, size_t value_bytes) {
    key = c.CreateTenant(0, "acme");
    from = c.OwnerOf("acme");
    to = (from + 1) % 3;
    via = (from + 2) % 3;
    REQUIRE(
        Eventually([&] { return c[via].Client().Get("/v1/usage", Bearer(key)).status == 200; }));
    Preload(c[from], key, keys, value_bytes);
  }
  // POST /admin/tenants/acme/move to node `node`, naming node `target`.
  Reply Move(size_t node, size_t target) {
    return c[node].Client().Post("/admin/tenants/acme/move",
                                 R"({"to":")" + c[target].id() + R"("})", Admin());
  }
};

TEST_CASE(
    "Cluster: a tenant moved while a client writes through another node loses no "
    "acknowledged write",
    "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  MoveScene scene(3000, 100);
  Cluster& c = scene.c;
  const std::string& key = scene.key;
  const size_t from = scene.from, to = scene.to, via = scene.via;

  CountingWriter writer(c[via], key);
  REQUIRE(Eventually([&] { return writer.acked_so_far() > 50; }, std::chrono::seconds(10)));
  // Sent to the target: forwarded to the owner, which runs it.
  Reply moved = scene.Move(to, to);
  REQUIRE(moved.status == 200);
  CHECK(moved.JsonString("from") == c[from].id());
  CHECK(moved.JsonString("to") == c[to].id());
  CHECK(moved.body.find("\"moved\":true") != std::string::npos);
  CHECK(moved.JsonNumber("keys") >= 3000);
  const int acked_at_move = writer.acked_so_far();
  // Writes go on, to the new owner.
  CHECK(Eventually([&] { return writer.acked_so_far() > acked_at_move + 50; },
                   std::chrono::seconds(10)));
  writer.Stop();
  CHECK(writer.unexpected().empty());
  for (const std::string& answer : writer.unexpected()) INFO(answer);
  CHECK(writer.unknown().empty());
  INFO("acknowledged " << writer.acked().size() << ", refused " << writer.refused());

  CHECK(c.OwnerOf("acme") == to);
  // Every acknowledged write is on the new owner, read through every node,
  // and nothing else was written.
  for (size_t n = 0; n < 3; ++n) CHECK(writer.MissingThrough(c[n], n, 3) == 0);
  Reply stats = c[to].Client().Get("/admin/tenants/acme/stats", Admin());
  REQUIRE(stats.status == 200);
  CHECK(stats.JsonNumber("keys") == 3000 + static_cast<double>(writer.acked().size()));
  // The old owner kept no copy, and no longer answers for the data.
  CHECK(c[from].Client().Get("/admin/tenants/acme/stats", Admin()).status == 409);
  CHECK(StoredBytes(c[from], "acme") == 0);

  // Bad input changes nothing.
  auto move = [&](size_t node, const std::string& body, const httplib::Headers& headers) {
    return c[node].Client().Post("/admin/tenants/acme/move", body, headers).status;
  };
  CHECK(move(via, R"({"to":"n9"})", Admin()) == 404);
  CHECK(move(via, R"({"to":"N 9"})", Admin()) == 400);
  CHECK(move(via, R"({})", Admin()) == 400);
  CHECK(move(via, R"({"to":"n1","extra":1})", Admin()) == 400);
  CHECK(move(via, R"({"to":"n1"})", {}) == 401);
  CHECK(c[via].Client().Post("/admin/tenants/nobody/move", R"({"to":"n1"})", Admin()).status ==
        404);
  // Already there: nothing to do.
  Reply same = scene.Move(from, to);
  CHECK(same.status == 200);
  CHECK(same.body.find("\"moved\":false") != std::string::npos);
  // Node to node only with the cluster's secret; never over the owner's data.
  CHECK(c[via].Client().Post("/cluster/tenants/acme/archive", "x", {}).status == 401);
  auto etcd = internal::EtcdClient::Create(c.etcd.url());
  REQUIRE(etcd.ok());
  const std::string secret = (*etcd)->Range("/tenancy/cluster/secret")->kvs.at(0).value;
  Reply onto_owner = c[to].Client().Post("/cluster/tenants/acme/archive", "not an archive",
                                         {{"X-Tenancy-Cluster-Secret", secret}});
  CHECK(onto_owner.status == 409);
  CHECK(c.OwnerOf("acme") == to);

  // And back, through the third node: the old owner's cleared copy is
  // replaced by the data.
  Reply back = scene.Move(via, from);
  REQUIRE(back.status == 200);
  CHECK(c.OwnerOf("acme") == from);
  Reply again = c[from].Client().Get("/admin/tenants/acme/stats", Admin());
  CHECK(again.JsonNumber("keys") == 3000 + static_cast<double>(writer.acked().size()));
  CHECK(c[via].Client().Get("/v1/kv/p/7", Bearer(key)).body == std::string(100, 'x'));
}

TEST_CASE("Cluster: a node killed during a move leaves the tenant on one owner with nothing lost",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  // Enough data that the move takes a while: the kill lands inside it.
  MoveScene scene(20000, 1000);
  Cluster& c = scene.c;
  const std::string& key = scene.key;
  const size_t from = scene.from, to = scene.to, via = scene.via;

  CountingWriter writer(c[via], key);
  REQUIRE(Eventually([&] { return writer.acked_so_far() > 20; }, std::chrono::seconds(10)));
  std::thread mover([&] { scene.Move(from, to); });
  // The fence is up once a write is refused: the owner dies mid-move.
  const bool fenced = Eventually([&] { return writer.refused() > 0; }, std::chrono::seconds(20));
  c[from].Kill();
  mover.join();
  REQUIRE(c[from].Start());
  // Served again, from one owner.
  REQUIRE(Eventually(
      [&] {
        Reply r = c[via].Client().Get("/v1/kv/p/1", Bearer(key));
        return r.status == 200;
      },
      std::chrono::seconds(20)));
  const int acked_after = writer.acked_so_far();
  CHECK(Eventually([&] { return writer.acked_so_far() > acked_after + 20; },
                   std::chrono::seconds(10)));
  writer.Stop();
  CHECK(fenced);
  CHECK(writer.unexpected().empty());
  for (const std::string& answer : writer.unexpected()) INFO(answer);

  const size_t owner = c.OwnerOf("acme");
  INFO("owner after the kill: " << c[owner].id() << "; acknowledged " << writer.acked().size()
                                << ", unknown " << writer.unknown().size());
  CHECK(writer.MissingThrough(c[via]) == 0);
  Reply stats = c[owner].Client().Get("/admin/tenants/acme/stats", Admin());
  REQUIRE(stats.status == 200);
  const double expected = 20000 + static_cast<double>(writer.acked().size());
  CHECK(stats.JsonNumber("keys") >= expected);
  CHECK(stats.JsonNumber("keys") <= expected + static_cast<double>(writer.unknown().size()));
  // The killed node, if the switch had happened, cleared its copy when it
  // joined again. (The target's copy of a move that did not switch is left
  // to the next move there: it is never served.)
  if (owner != from) {
    CHECK(StoredBytes(c[from], "acme") == 0);
  }
  CHECK(StoredBytes(c[via], "acme") == 0);

  // The other end of a kill after the switch: a node that joins holding data
  // of a tenant etcd places elsewhere clears that copy (made here by hand:
  // the owner stopped, the placement pointed away in etcd).
  const size_t elsewhere = (owner + 1) % 3;
  REQUIRE(StoredBytes(c[owner], "acme") > 0);
  c[owner].Stop();
  auto etcd = internal::EtcdClient::Create(c.etcd.url());
  REQUIRE(etcd.ok());
  REQUIRE(
      (*etcd)->Put("/tenancy/placement/acme", R"({"node":")" + c[elsewhere].id() + R"("})").ok());
  REQUIRE(c[owner].Start());
  CHECK(StoredBytes(c[owner], "acme") == 0);
  CHECK(c[owner].Log().find("cleared the stale copy of tenant \"acme\"") != std::string::npos);
}

TEST_CASE(
    "Cluster: a move whose placement switch was taken by etcd but its answer lost "
    "settles from etcd, one whose switch never reached etcd stays put",
    "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  Cluster c(/*n1_behind_proxy=*/true);
  // A fresh cluster places a tenant on the node with the fewest, the smaller
  // id first: n1, the node behind the proxy.
  const std::string key = c.CreateTenant(0, "acme");
  REQUIRE(c.OwnerOf("acme") == 0);
  REQUIRE(Eventually([&] { return c[2].Client().Get("/v1/usage", Bearer(key)).status == 200; }));
  Preload(c[0], key, 2000, 100);

  // Moves `tenant` from n1 to `to`, its placement switch meeting `fault`.
  auto move_meeting = [&](const std::string& tenant, const std::string& to,
                          EtcdFaultProxy::Fault fault) {
    c.proxy->Arm("/v3/kv/txn", absl::Base64Escape("/tenancy/placement/" + tenant), fault);
    Reply r = c[0].Client().Post("/admin/tenants/" + tenant + "/move", R"({"to":")" + to + R"("})",
                                 Admin());
    CHECK(c.proxy->fired());
    return r;
  };

  // The answer lost: the switch is committed, n1 does not hear it, reads the
  // placement again and finishes the move, its writes held all the while.
  CountingWriter writer(c[2], key);
  REQUIRE(Eventually([&] { return writer.acked_so_far() > 20; }, std::chrono::seconds(10)));
  Reply moved = move_meeting("acme", "n2", EtcdFaultProxy::Fault::kLoseAnswer);
  INFO("move answered " << moved.status << " " << moved.body);
  CHECK(moved.status == 200);
  CHECK(moved.body.find("\"moved\":true") != std::string::npos);
  CHECK(c[0].Log().find("the placement switch's outcome is unknown") != std::string::npos);
  CHECK(c.OwnerOf("acme") == 1);
  const int acked_at_move = writer.acked_so_far();
  CHECK(Eventually([&] { return writer.acked_so_far() > acked_at_move + 20; },
                   std::chrono::seconds(10)));
  writer.Stop();
  CHECK(writer.unexpected().empty());
  CHECK(writer.MissingThrough(c[2]) == 0);
  CHECK(c[1].Client().Get("/admin/tenants/acme/stats", Admin()).JsonNumber("keys") ==
        2000 + static_cast<double>(writer.acked().size()));
  CHECK(StoredBytes(c[0], "acme") == 0);

  // The request lost: etcd never saw the switch, n1 reads the placement
  // again, finds it unchanged, and the tenant serves on where it was.
  const std::string beta_key = c.CreateTenant(0, "beta");
  REQUIRE(c.OwnerOf("beta") == 0);  // n1 and n3 have none, n2 has acme
  REQUIRE(c[0].Client().Put("/v1/kv/before", "1", Bearer(beta_key)).status == 204);
  Reply kept = move_meeting("beta", "n3", EtcdFaultProxy::Fault::kLoseRequest);
  INFO("move answered " << kept.status << " " << kept.body);
  CHECK(kept.status == 503);
  CHECK(!kept.Header("Retry-After").empty());
  CHECK(kept.body.find("did not take") != std::string::npos);
  CHECK(c.OwnerOf("beta") == 0);
  CHECK(c[2].Client().Put("/v1/kv/after", "2", Bearer(beta_key)).status == 204);
  CHECK(c[0].Client().Get("/v1/kv/before", Bearer(beta_key)).body == "1");
  CHECK(c[1].Client().Get("/v1/kv/after", Bearer(beta_key)).body == "2");
}

TEST_CASE("Cluster: a move whose target dies leaves the tenant serving where it was", "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  MoveScene scene(20000, 1000);
  Cluster& c = scene.c;
  const std::string& key = scene.key;
  const size_t from = scene.from, to = scene.to, via = scene.via;

  CountingWriter writer(c[via], key);
  REQUIRE(Eventually([&] { return writer.acked_so_far() > 20; }, std::chrono::seconds(10)));
  Reply moved;
  std::thread mover([&] { moved = scene.Move(from, to); });
  const bool fenced = Eventually([&] { return writer.refused() > 0; }, std::chrono::seconds(20));
  c[to].Kill();
  mover.join();
  CHECK(fenced);
  const size_t owner = c.OwnerOf("acme");
  INFO("move answered " << moved.status << " " << moved.body);
  if (owner == from) {
    // The send failed: the move says so, and the tenant serves on, without
    // any node coming back.
    CHECK(moved.status == 503);
    const int acked = writer.acked_so_far();
    CHECK(Eventually([&] { return writer.acked_so_far() > acked + 20; }, std::chrono::seconds(10)));
  } else {
    // The target died after the data was durable there but before its lease
    // ended, and the switch found it alive: its tenants wait for it.
    CHECK(owner == to);
    REQUIRE(c[to].Start());
  }
  writer.Stop();
  CHECK(writer.unexpected().empty());
  CHECK(writer.MissingThrough(c[via]) == 0);
  CHECK(c[owner].Client().Get("/admin/tenants/acme/stats", Admin()).JsonNumber("keys") >=
        20000 + static_cast<double>(writer.acked().size()));
}

// A node's share of the cluster-wide limit of `cls`, as set on its limiter
// (GET /admin/cluster); -1 if none.
double GlobalLimitOn(Node& node, const std::string& cls) {
  Reply r = node.Client().Get("/admin/cluster", Admin());
  auto here = r.Json("global_limits_here");
  double limit = -1;
  if (!here.has_value() || (*here)[cls].get_double().get(limit)) return -1;
  return limit;
}

TEST_CASE("Cluster: global limits are split among the alive nodes, rebalanced when one stops",
          "[cluster]") {
  TENANCY_SKIP_WITHOUT_ETCD();
  Cluster c;
  Reply set = c[1].Client().Put("/admin/cluster/limits", R"({"global_limits":{"llm":100}})",
                                Admin(), "application/json");
  REQUIRE(set.status == 200);
  CHECK(set.body.find(R"("global_limits":{"llm":100})") != std::string::npos);
  CHECK(set.body.find(R"("global_limits_here":{"llm":33})") != std::string::npos);
  // Every node within a second: 34 + 33 + 33.
  CHECK(Eventually([&] {
    return GlobalLimitOn(c[0], "llm") == 34 && GlobalLimitOn(c[1], "llm") == 33 &&
           GlobalLimitOn(c[2], "llm") == 33;
  }));
  CHECK(c[0].Client()
            .Get("/metrics", Admin())
            .body.find("tenancy_cluster_global_limit_share{class=\"llm\"} 34\n") !=
        std::string::npos);
  c[2].Stop();
  CHECK(Eventually(
      [&] { return GlobalLimitOn(c[0], "llm") == 50 && GlobalLimitOn(c[1], "llm") == 50; }));
  // Back: split three ways again.
  REQUIRE(c[2].Start());
  CHECK(Eventually(
      [&] {
        return GlobalLimitOn(c[0], "llm") == 34 && GlobalLimitOn(c[1], "llm") == 33 &&
               GlobalLimitOn(c[2], "llm") == 33;
      },
      std::chrono::seconds(5)));
  Reply view = c[2].Client().Get("/admin/cluster", Admin());
  CHECK(view.body.find(R"("global_limits_here":{"llm":33})") != std::string::npos);
  // Bad input changes nothing.
  auto put = [&](const std::string& body) {
    return c[0].Client().Put("/admin/cluster/limits", body, Admin(), "application/json").status;
  };
  CHECK(put(R"({"global_limits":{"llm":-1}})") == 400);
  CHECK(put(R"({"global_limits":{"llm":1.5}})") == 400);
  CHECK(put(R"({"global_limits":{"bad name":1}})") == 400);
  CHECK(put(R"({"limits":{}})") == 400);
  CHECK(put("not json") == 400);
  CHECK(c[0].Client()
            .Put("/admin/cluster/limits", R"({"global_limits":{}})", {}, "application/json")
            .status == 401);
  CHECK(GlobalLimitOn(c[0], "llm") == 34);
}

TEST_CASE("Cluster: tenancyd refuses bad cluster flags and an etcd it cannot reach", "[cluster]") {
  TempDir dir;
  const std::string data = (dir.path() / "data").string();
  auto exit_status = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--data-dir", data, "--listen", "127.0.0.1:0"});
    TenancydProcess p(args, dir.path() / "log");
    return p.Wait();
  };
  const std::string etcd = "http://127.0.0.1:1";
  const std::string self = "http://127.0.0.1:2";
  CHECK(exit_status({"--cluster-etcd", etcd}) == 2);
  CHECK(exit_status({"--cluster-etcd", etcd, "--node-id", "n1"}) == 2);
  CHECK(exit_status({"--node-id", "n1", "--advertise", self}) == 2);
  CHECK(exit_status({"--cluster-etcd", "etcd:2379", "--node-id", "n1", "--advertise", self}) == 2);
  CHECK(exit_status({"--cluster-etcd", etcd, "--node-id", "N_1", "--advertise", self}) == 2);
  CHECK(exit_status({"--cluster-etcd", etcd, "--node-id", "n1", "--advertise", "n1:80"}) == 2);
  CHECK(exit_status({"--cluster-etcd", etcd, "--node-id", "n1", "--advertise", self, "--auth",
                     "trusted"}) == 2);
  // Nothing listens on port 1: the node cannot join, and says so.
  CHECK(exit_status({"--cluster-etcd", etcd, "--node-id", "n1", "--advertise", self}) == 1);
  CHECK(testing::ReadWhole(dir.path() / "log").find("cannot be reached") != std::string::npos);
}

}  // namespace
}  // namespace tenancy
