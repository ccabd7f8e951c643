// metrics_bench: what updating a metric costs on the hot path, as a ratio to
// a plain relaxed std::atomic<uint64_t>::fetch_add measured in the same run.
//
// Figures (targets from issue 4):
//   counter_increment_vs_fetch_add   <= 2x   pre-resolved Counter::Increment
//   histogram_observe_vs_fetch_add   <= 10x  Histogram::Observe, 11 buckets,
//                                            values spread over every bucket
// Info (no target): the same two with 2 threads on one child, WithLabels on an
// existing child, and one exposition of 10,000 series.
//
// Run: cmake --build <dir> --target metrics_bench && <dir>/bench/metrics_bench
// (Release). Exit status 0 when every targeted figure passes.

#include <benchmark/benchmark.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "median_reporter.h"
#include "tenancy/metrics.h"

namespace tenancy {
namespace {

constexpr int kRepetitions = 5;

// A realistic spread of latencies: log-uniform from 1 ms to 20 s, so every
// one of the default buckets is hit and the binary search's branches are not
// predictable.
const std::vector<double>& Latencies() {
  static const std::vector<double> values = [] {
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> exponent(std::log(0.001), std::log(20.0));
    std::vector<double> v(4096);
    for (double& x : v) x = std::exp(exponent(rng));
    return v;
  }();
  return values;
}

Metrics& Registry() {
  static Metrics* metrics = [] {
    MetricsOptions options;
    options.logger = NewNullLogger();
    return new Metrics(std::move(options));
  }();
  return *metrics;
}

std::shared_ptr<Counter> SharedCounter() {
  static std::shared_ptr<Counter> counter =
      *(*Registry().RegisterCounter("bench_calls_total", "h", {"tenant", "method"}))
           ->WithLabels({"acme", "GET"});
  return counter;
}

std::shared_ptr<Histogram> SharedHistogram() {
  static std::shared_ptr<Histogram> histogram =
      *(*Registry().RegisterHistogram("bench_duration_seconds", "h", {"method"},
                                      DefaultLatencyBuckets()))
           ->WithLabels({"GET"});
  return histogram;
}

alignas(64) std::atomic<uint64_t> g_baseline{0};

void BM_BaselineFetchAdd(benchmark::State& state) {
  for (auto _ : state) {
    g_baseline.fetch_add(1, std::memory_order_relaxed);
  }
}

void BM_CounterIncrement(benchmark::State& state) {
  std::shared_ptr<Counter> counter = SharedCounter();
  for (auto _ : state) {
    counter->Increment();
  }
}

void BM_HistogramObserve(benchmark::State& state) {
  std::shared_ptr<Histogram> histogram = SharedHistogram();
  const std::vector<double>& values = Latencies();
  size_t i = 0;
  for (auto _ : state) {
    histogram->Observe(values[i]);
    i = (i + 1) & (4096 - 1);
  }
}

void BM_WithLabelsExisting(benchmark::State& state) {
  auto family = *Registry().RegisterCounter("bench_calls_total", "h", {"tenant", "method"});
  for (auto _ : state) {
    auto child = family->WithLabels({"acme", "GET"});
    benchmark::DoNotOptimize(child);
  }
}

void BM_ExpositionText(benchmark::State& state) {
  MetricsOptions options;
  options.logger = NewNullLogger();
  Metrics metrics(std::move(options));
  auto calls = *metrics.RegisterCounter("tenancy_api_calls_total", "h", {"tenant", "method"});
  for (int64_t t = 0; t < state.range(0) / 4; ++t) {
    const std::string tenant = "tenant-" + std::to_string(t);
    for (const char* method : {"GET", "PUT", "DELETE", "SCAN"}) {
      (*calls->WithLabels({tenant, method}))->Increment(t);
    }
  }
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = metrics.ExpositionText();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}

#define TENANCY_HOT_BENCH(fn)                                           \
  BENCHMARK(fn)->Repetitions(kRepetitions)->ReportAggregatesOnly(true); \
  BENCHMARK(fn)->Threads(2)->Repetitions(kRepetitions)->ReportAggregatesOnly(true)

TENANCY_HOT_BENCH(BM_BaselineFetchAdd);
TENANCY_HOT_BENCH(BM_CounterIncrement);
TENANCY_HOT_BENCH(BM_HistogramObserve);
BENCHMARK(BM_WithLabelsExisting)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);
BENCHMARK(BM_ExpositionText)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->Repetitions(3)
    ->ReportAggregatesOnly(true);

// One figure line: figure, measured, baseline, ratio, target, verdict.
bool PrintFigure(const char* figure, double measured, double baseline, double target, bool info) {
  const double ratio = measured / baseline;
  const bool pass = measured > 0 && baseline > 0 && ratio <= target;
  std::printf(
      "%-40s measured=%8.2f ns  baseline=%8.2f ns  ratio=%5.2f  "
      "target<=%.1f  %s%s\n",
      figure, measured, baseline, ratio, target, pass ? "PASS" : "FAIL", info ? "  (info)" : "");
  return pass;
}

}  // namespace
}  // namespace tenancy

int main(int argc, char** argv) {
  using tenancy::PrintFigure;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  tenancy::bench::MedianReporter reporter(tenancy::bench::MedianReporter::Time::kCpu);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const double base = reporter.Median("BM_BaselineFetchAdd");
  const double base2 = reporter.Median("BM_BaselineFetchAdd/threads:2");
  std::printf("\n");
  bool pass = true;
  pass &= PrintFigure("counter_increment_vs_fetch_add", reporter.Median("BM_CounterIncrement"),
                      base, 2.0, false);
  pass &= PrintFigure("histogram_observe_vs_fetch_add", reporter.Median("BM_HistogramObserve"),
                      base, 10.0, false);
  PrintFigure("counter_increment_vs_fetch_add (2 thr)",
              reporter.Median("BM_CounterIncrement/threads:2"), base2, 2.0, true);
  PrintFigure("histogram_observe_vs_fetch_add (2 thr)",
              reporter.Median("BM_HistogramObserve/threads:2"), base2, 10.0, true);
  std::printf("%-40s measured=%8.2f ns  (info, no target)\n", "with_labels_existing_child",
              reporter.Median("BM_WithLabelsExisting"));
  std::printf("%-40s measured=%8.2f ms  (info, no target)\n", "exposition_text_10k_series",
              reporter.Median("BM_ExpositionText/10000") / 1e6);
  return pass ? 0 : 1;
}
