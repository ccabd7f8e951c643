// TenantLifecycle: a tenant's data leaving and entering the engine. Export
// and import of archives (tenancy/archive.h), backups of the whole engine
// with restore of one tenant, and archives kept when a tenant is purged.
//
//   tenancy::TenantLifecycle& life = engine->lifecycle();
//   auto sink = tenancy::FileArchiveSink::Open("/tmp/acme.tnca");
//   auto summary = life.Export("acme", **sink);   // acme keeps serving
//   (*sink)->Close();
//   auto source = tenancy::FileArchiveSource::Open("/tmp/acme.tnca");
//   tenancy::ImportOptions import;
//   import.tenant_id = "acme-copy";
//   auto result = life.Import(**source, import);  // a clone, with a new key
//
// Import writes the archive's entries, rekeyed to a fresh tenant number,
// into SST files (rocksdb::SstFileWriter) beside the database, checks the
// whole archive, then ingests the files (IngestExternalFile, checksums
// verified first) into a key range nobody else writes, and only then makes
// the tenant point at the new range in one registry write. So:
//   - an archive found bad anywhere changes nothing;
//   - readers see the old data or the new, never a mix (replace);
//   - a crash before the registry write leaves no tenant and no data after
//     the next Open (the half-written range is deleted there); after it,
//     the import is complete (the old range is deleted there);
//   - usage after an import is what the import counted (a recount).
// A replace gives the tenant a new internal number: Tenant handles taken
// before it answer NOT_FOUND afterwards (take a new one; job workers of the
// tenant are to be restarted), its cache entries are dropped, its request
// counters and leased permits stay.
//
// Backups: rocksdb::BackupEngine over the whole database in
// `<backup_dir>/engine` (hot: flushed first, incremental: SST files shared
// between backups). Archives of purged tenants: `<backup_dir>/archives`.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization. Backup operations are serialised with each
// other; imports of the same id are refused while one runs (ABORTED).

#ifndef TENANCY_LIFECYCLE_H_
#define TENANCY_LIFECYCLE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/archive.h"
#include "tenancy/tenant.h"

namespace tenancy {

namespace internal {
struct EngineParts;
class LifecycleState;
class TenantSlot;
}  // namespace internal

// Holds one tenant's writes off for as long as it lives (or until Release):
// see TenantLifecycle::FenceWrites. Movable; an empty fence holds nothing.
class WriteFence {
 public:
  WriteFence() = default;
  WriteFence(WriteFence&& other) noexcept : slot_(std::move(other.slot_)) {}
  WriteFence& operator=(WriteFence&& other) noexcept;
  WriteFence(const WriteFence&) = delete;
  WriteFence& operator=(const WriteFence&) = delete;
  ~WriteFence() { Release(); }

  // Writes are accepted again. Idempotent.
  void Release();
  bool holding() const { return slot_ != nullptr; }

 private:
  friend class TenantLifecycle;
  explicit WriteFence(std::shared_ptr<internal::TenantSlot> slot) : slot_(std::move(slot)) {}
  std::shared_ptr<internal::TenantSlot> slot_;
};

enum class ImportMode {
  // A new tenant: ALREADY_EXISTS if the id exists in any state.
  kCreate,
  // An existing tenant's data (and, for its own archive, spec and keys) is
  // replaced in one step: NOT_FOUND if it does not exist.
  kReplace,
};

struct ImportOptions {
  // The tenant to load the archive as. Empty: the archive's own id.
  std::string tenant_id;
  ImportMode mode = ImportMode::kCreate;
};

// What an import did. Intentionally copyable.
struct ImportResult {
  std::string tenant_id;
  ArchiveSummary archive;
  // Usage of the tenant after the import (counted while loading).
  Usage usage;
  // Set when the archive's API keys were not carried over (imported under
  // another id, as a new tenant): the tenant's one new key.
  std::optional<NewApiKey> new_key;
};

// A backup of the whole engine. Intentionally copyable.
struct BackupInfo {
  uint32_t backup_id = 0;
  absl::Time created_at;
  uint64_t size_bytes = 0;  // files of this backup (some shared with others)
  uint32_t files = 0;
};

// An archive kept in the backup directory. Intentionally copyable.
struct ArchiveFileInfo {
  std::string name;  // file name, e.g. "acme-20261203T101500Z-3f2a.tnca"
  std::string tenant_id;
  absl::Time created_at;
  uint64_t size_bytes = 0;
};

class TenantLifecycle {
 public:
  TenantLifecycle(const TenantLifecycle&) = delete;
  TenantLifecycle& operator=(const TenantLifecycle&) = delete;

