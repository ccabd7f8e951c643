// CacheBinding: which Cache an engine uses, and how the registry's changes
// reach it (see EngineOptions::cache). One Cache serves one open Engine:
// tenants are named to it by their engine-local numbers.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_LIB_CACHE_BINDING_H_
#define TENANCY_LIB_CACHE_BINDING_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "tenancy/cache.h"
#include "tenant_slot.h"

namespace tenancy::internal {

class CacheBinding {
 public:
  // Claims `*cache` for an engine, creating one with CacheOptions{} when it
  // is null. INVALID_ARGUMENT if another open engine has it or it holds
  // entries.
  static absl::StatusOr<std::unique_ptr<CacheBinding>> Claim(std::shared_ptr<Cache>* cache);
  CacheBinding(const CacheBinding&) = delete;
  CacheBinding& operator=(const CacheBinding&) = delete;
  // Gives the claim back.
  ~CacheBinding();

  Cache& cache() const { return *cache_; }

  // Applies the slot's spec: its budget (Quota::cache_bytes, 0: the cache's
  // default), and, once the state says disabled or deleting, drops its
  // entries. Called after the state is stored, which TenantCache's writes
  // rely on (see tenant_cache.cc).
  void ApplySpecLocked(TenantSlot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);
  // A purged tenant's entries and budget go.
  void ForgetTenant(uint64_t number);
  // Every entry and budget of `slots` goes (the engine is closing).
  void ForgetAll(const std::vector<std::shared_ptr<TenantSlot>>& slots);

 private:
  explicit CacheBinding(std::shared_ptr<Cache> cache) : cache_(std::move(cache)) {}

  const std::shared_ptr<Cache> cache_;
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CACHE_BINDING_H_
