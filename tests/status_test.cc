#include "tenancy/status.h"

#include <catch2/catch.hpp>

namespace tenancy {
namespace {

TEST_CASE("Status: a reason survives as a payload and tells quota from rate", "[status]") {
  absl::Status quota =
      MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kStorageQuota, "over quota");
  absl::Status rate = WithRetryAfter(
      MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kRateLimited, "slow down"),
      std::chrono::milliseconds(250));
  CHECK(absl::IsResourceExhausted(quota));
  CHECK(absl::IsResourceExhausted(rate));
  CHECK(GetErrorReason(quota) == ErrorReason::kStorageQuota);
  CHECK(GetErrorReason(rate) == ErrorReason::kRateLimited);
  CHECK(IsQuotaExceeded(quota));
  CHECK_FALSE(IsQuotaExceeded(rate));
  CHECK(IsRateOrConcurrencyLimited(rate));
  CHECK_FALSE(IsRateOrConcurrencyLimited(quota));
  CHECK_FALSE(GetRetryAfter(quota).has_value());
  REQUIRE(GetRetryAfter(rate).has_value());
  CHECK(*GetRetryAfter(rate) == std::chrono::milliseconds(250));
  CHECK(ErrorReasonName(GetErrorReason(rate)) == "rate_limited");
}

TEST_CASE("Status: a plain status has no reason", "[status]") {
  CHECK(GetErrorReason(absl::OkStatus()) == ErrorReason::kUnspecified);
  CHECK(GetErrorReason(absl::NotFoundError("x")) == ErrorReason::kUnspecified);
  CHECK_FALSE(GetRetryAfter(absl::OkStatus()).has_value());
}

}  // namespace
}  // namespace tenancy
