#include "adoption.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine_parts.h"
#include "rocksdb/convenience.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

// A batch is bounded both ways: many small keys or a few large values.
constexpr size_t kBatchKeys = 1000;
constexpr size_t kBatchBytes = size_t{4} << 20;
// A progress line per this many keys moved.
constexpr uint64_t kProgressKeys = 50000;

// A key as a log line or error can show it: escaped, at most 64 bytes.
std::string Printable(const rocksdb::Slice& key) {
  constexpr size_t kShown = 64;
  std::string out = absl::CHexEscape(absl::string_view(key.data(), std::min(key.size(), kShown)));
  if (key.size() > kShown) out += "...";
  return out;
}

rocksdb::ReadOptions ScanOptions() {
  rocksdb::ReadOptions options;
  options.fill_cache = false;  // read once
  return options;
}

uint64_t SstBytes(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family) {
  uint64_t bytes = 0;
  db->GetIntProperty(family, rocksdb::DB::Properties::kTotalSstFilesSize, &bytes);
  return bytes;
}

// One pass over `default` before anything moves, so that a key adoption
// must refuse stops it before it starts rather than half way.
absl::Status CheckSizes(EngineParts& p, uint64_t* keys, uint64_t* bytes) {
  const std::string& id = p.options.adopt_existing_data;
  std::unique_ptr<rocksdb::Iterator> it(
      p.storage->db()->NewIterator(ScanOptions(), p.storage->default_family()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rocksdb::Slice key = it->key();
    size_t value_size = it->value().size();
    std::string problem;
    if (key.size() > p.options.max_key_bytes) {
      problem = absl::StrFormat("key of %d bytes is over max_key_bytes (%d)", key.size(),
                                p.options.max_key_bytes);
    } else if (value_size > p.options.max_value_bytes) {
      problem = absl::StrFormat("its value of %d bytes is over max_value_bytes (%d)", value_size,
                                p.options.max_value_bytes);
    }
    if (!problem.empty()) {
      std::string message =
          StrCat("engine: adopt_existing_data \"", id, "\": key \"", Printable(key),
                 "\": ", problem, "; nothing was moved (raise the limit to adopt it)");
      p.logger().Log(LogLevel::kError, message);
      return MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge, message);
    }
    ++*keys;
    *bytes += key.size() + value_size;
  }
  return FromRocksStatus(it->status(), StrCat("engine: adopt_existing_data \"", id, "\": scan"));
}

// The tenant adopted into: created with the default spec when absent.
absl::StatusOr<std::shared_ptr<TenantSlot>> TargetTenant(EngineParts& p) {
  const std::string& id = p.options.adopt_existing_data;
  auto slot = p.catalog->FindLive(id);
  if (slot.ok() || !absl::IsNotFound(slot.status())) return slot;
  TenantSpec spec;
  spec.id = id;
  TENANCY_RETURN_IF_ERROR(p.catalog->Create({spec}).status());
  p.logger().Log(LogLevel::kInfo,
                 StrCat("engine: adopt_existing_data: created tenant \"", id, "\""));
  return p.catalog->FindLive(id);
}

// `default` still holds every value under a tombstone until a compaction
// reaches it, which may be never (nothing writes to it again): the old copy
// would double the disk used. REQUIRES: `default` holds no live key.
absl::Status Reclaim(EngineParts& p) {
  rocksdb::DB* db = p.storage->db();
  rocksdb::ColumnFamilyHandle* source = p.storage->default_family();
  const std::string& id = p.options.adopt_existing_data;
  const absl::Time start = absl::Now();
  const uint64_t before = SstBytes(db, source);
  if (before == 0) return absl::OkStatus();
  std::string context = StrCat("engine: adopt_existing_data \"", id, "\": reclaim space");
  // The files dropped below hold the only other copy of what the moves
  // wrote, so the moves are made durable first. Dropping every file below
  // L0 (DeleteFilesInRange keeps L0) cannot bring a key back: for each key
  // the newest entry is a tombstone, and it is either dropped with every
  // older entry or kept in L0 or the memtable.
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(db->FlushWAL(/*sync=*/true), context));
  TENANCY_RETURN_IF_ERROR(FromRocksStatus(
      rocksdb::DeleteFilesInRange(db, source, nullptr, nullptr, /*include_end=*/true), context));
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  TENANCY_RETURN_IF_ERROR(
      FromRocksStatus(db->CompactRange(compact, source, nullptr, nullptr), context));
  p.logger().Log(LogLevel::kInfo,
                 absl::StrFormat("engine: adopt_existing_data \"%s\": default column family "
                                 "files %d -> %d bytes in %.1f s",
                                 id, before, SstBytes(db, source),
                                 absl::ToDoubleSeconds(absl::Now() - start)));
  return absl::OkStatus();
}

}  // namespace

