// The tenants file at library level: parsing and strict validation with the
// place of each error, the registry diff, keys by hash, limits at the
// engine's limiter, restarts, and the watcher on a real file.

#include "tenancy/config_file.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine_fixture.h"
#include "tenancy/limiter.h"
#include "tenancy/metrics.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

namespace fs = std::filesystem;
using testing::EngineFixture;

// Sample keys of these tests (16..512 bytes, as the file requires).
constexpr char kWillKey[] = "tk_test_will_0123456789abcdef";
constexpr char kNotepadKey[] = "tk_test_notepad_0123456789abcdef";
constexpr char kOtherKey[] = "tk_test_other_0123456789abcdef";

// SHA-256 hex of `text`, computed by the library's own file parser: a file
// with the plaintext key yields the same digest as api_key_sha256 would.
std::string Sha256Hex(const std::string& plaintext) {
  auto config =
      ParseTenantsFile("{\"tenants\":[{\"id\":\"x\",\"api_key\":\"" + plaintext + "\"}]}");
  REQUIRE(config.ok());
  return config->tenants[0].api_key_sha256[0];
}

TenantSpec Spec(std::string id) {
  TenantSpec spec;
  spec.id = std::move(id);
  return spec;
}

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  REQUIRE(out.good());
}

// Writes `text` to a new file and renames it over `path`, as editors and
// configuration tools do.
void RenameOver(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp";
  WriteFile(tmp, text);
  fs::rename(tmp, path);
}

struct ConfigFixture : EngineFixture {
  fs::path file = dir.path() / "tenants.json";
  std::unique_ptr<ConfigFile> config;

  ConfigFileOptions Options(bool watch = false) const {
    ConfigFileOptions options;
    options.path = file.string();
    options.watch = watch;
    options.poll_interval = std::chrono::milliseconds(20);
    options.logger = logger;
    return options;
  }

  absl::Status Open(const std::string& text, bool watch = false) {
    WriteFile(file, text);
    auto opened = ConfigFile::Open(engine.get(), Options(watch));
    if (!opened.ok()) return opened.status();
    config = std::move(*opened);
    return absl::OkStatus();
  }

  // Writes `text` in place and reloads at once (as SIGHUP does).
  absl::Status Apply(const std::string& text) {
    WriteFile(file, text);
    return config->Reload();
  }

  TenantInfo Info(const std::string& id) {
    auto info = registry().Get(id);
    REQUIRE(info.ok());
    return *info;
  }

  // True once `predicate` holds, polling for up to `timeout`.
  template <typename Predicate>
  bool Eventually(Predicate predicate,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (predicate()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return predicate();
  }
};

const std::string kTwoTenants = R"({
  "tenants": [
    {"id": "will", "api_key": "tk_test_will_0123456789abcdef", "quota_mb": 1000},
    {"id": "notepad", "api_key_sha256": "SHA", "quota": {"storage_mb": 0.5},
     "limits": {"llm": 3}}
  ],
  "defaults": {"limits": {"llm": 30, "llm/student": 2, "llm/teacher": 10, "ocr": 5}},
  "global_limits": {"llm": 200},
  "reload_on_change": true
})";

std::string TwoTenants() {
  std::string text = kTwoTenants;
  text.replace(text.find("SHA"), 3, Sha256Hex(kNotepadKey));
  return text;
}

// ---------------------------------------------------------------------------
// The registry's part: keys by hash
// ---------------------------------------------------------------------------

TEST_CASE("Registry: FindApiKey names the tenant holding a key by its SHA-256",
          "[config][registry]") {
  EngineFixture f;
  REQUIRE(f.registry().Create(Spec("acme")).ok());
  auto imported = f.registry().ImportApiKeyHash("acme", Sha256Hex(kWillKey));
  REQUIRE(imported.ok());
  auto owner = f.registry().FindApiKey(Sha256Hex(kWillKey));
  REQUIRE(owner.ok());
  CHECK(owner->tenant_id == "acme");
  CHECK(owner->key.key_id == imported->key_id);
  CHECK(absl::IsNotFound(f.registry().FindApiKey(Sha256Hex(kOtherKey)).status()));
  CHECK(absl::IsInvalidArgument(f.registry().FindApiKey("abc").status()));
  CHECK(absl::IsInvalidArgument(f.registry().FindApiKey(std::string(64, 'A')).status()));
  REQUIRE(f.registry().RevokeApiKey("acme", imported->key_id).ok());
  CHECK(absl::IsNotFound(f.registry().FindApiKey(Sha256Hex(kWillKey)).status()));
  // A generated key is found by its hash too.
  auto generated = f.registry().CreateApiKey("acme");
  REQUIRE(generated.ok());
  owner = f.registry().FindApiKey(Sha256Hex(generated->secret));
  REQUIRE(owner.ok());
  CHECK(owner->key.key_id == generated->key_id);
  // Not once the tenant is being purged or gone.
  REQUIRE(f.registry().Purge("acme").ok());
  CHECK(absl::IsNotFound(f.registry().FindApiKey(Sha256Hex(generated->secret)).status()));
}

