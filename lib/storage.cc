#include "storage.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/str_join.h"
#include "key_encoding.h"
#include "meta_records.h"
#include "rocksdb/cache.h"
#include "rocksdb/convenience.h"
#include "rocksdb/file_system.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
#include "rocksdb/sst_partitioner.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

constexpr char kMetaColumnFamily[] = "tenancy.meta";
constexpr char kSharedColumnFamily[] = "tenancy.shared";
constexpr std::string_view kDedicatedPrefix = "tenant-";

// The tenant number of a dedicated column family's name, or 0.
uint64_t DedicatedNumber(std::string_view name) {
  if (name.substr(0, kDedicatedPrefix.size()) != kDedicatedPrefix) return 0;
  name.remove_prefix(kDedicatedPrefix.size());
  uint64_t number = 0;
  auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), number);
  return error == std::errc() && end == name.data() + name.size() ? number : 0;
}

std::string_view BackgroundErrorReasonName(rocksdb::BackgroundErrorReason reason) {
  switch (reason) {
    case rocksdb::BackgroundErrorReason::kFlush:
    case rocksdb::BackgroundErrorReason::kFlushNoWAL:
      return "flush";
    case rocksdb::BackgroundErrorReason::kCompaction:
      return "compaction";
    case rocksdb::BackgroundErrorReason::kWriteCallback:
      return "write";
    case rocksdb::BackgroundErrorReason::kMemTable:
      return "memtable";
    case rocksdb::BackgroundErrorReason::kManifestWrite:
    case rocksdb::BackgroundErrorReason::kManifestWriteNoWAL:
      return "manifest write";
  }
  return "background";
}

// The kind of a storage error, without the file names RocksDB's message has.
std::string_view ErrorKind(const rocksdb::Status& s) {
  if (s.IsNoSpace()) return "no space left on device";
  if (s.IsIOError()) return "I/O error";
  if (s.IsCorruption()) return "corruption";
  return "storage error";
}

}  // namespace

// RocksDB calls these from its own threads and from the thread of a failing
// write or of Resume, possibly with its DB mutex held: they touch Storage's
// own state and the logger, never the database.
class Storage::ErrorListener : public rocksdb::EventListener {
 public:
  explicit ErrorListener(Storage& storage) : storage_(storage) {}

  const char* Name() const override { return "tenancy.StorageErrorListener"; }

  void OnBackgroundError(rocksdb::BackgroundErrorReason reason,
                         rocksdb::Status* bg_error) override {
    std::string what = StrCat(BackgroundErrorReasonName(reason), ": ", bg_error->ToString());
    // A soft error (a retryable compaction failure) does not stop writes:
    // worth a warning, not a degraded engine.
    if (bg_error->severity() >= rocksdb::Status::Severity::kHardError) {
      std::string summary = StrCat(BackgroundErrorReasonName(reason), ": ", ErrorKind(*bg_error));
      // Two errors only a reopen of the database recovers from:
      // - a failed WAL append or sync leaves RocksDB 7.8's WAL writer with a
      //   sticky error: DB::Resume() succeeds, yet the next write goes to
      //   the same writer and fails again (or, in a build with assertions
      //   such as Debian's, aborts the process, as tests/fault_injection_test
      //   found; fixed upstream later, rocksdb PR 12448);
      // - a fatal one (7.8 rates an I/O error other than ENOSPC in a flush
      //   so), which DB::Resume() refuses.
      const bool wal = reason == rocksdb::BackgroundErrorReason::kWriteCallback ||
                       reason == rocksdb::BackgroundErrorReason::kMemTable;
      const bool fatal = bg_error->severity() >= rocksdb::Status::Severity::kFatalError;
      if (wal || fatal) {
        const std::string_view restart =
            wal ? " (the WAL failed: restart to recover)" : " (restart to recover)";
        what += restart;
        summary += restart;
      }
      storage_.MarkDegraded(std::move(what), std::move(summary), /*resumable=*/!wal && !fatal);
    } else {
      storage_.logger_.Log(LogLevel::kWarning,
                           StrCat("engine: storage error that does not stop writes: ", what));
    }
  }

  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status /*bg_error*/,
                            bool* auto_recovery) override {
    // Storage resumes (see the file comment).
    *auto_recovery = false;
  }

  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (info.new_bg_error.ok()) storage_.MarkRecovered("recovered");
  }

 private:
  Storage& storage_;
};

