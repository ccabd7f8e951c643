// A tenant to an archive and back (the format: include/tenancy/archive.h).
//
// WriteTenantArchive reads any database with the engine's layout at one
// snapshot: the live one, or a restored backup opened read-only.
// ImportTenantArchive loads an archive into the live engine through SST files
// and ingestion (see include/tenancy/lifecycle.h for the guarantees).
//
// Thread safety: both are safe to call concurrently with every other engine
// call; imports of one id are serialised by the catalog (ABORTED).

#ifndef TENANCY_LIB_TENANT_ARCHIVE_H_
#define TENANCY_LIB_TENANT_ARCHIVE_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "api_key.h"
#include "engine_parts.h"
#include "rocksdb/db.h"
#include "tenancy/archive.h"
#include "tenancy/lifecycle.h"

namespace tenancy::internal {

struct TenantRecord;

// A database with the engine's layout, as an export reads it.
struct ArchiveDatabase {
  rocksdb::DB* db = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  // The column family holding the data of the tenant `record` describes;
  // nullptr if missing.
  std::function<rocksdb::ColumnFamilyHandle*(const TenantRecord& record)> data_family;
  // The tenant's key digests when the caller knows them (the live engine):
  // their records are then read one by one instead of scanning all keys.
  const std::vector<Sha256Digest>* key_digests = nullptr;
};

// Writes tenant `id` as `snapshot` sees it. NOT_FOUND if it has no record
// there (or is being purged).
absl::StatusOr<ArchiveSummary> WriteTenantArchive(const ArchiveDatabase& database,
                                                  const rocksdb::Snapshot* snapshot,
                                                  std::string_view id, ArchiveSink& sink,
                                                  Logger& logger);

absl::StatusOr<ImportResult> ImportTenantArchive(EngineParts& parts, ArchiveSource& source,
                                                 const ImportOptions& options);

// Removes what imports a stop interrupted left in the data directory
// (their SST staging directories). For Open.
void RemoveImportStaging(const std::string& data_dir, Logger& logger);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_TENANT_ARCHIVE_H_
