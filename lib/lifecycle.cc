// TenantLifecycle: export and import (tenant_archive.h), backups of the whole
// engine (rocksdb::BackupEngine) with restore of one tenant, and archives
// kept when a tenant is purged.

#include "tenancy/lifecycle.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine_parts.h"
#include "hex.h"
#include "meta_records.h"
#include "rocksdb/utilities/backup_engine.h"
#include "rocksdb_status.h"
#include "secure_random.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenant_archive.h"
#include "tenant_catalog.h"
#include "tenant_slot.h"

namespace tenancy {
namespace internal {

namespace fs = std::filesystem;

class LifecycleState {
 public:
  explicit LifecycleState(std::string backup_dir) : backup_dir_(std::move(backup_dir)) {}
  ~LifecycleState() {
    absl::MutexLock lock(&mu_);
    delete backups_;
  }

  const std::string& backup_dir() const { return backup_dir_; }
  std::string engine_dir() const { return backup_dir_ + "/engine"; }
  std::string archives_dir() const { return backup_dir_ + "/archives"; }

  // BackupEngine calls are serialised: one engine object, one caller.
  absl::Mutex mu_;
  // Opened at first use (a host that never backs up never creates the
  // directory).
  rocksdb::BackupEngine* backups_ ABSL_GUARDED_BY(mu_) = nullptr;

  absl::StatusOr<rocksdb::BackupEngine*> BackupsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (backups_ != nullptr) return backups_;
    std::error_code error;
    fs::create_directories(engine_dir(), error);
    if (error) {
      return absl::UnavailableError(StrCat("backup: create ", engine_dir(), ": ", error.message()));
    }
    rocksdb::BackupEngineOptions options(engine_dir());
    options.sync = true;
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(
        rocksdb::BackupEngine::Open(options, rocksdb::Env::Default(), &backups_), "backup: open"));
    return backups_;
  }

 private:
  const std::string backup_dir_;
};

namespace {

BackupInfo ToInfo(const rocksdb::BackupInfo& info) {
  BackupInfo out;
  out.backup_id = info.backup_id;
  out.created_at = absl::FromUnixSeconds(info.timestamp);
  out.size_bytes = info.size;
  out.files = info.number_files;
  return out;
}

std::string DefaultBackupDir(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path + ".backups";
}

absl::StatusOr<std::string> RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  TENANCY_RETURN_IF_ERROR(SecureRandomBytes(raw.data(), raw.size()));
  return HexEncode(raw);
}

// Archive names are made here and only read back by name: refuse anything
// that could leave the archives directory.
absl::Status ValidateArchiveName(std::string_view name) {
  bool ok = name.size() > 5 && name.size() <= 200 && name.substr(name.size() - 5) == ".tnca" &&
            name.front() != '.' && name.front() != '-';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                c == 'T' || c == 'Z');
  }
  if (!ok) return absl::InvalidArgumentError(StrCat("archive name \"", name, "\": malformed"));
  return absl::OkStatus();
}

// A directory removed when this goes out of scope, whatever happened.
class ScratchDir {
 public:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace
}  // namespace internal

using internal::StrCat;
namespace fs = std::filesystem;

TenantLifecycle::TenantLifecycle(internal::EngineParts* parts)
    : parts_(parts),
      state_(std::make_unique<internal::LifecycleState>(
          parts->options.backup_dir.empty() ? internal::DefaultBackupDir(parts->options.path)
                                            : parts->options.backup_dir)) {}

TenantLifecycle::~TenantLifecycle() = default;

const std::string& TenantLifecycle::backup_dir() const { return state_->backup_dir(); }

absl::StatusOr<ArchiveSummary> TenantLifecycle::Export(std::string_view id, ArchiveSink& sink) {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<internal::TenantSlot> slot,
                           parts_->catalog->FindLive(id));
  std::vector<internal::Sha256Digest> digests;
  {
    absl::MutexLock lock(&slot->mu);
    digests = slot->key_digests;
  }
  rocksdb::DB* db = parts_->storage->db();
  rocksdb::ManagedSnapshot snapshot(db);
  internal::ArchiveDatabase database;
  database.db = db;
  database.meta = parts_->storage->meta();
  database.key_digests = &digests;
  database.data_family = [&](const internal::TenantRecord& record) {
    if (record.number == slot->number) return slot->cf.get();
    // Replaced by an import since the slot was found: its range is another.
    return record.spec.placement == Placement::kShared ? parts_->storage->shared().get() : nullptr;
  };
  return internal::WriteTenantArchive(database, snapshot.snapshot(), id, sink, parts_->logger());
}

