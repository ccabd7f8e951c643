// TenantRegistry: create, read, update and retire tenants, and manage their
// API keys. Records live in the engine's meta column family; every change is
// durable when the call returns OK and live for the next call.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization. Calls that change one tenant are serialised.

#ifndef TENANCY_TENANT_REGISTRY_H_
#define TENANCY_TENANT_REGISTRY_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tenancy/tenant.h"

namespace tenancy {

class Engine;
namespace internal {
class TenantCatalog;
}  // namespace internal

struct ListOptions {
  // Tenants with id > start_after, in id order. Empty: from the first.
  std::string start_after;
  // Page size, in [1, 10000]. Default: 100.
  size_t limit = 100;
};

// Who holds an API key (TenantRegistry::FindApiKey). Intentionally copyable.
struct ApiKeyOwner {
  std::string tenant_id;
  ApiKeyInfo key;
};

struct TenantPage {
  std::vector<TenantInfo> tenants;
  // Pass as ListOptions::start_after for the next page; empty when done.
  std::string next_start_after;
};

class TenantRegistry {
 public:
  TenantRegistry(const TenantRegistry&) = delete;
  TenantRegistry& operator=(const TenantRegistry&) = delete;

  // Creates a tenant. Idempotent: creating a tenant that exists with an
  // identical spec returns its info and changes nothing.
  // INVALID_ARGUMENT: bad id or spec. ALREADY_EXISTS: the id exists with a
  // different spec, or is being purged.
  absl::StatusOr<TenantInfo> Create(const TenantSpec& spec);

  // Creates several tenants; dedicated ones get their column families in one
  // bulk call. All specs are validated first: on INVALID_ARGUMENT or
  // ALREADY_EXISTS nothing is created.
  absl::StatusOr<std::vector<TenantInfo>> CreateMany(const std::vector<TenantSpec>& specs);

  // Creates a new tenant together with a generated API key, atomically: the
  // tenant never exists without its key (both are one write). The secret is
  // returned here once. Not idempotent: ALREADY_EXISTS if the id exists in
  // any state. INVALID_ARGUMENT: bad id or spec.
  struct CreatedWithKey {
    TenantInfo info;
    NewApiKey key;
  };
  absl::StatusOr<CreatedWithKey> CreateWithKey(const TenantSpec& spec);

  // Replaces the spec of an existing tenant (quota, limits, flags, labels),
  // live at once. NOT_FOUND if absent; FAILED_PRECONDITION if the placement
  // would change or the tenant is being purged.
  absl::StatusOr<TenantInfo> Update(const TenantSpec& spec);

  // Create if absent, else Update. Returns the info and whether it was created.
  struct UpsertResult {
    TenantInfo info;
    bool created = false;
  };
  absl::StatusOr<UpsertResult> Upsert(const TenantSpec& spec);

  // NOT_FOUND if absent (or already purged).
  absl::StatusOr<TenantInfo> Get(std::string_view id) const;

  // One page of tenants in id order (including disabled and deleting ones).
  absl::StatusOr<TenantPage> List(const ListOptions& options) const;

  // Number of tenants (all states).
  size_t size() const;

  // State transitions. Each is idempotent: asking for the state a tenant is
  // already in succeeds and changes nothing. NOT_FOUND if absent;
  // FAILED_PRECONDITION while deleting.
  absl::Status Disable(std::string_view id);
  absl::Status Enable(std::string_view id);
  absl::Status SetReadOnly(std::string_view id, bool read_only);

  // Deletes the tenant and all of its data and reclaims the space (shared:
  // DeleteRange + DeleteFilesInRange + CompactRange over its key range;
  // dedicated: DropColumnFamily). Waits for calls in flight on the tenant to
  // finish; later calls through old handles get NOT_FOUND. The tenant's
  // number is never reused. NOT_FOUND if absent. Resumed at the next Open if
  // interrupted by a crash.
  absl::Status Purge(std::string_view id);

  // Makes a new API key for the tenant; the secret is returned once.
  // Several keys may be live at once (rotation). NOT_FOUND if absent.
  absl::StatusOr<NewApiKey> CreateApiKey(std::string_view id);

  // Registers a key the caller already has (e.g. from a tenants file), by its
  // plaintext (hashed here, never stored) or by its SHA-256 in lower-case hex.
  // Idempotent for the same tenant. ALREADY_EXISTS if another tenant owns it;
  // INVALID_ARGUMENT for an empty key or a malformed hash.
  absl::StatusOr<ApiKeyInfo> ImportApiKey(std::string_view id, std::string_view secret);
  absl::StatusOr<ApiKeyInfo> ImportApiKeyHash(std::string_view id, std::string_view sha256_hex);
  // The same under a key id and prefix the caller chose, for registries kept
  // elsewhere whose copies must name a key alike (a cluster's nodes, where a
  // key made on one node is revoked by its id on another). Idempotent for
  // the same tenant (the key keeps the id it has). INVALID_ARGUMENT also for
  // a key id or prefix that is empty, over 64 bytes or not printable ASCII.
  absl::StatusOr<ApiKeyInfo> ImportApiKeyHash(std::string_view id, std::string_view sha256_hex,
                                              std::string_view key_id, std::string_view prefix);

  // The tenant holding the key whose SHA-256 is `sha256_hex` (64 lower-case
  // hex characters) and the key's public info: lets a caller that manages
  // keys by hash (a tenants file) check a key before ImportApiKeyHash.
  // NOT_FOUND if no tenant holds it (or its tenant is being purged);
  // INVALID_ARGUMENT for a malformed hash.
  absl::StatusOr<ApiKeyOwner> FindApiKey(std::string_view sha256_hex) const;

  // Revokes one key, live at once. NOT_FOUND if the tenant or key is absent.
  absl::Status RevokeApiKey(std::string_view id, std::string_view key_id);

  // The tenant's keys (never secrets). NOT_FOUND if absent.
  absl::StatusOr<std::vector<ApiKeyInfo>> ListApiKeys(std::string_view id) const;

 private:
  friend class Engine;
  explicit TenantRegistry(internal::TenantCatalog* catalog) : catalog_(catalog) {}

  internal::TenantCatalog* const catalog_;
};

}  // namespace tenancy

#endif  // TENANCY_TENANT_REGISTRY_H_
