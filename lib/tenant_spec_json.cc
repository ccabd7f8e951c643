// The tenant spec format (tenancy/tenant_spec_json.h), read strictly: one
// reader for the admin API and the tenants file.

#include "tenancy/tenant_spec_json.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "json_reader.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/config_file.h"
#include "tenant_spec_reader.h"

namespace tenancy {
namespace internal {
namespace {

constexpr double kBytesPerMb = 1048576.0;
constexpr uint64_t kMaxLimit = 1'000'000'000;

}  // namespace

absl::StatusOr<ConcurrencyLimits> ReadLimits(simdjson::dom::object object, const Path& path,
                                             const ErrorBuilder& errors) {
  ConcurrencyLimits limits;
  std::map<std::string, size_t> seen;
  for (auto member : object) {
    std::string name(member.key);
    Path at = Child(path, name, seen[name]++);
    if (absl::Status s = Limiter::ValidateClassName(name); !s.ok()) {
      return errors.At(at, StrCat("not a valid limit class: ", s.message()));
    }
    std::optional<uint64_t> n = FieldReader::AsUint(member.value);
    if (!n.has_value() || *n > kMaxLimit) {
      return errors.At(at, "must be an integer in [0, 1000000000]");
    }
    if (!limits.emplace(name, static_cast<int64_t>(*n)).second) {
      return errors.At(at, "given twice");
    }
  }
  return limits;
}

namespace {

absl::StatusOr<uint64_t> MbToBytes(FieldReader& r, std::string_view field, double mb) {
  if (mb > 8.0e12) return r.Error(field, "is too large");
  return static_cast<uint64_t>(std::llround(mb * kBytesPerMb));
}

absl::Status ParseQuota(simdjson::dom::object object, const Path& path, const ErrorBuilder& errors,
                        Quota* quota, bool* storage_given) {
  FieldReader r(object, path, errors);
  TENANCY_ASSIGN_OR_RETURN(auto storage_mb, r.NonNegativeNumber("storage_mb"));
  TENANCY_ASSIGN_OR_RETURN(auto storage_bytes, r.Uint("storage_bytes"));
  TENANCY_ASSIGN_OR_RETURN(auto max_keys, r.Uint("max_keys"));
  TENANCY_ASSIGN_OR_RETURN(auto max_value_bytes, r.Uint("max_value_bytes"));
  TENANCY_ASSIGN_OR_RETURN(auto rps, r.NonNegativeNumber("requests_per_second"));
  TENANCY_ASSIGN_OR_RETURN(auto burst, r.NonNegativeNumber("burst"));
  TENANCY_ASSIGN_OR_RETURN(auto max_queued_jobs, r.Uint("max_queued_jobs"));
  TENANCY_ASSIGN_OR_RETURN(auto cache_mb, r.NonNegativeNumber("cache_mb"));
  TENANCY_ASSIGN_OR_RETURN(auto cache_bytes, r.Uint("cache_bytes"));
  TENANCY_RETURN_IF_ERROR(r.Finish());
  if (storage_mb.has_value() && storage_bytes.has_value()) {
    return r.Error("storage_bytes", "give storage_mb or storage_bytes, not both");
  }
  if (cache_mb.has_value() && cache_bytes.has_value()) {
    return r.Error("cache_bytes", "give cache_mb or cache_bytes, not both");
  }
  if (storage_mb.has_value()) {
    TENANCY_ASSIGN_OR_RETURN(quota->storage_bytes, MbToBytes(r, "storage_mb", *storage_mb));
  }
  if (storage_bytes.has_value()) quota->storage_bytes = *storage_bytes;
  *storage_given = storage_mb.has_value() || storage_bytes.has_value();
  if (max_keys.has_value()) quota->max_keys = *max_keys;
  if (max_value_bytes.has_value()) quota->max_value_bytes = *max_value_bytes;
  if (rps.has_value()) {
    if (*rps > 1e9) return r.Error("requests_per_second", "must be at most 1e9");
    quota->requests_per_second = *rps;
  }
  if (burst.has_value()) {
    if (*burst > 1e9) return r.Error("burst", "must be at most 1e9");
    quota->burst = *burst;
  }
  if (max_queued_jobs.has_value()) quota->max_queued_jobs = *max_queued_jobs;
  if (cache_mb.has_value()) {
    TENANCY_ASSIGN_OR_RETURN(quota->cache_bytes, MbToBytes(r, "cache_mb", *cache_mb));
  }
  if (cache_bytes.has_value()) quota->cache_bytes = *cache_bytes;
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadSpecFields(FieldReader& r, const ErrorBuilder& errors, SpecOrigin origin,
                            TenantSpec* out) {
  TenantSpec& spec = *out;
  TENANCY_ASSIGN_OR_RETURN(auto quota_mb, r.NonNegativeNumber("quota_mb"));
  TENANCY_ASSIGN_OR_RETURN(auto quota, r.Object("quota"));
  bool storage_given = false;
  if (quota.has_value()) {
    TENANCY_RETURN_IF_ERROR(
        ParseQuota(*quota, r.PathOf("quota"), errors, &spec.quota, &storage_given));
  }
  if (quota_mb.has_value()) {
    if (storage_given) {
      return r.Error("quota_mb", "give quota_mb or quota.storage_mb, not both");
    }
    TENANCY_ASSIGN_OR_RETURN(spec.quota.storage_bytes, MbToBytes(r, "quota_mb", *quota_mb));
  }

  TENANCY_ASSIGN_OR_RETURN(auto limits, r.Object("limits"));
  if (limits.has_value()) {
    TENANCY_ASSIGN_OR_RETURN(spec.limits, ReadLimits(*limits, r.PathOf("limits"), errors));
  }

  TENANCY_ASSIGN_OR_RETURN(auto placement, r.String("placement"));
  if (placement.has_value()) {
    if (*placement == "shared") {
      spec.placement = Placement::kShared;
    } else if (*placement == "dedicated") {
      spec.placement = Placement::kDedicated;
    } else {
      return r.Error("placement", "must be \"shared\" or \"dedicated\"");
    }
  }
  TENANCY_ASSIGN_OR_RETURN(auto enabled, r.Bool("enabled"));
  if (enabled.has_value()) spec.enabled = *enabled;
  TENANCY_ASSIGN_OR_RETURN(auto read_only, r.Bool("read_only"));
  if (read_only.has_value()) spec.read_only = *read_only;

  TENANCY_ASSIGN_OR_RETURN(auto labels, r.Object("labels"));
  if (labels.has_value()) {
    Path labels_path = r.PathOf("labels");
    std::map<std::string, size_t> seen;
    for (auto member : *labels) {
      std::string name(member.key);
      Path at = Child(labels_path, name, seen[name]++);
      std::string_view value;
      if (member.value.get_string().get(value)) {
        return errors.At(at, "must be a string");
      }
      if (name.empty() || name.size() > 128 || value.size() > 1024) {
        return errors.At(at, "label names must be 1 to 128 bytes, values at most 1024");
      }
      if (origin == SpecOrigin::kTenantsFile && name == kManagedByLabel) {
        return errors.At(at, "reserved: the tenants file sets it on the tenants it manages");
      }
      if (!spec.labels.emplace(name, std::string(value)).second) {
        return errors.At(at, "given twice");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace internal

absl::StatusOr<TenantSpec> ParseTenantSpecJson(std::string_view json,
                                               std::optional<std::string_view> id) {
  using internal::ErrorBuilder;
  using internal::FieldReader;
  using internal::Path;
  using internal::StrCat;
  if (json.data() == nullptr || json.empty()) json = "{}";
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (simdjson::error_code error = parser.parse(json.data(), json.size()).get(root)) {
    internal::JsonScanner scanner(json);
    return absl::InvalidArgumentError(
        StrCat("spec: not valid JSON: ", simdjson::error_message(error),
               internal::LineAndColumn(json, scanner.FirstError())));
  }
  ErrorBuilder errors(json, "spec");
  simdjson::dom::object object;
  if (root.get_object().get(object)) return errors.At(Path{}, "must be a JSON object");
  FieldReader r(object, Path{}, errors);
  TenantSpec spec;
  TENANCY_ASSIGN_OR_RETURN(auto tenant_id, r.String("tenant_id"));
  TENANCY_ASSIGN_OR_RETURN(auto alias, r.String("id"));
  if (tenant_id.has_value() && alias.has_value() && *tenant_id != *alias) {
    return r.Error("id", "differs from \"tenant_id\"");
  }
  std::optional<std::string_view> named = tenant_id.has_value() ? tenant_id : alias;
  const char* field = tenant_id.has_value() ? "tenant_id" : "id";
  if (named.has_value() && id.has_value() && *named != *id) {
    return r.Error(field, StrCat("names another tenant than the one addressed (\"", *id, "\")"));
  }
  if (!named.has_value() && !id.has_value()) {
    return errors.At(Path{}, "\"tenant_id\" is required");
  }
  spec.id = std::string(named.has_value() ? *named : *id);
  if (!ValidateTenantId(spec.id).ok()) {
    return r.Error(field,
                   "is not a valid tenant id (a DNS label: 1 to 63 of [a-z0-9-], "
                   "not starting or ending with '-')");
  }
  TENANCY_RETURN_IF_ERROR(internal::ReadSpecFields(r, errors, internal::SpecOrigin::kApi, &spec));
  TENANCY_RETURN_IF_ERROR(r.Finish());
  return spec;
}

namespace {

// A JSON string: the text came from JSON or from code (ids, class names,
// labels), so it is UTF-8; only quotes, backslashes and control bytes need
// escaping.
void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += ch;
    }
  }
  out += '"';
}

// Enough digits that the double reads back equal.
std::string ExactDouble(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

}  // namespace

std::string TenantSpecToJson(const TenantSpec& spec) {
  using internal::StrCat;
  std::string out = "{\"tenant_id\":";
  AppendJsonString(out, spec.id);
  const Quota& q = spec.quota;
  out += StrCat(",\"quota\":{\"storage_bytes\":", q.storage_bytes, ",\"max_keys\":", q.max_keys,
                ",\"max_value_bytes\":", q.max_value_bytes,
                ",\"requests_per_second\":", ExactDouble(q.requests_per_second),
                ",\"burst\":", ExactDouble(q.burst), ",\"max_queued_jobs\":", q.max_queued_jobs,
                ",\"cache_bytes\":", q.cache_bytes, "},\"limits\":{");
  bool first = true;
  for (const auto& [name, value] : spec.limits) {
    if (!first) out += ',';
    first = false;
    AppendJsonString(out, name);
    out += StrCat(":", value);
  }
  out += StrCat("},\"placement\":\"", PlacementName(spec.placement),
                "\",\"enabled\":", spec.enabled ? "true" : "false",
                ",\"read_only\":", spec.read_only ? "true" : "false", ",\"labels\":{");
  first = true;
  for (const auto& [name, value] : spec.labels) {
    if (!first) out += ',';
    first = false;
    AppendJsonString(out, name);
    out += ':';
    AppendJsonString(out, value);
  }
  out += "}}";
  return out;
}

}  // namespace tenancy
