// Storage: the engine's one RocksDB database and its column families.
//
//   default          unused (RocksDB requires it; adoption of plain RocksDB
//                    directories reads it)
//   tenancy.meta     tenant records, API key hashes, usage ledgers, request
//                    counters (lib/meta_records.h)
//   tenancy.shared   the data of every shared tenant, keys prefixed with the
//                    tenant's number (lib/key_encoding.h)
//   tenant-<number>  the data of one dedicated tenant
//
// Every write to the database goes through Commit. Storage knows nothing of
// tenants beyond their numbers and column families: the catalog decides
// which exist, the ledger what their writes cost.
//
// Storage errors: when a WAL write or sync, a flush or a compaction fails
// hard (ENOSPC, EIO), RocksDB stops writes until DB::Resume(). Storage
// learns of it through an EventListener, reports it (Health(), one log line
// per episode), turns the refused writes into UNAVAILABLE
// (kStorageUnavailable, WriteError) and resumes: at most once per
// EngineOptions::storage_resume_interval on a write attempt, or at once
// through Resume(); after a failed WAL write or sync it cannot resume (RocksDB
// 7.8 keeps writing to the failed WAL) and says a restart is needed.
// RocksDB's automatic recovery is turned off so that
// Storage is the only party that resumes (RocksDB answers a manual resume
// during its own recovery with Busy, which would leave the engine at the
// mercy of the SstFileManager's free-space polling).
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization, but for TakeDedicated and DropUnclaimedDedicated,
// which are for Open only.

#ifndef TENANCY_LIB_STORAGE_H_
#define TENANCY_LIB_STORAGE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "tenancy/engine.h"

#if defined(__SANITIZE_THREAD__)
#define TENANCY_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TENANCY_THREAD_SANITIZER 1
#endif
#endif
#ifndef TENANCY_THREAD_SANITIZER
#define TENANCY_THREAD_SANITIZER 0
#endif

namespace tenancy::internal {

using ColumnFamily = std::shared_ptr<rocksdb::ColumnFamilyHandle>;

class Storage {
 public:
  // Opens (or creates) the database at options.path with the engine's
  // settings: one write buffer budget and block cache over every column
  // family, bloom filters, and a fixed-prefix SST partitioner on the tenant
  // number for data column families. With options.adopt_existing_data set,
  // INVALID_ARGUMENT naming them for column families that are not the
  // engine's, before anything is opened or created.
  static absl::StatusOr<std::unique_ptr<Storage>> Open(const EngineOptions& options,
                                                       Logger& logger);
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  // Closes the database. REQUIRES: no handle of it is in use.
  ~Storage();

  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* meta() const { return meta_; }
  // Unused by the engine; a plain RocksDB directory keeps its data there
  // (adoption.h).
  rocksdb::ColumnFamilyHandle* default_family() const { return default_; }
  const ColumnFamily& shared() const { return shared_; }
  // The options of data column families (for SST files made outside).
  const rocksdb::ColumnFamilyOptions& data_cf_options() const { return data_cf_options_; }

  // Data writes: sync as EngineOptions::sync_writes, and no_slowdown as
  // fail_writes_on_stall. Registry writes: always synced.
  const rocksdb::WriteOptions& data_write_options() const { return data_write_options_; }
  const rocksdb::WriteOptions& registry_write_options() const { return registry_write_options_; }
  // Built once: the point paths use them on every call.
  const rocksdb::ReadOptions& point_read_options() const { return point_read_options_; }

  // Every write to the database goes through here. While degraded, first
  // tries a resume if storage_resume_interval has passed since the last.
  rocksdb::Status Commit(const rocksdb::WriteOptions& options, rocksdb::WriteBatch* batch);

