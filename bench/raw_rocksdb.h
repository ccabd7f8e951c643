// The baseline the bench targets measure the engine against: a raw RocksDB
// configured like the engine's data column family (block cache size, bloom
// filter, index and filter blocks cached, memtable bloom, write buffer
// budget), so that a ratio measures the library, not a configuration.

#ifndef TENANCY_BENCH_RAW_ROCKSDB_H_
#define TENANCY_BENCH_RAW_ROCKSDB_H_

#include <memory>

#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_buffer_manager.h"
#include "tenancy/engine.h"

namespace tenancy::bench {

inline rocksdb::DBOptions RawDbOptions(const EngineOptions& engine) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = engine.background_jobs;
  db_options.max_total_wal_size = engine.max_total_wal_size;
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(engine.memtable_budget_bytes);
  db_options.keep_log_file_num = 5;
  return db_options;
}

inline rocksdb::ColumnFamilyOptions RawDataFamilyOptions(const EngineOptions& engine) {
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(engine.block_cache_bytes);
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table_options.cache_index_and_filter_blocks = true;
  table_options.pin_l0_filter_and_index_blocks_in_cache = true;
  rocksdb::ColumnFamilyOptions data_options;
  data_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  data_options.memtable_whole_key_filtering = true;
  data_options.memtable_prefix_bloom_size_ratio = 0.02;
  return data_options;
}

}  // namespace tenancy::bench

#endif  // TENANCY_BENCH_RAW_ROCKSDB_H_
