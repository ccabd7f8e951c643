// Tenant-scoped jobs in a host program: each tenant enqueues into its own
// durable queue, and one pool of workers serves every tenant in fair
// rotation, each handler inside the tenant's "jobs" limit (tenant tier, then
// global). A replayed enqueue with the same idempotency key makes no second
// job. Running it twice is fine: the second run's enqueues are replays.
//
//   jobs [DATA_DIR]     (default ./data-jobs)

#include "tenancy/jobs.h"

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tenancy/engine.h"
#include "tenancy/limiter.h"
#include "tenancy/status.h"
#include "tenancy/tenant_registry.h"

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "jobs: %s\n", status.ToString().c_str());
  return 1;
}

constexpr int kJobsPerTenant = 5;

}  // namespace

int main(int argc, char** argv) {
  tenancy::EngineOptions options;
  options.path = argc > 1 ? argv[1] : "data-jobs";
  auto engine = tenancy::Engine::Open(options);
  if (!engine.ok()) return Fail(engine.status());

  // At most 2 jobs of a tenant run at once (Limiter: per-tenant default).
  if (auto s = (*engine)->limiter().SetDefaultTenantLimits({{"jobs", 2}}); !s.ok()) return Fail(s);

  int expected = 0;  // jobs queued now, over both tenants
  for (const char* id : {"acme", "globex"}) {
    tenancy::TenantSpec spec;
    spec.id = id;
    auto info = (*engine)->registry().Create(spec);
    if (!info.ok()) return Fail(info.status());
    auto tenant = (*engine)->GetTenant(id);
    if (!tenant.ok()) return Fail(tenant.status());
    for (int i = 0; i < kJobsPerTenant; ++i) {
      tenancy::JobSpec spec;
      spec.type = "email";
      spec.payload = std::string(id) + ": message " + std::to_string(i);
      // Enqueued twice (a client retrying): the key makes it one job.
      spec.idempotency_key = "message-" + std::to_string(i);
      for (int attempt = 0; attempt < 2; ++attempt) {
        auto enqueued = tenant->jobs().Enqueue(spec);
        if (!enqueued.ok()) return Fail(enqueued.status());
      }
    }
    auto counts = tenant->jobs().Counts();
    if (!counts.ok()) return Fail(counts.status());
    std::printf("%-7s queued=%llu (each enqueued twice with one idempotency key)\n", id,
                static_cast<unsigned long long>(counts->queued));
    expected += static_cast<int>(counts->queued);
  }

  // One pool for all tenants; the handler sees which tenant a job is of.
  std::atomic<int> done{0};
  absl::Notification all_done;
  tenancy::JobWorkersOptions workers_options;
  workers_options.threads = 4;
  // The engine's own limiter, so tenant specs' "jobs" overrides apply. It is
  // borrowed (an aliasing pointer that owns nothing): the engine outlives the
  // workers here.
  workers_options.limiter =
      std::shared_ptr<tenancy::Limiter>(std::shared_ptr<void>(), &(*engine)->limiter());
  workers_options.handlers["email"] = [&](const tenancy::Tenant& tenant, const tenancy::Job& job) {
    std::printf("  ran %s job %s: %s\n", tenant.id().c_str(), job.id.c_str(), job.payload.c_str());
    if (done.fetch_add(1) + 1 == expected) all_done.Notify();
    return absl::OkStatus();
  };
  auto workers = tenancy::JobWorkers::ForAllTenants(**engine, workers_options);
  if (!workers.ok()) return Fail(workers.status());
  // A second run within a day queues nothing: the idempotency keys (kept
  // JobQueueOptions::idempotency_retention) still name the jobs of the first.
  if (expected == 0) all_done.Notify();
  if (!all_done.WaitForNotificationWithTimeout(absl::Seconds(30))) {
    return Fail(absl::DeadlineExceededError("the jobs did not all run within 30 s"));
  }
  (*workers)->Stop();  // waits for running handlers and their acks

  for (const char* id : {"acme", "globex"}) {
    auto counts = (*engine)->GetTenant(id)->jobs().Counts();
    if (!counts.ok()) return Fail(counts.status());
    std::printf("%-7s after the workers: queued=%llu claimed=%llu\n", id,
                static_cast<unsigned long long>(counts->queued),
                static_cast<unsigned long long>(counts->claimed));
  }
  std::printf("ran %d jobs, succeeded=%llu\n", done.load(),
              static_cast<unsigned long long>((*workers)->stats().succeeded));
  return 0;
}
