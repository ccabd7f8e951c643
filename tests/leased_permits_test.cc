// PermitLeases (tenancy/leased_permits.h): limiter permits leased under a
// token, through the Engine that owns them.

#include "tenancy/leased_permits.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "engine_fixture.h"
#include "tenancy/limiter.h"
#include "tenancy/metrics.h"
#include "tenancy/status.h"

namespace tenancy {
namespace {

using Clock = std::chrono::steady_clock;
using testing::EngineFixture;

// Counts kWaiting events, so a test can wait for a caller to start waiting
// instead of sleeping.
class WaitObserver final : public LimiterObserver {
 public:
  void OnEvent(const LimiterEvent& event) override {
    if (event.type != LimiterEvent::Type::kWaiting) return;
    absl::MutexLock lock(&mu_);
    ++waiting_;
    cv_.SignalAll();
  }
  // True once `n` waits have started, within 10 s. (A CondVar, not
  // Mutex::Await: the TSan build's absl::Mutex annotations cover only the
  // former.)
  bool AwaitWaits(int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    absl::MutexLock lock(&mu_);
    while (waiting_ < n) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;  // timed out
    }
    return waiting_ >= n;
  }

 private:
  absl::Mutex mu_;
  absl::CondVar cv_;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

// An engine whose per-tenant defaults are the seeded limits (llm 30, of which
// llm/student 2), with a WaitObserver.
struct PermitsFixture {
  EngineFixture f;
  std::shared_ptr<WaitObserver> observer = std::make_shared<WaitObserver>();

  PermitsFixture() {
    f.engine.reset();
    EngineOptions options = f.Options();
    options.limiter.default_tenant_limits = {{"llm", 30}, {"llm/student", 2}, {"ocr", 5}};
    options.limiter.observer = observer;
    auto opened = Engine::Open(options);
    if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
    f.engine = std::move(*opened);
  }
  PermitLeases& permits() { return f.engine->permits(); }

  absl::StatusOr<LeasedPermit> Take(const Tenant& t, std::string_view cls,
                                    absl::Duration lease = absl::Seconds(60),
                                    Clock::duration wait = Clock::duration::zero()) {
    return permits().Take(t, cls, lease, Clock::now() + wait);
  }

