#include "spec_json.h"

#include <cmath>

#include "str_cat.h"

namespace tenancy::internal {

void WriteTime(JsonWriter& w, absl::Time t) {
  if (t == absl::InfinitePast()) {
    w.Null();
    return;
  }
  w.String(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone()));
}

void WriteQuota(JsonWriter& w, const Quota& q) {
  w.BeginObject()
      .Key("storage_mb")
      .Double(static_cast<double>(q.storage_bytes) / kBytesPerMb)
      .Key("max_keys")
      .Uint(q.max_keys)
      .Key("max_value_bytes")
      .Uint(q.max_value_bytes)
      .Key("requests_per_second")
      .Double(q.requests_per_second)
      .Key("burst")
      .Double(q.burst)
      .Key("max_queued_jobs")
      .Uint(q.max_queued_jobs)
      .Key("cache_mb")
      .Double(static_cast<double>(q.cache_bytes) / kBytesPerMb)
      .EndObject();
}

namespace {

void WriteSpec(JsonWriter& w, const TenantSpec& spec) {
  w.BeginObject();
  w.Key("tenant_id").String(spec.id);
  w.Key("quota");
  WriteQuota(w, spec.quota);
  w.Key("limits").BeginObject();
  for (const auto& [name, limit] : spec.limits) w.Key(name).Int(limit);
  w.EndObject();
  w.Key("placement").String(PlacementName(spec.placement));
  w.Key("enabled").Bool(spec.enabled);
  w.Key("read_only").Bool(spec.read_only);
  w.Key("labels").BeginObject();
  for (const auto& [name, value] : spec.labels) w.Key(name).String(value);
  w.EndObject();
  w.EndObject();
}

}  // namespace

void WriteTenantDetail(JsonWriter& w, const TenantInfo& info,
                       const std::map<std::string, int64_t>& effective_limits) {
  const Quota& q = info.spec.quota;
  w.BeginObject();
  w.Key("tenant_id").String(info.spec.id);
  w.Key("number").Uint(info.number);
  w.Key("state").String(TenantStateName(info.state));
  w.Key("created_at");
  WriteTime(w, info.created_at);
  w.Key("updated_at");
  WriteTime(w, info.updated_at);
  w.Key("spec");
  WriteSpec(w, info.spec);
  w.Key("effective_limits").BeginObject();
  w.Key("concurrency").BeginObject();
  for (const auto& [name, limit] : effective_limits) w.Key(name).Int(limit);
  w.EndObject();
  w.Key("requests_per_second").Double(q.requests_per_second);
  w.Key("burst").Double(
      q.requests_per_second > 0 && q.burst == 0 ? std::max(1.0, q.requests_per_second) : q.burst);
  w.EndObject();
  w.Key("keys").BeginArray();
  for (const ApiKeyInfo& k : info.keys) {
    w.BeginObject().Key("key_id").String(k.key_id).Key("prefix").String(k.prefix);
    w.Key("created_at");
    WriteTime(w, k.created_at);
    w.EndObject();
  }
  w.EndArray();
  w.Key("usage")
      .BeginObject()
      .Key("storage_used_bytes")
      .Uint(info.usage.bytes)
      .Key("storage_used_mb")
      .Double(static_cast<double>(info.usage.bytes) / kBytesPerMb)
      .Key("keys")
      .Uint(info.usage.keys)
      .EndObject();
  w.Key("requests")
      .BeginObject()
      .Key("calls_today")
      .Uint(info.requests.calls_today)
      .Key("calls_total")
      .Uint(info.requests.calls_total)
      .Key("last_active");
  WriteTime(w, info.requests.last_active);
  w.EndObject();
  w.EndObject();
}

void WriteTenantSummary(JsonWriter& w, const TenantInfo& info) {
  w.BeginObject()
      .Key("tenant_id")
      .String(info.spec.id)
      .Key("state")
      .String(TenantStateName(info.state))
      .Key("placement")
      .String(PlacementName(info.spec.placement))
      .Key("quota_mb")
      .Double(static_cast<double>(info.spec.quota.storage_bytes) / kBytesPerMb)
      .Key("storage_used_bytes")
      .Uint(info.usage.bytes)
      .Key("keys")
      .Uint(info.usage.keys)
      .Key("api_keys")
      .Uint(info.keys.size())
      .Key("api_calls_today")
      .Uint(info.requests.calls_today)
      .Key("last_active");
  WriteTime(w, info.requests.last_active);
  w.Key("requests_per_second").Double(info.spec.quota.requests_per_second);
  w.Key("limits").BeginObject();
  for (const auto& [name, limit] : info.spec.limits) w.Key(name).Int(limit);
  w.EndObject();
  w.Key("created_at");
  WriteTime(w, info.created_at);
  w.EndObject();
}

#undef SPEC_ASSIGN_OR_RETURN

}  // namespace tenancy::internal
