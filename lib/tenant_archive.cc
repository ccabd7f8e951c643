#include "tenant_archive.h"

#include <chrono>
#include <filesystem>
#include <optional>
#include <system_error>

#include "absl/time/clock.h"
#include "archive_format.h"
#include "key_encoding.h"
#include "meta_records.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/status.h"
#include "tenant_catalog.h"

#ifndef TENANCY_VERSION_STRING
#define TENANCY_VERSION_STRING "unknown"
#endif

namespace tenancy::internal {
namespace {

namespace fs = std::filesystem;

constexpr char kStagingPrefix[] = "tenancy-import-";
// An import ingests files of at most this size, one call each: RocksDB holds
// every writer of the database while it ingests a file, so pieces keep that
// pause short for the neighbours.
constexpr uint64_t kIngestFileBytes = uint64_t{64} << 20;
constexpr absl::Duration kProgressEvery = absl::Seconds(10);

std::string_view View(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// Logs a long operation's progress at most every kProgressEvery.
class Progress {
 public:
  Progress(Logger& logger, std::string what) : logger_(logger), what_(std::move(what)) {}
  void Tick(uint64_t entries, uint64_t bytes) {
    if ((entries & 0xfff) != 0) return;
    absl::Time now = absl::Now();
    if (now - last_ < kProgressEvery) return;
    last_ = now;
    logger_.Log(LogLevel::kInfo,
                StrCat(what_, ": ", entries, " entries, ", bytes >> 20, " MiB so far"));
  }
  void Done(uint64_t entries, uint64_t bytes) {
    logger_.Log(
        LogLevel::kInfo,
        StrCat(what_, ": done, ", entries, " entries, ", bytes, " bytes in ",
               absl::FormatDuration(absl::Trunc(absl::Now() - start_, absl::Milliseconds(1)))));
  }

 private:
  Logger& logger_;
  std::string what_;
  absl::Time start_ = absl::Now();
  absl::Time last_ = absl::Now();
};

absl::Status ReadKeys(const ArchiveDatabase& database, const rocksdb::ReadOptions& read,
                      uint64_t number, std::vector<ArchiveKey>* keys) {
  auto add = [&](std::string_view key, std::string_view value) -> absl::Status {
    ApiKeyRecord record;
    if (key.size() != 33 || !DecodeApiKeyRecord(value, &record)) {
      return absl::DataLossError("export: corrupt api key record");
    }
    if (record.number != number) return absl::OkStatus();
    ArchiveKey out;
    std::memcpy(out.digest.data(), key.data() + 1, 32);
    out.key_id = record.key_id;
    out.prefix = record.prefix;
    out.created_s = absl::ToUnixSeconds(record.created_at);
    keys->push_back(std::move(out));
    return absl::OkStatus();
  };
  if (database.key_digests != nullptr) {
    for (const Sha256Digest& digest : *database.key_digests) {
      std::string key = ApiKeyRecordKey(digest), value;
      rocksdb::Status s = database.db->Get(read, database.meta, key, &value);
      if (s.IsNotFound()) continue;  // revoked after the snapshot's time
      TENANCY_RETURN_IF_ERROR(FromRocksStatus(s, "export: read api key"));
      TENANCY_RETURN_IF_ERROR(add(key, value));
    }
    return absl::OkStatus();
  }
  std::unique_ptr<rocksdb::Iterator> it(database.db->NewIterator(read, database.meta));
  for (it->Seek(std::string(1, kApiKeyPrefix)); it->Valid() && it->key()[0] == kApiKeyPrefix;
       it->Next()) {
    TENANCY_RETURN_IF_ERROR(add(View(it->key()), View(it->value())));
  }
  return FromRocksStatus(it->status(), "export: read api keys");
}

}  // namespace

absl::StatusOr<ArchiveSummary> WriteTenantArchive(const ArchiveDatabase& database,
                                                  const rocksdb::Snapshot* snapshot,
                                                  std::string_view id, ArchiveSink& sink,
                                                  Logger& logger) {
  std::string context = StrCat("tenant \"", id, "\": export");
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = database.db->Get(read, database.meta, TenantRecordKey(id), &value);
  if (s.IsNotFound()) return absl::NotFoundError(StrCat("tenant \"", id, "\": not found"));
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(s, context));
  TenantRecord record;
  if (!DecodeTenantRecord(value, &record))
    return absl::DataLossError(StrCat(context, ": corrupt record"));
  if (record.deleting) return absl::NotFoundError(StrCat("tenant \"", id, "\": not found"));
  rocksdb::ColumnFamilyHandle* family = database.data_family(record);
  if (family == nullptr) return absl::DataLossError(StrCat(context, ": column family missing"));

