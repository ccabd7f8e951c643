// MedianReporter: Google Benchmark's console output, plus the median of each
// benchmark's repetitions kept for the figure lines the bench targets print.
//
// Thread safety: not thread-safe (Google Benchmark reports from one thread).

#ifndef TENANCY_BENCH_MEDIAN_REPORTER_H_
#define TENANCY_BENCH_MEDIAN_REPORTER_H_

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

namespace tenancy::bench {

class MedianReporter : public benchmark::ConsoleReporter {
 public:
  // Which time a median is of. CPU time leaves out what another process on a
  // small machine takes from this one; real time is what a threaded
  // benchmark (or one that waits on I/O) must be judged by.
  enum class Time { kCpu, kReal, kRealWhenThreaded };

  explicit MedianReporter(Time time) : time_(time) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.aggregate_name != "median") continue;
      // Keyed "<function>[/<args>][/threads:N]".
      std::string name = run.run_name.function_name;
      if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
      if (run.threads > 1) name += "/threads:" + std::to_string(run.threads);
      const bool real =
          time_ == Time::kReal || (time_ == Time::kRealWhenThreaded && run.threads > 1);
      const double t = real ? run.GetAdjustedRealTime() : run.GetAdjustedCPUTime();
      medians_[name] = t * benchmark::GetTimeUnitMultiplier(benchmark::kNanosecond) /
                       benchmark::GetTimeUnitMultiplier(run.time_unit);
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // The median of benchmark `name`, in ns per iteration; -1 if it did not run.
  double Median(const std::string& name) const {
    auto it = medians_.find(name);
    return it == medians_.end() ? -1 : it->second;
  }

 private:
  const Time time_;
  std::map<std::string, double> medians_;
};

}  // namespace tenancy::bench

#endif  // TENANCY_BENCH_MEDIAN_REPORTER_H_
