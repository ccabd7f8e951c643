// A plain single-tenant RocksDB directory, as a program that is not this
// library writes one (data in the `default` column family), and raw counts
// of what a directory holds, for the adoption tests.

#ifndef TENANCY_TESTS_PLAIN_ROCKSDB_H_
#define TENANCY_TESTS_PLAIN_ROCKSDB_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rocksdb/db.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/write_batch.h"

namespace tenancy::testing {

// Key i of the plain directory: the empty key, a binary key, then keys of
// 8 to 47 bytes.
inline std::string PlainKey(int i) {
  if (i == 0) return "";
  if (i == 1) return std::string("\0\xff", 2);
  char head[16];
  std::snprintf(head, sizeof(head), "k%07d", i);
  return std::string(head) + std::string(i % 40, 'x');
}

// Value i: 0 to 599 bytes that start with i.
inline std::string PlainValue(int i) {
  size_t size = (static_cast<size_t>(i) * 7919) % 600;
  std::string value = std::to_string(i) + std::string(size, static_cast<char>('a' + i % 26));
  value.resize(size);
  return value;
}

// Writes keys [0, n) to `default` of a new RocksDB directory at `path`, and
// creates the column families `extra` (empty). Returns the sum of key and
// value sizes, or -1 on error.
inline int64_t MakePlainDb(const std::string& path, int n,
                           const std::vector<std::string>& extra = {},
                           const rocksdb::Comparator* comparator = nullptr) {
  rocksdb::Options options;
  options.create_if_missing = true;
  if (comparator != nullptr) options.comparator = comparator;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(options, path, &raw).ok()) return -1;
  std::unique_ptr<rocksdb::DB> db(raw);
  for (const std::string& name : extra) {
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    if (!db->CreateColumnFamily(options, name, &handle).ok()) return -1;
    db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  int64_t bytes = 0;
  rocksdb::WriteBatch batch;
  for (int i = 0; i < n; ++i) {
    std::string key = PlainKey(i), value = PlainValue(i);
    bytes += static_cast<int64_t>(key.size() + value.size());
    batch.Put(key, value).PermitUncheckedError();
    if (batch.Count() == 1000 || i + 1 == n) {
      if (!db->Write(rocksdb::WriteOptions(), &batch).ok()) return -1;
      batch.Clear();
    }
  }
  if (!db->Close().ok()) return -1;
  return bytes;
}

// The column families of the directory at `path`.
inline std::vector<std::string> ColumnFamilies(const std::string& path) {
  std::vector<std::string> names;
  rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).PermitUncheckedError();
  return names;
}

// Any merge operator: replaying the engine's WAL needs one for its ledger
// operands (without, read-only recovery stops at the first one it cannot
// apply and silently shows an older state). The ledger itself is not read.
class KeepLastMerge final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice*, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    new_value->assign(value.data(), value.size());
    return true;
  }
  const char* Name() const override { return "KeepLastMerge"; }
};

// Keys per column family (by name), read-only; -1 for each on error.
inline std::vector<std::pair<std::string, int64_t>> RawKeyCounts(const std::string& path) {
  std::vector<std::string> names = ColumnFamilies(path);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  rocksdb::ColumnFamilyOptions family_options;
  family_options.merge_operator = std::make_shared<KeepLastMerge>();
  for (const std::string& name : names) descriptors.emplace_back(name, family_options);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  std::vector<std::pair<std::string, int64_t>> counts;
  if (!rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), path, descriptors, &handles, &raw).ok()) {
    for (const std::string& name : names) counts.emplace_back(name, -1);
    return counts;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    int64_t n = 0;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handle));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    counts.emplace_back(handle->GetName(), it->status().ok() ? n : -1);
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  return counts;
}

inline int64_t RawKeyCount(const std::string& path, const std::string& family) {
  for (const auto& [name, n] : RawKeyCounts(path)) {
    if (name == family) return n;
  }
  return -1;
}

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_PLAIN_ROCKSDB_H_
