#include "tenancy/metrics.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <unordered_map>
#include <utility>

#include "absl/base/config.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "simdjson.h"

#ifdef ABSL_HAVE_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#endif

namespace tenancy {
namespace {

// Scoped locks on an absl::Mutex whose ordering ThreadSanitizer can see.
// Debian's libabsl is not built with TSan, so absl::Mutex's own lock and
// unlock (compiled into the shared library) are invisible to it, and every
// access made under the mutex would look like a race. Under TSan these add the
// happens-before edges a mutex gives (release at unlock, acquire at lock);
// elsewhere they are absl::MutexLock / absl::ReaderMutexLock. They add edges
// only, never lock annotations, so they stay correct when absl::Mutex is made
// visible some other way (an instrumented libabsl, or an interposer of its
// lock functions): the edges are then merely redundant.
#ifdef ABSL_HAVE_THREAD_SANITIZER
inline void TsanAcquire(absl::Mutex* mu) { __tsan_acquire(mu); }
inline void TsanRelease(absl::Mutex* mu) { __tsan_release(mu); }
#else
inline void TsanAcquire(absl::Mutex*) {}
inline void TsanRelease(absl::Mutex*) {}
#endif

class ABSL_SCOPED_LOCKABLE ExclusiveLock {
 public:
  explicit ExclusiveLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
    TsanAcquire(mu_);
  }
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;
  ~ExclusiveLock() ABSL_UNLOCK_FUNCTION() {
    TsanRelease(mu_);
    mu_->Unlock();
  }

 private:
  absl::Mutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE SharedLock {
 public:
  explicit SharedLock(absl::Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
    TsanAcquire(mu_);
  }
  SharedLock(const SharedLock&) = delete;
  SharedLock& operator=(const SharedLock&) = delete;
  ~SharedLock() ABSL_UNLOCK_FUNCTION() {
    TsanRelease(mu_);
    mu_->ReaderUnlock();
  }

 private:
  absl::Mutex* const mu_;
};

}  // namespace

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

namespace {

// Concatenates strings, string_views and literals. (absl::StrCat in Abseil
// 20220623 takes absl::string_view, which std::string_view does not convert
// to.)
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (out.append(std::string_view(pieces)), ...);
  return out;
}

// ---------------------------------------------------------------------------
// Validation and formatting
// ---------------------------------------------------------------------------

bool IsNameStart(char c, bool allow_colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
}

bool IsNameChar(char c, bool allow_colon) {
  return IsNameStart(c, allow_colon) || (c >= '0' && c <= '9');
}

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool IsValidMetricName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0], true)) return false;
  for (char c : name) {
    if (!IsNameChar(c, true)) return false;
  }
  return true;
}

// [a-zA-Z_][a-zA-Z0-9_]*, and not "__..." (reserved for Prometheus itself).
bool IsValidLabelName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0], false)) return false;
  if (name.size() >= 2 && name[0] == '_' && name[1] == '_') return false;
  for (char c : name) {
    if (!IsNameChar(c, false)) return false;
  }
  return true;
}

// Well-formed UTF-8 as Prometheus (Go's utf8.ValidString) sees it: no
// overlong forms, no surrogates, nothing above U+10FFFF. simdjson's
// validator checks exactly that.
bool IsValidUtf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

absl::Status ValidateLabelNames(std::string_view metric, const std::vector<std::string>& names,
                                MetricType type) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (!IsValidLabelName(names[i])) {
      return absl::InvalidArgumentError(
          Cat("metric \"", metric, "\": invalid label name \"", names[i], "\""));
    }
    if (type == MetricType::kHistogram && names[i] == "le") {
      return absl::InvalidArgumentError(
          Cat("metric \"", metric, "\": label \"le\" is reserved in histograms"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (names[j] == names[i]) {
        return absl::InvalidArgumentError(
            Cat("metric \"", metric, "\": label \"", names[i], "\" given twice"));
      }
    }
  }
  return absl::OkStatus();
}