// ---------------------------------------------------------------------------
// Parsing and validation
// ---------------------------------------------------------------------------

TEST_CASE("ConfigFile: a valid file parses into specs, key hashes and limits", "[config]") {
  auto config = ParseTenantsFile(TwoTenants());
  REQUIRE(config.ok());
  REQUIRE(config->tenants.size() == 2);
  const TenantsFileEntry& will = config->tenants[0];
  CHECK(will.spec.id == "will");
  CHECK(will.spec.quota.storage_bytes == 1000ull << 20);
  REQUIRE(will.api_key_sha256.size() == 1);
  CHECK(will.api_key_sha256[0].size() == 64);
  CHECK(will.api_key_sha256[0].find("tk_") == std::string::npos);
  const TenantsFileEntry& notepad = config->tenants[1];
  CHECK(notepad.spec.quota.storage_bytes == 512 * 1024);
  CHECK(notepad.spec.limits == ConcurrencyLimits{{"llm", 3}});
  CHECK(notepad.api_key_sha256[0] == Sha256Hex(kNotepadKey));
  CHECK(config->default_limits ==
        ConcurrencyLimits{{"llm", 30}, {"llm/student", 2}, {"llm/teacher", 10}, {"ocr", 5}});
  CHECK(config->global_limits == ConcurrencyLimits{{"llm", 200}});
  CHECK(config->reload_on_change);
}

TEST_CASE("ConfigFile: the sample tenants file of the README is valid", "[config]") {
  std::ifstream in(TENANCY_SOURCE_DIR "/examples/tenants.json");
  REQUIRE(in.good());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto config = ParseTenantsFile(text);
  INFO(config.status());
  REQUIRE(config.ok());
  CHECK(config->default_limits ==
        ConcurrencyLimits{{"llm", 30}, {"llm/student", 2}, {"llm/teacher", 10}, {"ocr", 5}});
  CHECK(config->tenants.size() >= 2);
}

