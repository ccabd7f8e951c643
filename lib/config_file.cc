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
#include <openssl/crypto.h>
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

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api_key.h"
#include "json_reader.h"
#include "simdjson.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/engine.h"
#include "tenancy/tenant_registry.h"
#include "tenant_spec_reader.h"

namespace tenancy {
namespace internal {
namespace {

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
  const std::string_view want = plaintext ? "must be a string or an array of strings"
                                          : "must be a SHA-256 in hex or an array of them";
  for (auto& [item, path] : items) {
    std::string_view text;
    if (item.get_string().get(text)) return r.ErrorAt(path, want);
    if (plaintext) {
      // The message never shows the key.
      if (text.size() < kMinPlainKeyBytes || text.size() > kMaxPlainKeyBytes) {
        return r.ErrorAt(path, StrCat("an api key must be ", kMinPlainKeyBytes, " to ",
                                      kMaxPlainKeyBytes, " bytes"));
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

absl::StatusOr<TenantsFileEntry> ParseTenant(simdjson::dom::element element, const Path& path,
                                             const ErrorBuilder& errors,
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

  TENANCY_RETURN_IF_ERROR(ReadSpecFields(r, errors, SpecOrigin::kTenantsFile, &spec));
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
    return absl::InvalidArgumentError(StrCat("not valid JSON: ", simdjson::error_message(error),
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
      return errors.At(id_path, StrCat("tenant \"", entry.spec.id,
                                       "\" is listed twice (also tenants[", seen->second, "])"));
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
      TENANCY_ASSIGN_OR_RETURN(config.default_limits,
                               internal::ReadLimits(*limits, d.PathOf("limits"), errors));
    }
    TENANCY_RETURN_IF_ERROR(d.Finish());
  }
  TENANCY_ASSIGN_OR_RETURN(auto global, r.Object("global_limits"));
  if (global.has_value()) {
    TENANCY_ASSIGN_OR_RETURN(config.global_limits,
                             internal::ReadLimits(*global, r.PathOf("global_limits"), errors));
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
    next->replaced[name] = it == current.end() ? std::nullopt : std::optional<int64_t>(it->second);
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
                  : std::shared_ptr<Logger>(std::shared_ptr<Logger>{}, &engine_->logger());
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
      sink.AddGauge("tenancy_config_info", "The tenants file in force, by the SHA-256 of its bytes",
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
      status = absl::FailedPreconditionError(StrCat(options_.path, " is not a regular file"));
    } else if (static_cast<uint64_t>(st.st_size) > options_.max_file_bytes) {
      status = absl::InvalidArgumentError(
          StrCat(options_.path, " is larger than ", options_.max_file_bytes, " bytes"));
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
          status = absl::InvalidArgumentError(
              StrCat(options_.path, " is larger than ", options_.max_file_bytes, " bytes"));
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
               in_force.version == 0 ? std::string("nothing applied")
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
        StrCat("version ", now.version, " (sha256 ", now.sha256.substr(0, 12), ") in force since ",
               absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now.applied_at, absl::UTCTimeZone()), ": ",
               now.tenants, " tenants (", summary.created, " created, ", summary.updated,
               " updated, ", summary.unchanged, " unchanged, ", summary.disabled,
               " disabled), api keys ", summary.keys_added, " added, ", summary.keys_revoked,
               " revoked", now.reload_on_change ? "" : "; reload_on_change is off"));
    return absl::OkStatus();
  }

  absl::Status Conflict(std::string_view text, size_t index, std::string_view id,
                        std::string_view what) const {
    JsonScanner scanner(text);
    Path path = Element(Child(Path{}, "tenants"), index);
    return absl::FailedPreconditionError(StrCat(PathText(path), " (tenant \"", id, "\"): ", what,
                                                LineAndColumn(text, scanner.Find(path))));
  }

  absl::Status ApplyLocked(const TenantsConfig& config, std::string_view text,
                           ApplySummary* summary) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_) {
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
          return Conflict(text, i, id,
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
              StrCat("api key sha256:", hex.substr(0, 8), " belongs to tenant \"", owner->tenant_id,
                     "\", which this file does not manage; revoke it there first"));
        }
      }
    }

    // 1. Limits: the file's defaults and global limits over the limiter's.
    Limiter& limiter = engine_->limiter();
    LimitOverlay next_defaults, next_global;
    ConcurrencyLimits defaults = LayOver(limiter.DefaultTenantLimits(), defaults_overlay_,
                                         config.default_limits, &next_defaults);
    ConcurrencyLimits global =
        LayOver(limiter.GlobalLimits(), global_overlay_, config.global_limits, &next_global);
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
        bool keep = listed != in_file.end() ? claim != claimed_key_ids.end() && claim->second == id
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
          Log(LogLevel::kInfo,
              StrCat("tenant \"", desired.id, "\": adopted (it was not managed by the file)"));
        } else if (in_force_.has_value() && SameEntryInForce(entry)) {
          Log(LogLevel::kWarning, StrCat("tenant \"", desired.id,
                                         "\": its spec was changed outside the tenants file; the "
                                         "file's spec is put back"));
        }
      }
      TENANCY_ASSIGN_OR_RETURN(TenantRegistry::UpsertResult result, registry.Upsert(desired));
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
        TENANCY_RETURN_IF_ERROR(registry.ImportApiKeyHash(entry.spec.id, hex).status());
        if (!had) ++summary->keys_added;
      }
    }

    // 5. File-managed tenants no longer in the file: disabled, data kept.
    for (const auto& [id, info] : existing) {
      if (!IsManaged(info.spec) || in_file.count(id) != 0 || info.state == TenantState::kDeleting ||
          !info.spec.enabled) {
        continue;
      }
      absl::Status disabled = registry.Disable(id);
      if (absl::IsNotFound(disabled)) continue;  // purged meanwhile
      TENANCY_RETURN_IF_ERROR(disabled);
      Log(LogLevel::kInfo,
          StrCat("tenant \"", id, "\": no longer in the file; disabled, data kept"));
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
    if (signature.ok() && have_signature_ && *signature == last_signature_ && !periodic) {
      return;
    }
    absl::StatusOr<FileContent> file =
        signature.ok() ? ReadFile() : absl::StatusOr<FileContent>(signature.status());
    if (!file.ok()) {
      if (!unreadable_logged_) {
        Log(LogLevel::kWarning, StrCat("cannot read it (", file.status().message(),
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

absl::StatusOr<std::unique_ptr<ConfigFile>> ConfigFile::Open(Engine* engine,
                                                             ConfigFileOptions options) {
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

ConfigFile::ConfigFile(std::unique_ptr<internal::ConfigFileRep> rep) : rep_(std::move(rep)) {}

ConfigFile::~ConfigFile() = default;

absl::Status ConfigFile::Reload() { return rep_->Reload(); }

ConfigFileState ConfigFile::state() const { return rep_->state(); }

void ConfigFile::CollectMetrics(MetricSink& sink) const { rep_->CollectMetrics(sink); }

}  // namespace tenancy
