// Metrics: counters, gauges and histograms with labels, exposed in the
// Prometheus text format, version 0.0.4.
//
// How it is used. A metric family (a name, help text and label names) is
// registered once; a caller resolves a child (one time series, one tuple of
// label values) once and keeps it; updating the child on the hot path is a
// relaxed atomic operation, never a map lookup under a lock:
//
//   Metrics metrics;
//   auto calls = metrics.RegisterCounter("tenancy_api_calls_total",
//                                        "API calls by tenant and method",
//                                        {"tenant", "method"});
//   std::shared_ptr<Counter> get = *(*calls)->WithLabels({"acme", "GET"});
//   get->Increment();                      // one relaxed fetch_add
//
// Values computed at scrape time (storage bytes from the usage ledger, RocksDB
// properties, ...) come from collectors: callbacks that write samples into a
// MetricSink while the exposition is produced (see AddCollector).
//
// Lifetime. Families and children are handed out as std::shared_ptr: a pointer
// someone holds stays valid however long they hold it, even after the series
// was removed or the registry destroyed. Updates to a removed child are simply
// not exported any more.
//
// Thread safety: Metrics, the families and the children are safe for
// concurrent access from multiple threads without any external
// synchronization. An exposition may run concurrently with updates; every
// value is read atomically. A histogram's _count is written as the sum of the
// bucket counts it read, so buckets, "+Inf" and _count always agree within one
// exposition; its _sum is read separately and may include or miss an
// observation that is in flight at that moment.

#ifndef TENANCY_METRICS_H_
#define TENANCY_METRICS_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tenancy/logger.h"

namespace tenancy {

class Metrics;
class MetricSink;
template <typename Child>
class MetricFamily;

namespace internal {
class ExpositionBuilder;
class CollectorList;
}  // namespace internal

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge" or "histogram", as written on a "# TYPE" line.
std::string_view MetricTypeName(MetricType type);

// The Content-Type of ExpositionText()'s output, for an HTTP /metrics route.
inline constexpr std::string_view kPrometheusTextContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// ---------------------------------------------------------------------------
// Children: one time series each. Obtained from a family's WithLabels().
// ---------------------------------------------------------------------------

// A monotonically increasing integer count.
class Counter {
 public:
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `n`. A relaxed atomic add: no lock, no allocation. The value wraps at
  // 2^64.
  void Increment(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }

  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  template <typename>
  friend class MetricFamily;
  explicit Counter(const std::vector<double>& /*unused bounds*/) {}

  // On its own cache line, so that children updated by different threads do
  // not slow each other down (false sharing).
  alignas(64) std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  // Replaces the value. A relaxed atomic store.
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }

  // Adds `delta` (which may be negative). A compare-and-swap loop on the
  // double: lock-free, and exact for integers up to 2^53.
  void Add(double delta) {
    double old_value = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(old_value, old_value + delta, std::memory_order_relaxed)) {
    }
  }

  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  template <typename>
  friend class MetricFamily;
  explicit Gauge(const std::vector<double>& /*unused bounds*/) {}

  alignas(64) std::atomic<double> value_{0.0};
};

// What a histogram child holds at one moment.
struct HistogramData {
  // The finite upper bounds, ascending; the "+Inf" bucket is implicit.
  std::vector<double> upper_bounds;
  // Per-bucket (not cumulative) counts; size upper_bounds.size() + 1, the last
  // one being the "+Inf" bucket.
  std::vector<uint64_t> bucket_counts;
  // The sum of bucket_counts.
  uint64_t count = 0;
  double sum = 0.0;
  // Intentionally copyable.
};

