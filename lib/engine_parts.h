// EngineParts: what an Engine is made of. Each part is named for what it is
// and has a header of its own:
//
//   Storage        the RocksDB database and its column families (storage.h)
//   TenantCatalog  the tenants: records, API keys, lifecycle (tenant_catalog.h)
//   UsageLedger    the one write path, with exact accounting (usage_ledger.h)
//   Limiter        tiered concurrency and rate limits (tenancy/limiter.h)
//   PermitLeases   the limiter's permits leased under tokens
//                  (tenancy/leased_permits.h)
//   CacheBinding   the engine's Cache and the registry's hooks into it
//                  (cache_binding.h)
//   JobRuntime     the job queues' machinery and workers (job_runtime.h)
//
// Every Tenant handle points at its engine's parts (through Access, access.h,
// the one friend of the public handles), so a data call reaches what it needs
// without a class that every part calls into.
//
// Thread safety: the parts are created in Open and constant until the
// destructor; each part documents its own contract.

#ifndef TENANCY_LIB_ENGINE_PARTS_H_
#define TENANCY_LIB_ENGINE_PARTS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "cache_binding.h"
#include "storage.h"
#include "tenancy/engine.h"
#include "tenancy/leased_permits.h"
#include "tenancy/limiter.h"
#include "tenant_catalog.h"
#include "usage_ledger.h"

namespace tenancy::internal {

class JobRuntime;

struct EngineParts {
  // Validates `options` (INVALID_ARGUMENT), opens the database, loads the
  // catalog and resumes interrupted purges.
  static absl::StatusOr<std::unique_ptr<EngineParts>> Open(EngineOptions options);
  EngineParts() = default;
  EngineParts(const EngineParts&) = delete;
  EngineParts& operator=(const EngineParts&) = delete;
  // Stops the job workers, lets go of the cache, persists request counters,
  // then closes the database: the reverse of the order Open built them in.
  ~EngineParts();

  Logger& logger() const { return *options.logger; }

  // Constant after Open. `options` has its logger and cache set.
  EngineOptions options;
  std::unique_ptr<Storage> storage;
  std::unique_ptr<UsageLedger> ledger;
  std::unique_ptr<Limiter> limiter;
  std::unique_ptr<PermitLeases> permits;  // holds permits of `limiter`
  std::unique_ptr<CacheBinding> cache;
  std::unique_ptr<TenantCatalog> catalog;
  std::unique_ptr<JobRuntime> jobs;
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_ENGINE_PARTS_H_