TEST_CASE("ConfigFile: a bad file is refused with the place of the error", "[config]") {
  struct Case {
    const char* what;
    std::string text;
    std::string place;      // expected in the message: the path
    std::string line = "";  // and, where given, the line
  };
  std::vector<Case> cases = {
      {"bad JSON", "{\n  \"tenants\": [\n    {\"id\": \"a\",}\n  ]\n}", "line 3"},
      {"not an object", "[]", "the file"},
      {"no tenants", "{}", "\"tenants\" is required"},
      {"bad id", "{\"tenants\": [\n {\"id\": \"a\"},\n {\"id\": \"Bad_Id\"}]}", "tenants[1].id"},
      {"missing id", "{\"tenants\": [{\"quota_mb\": 1}]}", "tenants[0]"},
      {"negative quota", "{\"tenants\": [{\"id\": \"a\",\n \"quota_mb\": -1}]}",
       "tenants[0].quota_mb"},
      {"negative nested quota", "{\"tenants\": [{\"id\": \"a\", \"quota\": {\"storage_mb\": -5}}]}",
       "tenants[0].quota.storage_mb"},
      {"fractional key count", "{\"tenants\": [{\"id\": \"a\", \"quota\": {\"max_keys\": 1.5}}]}",
       "tenants[0].quota.max_keys"},
      {"duplicate id", "{\"tenants\": [{\"id\": \"a\"},\n{\"id\": \"b\"},\n{\"id\": \"a\"}]}",
       "tenants[2].id"},
      {"unknown tenant field", "{\"tenants\": [{\"id\": \"a\",\n  \"quota_gb\": 1}]}",
       "tenants[0].quota_gb", "line 2"},
      {"unknown top-level field", "{\"tenants\": [], \"tenant\": []}", "tenant"},
      {"unknown quota field", "{\"tenants\": [{\"id\": \"a\", \"quota\": {\"storage_gb\": 1}}]}",
       "tenants[0].quota.storage_gb"},
      {"field given twice",
       "{\"tenants\": [{\"id\": \"a\", \"enabled\": true,\n\"enabled\": false}]}",
       "tenants[0].enabled", "line 2"},
      {"wrong type", "{\"tenants\": [{\"id\": \"a\", \"enabled\": \"yes\"}]}",
       "tenants[0].enabled"},
      {"short plaintext key", "{\"tenants\": [{\"id\": \"a\", \"api_key\": \"short\"}]}",
       "tenants[0].api_key"},
      {"bad key hash",
       "{\"tenants\": [{\"id\": \"a\", \"api_key_sha256\": [\"" + std::string(64, 'A') + "\"]}]}",
       "tenants[0].api_key_sha256[0]"},
      {"one key for two tenants",
       "{\"tenants\": [{\"id\": \"a\", \"api_key\": \"" + std::string(kWillKey) +
           "\"},\n{\"id\": \"b\", \"api_key_sha256\": \"" + Sha256Hex(kWillKey) + "\"}]}",
       "tenants[1].api_key_sha256"},
      {"bad limit class", "{\"tenants\": [], \"defaults\": {\"limits\": {\"LLM!\": 3}}}",
       "defaults.limits.LLM!"},
      {"negative limit", "{\"tenants\": [], \"global_limits\": {\"llm\": -1}}",
       "global_limits.llm"},
      {"bad placement", "{\"tenants\": [{\"id\": \"a\", \"placement\": \"own\"}]}",
       "tenants[0].placement"},
      {"reserved label", "{\"tenants\": [{\"id\": \"a\", \"labels\": {\"managed-by\": \"me\"}}]}",
       "tenants[0].labels.managed-by"},
      {"quota twice",
       "{\"tenants\": [{\"id\": \"a\", \"quota_mb\": 1, "
       "\"quota\": {\"storage_mb\": 2}}]}",
       "tenants[0].quota_mb"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    auto config = ParseTenantsFile(c.text);
    REQUIRE(absl::IsInvalidArgument(config.status()));
    INFO(config.status().message());
    CHECK(std::string(config.status().message()).find(c.place) != std::string::npos);
    CHECK(std::string(config.status().message()).find(c.line) != std::string::npos);
  }
}

TEST_CASE("ConfigFile: a refusal never shows a plaintext key", "[config]") {
  std::string secret = "tk_test_secret_0123456789abcdef";
  auto config = ParseTenantsFile("{\"tenants\": [{\"id\": \"a\", \"api_key\": \"" + secret +
                                 "\"}, {\"id\": \"b\", \"api_key\": \"" + secret + "\"}]}");
  REQUIRE(absl::IsInvalidArgument(config.status()));
  CHECK(std::string(config.status().message()).find(secret) == std::string::npos);
}

// ---------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------

TEST_CASE("ConfigFile: applying creates tenants whose keys authenticate", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  CHECK(f.config->state().version == 1);
  CHECK(f.config->state().tenants == 2);
  auto will = f.engine->ResolveApiKey(kWillKey);
  REQUIRE(will.ok());
  CHECK(will->id() == "will");
  auto notepad = f.engine->ResolveApiKey(kNotepadKey);
  REQUIRE(notepad.ok());
  CHECK(notepad->id() == "notepad");
  TenantInfo info = f.Info("notepad");
  CHECK(info.spec.labels.at(std::string(kManagedByLabel)) == kManagedByValue);
  CHECK(info.spec.quota.storage_bytes == 512 * 1024);
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(kOtherKey).status()));
}

TEST_CASE("ConfigFile: a quota change is live at the next write", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open("{\"tenants\": [{\"id\": \"acme\", \"quota\": {\"storage_bytes\": 100}}]}").ok());
  Tenant acme = *f.engine->GetTenant("acme");
  REQUIRE(acme.kv().Put("k", std::string(50, 'x')).ok());
  REQUIRE(f.Apply("{\"tenants\": [{\"id\": \"acme\", \"quota\": {\"storage_bytes\": 60}}]}").ok());
  absl::Status refused = acme.kv().Put("k2", std::string(50, 'x'));
  CHECK(GetErrorReason(refused) == ErrorReason::kStorageQuota);
  REQUIRE(
      f.Apply("{\"tenants\": [{\"id\": \"acme\", \"quota\": {\"storage_bytes\": 1000}}]}").ok());
  CHECK(acme.kv().Put("k2", std::string(50, 'x')).ok());
  CHECK(f.config->state().version == 3);
}

