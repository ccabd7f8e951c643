// ConfigFile: the tenants file (server/README.md, "The tenants file"). A JSON
// file that declares tenants, their API keys, quotas and limits, and the
// engine's limit defaults; applied to an Engine at Open and re-applied,
// without a restart, whenever the file changes.
//
//   tenancy::ConfigFileOptions options;
//   options.path = "/etc/tenancy/tenants.json";
//   auto config = tenancy::ConfigFile::Open(engine.get(), options);
//   if (!config.ok()) ...;                   // refused: nothing was applied
//   ...
//   absl::Status s = (*config)->Reload();    // e.g. on SIGHUP
//
// The format:
//
//   {"tenants": [                            required (may be empty)
//      {"id": "acme",                        required; "tenant_id" is an alias
//       "api_key": "tk_..." | [...],         plaintext, 16..512 bytes
//       "api_key_sha256": "<hex>" | [...],   SHA-256 of a key, 64 lower-case hex
//       "quota_mb": 100,                     = quota.storage_mb
//       "quota": {"storage_mb" | "storage_bytes", "max_keys",
//                 "max_value_bytes", "requests_per_second", "burst",
//                 "max_queued_jobs", "cache_mb" | "cache_bytes"},
//       "limits": {"llm": 30, "llm/student": 2},
//       "placement": "shared" | "dedicated", "enabled": true,
//       "read_only": false, "labels": {"owner": "ops"}}],
//    "defaults": {"limits": {"llm": 30, ...}},  per-tenant limit defaults
//    "global_limits": {"llm": 200},             all tenants together
//    "reload_on_change": true}                  Default: true
//
// Every field but "tenants" and a tenant's "id" is optional; an absent field
// takes its TenantSpec default. "MB" is 2^20 bytes; fractions are allowed and
// rounded to the nearest byte. Counts and limits are integers; limits are in
// [0, 1e9]. Several keys per tenant (an array) allow rotation without downtime.
//
// Validation is strict and whole-file: the file is parsed and every field
// checked (ids are DNS labels, numbers are non-negative and in range, limit
// class names valid, no unknown field, no field given twice, no tenant id or
// key listed twice) and then checked against the registry (a tenant's
// placement cannot change; a key may not belong to a tenant the file does not
// manage) before anything is changed. A file that fails is refused whole:
// the reason is logged with its place (field path, and line and column), the
// failure is counted, and the configuration in force stays. A strict reader
// was chosen over a lenient one because a misspelt field ("quota_gb",
// "enable") silently ignored would leave a tenant with a limit the operator
// did not mean.
//
// Applying a file is a diff against the registry:
//   - a tenant in the file and not in the registry is created;
//   - a tenant whose spec differs is updated, live at once;
//   - a file-managed tenant no longer in the file is disabled (not purged:
//     its data and keys are kept, so its callers get 403, not 401);
//   - each tenant's keys from the file are imported (by their SHA-256 only; a
//     plaintext key is hashed as the file is read and never stored or
//     logged), and imported keys the file no longer lists are revoked;
//   - "defaults.limits" are laid over the per-tenant defaults the Limiter had
//     before the file (EngineOptions::limiter and what the host set since),
//     and "global_limits" over its global limits; a class the file stops
//     naming goes back to the value it had before the file named it.
// An apply is not atomic across tenants: one that fails after validation (a
// write error, a concurrent purge) leaves the tenants it reached changed, is
// logged and counted, and is tried again at the next change, Reload(), or
// after 30 poll intervals.
//
// File-managed and API-managed tenants. The file manages the tenants it
// lists; it marks them with the label kManagedByLabel = kManagedByValue
// ("managed-by": "tenants-file"), which is how it knows, also after a
// restart, which tenants left the file (the label is reserved: the file may
// not set it). Tenants created through TenantRegistry or the admin API carry
// no such label and are never touched by an apply, unless the file lists
// them: then the file adopts them. For a file-managed tenant the file wins:
// an admin change to its spec (quota, limits, enabled, ...) lasts until the
// next apply (a change of the file, Reload()/SIGHUP, or a restart), which puts
// the file's spec back and logs a warning. To take a tenant out of the file's
// hands, remove it from the file and replace its spec without the label
// (e.g. PUT /admin/tenants/{id}). Keys: the file owns the imported keys (key
// ids "imp-...") of the tenants it manages; keys made by
// TenantRegistry::CreateApiKey (POST /admin/tenants/{id}/keys) are left
// alone, so an operator can still hand out an emergency key.
//
// Watching. With options.watch and "reload_on_change" true, a thread polls
// the file every poll_interval: stat() of the path (which follows symlinks)
// compared by device, inode, size, modification and change times, and the
// content's SHA-256 when those moved (and every 30 polls regardless). That
// sees editors that rewrite in place, editors that write a new file and
// rename it over the old one, and Kubernetes ConfigMap volumes that swap a
// "..data" symlink to a new directory. A file that is missing or unreadable
// is logged once and the configuration in force stays (deleting the file
// does not delete tenants; write {"tenants": []} for that). With
// "reload_on_change" false, only Reload() applies changes.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization. Reloads (the watcher's and Reload()) are
// serialised.