  // The absl::Status of a failed Commit (or of building its batch): a
  // storage error, or any refusal while degraded, is UNAVAILABLE with reason
  // kStorageUnavailable and a retry-after of storage_resume_interval, its
  // message naming the state and the cause; anything else as
  // FromRocksStatus. OK for OK. Callers have already given back what they
  // reserved: nothing of a failed write is acknowledged.
  absl::Status WriteError(const rocksdb::Status& status, std::string_view context) const;

  // See EngineHealth (tenancy/engine.h).
  EngineHealth Health() const;
  bool degraded() const { return degraded_.load(std::memory_order_acquire); }
  // DB::Resume() now, if degraded. OK when not degraded or resumed.
  absl::Status Resume();

  // Dedicated column families. TakeDedicated hands Open the family found for
  // tenant `number` (nullptr if none); DropUnclaimedDedicated drops those no
  // tenant took (left by a crash between creating one and writing its
  // tenant's record). REQUIRES: during Open only.
  ColumnFamily TakeDedicated(uint64_t number);
  absl::Status DropUnclaimedDedicated();
  // Creates the families of `numbers` in one call (each create rewrites the
  // OPTIONS file). On failure none is left.
  absl::StatusOr<std::vector<ColumnFamily>> CreateDedicated(const std::vector<uint64_t>& numbers);
  absl::Status DropColumnFamily(rocksdb::ColumnFamilyHandle* family);

  // Deletes every key of tenant `number` from a shared column family and
  // reclaims the space: a range tombstone, then whole files inside the range,
  // then a compaction of the rest. `context` names the caller in errors.
  absl::Status DeleteTenantRange(rocksdb::ColumnFamilyHandle* family, uint64_t number,
                                 const std::string& context);

  // Flushes the memtables of `families` to SST files.
  absl::Status Flush(const std::vector<rocksdb::ColumnFamilyHandle*>& families);

 private:
  class ErrorListener;

  Storage(const EngineOptions& options, Logger& logger);
  absl::Status OpenDatabase();
  ColumnFamily Adopt(rocksdb::ColumnFamilyHandle* handle);
  // From the listener (RocksDB's threads) and from Resume.
  void MarkDegraded(std::string reason, std::string summary, bool resumable);
  void MarkRecovered(std::string_view how);
  // Resume, unless another thread is resuming or, when !now, the interval
  // since the last attempt has not passed.
  absl::Status TryResume(bool now);

  // Constant after Open
  const EngineOptions& options_;
  Logger& logger_;
  rocksdb::WriteOptions data_write_options_;
  rocksdb::WriteOptions registry_write_options_;
  const rocksdb::ReadOptions point_read_options_;
  rocksdb::ColumnFamilyOptions data_cf_options_;
  // Wraps options.file_system when set; must outlive db_.
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  ColumnFamily shared_;
  // Dedicated column families found at Open, until their tenants take them.
  absl::flat_hash_map<uint64_t, ColumnFamily> found_dedicated_;
  // The degraded state. degraded_ is read on every write, without the lock.
  std::atomic<bool> degraded_{false};
  mutable absl::Mutex health_mu_;
  std::string degraded_reason_ ABSL_GUARDED_BY(health_mu_);
  std::string degraded_summary_ ABSL_GUARDED_BY(health_mu_);
  bool resuming_ ABSL_GUARDED_BY(health_mu_) = false;
  // False after a WAL error: only a reopen recovers (see ErrorListener).
  bool resumable_ ABSL_GUARDED_BY(health_mu_) = true;
  absl::Time last_resume_ ABSL_GUARDED_BY(health_mu_) = absl::InfinitePast();
#if TENANCY_THREAD_SANITIZER
  // RocksDB's group commit hands one thread's batch to another through
  // synchronisation that TSan cannot see in Debian's uninstrumented library;
  // TSan builds commit one batch at a time so reports are about our code.
  absl::Mutex tsan_commit_mu_;
#endif
};

// "tenant-<number>": the column family of a dedicated tenant.
std::string DedicatedColumnFamilyName(uint64_t number);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_STORAGE_H_
