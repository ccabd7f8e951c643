// ConfigFile: parse, validate, diff and apply the tenants file, and watch it.
//
// Layout of this file:
//   JsonScanner      finds where a field path (or a syntax error) is in the
//                    text, for messages; simdjson does the parsing itself
//   FieldReader      strict reading of one JSON object: unknown and repeated
//                    fields refused, every error naming its path and line
//   ParseTenantsFile the file format (config_file.h)
//   ConfigFileRep    reading, the registry diff, limits, the watcher thread

#include "tenancy/config_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include <openssl/crypto.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api_key.h"
#include "simdjson.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/engine.h"
#include "tenancy/tenant_registry.h"

namespace tenancy {
namespace internal {
namespace {

constexpr double kBytesPerMb = 1048576.0;
constexpr uint64_t kMaxLimit = 1'000'000'000;
constexpr size_t kMinPlainKeyBytes = 16;
constexpr size_t kMaxPlainKeyBytes = 512;
// Key ids TenantRegistry::ImportApiKey{,Hash} gives: "imp-" + 12 hex digits
// of the key's SHA-256.
constexpr std::string_view kImportedKeyIdPrefix = "imp-";
// The watcher reads the file every this many polls even if stat() saw no
// change (mtime granularity, filesystems that do not update it), and retries
// an apply that failed after validation.
constexpr int kRereadPolls = 30;

std::string ImportedKeyId(std::string_view sha256_hex) {
  return StrCat(kImportedKeyIdPrefix, sha256_hex.substr(0, 12));
}

// ---------------------------------------------------------------------------
// Where things are in the text
// ---------------------------------------------------------------------------

// One step of a field path: an object member (by name, and which occurrence
// of that name) or an array element.
struct PathPart {
  std::string key;
  size_t index = 0;
  bool is_index = false;
  size_t occurrence = 0;
};
using Path = std::vector<PathPart>;

Path Child(Path path, std::string_view key, size_t occurrence = 0) {
  path.push_back(PathPart{std::string(key), 0, false, occurrence});
  return path;
}
Path Element(Path path, size_t index) {
  path.push_back(PathPart{"", index, true, 0});
  return path;
}

// "tenants[2].quota.storage_mb"; "the file" for the root.
std::string PathText(const Path& path) {
  std::string out;
  for (const PathPart& part : path) {
    if (part.is_index) {
      out += StrCat("[", part.index, "]");
    } else {
      if (!out.empty()) out += ".";
      out += part.key;
    }
  }
  return out.empty() ? "the file" : out;
}

// A small JSON scanner, only for telling the operator where something is:
// the text is parsed by simdjson, and this runs only to place an error.
class JsonScanner {
 public:
  static constexpr size_t kNone = std::string_view::npos;

  explicit JsonScanner(std::string_view text) : text_(text) {}

  // The offset of the value at `path` (for an object member, of its name), or
  // kNone if the path is not in the text.
  size_t Find(const Path& path) {
    pos_ = 0;
    return FindIn(path, 0, 0);
  }

  // The offset of the first syntax error, or kNone if the scanner finds none
  // (simdjson also refuses, e.g., invalid UTF-8).
  size_t FirstError() {
    pos_ = 0;
    SkipWs();
    if (!SkipValue(0)) return pos_;
    SkipWs();
    return pos_ == text_.size() ? kNone : pos_;
  }

 private:
  static constexpr int kMaxDepth = 1024;

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }

  void SkipWs() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t' || Peek() == '\n' ||
                        Peek() == '\r')) {
      ++pos_;
    }
  }

  bool Expect(char c) {
    SkipWs();
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  static bool IsHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
  }

  // A string at pos_; its content (simple escapes decoded) into `out`.
  bool String(std::string* out) {
    if (Peek() != '"') return false;
    ++pos_;
    while (!AtEnd()) {
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        if (out != nullptr) out->push_back(c);
        ++pos_;
        continue;
      }
      ++pos_;
      char e = Peek();
      static constexpr std::string_view kEscapes = "\"\\/bfnrt";
      static constexpr std::string_view kDecoded = "\"\\/\b\f\n\r\t";
      size_t k = kEscapes.find(e);
      if (k != std::string_view::npos && e != '\0') {
        if (out != nullptr) out->push_back(kDecoded[k]);
        ++pos_;
      } else if (e == 'u') {
        ++pos_;
        for (int i = 0; i < 4; ++i, ++pos_) {
          if (!IsHex(Peek())) return false;
        }
        if (out != nullptr) out->push_back('?');
      } else {
        return false;
      }
    }
    return false;
  }

  bool Digits() {
    size_t start = pos_;
    while (Peek() >= '0' && Peek() <= '9') ++pos_;
    return pos_ > start;
  }

  bool Number() {
    if (Peek() == '-') ++pos_;
    if (Peek() == '0') {
      ++pos_;
    } else if (!Digits()) {
      return false;
    }
    if (Peek() == '.') {
      ++pos_;
      if (!Digits()) return false;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++pos_;
      if (Peek() == '+' || Peek() == '-') ++pos_;
      if (!Digits()) return false;
    }
    return true;
  }

  bool Literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  // Skips one value at pos_ (after whitespace); false at a syntax error,
  // with pos_ at it.
  bool SkipValue(int depth) {
    SkipWs();
    if (depth > kMaxDepth) return false;
    switch (Peek()) {
      case '{': {
        ++pos_;
        SkipWs();
        if (Peek() == '}') {
          ++pos_;
          return true;
        }
        while (true) {
          SkipWs();
          if (!String(nullptr) || !Expect(':') || !SkipValue(depth + 1)) {
            return false;
          }
          SkipWs();
          if (Peek() == ',') {
            ++pos_;
            continue;
          }
          if (Peek() == '}') {
            ++pos_;
            return true;
          }
          return false;
        }
      }
      case '[': {
        ++pos_;
        SkipWs();
        if (Peek() == ']') {
          ++pos_;
          return true;
        }
        while (true) {
          if (!SkipValue(depth + 1)) return false;
          SkipWs();
          if (Peek() == ',') {
            ++pos_;
            continue;
          }
          if (Peek() == ']') {
            ++pos_;
            return true;
          }
          return false;
        }
      }
      case '"':
        return String(nullptr);
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        return Number();
    }
  }

  size_t FindIn(const Path& path, size_t k, int depth) {
    SkipWs();
    if (k == path.size()) return pos_;
    const PathPart& part = path[k];
    if (!part.is_index) {
      if (!Expect('{')) return kNone;
      SkipWs();
      if (Peek() == '}') return kNone;
      size_t seen = 0;
      while (true) {
        SkipWs();
        size_t key_start = pos_;
        std::string key;
        if (!String(&key) || !Expect(':')) return kNone;
        if (key == part.key && seen++ == part.occurrence) {
          return k + 1 == path.size() ? key_start : FindIn(path, k + 1, depth + 1);
        }
        // On to the next member; a '}' here means the path is not there.
        if (!SkipValue(depth + 1) || !Expect(',')) return kNone;
      }
    }
    if (!Expect('[')) return kNone;
    for (size_t i = 0;; ++i) {
      SkipWs();
      if (i == part.index) return FindIn(path, k + 1, depth + 1);
      if (!SkipValue(depth + 1) || !Expect(',')) return kNone;
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// " (line L, column C)" for a byte offset, or "" for kNone.
std::string LineAndColumn(std::string_view text, size_t offset) {
  if (offset == JsonScanner::kNone || offset > text.size()) return "";
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return StrCat(" (line ", line, ", column ", offset - line_start + 1, ")");
}

// Builds the errors of one parse: "<path>: <what> (line L, column C)".
class ErrorBuilder {
 public:
  explicit ErrorBuilder(std::string_view text) : text_(text) {}

  absl::Status At(const Path& path, std::string_view what) const {
    JsonScanner scanner(text_);
    return absl::InvalidArgumentError(StrCat(
        PathText(path), ": ", what, LineAndColumn(text_, scanner.Find(path))));
  }

 private:
  std::string_view text_;
};

// ---------------------------------------------------------------------------
// Strict field reading
// ---------------------------------------------------------------------------

// Reads one object field by field. Every getter marks its field as read;
// Finish() refuses the fields nobody asked for. A field given twice is
// refused when it is asked for.
class FieldReader {
 public:
  FieldReader(simdjson::dom::object object, Path path, const ErrorBuilder& errors)
      : object_(object), path_(std::move(path)), errors_(errors) {}
  FieldReader(const FieldReader&) = delete;
  FieldReader& operator=(const FieldReader&) = delete;

  const Path& path() const { return path_; }
  Path PathOf(std::string_view field) const { return Child(path_, field); }

  absl::Status Error(std::string_view field, std::string_view what) const {
    return errors_.At(PathOf(field), what);
  }
  absl::Status ErrorAt(const Path& path, std::string_view what) const {
    return errors_.At(path, what);
  }

  absl::StatusOr<std::optional<simdjson::dom::element>> Find(
      std::string_view field) {
    read_.insert(std::string(field));
    std::optional<simdjson::dom::element> found;
    size_t count = 0;
    for (auto member : object_) {
      if (member.key != field) continue;
      if (count++ == 1) {
        return errors_.At(Child(path_, field, 1), "given twice");
      }
      found = member.value;
    }
    return found;
  }

  absl::StatusOr<std::optional<std::string_view>> String(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<std::string_view>();
    std::string_view s;
    if (e->get_string().get(s)) return Error(field, "must be a string");
    return std::optional<std::string_view>(s);
  }

  absl::StatusOr<std::optional<bool>> Bool(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<bool>();
    bool b;
    if (e->get_bool().get(b)) return Error(field, "must be true or false");
    return std::optional<bool>(b);
  }

  // A finite number >= 0; fractions allowed.
  absl::StatusOr<std::optional<double>> NonNegativeNumber(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<double>();
    double d;
    if (!e->is_number() || e->get_double().get(d) || !std::isfinite(d) ||
        !(d >= 0)) {
      return Error(field, "must be a non-negative number");
    }
    return std::optional<double>(d);
  }

  // An integer >= 0 (5, or 5.0 / 5e0: doubles that are exact integers).
  absl::StatusOr<std::optional<uint64_t>> Uint(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<uint64_t>();
    std::optional<uint64_t> value = AsUint(*e);
    if (!value.has_value()) return Error(field, "must be a non-negative integer");
    return value;
  }

  absl::StatusOr<std::optional<simdjson::dom::object>> Object(
      std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<simdjson::dom::object>();
    simdjson::dom::object o;
    if (e->get_object().get(o)) return Error(field, "must be an object");
    return std::optional<simdjson::dom::object>(o);
  }

  absl::StatusOr<std::optional<simdjson::dom::array>> Array(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<simdjson::dom::array>();
    simdjson::dom::array a;
    if (e->get_array().get(a)) return Error(field, "must be an array");
    return std::optional<simdjson::dom::array>(a);
  }

  // Unknown fields are refused, with their place: a misspelt field must not be
  // silently ignored.
  absl::Status Finish() const {
    std::map<std::string, size_t> seen;
    for (auto member : object_) {
      std::string key(member.key);
      size_t occurrence = seen[key]++;
      if (read_.count(key) == 0) {
        return errors_.At(Child(path_, key, occurrence),
                          StrCat("unknown field \"", key, "\""));
      }
    }
    return absl::OkStatus();
  }

  static std::optional<uint64_t> AsUint(simdjson::dom::element e) {
    uint64_t u;
    if (e.is_uint64()) {
      if (e.get_uint64().get(u)) return std::nullopt;
      return u;
    }
    if (e.is_int64()) return std::nullopt;  // negative
    double d;
    if (!e.is_double() || e.get_double().get(d) || !(d >= 0) ||
        d > 9.007199254740992e15 || d != std::floor(d)) {
      return std::nullopt;
    }
    return static_cast<uint64_t>(d);
  }

 private:
  simdjson::dom::object object_;
  Path path_;
  const ErrorBuilder& errors_;
  std::set<std::string> read_;
};

// Limit class names as both the registry and the limiter accept them: 1 to 8
// '/'-separated segments of [a-z0-9_.-], at most 128 bytes.
bool IsValidLimitClass(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  int segments = 1;
  bool empty_segment = true;
  for (char c : name) {
    if (c == '/') {
      if (empty_segment) return false;
      empty_segment = true;
      ++segments;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-';
    if (!ok) return false;
    empty_segment = false;
  }
  return !empty_segment && segments <= kMaxLimitClassDepth;
}

absl::StatusOr<ConcurrencyLimits> ParseLimits(simdjson::dom::object object,
                                              const Path& path,
                                              const ErrorBuilder& errors) {
  ConcurrencyLimits limits;
  std::map<std::string, size_t> seen;
  for (auto member : object) {
    std::string name(member.key);
    Path at = Child(path, name, seen[name]++);
    if (!IsValidLimitClass(name)) {
      return errors.At(at, "not a valid limit class (1 to 8 '/'-separated "
                           "segments of [a-z0-9_.-], at most 128 bytes)");
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

absl::StatusOr<uint64_t> MbToBytes(FieldReader& r, std::string_view field,
                                   double mb) {
  if (mb > 8.0e12) return r.Error(field, "is too large");
  return static_cast<uint64_t>(std::llround(mb * kBytesPerMb));
}

absl::Status ParseQuota(simdjson::dom::object object, const Path& path,
                        const ErrorBuilder& errors, Quota* quota,
                        bool* storage_given) {
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
    TENANCY_ASSIGN_OR_RETURN(quota->storage_bytes,
                             MbToBytes(r, "storage_mb", *storage_mb));
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
    TENANCY_ASSIGN_OR_RETURN(quota->cache_bytes,
                             MbToBytes(r, "cache_mb", *cache_mb));
  }
  if (cache_bytes.has_value()) quota->cache_bytes = *cache_bytes;
  return absl::OkStatus();
}

// "api_key" / "api_key_sha256": a string or an array of strings. Appends
// (digest hex, path) pairs.
absl::Status ParseKeys(FieldReader& r, std::string_view field, bool plaintext,
                       std::vector<std::pair<std::string, Path>>* keys) {
  TENANCY_ASSIGN_OR_RETURN(auto e, r.Find(field));
  if (!e.has_value()) return absl::OkStatus();
  std::vector<std::pair<simdjson::dom::element, Path>> items;
  simdjson::dom::array array;
  if (!e->get_array().get(array)) {
    size_t i = 0;
    for (simdjson::dom::element item : array) {
      items.emplace_back(item, Element(r.PathOf(field), i++));
    }
  } else {
    items.emplace_back(*e, r.PathOf(field));
  }
  const std::string_view want =
      plaintext ? "must be a string or an array of strings"
                : "must be a SHA-256 in hex or an array of them";
  for (auto& [item, path] : items) {
    std::string_view text;
    if (item.get_string().get(text)) return r.ErrorAt(path, want);
    if (plaintext) {
      // The message never shows the key.
      if (text.size() < kMinPlainKeyBytes || text.size() > kMaxPlainKeyBytes) {
        return r.ErrorAt(path, StrCat("an api key must be ", kMinPlainKeyBytes,
                                      " to ", kMaxPlainKeyBytes, " bytes"));
      }
      keys->emplace_back(DigestToHex(Sha256(text)), path);
    } else {
      if (!DigestFromHex(text).has_value()) {
        return r.ErrorAt(path, "must be 64 lower-case hex characters (a SHA-256)");
      }
      keys->emplace_back(std::string(text), path);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TenantsFileEntry> ParseTenant(
    simdjson::dom::element element, const Path& path, const ErrorBuilder& errors,
    std::vector<std::pair<std::string, Path>>* keys) {
  simdjson::dom::object object;
  if (element.get_object().get(object)) return errors.At(path, "must be an object");
  FieldReader r(object, path, errors);
  TenantsFileEntry entry;
  TenantSpec& spec = entry.spec;

  TENANCY_ASSIGN_OR_RETURN(auto id, r.String("id"));
  TENANCY_ASSIGN_OR_RETURN(auto tenant_id, r.String("tenant_id"));
  if (id.has_value() && tenant_id.has_value() && *id != *tenant_id) {
    return r.Error("tenant_id", "differs from \"id\"");
  }
  if (!id.has_value() && !tenant_id.has_value()) {
    return errors.At(path, "\"id\" is required");
  }
  spec.id = std::string(id.has_value() ? *id : *tenant_id);
  if (!ValidateTenantId(spec.id).ok()) {
    return r.Error(id.has_value() ? "id" : "tenant_id",
                   StrCat("\"", spec.id,
                          "\" is not a valid tenant id (a DNS label: 1 to 63 of "
                          "[a-z0-9-], not starting or ending with '-')"));
  }

  // Keys: messages below never show a plaintext key.
  TENANCY_RETURN_IF_ERROR(ParseKeys(r, "api_key", /*plaintext=*/true, keys));
  TENANCY_RETURN_IF_ERROR(ParseKeys(r, "api_key_sha256", /*plaintext=*/false, keys));

  TENANCY_ASSIGN_OR_RETURN(auto quota_mb, r.NonNegativeNumber("quota_mb"));
  TENANCY_ASSIGN_OR_RETURN(auto quota, r.Object("quota"));
  bool storage_given = false;
  if (quota.has_value()) {
    TENANCY_RETURN_IF_ERROR(ParseQuota(*quota, r.PathOf("quota"), errors,
                                       &spec.quota, &storage_given));
  }
  if (quota_mb.has_value()) {
    if (storage_given) {
      return r.Error("quota_mb", "give quota_mb or quota.storage_mb, not both");
    }
    TENANCY_ASSIGN_OR_RETURN(spec.quota.storage_bytes,
                             MbToBytes(r, "quota_mb", *quota_mb));
  }

  TENANCY_ASSIGN_OR_RETURN(auto limits, r.Object("limits"));
  if (limits.has_value()) {
    TENANCY_ASSIGN_OR_RETURN(spec.limits,
                             ParseLimits(*limits, r.PathOf("limits"), errors));
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
      if (name == kManagedByLabel) {
        return errors.At(at, "reserved: the tenants file sets it on the tenants it manages");
      }
      if (!spec.labels.emplace(name, std::string(value)).second) {
        return errors.At(at, "given twice");
      }
    }
  }
  TENANCY_RETURN_IF_ERROR(r.Finish());
  return entry;
}

}  // namespace
}  // namespace internal

absl::StatusOr<TenantsConfig> ParseTenantsFile(std::string_view text) {
  using internal::Child;
  using internal::Element;
  using internal::ErrorBuilder;
  using internal::FieldReader;
  using internal::Path;
  using internal::StrCat;

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (simdjson::error_code error = parser.parse(text.data(), text.size()).get(root)) {
    internal::JsonScanner scanner(text);
    return absl::InvalidArgumentError(
        StrCat("not valid JSON: ", simdjson::error_message(error),
               internal::LineAndColumn(text, scanner.FirstError())));
  }
  ErrorBuilder errors(text);
  simdjson::dom::object object;
  if (root.get_object().get(object)) {
    return errors.At(Path{}, "must be a JSON object {\"tenants\": [...], ...}");
  }
  FieldReader r(object, Path{}, errors);
  TenantsConfig config;

  TENANCY_ASSIGN_OR_RETURN(auto tenants, r.Array("tenants"));
  if (!tenants.has_value()) {
    return errors.At(Path{}, "\"tenants\" is required (an empty array means none)");
  }
  // Every key of the file with where it was given: no key may serve two
  // tenants (nor be listed twice for one).
  std::map<std::string, std::pair<size_t, Path>> key_sources;
  std::map<std::string, size_t> id_index;
  size_t index = 0;
  for (simdjson::dom::element element : *tenants) {
    Path path = Element(r.PathOf("tenants"), index);
    std::vector<std::pair<std::string, Path>> keys;
    TENANCY_ASSIGN_OR_RETURN(TenantsFileEntry entry,
                             internal::ParseTenant(element, path, errors, &keys));
    auto [seen, inserted] = id_index.emplace(entry.spec.id, index);
    if (!inserted) {
      Path id_path = Child(path, "id");
      return errors.At(
          id_path, StrCat("tenant \"", entry.spec.id, "\" is listed twice (also tenants[",
                          seen->second, "])"));
    }
    for (auto& [hex, key_path] : keys) {
      auto [other, fresh] = key_sources.emplace(hex, std::make_pair(index, key_path));
      if (!fresh) {
        return errors.At(key_path,
                         StrCat("the same api key as ", internal::PathText(other->second.second),
                                other->second.first == index ? "" : " (another tenant)"));
      }
      entry.api_key_sha256.push_back(hex);
    }
    config.tenants.push_back(std::move(entry));
    ++index;
  }

  TENANCY_ASSIGN_OR_RETURN(auto defaults, r.Object("defaults"));
  if (defaults.has_value()) {
    FieldReader d(*defaults, r.PathOf("defaults"), errors);
    TENANCY_ASSIGN_OR_RETURN(auto limits, d.Object("limits"));
    if (limits.has_value()) {
      TENANCY_ASSIGN_OR_RETURN(
          config.default_limits,
          internal::ParseLimits(*limits, d.PathOf("limits"), errors));
    }
    TENANCY_RETURN_IF_ERROR(d.Finish());
  }
  TENANCY_ASSIGN_OR_RETURN(auto global, r.Object("global_limits"));
  if (global.has_value()) {
    TENANCY_ASSIGN_OR_RETURN(
        config.global_limits,
        internal::ParseLimits(*global, r.PathOf("global_limits"), errors));
  }
  TENANCY_ASSIGN_OR_RETURN(auto reload, r.Bool("reload_on_change"));
  if (reload.has_value()) config.reload_on_change = *reload;
  TENANCY_RETURN_IF_ERROR(r.Finish());
  return config;
}

namespace internal {
namespace {

bool IsManaged(const TenantSpec& spec) {
  auto it = spec.labels.find(std::string(kManagedByLabel));
  return it != spec.labels.end() && it->second == kManagedByValue;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// What the file laid over one of the limiter's maps, so the next apply can
// take it off again: a class the file stops naming goes back to the value it
// had before (or away), unless someone else changed it since.
struct LimitOverlay {
  ConcurrencyLimits applied;
  std::map<std::string, std::optional<int64_t>> replaced;
};

ConcurrencyLimits LayOver(ConcurrencyLimits current, const LimitOverlay& previous,
                          const ConcurrencyLimits& file, LimitOverlay* next) {
  for (const auto& [name, value] : previous.applied) {
    auto it = current.find(name);
    if (it == current.end() || it->second != value) continue;  // changed since
    auto before = previous.replaced.find(name);
    if (before != previous.replaced.end() && before->second.has_value()) {
      it->second = *before->second;
    } else {
      current.erase(it);
    }
  }
  next->applied = file;
  next->replaced.clear();
  for (const auto& [name, value] : file) {
    auto it = current.find(name);
    next->replaced[name] =
        it == current.end() ? std::nullopt : std::optional<int64_t>(it->second);
    current[name] = value;
  }
  return current;
}

// What identifies one version of the file on disk.
struct FileSignature {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;

  friend bool operator==(const FileSignature&, const FileSignature&) = default;
};

FileSignature SignatureOf(const struct stat& st) {
  FileSignature s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  s.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  return s;
}

struct FileContent {
  std::string text;
  FileSignature signature;
};

// Wipes the file's bytes (they may hold plaintext keys) when it goes.
struct WipedText {
  std::string text;
  explicit WipedText(std::string t) : text(std::move(t)) {}
  WipedText(const WipedText&) = delete;
  WipedText& operator=(const WipedText&) = delete;
  ~WipedText() {
    if (!text.empty()) OPENSSL_cleanse(text.data(), text.size());
  }
};

struct ApplySummary {
  size_t created = 0, updated = 0, unchanged = 0, disabled = 0;
  size_t keys_added = 0, keys_revoked = 0;
};

}  // namespace

class ConfigFileRep {
 public:
  ConfigFileRep(Engine* engine, ConfigFileOptions options)
      : engine_(engine), options_(std::move(options)) {
    logger_ = options_.logger != nullptr
                  ? options_.logger
                  : std::shared_ptr<Logger>(std::shared_ptr<Logger>{},
                                            &engine_->logger());
  }
  ConfigFileRep(const ConfigFileRep&) = delete;
  ConfigFileRep& operator=(const ConfigFileRep&) = delete;
  ~ConfigFileRep() { StopWatching(); }

  absl::Status Reload() ABSL_LOCKS_EXCLUDED(reload_mu_) {
    absl::MutexLock lock(&reload_mu_);
    absl::StatusOr<FileContent> file = ReadFile();
    if (!file.ok()) {
      RecordFailure(file.status());
      return file.status();
    }
    WipedText text(std::move(file->text));
    last_signature_ = file->signature;
    have_signature_ = true;
    polls_since_read_ = 0;
    last_sha_ = DigestToHex(Sha256(text.text));
    return LoadLocked(text.text, last_sha_);
  }

  void StartWatching() {
    if (!options_.watch) return;
    watcher_ = std::thread([this] { WatchLoop(); });
  }

  void StopWatching() ABSL_LOCKS_EXCLUDED(stop_mu_) {
    {
      absl::MutexLock lock(&stop_mu_);
      stop_ = true;
      stop_cv_.Signal();
    }
    if (watcher_.joinable()) watcher_.join();
  }

  ConfigFileState state() const ABSL_LOCKS_EXCLUDED(state_mu_) {
    absl::MutexLock lock(&state_mu_);
    return state_;
  }

  void CollectMetrics(MetricSink& sink) const {
    ConfigFileState s = state();
    sink.AddGauge("tenancy_config_version",
                  "Applies of the tenants file since start; the one in force is "
                  "the latest",
                  {}, static_cast<double>(s.version));
    sink.AddGauge("tenancy_config_applied_timestamp_seconds",
                  "When the tenants file in force was applied, in Unix seconds", {},
                  s.applied_at == absl::InfinitePast()
                      ? 0.0
                      : absl::ToDoubleSeconds(s.applied_at - absl::UnixEpoch()));
    sink.AddCounter("tenancy_config_reload_failures_total",
                    "Reloads of the tenants file refused or failed", {},
                    static_cast<double>(s.reload_failures));
    sink.AddGauge("tenancy_config_last_reload_successful",
                  "1 if the last reload of the tenants file was applied, else 0", {},
                  s.last_result.ok() ? 1.0 : 0.0);
    if (!s.sha256.empty()) {
      sink.AddGauge("tenancy_config_info",
                    "The tenants file in force, by the SHA-256 of its bytes",
                    {{"sha256", s.sha256}}, 1.0);
    }
  }

 private:
  void Log(LogLevel level, std::string_view message) const {
    logger_->Log(level, StrCat("tenants file \"", options_.path, "\": ", message));
  }

  absl::StatusOr<FileSignature> StatPath() const {
    struct stat st;
    if (::stat(options_.path.c_str(), &st) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("stat ", options_.path));
    }
    return SignatureOf(st);
  }

  absl::StatusOr<FileContent> ReadFile() const {
    int fd = ::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::ErrnoToStatus(errno, StrCat("open ", options_.path));
    FileContent content;
    struct stat st;
    absl::Status status;
    if (::fstat(fd, &st) != 0) {
      status = absl::ErrnoToStatus(errno, StrCat("stat ", options_.path));
    } else if (!S_ISREG(st.st_mode)) {
      status = absl::FailedPreconditionError(
          StrCat(options_.path, " is not a regular file"));
    } else if (static_cast<uint64_t>(st.st_size) > options_.max_file_bytes) {
      status = absl::InvalidArgumentError(StrCat(
          options_.path, " is larger than ", options_.max_file_bytes, " bytes"));
    } else {
      content.signature = SignatureOf(st);
      char buffer[65536];
      while (true) {
        ssize_t n = ::read(fd, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          status = absl::ErrnoToStatus(errno, StrCat("read ", options_.path));
          break;
        }
        if (n == 0) break;
        content.text.append(buffer, static_cast<size_t>(n));
        if (content.text.size() > options_.max_file_bytes) {
          status = absl::InvalidArgumentError(StrCat(
              options_.path, " is larger than ", options_.max_file_bytes, " bytes"));
          break;
        }
      }
      OPENSSL_cleanse(buffer, sizeof(buffer));
    }
    ::close(fd);
    if (!status.ok()) {
      if (!content.text.empty()) {
        OPENSSL_cleanse(content.text.data(), content.text.size());
      }
      return status;
    }
    return content;
  }

  void RecordFailure(const absl::Status& status) ABSL_LOCKS_EXCLUDED(state_mu_) {
    ConfigFileState in_force;
    {
      absl::MutexLock lock(&state_mu_);
      ++state_.reload_failures;
      state_.last_result = status;
      in_force = state_;
    }
    Log(LogLevel::kError,
        StrCat("refused; ",
               in_force.version == 0
                   ? std::string("nothing applied")
                   : StrCat("version ", in_force.version, " (sha256 ",
                            in_force.sha256.substr(0, 12), ") stays in force"),
               ": ", status.message()));
  }

  // Parses, checks against the registry and applies `text`.
  absl::Status LoadLocked(std::string_view text, const std::string& sha)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_) {
    absl::StatusOr<TenantsConfig> parsed = ParseTenantsFile(text);
    if (!parsed.ok()) {
      retry_apply_ = false;  // the content is wrong: wait for a new one
      RecordFailure(parsed.status());
      return parsed.status();
    }
    ApplySummary summary;
    absl::Status applied = ApplyLocked(*parsed, text, &summary);
    if (!applied.ok()) {
      retry_apply_ = true;
      RecordFailure(applied);
      return applied;
    }
    retry_apply_ = false;
    ConfigFileState now;
    {
      absl::MutexLock lock(&state_mu_);
      ++state_.version;
      state_.sha256 = sha;
      state_.applied_at = absl::Now();
      state_.tenants = parsed->tenants.size();
      state_.reload_on_change = parsed->reload_on_change;
      state_.last_result = absl::OkStatus();
      now = state_;
    }
    reload_on_change_.store(parsed->reload_on_change, std::memory_order_relaxed);
    in_force_ = *std::move(parsed);
    Log(LogLevel::kInfo,
        StrCat("version ", now.version, " (sha256 ", now.sha256.substr(0, 12),
               ") in force since ",
               absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now.applied_at,
                                absl::UTCTimeZone()),
               ": ", now.tenants, " tenants (", summary.created, " created, ",
               summary.updated, " updated, ", summary.unchanged, " unchanged, ",
               summary.disabled, " disabled), api keys ", summary.keys_added,
               " added, ", summary.keys_revoked, " revoked",
               now.reload_on_change ? "" : "; reload_on_change is off"));
    return absl::OkStatus();
  }

  absl::Status Conflict(std::string_view text, size_t index, std::string_view id,
                        std::string_view what) const {
    JsonScanner scanner(text);
    Path path = Element(Child(Path{}, "tenants"), index);
    return absl::FailedPreconditionError(
        StrCat(PathText(path), " (tenant \"", id, "\"): ", what,
               LineAndColumn(text, scanner.Find(path))));
  }

  absl::Status ApplyLocked(const TenantsConfig& config, std::string_view text,
                           ApplySummary* summary)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_) {
    TenantRegistry& registry = engine_->registry();

    // The registry now: every tenant, in all states.
    std::map<std::string, TenantInfo> existing;
    ListOptions list;
    list.limit = 1000;
    while (true) {
      TENANCY_ASSIGN_OR_RETURN(TenantPage page, registry.List(list));
      for (TenantInfo& info : page.tenants) {
        std::string id = info.spec.id;
        existing.emplace(std::move(id), std::move(info));
      }
      if (page.next_start_after.empty()) break;
      list.start_after = page.next_start_after;
    }

    // The file: which tenant each key id goes to.
    std::map<std::string, size_t> in_file;
    std::map<std::string, std::string> claimed_key_ids;  // key id -> tenant
    for (size_t i = 0; i < config.tenants.size(); ++i) {
      const TenantsFileEntry& entry = config.tenants[i];
      in_file[entry.spec.id] = i;
      for (const std::string& hex : entry.api_key_sha256) {
        claimed_key_ids[ImportedKeyId(hex)] = entry.spec.id;
      }
    }

    // Checks against the registry, before anything changes.
    for (size_t i = 0; i < config.tenants.size(); ++i) {
      const TenantsFileEntry& entry = config.tenants[i];
      const std::string& id = entry.spec.id;
      auto it = existing.find(id);
      if (it != existing.end()) {
        if (it->second.state == TenantState::kDeleting) {
          return Conflict(text, i, id,
                          "the tenant is being purged; the file applies once the "
                          "purge is done");
        }
        if (it->second.spec.placement != entry.spec.placement) {
          return Conflict(
              text, i, id,
              StrCat("placement is fixed at creation (the tenant is ",
                     PlacementName(it->second.spec.placement), ", the file says ",
                     PlacementName(entry.spec.placement), ")"));
        }
      }
      for (const std::string& hex : entry.api_key_sha256) {
        absl::StatusOr<ApiKeyOwner> owner = registry.FindApiKey(hex);
        if (absl::IsNotFound(owner.status())) continue;
        TENANCY_RETURN_IF_ERROR(owner.status());
        if (owner->tenant_id == id) continue;
        // A key may move from one file-managed tenant to another in one edit:
        // it is revoked from the first before it is imported for the second.
        auto holder = existing.find(owner->tenant_id);
        bool movable = holder != existing.end() && IsManaged(holder->second.spec) &&
                       StartsWith(owner->key.key_id, kImportedKeyIdPrefix);
        if (!movable) {
          return Conflict(
              text, i, id,
              StrCat("api key sha256:", hex.substr(0, 8), " belongs to tenant \"",
                     owner->tenant_id,
                     "\", which this file does not manage; revoke it there first"));
        }
      }
    }

    // 1. Limits: the file's defaults and global limits over the limiter's.
    Limiter& limiter = engine_->limiter();
    LimitOverlay next_defaults, next_global;
    ConcurrencyLimits defaults = LayOver(limiter.DefaultTenantLimits(),
                                         defaults_overlay_, config.default_limits,
                                         &next_defaults);
    ConcurrencyLimits global = LayOver(limiter.GlobalLimits(), global_overlay_,
                                       config.global_limits, &next_global);
    TENANCY_RETURN_IF_ERROR(limiter.SetDefaultTenantLimits(defaults));
    defaults_overlay_ = std::move(next_defaults);
    TENANCY_RETURN_IF_ERROR(limiter.SetGlobalLimits(global));
    global_overlay_ = std::move(next_global);

    // 2. Imported keys of file-managed tenants that the file no longer gives
    // them. A tenant that left the file keeps its keys (its callers get 403,
    // not 401) unless the file now gives one to another tenant.
    for (const auto& [id, info] : existing) {
      if (!IsManaged(info.spec) || info.state == TenantState::kDeleting) continue;
      auto listed = in_file.find(id);
      for (const ApiKeyInfo& key : info.keys) {
        if (!StartsWith(key.key_id, kImportedKeyIdPrefix)) continue;
        auto claim = claimed_key_ids.find(key.key_id);
        bool keep = listed != in_file.end()
                        ? claim != claimed_key_ids.end() && claim->second == id
                        : claim == claimed_key_ids.end();
        if (keep) continue;
        absl::Status revoked = registry.RevokeApiKey(id, key.key_id);
        if (!revoked.ok() && !absl::IsNotFound(revoked)) return revoked;
        ++summary->keys_revoked;
      }
    }

    // 3. Tenants in the file: created, updated, or left as they are.
    for (const TenantsFileEntry& entry : config.tenants) {
      TenantSpec desired = entry.spec;
      desired.labels[std::string(kManagedByLabel)] = std::string(kManagedByValue);
      auto it = existing.find(desired.id);
      if (it != existing.end() && it->second.spec == desired) {
        ++summary->unchanged;
        continue;
      }
      if (it != existing.end()) {
        if (!IsManaged(it->second.spec)) {
          Log(LogLevel::kInfo, StrCat("tenant \"", desired.id,
                                      "\": adopted (it was not managed by the file)"));
        } else if (in_force_.has_value() && SameEntryInForce(entry)) {
          Log(LogLevel::kWarning,
              StrCat("tenant \"", desired.id,
                     "\": its spec was changed outside the tenants file; the "
                     "file's spec is put back"));
        }
      }
      TENANCY_ASSIGN_OR_RETURN(TenantRegistry::UpsertResult result,
                               registry.Upsert(desired));
      if (result.created) {
        ++summary->created;  // the registry logs it
      } else {
        ++summary->updated;
        Log(LogLevel::kInfo, StrCat("tenant \"", desired.id, "\": spec updated"));
      }
    }

    // 4. Their keys (idempotent: a key already there is left as it is).
    for (const TenantsFileEntry& entry : config.tenants) {
      auto it = existing.find(entry.spec.id);
      for (const std::string& hex : entry.api_key_sha256) {
        bool had = false;
        if (it != existing.end()) {
          for (const ApiKeyInfo& key : it->second.keys) {
            had = had || key.key_id == ImportedKeyId(hex);
          }
        }
        TENANCY_RETURN_IF_ERROR(
            registry.ImportApiKeyHash(entry.spec.id, hex).status());
        if (!had) ++summary->keys_added;
      }
    }

    // 5. File-managed tenants no longer in the file: disabled, data kept.
    for (const auto& [id, info] : existing) {
      if (!IsManaged(info.spec) || in_file.count(id) != 0 ||
          info.state == TenantState::kDeleting || !info.spec.enabled) {
        continue;
      }
      absl::Status disabled = registry.Disable(id);
      if (absl::IsNotFound(disabled)) continue;  // purged meanwhile
      TENANCY_RETURN_IF_ERROR(disabled);
      Log(LogLevel::kInfo, StrCat("tenant \"", id,
                                  "\": no longer in the file; disabled, data kept"));
      ++summary->disabled;
    }
    return absl::OkStatus();
  }

  bool SameEntryInForce(const TenantsFileEntry& entry) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_) {
    for (const TenantsFileEntry& old : in_force_->tenants) {
      if (old.spec.id == entry.spec.id) return old.spec == entry.spec;
    }
    return false;
  }

  // One look at the file; applies it if it changed.
  void PollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_) {
    ++polls_since_read_;
    const bool periodic = polls_since_read_ >= kRereadPolls;
    absl::StatusOr<FileSignature> signature = StatPath();
    if (signature.ok() && have_signature_ && *signature == last_signature_ &&
        !periodic) {
      return;
    }
    absl::StatusOr<FileContent> file =
        signature.ok() ? ReadFile() : absl::StatusOr<FileContent>(signature.status());
    if (!file.ok()) {
      if (!unreadable_logged_) {
        Log(LogLevel::kWarning,
            StrCat("cannot read it (", file.status().message(),
                   "); the configuration in force stays"));
        unreadable_logged_ = true;
      }
      return;
    }
    WipedText text(std::move(file->text));
    unreadable_logged_ = false;
    // Changed while it was read (an editor writing in place): the next poll
    // reads the finished file.
    absl::StatusOr<FileSignature> after = StatPath();
    if (!after.ok() || !(*after == file->signature)) return;
    last_signature_ = file->signature;
    have_signature_ = true;
    polls_since_read_ = 0;
    std::string sha = DigestToHex(Sha256(text.text));
    if (sha == last_sha_ && !(retry_apply_ && periodic)) return;
    last_sha_ = sha;
    LoadLocked(text.text, sha).IgnoreError();  // logged and counted there
  }

  void WatchLoop() ABSL_LOCKS_EXCLUDED(stop_mu_, reload_mu_) {
    const absl::Duration interval = absl::FromChrono(options_.poll_interval);
    while (true) {
      {
        // A CondVar rather than Mutex::AwaitWithTimeout: the TSan build's
        // absl::Mutex shim (tsan_absl_mutex.cc) covers CondVar waits only.
        absl::MutexLock lock(&stop_mu_);
        if (!stop_) stop_cv_.WaitWithTimeout(&stop_mu_, interval);
        if (stop_) return;
      }
      if (!reload_on_change_.load(std::memory_order_relaxed)) continue;
      absl::MutexLock lock(&reload_mu_);
      PollLocked();
    }
  }

  // Constant after construction
  Engine* const engine_;
  const ConfigFileOptions options_;
  std::shared_ptr<Logger> logger_;

  // Reloads, one at a time.
  absl::Mutex reload_mu_ ABSL_ACQUIRED_BEFORE(state_mu_);
  std::optional<TenantsConfig> in_force_ ABSL_GUARDED_BY(reload_mu_);
  LimitOverlay defaults_overlay_ ABSL_GUARDED_BY(reload_mu_);
  LimitOverlay global_overlay_ ABSL_GUARDED_BY(reload_mu_);
  FileSignature last_signature_ ABSL_GUARDED_BY(reload_mu_);
  bool have_signature_ ABSL_GUARDED_BY(reload_mu_) = false;
  // SHA-256 of the content last tried (applied or refused).
  std::string last_sha_ ABSL_GUARDED_BY(reload_mu_);
  bool retry_apply_ ABSL_GUARDED_BY(reload_mu_) = false;
  int polls_since_read_ ABSL_GUARDED_BY(reload_mu_) = 0;
  bool unreadable_logged_ ABSL_GUARDED_BY(reload_mu_) = false;
  std::atomic<bool> reload_on_change_{true};

  // What state() reports.
  mutable absl::Mutex state_mu_;
  ConfigFileState state_ ABSL_GUARDED_BY(state_mu_);

  // The watcher.
  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  absl::CondVar stop_cv_;
  std::thread watcher_;
};

}  // namespace internal

