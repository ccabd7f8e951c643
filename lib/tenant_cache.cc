// TenantCache, and CacheBinding (cache_binding.h): which Cache an engine
// uses, and how the registry's transitions reach it.
//
// Dropping a disabled or purged tenant's entries races its in-flight writes:
// a Set that passed the state check before the tenant was disabled may land
// after Cache::DropTenant has run (the Cache says so: "stop writes for the
// tenant first"). Waiting for in-flight calls to drain, as a purge does for
// RocksDB data, would make every disable wait on the tenant's traffic. So
// writes check again instead:
//   registry:  state.store(disabled)   then  Cache::DropTenant
//   writer:    check state, Cache write   then  state.load(); not active or
//              read-only => Cache::DropTenant and refuse.
// Either the writer's entry is in the cache when DropTenant reaches its
// shard, and is dropped there, or the writer's shard lock (or, for an entry
// of a fresh per-tenant state, the cache's registry lock) comes after
// DropTenant's, so the writer's second load sees the new state and drops the
// entry itself. Reads need no second look: a stale hit in the instant of a
// disable is no different from the hit just before it.

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/base/attributes.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "access.h"
#include "cache_binding.h"
#include "engine_parts.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/cache.h"
#include "tenancy/status.h"
#include "usage_ledger.h"

namespace tenancy {
namespace internal {
namespace {

// The caches claimed by open engines, process-wide (see EngineOptions::cache).
ABSL_CONST_INIT absl::Mutex claimed_caches_mu(absl::kConstInit);
absl::flat_hash_set<const Cache*>& ClaimedCaches()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(claimed_caches_mu) {
  static auto* caches = new absl::flat_hash_set<const Cache*>();
  return *caches;
}

std::optional<size_t> BudgetOf(const TenantSpec& spec) {
  const uint64_t bytes = spec.quota.cache_bytes;
  if (bytes == 0) return std::nullopt;  // the cache's default
  return static_cast<size_t>(std::min<uint64_t>(bytes, std::numeric_limits<size_t>::max()));
}

bool DropsCache(TenantState state) {
  return state == TenantState::kDisabled || state == TenantState::kDeleting;
}

// The Cache names tenants "tenant #<number>"; the library's callers know them
// by id. Rewrites that prefix, keeping the code and every payload (the error
// reason).
absl::Status NameTenant(const absl::Status& status, const TenantSlot& slot) {
  if (status.ok()) return status;
  const std::string_view message(status.message().data(), status.message().size());
  const std::string numbered = StrCat("tenant #", slot.number, ":");
  const std::string renamed =
      message.substr(0, numbered.size()) == numbered
          ? StrCat("tenant \"", slot.id, "\":", message.substr(numbered.size()))
          : StrCat("tenant \"", slot.id, "\": ", message);
  absl::Status out(status.code(), renamed);
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CacheBinding>> CacheBinding::Claim(std::shared_ptr<Cache>* cache) {
  if (*cache == nullptr) {
    TENANCY_ASSIGN_OR_RETURN(std::unique_ptr<Cache> made, Cache::Create(CacheOptions{}));
    *cache = std::move(made);
  }
  {
    absl::MutexLock lock(&claimed_caches_mu);
    if (!ClaimedCaches().insert(cache->get()).second) {
      return absl::InvalidArgumentError("engine: options.cache is in use by another open engine");
    }
  }
  std::unique_ptr<CacheBinding> binding(new CacheBinding(*cache));
  if ((*cache)->TotalStats().entries != 0) {
    return absl::InvalidArgumentError(
        "engine: options.cache holds entries; an engine needs a cache of its "
        "own (tenant numbers are per engine)");
  }
  return binding;
}

CacheBinding::~CacheBinding() {
  absl::MutexLock lock(&claimed_caches_mu);
  ClaimedCaches().erase(cache_.get());
}

void CacheBinding::ForgetTenant(uint64_t number) {
  cache_->DropTenant(number);
  cache_->SetTenantBudget(number, std::nullopt);
}

void CacheBinding::ForgetAll(const std::vector<std::shared_ptr<TenantSlot>>& slots) {
  // No handle may be in use now (Engine's REQUIRES), so nothing writes.
  for (const std::shared_ptr<TenantSlot>& slot : slots) ForgetTenant(slot->number);
}

void CacheBinding::ApplySpecLocked(TenantSlot& slot) {
  // Always set, also to the default: a tenant number never carries another
  // tenant's budget (e.g. one left by a create whose commit failed).
  cache_->SetTenantBudget(slot.number, BudgetOf(slot.spec));
  if (DropsCache(slot.state.load(std::memory_order_seq_cst))) {
    cache_->DropTenant(slot.number);
  }
}

}  // namespace internal

using internal::TenantSlot;

absl::StatusOr<std::string> TenantCache::Get(std::string_view key) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  TENANCY_RETURN_IF_ERROR(internal::CheckReadableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  internal::RecordCall(slot, CallKind::kCache);
  absl::StatusOr<std::string> value = engine.cache->cache().Get(slot.number, key);
  if (!value.ok()) {
    if (absl::IsNotFound(value.status())) {
      return absl::NotFoundError(internal::StrCat("tenant \"", slot.id, "\": no such cache key"));
    }
    return internal::NameTenant(value.status(), slot);
  }
  return value;
}

namespace {

// The second look of a write (see the file comment): OK if the tenant still
// keeps a cache; otherwise drops what the write left and returns the state's
// error.
absl::Status RecheckAfterWrite(const TenantSlot& slot, Cache& cache) {
  if (!internal::DropsCache(slot.state.load(std::memory_order_seq_cst))) {
    return absl::OkStatus();
  }
  cache.DropTenant(slot.number);
  absl::Status s = internal::CheckReadableState(slot);
  // Disabled or deleting: CheckReadableState refuses both.
  return s.ok() ? absl::AbortedError(
                      internal::StrCat("tenant \"", slot.id, "\": state changed during the call"))
                : s;
}

}  // namespace

absl::Status TenantCache::Set(std::string_view key, std::string_view value,
                              std::optional<std::chrono::nanoseconds> ttl) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateValue(slot, value));
  internal::RecordCall(slot, CallKind::kCache);
  TENANCY_RETURN_IF_ERROR(
      internal::NameTenant(engine.cache->cache().Set(slot.number, key, value, ttl), slot));
  return RecheckAfterWrite(slot, engine.cache->cache());
}

absl::StatusOr<bool> TenantCache::Delete(std::string_view key) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  internal::RecordCall(slot, CallKind::kCache);
  return engine.cache->cache().Delete(slot.number, key);
}