absl::Status AdoptExistingData(EngineParts& p) {
  rocksdb::DB* db = p.storage->db();
  rocksdb::ColumnFamilyHandle* source = p.storage->default_family();
  const std::string& id = p.options.adopt_existing_data;
  bool any = false;
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ScanOptions(), source));
    it->SeekToFirst();
    any = it->Valid();
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(it->status(), "engine: read default column family"));
  }
  if (id.empty()) {
    if (any) {
      p.logger().Log(LogLevel::kWarning,
                     StrCat("engine: ", p.options.path,
                            " holds data in RocksDB's default column family, which this library "
                            "did not write and does not serve; to move it into a tenant, set "
                            "EngineOptions::adopt_existing_data (tenancyd "
                            "--adopt-existing-data ID)"));
    }
    return absl::OkStatus();
  }
  if (!any) {
    p.logger().Log(LogLevel::kInfo, StrCat("engine: adopt_existing_data \"", id,
                                           "\": the default column family is empty; nothing "
                                           "to adopt"));
    // A crash after the last move and before the space was reclaimed.
    return Reclaim(p);
  }

  const absl::Time start = absl::Now();
  uint64_t total_keys = 0, total_bytes = 0;
  TENANCY_RETURN_IF_ERROR(CheckSizes(p, &total_keys, &total_bytes));
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<TenantSlot> slot, TargetTenant(p));
  p.logger().Log(LogLevel::kInfo,
                 absl::StrFormat("engine: adopt_existing_data \"%s\": moving %d keys (%d bytes) "
                                 "from the default column family into the tenant",
                                 id, total_keys, total_bytes));

  uint64_t moved_keys = 0, moved_bytes = 0, next_progress = kProgressKeys;
  std::vector<std::string> keys, values;
  size_t batch_bytes = 0;
  auto move_batch = [&]() -> absl::Status {
    std::vector<LedgerOp> puts(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      puts[i].key = keys[i];
      puts[i].value = values[i];
    }
    TENANCY_RETURN_IF_ERROR(p.ledger->Import(*slot, puts, source));
    moved_keys += keys.size();
    moved_bytes += batch_bytes;
    keys.clear();
    values.clear();
    batch_bytes = 0;
    if (moved_keys >= next_progress) {
      next_progress = moved_keys + kProgressKeys;
      p.logger().Log(LogLevel::kInfo,
                     absl::StrFormat("engine: adopt_existing_data \"%s\": progress: %d of %d "
                                     "keys moved (%d bytes, %.1f s)",
                                     id, moved_keys, total_keys, moved_bytes,
                                     absl::ToDoubleSeconds(absl::Now() - start)));
    }
    return absl::OkStatus();
  };
  {
    // The iterator's implicit snapshot does not see the deletes of the
    // batches already moved, so it walks every key once.
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ScanOptions(), source));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      keys.push_back(it->key().ToString());
      values.push_back(it->value().ToString());
      batch_bytes += keys.back().size() + values.back().size();
      if (keys.size() >= kBatchKeys || batch_bytes >= kBatchBytes) {
        TENANCY_RETURN_IF_ERROR(move_batch());
      }
    }
    TENANCY_RETURN_IF_ERROR(FromRocksStatus(
        it->status(), StrCat("engine: adopt_existing_data \"", id, "\": read default")));
  }
  if (!keys.empty()) TENANCY_RETURN_IF_ERROR(move_batch());
  p.logger().Log(
      LogLevel::kInfo,
      absl::StrFormat("engine: adopt_existing_data \"%s\": done: %d keys moved (%d "
                      "bytes) in %.1f s",
                      id, moved_keys, moved_bytes, absl::ToDoubleSeconds(absl::Now() - start)));

  return Reclaim(p);
}

}  // namespace tenancy::internal
