// Engine::CollectMetrics: the engine's own series, per tenant and in all, for
// a host to expose (tenancyd's /metrics is one such host).

#include <algorithm>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "engine_parts.h"
#include "tenancy/engine.h"
#include "tenancy/metrics.h"

namespace tenancy {
namespace {

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
    {"rocksdb.total-sst-files-size", "tenancy_rocksdb_sst_bytes", "Total size of all SST files"},
    {"rocksdb.estimate-pending-compaction-bytes", "tenancy_rocksdb_pending_compaction_bytes",
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

}  // namespace

void Engine::CollectMetrics(MetricSink& sink) const {
  std::vector<std::shared_ptr<internal::TenantSlot>> slots = parts_->catalog->Snapshot();
  std::sort(slots.begin(), slots.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
  std::map<std::string_view, int64_t> by_state = {
      {"active", 0}, {"read_only", 0}, {"disabled", 0}, {"deleting", 0}};
  for (const auto& slot : slots) {
    const TenantState state = slot->state.load();
    ++by_state[TenantStateName(state)];
    if (state == TenantState::kDeleting) continue;
    const std::string_view id = slot->id;
    const Usage usage = internal::UsageOf(*slot);
    sink.AddGauge("tenancy_storage_bytes", "Logical bytes stored by the tenant (keys + values)",
                  {{"tenant", id}}, static_cast<double>(usage.bytes));
    sink.AddGauge("tenancy_keys", "Keys in the tenant's key-value store", {{"tenant", id}},
                  static_cast<double>(usage.keys));
    if (const uint64_t quota = slot->quota_bytes.load(); quota > 0) {
      sink.AddGauge("tenancy_quota_bytes", "The tenant's storage quota", {{"tenant", id}},
                    static_cast<double>(quota));
    }
    const RequestStats requests = internal::RequestStatsOf(*slot);
    for (int i = 0; i < kNumCallKinds; ++i) {
      sink.AddCounter("tenancy_calls_total", "Library calls of the tenant, by kind",
                      {{"tenant", id}, {"kind", CallKindName(static_cast<CallKind>(i))}},
                      static_cast<double>(requests.calls_by_kind[i]));
    }
    for (int i = 0; i < kNumRejections; ++i) {
      sink.AddCounter("tenancy_rejections_total",
                      "Calls of the tenant refused by a rate, concurrency, size or "
                      "quota limit or by its state",
                      {{"tenant", id}, {"reason", RejectionName(static_cast<Rejection>(i))}},
                      static_cast<double>(requests.rejections[i]));
    }
  }
  sink.AddGauge("tenancy_engine_degraded",
                "1 while the database refuses writes after a storage error (Engine::Health)", {},
                parts_->storage->degraded() ? 1.0 : 0.0);
  sink.AddGauge("tenancy_tenants_active", "Tenants in state active", {},
                static_cast<double>(by_state["active"]));
  for (const auto& [state, count] : by_state) {
    sink.AddGauge("tenancy_tenants", "Tenants by state", {{"state", state}},
                  static_cast<double>(count));
  }
  for (const LimiterCounters& c : parts_->limiter->Snapshot()) {
    std::string_view cls = c.class_name;
    if (c.tier == LimitTier::kGlobal) {
      sink.AddGauge("tenancy_limiter_global_in_use", "Permits held now over all tenants, by class",
                    {{"class", cls}}, static_cast<double>(c.in_use));
      sink.AddGauge("tenancy_limiter_global_waiting",
                    "Callers waiting at a full global semaphore, by class", {{"class", cls}},
                    static_cast<double>(c.waiting));
      if (c.limit.has_value()) {
        sink.AddGauge("tenancy_limiter_global_limit", "Global concurrency limit, by class",
                      {{"class", cls}}, static_cast<double>(*c.limit));
      }
      continue;
    }
    std::string_view tenant = c.tenant_id;
    sink.AddGauge("tenancy_limiter_in_use", "Permits a tenant holds now, by class",
                  {{"tenant", tenant}, {"class", cls}}, static_cast<double>(c.in_use));
    if (c.limit.has_value()) {
      sink.AddGauge("tenancy_limiter_limit", "A tenant's effective concurrency limit, by class",
                    {{"tenant", tenant}, {"class", cls}}, static_cast<double>(*c.limit));
    }
    sink.AddCounter("tenancy_limiter_admitted_total", "Permits granted to a tenant, by class",
                    {{"tenant", tenant}, {"class", cls}}, static_cast<double>(c.admitted));
    sink.AddCounter("tenancy_limiter_rejected_total",
                    "Permits refused to a tenant, by class and kind",
                    {{"tenant", tenant}, {"class", cls}, {"kind", "concurrency"}},
                    static_cast<double>(c.rejected_concurrency));
    sink.AddCounter("tenancy_limiter_rejected_total",
                    "Permits refused to a tenant, by class and kind",
                    {{"tenant", tenant}, {"class", cls}, {"kind", "rate"}},
                    static_cast<double>(c.rejected_rate));
  }

  for (const PermitLeaseCounters& c : parts_->permits->Snapshot()) {
    const MetricLabel labels_array[] = {{"tenant", c.tenant_id}, {"class", c.class_name}};
    const std::span<const MetricLabel> labels(labels_array);
    sink.Add(MetricType::kGauge, "tenancy_permits_in_use",
             "Leased permits a tenant holds now, by class", labels, static_cast<double>(c.in_use));
    sink.Add(MetricType::kGauge, "tenancy_permits_waiting",
             "Permit requests that may wait, in progress now", labels,
             static_cast<double>(c.waiting));
    sink.Add(MetricType::kCounter, "tenancy_permits_granted_total",
             "Leased permits granted, by class", labels, static_cast<double>(c.granted));
    sink.Add(MetricType::kCounter, "tenancy_permit_waits_total",
             "Permit requests allowed to wait for a permit (a wait over 0)", labels,
             static_cast<double>(c.waits));
    sink.Add(MetricType::kCounter, "tenancy_permit_wait_timeouts_total",
             "Permit requests whose wait ended without a permit", labels,
             static_cast<double>(c.wait_timeouts));
    sink.Add(MetricType::kCounter, "tenancy_permits_expired_total",
             "Leased permits released because their lease ended", labels,
             static_cast<double>(c.expired));
  }

  for (const RocksDbGauge& g : kRocksDbGauges) {
    auto value = GetIntProperty(g.property);
    if (value.ok()) sink.AddGauge(g.name, g.help, {}, static_cast<double>(*value));
  }
}

}  // namespace tenancy
