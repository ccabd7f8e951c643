#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine_fixture.h"

namespace tenancy {
namespace {

using testing::EngineFixture;

bool DirectoryContains(const std::filesystem::path& dir, const std::string& needle) {
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (data.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST_CASE("ApiKeys: a created key resolves to its tenant until revoked", "[api_key]") {
  EngineFixture f;
  f.Create("acme");
  f.Create("other");
  auto key = f.registry().CreateApiKey("acme");
  REQUIRE(key.ok());
  CHECK(key->secret.rfind(key->prefix, 0) == 0);
  // "<prefix>_" and 192 random bits in base64url; one SHA-256 block.
  CHECK(key->secret.size() == key->prefix.size() + 1 + 32);
  CHECK(key->secret.size() <= 55);
  auto resolved = f.engine->ResolveApiKey(key->secret);
  REQUIRE(resolved.ok());
  CHECK(resolved->id() == "acme");

  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey("tk_nope").status()));
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey("").status()));
  std::string tampered = key->secret;
  tampered.back() = tampered.back() == 'a' ? 'b' : 'a';
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(tampered).status()));

  REQUIRE(f.registry().RevokeApiKey("acme", key->key_id).ok());
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(key->secret).status()));
  CHECK(absl::IsNotFound(f.registry().RevokeApiKey("acme", key->key_id)));
  CHECK(absl::IsNotFound(f.registry().CreateApiKey("nobody").status()));
}

TEST_CASE("ApiKeys: rotation keeps two keys live, and both survive reopen", "[api_key]") {
  EngineFixture f;
  f.Create("acme");
  auto old_key = f.registry().CreateApiKey("acme");
  auto new_key = f.registry().CreateApiKey("acme");
  REQUIRE(old_key.ok());
  REQUIRE(new_key.ok());
  CHECK(old_key->key_id != new_key->key_id);
  f.Reopen();
  CHECK(f.engine->ResolveApiKey(old_key->secret)->id() == "acme");
  CHECK(f.engine->ResolveApiKey(new_key->secret)->id() == "acme");
  auto keys = f.registry().ListApiKeys("acme");
  REQUIRE(keys.ok());
  CHECK(keys->size() == 2);
  REQUIRE(f.registry().RevokeApiKey("acme", old_key->key_id).ok());
  f.Reopen();
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(old_key->secret).status()));
  CHECK(f.engine->ResolveApiKey(new_key->secret)->id() == "acme");
}

TEST_CASE("ApiKeys: imported keys work by plaintext or hash, and owners are exclusive",
          "[api_key]") {
  EngineFixture f;
  f.Create("acme");
  f.Create("other");
  REQUIRE(f.registry().ImportApiKey("acme", "tk_file_key_1").ok());
  REQUIRE(f.registry().ImportApiKey("acme", "tk_file_key_1").ok());  // idempotent
  CHECK(absl::IsAlreadyExists(f.registry().ImportApiKey("other", "tk_file_key_1").status()));
  // sha256("hello")
  REQUIRE(f.registry()
              .ImportApiKeyHash("other",
                                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
              .ok());
  CHECK(f.engine->ResolveApiKey("tk_file_key_1")->id() == "acme");
  CHECK(f.engine->ResolveApiKey("hello")->id() == "other");
  CHECK(absl::IsInvalidArgument(f.registry().ImportApiKeyHash("other", "xyz").status()));
  CHECK(absl::IsInvalidArgument(f.registry().ImportApiKey("other", "").status()));
  CHECK(f.registry().ListApiKeys("acme")->size() == 1);
}

TEST_CASE("ApiKeys: a key imported by hash keeps the key id and prefix given", "[api_key]") {
  EngineFixture f;
  f.Create("acme");
  f.Create("other");
  // sha256("hello")
  const std::string hash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  auto info =
      f.registry().ImportApiKeyHash("acme", hash, "0123456789abcdef", "tk_0123456789abcdef");
  REQUIRE(info.ok());
  CHECK(info->key_id == "0123456789abcdef");
  CHECK(info->prefix == "tk_0123456789abcdef");
  CHECK(f.engine->ResolveApiKey("hello")->id() == "acme");
  // Again: the same key, nothing added.
  REQUIRE(
      f.registry().ImportApiKeyHash("acme", hash, "0123456789abcdef", "tk_0123456789abcdef").ok());
  CHECK(f.registry().ListApiKeys("acme")->size() == 1);
  CHECK(absl::IsAlreadyExists(
      f.registry().ImportApiKeyHash("other", hash, "0123456789abcdef", "tk_x").status()));
  // Bad names change nothing.
  const std::string other_hash(64, 'a');
  CHECK(
      absl::IsInvalidArgument(f.registry().ImportApiKeyHash("acme", other_hash, "", "p").status()));
  CHECK(absl::IsInvalidArgument(
      f.registry().ImportApiKeyHash("acme", other_hash, "id with space", "p").status()));
  CHECK(absl::IsInvalidArgument(
      f.registry().ImportApiKeyHash("acme", other_hash, "id", std::string(65, 'p')).status()));
  CHECK(f.registry().ListApiKeys("acme")->size() == 1);
  REQUIRE(f.registry().RevokeApiKey("acme", "0123456789abcdef").ok());
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey("hello").status()));
}

TEST_CASE("ApiKeys: plaintext secrets never reach the data directory", "[api_key]") {
  EngineFixture f;
  f.Create("acme");
  std::vector<std::string> secrets;
  for (int i = 0; i < 3; ++i) secrets.push_back(f.registry().CreateApiKey("acme")->secret);
  REQUIRE(f.registry().ImportApiKey("acme", "tk_imported_secret_value").ok());
  secrets.push_back("tk_imported_secret_value");
  REQUIRE(f.engine->Flush().ok());
  f.engine.reset();  // close: WAL, SSTs, MANIFEST, LOG all written
  for (const std::string& secret : secrets) {
    INFO(secret.substr(0, 8));
    CHECK_FALSE(DirectoryContains(f.dir.path(), secret));
    // The random part alone must not be there either.
    CHECK_FALSE(DirectoryContains(f.dir.path(), secret.substr(secret.size() - 20)));
  }
  for (const std::string& message : f.logger->Messages()) {
    for (const std::string& secret : secrets) {
      CHECK(message.find(secret) == std::string::npos);
    }
  }
}

TEST_CASE("ApiKeys: a purged tenant's keys stop resolving", "[api_key]") {
  EngineFixture f;
  f.Create("acme");
  auto key = f.registry().CreateApiKey("acme");
  REQUIRE(f.registry().Purge("acme").ok());
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(key->secret).status()));
  f.Reopen();
  CHECK(absl::IsUnauthenticated(f.engine->ResolveApiKey(key->secret).status()));
}

}  // namespace
}  // namespace tenancy