// Observations counted in fixed buckets, plus their count and sum.
class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose upper bound is >= value (bounds
  // are inclusive, as Prometheus's "le" says) and adds it to the sum. A binary
  // search over the bounds, one relaxed atomic add and one compare-and-swap
  // loop; no lock, no allocation. NaN is counted in the "+Inf" bucket and
  // makes the sum NaN from then on (as the Go client does).
  void Observe(double value) {
    const double* begin = bounds_.get();
    const double* it = std::partition_point(begin, begin + num_bounds_,
                                            // False once value <= bound; never false for NaN.
                                            [value](double bound) { return !(value <= bound); });
    buckets_[it - begin].fetch_add(1, std::memory_order_relaxed);
    double old_sum = sum_.load(std::memory_order_relaxed);
    while (!sum_.compare_exchange_weak(old_sum, old_sum + value, std::memory_order_relaxed)) {
    }
  }

  // A snapshot. Each bucket is read atomically; `count` is the sum of the
  // buckets read, `sum` may be ahead of or behind them by observations that
  // run concurrently.
  HistogramData Data() const;

 private:
  template <typename>
  friend class MetricFamily;
  explicit Histogram(const std::vector<double>& bounds);

  // Constant after construction.
  const size_t num_bounds_;
  const std::unique_ptr<double[]> bounds_;
  // num_bounds_ + 1 counters; the last is "+Inf".
  const std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  alignas(64) std::atomic<double> sum_{0.0};
};

// ---------------------------------------------------------------------------
// Families
// ---------------------------------------------------------------------------

namespace internal {

// What every family has; the part of a family the registry works with.
class FamilyBase {
 public:
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;
  virtual ~FamilyBase();

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Histograms only: the finite upper bounds, ascending.
  const std::vector<double>& bucket_bounds() const { return bucket_bounds_; }

 protected:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names, std::vector<double> bucket_bounds);

 private:
  friend class ::tenancy::Metrics;

  // Adds a snapshot of every child to `builder`.
  virtual void AppendTo(ExpositionBuilder* builder) const = 0;
  // Removes every child whose label `label_index` equals `value`.
  virtual size_t RemoveWhereIndex(size_t label_index, std::string_view value) = 0;

  // Constant after construction.
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bucket_bounds_;
};

}  // namespace internal

// A named family of children of one type (Counter, Gauge or Histogram) that
// share label names. Created by Metrics::Register*; shared with the registry.
//
// Methods that take label values want exactly one value per label name, in
// the order the names were registered; values are any valid UTF-8 (escaped on
// output). A std::vector<std::string> converts with
//   std::vector<std::string_view> views(v.begin(), v.end());
template <typename Child>
class MetricFamily final : public internal::FamilyBase {
 public:
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;
  ~MetricFamily() override;

  // Returns the child for `label_values`, creating it (at zero) on first use.
  // Every call with the same values returns the same child until it is
  // removed; after Remove, the next call creates a new child starting at zero
  // (a counter reset, which Prometheus handles). Takes a reader lock and hashes
  // the values: call it once and keep the pointer, not once per update.
  // Returns INVALID_ARGUMENT if the number of values differs from the number
  // of label names, or a value is not valid UTF-8.
  absl::StatusOr<std::shared_ptr<Child>> WithLabels(
      std::initializer_list<std::string_view> label_values) {
    return WithLabels(std::span<const std::string_view>(label_values.begin(), label_values.size()));
  }
  absl::StatusOr<std::shared_ptr<Child>> WithLabels(std::span<const std::string_view> label_values);

  // Unlinks the child for `label_values` so it is no longer exported. A
  // pointer someone still holds stays valid; its updates are not exported.
  // Idempotent: OK whether or not such a child existed. Returns
  // INVALID_ARGUMENT on a wrong number of values.
  absl::Status Remove(std::initializer_list<std::string_view> label_values) {
    return Remove(std::span<const std::string_view>(label_values.begin(), label_values.size()));
  }
  absl::Status Remove(std::span<const std::string_view> label_values);

