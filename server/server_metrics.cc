#include "server_metrics.h"

#include <cstdio>
#include <cstdlib>
#include <map>

#include "str_cat.h"
#include "tenancy/tenant_registry.h"

namespace tenancy::internal {
namespace {

// The registrations below use constant, valid names: a failure is a bug.
template <typename T>
T Must(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "tenancyd: metrics registration: %s\n", value.status().ToString().c_str());
    std::abort();
  }
  return *std::move(value);
}

// Status codes tenancyd sends; each gets its own series from the start.
constexpr int kKnownCodes[] = {100, 200, 201, 204, 400, 401, 403, 404, 405, 408, 409,
                               411, 413, 414, 429, 431, 500, 501, 503, 504, 507};

}  // namespace

HttpMethod ParseHttpMethod(std::string_view method) {
  if (method == "GET") return HttpMethod::kGet;
  if (method == "HEAD") return HttpMethod::kHead;
  if (method == "PUT") return HttpMethod::kPut;
  if (method == "POST") return HttpMethod::kPost;
  if (method == "DELETE") return HttpMethod::kDelete;
  return HttpMethod::kOther;
}

std::string_view HttpMethodName(HttpMethod method) {
  switch (method) {
    case HttpMethod::kGet:
      return "GET";
    case HttpMethod::kHead:
      return "HEAD";
    case HttpMethod::kPut:
      return "PUT";
    case HttpMethod::kPost:
      return "POST";
    case HttpMethod::kDelete:
      return "DELETE";
    case HttpMethod::kOther:
      return "OTHER";
  }
  return "OTHER";
}

ServerMetrics::ServerMetrics(Engine* engine, std::shared_ptr<Logger> logger)
    : metrics_(MetricsOptions{.logger = std::move(logger)}) {
  calls_ = Must(
      metrics_.RegisterCounter("tenancy_api_calls_total",
                               "Tenant requests received, by tenant and HTTP method (refused ones "
                               "included)",
                               {"tenant", "method"}));
  responses_ = Must(metrics_.RegisterCounter("tenancy_http_responses_total",
                                             "HTTP responses by status code", {"code"}));
  duration_ = Must(metrics_.RegisterHistogram(
      "tenancy_request_duration_seconds", "Time from a request's head to its response, by route",
      {"route"}, ExponentialBuckets(0.0001, 2.5, 14)));
  // Per tenant: 8 buckets (0.5 ms to 8 s, x4), so that 10,000 tenants stay
  // a scrape of reasonable size.
  tenant_duration_ = Must(
      metrics_.RegisterHistogram("tenancy_tenant_request_duration_seconds",
                                 "Time from a tenant request's head to its response, by tenant",
                                 {"tenant"}, ExponentialBuckets(0.0005, 4, 8)));
  for (int i = 0; i < kNumRoutes; ++i) {
    duration_by_route_[i] = Must(duration_->WithLabels({RouteName(static_cast<RouteId>(i))}));
  }
  responses_other_ = Must(responses_->WithLabels({"other"}));
  responses_by_code_.fill(responses_other_);
  for (int code : kKnownCodes) {
    std::string label = std::to_string(code);
    responses_by_code_[code] = Must(responses_->WithLabels({label}));
  }
  absl::MutexLock lock(&collectors_mu_);
  // Per-tenant usage, calls, rejections and limits are the library's.
  collectors_.push_back(
      metrics_.AddCollector([engine](MetricSink& sink) { engine->CollectMetrics(sink); }));
}

ServerMetrics::~ServerMetrics() {
  absl::MutexLock lock(&collectors_mu_);
  transport_collector_.Remove();
  for (CollectorHandle& h : collectors_) h.Remove();
}

TenantSeries ServerMetrics::ResolveTenant(std::string_view tenant_id) {
  TenantSeries s;
  for (int i = 0; i < kNumHttpMethods; ++i) {
    s.calls[i] = Must(calls_->WithLabels({tenant_id, HttpMethodName(static_cast<HttpMethod>(i))}));
  }
  s.duration = Must(tenant_duration_->WithLabels({tenant_id}));
  return s;
}

void ServerMetrics::ForgetTenant(std::string_view tenant_id) {
  (void)metrics_.RemoveSeriesWhere("tenant", tenant_id);
}

void ServerMetrics::ObserveResponse(RouteId route, int status, double seconds) {
  duration_by_route_[static_cast<int>(route)]->Observe(seconds);
  Counter* c =
      status >= 0 && status < 600 ? responses_by_code_[status].get() : responses_other_.get();
  c->Increment();
}

void ServerMetrics::WatchTransport(const HttpTransport* transport) {
  CollectorHandle handle = metrics_.AddCollector([transport](MetricSink& sink) {
    TransportCounters c = transport->Counters();
    sink.AddGauge("tenancy_http_open_connections", "Open HTTP connections", {},
                  static_cast<double>(c.open_connections));
    sink.AddGauge("tenancy_http_queued_requests", "Complete requests waiting for a worker thread",
                  {}, static_cast<double>(c.queued_requests));
    sink.AddGauge("tenancy_http_busy_workers", "Worker threads serving a request", {},
                  static_cast<double>(c.busy_workers));
    sink.AddCounter("tenancy_http_connections_accepted_total", "Connections accepted", {},
                    static_cast<double>(c.accepted_total));
    sink.AddGauge("tenancy_http_buffered_bytes",
                  "Bytes of request bodies being received and responses "
                  "waiting for slow clients",
                  {}, static_cast<double>(c.buffered_bytes));
    sink.AddCounter("tenancy_http_connections_refused_total",
                    "Connections refused, by the cap they hit", {{"cap", "global"}},
                    static_cast<double>(c.refused_connections_total));
    sink.AddCounter("tenancy_http_connections_refused_total",
                    "Connections refused, by the cap they hit", {{"cap", "peer"}},
                    static_cast<double>(c.refused_peer_connections_total));
    sink.AddCounter("tenancy_http_idle_connections_evicted_total",
                    "Idle keep-alive connections closed to make room for new ones", {},
                    static_cast<double>(c.evicted_idle_total));
    sink.AddCounter("tenancy_http_head_timeouts_total",
                    "Requests whose head did not arrive in time (408)", {},
                    static_cast<double>(c.head_timeouts_total));
    sink.AddCounter("tenancy_http_body_timeouts_total",
                    "Requests whose body did not arrive in time (408)", {},
                    static_cast<double>(c.body_timeouts_total));
    sink.AddCounter("tenancy_http_bad_heads_total",
                    "Request heads refused before routing (400, 414, 431)", {},
                    static_cast<double>(c.bad_heads_total));
    sink.AddCounter("tenancy_http_buffer_refusals_total",
                    "Bodies refused (503) or responses abandoned because a "
                    "tenant's (or the server's) buffer budget was spent",
                    {}, static_cast<double>(c.buffer_refusals_total));
    sink.AddCounter("tenancy_http_aborted_responses_total",
                    "Responses that had started and could not be finished "
                    "(the client did not take them in time): the connection "
                    "was closed",
                    {}, static_cast<double>(c.aborted_responses_total));
  });
  absl::MutexLock lock(&collectors_mu_);
  transport_collector_ = std::move(handle);
}

void ServerMetrics::StopWatchingTransport() {
  absl::MutexLock lock(&collectors_mu_);
  transport_collector_.Remove();
}

void ServerMetrics::AddCollector(std::function<void(MetricSink&)> collect) {
  CollectorHandle handle = metrics_.AddCollector(std::move(collect));
  absl::MutexLock lock(&collectors_mu_);
  collectors_.push_back(std::move(handle));
}

}  // namespace tenancy::internal
