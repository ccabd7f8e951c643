// tiered_limits: the seeded limit defaults at work.
//
// Every tenant may hold at most 30 "llm" permits, of which at most 2
// "llm/student" and 10 "llm/teacher", and 5 "ocr" permits; all tenants
// together share a global "llm" budget. Worker threads act for three tenants
// for a second, each request taking a permit for its class (waiting up to
// 20 ms for one), "working" for a moment and letting the permit go. One tenant
// ("acme") floods with six times the workers of the others and has a request
// rate limit in its spec; another ("notepad") has a spec raising its
// "llm/student" limit to 4. At the end the program prints, per tenant and
// class, the limit, the highest number of permits seen held at once, how many
// requests were admitted, how long they waited, and how many were refused, by
// which tier and why.
//
// Build: cmake --build <dir> --target tiered_limits; run:
// <dir>/examples/tiered_limits

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tenancy/limiter.h"
#include "tenancy/status.h"

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The tenants file seeds a global "llm" limit of 200 (examples/tenants.json);
// this example uses a smaller machine-wide budget so that three tenants can
// reach it (together they may hold 2 + 4 + 2 students and 3 x 10 teachers =
// 38).
constexpr int64_t kGlobalLlm = 16;

struct Tally {
  std::atomic<int64_t> admitted{0};
  std::atomic<int64_t> refused_tenant{0};
  std::atomic<int64_t> refused_global{0};
  std::atomic<int64_t> refused_rate{0};
};

}  // namespace