// Prometheus parses values with Go's strconv.ParseFloat: shortest round-trip
// decimal, and the spellings "+Inf", "-Inf", "NaN".
void AppendDouble(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("NaN");
  } else if (std::isinf(value)) {
    out->append(value > 0 ? "+Inf" : "-Inf");
  } else {
    char buf[32];
    auto result = std::to_chars(buf, buf + sizeof(buf), value);
    out->append(buf, result.ptr);
  }
}

void AppendUint(uint64_t value, std::string* out) {
  char buf[24];
  auto result = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, result.ptr);
}

// Label values escape backslash, double quote and newline.
void AppendEscapedLabelValue(std::string_view value, std::string* out) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '"':
        out->append("\\\"");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

// HELP text escapes backslash and newline only.
void AppendEscapedHelp(std::string_view help, std::string* out) {
  for (char c : help) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendLabel(std::string_view name, std::string_view value, std::string* out) {
  if (!out->empty()) out->push_back(',');
  out->append(name);
  out->append("=\"");
  AppendEscapedLabelValue(value, out);
  out->push_back('"');
}

// `a="x",b="y"`: the text between the braces of a sample.
std::string RenderLabels(const std::vector<std::string>& names,
                         const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    AppendLabel(names[i], values[i], &out);
  }
  return out;
}

// The key of a tuple of label values: each value prefixed by its length, so
// that ("a", "bc") and ("ab", "c") differ.
std::string EncodeKey(std::span<const std::string_view> values) {
  size_t size = 0;
  for (std::string_view v : values) size += 4 + v.size();
  std::string key;
  key.reserve(size);
  for (std::string_view v : values) {
    const auto len = static_cast<uint32_t>(v.size());
    char prefix[4] = {static_cast<char>(len), static_cast<char>(len >> 8),
                      static_cast<char>(len >> 16), static_cast<char>(len >> 24)};
    key.append(prefix, 4);
    key.append(v);
  }
  return key;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

constexpr std::string_view kHistogramSuffixes[] = {"_bucket", "_sum", "_count"};

}  // namespace

// ---------------------------------------------------------------------------
// Exposition: families and series gathered from the registry and the
// collectors, then written sorted.
// ---------------------------------------------------------------------------

namespace internal {

class ExpositionBuilder {
 public:
  struct Series {
    std::string labels;  // between the braces; may be empty
    std::string value;   // counters and gauges
    std::unique_ptr<HistogramData> histogram;
  };

  struct Family {
    MetricType type;
    std::string help;
    std::vector<Series> series;
  };

  ExpositionBuilder() = default;
  ExpositionBuilder(const ExpositionBuilder&) = delete;
  ExpositionBuilder& operator=(const ExpositionBuilder&) = delete;

  // A registered family. Names of registered families are unique and never
  // collide (Metrics::Register checks), so this always adds.
  std::vector<Series>* AddRegistered(const FamilyBase& family) {
    Family& f = families_[family.name()];
    f.type = family.type();
    f.help = family.help();
    return &f.series;
  }

  // A sample written by a collector; dropped (and the reason noted) if it
  // cannot be exported.
  void AddCollected(MetricType type, std::string_view name, std::string_view help,
                    std::span<const MetricLabel> labels, double value) {
    if (type != MetricType::kCounter && type != MetricType::kGauge) {
      return Drop(Cat("metric \"", name, "\": collectors write counters and gauges only"));
    }
    if (!IsValidMetricName(name)) {
      return Drop(Cat("invalid metric name \"", name, "\""));
    }
    if (!IsValidUtf8(help)) {
      return Drop(Cat("metric \"", name, "\": help is not UTF-8"));
    }
    std::string rendered;
    for (size_t i = 0; i < labels.size(); ++i) {
      if (!IsValidLabelName(labels[i].name)) {
        return Drop(Cat("metric \"", name, "\": invalid label name \"", labels[i].name, "\""));
      }
      for (size_t j = 0; j < i; ++j) {
        if (labels[j].name == labels[i].name) {
          return Drop(Cat("metric \"", name, "\": label \"", labels[i].name, "\" given twice"));
        }
      }
      if (!IsValidUtf8(labels[i].value)) {
        return Drop(
            Cat("metric \"", name, "\": label \"", labels[i].name, "\" value is not UTF-8"));
      }
      AppendLabel(labels[i].name, labels[i].value, &rendered);
    }
    auto it = families_.find(name);
    if (it == families_.end()) {
      for (std::string_view suffix : kHistogramSuffixes) {
        if (!EndsWith(name, suffix)) continue;
        auto base = families_.find(name.substr(0, name.size() - suffix.size()));
        if (base != families_.end() && base->second.type == MetricType::kHistogram) {
          return Drop(Cat("metric \"", name, "\": collides with histogram \"", base->first, "\""));
        }
      }
      it = families_.emplace(std::string(name), Family{type, std::string(help), {}}).first;
    } else if (it->second.type != type || it->second.help != help) {
      return Drop(Cat("metric \"", name,
                      "\": already exported with another type or "
                      "help"));
    }
    Series series;
    series.labels = std::move(rendered);
    AppendDouble(value, &series.value);
    it->second.series.push_back(std::move(series));
  }