TEST_CASE("ConfigFile: a tenant removed from the file is disabled with its data kept", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  REQUIRE(f.engine->GetTenant("will")->kv().Put("k", "v").ok());
  REQUIRE(f.Apply("{\"tenants\": []}").ok());
  CHECK(f.Info("will").state == TenantState::kDisabled);
  // The key still names the tenant: callers learn it is disabled (403), not
  // that their key is unknown (401).
  auto resolved = f.engine->ResolveApiKey(kWillKey);
  REQUIRE(resolved.ok());
  CHECK(GetErrorReason(resolved->kv().Get("k").status()) == ErrorReason::kTenantDisabled);
  // Back in the file: enabled again, data intact.
  REQUIRE(f.Apply(TwoTenants()).ok());
  CHECK(f.Info("will").state == TenantState::kActive);
  auto value = f.engine->GetTenant("will")->kv().Get("k");
  REQUIRE(value.ok());
  CHECK(*value == "v");
}

TEST_CASE("ConfigFile: a broken file changes nothing and a fixed one applies after it",
          "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  std::string good = f.config->state().sha256;
  std::vector<std::string> broken = {
      "{\"tenants\": [",                                                     // bad JSON
      "{\"tenants\": [{\"id\": \"New_Tenant\"}]}",                           // bad id
      "{\"tenants\": [{\"id\": \"will\", \"quota_mb\": -1}]}",               // negative
      "{\"tenants\": [{\"id\": \"new\"}, {\"id\": \"new\"}]}",               // duplicate
      "{\"tenants\": [{\"id\": \"new\", \"quota_mb\": 1, \"colour\": 1}]}",  // unknown
  };
  uint64_t failures = 0;
  for (const std::string& text : broken) {
    INFO(text);
    CHECK(absl::IsInvalidArgument(f.Apply(text)));
    ConfigFileState state = f.config->state();
    CHECK(state.version == 1);
    CHECK(state.sha256 == good);
    CHECK(state.reload_failures == ++failures);
    CHECK(!state.last_result.ok());
    CHECK(f.registry().size() == 2);
    CHECK(f.Info("will").state == TenantState::kActive);
    CHECK(f.Info("will").spec.quota.storage_bytes == 1000ull << 20);
    CHECK(f.engine->ResolveApiKey(kWillKey).ok());
    CHECK(absl::IsNotFound(f.registry().Get("new").status()));
  }
  REQUIRE(f.Apply("{\"tenants\": [{\"id\": \"will\", \"quota_mb\": 7}, {\"id\": \"new\"}]}").ok());
  CHECK(f.config->state().version == 2);
  CHECK(f.config->state().last_result.ok());
  CHECK(f.Info("will").spec.quota.storage_bytes == 7ull << 20);
  CHECK(f.registry().Get("new").ok());
  CHECK(f.Info("notepad").state == TenantState::kDisabled);
}

TEST_CASE("ConfigFile: a file that fails at open is refused and applies nothing", "[config]") {
  ConfigFixture f;
  CHECK(absl::IsInvalidArgument(f.Open("{\"tenants\": [{\"id\": \"a\"}, {\"id\": \"a\"}]}")));
  CHECK(f.registry().size() == 0);
  ConfigFileOptions options = f.Options();
  options.path = (f.dir.path() / "missing.json").string();
  CHECK(absl::IsNotFound(ConfigFile::Open(f.engine.get(), options).status()));
}

TEST_CASE("ConfigFile: a key removed from or changed in the file stops working", "[config]") {
  ConfigFixture f;
  const std::string old_key = "tk_test_rotate_old_0123456789";
  const std::string new_key = "tk_test_rotate_new_0123456789";
  auto file = [](std::vector<std::string> keys) {
    std::string list;
    for (const std::string& k : keys) list += (list.empty() ? "\"" : ",\"") + k + "\"";
    return "{\"tenants\": [{\"id\": \"acme\", \"api_key\": [" + list + "]}]}";
  };
  REQUIRE(f.Open(file({old_key})).ok());
  CHECK(f.engine->ResolveApiKey(old_key).ok());
  // Rotation without downtime: both keys for a while, then the new one only.
  REQUIRE(f.Apply(file({old_key, new_key})).ok());
  CHECK(f.engine->ResolveApiKey(old_key).ok());
  CHECK(f.engine->ResolveApiKey(new_key).ok());
  REQUIRE(f.Apply(file({new_key})).ok());
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(old_key).status()));
  CHECK(f.engine->ResolveApiKey(new_key).ok());
  CHECK(f.Info("acme").keys.size() == 1);
  // No key at all in the file: no imported key left.
  REQUIRE(f.Apply("{\"tenants\": [{\"id\": \"acme\"}]}").ok());
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(new_key).status()));
}