WriteFence& WriteFence::operator=(WriteFence&& other) noexcept {
  if (this != &other) {
    Release();
    slot_ = std::move(other.slot_);
  }
  return *this;
}

void WriteFence::Release() {
  if (slot_ == nullptr) return;
  slot_->writes_fenced.store(false, std::memory_order_seq_cst);
  slot_.reset();
}

absl::StatusOr<WriteFence> TenantLifecycle::FenceWrites(std::string_view id) {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<internal::TenantSlot> slot,
                           parts_->catalog->FindLive(id));
  bool expected = false;
  if (!slot->writes_fenced.compare_exchange_strong(expected, true, std::memory_order_seq_cst)) {
    return absl::AbortedError(StrCat("tenant \"", id, "\": its writes are already fenced"));
  }
  // Writers check the flag under the range lock (shared): once this has
  // held it exclusively, every writer that missed the flag has committed,
  // and every later one sees it.
  { absl::WriterMutexLock drain(&slot->range_mu); }
  return WriteFence(std::move(slot));
}

absl::Status TenantLifecycle::ClearData(std::string_view id) {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<internal::TenantSlot> slot,
                           parts_->catalog->FindLive(id));
  internal::TenantCatalog::ImportPlan plan;
  plan.replace = true;
  {
    absl::MutexLock lock(&slot->mu);
    plan.spec = slot->spec;
  }
  TENANCY_ASSIGN_OR_RETURN(internal::TenantCatalog::ImportTarget target,
                           parts_->catalog->BeginImport(id, true, plan.spec.placement));
  absl::StatusOr<TenantInfo> info = parts_->catalog->FinishImport(target, plan);
  if (!info.ok()) {
    parts_->catalog->AbortImport(target);
    return info.status();
  }
  parts_->logger().Log(LogLevel::kInfo, StrCat("tenant \"", id, "\": data cleared"));
  return absl::OkStatus();
}

absl::StatusOr<ImportResult> TenantLifecycle::Import(ArchiveSource& source,
                                                     const ImportOptions& options) {
  return internal::ImportTenantArchive(*parts_, source, options);
}

absl::StatusOr<BackupInfo> TenantLifecycle::CreateBackup() {
  // Request counters are kept in memory; the backup should have them.
  TENANCY_RETURN_IF_ERROR(parts_->catalog->FlushRequestStats());
  absl::MutexLock lock(&state_->mu_);
  TENANCY_ASSIGN_OR_RETURN(rocksdb::BackupEngine * backups, state_->BackupsLocked());
  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  absl::Time start = absl::Now();
  TENANCY_RETURN_IF_ERROR(internal::FromRocksStatus(
      backups->CreateNewBackup(options, parts_->storage->db(), &id), "backup: create"));
  rocksdb::BackupInfo info;
  TENANCY_RETURN_IF_ERROR(
      internal::FromRocksStatus(backups->GetBackupInfo(id, &info), "backup: create"));
  parts_->logger().Log(
      LogLevel::kInfo,
      StrCat("backup ", id, ": created, ", info.number_files, " files, ", info.size, " bytes in ",
             absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)))));
  return internal::ToInfo(info);
}

absl::StatusOr<std::vector<BackupInfo>> TenantLifecycle::ListBackups() {
  absl::MutexLock lock(&state_->mu_);
  TENANCY_ASSIGN_OR_RETURN(rocksdb::BackupEngine * backups, state_->BackupsLocked());
  std::vector<rocksdb::BackupInfo> infos;
  backups->GetBackupInfo(&infos);
  std::vector<BackupInfo> out;
  for (const rocksdb::BackupInfo& info : infos) out.push_back(internal::ToInfo(info));
  return out;
}

absl::Status TenantLifecycle::DeleteBackup(uint32_t backup_id) {
  absl::MutexLock lock(&state_->mu_);
  TENANCY_ASSIGN_OR_RETURN(rocksdb::BackupEngine * backups, state_->BackupsLocked());
  rocksdb::BackupInfo info;
  if (!backups->GetBackupInfo(backup_id, &info).ok()) {
    return absl::NotFoundError(StrCat("backup ", backup_id, ": not found"));
  }
  TENANCY_RETURN_IF_ERROR(
      internal::FromRocksStatus(backups->DeleteBackup(backup_id), "backup: delete"));
  parts_->logger().Log(LogLevel::kInfo, StrCat("backup ", backup_id, ": deleted"));
  return absl::OkStatus();
}

