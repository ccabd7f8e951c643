// PermitLeases: Limiter permits held for remote callers under a token, until
// released or until their lease ends (tenancy/leased_permits.h).

#include "tenancy/leased_permits.h"

#include <map>
#include <set>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "leased_permits_table.h"
#include "secure_random.h"
#include "status_macros.h"
#include "str_cat.h"
#include "tenancy/tenant.h"

namespace tenancy {
namespace internal {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kTokenPrefix = "pt_";
constexpr size_t kTokenRandomBytes = 24;                 // 192 bits
constexpr size_t kTokenSize = kTokenPrefix.size() + 32;  // base64url of 24 bytes

absl::Status CheckLease(absl::Duration lease) {
  if (lease <= absl::ZeroDuration() || lease > kMaxPermitLease) {
    return absl::InvalidArgumentError(StrCat("permit: the lease must be more than 0 and at most ",
                                             absl::ToInt64Seconds(kMaxPermitLease), " seconds"));
  }
  return absl::OkStatus();
}

// Only the shape: a token of another shape was never issued, so it is
// NOT_FOUND without a lookup.
bool WellFormedToken(std::string_view token) {
  if (token.size() != kTokenSize || token.substr(0, kTokenPrefix.size()) != kTokenPrefix) {
    return false;
  }
  for (char c : token.substr(kTokenPrefix.size())) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<std::string> NewToken() {
  unsigned char bytes[kTokenRandomBytes];
  TENANCY_RETURN_IF_ERROR(SecureRandomBytes(bytes, sizeof(bytes)));
  return StrCat(kTokenPrefix, absl::WebSafeBase64Escape(absl::string_view(
                                  reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

// One message for every token that names no permit of the tenant, so that a
// caller cannot tell another tenant's token from one never issued.
absl::Status PermitNotFound(const Tenant& tenant) {
  return absl::NotFoundError(
      StrCat("tenant \"", tenant.id(), "\": no such permit (unknown, released or expired)"));
}

}  // namespace

absl::Status PermitLeaseTable::ValidateOptions(const PermitLeaseOptions& options) {
  for (const std::string& root : options.reserved_class_roots) {
    if (absl::Status s = Limiter::ValidateClassName(root); !s.ok()) {
      return absl::InvalidArgumentError(
          StrCat("permits: reserved_class_roots: ", std::string(s.message())));
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<PermitLeases> PermitLeaseTable::Create(Limiter* limiter,
                                                       PermitLeaseOptions options) {
  return std::unique_ptr<PermitLeases>(
      new PermitLeases(std::make_unique<PermitLeaseTable>(limiter, std::move(options))));
}

PermitLeaseTable::PermitLeaseTable(Limiter* limiter, PermitLeaseOptions options)
    : limiter_(limiter), options_(std::move(options)) {
  sweeper_ = std::thread([this] { SweepUntilStopped(); });
}

PermitLeaseTable::~PermitLeaseTable() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    sweeper_cv_.Signal();
  }
  sweeper_.join();
  absl::flat_hash_map<std::string, Lease> leases;
  {
    absl::MutexLock lock(&mu_);
    leases.swap(leases_);
    by_expiry_.clear();
  }
  // `leases` goes out of scope here: every permit is given back.
}

bool PermitLeaseTable::IsReserved(std::string_view class_name) const {
  for (const std::string& root : options_.reserved_class_roots) {
    if (class_name.substr(0, root.size()) != root) continue;
    if (class_name.size() == root.size()) return true;
    const char next = class_name[root.size()];
    if (next == '/' || next == '.') return true;
  }
  return false;
}

std::shared_ptr<PermitLeaseTable::Counters> PermitLeaseTable::CountersForLocked(
    const std::string& tenant_id, std::string_view class_name) {
  std::shared_ptr<Counters>& slot = counters_[{tenant_id, std::string(class_name)}];
  if (slot == nullptr) slot = std::make_shared<Counters>();
  return slot;
}

absl::StatusOr<LeasedPermit> PermitLeaseTable::Take(const Tenant& tenant,
                                                    std::string_view class_name,
                                                    absl::Duration lease,
                                                    Clock::time_point deadline) {
  TENANCY_RETURN_IF_ERROR(CheckLease(lease));
  if (absl::Status s = Limiter::ValidateClassName(class_name); !s.ok()) {
    return absl::InvalidArgumentError(StrCat("permit: ", std::string(s.message())));
  }
  if (IsReserved(class_name)) {
    return absl::InvalidArgumentError(
        StrCat("permit: class \"", class_name, "\" is reserved for the server's own requests"));
  }
  // Only classes some limit names: see the header. Checked before
  // Limiter::Class, which would create the class.
  const std::string name(class_name);
  if (!tenant.EffectiveLimits().contains(name) && !limiter_->GlobalLimits().contains(name)) {
    return absl::InvalidArgumentError(
        StrCat("tenant \"", tenant.id(), "\": class \"", class_name,
               "\" has no concurrency limit (no default, tenant or global limit names it)"));
  }
  TENANCY_ASSIGN_OR_RETURN(LimitClass cls, limiter_->Class(class_name));

  std::shared_ptr<Counters> counters;
  const bool may_wait = deadline > Clock::now();
  {
    absl::MutexLock lock(&mu_);
    counters = CountersForLocked(tenant.id(), class_name);
    if (may_wait) {
      ++counters->waits;
      ++counters->waiting;
    }
  }
  // A take that may not wait must not queue behind waiters either.
  absl::StatusOr<Permit> permit = may_wait ? tenant.Acquire(cls, deadline) : tenant.TryAcquire(cls);
  if (may_wait) {
    absl::MutexLock lock(&mu_);
    --counters->waiting;
    if (absl::IsDeadlineExceeded(permit.status())) ++counters->wait_timeouts;
  }
  if (!permit.ok()) return permit.status();
  TENANCY_ASSIGN_OR_RETURN(std::string token, NewToken());

  const Clock::time_point expiry = Clock::now() + absl::ToChronoNanoseconds(lease);
  const absl::Time expires_at = absl::Now() + lease;
  {
    absl::MutexLock lock(&mu_);
    leases_.emplace(token, Lease{.tenant_id = tenant.id(),
                                 .tenant_number = tenant.number(),
                                 .expiry = expiry,
                                 .counters = counters,
                                 .permit = *std::move(permit)});
    by_expiry_.emplace(expiry, token);
    ++counters->in_use;
    ++counters->granted;
    WakeSweeperIfLaterThanLocked(expiry);
  }
  // A disable or purge that ran while we acquired released the tenant's
  // permits before this one was in the table: look at the state again, after
  // the insert. (Either ReleaseTenant saw the entry, or we see its state.)
  if (absl::Status state = tenant.CheckReadable(); !state.ok()) {
    Permit dropped;
    {
      absl::MutexLock lock(&mu_);
      auto it = leases_.find(token);
      if (it != leases_.end()) dropped = EraseLocked(it);
    }
    return state;
  }
  return LeasedPermit{.token = std::move(token), .class_name = name, .expires_at = expires_at};
}

Permit PermitLeaseTable::EraseLocked(absl::flat_hash_map<std::string, Lease>::iterator it) {
  Lease& lease = it->second;
  --lease.counters->in_use;
  by_expiry_.erase({lease.expiry, it->first});
  Permit permit = std::move(lease.permit);
  leases_.erase(it);
  return permit;
}

absl::StatusOr<absl::Time> PermitLeaseTable::Renew(const Tenant& tenant, std::string_view token,
                                                   absl::Duration lease) {
  TENANCY_RETURN_IF_ERROR(CheckLease(lease));
  if (!WellFormedToken(token)) return PermitNotFound(tenant);
  Permit expired;  // released after the lock, if the lease had ended
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(absl::string_view(token.data(), token.size()));
  if (it == leases_.end() || it->second.tenant_number != tenant.number()) {
    return PermitNotFound(tenant);
  }
  const Clock::time_point now = Clock::now();
  if (it->second.expiry <= now) {
    // Ended, and the sweeper has not come round yet.
    ++it->second.counters->expired;
    expired = EraseLocked(it);
    return PermitNotFound(tenant);
  }
  const Clock::time_point expiry = now + absl::ToChronoNanoseconds(lease);
  by_expiry_.erase({it->second.expiry, it->first});
  by_expiry_.emplace(expiry, it->first);
  it->second.expiry = expiry;
  WakeSweeperIfLaterThanLocked(expiry);
  return absl::Now() + lease;
}

absl::Status PermitLeaseTable::Release(const Tenant& tenant, std::string_view token) {
  if (!WellFormedToken(token)) return PermitNotFound(tenant);
  Permit released;  // given back after the lock
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(absl::string_view(token.data(), token.size()));
  if (it == leases_.end() || it->second.tenant_number != tenant.number()) {
    return PermitNotFound(tenant);
  }
  if (it->second.expiry <= Clock::now()) {
    ++it->second.counters->expired;
    released = EraseLocked(it);
    return PermitNotFound(tenant);
  }
  released = EraseLocked(it);
  return absl::OkStatus();
}

size_t PermitLeaseTable::ReleaseTenant(std::string_view tenant_id, bool forget) {
  std::vector<Permit> released;
  absl::MutexLock lock(&mu_);
  // A pass over every lease: this runs on a disable or purge, not per request.
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (it->second.tenant_id == tenant_id) released.push_back(EraseLocked(it));
    it = next;
  }
  if (forget) {
    for (auto it = counters_.begin(); it != counters_.end();) {
      it = it->first.first == tenant_id ? counters_.erase(it) : std::next(it);
    }
  }
  return released.size();
}

std::vector<PermitLeaseCounters> PermitLeaseTable::Snapshot() const {
  std::vector<PermitLeaseCounters> rows;
  absl::MutexLock lock(&mu_);
  rows.reserve(counters_.size());
  for (const auto& [key, c] : counters_) {
    rows.push_back(PermitLeaseCounters{.tenant_id = key.first,
                                       .class_name = key.second,
                                       .in_use = c->in_use,
                                       .waiting = c->waiting,
                                       .granted = c->granted,
                                       .waits = c->waits,
                                       .wait_timeouts = c->wait_timeouts,
                                       .expired = c->expired});
  }
  return rows;
}

void PermitLeaseTable::WakeSweeperIfLaterThanLocked(Clock::time_point expiry) {
  // Only an expiry before the sweeper's wake-up needs it now: waking it for
  // every take would cost a context switch per permit.
  if (expiry < sweeper_wakes_at_) sweeper_cv_.Signal();
}

void PermitLeaseTable::SweepUntilStopped() {
  mu_.Lock();
  while (!stopping_) {
    std::vector<Permit> expired;
    const Clock::time_point now = Clock::now();
    while (!by_expiry_.empty() && by_expiry_.begin()->first <= now) {
      auto it = leases_.find(by_expiry_.begin()->second);
      ++it->second.counters->expired;
      expired.push_back(EraseLocked(it));
    }
    if (!expired.empty()) {
      // Given back without the lock: a release may wake a waiter in Take().
      mu_.Unlock();
      expired.clear();
      mu_.Lock();
      continue;
    }
    // The wake-up stays as set until then, also if the leases behind it go
    // first (a release does not wake the sweeper, so a take after it will not
    // have to either).
    if (by_expiry_.empty()) {
      sweeper_wakes_at_ = Clock::time_point::max();
      sweeper_cv_.Wait(&mu_);
    } else {
      sweeper_wakes_at_ = by_expiry_.begin()->first;
      sweeper_cv_.WaitWithTimeout(&mu_, absl::FromChrono(sweeper_wakes_at_ - now));
    }
  }
  mu_.Unlock();
}

}  // namespace internal

PermitLeases::PermitLeases(std::unique_ptr<internal::PermitLeaseTable> table)
    : table_(std::move(table)) {}

PermitLeases::~PermitLeases() = default;

absl::StatusOr<LeasedPermit> PermitLeases::Take(const Tenant& tenant, std::string_view class_name,
                                                absl::Duration lease,
                                                std::chrono::steady_clock::time_point deadline) {
  return table_->Take(tenant, class_name, lease, deadline);
}

absl::StatusOr<absl::Time> PermitLeases::Renew(const Tenant& tenant, std::string_view token,
                                               absl::Duration lease) {
  return table_->Renew(tenant, token, lease);
}

absl::Status PermitLeases::Release(const Tenant& tenant, std::string_view token) {
  return table_->Release(tenant, token);
}

size_t PermitLeases::ReleaseTenant(std::string_view tenant_id, bool forget) {
  return table_->ReleaseTenant(tenant_id, forget);
}

std::vector<PermitLeaseCounters> PermitLeases::Snapshot() const { return table_->Snapshot(); }

}  // namespace tenancy