TEST_CASE("ConfigFile: re-applying and restarting are idempotent", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  TenantInfo before = f.Info("notepad");
  REQUIRE(f.config->Reload().ok());
  REQUIRE(f.config->Reload().ok());
  CHECK(f.config->state().version == 3);
  f.config.reset();
  f.Reopen();
  REQUIRE(f.engine->ResolveApiKey(kNotepadKey).ok());  // persisted, by hash
  auto reopened = ConfigFile::Open(f.engine.get(), f.Options());
  REQUIRE(reopened.ok());
  TenantInfo after = f.Info("notepad");
  CHECK(after.number == before.number);
  // Nothing rewritten (records keep microseconds).
  CHECK(absl::ToUnixMicros(after.updated_at) == absl::ToUnixMicros(before.updated_at));
  CHECK(after.keys.size() == 1);
  CHECK(after.keys[0].key_id == before.keys[0].key_id);
  CHECK(f.registry().size() == 2);
}

TEST_CASE("ConfigFile: API-managed tenants are left alone", "[config]") {
  ConfigFixture f;
  TenantSpec spec;
  spec.id = "api-made";
  spec.quota.storage_bytes = 123;
  REQUIRE(f.registry().Create(spec).ok());
  auto key = f.registry().CreateApiKey("api-made");
  REQUIRE(key.ok());
  REQUIRE(f.Open(TwoTenants()).ok());
  REQUIRE(f.Apply("{\"tenants\": []}").ok());
  TenantInfo info = f.Info("api-made");
  CHECK(info.state == TenantState::kActive);
  CHECK(info.spec == spec);
  CHECK(f.engine->ResolveApiKey(key->secret).ok());
}

TEST_CASE("ConfigFile: the file wins over an admin change to a tenant it manages", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  TenantSpec changed = f.Info("will").spec;
  changed.quota.storage_bytes = 5;
  REQUIRE(f.registry().Update(changed).ok());
  REQUIRE(f.registry().Disable("notepad").ok());
  // An admin-made key on a file-managed tenant is not the file's to revoke.
  auto emergency = f.registry().CreateApiKey("will");
  REQUIRE(emergency.ok());
  size_t warnings = f.logger->Count(LogLevel::kWarning);
  REQUIRE(f.config->Reload().ok());
  CHECK(f.Info("will").spec.quota.storage_bytes == 1000ull << 20);
  CHECK(f.Info("notepad").state == TenantState::kActive);
  CHECK(f.logger->Count(LogLevel::kWarning) >= warnings + 2);
  CHECK(f.engine->ResolveApiKey(emergency->secret).ok());
}

TEST_CASE("ConfigFile: the file adopts an API-made tenant it lists", "[config]") {
  ConfigFixture f;
  REQUIRE(f.registry().Create(Spec("will")).ok());
  REQUIRE(f.Open(TwoTenants()).ok());
  TenantInfo info = f.Info("will");
  CHECK(info.spec.labels.count(std::string(kManagedByLabel)) == 1);
  CHECK(info.spec.quota.storage_bytes == 1000ull << 20);
  CHECK(f.engine->ResolveApiKey(kWillKey).ok());
}

TEST_CASE("ConfigFile: conflicts with the registry refuse the whole file", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());

  SECTION("a key held by a tenant the file does not manage") {
    REQUIRE(f.registry().Create(Spec("api-made")).ok());
    REQUIRE(f.registry().ImportApiKey("api-made", kOtherKey).ok());
    absl::Status s = f.Apply("{\"tenants\": [{\"id\": \"fresh\", \"api_key\": \"" +
                             std::string(kOtherKey) + "\"}]}");
    CHECK(absl::IsFailedPrecondition(s));
    CHECK(absl::IsNotFound(f.registry().Get("fresh").status()));
    CHECK(f.engine->ResolveApiKey(kOtherKey)->id() == "api-made");
  }
  SECTION("a placement change") {
    absl::Status s = f.Apply(
        "{\"tenants\": [{\"id\": \"will\", \"placement\": \"dedicated\"}, {\"id\": \"fresh\"}]}");
    CHECK(absl::IsFailedPrecondition(s));
    CHECK(absl::IsNotFound(f.registry().Get("fresh").status()));
    CHECK(f.Info("notepad").state == TenantState::kActive);
  }
  CHECK(f.config->state().version == 1);
  CHECK(f.config->state().reload_failures == 1);
}