  // Removes every child whose label `label_name` has `label_value` (e.g. all
  // of a purged tenant's series) and returns how many. Returns
  // INVALID_ARGUMENT if the family has no label `label_name`.
  absl::StatusOr<size_t> RemoveWhere(std::string_view label_name, std::string_view label_value);

  // The number of children now exported.
  size_t size() const;

 private:
  friend class Metrics;

  // The children and the lock over them (lib/metrics.cc).
  struct Children;

  MetricFamily(std::string name, std::string help, std::vector<std::string> label_names,
               std::vector<double> bucket_bounds);

  void AppendTo(internal::ExpositionBuilder* builder) const override;
  size_t RemoveWhereIndex(size_t label_index, std::string_view value) override;

  const std::unique_ptr<Children> children_;
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

extern template class MetricFamily<Counter>;
extern template class MetricFamily<Gauge>;
extern template class MetricFamily<Histogram>;

// ---------------------------------------------------------------------------
// Bucket layouts for RegisterHistogram
// ---------------------------------------------------------------------------

// Prometheus's default buckets, for latencies in seconds:
// .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10.
std::vector<double> DefaultLatencyBuckets();

// `count` bounds: start, start*factor, start*factor^2, ...
// REQUIRES: start > 0, factor > 1, count >= 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// ---------------------------------------------------------------------------
// Collectors
// ---------------------------------------------------------------------------

// One label of a collected sample.
struct MetricLabel {
  std::string_view name;
  std::string_view value;
  // Intentionally copyable.
};

// Where a collector writes the samples it computes at exposition time. A
// sample whose family name is also registered, or written by another
// collector, joins that family: "# HELP" and "# TYPE" are written once. Valid
// only during the collector's call.
//
// A sample that cannot be exported is dropped, and the drop is reported
// through MetricsOptions::logger (one warning per exposition, with the count
// and the first reason). That is the case for an invalid metric or label name,
// a label name used twice, text that is not UTF-8, a family name already
// exported with another type or help text (or a histogram's _bucket, _sum or
// _count), and a second sample with the same name and labels (the first one,
// or a registered child, wins).
class MetricSink {
 public:
  MetricSink(const MetricSink&) = delete;
  MetricSink& operator=(const MetricSink&) = delete;

  // Adds one sample. `type` is kCounter or kGauge (collectors do not write
  // histograms).
  virtual void Add(MetricType type, std::string_view name, std::string_view help,
                   std::span<const MetricLabel> labels, double value) = 0;

  void AddGauge(std::string_view name, std::string_view help,
                std::initializer_list<MetricLabel> labels, double value) {
    Add(MetricType::kGauge, name, help, std::span<const MetricLabel>(labels.begin(), labels.size()),
        value);
  }
  void AddCounter(std::string_view name, std::string_view help,
                  std::initializer_list<MetricLabel> labels, double value) {
    Add(MetricType::kCounter, name, help,
        std::span<const MetricLabel>(labels.begin(), labels.size()), value);
  }

 protected:
  MetricSink() = default;
  ~MetricSink() = default;
};

// Keeps a collector registered; removes it when destroyed. Movable, not
// copyable. May outlive the Metrics that issued it (removal is then a no-op).
class CollectorHandle {
 public:
  // An empty handle: registers nothing.
  CollectorHandle() = default;
  CollectorHandle(const CollectorHandle&) = delete;
  CollectorHandle& operator=(const CollectorHandle&) = delete;
  CollectorHandle(CollectorHandle&& other) noexcept;
  // Removes the collector this handle held, then takes over `other`'s.
  CollectorHandle& operator=(CollectorHandle&& other) noexcept;
  ~CollectorHandle();

  // Unregisters the collector. When it returns, the collector is not running
  // (a collection in progress is waited for) and will never run again, and
  // the std::function (with whatever it captured) has been destroyed, so what
  // it refers to may go away. Idempotent.
  // REQUIRES: not called from inside the collector itself (it would wait for
  // itself).
  void Remove();