absl::StatusOr<std::unique_ptr<ConfigFile>> ConfigFile::Open(
    Engine* engine, ConfigFileOptions options) {
  if (engine == nullptr) return absl::InvalidArgumentError("config file: engine is null");
  if (options.path.empty()) {
    return absl::InvalidArgumentError("config file: options.path is empty");
  }
  if (options.poll_interval <= std::chrono::milliseconds(0)) {
    return absl::InvalidArgumentError("config file: poll_interval must be positive");
  }
  if (options.max_file_bytes == 0) {
    return absl::InvalidArgumentError("config file: max_file_bytes must be positive");
  }
  auto rep = std::make_unique<internal::ConfigFileRep>(engine, std::move(options));
  TENANCY_RETURN_IF_ERROR(rep->Reload());
  rep->StartWatching();
  return std::unique_ptr<ConfigFile>(new ConfigFile(std::move(rep)));
}

ConfigFile::ConfigFile(std::unique_ptr<internal::ConfigFileRep> rep)
    : rep_(std::move(rep)) {}

ConfigFile::~ConfigFile() = default;

absl::Status ConfigFile::Reload() { return rep_->Reload(); }

ConfigFileState ConfigFile::state() const { return rep_->state(); }

void ConfigFile::CollectMetrics(MetricSink& sink) const { rep_->CollectMetrics(sink); }

}  // namespace tenancy
