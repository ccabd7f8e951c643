#include "server_metrics.h"

#include <cstdio>
#include <cstdlib>
#include <map>

#include "tenancy/tenant_registry.h"
#include "text.h"

namespace tenancy::internal {
namespace {

// The registrations below use constant, valid names: a failure is a bug.
template <typename T>
T Must(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "tenancyd: metrics registration: %s\n",
                 value.status().ToString().c_str());
    std::abort();
  }
  return *std::move(value);
}

constexpr std::string_view kRejectionNames[kNumRejections] = {
    "rate_limited",    "concurrency_limited", "quota_exceeded",
    "too_large",       "tenant_disabled",     "tenant_read_only"};

// Status codes tenancyd sends; each gets its own series from the start.
constexpr int kKnownCodes[] = {100, 200, 201, 204, 400, 401, 403, 404, 405,
                               408, 409, 411, 413, 414, 429, 431, 500, 501,
                               503, 504, 507};

struct RocksDbGauge {
  const char* property;
  const char* name;
  const char* help;
};

constexpr RocksDbGauge kRocksDbGauges[] = {
    {"rocksdb.estimate-num-keys", "tenancy_rocksdb_estimated_keys",
     "RocksDB's estimate of the keys in the shared column family"},
    {"rocksdb.cur-size-all-mem-tables", "tenancy_rocksdb_memtable_bytes",
     "Bytes in active and unflushed immutable memtables"},
    {"rocksdb.estimate-live-data-size", "tenancy_rocksdb_live_data_bytes",
     "Estimated live data in SST files"},
    {"rocksdb.total-sst-files-size", "tenancy_rocksdb_sst_bytes",
     "Total size of all SST files"},
    {"rocksdb.estimate-pending-compaction-bytes",
     "tenancy_rocksdb_pending_compaction_bytes",
     "Bytes compaction would rewrite to settle the LSM tree"},
    {"rocksdb.num-running-compactions", "tenancy_rocksdb_running_compactions",
     "Compactions running now"},
    {"rocksdb.num-running-flushes", "tenancy_rocksdb_running_flushes",
     "Memtable flushes running now"},
    {"rocksdb.block-cache-usage", "tenancy_rocksdb_block_cache_bytes",
     "Bytes held in the block cache"},
    {"rocksdb.is-write-stopped", "tenancy_rocksdb_write_stopped",
     "1 while RocksDB stops writes (stall); requests then get 503"},
    {"rocksdb.actual-delayed-write-rate", "tenancy_rocksdb_delayed_write_rate",
     "Bytes per second writes are throttled to (0: not throttled)"},
};

void CollectTenants(Engine* engine, MetricSink& sink) {
  std::map<std::string_view, int64_t> by_state = {
      {"active", 0}, {"read_only", 0}, {"disabled", 0}, {"deleting", 0}};
  ListOptions list;
  list.limit = 1000;
  for (;;) {
    auto page = engine->registry().List(list);
    if (!page.ok()) break;
    for (const TenantInfo& t : page->tenants) {
      std::string_view id = t.spec.id;
      sink.AddGauge("tenancy_storage_bytes",
                    "Logical bytes stored by the tenant (keys + values)",
                    {{"tenant", id}}, static_cast<double>(t.usage.bytes));
      sink.AddGauge("tenancy_keys", "Keys in the tenant's key-value store",
                    {{"tenant", id}}, static_cast<double>(t.usage.keys));
      if (t.spec.quota.storage_bytes > 0) {
        sink.AddGauge("tenancy_quota_bytes", "The tenant's storage quota",
                      {{"tenant", id}},
                      static_cast<double>(t.spec.quota.storage_bytes));
      }
      ++by_state[TenantStateName(t.state)];
    }
    if (page->next_start_after.empty()) break;
    list.start_after = page->next_start_after;
  }
  sink.AddGauge("tenancy_tenants_active", "Tenants in state active", {},
                static_cast<double>(by_state["active"]));
  for (const auto& [state, count] : by_state) {
    sink.AddGauge("tenancy_tenants", "Tenants by state", {{"state", state}},
                  static_cast<double>(count));
  }
}