  ArchiveMeta meta;
  meta.record = value;
  s = database.db->Get(read, database.meta, UsageKey(record.number), &value);
  if (s.ok()) {
    if (!DecodeUsageDelta(value, &meta.usage_bytes, &meta.usage_keys)) {
      return absl::DataLossError(StrCat(context, ": corrupt usage ledger"));
    }
  } else if (!s.IsNotFound()) {
    return FromRocksStatus(s, context);
  }
  TENANCY_RETURN_IF_ERROR(ReadKeys(database, read, record.number, &meta.keys));

  ArchiveHeader header;
  header.tenant_id = std::string(id);
  header.tenant_number = record.number;
  header.created_us = absl::ToUnixMicros(absl::Now());
  header.producer = StrCat("tenancy ", TENANCY_VERSION_STRING);
  ArchiveWriter writer(sink);
  TENANCY_RETURN_IF_ERROR(writer.Begin(header, meta));

  std::string lower = TenantRangeStart(record.number);
  std::string upper = TenantRangeEnd(record.number);
  rocksdb::Slice lower_slice(lower), upper_slice(upper);
  read.iterate_lower_bound = &lower_slice;
  read.iterate_upper_bound = &upper_slice;
  read.fill_cache = false;  // one pass over cold data must not evict the hot
  read.readahead_size = size_t{2} << 20;
  Progress progress(logger, context);
  std::unique_ptr<rocksdb::Iterator> it(database.db->NewIterator(read, family));
  for (it->Seek(lower_slice); it->Valid(); it->Next()) {
    rocksdb::Slice key = it->key();
    if (key.size() < kKeyHeaderSize) continue;  // never written by us
    TENANCY_RETURN_IF_ERROR(writer.Add(static_cast<uint8_t>(key[kTenantPrefixSize]),
                                       View(key).substr(kKeyHeaderSize), View(it->value())));
    progress.Tick(writer.totals().entries, writer.bytes_written());
  }
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), context));
  TENANCY_RETURN_IF_ERROR(writer.Finish());
  progress.Done(writer.totals().entries, writer.bytes_written());

  ArchiveSummary summary;
  summary.tenant_id = header.tenant_id;
  summary.created_at = absl::FromUnixMicros(header.created_us);
  summary.entries = writer.totals().entries;
  summary.keys = writer.totals().keys;
  summary.bytes = writer.totals().bytes;
  summary.jobs = writer.totals().jobs;
  summary.archive_bytes = writer.bytes_written();
  return summary;
}

namespace {

// The SST files of one import, in a staging directory inside the data
// directory (so that ingestion can link them instead of copying).
class SstStaging {
 public:
  SstStaging(const rocksdb::Options& options, std::string dir, uint64_t number)
      : options_(options), dir_(std::move(dir)), number_(number) {}
  ~SstStaging() {
    writer_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  absl::Status Add(const ArchiveEntry& entry) {
    if (writer_ == nullptr) TENANCY_RETURN_IF_ERROR(OpenFile());
    key_.resize(kKeyHeaderSize);
    key_[kTenantPrefixSize] = static_cast<char>(entry.ns);
    key_.append(entry.key);
    rocksdb::Status s = writer_->Put(key_, rocksdb::Slice(entry.value.data(), entry.value.size()));
    if (!s.ok()) return FromRocksStatus(s, "import: write sst");
    if (writer_->FileSize() >= kIngestFileBytes) return CloseFile();
    return absl::OkStatus();
  }

  absl::Status CloseFile() {
    if (writer_ == nullptr) return absl::OkStatus();
    rocksdb::Status s = writer_->Finish();
    writer_.reset();
    return FromRocksStatus(s, "import: finish sst");
  }

  const std::vector<std::string>& files() const { return files_; }

 private:
  absl::Status OpenFile() {
    if (files_.empty()) {
      std::error_code error;
      fs::create_directories(dir_, error);
      if (error)
        return absl::UnavailableError(StrCat("import: create ", dir_, ": ", error.message()));
      key_.clear();
      PutFixed64BigEndian(&key_, number_);
      key_.push_back('\0');
    }
    files_.push_back(StrCat(dir_, "/", files_.size(), ".sst"));
    writer_ = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), options_);
    return FromRocksStatus(writer_->Open(files_.back()), "import: open sst");
  }