  // The counters row of (tenant, class), or zeros.
  PermitLeaseCounters Row(std::string_view tenant, std::string_view cls) {
    for (const PermitLeaseCounters& row : permits().Snapshot()) {
      if (row.tenant_id == tenant && row.class_name == cls) return row;
    }
    return {};
  }
  int64_t LimiterInUse(const Tenant& t, std::string_view cls) {
    auto limiter_tenant = f.engine->limiter().GetTenant(t.id());
    if (limiter_tenant == nullptr) return 0;
    return f.engine->limiter()
        .TenantCounters(*limiter_tenant, *f.engine->limiter().Class(cls))
        .in_use;
  }
};

TEST_CASE("PermitLeases: take, renew and release a permit by its token", "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  const absl::Time before = absl::Now();
  auto permit = p.Take(acme, "llm/student", absl::Seconds(30));
  REQUIRE(permit.ok());
  CHECK(permit->token.size() == 35);
  CHECK(permit->token.rfind("pt_", 0) == 0);
  CHECK(permit->class_name == "llm/student");
  CHECK(permit->expires_at >= before + absl::Seconds(30));
  CHECK(permit->expires_at <= absl::Now() + absl::Seconds(30));
  // A permit of the child holds the parent at the tenant tier too.
  CHECK(p.LimiterInUse(acme, "llm/student") == 1);
  CHECK(p.LimiterInUse(acme, "llm") == 1);
  CHECK(p.Row("acme", "llm/student").in_use == 1);
  CHECK(p.Row("acme", "llm/student").granted == 1);

  auto second = p.Take(acme, "llm/student");
  REQUIRE(second.ok());
  CHECK(second->token != permit->token);

  auto renewed = p.permits().Renew(acme, permit->token, absl::Seconds(600));
  REQUIRE(renewed.ok());
  CHECK(*renewed >= permit->expires_at + absl::Seconds(500));

  REQUIRE(p.permits().Release(acme, permit->token).ok());
  CHECK(p.LimiterInUse(acme, "llm/student") == 1);
  CHECK(p.Row("acme", "llm/student").in_use == 1);
  // Released: the token names nothing any more.
  CHECK(absl::IsNotFound(p.permits().Release(acme, permit->token)));
  CHECK(absl::IsNotFound(p.permits().Renew(acme, permit->token, absl::Seconds(1)).status()));
  REQUIRE(p.permits().Release(acme, second->token).ok());
  CHECK(p.LimiterInUse(acme, "llm") == 0);
}

TEST_CASE("PermitLeases: a full class refuses at once or after the wait", "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  REQUIRE(p.Take(acme, "llm/student").ok());
  REQUIRE(p.Take(acme, "llm/student").ok());

  auto now = p.Take(acme, "llm/student");
  CHECK(absl::IsResourceExhausted(now.status()));
  CHECK(GetErrorReason(now.status()) == ErrorReason::kConcurrencyLimited);

  auto waited = p.Take(acme, "llm/student", absl::Seconds(60), std::chrono::milliseconds(50));
  CHECK(absl::IsDeadlineExceeded(waited.status()));
  CHECK(GetErrorReason(waited.status()) == ErrorReason::kConcurrencyLimited);
  const PermitLeaseCounters row = p.Row("acme", "llm/student");
  CHECK(row.in_use == 2);
  CHECK(row.waits == 1);
  CHECK(row.wait_timeouts == 1);
  CHECK(row.waiting == 0);
}

TEST_CASE("PermitLeases: a waiting take gets the permit another caller releases", "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  auto a = p.Take(acme, "llm/student");
  auto b = p.Take(acme, "llm/student");
  REQUIRE((a.ok() && b.ok()));
  absl::StatusOr<LeasedPermit> waited = absl::UnknownError("not run");
  std::thread waiter(
      [&] { waited = p.Take(acme, "llm/student", absl::Seconds(60), std::chrono::seconds(30)); });
  REQUIRE(p.observer->AwaitWaits(1));
  CHECK(p.Row("acme", "llm/student").waiting == 1);
  REQUIRE(p.permits().Release(acme, a->token).ok());
  waiter.join();
  REQUIRE(waited.ok());
  CHECK(p.Row("acme", "llm/student").in_use == 2);
  CHECK(p.Row("acme", "llm/student").wait_timeouts == 0);
}

TEST_CASE("PermitLeases: a permit whose lease ends is released for a waiting taker", "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  auto held = p.Take(acme, "llm/student");
  auto short_lease = p.Take(acme, "llm/student", absl::Milliseconds(100));
  REQUIRE((held.ok() && short_lease.ok()));
  // Nobody releases: only the expiry can give this caller its permit.
  auto next = p.Take(acme, "llm/student", absl::Seconds(60), std::chrono::seconds(30));
  REQUIRE(next.ok());
  const PermitLeaseCounters row = p.Row("acme", "llm/student");
  CHECK(row.expired == 1);
  CHECK(row.in_use == 2);
  CHECK(absl::IsNotFound(p.permits().Renew(acme, short_lease->token, absl::Seconds(5)).status()));
  CHECK(absl::IsNotFound(p.permits().Release(acme, short_lease->token)));
}

TEST_CASE("PermitLeases: a renewed lease outlives its first expiry", "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  REQUIRE(p.Take(acme, "llm/student").ok());
  auto renewed = p.Take(acme, "llm/student", absl::Milliseconds(200));
  REQUIRE(renewed.ok());
  REQUIRE(p.permits().Renew(acme, renewed->token, absl::Seconds(60)).ok());
  // Past the first lease's end, the class is still full.
  auto refused = p.Take(acme, "llm/student", absl::Seconds(60), std::chrono::milliseconds(600));
  CHECK(absl::IsDeadlineExceeded(refused.status()));
  CHECK(p.Row("acme", "llm/student").expired == 0);
  CHECK(p.permits().Release(acme, renewed->token).ok());
}

TEST_CASE("PermitLeases: a token that names no permit of the tenant is NOT_FOUND", "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  Tenant beta = p.f.Create("beta");
  auto permit = p.Take(acme, "ocr");
  REQUIRE(permit.ok());
  SECTION("another tenant's token") {
    CHECK(absl::IsNotFound(p.permits().Release(beta, permit->token)));
    CHECK(absl::IsNotFound(p.permits().Renew(beta, permit->token, absl::Seconds(5)).status()));
    // And it is still acme's.
    CHECK(p.permits().Release(acme, permit->token).ok());
  }
  SECTION("malformed tokens") {
    for (std::string bad :
         {std::string(), std::string("pt_"), permit->token + "x", permit->token.substr(0, 34) + "!",
          std::string(35, 'a'), std::string("pt_") + std::string(32, '\0')}) {
      CHECK(absl::IsNotFound(p.permits().Release(acme, bad)));
      CHECK(absl::IsNotFound(p.permits().Renew(acme, bad, absl::Seconds(5)).status()));
    }
    CHECK(p.Row("acme", "ocr").in_use == 1);
  }
  SECTION("a well-formed token never issued") {
    std::string other = permit->token;
    other[10] = other[10] == 'A' ? 'B' : 'A';
    CHECK(absl::IsNotFound(p.permits().Release(acme, other)));
    CHECK(p.Row("acme", "ocr").in_use == 1);
  }
}

TEST_CASE("PermitLeases: bad classes and leases are INVALID_ARGUMENT and change nothing",
          "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  // Server classes are limited by default in tenancyd; here too, so that only
  // the reservation refuses them.
  REQUIRE(p.f.engine->limiter()
              .SetGlobalLimits(
                  {{"requests", 100}, {"requests/writes", 100}, {"requests.claim-waits", 100}})
              .ok());
  for (const char* cls : {"requests", "requests/writes", "requests.claim-waits", "nope", "llm/nope",
                          "", "a//b", "llm/"}) {
    INFO(cls);
    CHECK(absl::IsInvalidArgument(p.Take(acme, cls).status()));
  }
  for (absl::Duration lease :
       {absl::ZeroDuration(), absl::Seconds(-1), absl::Seconds(3601), absl::InfiniteDuration()}) {
    CHECK(absl::IsInvalidArgument(p.Take(acme, "llm", lease).status()));
  }
  CHECK(p.permits().Snapshot().empty());
  // The class of an unnamed name was not created in the limiter either.
  bool created = false;
  for (const LimiterCounters& row : p.f.engine->limiter().Snapshot()) {
    created = created || row.class_name == "nope";
  }
  CHECK_FALSE(created);
  // 3600 s is the longest lease; a renew is bounded the same way.
  auto longest = p.Take(acme, "llm", absl::Seconds(3600));
  REQUIRE(longest.ok());
  CHECK(absl::IsInvalidArgument(
      p.permits().Renew(acme, longest->token, absl::Seconds(3601)).status()));
  CHECK(absl::IsInvalidArgument(
      p.permits().Renew(acme, longest->token, absl::ZeroDuration()).status()));
}

TEST_CASE("PermitLeases: a class named by a tenant's own or a global limit may be taken",
          "[permits]") {
  PermitsFixture p;
  TenantSpec spec;
  spec.id = "acme";
  spec.limits = {{"gpu", 1}};
  REQUIRE(p.f.registry().Create(spec).ok());
  Tenant acme = *p.f.engine->GetTenant("acme");
  Tenant beta = p.f.Create("beta");
  CHECK(p.Take(acme, "gpu").ok());
  CHECK(absl::IsResourceExhausted(p.Take(acme, "gpu").status()));
  CHECK(absl::IsInvalidArgument(p.Take(beta, "gpu").status()));
  REQUIRE(p.f.engine->limiter().SetGlobalLimits({{"tpu", 1}}).ok());
  CHECK(p.Take(beta, "tpu").ok());
}

TEST_CASE("PermitLeases: the tenant tier is taken parent then child, then the global tier",
          "[permits]") {
  PermitsFixture p;
  REQUIRE(p.f.engine->limiter().SetGlobalLimits({{"llm/student", 3}}).ok());
  Tenant acme = p.f.Create("acme");
  Tenant beta = p.f.Create("beta");
  REQUIRE(p.Take(acme, "llm/student").ok());
  REQUIRE(p.Take(acme, "llm/student").ok());
  // acme's own llm/student (2) is full first.
  auto tenant_full = p.Take(acme, "llm/student");
  auto rejection = GetLimitRejection(tenant_full.status());
  REQUIRE(rejection.has_value());
  CHECK(rejection->tier == LimitTier::kTenant);
  CHECK(rejection->class_name == "llm/student");
  // beta's tenant tier has room, the global one (3) has one slot left.
  REQUIRE(p.Take(beta, "llm/student").ok());
  auto global_full = p.Take(beta, "llm/student");
  rejection = GetLimitRejection(global_full.status());
  REQUIRE(rejection.has_value());
  CHECK(rejection->tier == LimitTier::kGlobal);
  CHECK(rejection->class_name == "llm/student");
  // The parent is held for every child permit and still has room.
  CHECK(p.LimiterInUse(acme, "llm") == 2);
  CHECK(p.Take(beta, "llm").ok());
}

TEST_CASE("PermitLeases: disabling or purging a tenant releases its permits", "[permits]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  Tenant beta = p.f.Create("beta");
  auto a1 = p.Take(acme, "llm/student");
  auto a2 = p.Take(acme, "ocr");
  auto b1 = p.Take(beta, "llm/student");
  REQUIRE((a1.ok() && a2.ok() && b1.ok()));

  SECTION("disable") {
    REQUIRE(p.f.registry().Disable("acme").ok());
    CHECK(p.Row("acme", "llm/student").in_use == 0);
    CHECK(p.Row("acme", "ocr").in_use == 0);
    CHECK(p.LimiterInUse(acme, "llm") == 0);
    CHECK(absl::IsPermissionDenied(p.Take(acme, "ocr").status()));
    REQUIRE(p.f.registry().Enable("acme").ok());
    // Released for good: the old tokens name nothing, and the slots are free.
    CHECK(absl::IsNotFound(p.permits().Release(acme, a1->token)));
    CHECK(p.Take(acme, "llm/student").ok());
    CHECK(p.Take(acme, "llm/student").ok());
  }
  SECTION("purge") {
    REQUIRE(p.f.registry().Purge("acme").ok());
    for (const PermitLeaseCounters& row : p.permits().Snapshot()) {
      CHECK(row.tenant_id != "acme");
    }
    CHECK(absl::IsNotFound(p.permits().Release(acme, a2->token)));
  }
  // The other tenant's permit is untouched.
  CHECK(p.Row("beta", "llm/student").in_use == 1);
  CHECK(p.permits().Release(beta, b1->token).ok());
}

TEST_CASE("PermitLeases: the engine's metrics show permits per tenant and class",
          "[permits][metrics]") {
  PermitsFixture p;
  Tenant acme = p.f.Create("acme");
  REQUIRE(p.Take(acme, "llm/student").ok());
  auto expiring = p.Take(acme, "llm/student", absl::Milliseconds(50));
  REQUIRE(expiring.ok());
  REQUIRE(p.Take(acme, "llm/student", absl::Seconds(60), std::chrono::seconds(30)).ok());
  CHECK(absl::IsDeadlineExceeded(
      p.Take(acme, "llm/student", absl::Seconds(60), std::chrono::milliseconds(20)).status()));

  Metrics metrics;
  CollectorHandle handle =
      metrics.AddCollector([&](MetricSink& sink) { p.f.engine->CollectMetrics(sink); });
  const std::string text = metrics.ExpositionText();
  INFO(text);
  auto has = [&](const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
  };
  CHECK(has(R"(tenancy_permits_in_use{tenant="acme",class="llm/student"} 2)"));
  CHECK(has(R"(tenancy_permits_granted_total{tenant="acme",class="llm/student"} 3)"));
  CHECK(has(R"(tenancy_permit_waits_total{tenant="acme",class="llm/student"} 2)"));
  CHECK(has(R"(tenancy_permit_wait_timeouts_total{tenant="acme",class="llm/student"} 1)"));
  CHECK(has(R"(tenancy_permits_expired_total{tenant="acme",class="llm/student"} 1)"));
  CHECK(has(R"(tenancy_permits_waiting{tenant="acme",class="llm/student"} 0)"));
}

}  // namespace
}  // namespace tenancy
