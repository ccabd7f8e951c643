// Records of the meta column family: tenants, the number counter, API key
// hashes, usage ledgers and request counters. Keys:
//
//   "N"                       next tenant number (fixed64)
//   "T" + id                  TenantRecord
//   "K" + sha256(secret)      ApiKeyRecord (the secret itself is never stored)
//   "U" + number (8 bytes BE) usage ledger: bytes, keys (merge operands add)
//   "R" + number (8 bytes BE) request counters
//   "P" + number (8 bytes BE) a data range no tenant owns, to be deleted at
//                             Open (an unfinished import, a replaced range)
//
// Record encodings start with a version byte so they can evolve.

#ifndef TENANCY_LIB_META_RECORDS_H_
#define TENANCY_LIB_META_RECORDS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "rocksdb/merge_operator.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

inline constexpr char kNextNumberKey[] = "N";
inline constexpr char kTenantKeyPrefix = 'T';
inline constexpr char kApiKeyPrefix = 'K';
inline constexpr char kUsageKeyPrefix = 'U';
inline constexpr char kRequestsKeyPrefix = 'R';
inline constexpr char kAbandonedRangeKeyPrefix = 'P';

std::string TenantRecordKey(std::string_view id);
std::string ApiKeyRecordKey(const std::array<uint8_t, 32>& digest);
std::string UsageKey(uint64_t number);
std::string RequestsKey(uint64_t number);
std::string AbandonedRangeKey(uint64_t number);

struct TenantRecord {
  TenantSpec spec;
  uint64_t number = 0;
  bool deleting = false;
  absl::Time created_at;
  absl::Time updated_at;
};
std::string EncodeTenantRecord(const TenantRecord& record);
bool DecodeTenantRecord(std::string_view input, TenantRecord* record);

struct ApiKeyRecord {
  uint64_t number = 0;
  std::string tenant_id;
  std::string key_id;
  std::string prefix;
  absl::Time created_at;
};
std::string EncodeApiKeyRecord(const ApiKeyRecord& record);
bool DecodeApiKeyRecord(std::string_view input, ApiKeyRecord* record);

// Usage ledger value and merge operand: two signed 64-bit integers.
std::string EncodeUsageDelta(int64_t bytes, int64_t keys);
bool DecodeUsageDelta(std::string_view input, int64_t* bytes, int64_t* keys);
// Adds usage operands, so every data write can carry its delta in its own
// batch without reading the ledger.
std::shared_ptr<rocksdb::MergeOperator> NewUsageMergeOperator();

struct RequestsRecord {
  int64_t day = 0;
  uint64_t calls_today = 0;
  int64_t last_active_ms = 0;
};
std::string EncodeRequestsRecord(const RequestsRecord& record);
bool DecodeRequestsRecord(std::string_view input, RequestsRecord* record);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_META_RECORDS_H_
