// Tenant data lifecycle over HTTP on loopback: export (chunked) and import
// (streamed body), refusals of bad archives with nothing changed, backups
// with restore of one tenant, purge with an archive, and the lifecycle slot
// that keeps these from taking the server's workers.

#include <catch2/catch.hpp>
#include <map>
#include <thread>

#include "server_fixture.h"

namespace tenancy::testing {
namespace {

std::string Path(const std::string& tenant, const std::string& key) {
  return "/t/" + tenant + "/v1/kv/" + key;
}

void PutKeys(TestClient& c, const std::string& tenant, int n, const std::string& value) {
  for (int i = 0; i < n; ++i) {
    REQUIRE(
        c.Put(Path(tenant, "k" + std::to_string(i)), value + std::to_string(i), Admin()).status ==
        204);
  }
}

std::map<std::string, std::string> Keys(TestClient& c, const std::string& tenant, int n) {
  std::map<std::string, std::string> out;
  for (int i = 0; i < n; ++i) {
    Reply r = c.Get(Path(tenant, "k" + std::to_string(i)), Admin());
    out["k" + std::to_string(i)] = r.status == 200 ? r.body : "<" + std::to_string(r.status) + ">";
  }
  return out;
}

Reply Import(TestClient& c, const std::string& tenant, const std::string& archive,
             const std::string& mode = "create") {
  return c.Post("/admin/tenants/" + tenant + "/import?mode=" + mode, archive, Admin());
}

TEST_CASE("Lifecycle HTTP: a request whose tenant's data is replaced under it answers 503",
          "[server][lifecycle]") {
  ServerFixture f;
  TestClient c = f.Client();
  const std::string key = f.CreateTenant("acme");
  Reply exported = c.Get("/admin/tenants/acme/export", Admin());
  REQUIRE(exported.status == 200);
  // A claim waits for a job on the tenant's data as it is now...
  Reply waited;
  std::thread claim([&] {
    TestClient own = f.Client();
    waited = own.Post("/v1/jobs/claim?type=t&wait_s=20", "", Bearer(key));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // ...which an import replaces: the claim is told to come again, not that
  // the tenant is gone.
  REQUIRE(Import(c, "acme", exported.body, "replace").status == 200);
  claim.join();
  CHECK(waited.status == 503);
  CHECK(waited.Header("Retry-After") == "1");
  CHECK(waited.body.find("replaced while this request ran") != std::string::npos);
  // Coming again works; a key that is not there is still a 404.
  CHECK(c.Get("/v1/usage", Bearer(key)).status == 200);
  CHECK(c.Get("/v1/kv/missing", Bearer(key)).status == 404);
}

TEST_CASE("Lifecycle HTTP: export streams an archive that imports as an equal clone",
          "[server][lifecycle]") {
  ServerFixture f;
  TestClient c = f.Client();
  f.CreateTenant("src");
  PutKeys(c, "src", 300, std::string(500, 'v'));
  REQUIRE(c.Post("/t/src/v1/jobs", R"({"type":"mail","payload":"hi"})", Admin()).status == 201);

  Reply exported = c.Get("/admin/tenants/src/export", Admin());
  REQUIRE(exported.status == 200);
  CHECK(exported.Header("Transfer-Encoding") == "chunked");
  CHECK(exported.Header("Content-Type") == "application/octet-stream");
  CHECK(exported.body.substr(0, 8) == "TNCYARCH");

  Reply imported = Import(c, "copy", exported.body);
  REQUIRE(imported.status == 201);
  CHECK(imported.JsonString("tenant_id") == "copy");
  CHECK(imported.JsonNumber("keys") == 300);
  CHECK(imported.JsonNumber("jobs") == 1);
  std::string key = imported.JsonString("api_key");
  REQUIRE(key.rfind("tk_", 0) == 0);
  CHECK(Keys(c, "copy", 300) == Keys(c, "src", 300));
  // The new key reaches the clone only.
  Reply own = c.Get("/v1/kv/k1", Bearer(key));
  CHECK(own.status == 200);
  CHECK(c.Get("/v1/usage", Bearer(key)).JsonNumber("keys") == 300);
  Reply job = c.Post("/v1/jobs/claim", "", Bearer(key));
  CHECK(job.status == 200);
  CHECK(job.JsonString("payload") == "hi");

  // Create onto an existing id: 409; replace of an unknown one: 404.
  CHECK(Import(c, "copy", exported.body).status == 409);
  CHECK(Import(c, "nobody", exported.body, "replace").status == 404);
  CHECK(Import(c, "copy", exported.body, "merge").status == 400);
  CHECK(c.Get("/admin/tenants/ghost/export", Admin()).status == 404);
  // The admin key is required.
  CHECK(c.Get("/admin/tenants/src/export").status == 401);
  CHECK(c.Post("/admin/tenants/x/import", exported.body).status == 401);

  // Replace under its own id: the source goes back to the exported state.
  REQUIRE(c.Put(Path("src", "k0"), "changed", Admin()).status == 204);
  REQUIRE(c.Put(Path("src", "extra"), "x", Admin()).status == 204);
  Reply replaced = Import(c, "src", exported.body, "replace");
  REQUIRE(replaced.status == 200);
  CHECK(replaced.Json("api_key") == std::nullopt);
  CHECK(c.Get(Path("src", "k0"), Admin()).body == std::string(500, 'v') + "0");
  CHECK(c.Get(Path("src", "extra"), Admin()).status == 404);
  Reply stats = c.Get("/admin/tenants/src/stats", Admin());
  CHECK(stats.JsonNumber("keys") == 300);
}

TEST_CASE("Lifecycle HTTP: corrupt, truncated and foreign archives are 400 and change nothing",
          "[server][lifecycle]") {
  ServerFixture f;
  TestClient c = f.Client();
  f.CreateTenant("src");
  PutKeys(c, "src", 200, "value");
  std::string archive = c.Get("/admin/tenants/src/export", Admin()).body;
  REQUIRE(archive.size() > 1000);
  auto before = Keys(c, "src", 200);
  std::string tenants = c.Get("/admin/tenants", Admin()).body;
  for (size_t offset : {size_t{3}, size_t{14}, archive.size() / 3, archive.size() / 2,
                        archive.size() - 6, archive.size() - 1}) {
    INFO("offset " << offset);
    std::string flipped = archive;
    flipped[offset] = static_cast<char>(flipped[offset] ^ 1);
    Reply r = Import(c, "src", flipped, "replace");
    CHECK(r.status == 400);
    CHECK(r.ErrorCode() == "invalid_argument");
    CHECK(Import(c, "other", flipped).status == 400);
    CHECK(Import(c, "other", archive.substr(0, offset)).status == 400);
  }
  CHECK(Import(c, "other", "this is not an archive").status == 400);
  CHECK(Import(c, "other", "").status == 400);
  std::string newer = archive;
  newer[8] = 9;
  Reply version = Import(c, "other", newer);
  CHECK(version.status == 400);
  CHECK(version.body.find("version 9") != std::string::npos);
  // The list first: reading the keys as the tenant counts its calls, which
  // the list shows.
  CHECK(c.Get("/admin/tenants", Admin()).body == tenants);
  CHECK(Keys(c, "src", 200) == before);
}

TEST_CASE("Lifecycle HTTP: backup, more writes, restore one tenant", "[server][lifecycle]") {
  ServerFixture f;
  TestClient c = f.Client();
  f.CreateTenant("alpha");
  f.CreateTenant("beta");
  PutKeys(c, "alpha", 50, "one");
  PutKeys(c, "beta", 50, "one");
  Reply backup = c.Post("/admin/backups", "", Admin());
  REQUIRE(backup.status == 201);
  int id = static_cast<int>(backup.JsonNumber("backup_id"));
  CHECK(id >= 1);
  CHECK(backup.JsonNumber("size_bytes") > 0);
  auto alpha_then = Keys(c, "alpha", 50);

  PutKeys(c, "alpha", 50, "two");
  PutKeys(c, "beta", 50, "two");
  auto beta_now = Keys(c, "beta", 50);
  Reply listed = c.Get("/admin/backups", Admin());
  REQUIRE(listed.status == 200);
  CHECK(listed.body.find("\"backup_id\":" + std::to_string(id)) != std::string::npos);

  Reply restored =
      c.Post("/admin/tenants/alpha/restore", "{\"backup_id\":" + std::to_string(id) + "}", Admin());
  REQUIRE(restored.status == 200);
  CHECK(restored.JsonNumber("keys") == 50);
  CHECK(Keys(c, "alpha", 50) == alpha_then);
  CHECK(Keys(c, "beta", 50) == beta_now);

  CHECK(c.Post("/admin/tenants/alpha/restore", "{\"backup_id\":999}", Admin()).status == 404);
  CHECK(c.Post("/admin/tenants/alpha/restore", "{}", Admin()).status == 400);
  CHECK(c.Post("/admin/tenants/alpha/restore", "{\"backup\":1}", Admin()).status == 400);
  CHECK(
      c.Post("/admin/tenants/gamma/restore", "{\"backup_id\":" + std::to_string(id) + "}", Admin())
          .status == 404);
  CHECK(c.Delete("/admin/backups/" + std::to_string(id), Admin()).status == 204);
  CHECK(c.Delete("/admin/backups/" + std::to_string(id), Admin()).status == 404);
  CHECK(c.Delete("/admin/backups/abc", Admin()).status == 400);
}

TEST_CASE("Lifecycle HTTP: purge with an archive, listed and restored", "[server][lifecycle]") {
  ServerFixture f;
  TestClient c = f.Client();
  f.CreateTenant("leaver");
  PutKeys(c, "leaver", 40, "data");
  auto before = Keys(c, "leaver", 40);
  CHECK(c.Post("/admin/tenants/leaver/purge?archive=maybe", "", Admin()).status == 400);
  CHECK(c.Post("/admin/tenants/leaver/purge?force=1", "", Admin()).status == 400);
  Reply purged = c.Post("/admin/tenants/leaver/purge?archive=true", "", Admin());
  REQUIRE(purged.status == 200);
  std::string name = purged.JsonString("archive");
  CHECK(name.rfind("leaver-", 0) == 0);
  CHECK(c.Get("/admin/tenants/leaver", Admin()).status == 404);

  Reply archives = c.Get("/admin/archives", Admin());
  REQUIRE(archives.status == 200);
  CHECK(archives.body.find("\"name\":\"" + name + "\"") != std::string::npos);
  CHECK(archives.body.find("\"tenant_id\":\"leaver\"") != std::string::npos);

  Reply back = c.Post("/admin/archives/" + name + "/restore", "", Admin());
  REQUIRE(back.status == 201);
  CHECK(back.JsonString("tenant_id") == "leaver");
  CHECK(Keys(c, "leaver", 40) == before);
  // Again under another id: a clone with a new key.
  Reply clone = c.Post("/admin/archives/" + name + "/restore", R"({"tenant_id":"twin"})", Admin());
  REQUIRE(clone.status == 201);
  CHECK(clone.JsonString("api_key").rfind("tk_", 0) == 0);
  CHECK(c.Post("/admin/archives/" + name + "/restore", "", Admin()).status == 409);
  CHECK(c.Post("/admin/archives/nope.tnca/restore", "", Admin()).status == 404);
  CHECK(c.Post("/admin/archives/..%2Fetc/restore", "", Admin()).status == 400);
}

TEST_CASE("Lifecycle HTTP: one lifecycle operation at a time, tenants still served",
          "[server][lifecycle]") {
  ServerFixture f;
  TestClient c = f.Client();
  f.CreateTenant("busy");
  REQUIRE(c.Put(Path("busy", "k"), "v", Admin()).status == 204);
  // An import whose body is slow to arrive holds the lifecycle slot.
  RawConnection slow(f.port());
  REQUIRE(slow.Send(std::string("POST /admin/tenants/slow/import HTTP/1.1\r\nHost: x\r\n") +
                    "X-Admin-Key: " + kAdminKey + "\r\nContent-Length: 100000\r\n\r\nTNCYARCH"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Reply second = c.Post("/admin/backups", "", Admin());
  CHECK(second.status == 429);
  CHECK(second.ErrorCode() == "concurrency_limited");
  CHECK(second.Header("Retry-After") == "1");
  // Tenant requests and other admin requests go on.
  CHECK(c.Get(Path("busy", "k"), Admin()).status == 200);
  CHECK(c.Get("/admin/tenants/busy", Admin()).status == 200);
  slow.ShutdownWrite();
  Reply refused = slow.ReadResponse();
  CHECK(refused.status == 400);
  // The slot is free again.
  Reply later;
  for (int i = 0; i < 100; ++i) {
    later = c.Post("/admin/backups", "", Admin());
    if (later.status != 429) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(later.status == 201);
  CHECK(c.Get("/admin/tenants/slow", Admin()).status == 404);
}

}  // namespace
}  // namespace tenancy::testing