absl::Status TenantLifecycle::VerifyBackup(uint32_t backup_id) {
  absl::MutexLock lock(&state_->mu_);
  TENANCY_ASSIGN_OR_RETURN(rocksdb::BackupEngine * backups, state_->BackupsLocked());
  rocksdb::BackupInfo info;
  if (!backups->GetBackupInfo(backup_id, &info).ok()) {
    return absl::NotFoundError(StrCat("backup ", backup_id, ": not found"));
  }
  rocksdb::IOStatus s = backups->VerifyBackup(backup_id, /*verify_with_checksum=*/true);
  if (!s.ok()) {
    return absl::DataLossError(StrCat("backup ", backup_id, ": damaged: ", s.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ImportResult> TenantLifecycle::RestoreTenant(std::string_view id,
                                                            uint32_t backup_id) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  std::string context = StrCat("tenant \"", id, "\": restore from backup ", backup_id);
  TENANCY_ASSIGN_OR_RETURN(std::string suffix, internal::RandomHex(6));
  internal::ScratchDir scratch(StrCat(state_->backup_dir(), "/restore-", backup_id, "-", suffix));
  {
    absl::MutexLock lock(&state_->mu_);
    TENANCY_ASSIGN_OR_RETURN(rocksdb::BackupEngine * backups, state_->BackupsLocked());
    rocksdb::BackupInfo info;
    if (!backups->GetBackupInfo(backup_id, &info).ok()) {
      return absl::NotFoundError(StrCat("backup ", backup_id, ": not found"));
    }
    std::error_code error;
    fs::create_directories(scratch.path() + "/db", error);
    if (error) return absl::UnavailableError(StrCat(context, ": ", error.message()));
    TENANCY_RETURN_IF_ERROR(internal::FromRocksStatus(
        backups->RestoreDBFromBackup(rocksdb::RestoreOptions(), backup_id, scratch.path() + "/db",
                                     scratch.path() + "/db"),
        context));
  }
  // The restored database, read-only, with the meta column family's merge
  // operator (its usage records are merge operands).
  std::string db_path = scratch.path() + "/db";
  std::vector<std::string> names;
  TENANCY_RETURN_IF_ERROR(internal::FromRocksStatus(
      rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), db_path, &names), context));
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    rocksdb::ColumnFamilyOptions cf_options;
    if (name == "tenancy.meta") cf_options.merge_operator = internal::NewUsageMergeOperator();
    descriptors.emplace_back(name, cf_options);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  TENANCY_RETURN_IF_ERROR(internal::FromRocksStatus(
      rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), db_path, descriptors, &handles, &raw_db),
      context));
  std::unique_ptr<rocksdb::DB> db(raw_db);
  absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*> by_name;
  for (rocksdb::ColumnFamilyHandle* h : handles) by_name[h->GetName()] = h;
  internal::ArchiveDatabase database;
  database.db = db.get();
  database.meta = by_name["tenancy.meta"];
  database.data_family = [&](const internal::TenantRecord& record) {
    auto it = by_name.find(record.spec.placement == Placement::kDedicated
                               ? internal::DedicatedColumnFamilyName(record.number)
                               : std::string("tenancy.shared"));
    return it == by_name.end() ? nullptr : it->second;
  };
  std::string archive_path = scratch.path() + "/tenant.tnca";
  absl::Status exported = [&]() -> absl::Status {
    if (database.meta == nullptr) return absl::DataLossError(StrCat(context, ": not an engine"));
    TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<FileArchiveSink> sink,
                             FileArchiveSink::Open(archive_path));
    TENANCY_RETURN_IF_ERROR(
        internal::WriteTenantArchive(database, nullptr, id, *sink, parts_->logger()).status());
    return sink->Close();
  }();
  for (rocksdb::ColumnFamilyHandle* h : handles)
    db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  db.reset();
  if (absl::IsNotFound(exported)) {
    return absl::NotFoundError(StrCat("tenant \"", id, "\": not in backup ", backup_id));
  }
  TENANCY_RETURN_IF_ERROR(exported);

  TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<FileArchiveSource> source,
                           FileArchiveSource::Open(archive_path));
  ImportOptions options;
  options.tenant_id = std::string(id);
  options.mode = parts_->catalog->FindLive(id).ok() ? ImportMode::kReplace : ImportMode::kCreate;
  TENANCY_ASSIGN_OR_RETURN(ImportResult result, Import(*source, options));
  parts_->logger().Log(LogLevel::kInfo, StrCat(context, ": done, ", result.archive.keys, " keys"));
  return result;
}

