// TenantRegistry: the public face of the TenantCatalog (tenant_catalog.h).

#include "tenancy/tenant_registry.h"

#include <optional>
#include <string>

#include "api_key.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenant_catalog.h"

namespace tenancy {

absl::StatusOr<TenantInfo> TenantRegistry::Create(const TenantSpec& spec) {
  TENANCY_ASSIGN_OR_RETURN(std::vector<TenantInfo> infos, catalog_->Create({spec}));
  return std::move(infos[0]);
}

absl::StatusOr<std::vector<TenantInfo>> TenantRegistry::CreateMany(
    const std::vector<TenantSpec>& specs) {
  return catalog_->Create(specs);
}

absl::StatusOr<TenantRegistry::CreatedWithKey> TenantRegistry::CreateWithKey(
    const TenantSpec& spec) {
  return catalog_->CreateWithKey(spec);
}

absl::StatusOr<TenantInfo> TenantRegistry::Update(const TenantSpec& spec) {
  return catalog_->Update(spec);
}

absl::StatusOr<TenantRegistry::UpsertResult> TenantRegistry::Upsert(const TenantSpec& spec) {
  return catalog_->Upsert(spec);
}

absl::StatusOr<TenantInfo> TenantRegistry::Get(std::string_view id) const {
  return catalog_->Get(id);
}

absl::StatusOr<TenantPage> TenantRegistry::List(const ListOptions& options) const {
  return catalog_->List(options);
}

size_t TenantRegistry::size() const { return catalog_->size(); }

absl::Status TenantRegistry::Disable(std::string_view id) {
  return catalog_->SetFlags(id, false, std::nullopt);
}

absl::Status TenantRegistry::Enable(std::string_view id) {
  return catalog_->SetFlags(id, true, std::nullopt);
}

absl::Status TenantRegistry::SetReadOnly(std::string_view id, bool read_only) {
  return catalog_->SetFlags(id, std::nullopt, read_only);
}

absl::Status TenantRegistry::Purge(std::string_view id) { return catalog_->Purge(id); }

absl::StatusOr<NewApiKey> TenantRegistry::CreateApiKey(std::string_view id) {
  return catalog_->CreateApiKey(id);
}

absl::StatusOr<ApiKeyInfo> TenantRegistry::ImportApiKey(std::string_view id,
                                                        std::string_view secret) {
  if (secret.empty() || secret.size() > 512) {
    return absl::InvalidArgumentError(
        internal::StrCat("tenant \"", id, "\": api key must be 1..512 bytes"));
  }
  internal::Sha256Digest digest = internal::Sha256(secret);
  std::string hex = internal::DigestToHex(digest);
  return catalog_->ImportApiKeyDigest(id, digest, "imp-" + hex.substr(0, 12),
                                      "sha256:" + hex.substr(0, 8));
}

absl::StatusOr<ApiKeyInfo> TenantRegistry::ImportApiKeyHash(std::string_view id,
                                                            std::string_view sha256_hex) {
  std::optional<internal::Sha256Digest> digest = internal::DigestFromHex(sha256_hex);
  if (!digest.has_value()) {
    return absl::InvalidArgumentError(
        internal::StrCat("tenant \"", id, "\": api key hash must be 64 lower-case hex characters"));
  }
  std::string hex(sha256_hex);
  return catalog_->ImportApiKeyDigest(id, *digest, "imp-" + hex.substr(0, 12),
                                      "sha256:" + hex.substr(0, 8));
}

absl::StatusOr<ApiKeyInfo> TenantRegistry::ImportApiKeyHash(std::string_view id,
                                                            std::string_view sha256_hex,
                                                            std::string_view key_id,
                                                            std::string_view prefix) {
  std::optional<internal::Sha256Digest> digest = internal::DigestFromHex(sha256_hex);
  if (!digest.has_value()) {
    return absl::InvalidArgumentError(
        internal::StrCat("tenant \"", id, "\": api key hash must be 64 lower-case hex characters"));
  }
  // Shown in listings and logs, and given back in URLs to revoke.
  auto printable = [](std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
      if (c <= 0x20 || c >= 0x7F) return false;
    }
    return true;
  };
  if (!printable(key_id) || !printable(prefix)) {
    return absl::InvalidArgumentError(internal::StrCat(
        "tenant \"", id, "\": key id and prefix must be 1 to 64 printable ASCII characters"));
  }
  return catalog_->ImportApiKeyDigest(id, *digest, std::string(key_id), std::string(prefix));
}

absl::StatusOr<ApiKeyOwner> TenantRegistry::FindApiKey(std::string_view sha256_hex) const {
  std::optional<internal::Sha256Digest> digest = internal::DigestFromHex(sha256_hex);
  if (!digest.has_value()) {
    return absl::InvalidArgumentError("api key hash must be 64 lower-case hex characters");
  }
  return catalog_->FindApiKeyOwner(*digest);
}

absl::Status TenantRegistry::RevokeApiKey(std::string_view id, std::string_view key_id) {
  return catalog_->RevokeApiKey(id, key_id);
}

absl::StatusOr<std::vector<ApiKeyInfo>> TenantRegistry::ListApiKeys(std::string_view id) const {
  return catalog_->ListApiKeys(id);
}

}  // namespace tenancy
