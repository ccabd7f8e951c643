#include "meta_records.h"

#include "coding.h"

namespace tenancy::internal {
namespace {

constexpr uint8_t kRecordVersion = 1;

void PutTime(std::string* dst, absl::Time t) {
  PutFixed64(dst, static_cast<uint64_t>(absl::ToUnixMicros(t)));
}

bool GetTime(std::string_view* input, absl::Time* t) {
  uint64_t micros;
  if (!GetFixed64(input, &micros)) return false;
  *t = absl::FromUnixMicros(static_cast<int64_t>(micros));
  return true;
}

std::string NumberKey(char prefix, uint64_t number) {
  std::string key(1, prefix);
  PutFixed64BigEndian(&key, number);
  return key;
}

class UsageMergeOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    int64_t bytes = 0, keys = 0;
    if (existing != nullptr &&
        !DecodeUsageDelta(std::string_view(existing->data(), existing->size()), &bytes, &keys)) {
      return false;
    }
    int64_t add_bytes, add_keys;
    if (!DecodeUsageDelta(std::string_view(value.data(), value.size()), &add_bytes, &add_keys)) {
      return false;
    }
    *new_value = EncodeUsageDelta(bytes + add_bytes, keys + add_keys);
    return true;
  }
  const char* Name() const override { return "tenancy.UsageAdd"; }
};

}  // namespace

std::string TenantRecordKey(std::string_view id) {
  std::string key(1, kTenantKeyPrefix);
  key.append(id.data(), id.size());
  return key;
}

std::string ApiKeyRecordKey(const std::array<uint8_t, 32>& digest) {
  std::string key(1, kApiKeyPrefix);
  key.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return key;
}

std::string UsageKey(uint64_t number) { return NumberKey(kUsageKeyPrefix, number); }

std::string RequestsKey(uint64_t number) { return NumberKey(kRequestsKeyPrefix, number); }

std::string AbandonedRangeKey(uint64_t number) {
  return NumberKey(kAbandonedRangeKeyPrefix, number);
}

std::string EncodeTenantRecord(const TenantRecord& r) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutVarint64(&out, r.number);
  PutLengthPrefixed(&out, r.spec.id);
  const Quota& q = r.spec.quota;
  PutVarint64(&out, q.storage_bytes);
  PutVarint64(&out, q.max_keys);
  PutVarint64(&out, q.max_value_bytes);
  PutDouble(&out, q.requests_per_second);
  PutDouble(&out, q.burst);
  PutVarint64(&out, q.max_queued_jobs);
  PutVarint64(&out, q.cache_bytes);
  PutVarint64(&out, r.spec.limits.size());
  for (const auto& [name, limit] : r.spec.limits) {
    PutLengthPrefixed(&out, name);
    PutVarint64(&out, static_cast<uint64_t>(limit));
  }
  out.push_back(static_cast<char>(r.spec.placement));
  uint8_t flags = (r.spec.enabled ? 1 : 0) | (r.spec.read_only ? 2 : 0) | (r.deleting ? 4 : 0);
  out.push_back(static_cast<char>(flags));
  PutVarint64(&out, r.spec.labels.size());
  for (const auto& [name, value] : r.spec.labels) {
    PutLengthPrefixed(&out, name);
    PutLengthPrefixed(&out, value);
  }
  PutTime(&out, r.created_at);
  PutTime(&out, r.updated_at);
  return out;
}

bool DecodeTenantRecord(std::string_view in, TenantRecord* r) {
  uint8_t version;
  if (!GetByte(&in, &version) || version != kRecordVersion) return false;
  Quota& q = r->spec.quota;
  uint64_t count;
  if (!GetVarint64(&in, &r->number) || !GetLengthPrefixed(&in, &r->spec.id) ||
      !GetVarint64(&in, &q.storage_bytes) || !GetVarint64(&in, &q.max_keys) ||
      !GetVarint64(&in, &q.max_value_bytes) || !GetDouble(&in, &q.requests_per_second) ||
      !GetDouble(&in, &q.burst) || !GetVarint64(&in, &q.max_queued_jobs) ||
      !GetVarint64(&in, &q.cache_bytes) || !GetVarint64(&in, &count)) {
    return false;
  }
  r->spec.limits.clear();
  for (uint64_t i = 0; i < count; ++i) {
    std::string name;
    uint64_t limit;
    if (!GetLengthPrefixed(&in, &name) || !GetVarint64(&in, &limit)) return false;
    r->spec.limits[name] = static_cast<int64_t>(limit);
  }
  uint8_t placement, flags;
  if (!GetByte(&in, &placement) || placement > 1 || !GetByte(&in, &flags)) {
    return false;
  }
  r->spec.placement = static_cast<Placement>(placement);
  r->spec.enabled = (flags & 1) != 0;
  r->spec.read_only = (flags & 2) != 0;
  r->deleting = (flags & 4) != 0;
  if (!GetVarint64(&in, &count)) return false;
  r->spec.labels.clear();
  for (uint64_t i = 0; i < count; ++i) {
    std::string name, value;
    if (!GetLengthPrefixed(&in, &name) || !GetLengthPrefixed(&in, &value)) {
      return false;
    }
    r->spec.labels[name] = value;
  }
  return GetTime(&in, &r->created_at) && GetTime(&in, &r->updated_at) && in.empty();
}

std::string EncodeApiKeyRecord(const ApiKeyRecord& r) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutVarint64(&out, r.number);
  PutLengthPrefixed(&out, r.tenant_id);
  PutLengthPrefixed(&out, r.key_id);
  PutLengthPrefixed(&out, r.prefix);
  PutTime(&out, r.created_at);
  return out;
}

bool DecodeApiKeyRecord(std::string_view in, ApiKeyRecord* r) {
  uint8_t version;
  return GetByte(&in, &version) && version == kRecordVersion && GetVarint64(&in, &r->number) &&
         GetLengthPrefixed(&in, &r->tenant_id) && GetLengthPrefixed(&in, &r->key_id) &&
         GetLengthPrefixed(&in, &r->prefix) && GetTime(&in, &r->created_at) && in.empty();
}

std::string EncodeUsageDelta(int64_t bytes, int64_t keys) {
  std::string out;
  PutFixed64(&out, static_cast<uint64_t>(bytes));
  PutFixed64(&out, static_cast<uint64_t>(keys));
  return out;
}

bool DecodeUsageDelta(std::string_view in, int64_t* bytes, int64_t* keys) {
  uint64_t b, k;
  if (!GetFixed64(&in, &b) || !GetFixed64(&in, &k) || !in.empty()) return false;
  *bytes = static_cast<int64_t>(b);
  *keys = static_cast<int64_t>(k);
  return true;
}

std::shared_ptr<rocksdb::MergeOperator> NewUsageMergeOperator() {
  return std::make_shared<UsageMergeOperator>();
}

std::string EncodeRequestsRecord(const RequestsRecord& r) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  PutVarint64(&out, static_cast<uint64_t>(r.day));
  PutVarint64(&out, r.calls_today);
  PutVarint64(&out, static_cast<uint64_t>(r.last_active_ms));
  return out;
}

bool DecodeRequestsRecord(std::string_view in, RequestsRecord* r) {
  uint8_t version;
  uint64_t day, last;
  if (!GetByte(&in, &version) || version != kRecordVersion || !GetVarint64(&in, &day) ||
      !GetVarint64(&in, &r->calls_today) || !GetVarint64(&in, &last) || !in.empty()) {
    return false;
  }
  r->day = static_cast<int64_t>(day);
  r->last_active_ms = static_cast<int64_t>(last);
  return true;
}

}  // namespace tenancy::internal
