// The metrics tenancyd exports at GET /metrics, on the library's Metrics
// registry.
//
// Updated on the hot path (each a relaxed atomic add on a child resolved
// once, never a map lookup under a lock):
//   tenancy_api_calls_total{tenant,method}     tenant requests received
//   tenancy_request_duration_seconds{route}    histogram, handler time
//   tenancy_tenant_request_duration_seconds{tenant}  the same per tenant
//                                              (fewer buckets), for a p99
//                                              per tenant (tenancyctl top)
//   tenancy_http_responses_total{code}         every response by status
// Computed at scrape time by collectors:
//   the engine's own series (Engine::CollectMetrics: usage, quotas, calls,
//   rejections and limits per tenant, tenants by state, RocksDB gauges),
//   tenancy_http_* (connections, queue, workers, refused heads).
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_SERVER_SERVER_METRICS_H_
#define TENANCY_SERVER_SERVER_METRICS_H_

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "http_transport.h"
#include "route_table.h"
#include "tenancy/engine.h"
#include "tenancy/metrics.h"

namespace tenancy::internal {

enum class HttpMethod { kGet, kHead, kPut, kPost, kDelete, kOther };
inline constexpr int kNumHttpMethods = 6;
HttpMethod ParseHttpMethod(std::string_view method);
std::string_view HttpMethodName(HttpMethod method);

// One tenant's hot-path children, resolved once per tenant.
struct TenantSeries {
  std::array<std::shared_ptr<Counter>, kNumHttpMethods> calls;
  std::shared_ptr<Histogram> duration;
  // Intentionally copyable.
};

class ServerMetrics {
 public:
  // REQUIRES: `engine` outlives this object.
  ServerMetrics(Engine* engine, std::shared_ptr<Logger> logger);
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;
  ~ServerMetrics();

  Metrics& registry() { return metrics_; }

  // Slow path (locks and hashes): once per tenant.
  TenantSeries ResolveTenant(std::string_view tenant_id);
  // Drops every series of a purged tenant.
  void ForgetTenant(std::string_view tenant_id);

  // Hot path: one histogram observation, one counter add.
  void ObserveResponse(RouteId route, int status, double seconds);

  // Exports the transport's gauges until StopWatchingTransport().
  // REQUIRES: `transport` stays alive until then.
  void WatchTransport(const HttpTransport* transport);
  void StopWatchingTransport();

  // Keeps `collect` registered as long as this object.
  void AddCollector(std::function<void(MetricSink&)> collect);

 private:
  Metrics metrics_;
  std::shared_ptr<CounterFamily> calls_;
  std::shared_ptr<CounterFamily> responses_;
  std::shared_ptr<HistogramFamily> duration_;
  std::shared_ptr<HistogramFamily> tenant_duration_;
  std::array<std::shared_ptr<Histogram>, kNumRoutes> duration_by_route_;
  // Index by status code; codes we never send share the "other" child.
  std::array<std::shared_ptr<Counter>, 600> responses_by_code_;
  std::shared_ptr<Counter> responses_other_;

  absl::Mutex collectors_mu_;
  std::vector<CollectorHandle> collectors_ ABSL_GUARDED_BY(collectors_mu_);
  CollectorHandle transport_collector_ ABSL_GUARDED_BY(collectors_mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_SERVER_METRICS_H_
