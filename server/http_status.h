// The one mapping from absl::Status to an HTTP answer, and the error body
// every refusal carries: {"error":{"code":"...","message":"..."}}.
//
//   status                                   HTTP  code
//   INVALID_ARGUMENT, OUT_OF_RANGE            400   invalid_argument
//     reason kTooLarge                        413   too_large
//   UNAUTHENTICATED                           401   unauthenticated
//   PERMISSION_DENIED                         403   forbidden
//     reason kTenantDisabled                  403   tenant_disabled
//     reason kTenantReadOnly                  403   tenant_read_only
//   NOT_FOUND (also kTenantDeleted)           404   not_found
//   ALREADY_EXISTS                            409   already_exists
//   FAILED_PRECONDITION, ABORTED              409   conflict
//   RESOURCE_EXHAUSTED
//     kStorageQuota, kKeyQuota, kQueuedJobs   507   quota_exceeded
//     kRateLimited                            429   rate_limited + Retry-After
//     kConcurrencyLimited                     429   concurrency_limited + R-A
//     any other reason                        503   unavailable + Retry-After
//   DEADLINE_EXCEEDED
//     kConcurrencyLimited                     429   concurrency_limited + R-A
//     otherwise                               504   deadline_exceeded
//   UNAVAILABLE                               503   unavailable + Retry-After
//     kStorageUnavailable: a fixed message (the engine's names files)
//   UNIMPLEMENTED                             501   not_implemented
//   anything else                             500   internal
//
// A 500 never shows the status message (it may name files or RocksDB
// internals); the caller logs it instead. Retry-After is whole seconds,
// rounded up, at least 1.
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_SERVER_HTTP_STATUS_H_
#define TENANCY_SERVER_HTTP_STATUS_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace tenancy::internal {

struct HttpError {
  int status = 500;
  // Stable, lower_snake_case: the "code" of the error body.
  std::string_view code = "internal";
  // What the client is told.
  std::string message;
  // Seconds for a Retry-After header, when set.
  std::optional<int64_t> retry_after_seconds;
  // True for a 500: the message is generic and the status should be logged.
  bool internal = false;
  // For a 405: the methods the route allows ("GET, PUT, DELETE").
  std::string allow;
  // For a 500: the status as it was, for the log only.
  std::string log_detail;
  // Intentionally copyable.
};

// REQUIRES: !status.ok().
HttpError HttpErrorFromStatus(const absl::Status& status);

// An error that does not come from a Status (routing, framing, auth).
HttpError MakeHttpError(int http_status, std::string_view code, std::string message);

// One the client should send again after `retry_after_seconds` (a
// Retry-After header): 503 unavailable, 429 concurrency_limited.
HttpError RetryLaterError(int http_status, std::string_view code, std::string message,
                          int64_t retry_after_seconds);

// One (HTTP status, code) pair of an error response. Intentionally copyable.
struct HttpErrorCode {
  int status;
  std::string_view code;
};

// Every pair an error response of tenancyd can carry: those of
// HttpErrorFromStatus above and those the router and the transport make
// themselves (404 and 405 routing, 408, 411, 413, 414, 431, 503).
// server/README.md's error table lists exactly these; tests/reference_test.cc
// checks that, and that every status and code written together in server/
// is one of them.
std::span<const HttpErrorCode> HttpErrorCodes();

// {"error":{"code":"...","message":"..."}}
std::string ErrorBody(std::string_view code, std::string_view message);

// The reason phrase of `status` ("Request Header Fields Too Large"), for the
// responses the transport writes itself.
std::string_view ReasonPhrase(int status);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_HTTP_STATUS_H_
