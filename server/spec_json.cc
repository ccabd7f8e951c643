#include "spec_json.h"

#include <cmath>

#include "text.h"

namespace tenancy::internal {
namespace {

absl::Status Invalid(std::string message) {
  return absl::InvalidArgumentError(std::move(message));
}

// Limit class names as the limiter accepts them: 1 to 8 '/'-separated
// segments of [A-Za-z0-9_.-], at most 255 bytes.
bool IsValidClassName(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  int segments = 1;
  bool empty_segment = true;
  for (char c : name) {
    if (c == '/') {
      if (empty_segment) return false;
      empty_segment = true;
      ++segments;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
    empty_segment = false;
  }
  return !empty_segment && segments <= 8;
}

absl::StatusOr<uint64_t> MbToBytes(double mb, std::string_view field) {
  if (mb > 8.0e12) return Invalid(Cat("spec: ", field, " is too large"));
  return static_cast<uint64_t>(std::llround(mb * kBytesPerMb));
}

#define SPEC_ASSIGN_OR_RETURN(lhs, expr) \
  auto lhs##_or = (expr);                \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *lhs##_or

absl::Status ParseQuota(simdjson::dom::object object, Quota* quota,
                        bool* storage_given) {
  JsonObjectReader r(object, "quota");
  SPEC_ASSIGN_OR_RETURN(storage_mb, r.OptionalNonNegativeNumber("storage_mb"));
  SPEC_ASSIGN_OR_RETURN(storage_bytes, r.OptionalUint("storage_bytes"));
  SPEC_ASSIGN_OR_RETURN(max_keys, r.OptionalUint("max_keys"));
  SPEC_ASSIGN_OR_RETURN(max_value_bytes, r.OptionalUint("max_value_bytes"));
  SPEC_ASSIGN_OR_RETURN(rps, r.OptionalNonNegativeNumber("requests_per_second"));
  SPEC_ASSIGN_OR_RETURN(burst, r.OptionalNonNegativeNumber("burst"));
  SPEC_ASSIGN_OR_RETURN(max_queued_jobs, r.OptionalUint("max_queued_jobs"));
  SPEC_ASSIGN_OR_RETURN(cache_mb, r.OptionalNonNegativeNumber("cache_mb"));
  SPEC_ASSIGN_OR_RETURN(cache_bytes, r.OptionalUint("cache_bytes"));
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  if (storage_mb.has_value() && storage_bytes.has_value()) {
    return Invalid("quota: give storage_mb or storage_bytes, not both");
  }
  if (cache_mb.has_value() && cache_bytes.has_value()) {
    return Invalid("quota: give cache_mb or cache_bytes, not both");
  }
  if (storage_mb.has_value()) {
    SPEC_ASSIGN_OR_RETURN(bytes, MbToBytes(*storage_mb, "quota.storage_mb"));
    quota->storage_bytes = bytes;
  }
  if (storage_bytes.has_value()) quota->storage_bytes = *storage_bytes;
  *storage_given = storage_mb.has_value() || storage_bytes.has_value();
  if (max_keys.has_value()) quota->max_keys = *max_keys;
  if (max_value_bytes.has_value()) quota->max_value_bytes = *max_value_bytes;
  if (rps.has_value()) {
    if (*rps > 1e9) return Invalid("quota: requests_per_second is too large");
    quota->requests_per_second = *rps;
  }
  if (burst.has_value()) {
    if (*burst > 1e9) return Invalid("quota: burst is too large");
    quota->burst = *burst;
  }
  if (max_queued_jobs.has_value()) quota->max_queued_jobs = *max_queued_jobs;
  if (cache_mb.has_value()) {
    SPEC_ASSIGN_OR_RETURN(bytes, MbToBytes(*cache_mb, "quota.cache_mb"));
    quota->cache_bytes = bytes;
  }
  if (cache_bytes.has_value()) quota->cache_bytes = *cache_bytes;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TenantSpec> ParseTenantSpec(
    simdjson::dom::object object, std::optional<std::string_view> path_id) {
  JsonObjectReader r(object, "spec");
  TenantSpec spec;
  SPEC_ASSIGN_OR_RETURN(tenant_id, r.OptionalString("tenant_id"));
  SPEC_ASSIGN_OR_RETURN(id, r.OptionalString("id"));
  if (tenant_id.has_value() && id.has_value() && *tenant_id != *id) {
    return Invalid("spec: tenant_id and id differ");
  }
  std::optional<std::string_view> body_id = tenant_id.has_value() ? tenant_id : id;
  if (path_id.has_value()) {
    if (body_id.has_value() && *body_id != *path_id) {
      return Invalid("spec: tenant_id does not match the URL");
    }
    spec.id = std::string(*path_id);
  } else {
    if (!body_id.has_value()) return Invalid("spec: tenant_id is required");
    spec.id = std::string(*body_id);
  }
  if (absl::Status s = ValidateTenantId(spec.id); !s.ok()) return s;

  SPEC_ASSIGN_OR_RETURN(quota_mb, r.OptionalNonNegativeNumber("quota_mb"));
  SPEC_ASSIGN_OR_RETURN(quota, r.OptionalObject("quota"));
  bool storage_given = false;
  if (quota.has_value()) {
    if (absl::Status s = ParseQuota(*quota, &spec.quota, &storage_given); !s.ok()) {
      return s;
    }
  }
  if (quota_mb.has_value()) {
    if (storage_given) {
      return Invalid("spec: give quota_mb or quota.storage_mb, not both");
    }
    SPEC_ASSIGN_OR_RETURN(bytes, MbToBytes(*quota_mb, "quota_mb"));
    spec.quota.storage_bytes = bytes;
  }

  SPEC_ASSIGN_OR_RETURN(limits, r.OptionalObject("limits"));
  if (limits.has_value()) {
    for (auto [name, value] : *limits) {
      if (!IsValidClassName(name)) {
        return Invalid(Cat("limits: bad class name \"", std::string_view(name), "\""));
      }
      uint64_t n;
      if (!value.is_uint64() || value.get_uint64().get(n) || n > 1'000'000'000) {
        return Invalid(Cat("limits: \"", std::string_view(name),
                           "\" must be an integer in [0, 1e9]"));
      }
      if (!spec.limits.emplace(std::string(name), static_cast<int64_t>(n)).second) {
        return Invalid(Cat("limits: \"", std::string_view(name), "\" given twice"));
      }
    }
  }

  SPEC_ASSIGN_OR_RETURN(placement, r.OptionalString("placement"));
  if (placement.has_value()) {
    if (*placement == "shared") {
      spec.placement = Placement::kShared;
    } else if (*placement == "dedicated") {
      spec.placement = Placement::kDedicated;
    } else {
      return Invalid("spec: placement must be \"shared\" or \"dedicated\"");
    }
  }
  SPEC_ASSIGN_OR_RETURN(enabled, r.OptionalBool("enabled"));
  if (enabled.has_value()) spec.enabled = *enabled;
  SPEC_ASSIGN_OR_RETURN(read_only, r.OptionalBool("read_only"));
  if (read_only.has_value()) spec.read_only = *read_only;

  SPEC_ASSIGN_OR_RETURN(labels, r.OptionalObject("labels"));
  if (labels.has_value()) {
    for (auto [name, value] : *labels) {
      std::string_view text;
      if (value.get_string().get(text)) {
        return Invalid(Cat("labels: \"", std::string_view(name), "\" must be a string"));
      }
      if (!spec.labels.emplace(std::string(name), std::string(text)).second) {
        return Invalid(Cat("labels: \"", std::string_view(name), "\" given twice"));
      }
    }
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return spec;
}

void WriteTime(JsonWriter& w, absl::Time t) {
  if (t == absl::InfinitePast()) {
    w.Null();
    return;
  }
  w.String(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone()));
}

void WriteQuota(JsonWriter& w, const Quota& q) {
  w.BeginObject()
      .Key("storage_mb").Double(static_cast<double>(q.storage_bytes) / kBytesPerMb)
      .Key("max_keys").Uint(q.max_keys)
      .Key("max_value_bytes").Uint(q.max_value_bytes)
      .Key("requests_per_second").Double(q.requests_per_second)
      .Key("burst").Double(q.burst)
      .Key("max_queued_jobs").Uint(q.max_queued_jobs)
      .Key("cache_mb").Double(static_cast<double>(q.cache_bytes) / kBytesPerMb)
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
  w.Key("burst").Double(q.requests_per_second > 0 && q.burst == 0
                            ? std::max(1.0, q.requests_per_second)
                            : q.burst);
  w.EndObject();
  w.Key("keys").BeginArray();
  for (const ApiKeyInfo& k : info.keys) {
    w.BeginObject().Key("key_id").String(k.key_id).Key("prefix").String(k.prefix);
    w.Key("created_at");
    WriteTime(w, k.created_at);
    w.EndObject();
  }
  w.EndArray();
  w.Key("usage").BeginObject()
      .Key("storage_used_bytes").Uint(info.usage.bytes)
      .Key("storage_used_mb").Double(static_cast<double>(info.usage.bytes) / kBytesPerMb)
      .Key("keys").Uint(info.usage.keys)
      .EndObject();
  w.Key("requests").BeginObject()
      .Key("calls_today").Uint(info.requests.calls_today)
      .Key("calls_total").Uint(info.requests.calls_total)
      .Key("last_active");
  WriteTime(w, info.requests.last_active);
  w.EndObject();
  w.EndObject();
}

void WriteTenantSummary(JsonWriter& w, const TenantInfo& info) {
  w.BeginObject()
      .Key("tenant_id").String(info.spec.id)
      .Key("state").String(TenantStateName(info.state))
      .Key("placement").String(PlacementName(info.spec.placement))
      .Key("quota_mb").Double(static_cast<double>(info.spec.quota.storage_bytes) / kBytesPerMb)
      .Key("storage_used_bytes").Uint(info.usage.bytes)
      .Key("keys").Uint(info.usage.keys)
      .Key("created_at");
  WriteTime(w, info.created_at);
  w.EndObject();
}

#undef SPEC_ASSIGN_OR_RETURN

}  // namespace tenancy::internal
