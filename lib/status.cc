#include "tenancy/status.h"

#include <cstdint>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace tenancy {
namespace {

// Payload type URLs. The payload of each is a decimal integer.
constexpr char kReasonUrl[] = "tenancy.dev/ErrorReason";
constexpr char kRetryAfterUrl[] = "tenancy.dev/RetryAfterNanos";

std::optional<int64_t> ReadIntegerPayload(const absl::Status& status, const char* url) {
  absl::optional<absl::Cord> payload = status.GetPayload(url);
  if (!payload.has_value()) return std::nullopt;
  int64_t value = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &value)) return std::nullopt;
  return value;
}

}  // namespace

absl::Status MakeError(absl::StatusCode code, ErrorReason reason, std::string_view message) {
  absl::Status status(code, absl::string_view(message.data(), message.size()));
  if (reason != ErrorReason::kUnspecified) {
    status.SetPayload(kReasonUrl, absl::Cord(std::to_string(static_cast<int>(reason))));
  }
  return status;
}

ErrorReason GetErrorReason(const absl::Status& status) {
  if (status.ok()) return ErrorReason::kUnspecified;
  std::optional<int64_t> value = ReadIntegerPayload(status, kReasonUrl);
  if (!value.has_value() || *value < 0 ||
      *value > static_cast<int64_t>(ErrorReason::kStorageUnavailable)) {
    return ErrorReason::kUnspecified;
  }
  return static_cast<ErrorReason>(*value);
}

std::string_view ErrorReasonName(ErrorReason reason) {
  switch (reason) {
    case ErrorReason::kUnspecified:
      return "unspecified";
    case ErrorReason::kStorageQuota:
      return "storage_quota";
    case ErrorReason::kKeyQuota:
      return "key_quota";
    case ErrorReason::kQueuedJobsQuota:
      return "queued_jobs_quota";
    case ErrorReason::kRateLimited:
      return "rate_limited";
    case ErrorReason::kConcurrencyLimited:
      return "concurrency_limited";
    case ErrorReason::kTenantDisabled:
      return "tenant_disabled";
    case ErrorReason::kTenantReadOnly:
      return "tenant_read_only";
    case ErrorReason::kTenantDeleted:
      return "tenant_deleted";
    case ErrorReason::kTooLarge:
      return "too_large";
    case ErrorReason::kStaleLease:
      return "stale_lease";
    case ErrorReason::kStorageUnavailable:
      return "storage_unavailable";
  }
  return "unspecified";
}

absl::Status WithRetryAfter(absl::Status status, std::chrono::nanoseconds retry_after) {
  if (status.ok()) return status;
  status.SetPayload(kRetryAfterUrl, absl::Cord(std::to_string(retry_after.count())));
  return status;
}

std::optional<std::chrono::nanoseconds> GetRetryAfter(const absl::Status& status) {
  if (status.ok()) return std::nullopt;
  std::optional<int64_t> value = ReadIntegerPayload(status, kRetryAfterUrl);
  if (!value.has_value()) return std::nullopt;
  return std::chrono::nanoseconds(*value);
}

bool IsQuotaExceeded(const absl::Status& status) {
  switch (GetErrorReason(status)) {
    case ErrorReason::kStorageQuota:
    case ErrorReason::kKeyQuota:
    case ErrorReason::kQueuedJobsQuota:
      return true;
    default:
      return false;
  }
}

bool IsRateOrConcurrencyLimited(const absl::Status& status) {
  ErrorReason reason = GetErrorReason(status);
  return reason == ErrorReason::kRateLimited || reason == ErrorReason::kConcurrencyLimited;
}

}  // namespace tenancy
