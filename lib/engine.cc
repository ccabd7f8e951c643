#include "tenancy/engine.h"

#include "str_cat.h"
#include "engine_core.h"
#include "rocksdb_status.h"
#include "status_macros.h"

namespace tenancy {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(EngineOptions options) {
  TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<internal::EngineCore> core,
                           internal::EngineCore::Open(std::move(options)));
  return std::unique_ptr<Engine>(new Engine(std::move(core)));
}

Engine::Engine(std::unique_ptr<internal::EngineCore> core)
    : core_(std::move(core)) {}

Engine::~Engine() = default;

TenantRegistry& Engine::registry() { return core_->registry(); }

absl::StatusOr<Tenant> Engine::GetTenant(std::string_view id) const {
  return core_->GetTenant(id);
}

absl::StatusOr<Tenant> Engine::ResolveApiKey(std::string_view secret) const {
  return core_->ResolveApiKey(secret);
}

absl::Status Engine::Flush() { return core_->Flush(); }

absl::StatusOr<uint64_t> Engine::GetIntProperty(std::string_view property) const {
  uint64_t value = 0;
  if (!core_->db()->GetIntProperty(core_->shared_cf(),
                                   rocksdb::Slice(property.data(), property.size()),
                                   &value)) {
    return absl::NotFoundError(internal::StrCat("engine: no property ", property));
  }
  return value;
}

Limiter& Engine::limiter() { return core_->limiter(); }

const EngineOptions& Engine::options() const { return core_->options(); }

Logger& Engine::logger() const { return core_->logger(); }

}  // namespace tenancy
