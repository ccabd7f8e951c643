// tenancyd --adopt-existing-data: started on a plain RocksDB directory, the
// server serves its keys under the tenant named.

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "plain_rocksdb.h"
#include "server_fixture.h"
#include "tenancyd_process.h"

namespace tenancy::testing {
namespace {

namespace fs = std::filesystem;

TEST_CASE("tenancyd --adopt-existing-data serves a plain RocksDB directory's keys as a tenant",
          "[adopt][process]") {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  const fs::path log = dir.path() / "tenancyd.log";
  const int n = 2000;
  REQUIRE(MakePlainDb(data.string(), n) > 0);
  {
    TenancydProcess d({"--data-dir", data.string(), "--listen", "127.0.0.1:0", "--threads", "2",
                       "--auth", "trusted", "--adopt-existing-data", "legacy"},
                      log);
    int port = d.WaitListening();
    INFO(ReadWhole(log));
    REQUIRE(port > 0);
    TestClient c(port);
    for (int i : {2, 3, 999, n - 1}) {
      INFO("key " << i);
      CHECK(c.Get("/v1/kv/" + PlainKey(i), {{"X-Tenant-ID", "legacy"}}).body == PlainValue(i));
      CHECK(c.Get("/t/legacy/v1/kv/" + PlainKey(i)).body == PlainValue(i));
    }
    CHECK(c.Get("/t/legacy/v1/kv/k9999999").status == 404);
    Reply tenant = c.Get("/admin/tenants/legacy", Admin());
    CHECK(tenant.status == 200);
    d.Signal(SIGTERM);
    CHECK(d.Wait() == 0);
  }
  const std::string first_log = ReadWhole(log);
  CHECK(first_log.find("done: 2000 keys moved") != std::string::npos);
  CHECK(RawKeyCount(data.string(), "default") == 0);

  // Started again with the flag: nothing to move, the keys still served.
  TenancydProcess d({"--data-dir", data.string(), "--listen", "127.0.0.1:0", "--threads", "2",
                     "--auth", "trusted", "--adopt-existing-data", "legacy"},
                    log);
  int port = d.WaitListening();
  INFO(ReadWhole(log));
  REQUIRE(port > 0);
  TestClient c(port);
  CHECK(c.Get("/t/legacy/v1/kv/" + PlainKey(42)).body == PlainValue(42));
  CHECK(ReadWhole(log).find("nothing to adopt") != std::string::npos);
}

}  // namespace
}  // namespace tenancy::testing