TEST_CASE("ConfigFile: a key moves from one file-managed tenant to another in one edit",
          "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  REQUIRE(f.Apply("{\"tenants\": [{\"id\": \"notepad\", \"api_key\": \"" + std::string(kWillKey) +
                  "\"}]}")
              .ok());
  auto resolved = f.engine->ResolveApiKey(kWillKey);
  REQUIRE(resolved.ok());
  CHECK(resolved->id() == "notepad");
  CHECK(f.Info("will").state == TenantState::kDisabled);
}

TEST_CASE("ConfigFile: defaults and global limits reach the engine's limiter", "[config]") {
  ConfigFixture f;
  // What the engine had before the file: the file lays its numbers over them.
  Limiter& limiter = f.engine->limiter();
  REQUIRE(limiter.SetDefaultTenantLimits({{"requests", 32}, {"ocr", 1}}).ok());
  REQUIRE(limiter.SetGlobalLimits({{"requests", 100}}).ok());
  REQUIRE(f.Open(TwoTenants()).ok());
  CHECK(limiter.DefaultTenantLimits() ==
        ConcurrencyLimits{
            {"requests", 32}, {"llm", 30}, {"llm/student", 2}, {"llm/teacher", 10}, {"ocr", 5}});
  CHECK(limiter.GlobalLimits() == ConcurrencyLimits{{"requests", 100}, {"llm", 200}});

  // The seeded limits are in force for a tenant that names none.
  Tenant will = *f.engine->GetTenant("will");
  CHECK(will.EffectiveLimits().at("llm/student") == 2);
  auto student = limiter.Class("llm/student");
  REQUIRE(student.ok());
  auto first = will.TryAcquire(*student);
  auto second = will.TryAcquire(*student);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  auto third = will.TryAcquire(*student);
  CHECK(GetErrorReason(third.status()) == ErrorReason::kConcurrencyLimited);
  // notepad names its own llm limit.
  CHECK(f.engine->GetTenant("notepad")->EffectiveLimits().at("llm") == 3);

  // Classes the file stops naming go back to what the engine had.
  REQUIRE(f.Apply("{\"tenants\": [], \"defaults\": {\"limits\": {\"llm\": 4}}}").ok());
  CHECK(limiter.DefaultTenantLimits() ==
        ConcurrencyLimits{{"requests", 32}, {"llm", 4}, {"ocr", 1}});
  CHECK(limiter.GlobalLimits() == ConcurrencyLimits{{"requests", 100}});
}

// Every file under `dir`, read whole.
std::vector<std::pair<std::string, std::string>> ReadAllFiles(const fs::path& dir) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    files.emplace_back(entry.path().string(), std::string((std::istreambuf_iterator<char>(in)),
                                                          std::istreambuf_iterator<char>()));
  }
  return files;
}

TEST_CASE("ConfigFile: plaintext keys are never written to the data directory", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  REQUIRE(f.engine->Flush().ok());
  f.config.reset();
  f.engine.reset();  // closes the WAL and the LOG
  size_t files = 0;
  for (const auto& [path, bytes] : ReadAllFiles(f.dir.path() / "db")) {
    INFO(path);
    CHECK(bytes.find(kWillKey) == std::string::npos);
    CHECK(bytes.find("tk_test_will") == std::string::npos);
    ++files;
  }
  CHECK(files > 0);
  // The log has no key either.
  for (const std::string& line : f.logger->Messages()) {
    CHECK(line.find("tk_test_will") == std::string::npos);
  }
}