int main() {
  tenancy::LimiterOptions options;
  options.default_tenant_limits = {
      {"llm", 30}, {"llm/student", 2}, {"llm/teacher", 10}, {"ocr", 5}};
  options.global_limits = {{"llm", kGlobalLlm}};
  absl::StatusOr<std::unique_ptr<tenancy::Limiter>> created = tenancy::Limiter::Create(options);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", std::string(created.status().message()).c_str());
    return 1;
  }
  tenancy::Limiter& limiter = **created;

  // Resolve handles once: the hot path then neither hashes nor locks.
  const std::vector<std::string> class_names = {"llm/student", "llm/teacher", "ocr"};
  std::vector<tenancy::LimitClass> classes;
  for (const std::string& name : class_names) classes.push_back(*limiter.Class(name));
  const tenancy::LimitClass llm = *limiter.Class("llm");

  struct TenantPlan {
    std::string id;
    int workers;
  };
  const std::vector<TenantPlan> plans = {{"will", 8}, {"notepad", 8}, {"acme", 48}};
  std::map<std::string, std::shared_ptr<tenancy::LimiterTenant>> tenants;
  for (const TenantPlan& plan : plans) tenants[plan.id] = limiter.AddTenant(plan.id);
  // Specs override defaults, live, as a config reload would: notepad may run
  // 4 students, acme may make 2,000 requests a second over all classes (with
  // bursts of 100).
  for (absl::Status s :
       {limiter.SetTenantLimits("notepad", {{"llm/student", 4}}),
        limiter.SetTenantRates("acme", {{std::string(tenancy::kAllClasses), {2000, 100}}})}) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
      return 1;
    }
  }

  std::map<std::pair<std::string, std::string>, Tally> tallies;
  for (const TenantPlan& plan : plans) {
    for (const std::string& name : class_names) tallies[{plan.id, name}];
  }

  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (const TenantPlan& plan : plans) {
    for (int w = 0; w < plan.workers; ++w) {
      workers.emplace_back([&, plan, w] {
        std::mt19937 rng(static_cast<unsigned>(w * 31 + plan.id.size()));
        // Shared maps are only read (at()) while the workers run.
        tenancy::LimiterTenant& tenant = *tenants.at(plan.id);
        while (!stop.load(std::memory_order_relaxed)) {
          const size_t c = rng() % classes.size();
          Tally& tally = tallies.at({plan.id, class_names[c]});
          absl::StatusOr<tenancy::Permit> permit =
              limiter.Acquire(tenant, classes[c], steady_clock::now() + milliseconds(20));
          if (permit.ok()) {
            tally.admitted.fetch_add(1);
            // The request's work, holding the permit.
            std::this_thread::sleep_for(std::chrono::microseconds(1000 + rng() % 3000));
            continue;  // the permit is released here, at the end of scope
          }
          // A server would answer 429 with Retry-After; here we count why and
          // back off as a polite client would (at most 10 ms, to keep going).
          std::optional<tenancy::LimitRejection> why = tenancy::GetLimitRejection(permit.status());
          if (!why.has_value()) {
            std::fprintf(stderr, "unexpected: %s\n",
                         std::string(permit.status().message()).c_str());
            return;
          }
          if (why->kind == tenancy::LimitKind::kRate) {
            tally.refused_rate.fetch_add(1);
          } else if (why->tier == tenancy::LimitTier::kTenant) {
            tally.refused_tenant.fetch_add(1);
          } else {
            tally.refused_global.fetch_add(1);
          }
          std::this_thread::sleep_for(
              std::min<std::chrono::nanoseconds>(why->retry_after, milliseconds(10)));
        }
      });
    }
  }

  // Sample the counters while the workers run, keeping the peaks.
  std::map<std::pair<std::string, std::string>, int64_t> peak;
  int64_t global_llm_peak = 0;
  const auto end = steady_clock::now() + std::chrono::seconds(1);
  while (steady_clock::now() < end) {
    for (const tenancy::LimiterCounters& row : limiter.Snapshot()) {
      if (row.tier == tenancy::LimitTier::kTenant) {
        int64_t& p = peak[{row.tenant_id, row.class_name}];
        p = std::max(p, row.in_use);
      } else if (row.class_name == "llm") {
        global_llm_peak = std::max(global_llm_peak, row.in_use);
      }
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
  stop.store(true);
  for (std::thread& t : workers) t.join();

  std::printf("%-8s %-12s %6s %6s %9s %8s %8s %8s %6s\n", "tenant", "class", "limit", "peak",
              "admitted", "wait_ms", "tenant", "global", "rate");
  for (const TenantPlan& plan : plans) {
    for (const std::string& name : class_names) {
      const Tally& t = tallies[{plan.id, name}];
      const tenancy::LimiterCounters c =
          limiter.TenantCounters(*tenants[plan.id], *limiter.Class(name));
      const double wait_ms = c.admitted == 0
                                 ? 0
                                 : std::chrono::duration<double, std::milli>(c.total_wait).count() /
                                       static_cast<double>(c.admitted);
      std::printf("%-8s %-12s %6lld %6lld %9lld %8.2f %8lld %8lld %6lld\n", plan.id.c_str(),
                  name.c_str(), static_cast<long long>(c.limit.value_or(-1)),
                  static_cast<long long>(peak[{plan.id, name}]),
                  static_cast<long long>(t.admitted.load()), wait_ms,
                  static_cast<long long>(t.refused_tenant.load()),
                  static_cast<long long>(t.refused_global.load()),
                  static_cast<long long>(t.refused_rate.load()));
    }
    const tenancy::LimiterCounters parent = limiter.TenantCounters(*tenants[plan.id], llm);
    std::printf("%-8s %-12s %6lld %6lld   (parent of llm/student and llm/teacher)\n",
                plan.id.c_str(), "llm", static_cast<long long>(parent.limit.value_or(-1)),
                static_cast<long long>(peak[{plan.id, "llm"}]));
  }
  std::printf("global   llm          %6lld %6lld   (shared by all tenants)\n",
              static_cast<long long>(kGlobalLlm), static_cast<long long>(global_llm_peak));
  std::printf(
      "columns: limit, peak permits held at once, admitted, mean wait "
      "per admitted request, refused at the tenant tier, at the global "
      "tier, by the rate limit\n");
  return 0;
}