  // Writes every family that has series, sorted by name, its series sorted by
  // label text. Of two series with equal labels the first is kept.
  void Write(std::string* out) {
    for (auto& [name, family] : families_) {
      if (family.series.empty()) continue;
      std::stable_sort(family.series.begin(), family.series.end(),
                       [](const Series& a, const Series& b) { return a.labels < b.labels; });
      if (!family.help.empty()) {
        out->append("# HELP ").append(name).push_back(' ');
        AppendEscapedHelp(family.help, out);
        out->push_back('\n');
      }
      out->append("# TYPE ").append(name).push_back(' ');
      out->append(MetricTypeName(family.type)).push_back('\n');
      const Series* previous = nullptr;
      for (const Series& series : family.series) {
        if (previous != nullptr && previous->labels == series.labels) {
          Drop(Cat("metric \"", name, "\": duplicate series {", series.labels, "}"));
          continue;
        }
        previous = &series;
        if (series.histogram != nullptr) {
          WriteHistogram(name, series.labels, *series.histogram, out);
        } else {
          WriteSample(name, "", series.labels, series.value, out);
        }
      }
    }
  }

  size_t dropped() const { return dropped_; }
  const std::string& first_drop_reason() const { return first_drop_reason_; }

 private:
  void Drop(std::string reason) {
    if (dropped_++ == 0) first_drop_reason_ = std::move(reason);
  }

  static void WriteSample(std::string_view name, std::string_view suffix, std::string_view labels,
                          std::string_view value, std::string* out) {
    out->append(name).append(suffix);
    if (!labels.empty()) out->append("{").append(labels).append("}");
    out->append(" ").append(value).push_back('\n');
  }

  static void WriteHistogram(std::string_view name, std::string_view labels,
                             const HistogramData& data, std::string* out) {
    uint64_t cumulative = 0;
    std::string le_labels;
    std::string value;
    for (size_t i = 0; i < data.bucket_counts.size(); ++i) {
      cumulative += data.bucket_counts[i];
      le_labels.assign(labels);
      if (!le_labels.empty()) le_labels.push_back(',');
      le_labels.append("le=\"");
      if (i < data.upper_bounds.size()) {
        AppendDouble(data.upper_bounds[i], &le_labels);
      } else {
        le_labels.append("+Inf");
      }
      le_labels.push_back('"');
      value.clear();
      AppendUint(cumulative, &value);
      WriteSample(name, "_bucket", le_labels, value, out);
    }
    value.clear();
    AppendDouble(data.sum, &value);
    WriteSample(name, "_sum", labels, value, out);
    value.clear();
    // The count is the buckets' total as read, so "+Inf" and _count agree.
    AppendUint(cumulative, &value);
    WriteSample(name, "_count", labels, value, out);
  }

  std::map<std::string, Family, std::less<>> families_;
  size_t dropped_ = 0;
  std::string first_drop_reason_;
};

namespace {

class CollectingSink final : public MetricSink {
 public:
  explicit CollectingSink(ExpositionBuilder* builder) : builder_(builder) {}

  void Add(MetricType type, std::string_view name, std::string_view help,
           std::span<const MetricLabel> labels, double value) override {
    builder_->AddCollected(type, name, help, labels, value);
  }