#ifndef TENANCY_CONFIG_FILE_H_
#define TENANCY_CONFIG_FILE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/limiter.h"
#include "tenancy/logger.h"
#include "tenancy/metrics.h"
#include "tenancy/tenant.h"

namespace tenancy {

class Engine;

namespace internal {
class ConfigFileRep;
}  // namespace internal

// The label that marks a tenant as managed by a tenants file.
inline constexpr std::string_view kManagedByLabel = "managed-by";
inline constexpr std::string_view kManagedByValue = "tenants-file";

// One tenant of a parsed tenants file. Intentionally copyable.
struct TenantsFileEntry {
  // As the file says (without the managed-by label).
  TenantSpec spec;
  // The SHA-256 of each of its keys, in lower-case hex, in file order
  // ("api_key" entries hashed, then "api_key_sha256" entries).
  std::vector<std::string> api_key_sha256;

  friend bool operator==(const TenantsFileEntry&, const TenantsFileEntry&) = default;
};

// A parsed and validated tenants file. Holds no plaintext key.
// Intentionally copyable.
struct TenantsConfig {
  std::vector<TenantsFileEntry> tenants;
  // "defaults.limits": per-tenant concurrency defaults by class.
  ConcurrencyLimits default_limits;
  // "global_limits": concurrency of all tenants together by class.
  ConcurrencyLimits global_limits;
  bool reload_on_change = true;
};

// Parses and validates the text of a tenants file (see the file comment).
// Does not look at any registry.
// INVALID_ARGUMENT, with the field path and the line and column in the
// message, for anything the file comment does not allow.
absl::StatusOr<TenantsConfig> ParseTenantsFile(std::string_view text);

struct ConfigFileOptions {
  // Behavior

  // The tenants file. Required. Fixed after Open.
  std::string path;
  // Poll the file and apply changes (when the file says "reload_on_change").
  // Default: true. Fixed after Open.
  bool watch = true;
  // How often the watcher looks at the file. Default: 1 s, so a change is live
  // within about a second. Fixed after Open.
  std::chrono::milliseconds poll_interval = std::chrono::seconds(1);
  // Where reloads are reported. Default (nullptr): the engine's logger.
  std::shared_ptr<Logger> logger;

  // Limits

  // Larger files are refused. Default: 64 MiB. Fixed after Open.
  size_t max_file_bytes = size_t{64} << 20;
};

// The configuration in force and how the last reload went.
// Intentionally copyable.
struct ConfigFileState {
  // Successful applies since Open, the one in force being the latest; 1 after
  // Open. Exported as tenancy_config_version.
  uint64_t version = 0;
  // SHA-256 (lower-case hex) of the bytes of the file in force.
  std::string sha256;
  // When the configuration in force was applied.
  absl::Time applied_at = absl::InfinitePast();
  // Tenants the file in force lists.
  size_t tenants = 0;
  bool reload_on_change = true;
  // Reloads refused or failed since Open.
  uint64_t reload_failures = 0;
  // The outcome of the last reload attempt: OK, or why it was refused.
  absl::Status last_result;
};

class ConfigFile {
 public:
  // Reads, validates and applies options.path, then (if options.watch) starts
  // the watcher thread. Fails if the file cannot be read or is refused (then
  // nothing has changed), or if applying it fails: an operator should learn
  // at start that the file is broken, not when a tenant is missing.
  // REQUIRES: `engine` outlives the ConfigFile.
  // INVALID_ARGUMENT: bad options, or the file does not parse or validate.
  // NOT_FOUND / PERMISSION_DENIED / FAILED_PRECONDITION: the file cannot be
  // read, or conflicts with the registry. Otherwise the registry's error.
  static absl::StatusOr<std::unique_ptr<ConfigFile>> Open(Engine* engine,
                                                          ConfigFileOptions options);

  ConfigFile(const ConfigFile&) = delete;
  ConfigFile& operator=(const ConfigFile&) = delete;
  // Stops the watcher (waiting for a reload in progress) and joins it.
  ~ConfigFile();

  // Reads the file now and applies it, also when its content did not change
  // (so an admin change to a file-managed tenant is put back). Returns what
  // Open would; on error the configuration in force stays and the error is
  // logged and counted.
  absl::Status Reload();

  // The configuration in force. Cheap.
  ConfigFileState state() const;

  // Writes tenancy_config_version, tenancy_config_applied_timestamp_seconds,
  // tenancy_config_reload_failures_total, tenancy_config_last_reload_successful
  // and tenancy_config_info{sha256} into `sink`: pass it to
  // Metrics::AddCollector, and drop the handle before the ConfigFile.
  void CollectMetrics(MetricSink& sink) const;

 private:
  explicit ConfigFile(std::unique_ptr<internal::ConfigFileRep> rep);

  const std::unique_ptr<internal::ConfigFileRep> rep_;
};

}  // namespace tenancy

#endif  // TENANCY_CONFIG_FILE_H_