absl::StatusOr<std::string> TenantLifecycle::ArchiveAndPurge(std::string_view id) {
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  // No writes after the archive's snapshot: they would be lost with the purge.
  TENANCY_RETURN_IF_ERROR(parts_->catalog->SetFlags(id, /*enabled=*/false, std::nullopt));
  std::error_code error;
  fs::create_directories(state_->archives_dir(), error);
  if (error) {
    return absl::UnavailableError(
        StrCat("archive: create ", state_->archives_dir(), ": ", error.message()));
  }
  TENANCY_ASSIGN_OR_RETURN(std::string suffix, internal::RandomHex(2));
  std::string name =
      StrCat(id, "-", absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()), "-",
             suffix, ".tnca");
  std::string path = StrCat(state_->archives_dir(), "/", name);
  std::string partial = path + ".partial";
  absl::Status written = [&]() -> absl::Status {
    TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<FileArchiveSink> sink, FileArchiveSink::Open(partial));
    TENANCY_RETURN_IF_ERROR(Export(id, *sink).status());
    TENANCY_RETURN_IF_ERROR(sink->Close());
    fs::rename(partial, path, error);
    if (error) return absl::UnavailableError(StrCat("archive: rename: ", error.message()));
    return absl::OkStatus();
  }();
  if (!written.ok()) {
    fs::remove(partial, error);
    return written;
  }
  parts_->logger().Log(LogLevel::kInfo, StrCat("tenant \"", id, "\": archived as ", name));
  TENANCY_RETURN_IF_ERROR(parts_->catalog->Purge(id));
  return name;
}

absl::StatusOr<std::vector<ArchiveFileInfo>> TenantLifecycle::ListArchives() {
  std::vector<ArchiveFileInfo> out;
  std::error_code error;
  if (!fs::exists(state_->archives_dir(), error)) return out;
  for (const auto& entry : fs::directory_iterator(state_->archives_dir(), error)) {
    std::string name = entry.path().filename().string();
    if (!internal::ValidateArchiveName(name).ok()) continue;  // partial files, strangers
    absl::StatusOr<std::unique_ptr<FileArchiveSource>> source =
        FileArchiveSource::Open(entry.path().string());
    if (!source.ok()) continue;
    absl::StatusOr<ArchiveSummary> header = ReadArchiveHeader(**source);
    if (!header.ok()) {
      parts_->logger().Log(LogLevel::kWarning,
                           StrCat("archive ", name, ": unreadable: ", header.status().message()));
      continue;
    }
    ArchiveFileInfo info;
    info.name = name;
    info.tenant_id = header->tenant_id;
    info.created_at = header->created_at;
    std::error_code size_error;
    info.size_bytes = fs::file_size(entry.path(), size_error);
    out.push_back(std::move(info));
  }
  if (error) {
    return absl::UnavailableError(
        StrCat("archive: list ", state_->archives_dir(), ": ", error.message()));
  }
  std::sort(out.begin(), out.end(), [](const ArchiveFileInfo& a, const ArchiveFileInfo& b) {
    return a.created_at != b.created_at ? a.created_at < b.created_at : a.name < b.name;
  });
  return out;
}

absl::StatusOr<ImportResult> TenantLifecycle::RestoreArchive(std::string_view name,
                                                             std::string_view tenant_id) {
  TENANCY_RETURN_IF_ERROR(internal::ValidateArchiveName(name));
  absl::StatusOr<std::unique_ptr<FileArchiveSource>> source =
      FileArchiveSource::Open(StrCat(state_->archives_dir(), "/", name));
  if (absl::IsNotFound(source.status())) {
    return absl::NotFoundError(StrCat("archive \"", name, "\": not found"));
  }
  TENANCY_RETURN_IF_ERROR(source.status());
  ImportOptions options;
  options.tenant_id = std::string(tenant_id);
  options.mode = ImportMode::kCreate;
  TENANCY_ASSIGN_OR_RETURN(ImportResult result, Import(**source, options));
  // ArchiveAndPurge disabled the tenant to stop its writes before the
  // archive's snapshot; bringing it back means taking calls again.
  TENANCY_RETURN_IF_ERROR(parts_->catalog->SetFlags(result.tenant_id, true, std::nullopt));
  return result;
}

}  // namespace tenancy