 private:
  ExpositionBuilder* const builder_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Collectors
// ---------------------------------------------------------------------------

class CollectorList {
 public:
  CollectorList() = default;
  CollectorList(const CollectorList&) = delete;
  CollectorList& operator=(const CollectorList&) = delete;

  uint64_t Add(std::function<void(MetricSink&)> collect) {
    auto entry = std::make_shared<Entry>();
    {
      ExclusiveLock lock(&entry->run_mu);
      entry->collect = std::move(collect);
    }
    ExclusiveLock lock(&mu_);
    const uint64_t id = next_id_++;
    entries_.emplace(id, std::move(entry));
    return id;
  }

  void Remove(uint64_t id) {
    std::shared_ptr<Entry> entry;
    {
      ExclusiveLock lock(&mu_);
      auto it = entries_.find(id);
      if (it == entries_.end()) return;
      entry = std::move(it->second);
      entries_.erase(it);
    }
    // Waits for a collection that runs this collector right now, then makes
    // sure no collection that already copied the list will run it.
    std::function<void(MetricSink&)> doomed;
    {
      ExclusiveLock lock(&entry->run_mu);
      doomed = std::move(entry->collect);
      entry->collect = nullptr;
    }
    // `doomed` (and what it captured) is destroyed here, outside the lock.
  }

  bool Contains(uint64_t id) const {
    ExclusiveLock lock(&mu_);
    return entries_.count(id) != 0;
  }

  void RunAll(MetricSink& sink) const {
    std::vector<std::shared_ptr<Entry>> entries;
    {
      ExclusiveLock lock(&mu_);
      entries.reserve(entries_.size());
      for (const auto& [id, entry] : entries_) entries.push_back(entry);
    }
    for (const auto& entry : entries) {
      ExclusiveLock lock(&entry->run_mu);
      if (entry->collect) entry->collect(sink);
    }
  }

