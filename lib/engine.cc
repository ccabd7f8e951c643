// Engine, and EngineParts: the order in which an engine's parts are built
// and torn down.

#include "tenancy/engine.h"

#include "access.h"
#include "adoption.h"
#include "engine_parts.h"
#include "job_runtime.h"
#include "leased_permits_table.h"
#include "rocksdb_status.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenant_archive.h"

namespace tenancy {
namespace internal {

absl::StatusOr<std::unique_ptr<EngineParts>> EngineParts::Open(EngineOptions options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("engine: options.path is empty");
  }
  if (options.max_key_bytes == 0 || options.max_value_bytes == 0) {
    return absl::InvalidArgumentError("engine: max_key_bytes and max_value_bytes must be positive");
  }
  if (!(options.quota_warning_fraction > 0 && options.quota_warning_fraction <= 1)) {
    return absl::InvalidArgumentError("engine: quota_warning_fraction must be in (0, 1]");
  }
  TENANCY_RETURN_IF_ERROR(JobRuntime::ValidateOptions(options.jobs));
  if (!options.adopt_existing_data.empty()) {
    TenantSpec spec;
    spec.id = options.adopt_existing_data;
    if (absl::Status valid = ValidateSpec(spec); !valid.ok()) {
      return absl::InvalidArgumentError(StrCat("engine: adopt_existing_data: ", valid.message()));
    }
  }
  if (options.logger == nullptr) options.logger = NewStderrLogger();
  if (!options.keep_mutex_deadlock_detection) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  auto parts = std::make_unique<EngineParts>();
  parts->options = std::move(options);
  EngineParts& p = *parts;
  auto limiter = Limiter::Create(p.options.limiter);
  if (!limiter.ok()) {
    return absl::InvalidArgumentError(
        StrCat("engine: options.limiter: ", limiter.status().message()));
  }
  p.limiter = *std::move(limiter);
  TENANCY_RETURN_IF_ERROR(PermitLeaseTable::ValidateOptions(p.options.permits));
  p.permits = PermitLeaseTable::Create(p.limiter.get(), p.options.permits);
  TENANCY_ASSIGN_OR_RETURN(p.cache, CacheBinding::Claim(&p.options.cache));
  TENANCY_ASSIGN_OR_RETURN(p.storage, Storage::Open(p.options, p.logger()));
  p.ledger = std::make_unique<UsageLedger>(*p.storage, p.options);
  p.catalog = std::make_unique<TenantCatalog>(*p.storage, *p.limiter, *p.cache, p.logger());
  p.jobs = std::make_unique<JobRuntime>(&p);
  CacheBinding* cache = p.cache.get();
  p.catalog->AddPurgeListener([cache](uint64_t number) { cache->ForgetTenant(number); });
  JobRuntime* jobs = p.jobs.get();
  p.catalog->AddPurgeListener([jobs](uint64_t number) { jobs->OnPurge(number); });
  // A tenant that takes no more calls holds no leased permits either.
  PermitLeases* permits = p.permits.get();
  p.catalog->AddStopListener([permits](const std::string& id, bool purged) {
    permits->ReleaseTenant(id, /*forget=*/purged);
  });
  TENANCY_RETURN_IF_ERROR(p.catalog->Load());
  // Imports a stop interrupted: their staged files, and the ranges they (or
  // a replace) left without an owner.
  RemoveImportStaging(p.options.path, p.logger());
  TENANCY_RETURN_IF_ERROR(p.catalog->CleanAbandonedRanges());
  TENANCY_RETURN_IF_ERROR(p.catalog->ResumePurges());
  TENANCY_RETURN_IF_ERROR(AdoptExistingData(p));
  return parts;
}

EngineParts::~EngineParts() {
  permits.reset();                        // its sweeper, and the permits it holds of `limiter`
  if (jobs != nullptr) jobs->Shutdown();  // job worker threads first
  if (catalog != nullptr) {
    if (cache != nullptr) cache->ForgetAll(catalog->Snapshot());
    if (storage != nullptr) catalog->FlushRequestStats().IgnoreError();
  }
  jobs.reset();
  catalog.reset();  // the slots, and with them the column family handles
  ledger.reset();
  storage.reset();  // closes the database
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(EngineOptions options) {
  TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<internal::EngineParts> parts,
                           internal::EngineParts::Open(std::move(options)));
  return std::unique_ptr<Engine>(new Engine(std::move(parts)));
}

Engine::Engine(std::unique_ptr<internal::EngineParts> parts)
    : parts_(std::move(parts)),
      registry_(parts_->catalog.get()),
      lifecycle_(new TenantLifecycle(parts_.get())) {}

Engine::~Engine() = default;

TenantRegistry& Engine::registry() { return registry_; }

absl::StatusOr<Tenant> Engine::GetTenant(std::string_view id) const {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<internal::TenantSlot> slot,
                           parts_->catalog->FindLive(id));
  return internal::Access::MakeTenant(std::move(slot), parts_.get());
}

absl::StatusOr<Tenant> Engine::ResolveApiKey(std::string_view secret) const {
  TENANCY_ASSIGN_OR_RETURN(std::shared_ptr<internal::TenantSlot> slot,
                           parts_->catalog->ResolveApiKey(secret));
  return internal::Access::MakeTenant(std::move(slot), parts_.get());
}

absl::Status Engine::Flush() {
  TENANCY_RETURN_IF_ERROR(parts_->catalog->FlushRequestStats());
  std::vector<rocksdb::ColumnFamilyHandle*> families = {parts_->storage->meta(),
                                                        parts_->storage->shared().get()};
  std::vector<std::shared_ptr<internal::TenantSlot>> slots = parts_->catalog->Snapshot();
  for (const auto& slot : slots) {
    if (slot->placement == Placement::kDedicated && slot->state.load() != TenantState::kDeleting) {
      families.push_back(slot->cf.get());
    }
  }
  return parts_->storage->Flush(families);
}

EngineHealth Engine::Health() const { return parts_->storage->Health(); }

absl::Status Engine::Resume() { return parts_->storage->Resume(); }

absl::StatusOr<uint64_t> Engine::GetIntProperty(std::string_view property) const {
  uint64_t value = 0;
  if (!parts_->storage->db()->GetIntProperty(parts_->storage->shared().get(),
                                             rocksdb::Slice(property.data(), property.size()),
                                             &value)) {
    return absl::NotFoundError(internal::StrCat("engine: no property ", property));
  }
  return value;
}

Limiter& Engine::limiter() { return *parts_->limiter; }

PermitLeases& Engine::permits() { return *parts_->permits; }

TenantLifecycle& Engine::lifecycle() { return *lifecycle_; }

const EngineOptions& Engine::options() const { return parts_->options; }

Logger& Engine::logger() const { return parts_->logger(); }

}  // namespace tenancy