  // False once removed, moved from, or for an empty handle.
  bool registered() const;

 private:
  friend class Metrics;
  CollectorHandle(std::weak_ptr<internal::CollectorList> list, uint64_t id);

  std::weak_ptr<internal::CollectorList> list_;
  uint64_t id_ = 0;
};

// ---------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------

struct MetricsOptions {
  // Behavior

  // Where problems found while producing an exposition are reported (samples
  // a collector wrote that had to be dropped). Must not be null.
  // Default: NewStderrLogger(). Fixed at construction.
  std::shared_ptr<Logger> logger = NewStderrLogger();
};

class Metrics {
 public:
  explicit Metrics(MetricsOptions options = {});
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  ~Metrics();

  // Registers a family, or returns the one already registered under `name`
  // when type, help, label names (and for histograms, bounds) are all equal.
  // A family without labels gets its single child at once, so it is exported
  // (at zero) from the start; a family with labels is exported once it has a
  // child. Counter names conventionally end in "_total"; this is not enforced.
  //
  // Returns INVALID_ARGUMENT for a metric name not matching
  // [a-zA-Z_:][a-zA-Z0-9_:]*, a label name not matching [a-zA-Z_][a-zA-Z0-9_]*
  // or starting with "__", a label name given twice, help text that is not
  // UTF-8, and (histograms) a label named "le" or bounds that are not finite
  // and strictly increasing (a trailing +Inf is accepted and dropped).
  // Returns ALREADY_EXISTS if `name` is registered with another type, help,
  // label names or bounds, or would collide with a histogram's _bucket, _sum
  // or _count series.
  absl::StatusOr<std::shared_ptr<CounterFamily>> RegisterCounter(
      std::string_view name, std::string_view help, std::vector<std::string> label_names = {});
  absl::StatusOr<std::shared_ptr<GaugeFamily>> RegisterGauge(
      std::string_view name, std::string_view help, std::vector<std::string> label_names = {});
  absl::StatusOr<std::shared_ptr<HistogramFamily>> RegisterHistogram(
      std::string_view name, std::string_view help, std::vector<std::string> label_names,
      std::vector<double> bucket_bounds);

  // Removes, in every registered family that has a label `label_name`, the
  // children whose value for it is `label_value` (for a purged tenant:
  // RemoveSeriesWhere("tenant", id)). Returns how many were removed.
  // Returns INVALID_ARGUMENT for an invalid label name.
  absl::StatusOr<size_t> RemoveSeriesWhere(std::string_view label_name,
                                           std::string_view label_value);

  // Registers `collect`, called during every exposition to write samples
  // computed at that moment. Calls to one collector never overlap; different
  // collectors may run on different threads. A collector must be quick, must
  // not call ExpositionText() and must not remove itself. The collector stays
  // registered as long as the returned handle does.
  // REQUIRES: collect is not empty.
  [[nodiscard]] CollectorHandle AddCollector(std::function<void(MetricSink&)> collect);

  // The exposition in the Prometheus text format 0.0.4: families sorted by
  // name, each with "# HELP" (when the help text is not empty) and "# TYPE"
  // once, then its series sorted by their label text; histograms as
  // cumulative _bucket{le="..."} series ending in le="+Inf", then _sum and
  // _count. The same state always gives the same text.
  std::string ExpositionText() const;

 private:
  template <typename Child>
  absl::StatusOr<std::shared_ptr<MetricFamily<Child>>> Register(
      MetricType type, std::string_view name, std::string_view help,
      std::vector<std::string> label_names, std::vector<double> bucket_bounds);

  // Constant after construction.
  const MetricsOptions options_;
  const std::shared_ptr<internal::CollectorList> collectors_;

  // The families by name and the lock over them (lib/metrics.cc).
  struct Families;
  const std::unique_ptr<Families> families_;
};

}  // namespace tenancy

#endif  // TENANCY_METRICS_H_
