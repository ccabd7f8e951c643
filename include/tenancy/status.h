// Error helpers shared by every tenancy component.
//
// Errors are absl::Status values with the most specific canonical code. Some
// callers (tenancyd, host applications) must tell apart rejections that share a
// code: a storage-quota refusal and a rate-limit refusal are both
// RESOURCE_EXHAUSTED, but the server answers 507 for one and 429 for the other.
// The reason travels as a Status payload; read it with GetErrorReason().
//
// Thread safety: all functions are pure and safe for concurrent use.

#ifndef TENANCY_STATUS_H_
#define TENANCY_STATUS_H_

#include <chrono>
#include <optional>
#include <string_view>

#include "absl/status/status.h"

namespace tenancy {

// Why an operation was refused, beyond its canonical code.
enum class ErrorReason {
  kUnspecified = 0,
  // RESOURCE_EXHAUSTED: the write would pass a storage quota; nothing written.
  kStorageQuota,
  // RESOURCE_EXHAUSTED: the write would pass the key-count quota; nothing written.
  kKeyQuota,
  // RESOURCE_EXHAUSTED: the enqueue would pass max_queued_jobs; nothing written.
  kQueuedJobsQuota,
  // RESOURCE_EXHAUSTED: a token bucket is empty; see GetRetryAfter().
  kRateLimited,
  // RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED: no concurrency permit in time.
  kConcurrencyLimited,
  // PERMISSION_DENIED: the tenant is disabled.
  kTenantDisabled,
  // PERMISSION_DENIED: a write to a read-only tenant.
  kTenantReadOnly,
  // NOT_FOUND: the tenant is being (or has been) purged.
  kTenantDeleted,
  // INVALID_ARGUMENT: a key, value or body is over its size limit.
  kTooLarge,
  // FAILED_PRECONDITION: a job lease is expired or was replaced.
  kStaleLease,
  // UNAVAILABLE: the write failed on a storage error (disk full, I/O error)
  // or the database refuses writes after one (Engine::Health() is degraded).
  // Nothing was acknowledged; retry after GetRetryAfter().
  kStorageUnavailable,
};

// Returns a status with `code`, `message` and `reason` attached as a payload.
// REQUIRES: code != absl::StatusCode::kOk.
absl::Status MakeError(absl::StatusCode code, ErrorReason reason, std::string_view message);

// Returns the reason attached by MakeError, or kUnspecified.
ErrorReason GetErrorReason(const absl::Status& status);

// Short, stable, lower_snake_case name of a reason ("storage_quota", ...), as
// used in metrics labels and HTTP error codes.
std::string_view ErrorReasonName(ErrorReason reason);

// Returns a copy of `status` that tells the caller how long to wait before
// retrying (rate and concurrency rejections carry one).
absl::Status WithRetryAfter(absl::Status status, std::chrono::nanoseconds retry_after);

// The wait attached by WithRetryAfter, if any.
std::optional<std::chrono::nanoseconds> GetRetryAfter(const absl::Status& status);

// True for refusals that mean "over a storage, key or job quota" (HTTP 507).
bool IsQuotaExceeded(const absl::Status& status);

// True for refusals that mean "over a rate or concurrency limit" (HTTP 429).
bool IsRateOrConcurrencyLimited(const absl::Status& status);

}  // namespace tenancy

#endif  // TENANCY_STATUS_H_