void CollectRocksDb(Engine* engine, MetricSink& sink) {
  for (const RocksDbGauge& g : kRocksDbGauges) {
    auto value = engine->GetIntProperty(g.property);
    if (value.ok()) {
      sink.AddGauge(g.name, g.help, {}, static_cast<double>(*value));
    }
  }
}

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
    case HttpMethod::kGet: return "GET";
    case HttpMethod::kHead: return "HEAD";
    case HttpMethod::kPut: return "PUT";
    case HttpMethod::kPost: return "POST";
    case HttpMethod::kDelete: return "DELETE";
    case HttpMethod::kOther: return "OTHER";
  }
  return "OTHER";
}

std::optional<Rejection> RejectionOfCode(std::string_view code) {
  for (int i = 0; i < kNumRejections; ++i) {
    if (kRejectionNames[i] == code) return static_cast<Rejection>(i);
  }
  return std::nullopt;
}

ServerMetrics::ServerMetrics(Engine* engine, std::shared_ptr<Logger> logger)
    : metrics_(MetricsOptions{.logger = std::move(logger)}) {
  calls_ = Must(metrics_.RegisterCounter(
      "tenancy_api_calls_total",
      "Tenant requests received, by tenant and HTTP method (refused ones "
      "included)",
      {"tenant", "method"}));
  rejections_ = Must(metrics_.RegisterCounter(
      "tenancy_rejections_total",
      "Tenant requests refused by a rate, concurrency, size or quota limit "
      "or by the tenant's state",
      {"tenant", "reason"}));
  responses_ = Must(metrics_.RegisterCounter(
      "tenancy_http_responses_total", "HTTP responses by status code",
      {"code"}));
  duration_ = Must(metrics_.RegisterHistogram(
      "tenancy_request_duration_seconds",
      "Time from a request's head to its response, by route", {"route"},
      ExponentialBuckets(0.0001, 2.5, 14)));
  for (int i = 0; i < kNumRoutes; ++i) {
    duration_by_route_[i] =
        Must(duration_->WithLabels({RouteName(static_cast<RouteId>(i))}));
  }
  responses_other_ = Must(responses_->WithLabels({"other"}));
  responses_by_code_.fill(responses_other_);
  for (int code : kKnownCodes) {
    std::string label = std::to_string(code);
    responses_by_code_[code] = Must(responses_->WithLabels({label}));
  }
  absl::MutexLock lock(&collectors_mu_);
  collectors_.push_back(metrics_.AddCollector(
      [engine](MetricSink& sink) { CollectTenants(engine, sink); }));
  collectors_.push_back(metrics_.AddCollector(
      [engine](MetricSink& sink) { CollectRocksDb(engine, sink); }));
}

ServerMetrics::~ServerMetrics() {
  absl::MutexLock lock(&collectors_mu_);
  transport_collector_.Remove();
  for (CollectorHandle& h : collectors_) h.Remove();
}

TenantSeries ServerMetrics::ResolveTenant(std::string_view tenant_id) {
  TenantSeries s;
  for (int i = 0; i < kNumHttpMethods; ++i) {
    s.calls[i] = Must(calls_->WithLabels(
        {tenant_id, HttpMethodName(static_cast<HttpMethod>(i))}));
  }
  for (int i = 0; i < kNumRejections; ++i) {
    s.rejections[i] = Must(rejections_->WithLabels({tenant_id, kRejectionNames[i]}));
  }
  return s;
}

void ServerMetrics::ForgetTenant(std::string_view tenant_id) {
  (void)metrics_.RemoveSeriesWhere("tenant", tenant_id);
}

void ServerMetrics::ObserveResponse(RouteId route, int status, double seconds) {
  duration_by_route_[static_cast<int>(route)]->Observe(seconds);
  Counter* c = status >= 0 && status < 600 ? responses_by_code_[status].get()
                                           : responses_other_.get();
  c->Increment();
}

void ServerMetrics::WatchTransport(const HttpTransport* transport) {
  CollectorHandle handle = metrics_.AddCollector([transport](MetricSink& sink) {
    TransportCounters c = transport->Counters();
    sink.AddGauge("tenancy_http_open_connections", "Open HTTP connections", {},
                  static_cast<double>(c.open_connections));
    sink.AddGauge("tenancy_http_queued_requests",
                  "Complete requests waiting for a worker thread", {},
                  static_cast<double>(c.queued_requests));
    sink.AddGauge("tenancy_http_busy_workers", "Worker threads serving a request",
                  {}, static_cast<double>(c.busy_workers));
    sink.AddCounter("tenancy_http_connections_accepted_total",
                    "Connections accepted", {},
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
                    "Idle keep-alive connections closed to make room for new ones",
                    {}, static_cast<double>(c.evicted_idle_total));
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