 private:
  struct Entry {
    absl::Mutex run_mu;
    // Empty once removed. Held while the collector runs, so calls never
    // overlap and Remove can wait for a running one.
    std::function<void(MetricSink&)> collect ABSL_GUARDED_BY(run_mu);
  };

  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Ordered by id, so collectors run in registration order.
  std::map<uint64_t, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// FamilyBase
// ---------------------------------------------------------------------------

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names, std::vector<double> bucket_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)),
      bucket_bounds_(std::move(bucket_bounds)) {}

FamilyBase::~FamilyBase() = default;

}  // namespace internal

// ---------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------

namespace {

std::unique_ptr<double[]> CopyBounds(const std::vector<double>& bounds) {
  auto copy = std::make_unique<double[]>(bounds.size());
  std::copy(bounds.begin(), bounds.end(), copy.get());
  return copy;
}

void AppendChild(const Counter& child, internal::ExpositionBuilder::Series* s) {
  AppendUint(child.Value(), &s->value);
}

void AppendChild(const Gauge& child, internal::ExpositionBuilder::Series* s) {
  AppendDouble(child.Value(), &s->value);
}

void AppendChild(const Histogram& child, internal::ExpositionBuilder::Series* s) {
  s->histogram = std::make_unique<HistogramData>(child.Data());
}

}  // namespace

Histogram::Histogram(const std::vector<double>& bounds)
    : num_bounds_(bounds.size()),
      bounds_(CopyBounds(bounds)),
      buckets_(new std::atomic<uint64_t>[bounds.size() + 1]()) {}

HistogramData Histogram::Data() const {
  HistogramData data;
  data.upper_bounds.assign(bounds_.get(), bounds_.get() + num_bounds_);
  data.bucket_counts.resize(num_bounds_ + 1);
  for (size_t i = 0; i <= num_bounds_; ++i) {
    data.bucket_counts[i] = buckets_[i].load(std::memory_order_relaxed);
    data.count += data.bucket_counts[i];
  }
  data.sum = sum_.load(std::memory_order_relaxed);
  return data;
}

// ---------------------------------------------------------------------------
// MetricFamily
// ---------------------------------------------------------------------------

namespace {

template <typename Child>
constexpr MetricType TypeOf();
template <>
constexpr MetricType TypeOf<Counter>() {
  return MetricType::kCounter;
}
template <>
constexpr MetricType TypeOf<Gauge>() {
  return MetricType::kGauge;
}
template <>
constexpr MetricType TypeOf<Histogram>() {
  return MetricType::kHistogram;
}

}  // namespace

template <typename Child>
struct MetricFamily<Child>::Children {
  struct Entry {
    std::vector<std::string> label_values;
    std::shared_ptr<Child> child;
  };
  mutable absl::Mutex mu;
  // Keyed by the label values, each length-prefixed (so that no two tuples
  // share a key).
  std::unordered_map<std::string, Entry> map ABSL_GUARDED_BY(mu);
};

template <typename Child>
MetricFamily<Child>::MetricFamily(std::string name, std::string help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bucket_bounds)
    : FamilyBase(std::move(name), std::move(help), TypeOf<Child>(), std::move(label_names),
                 std::move(bucket_bounds)),
      children_(std::make_unique<Children>()) {}

template <typename Child>
MetricFamily<Child>::~MetricFamily() = default;

template <typename Child>
absl::StatusOr<std::shared_ptr<Child>> MetricFamily<Child>::WithLabels(
    std::span<const std::string_view> label_values) {
  if (label_values.size() != label_names().size()) {
    return absl::InvalidArgumentError(
        Cat("metric \"", name(), "\": ", std::to_string(label_values.size()),
            " label values given, ", std::to_string(label_names().size()), " expected"));
  }
  std::string key = EncodeKey(label_values);
  {
    SharedLock lock(&children_->mu);
    auto it = children_->map.find(key);
    if (it != children_->map.end()) return it->second.child;
  }
  for (size_t i = 0; i < label_values.size(); ++i) {
    if (!IsValidUtf8(label_values[i])) {
      return absl::InvalidArgumentError(
          Cat("metric \"", name(), "\": value of label \"", label_names()[i], "\" is not UTF-8"));
    }
  }
  ExclusiveLock lock(&children_->mu);
  auto [it, inserted] = children_->map.try_emplace(std::move(key));
  if (inserted) {
    it->second.label_values.assign(label_values.begin(), label_values.end());
    it->second.child = std::shared_ptr<Child>(new Child(bucket_bounds()));
  }
  return it->second.child;
}

template <typename Child>
absl::Status MetricFamily<Child>::Remove(std::span<const std::string_view> label_values) {
  if (label_values.size() != label_names().size()) {
    return absl::InvalidArgumentError(
        Cat("metric \"", name(), "\": ", std::to_string(label_values.size()),
            " label values given, ", std::to_string(label_names().size()), " expected"));
  }
  const std::string key = EncodeKey(label_values);
  std::shared_ptr<Child> removed;  // released outside the lock
  ExclusiveLock lock(&children_->mu);
  auto it = children_->map.find(key);
  if (it != children_->map.end()) {
    removed = std::move(it->second.child);
    children_->map.erase(it);
  }
  return absl::OkStatus();
}

template <typename Child>
absl::StatusOr<size_t> MetricFamily<Child>::RemoveWhere(std::string_view label_name,
                                                        std::string_view label_value) {
  const auto& names = label_names();
  auto it = std::find(names.begin(), names.end(), label_name);
  if (it == names.end()) {
    return absl::InvalidArgumentError(
        Cat("metric \"", name(), "\": no label \"", label_name, "\""));
  }
  return RemoveWhereIndex(static_cast<size_t>(it - names.begin()), label_value);
}

template <typename Child>
size_t MetricFamily<Child>::RemoveWhereIndex(size_t label_index, std::string_view value) {
  std::vector<std::shared_ptr<Child>> removed;  // released outside the lock
  ExclusiveLock lock(&children_->mu);
  for (auto it = children_->map.begin(); it != children_->map.end();) {
    if (it->second.label_values[label_index] == value) {
      removed.push_back(std::move(it->second.child));
      it = children_->map.erase(it);
    } else {
      ++it;
    }
  }
  return removed.size();
}

template <typename Child>
size_t MetricFamily<Child>::size() const {
  SharedLock lock(&children_->mu);
  return children_->map.size();
}

template <typename Child>
void MetricFamily<Child>::AppendTo(internal::ExpositionBuilder* builder) const {
  std::vector<internal::ExpositionBuilder::Series>* out = builder->AddRegistered(*this);
  SharedLock lock(&children_->mu);
  out->reserve(out->size() + children_->map.size());
  for (const auto& [key, entry] : children_->map) {
    internal::ExpositionBuilder::Series series;
    series.labels = RenderLabels(label_names(), entry.label_values);
    AppendChild(*entry.child, &series);
    out->push_back(std::move(series));
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

// ---------------------------------------------------------------------------
// Buckets
// ---------------------------------------------------------------------------

std::vector<double> DefaultLatencyBuckets() {
  return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> bounds;
  bounds.reserve(count > 0 ? static_cast<size_t>(count) : 0);
  double bound = start;
  for (int i = 0; i < count; ++i) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

// ---------------------------------------------------------------------------
// CollectorHandle
// ---------------------------------------------------------------------------

CollectorHandle::CollectorHandle(std::weak_ptr<internal::CollectorList> list, uint64_t id)
    : list_(std::move(list)), id_(id) {}

CollectorHandle::CollectorHandle(CollectorHandle&& other) noexcept
    : list_(std::move(other.list_)), id_(std::exchange(other.id_, 0)) {
  other.list_.reset();
}

CollectorHandle& CollectorHandle::operator=(CollectorHandle&& other) noexcept {
  if (this != &other) {
    Remove();
    list_ = std::move(other.list_);
    other.list_.reset();
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

CollectorHandle::~CollectorHandle() { Remove(); }

void CollectorHandle::Remove() {
  if (std::shared_ptr<internal::CollectorList> list = list_.lock()) {
    list->Remove(id_);
  }
  list_.reset();
  id_ = 0;
}

bool CollectorHandle::registered() const {
  std::shared_ptr<internal::CollectorList> list = list_.lock();
  return list != nullptr && list->Contains(id_);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

struct Metrics::Families {
  mutable absl::Mutex mu;
  std::unordered_map<std::string, std::shared_ptr<internal::FamilyBase>> map ABSL_GUARDED_BY(mu);
};

Metrics::Metrics(MetricsOptions options)
    : options_(std::move(options)),
      collectors_(std::make_shared<internal::CollectorList>()),
      families_(std::make_unique<Families>()) {}

Metrics::~Metrics() = default;

template <typename Child>
absl::StatusOr<std::shared_ptr<MetricFamily<Child>>> Metrics::Register(
    MetricType type, std::string_view name, std::string_view help,
    std::vector<std::string> label_names, std::vector<double> bucket_bounds) {
  if (!IsValidMetricName(name)) {
    return absl::InvalidArgumentError(Cat("invalid metric name \"", name, "\""));
  }
  if (!IsValidUtf8(help)) {
    return absl::InvalidArgumentError(Cat("metric \"", name, "\": help is not UTF-8"));
  }
  if (absl::Status s = ValidateLabelNames(name, label_names, type); !s.ok()) {
    return s;
  }
  if (type == MetricType::kHistogram) {
    if (!bucket_bounds.empty() && bucket_bounds.back() == std::numeric_limits<double>::infinity()) {
      bucket_bounds.pop_back();
    }
    for (size_t i = 0; i < bucket_bounds.size(); ++i) {
      if (!std::isfinite(bucket_bounds[i]) ||
          (i > 0 && !(bucket_bounds[i - 1] < bucket_bounds[i]))) {
        return absl::InvalidArgumentError(
            Cat("metric \"", name, "\": bucket bounds must be finite and strictly increasing"));
      }
    }
  }

  ExclusiveLock lock(&families_->mu);
  auto it = families_->map.find(std::string(name));
  if (it != families_->map.end()) {
    const internal::FamilyBase& existing = *it->second;
    if (existing.type() != type || existing.help() != help ||
        existing.label_names() != label_names || existing.bucket_bounds() != bucket_bounds) {
      return absl::AlreadyExistsError(Cat(
          "metric \"", name, "\": already registered with another type, help, labels or buckets"));
    }
    // Same type means same Child: the cast is exact.
    return std::static_pointer_cast<MetricFamily<Child>>(it->second);
  }
  // A histogram "h" writes h_bucket, h_sum and h_count: none of them may be
  // a family of its own.
  for (std::string_view suffix : kHistogramSuffixes) {
    if (type == MetricType::kHistogram && families_->map.count(Cat(name, suffix)) != 0) {
      return absl::AlreadyExistsError(
          Cat("metric \"", name, "\": collides with \"", name, suffix, "\""));
    }
    if (EndsWith(name, suffix)) {
      auto base = families_->map.find(std::string(name.substr(0, name.size() - suffix.size())));
      if (base != families_->map.end() && base->second->type() == MetricType::kHistogram) {
        return absl::AlreadyExistsError(
            Cat("metric \"", name, "\": collides with histogram \"", base->first, "\""));
      }
    }
  }
  const bool has_labels = !label_names.empty();
  std::shared_ptr<MetricFamily<Child>> family(new MetricFamily<Child>(
      std::string(name), std::string(help), std::move(label_names), std::move(bucket_bounds)));
  if (!has_labels) {
    // Exported at zero from the start, like an unlabelled Go client metric.
    absl::StatusOr<std::shared_ptr<Child>> child = family->WithLabels({});
    if (!child.ok()) return child.status();
  }
  families_->map.emplace(std::string(name), family);
  return family;
}

absl::StatusOr<std::shared_ptr<CounterFamily>> Metrics::RegisterCounter(
    std::string_view name, std::string_view help, std::vector<std::string> label_names) {
  return Register<Counter>(MetricType::kCounter, name, help, std::move(label_names), {});
}

absl::StatusOr<std::shared_ptr<GaugeFamily>> Metrics::RegisterGauge(
    std::string_view name, std::string_view help, std::vector<std::string> label_names) {
  return Register<Gauge>(MetricType::kGauge, name, help, std::move(label_names), {});
}

absl::StatusOr<std::shared_ptr<HistogramFamily>> Metrics::RegisterHistogram(
    std::string_view name, std::string_view help, std::vector<std::string> label_names,
    std::vector<double> bucket_bounds) {
  return Register<Histogram>(MetricType::kHistogram, name, help, std::move(label_names),
                             std::move(bucket_bounds));
}

absl::StatusOr<size_t> Metrics::RemoveSeriesWhere(std::string_view label_name,
                                                  std::string_view label_value) {
  if (!IsValidLabelName(label_name)) {
    return absl::InvalidArgumentError(Cat("invalid label name \"", label_name, "\""));
  }
  std::vector<std::shared_ptr<internal::FamilyBase>> families;
  {
    SharedLock lock(&families_->mu);
    families.reserve(families_->map.size());
    for (const auto& [name, family] : families_->map) families.push_back(family);
  }
  size_t removed = 0;
  for (const auto& family : families) {
    const auto& names = family->label_names();
    auto it = std::find(names.begin(), names.end(), label_name);
    if (it == names.end()) continue;
    removed += family->RemoveWhereIndex(static_cast<size_t>(it - names.begin()), label_value);
  }
  return removed;
}

CollectorHandle Metrics::AddCollector(std::function<void(MetricSink&)> collect) {
  const uint64_t id = collectors_->Add(std::move(collect));
  return CollectorHandle(collectors_, id);
}

std::string Metrics::ExpositionText() const {
  std::vector<std::shared_ptr<internal::FamilyBase>> families;
  {
    SharedLock lock(&families_->mu);
    families.reserve(families_->map.size());
    for (const auto& [name, family] : families_->map) families.push_back(family);
  }
  internal::ExpositionBuilder builder;
  for (const auto& family : families) family->AppendTo(&builder);
  internal::CollectingSink sink(&builder);
  collectors_->RunAll(sink);
  std::string out;
  builder.Write(&out);
  if (builder.dropped() > 0) {
    options_.logger->Log(LogLevel::kWarning,
                         Cat("metrics: dropped ", std::to_string(builder.dropped()),
                             " collected sample(s); first: ", builder.first_drop_reason()));
  }
  return out;
}

}  // namespace tenancy