std::string DedicatedColumnFamilyName(uint64_t number) { return StrCat(kDedicatedPrefix, number); }

Storage::Storage(const EngineOptions& options, Logger& logger)
    : options_(options), logger_(logger) {
  data_write_options_.sync = options_.sync_writes;
  data_write_options_.no_slowdown = options_.fail_writes_on_stall;
  // Registry changes are rare and must survive a machine crash.
  registry_write_options_.sync = true;
}

absl::StatusOr<std::unique_ptr<Storage>> Storage::Open(const EngineOptions& options,
                                                       Logger& logger) {
  std::unique_ptr<Storage> storage(new Storage(options, logger));
  TENANCY_RETURN_IF_ERROR(storage->OpenDatabase());
  return storage;
}

absl::Status Storage::OpenDatabase() {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options_.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = options_.background_jobs;
  db_options.max_total_wal_size = options_.max_total_wal_size;
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(options_.memtable_budget_bytes);
  db_options.keep_log_file_num = 5;
  db_options.listeners.push_back(std::make_shared<ErrorListener>(*this));
  if (options_.file_system != nullptr) {
    env_ = rocksdb::NewCompositeEnv(options_.file_system);
    db_options.env = env_.get();
  }

  std::shared_ptr<rocksdb::Cache> block_cache = rocksdb::NewLRUCache(options_.block_cache_bytes);
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = block_cache;
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table_options.cache_index_and_filter_blocks = true;
  table_options.pin_l0_filter_and_index_blocks_in_cache = true;

  data_cf_options_.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  // SST files rarely straddle tenants, so a purge can drop whole files.
  data_cf_options_.sst_partitioner_factory =
      rocksdb::NewSstPartitionerFixedPrefixFactory(kTenantPrefixSize);
  // The write path reads the value it replaces; a memtable bloom filter makes
  // that read cheap when the key is new.
  data_cf_options_.memtable_whole_key_filtering = true;
  data_cf_options_.memtable_prefix_bloom_size_ratio = 0.02;

  rocksdb::ColumnFamilyOptions meta_options;
  meta_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  meta_options.merge_operator = NewUsageMergeOperator();

  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, options_.path, &names);
  if (!listed.ok()) names.clear();  // a new database
  if (!options_.adopt_existing_data.empty()) {
    // Adoption moves `default` alone; data in other families would be left
    // behind unnoticed, so refuse before creating ours.
    std::vector<std::string> foreign;
    for (const std::string& name : names) {
      if (name != rocksdb::kDefaultColumnFamilyName && name != kMetaColumnFamily &&
          name != kSharedColumnFamily && DedicatedNumber(name) == 0) {
        foreign.push_back(StrCat("\"", name, "\""));
      }
    }
    if (!foreign.empty()) {
      return absl::InvalidArgumentError(
          StrCat("engine: adopt_existing_data: ", options_.path,
                 " holds column families other than default that adoption cannot move: ",
                 absl::StrJoin(foreign, ", "), "; nothing was changed"));
    }
  }
  for (const char* required :
       {rocksdb::kDefaultColumnFamilyName.c_str(), kMetaColumnFamily, kSharedColumnFamily}) {
    if (std::find(names.begin(), names.end(), required) == names.end()) {
      names.push_back(required);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(name, name == kMetaColumnFamily ? meta_options : data_cf_options_);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  TENANCY_RETURN_IF_ERROR(
      FromRocksStatus(rocksdb::DB::Open(db_options, options_.path, descriptors, &handles, &raw_db),
                      StrCat("engine: open ", options_.path)));
  db_.reset(raw_db);
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    const std::string& name = handle->GetName();
    if (name == rocksdb::kDefaultColumnFamilyName) {
      default_ = handle;
    } else if (name == kMetaColumnFamily) {
      meta_ = handle;
    } else if (name == kSharedColumnFamily) {
      shared_ = Adopt(handle);
    } else if (uint64_t number = DedicatedNumber(name); number != 0) {
      found_dedicated_[number] = Adopt(handle);
    } else {
      // Not ours; kept open (and untouched) so that RocksDB does not refuse
      // the database.
      Adopt(handle);
    }
  }
  return absl::OkStatus();
}