TEST_CASE("ConfigFile: the metrics show the version, time and failures in force", "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants()).ok());
  CHECK(absl::IsInvalidArgument(f.Apply("not json")));
  Metrics metrics(MetricsOptions{.logger = f.logger});
  CollectorHandle handle = metrics.AddCollector(
      [config = f.config.get()](MetricSink& sink) { config->CollectMetrics(sink); });
  std::string text = metrics.ExpositionText();
  CHECK(text.find("tenancy_config_version 1\n") != std::string::npos);
  CHECK(text.find("tenancy_config_reload_failures_total 1\n") != std::string::npos);
  CHECK(text.find("tenancy_config_last_reload_successful 0\n") != std::string::npos);
  const std::string applied = "\ntenancy_config_applied_timestamp_seconds ";
  size_t at = text.find(applied);
  REQUIRE(at != std::string::npos);
  double seconds = std::stod(text.substr(at + applied.size()));
  CHECK(std::abs(seconds -
                 absl::ToDoubleSeconds(f.config->state().applied_at - absl::UnixEpoch())) < 0.001);
  CHECK(text.find("tenancy_config_info{sha256=\"" + f.config->state().sha256 + "\"} 1") !=
        std::string::npos);
  handle.Remove();
}

// ---------------------------------------------------------------------------
// Watching
// ---------------------------------------------------------------------------

TEST_CASE("ConfigFile: the watcher sees in-place writes, rename-over and symlink swaps",
          "[config]") {
  ConfigFixture f;
  auto file_with = [](const std::string& id) {
    return "{\"tenants\": [{\"id\": \"" + id + "\"}]}";
  };
  auto present = [&f](const std::string& id) {
    auto info = f.registry().Get(id);
    return info.ok() && info->state == TenantState::kActive;
  };

  SECTION("in place and rename-over") {
    REQUIRE(f.Open(file_with("first"), /*watch=*/true).ok());
    WriteFile(f.file, file_with("second"));
    // The version moves once the whole apply is done (a tenant may be
    // created before another is disabled).
    CHECK(f.Eventually([&] { return f.config->state().version == 2; }));
    CHECK(present("second"));
    CHECK(!present("first"));
    RenameOver(f.file, file_with("third"));
    CHECK(f.Eventually([&] { return f.config->state().version == 3; }));
    CHECK(present("third"));
    CHECK(!present("second"));
  }
  SECTION("a Kubernetes ConfigMap volume: ..data re-pointed to a new directory") {
    fs::path volume = f.dir.path() / "volume";
    fs::create_directories(volume / "..v1");
    WriteFile(volume / "..v1" / "tenants.json", file_with("first"));
    fs::create_directory_symlink("..v1", volume / "..data");
    fs::create_symlink("..data/tenants.json", volume / "tenants.json");
    f.file = volume / "tenants.json";
    auto opened = ConfigFile::Open(f.engine.get(), f.Options(/*watch=*/true));
    REQUIRE(opened.ok());
    f.config = std::move(*opened);
    CHECK(present("first"));
    // The kubelet's swap: a new directory, a new symlink renamed over ..data.
    fs::create_directories(volume / "..v2");
    WriteFile(volume / "..v2" / "tenants.json", file_with("second"));
    fs::create_directory_symlink("..v2", volume / "..data_tmp");
    fs::rename(volume / "..data_tmp", volume / "..data");
    fs::remove_all(volume / "..v1");
    CHECK(f.Eventually([&] { return f.config->state().version == 2; }));
    CHECK(present("second"));
    CHECK(!present("first"));
  }
}

TEST_CASE("ConfigFile: the watcher keeps the config in force when the file goes or breaks",
          "[config]") {
  ConfigFixture f;
  REQUIRE(f.Open(TwoTenants(), /*watch=*/true).ok());
  fs::remove(f.file);
  RenameOver(f.file, "{\"tenants\": [{\"id\": \"x\", \"quota_mb\": -1}]}");
  CHECK(f.Eventually([&] { return f.config->state().reload_failures >= 1; }));
  CHECK(f.config->state().version == 1);
  CHECK(f.Info("will").state == TenantState::kActive);
  RenameOver(f.file, "{\"tenants\": [{\"id\": \"x\"}], \"reload_on_change\": false}");
  CHECK(f.Eventually([&] { return f.config->state().version == 2; }));
  CHECK(f.Info("will").state == TenantState::kDisabled);
  CHECK(!f.config->state().reload_on_change);
  // reload_on_change off: only Reload() applies.
  RenameOver(f.file, "{\"tenants\": [{\"id\": \"y\"}]}");
  REQUIRE(f.config->Reload().ok());
  CHECK(f.registry().Get("y").ok());
}

}  // namespace
}  // namespace tenancy
