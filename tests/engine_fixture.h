// Opens an Engine in a temporary directory, with a logger that records
// messages so tests can assert on warnings.

#ifndef TENANCY_TESTS_ENGINE_FIXTURE_H_
#define TENANCY_TESTS_ENGINE_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "temp_dir.h"
#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenancy/tenant_registry.h"

namespace tenancy::testing {

class RecordingLogger final : public Logger {
 public:
  void Log(LogLevel level, std::string_view message) override {
    absl::MutexLock lock(&mu_);
    lines_.push_back({level, std::string(message)});
  }
  size_t Count(LogLevel level) const {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& line : lines_) n += line.first == level;
    return n;
  }
  std::vector<std::string> Messages() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& line : lines_) out.push_back(line.second);
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::pair<LogLevel, std::string>> lines_ ABSL_GUARDED_BY(mu_);
};

struct EngineFixture {
  TempDir dir;
  std::shared_ptr<RecordingLogger> logger = std::make_shared<RecordingLogger>();
  std::unique_ptr<Engine> engine;

  EngineFixture() { Reopen(); }

  EngineOptions Options() const {
    EngineOptions options;
    options.path = (dir.path() / "db").string();
    options.logger = logger;
    // Keep Abseil's lock-order checking on in tests: an inversion aborts.
    options.keep_mutex_deadlock_detection = true;
    options.memtable_budget_bytes = 64 << 20;
    options.block_cache_bytes = 16 << 20;
    return options;
  }

  void Reopen() {
    engine.reset();
    auto opened = Engine::Open(Options());
    if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
    engine = std::move(*opened);
  }

  TenantRegistry& registry() { return engine->registry(); }

  Tenant Create(const std::string& id, Quota quota = {}, Placement placement = Placement::kShared) {
    TenantSpec spec;
    spec.id = id;
    spec.quota = quota;
    spec.placement = placement;
    auto info = registry().Create(spec);
    if (!info.ok()) throw std::runtime_error(info.status().ToString());
    return *engine->GetTenant(id);
  }
};

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_ENGINE_FIXTURE_H_