ColumnFamily Storage::Adopt(rocksdb::ColumnFamilyHandle* handle) {
  rocksdb::DB* db = db_.get();
  return ColumnFamily(handle, [db](rocksdb::ColumnFamilyHandle* h) {
    db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  });
}

Storage::~Storage() {
  if (db_ == nullptr) return;
  found_dedicated_.clear();
  shared_.reset();
  if (meta_ != nullptr) db_->DestroyColumnFamilyHandle(meta_).PermitUncheckedError();
  if (default_ != nullptr) db_->DestroyColumnFamilyHandle(default_).PermitUncheckedError();
  rocksdb::Status s = db_->Close();
  if (!s.ok()) logger_.Log(LogLevel::kError, StrCat("engine: close: ", s.ToString()));
  db_.reset();
}

rocksdb::Status Storage::Commit(const rocksdb::WriteOptions& options, rocksdb::WriteBatch* batch) {
  // One atomic load on the hot path; the write below then either succeeds
  // (resumed) or is refused by RocksDB with its background error.
  if (degraded()) TryResume(/*now=*/false).IgnoreError();
#if TENANCY_THREAD_SANITIZER
  absl::MutexLock lock(&tsan_commit_mu_);
#endif
  return db_->Write(options, batch);
}

ColumnFamily Storage::TakeDedicated(uint64_t number) {
  auto it = found_dedicated_.find(number);
  if (it == found_dedicated_.end()) return nullptr;
  ColumnFamily family = std::move(it->second);
  found_dedicated_.erase(it);
  return family;
}

absl::Status Storage::DropUnclaimedDedicated() {
  for (auto& [number, family] : found_dedicated_) {
    logger_.Log(LogLevel::kWarning,
                StrCat("engine: dropping orphan column family ", family->GetName()));
    TENANCY_RETURN_IF_ERROR(
        FromRocksStatus(db_->DropColumnFamily(family.get()), "engine: drop orphan column family"));
  }
  found_dedicated_.clear();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ColumnFamily>> Storage::CreateDedicated(
    const std::vector<uint64_t>& numbers) {
  std::vector<ColumnFamily> families;
  if (numbers.empty()) return families;
  std::vector<std::string> names;
  for (uint64_t number : numbers) names.push_back(DedicatedColumnFamilyName(number));
  std::vector<rocksdb::ColumnFamilyHandle*> raw;
  TENANCY_RETURN_IF_ERROR(WriteError(db_->CreateColumnFamilies(data_cf_options_, names, &raw),
                                     "registry: create column families"));
  for (rocksdb::ColumnFamilyHandle* handle : raw) families.push_back(Adopt(handle));
  return families;
}

absl::Status Storage::DropColumnFamily(rocksdb::ColumnFamilyHandle* family) {
  return WriteError(db_->DropColumnFamily(family),
                    StrCat("engine: drop column family ", family->GetName()));
}

absl::Status Storage::DeleteTenantRange(rocksdb::ColumnFamilyHandle* family, uint64_t number,
                                        const std::string& context) {
  std::string start = TenantRangeStart(number);
  std::string end = TenantRangeEnd(number);
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.DeleteRange(family, start, end);
  if (s.ok()) s = Commit(write_options, &batch);
  TENANCY_RETURN_IF_ERROR(WriteError(s, context));
  // Whole files inside the range go at once (the SST partitioner makes them
  // common); compaction clears the rest and the range tombstone itself.
  rocksdb::Slice begin_slice(start), end_slice(end);
  TENANCY_RETURN_IF_ERROR(
      WriteError(rocksdb::DeleteFilesInRange(db_.get(), family, &begin_slice, &end_slice,
                                             /*include_end=*/false),
                 context));
  rocksdb::CompactRangeOptions compact;
  compact.exclusive_manual_compaction = false;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  return WriteError(db_->CompactRange(compact, family, &begin_slice, &end_slice), context);
}

absl::Status Storage::Flush(const std::vector<rocksdb::ColumnFamilyHandle*>& families) {
  return WriteError(db_->Flush(rocksdb::FlushOptions(), families), "engine: flush");
}

}  // namespace tenancy::internal

