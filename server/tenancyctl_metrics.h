// What `tenancyctl top` reads from GET /metrics: per-tenant counters and the
// per-tenant latency histogram, summed into one snapshot, and the rates
// between two snapshots.
//
// Thread safety: plain values and pure functions.

#ifndef TENANCY_SERVER_TENANCYCTL_METRICS_H_
#define TENANCY_SERVER_TENANCYCTL_METRICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tenancy::ctl {

// One tenant's cumulative counts at one scrape. Intentionally copyable.
struct TenantCounts {
  double requests = 0;      // tenancy_api_calls_total, every method
  double rejected_429 = 0;  // tenancy_rejections_total: rate_limited, concurrency_limited
  double rejected_507 = 0;  // tenancy_rejections_total: quota_exceeded
  // tenancy_tenant_request_duration_seconds: cumulative bucket counts by
  // upper bound (+Inf as infinity).
  std::map<double, double> buckets;
};

// Tenant id -> counts, from Prometheus text exposition. Lines it does not
// know are skipped.
std::map<std::string, TenantCounts> ParseTenantCounts(std::string_view exposition);

// What `top` shows for a tenant over an interval. Intentionally copyable.
struct TenantRates {
  std::string tenant;
  double requests_per_second = 0;
  double rejected_429_per_second = 0;
  double rejected_507_per_second = 0;
  // Seconds; negative when no request finished in the interval.
  double p99 = -1;
};

// The rates from `before` to `after`, `seconds` apart, busiest first (then
// by id). A tenant absent from `before` counts from zero.
std::vector<TenantRates> RatesBetween(const std::map<std::string, TenantCounts>& before,
                                      const std::map<std::string, TenantCounts>& after,
                                      double seconds);

// The q-quantile of a histogram of cumulative bucket counts, interpolated
// linearly within its bucket as Prometheus' histogram_quantile does;
// negative when the histogram is empty.
double HistogramQuantile(double q, const std::map<double, double>& cumulative);

}  // namespace tenancy::ctl

#endif  // TENANCY_SERVER_TENANCYCTL_METRICS_H_