  rocksdb::Options options_;
  std::string dir_;
  uint64_t number_;
  std::string key_;  // [number][ns][key] being written
  std::unique_ptr<rocksdb::SstFileWriter> writer_;
  std::vector<std::string> files_;
};

absl::Status CheckQuota(const TenantSpec& spec, int64_t bytes, int64_t keys) {
  if (spec.quota.storage_bytes != 0 && static_cast<uint64_t>(bytes) > spec.quota.storage_bytes) {
    return MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kStorageQuota,
                     StrCat("tenant \"", spec.id, "\": import: ", bytes,
                            " bytes would pass the storage quota of ", spec.quota.storage_bytes));
  }
  if (spec.quota.max_keys != 0 && static_cast<uint64_t>(keys) > spec.quota.max_keys) {
    return MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kKeyQuota,
                     StrCat("tenant \"", spec.id, "\": import: ", keys,
                            " keys would pass the key quota of ", spec.quota.max_keys));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImportResult> ImportTenantArchive(EngineParts& parts, ArchiveSource& source,
                                                 const ImportOptions& options) {
  ArchiveReader reader(source);
  ArchiveHeader header;
  ArchiveMeta meta;
  TENANCY_RETURN_IF_ERROR(reader.ReadHeader(&header));
  TENANCY_RETURN_IF_ERROR(reader.ReadMeta(&meta));
  TenantRecord source_record;
  if (!DecodeTenantRecord(meta.record, &source_record) ||
      source_record.spec.id != header.tenant_id) {
    return absl::InvalidArgumentError("archive: malformed tenant record");
  }
  const std::string id = options.tenant_id.empty() ? header.tenant_id : options.tenant_id;
  TENANCY_RETURN_IF_ERROR(ValidateTenantId(id));
  const bool replace = options.mode == ImportMode::kReplace;
  // Under its own id an archive brings the tenant's identity (spec, keys,
  // creation time): a move or a restore. Under another id it is a clone: a
  // new tenant gets the archive's spec and a new key; a replaced one keeps
  // its own spec and keys.
  const bool own_identity = id == header.tenant_id;
  TenantCatalog::ImportPlan plan;
  plan.replace = replace;
  if (own_identity || !replace) {
    plan.spec = source_record.spec;
    plan.spec.id = id;
  } else {
    TENANCY_ASSIGN_OR_RETURN(TenantInfo current, parts.catalog->Get(id));
    plan.spec = current.spec;
  }
  if (own_identity) {
    plan.created_at = source_record.created_at;
    plan.keys.emplace();
    for (const ArchiveKey& key : meta.keys) {
      plan.keys->push_back(TenantCatalog::ImportedKey{key.digest, key.key_id, key.prefix,
                                                      absl::FromUnixSeconds(key.created_s)});
      absl::StatusOr<ApiKeyOwner> owner = parts.catalog->FindApiKeyOwner(key.digest);
      if (owner.ok() && owner->tenant_id != id) {
        return absl::AlreadyExistsError(StrCat("tenant \"", id, "\": api key ", key.prefix,
                                               " belongs to tenant \"", owner->tenant_id, "\""));
      }
    }
  } else if (!replace) {
    plan.keys.emplace();  // a new one is made below
  }
  // A spec this build refuses (a limit class name, a quota over range) is
  // refused before any data is written.
  TENANCY_RETURN_IF_ERROR(ValidateSpec(plan.spec));
  TENANCY_RETURN_IF_ERROR(CheckQuota(plan.spec, meta.usage_bytes, meta.usage_keys));

  std::string context = StrCat("tenant \"", id, "\": import");
  TENANCY_ASSIGN_OR_RETURN(TenantCatalog::ImportTarget target,
                           parts.catalog->BeginImport(id, replace, plan.spec.placement));
  auto staged = [&]() -> absl::StatusOr<TenantInfo> {
    rocksdb::Options sst_options(rocksdb::DBOptions(), parts.storage->data_cf_options());
    SstStaging staging(sst_options, StrCat(parts.options.path, "/", kStagingPrefix, target.number),
                       target.number);
    Progress progress(parts.logger(), context);
    ArchiveEntry entry;
    while (true) {
      TENANCY_ASSIGN_OR_RETURN(bool more, reader.Next(&entry));
      if (!more) break;
      // This engine's limits hold for what it imports as for what it is
      // written (an archive may come from an engine with larger ones).
      if (entry.ns == kArchiveKvNamespace && (entry.key.size() > parts.options.max_key_bytes ||
                                              entry.value.size() > parts.options.max_value_bytes)) {
        return absl::InvalidArgumentError(StrCat(
            context, ": a key of ", entry.key.size(), " bytes or its value of ", entry.value.size(),
            " bytes is over this engine's max_key_bytes (", parts.options.max_key_bytes,
            ") or max_value_bytes (", parts.options.max_value_bytes, ")"));
      }
      TENANCY_RETURN_IF_ERROR(staging.Add(entry));
      progress.Tick(reader.totals().entries, reader.bytes_read());
    }
    TENANCY_RETURN_IF_ERROR(staging.CloseFile());
    // What was counted is the usage: a recount by construction.
    plan.bytes = static_cast<int64_t>(reader.totals().bytes);
    plan.keys_count = static_cast<int64_t>(reader.totals().keys);
    TENANCY_RETURN_IF_ERROR(CheckQuota(plan.spec, plan.bytes, plan.keys_count));
    for (const std::string& file : staging.files()) {
      rocksdb::IngestExternalFileOptions ingest;
      ingest.move_files = true;
      ingest.verify_checksums_before_ingest = true;
      // The range is fresh: no memtable overlaps it, so no flush is needed;
      // refuse rather than stall every writer behind one.
      ingest.allow_blocking_flush = false;
      TENANCY_RETURN_IF_ERROR(FromRocksStatus(
          parts.storage->db()->IngestExternalFile(target.cf.get(), {file}, ingest), context));
    }
    TENANCY_ASSIGN_OR_RETURN(TenantInfo info, parts.catalog->FinishImport(target, plan));
    progress.Done(reader.totals().entries, reader.bytes_read());
    return info;
  };
  absl::StatusOr<TenantInfo> info = staged();
  if (!info.ok()) {
    parts.catalog->AbortImport(target);
    return info.status();
  }
  ImportResult result;
  result.tenant_id = id;
  result.archive.tenant_id = header.tenant_id;
  result.archive.created_at = absl::FromUnixMicros(header.created_us);
  result.archive.entries = reader.totals().entries;
  result.archive.keys = reader.totals().keys;
  result.archive.bytes = reader.totals().bytes;
  result.archive.jobs = reader.totals().jobs;
  result.archive.archive_bytes = reader.bytes_read();
  result.usage = info->usage;
  if (!own_identity && !replace) {
    TENANCY_ASSIGN_OR_RETURN(NewApiKey key, parts.catalog->CreateApiKey(id));
    result.new_key = std::move(key);
  }
  return result;
}

void RemoveImportStaging(const std::string& data_dir, Logger& logger) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(data_dir, error)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(kStagingPrefix, 0) != 0) continue;
    logger.Log(LogLevel::kInfo,
               StrCat("engine: removing ", name, " left by an interrupted import"));
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

}  // namespace tenancy::internal