  // --- Archives ---

  // Writes tenant `id` (any state but deleting) to `sink` as it is at one
  // point in time while it keeps serving. NOT_FOUND for an unknown tenant;
  // the sink's error if it fails (the stream is then incomplete, and any
  // reader will refuse it).
  absl::StatusOr<ArchiveSummary> Export(std::string_view id, ArchiveSink& sink);

  // Loads an archive (see the file comment). INVALID_ARGUMENT for a bad
  // archive or id; ALREADY_EXISTS for kCreate onto an existing id or when
  // a carried API key belongs to another tenant; NOT_FOUND for kReplace of
  // an unknown tenant; RESOURCE_EXHAUSTED if the data would pass the
  // target's storage or key quota (kReplace under another id keeps the
  // target's spec). Nothing is changed on any error.
  absl::StatusOr<ImportResult> Import(ArchiveSource& source, const ImportOptions& options);

  // --- Moving a tenant to another engine ---
  //
  // The tenant's writes are held off while the fence lives: a write that
  // has begun to commit finishes before FenceWrites returns, and every later
  // one fails with UNAVAILABLE (retry after 1 s) having written nothing.
  // Reads go on. So an Export taken under the fence holds every write ever
  // acknowledged, and nothing is acknowledged here until the fence goes:
  //   auto fence = life.FenceWrites("acme");   // writes: 503 + Retry-After
  //   life.Export("acme", sink);               // complete
  //   ...load it elsewhere, switch the clients there...
  //   life.ClearData("acme");                  // then fence.Release()
  // One fence per tenant at a time: ABORTED while another holds it.
  // NOT_FOUND for an unknown tenant. The fence is of this tenant's current
  // data: an import that replaces the data (a new range) is not fenced.
  absl::StatusOr<WriteFence> FenceWrites(std::string_view id);

  // Empties the tenant's data (key-values, jobs) in one step, as an import
  // of nothing would, keeping its spec, keys and request counters: what a
  // node keeps of a tenant whose data moved to another. The old range is
  // deleted after (see the file comment). NOT_FOUND for an unknown tenant.
  absl::Status ClearData(std::string_view id);

  // --- Backups of the whole engine ---

  // A new backup (flushes memtables first; shares unchanged SST files with
  // earlier backups).
  absl::StatusOr<BackupInfo> CreateBackup();
  absl::StatusOr<std::vector<BackupInfo>> ListBackups();
  // NOT_FOUND for an unknown id.
  absl::Status DeleteBackup(uint32_t backup_id);
  // Checks every file of the backup against its recorded checksum.
  // NOT_FOUND for an unknown id, DATA_LOSS for a damaged backup.
  absl::Status VerifyBackup(uint32_t backup_id);
  // Puts tenant `id` back to its state in backup `backup_id`, replacing its
  // current data, spec and keys (creating it again if it was purged since);
  // other tenants are untouched. The backup is restored to a scratch
  // directory in the backup directory, read there, and the scratch is
  // removed, also after a failure. NOT_FOUND if the backup or the tenant in
  // it does not exist.
  absl::StatusOr<ImportResult> RestoreTenant(std::string_view id, uint32_t backup_id);

  // --- Archive on purge ---

  // Disables the tenant (no more writes), writes its archive to the
  // archives directory, then purges it. The tenant is left disabled (not
  // purged) if the archive cannot be written. Returns the archive's name.
  absl::StatusOr<std::string> ArchiveAndPurge(std::string_view id);
  absl::StatusOr<std::vector<ArchiveFileInfo>> ListArchives();
  // Loads a kept archive as a new tenant `tenant_id` (empty: its own id),
  // enabled (ArchiveAndPurge disabled it only to stop writes).
  // NOT_FOUND for an unknown name; INVALID_ARGUMENT for a malformed one.
  absl::StatusOr<ImportResult> RestoreArchive(std::string_view name, std::string_view tenant_id);

  // The directory of backups and archives (EngineOptions::backup_dir).
  const std::string& backup_dir() const;

  ~TenantLifecycle();

 private:
  friend class Engine;
  explicit TenantLifecycle(internal::EngineParts* parts);

  internal::EngineParts* const parts_;
  std::unique_ptr<internal::LifecycleState> state_;
};

}  // namespace tenancy

#endif  // TENANCY_LIFECYCLE_H_