absl::StatusOr<int64_t> TenantCache::Increment(std::string_view key, int64_t by,
                                               std::optional<std::chrono::nanoseconds> ttl) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, key));
  internal::RecordCall(slot, CallKind::kCache);
  absl::StatusOr<int64_t> result = engine.cache->cache().Increment(slot.number, key, by, ttl);
  if (!result.ok()) return internal::NameTenant(result.status(), slot);
  TENANCY_RETURN_IF_ERROR(RecheckAfterWrite(slot, engine.cache->cache()));
  return result;
}

absl::StatusOr<size_t> TenantCache::DeletePrefix(std::string_view prefix) const {
  TenantSlot& slot = internal::Access::Slot(tenant_);
  internal::EngineParts& engine = internal::Access::Parts(tenant_);
  TENANCY_RETURN_IF_ERROR(internal::CheckWritableState(slot));
  TENANCY_RETURN_IF_ERROR(engine.ledger->ValidateKey(slot, prefix));
  internal::RecordCall(slot, CallKind::kCache);
  return engine.cache->cache().DeletePrefix(slot.number, prefix);
}

CacheStats TenantCache::Stats() const {
  return internal::Access::Parts(tenant_).cache->cache().TenantStats(
      internal::Access::Slot(tenant_).number);
}

}  // namespace tenancy