namespace tenancy::internal {

absl::Status Storage::WriteError(const rocksdb::Status& status, std::string_view context) const {
  if (status.ok()) return absl::OkStatus();
  const bool storage_error =
      status.IsIOError() || status.severity() >= rocksdb::Status::Severity::kHardError;
  // While degraded, RocksDB may also refuse a no_slowdown write as a stall.
  if (!storage_error && !(degraded() && status.IsIncomplete())) {
    return FromRocksStatus(status, context);
  }
  std::string cause;
  {
    absl::MutexLock lock(&health_mu_);
    cause = degraded_reason_;
  }
  if (cause.empty()) cause = status.ToString();
  return WithRetryAfter(
      MakeError(absl::StatusCode::kUnavailable, ErrorReason::kStorageUnavailable,
                StrCat(context,
                       ": storage unavailable (engine degraded), writes are refused until "
                       "it recovers: ",
                       cause)),
      options_.storage_resume_interval);
}

EngineHealth Storage::Health() const {
  EngineHealth health;
  if (!degraded()) return health;
  absl::MutexLock lock(&health_mu_);
  health.ok = !degraded();
  if (!health.ok) {
    health.reason = degraded_reason_;
    health.summary = degraded_summary_;
  }
  return health;
}

void Storage::MarkDegraded(std::string reason, std::string summary, bool resumable) {
  bool first = false;
  {
    absl::MutexLock lock(&health_mu_);
    first = !degraded_.load(std::memory_order_relaxed);
    // The latest cause: after a failed resume it says why it still fails.
    degraded_reason_ = reason;
    degraded_summary_ = std::move(summary);
    // Sticky for the episode: a later, resumable error (a failed flush
    // during a resume) does not make the WAL writable again.
    if (first) resumable_ = true;
    resumable_ = resumable_ && resumable;
    degraded_.store(true, std::memory_order_release);
  }
  // Once per episode: a failed resume reports the error again.
  if (first) {
    logger_.Log(LogLevel::kError, StrCat("engine: degraded: storage error, writes are refused "
                                         "until it recovers (reads still served): ",
                                         reason));
  }
}

void Storage::MarkRecovered(std::string_view how) {
  std::string was;
  {
    absl::MutexLock lock(&health_mu_);
    if (!degraded_.load(std::memory_order_relaxed)) return;
    was = std::move(degraded_reason_);
    degraded_reason_.clear();
    degraded_summary_.clear();
    degraded_.store(false, std::memory_order_release);
  }
  logger_.Log(LogLevel::kWarning,
              StrCat("engine: storage ", how, ", writes accepted again (was: ", was, ")"));
}

absl::Status Storage::TryResume(bool now) {
  if (!degraded()) return absl::OkStatus();
  {
    absl::MutexLock lock(&health_mu_);
    const absl::Time t = absl::Now();
    if (resuming_) {
      return WithRetryAfter(
          MakeError(absl::StatusCode::kUnavailable, ErrorReason::kStorageUnavailable,
                    "engine: resume: another resume is in progress"),
          options_.storage_resume_interval);
    }
    if (!now && t - last_resume_ < absl::FromChrono(options_.storage_resume_interval)) {
      return absl::OkStatus();  // the write goes on and RocksDB refuses it
    }
    if (!resumable_) {
      return WithRetryAfter(
          MakeError(absl::StatusCode::kUnavailable, ErrorReason::kStorageUnavailable,
                    StrCat("engine: resume: not possible without reopening the database (",
                           degraded_reason_, ")")),
          options_.storage_resume_interval);
    }
    resuming_ = true;
    last_resume_ = t;
  }
  // Without our lock: RocksDB calls the listener from inside Resume.
  rocksdb::Status s = db_->Resume();
  {
    absl::MutexLock lock(&health_mu_);
    resuming_ = false;
  }
  if (s.ok()) {
    MarkRecovered("resumed");
    return absl::OkStatus();
  }
  // RocksDB's answer first: the degraded reason alone would hide why the
  // resume failed.
  return WriteError(s, StrCat("engine: resume: ", s.ToString()));
}

absl::Status Storage::Resume() { return TryResume(/*now=*/true); }

}  // namespace tenancy::internal
