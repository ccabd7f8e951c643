#include "http_status.h"

#include <chrono>

#include "json.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

int64_t RetryAfterSeconds(const absl::Status& status) {
  std::optional<std::chrono::nanoseconds> wait = GetRetryAfter(status);
  int64_t ns = wait.has_value() ? wait->count() : 0;
  // Whole seconds, rounded up, at least 1: "Retry-After: 0" would invite a
  // client to hammer us at once.
  int64_t seconds = (ns + 999'999'999) / 1'000'000'000;
  return seconds < 1 ? 1 : seconds;
}

}  // namespace

HttpError MakeHttpError(int http_status, std::string_view code, std::string message) {
  HttpError e;
  e.status = http_status;
  e.code = code;
  e.message = std::move(message);
  return e;
}

HttpError RetryLaterError(int http_status, std::string_view code, std::string message,
                          int64_t retry_after_seconds) {
  HttpError e = MakeHttpError(http_status, code, std::move(message));
  e.retry_after_seconds = retry_after_seconds;
  return e;
}

HttpError HttpErrorFromStatus(const absl::Status& status) {
  const ErrorReason reason = GetErrorReason(status);
  std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      if (reason == ErrorReason::kTooLarge) {
        return MakeHttpError(413, "too_large", std::move(message));
      }
      return MakeHttpError(400, "invalid_argument", std::move(message));
    case absl::StatusCode::kUnauthenticated:
      return MakeHttpError(401, "unauthenticated", std::move(message));
    case absl::StatusCode::kPermissionDenied:
      if (reason == ErrorReason::kTenantDisabled) {
        return MakeHttpError(403, "tenant_disabled", std::move(message));
      }
      if (reason == ErrorReason::kTenantReadOnly) {
        return MakeHttpError(403, "tenant_read_only", std::move(message));
      }
      return MakeHttpError(403, "forbidden", std::move(message));
    case absl::StatusCode::kNotFound:
      return MakeHttpError(404, "not_found", std::move(message));
    case absl::StatusCode::kAlreadyExists:
      return MakeHttpError(409, "already_exists", std::move(message));
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return MakeHttpError(409, "conflict", std::move(message));
    case absl::StatusCode::kResourceExhausted: {
      if (IsQuotaExceeded(status)) {
        return MakeHttpError(507, "quota_exceeded", std::move(message));
      }
      const int64_t retry_after = RetryAfterSeconds(status);
      if (reason == ErrorReason::kRateLimited) {
        return RetryLaterError(429, "rate_limited", std::move(message), retry_after);
      }
      if (reason == ErrorReason::kConcurrencyLimited) {
        return RetryLaterError(429, "concurrency_limited", std::move(message), retry_after);
      }
      return RetryLaterError(503, "unavailable", std::move(message), retry_after);
    }
    case absl::StatusCode::kDeadlineExceeded:
      if (reason == ErrorReason::kConcurrencyLimited) {
        return RetryLaterError(429, "concurrency_limited", std::move(message),
                               RetryAfterSeconds(status));
      }
      return MakeHttpError(504, "deadline_exceeded", std::move(message));
    case absl::StatusCode::kUnavailable: {
      // The engine's message names the database's files; the tenant learns
      // the state, the operator reads the cause in the log and /health.
      if (reason == ErrorReason::kStorageUnavailable) {
        message =
            "storage unavailable: the server refuses writes after a storage error "
            "(see GET /health); nothing was written; retry later";
      }
      return RetryLaterError(503, "unavailable", std::move(message), RetryAfterSeconds(status));
    }
    case absl::StatusCode::kUnimplemented:
      return MakeHttpError(501, "not_implemented", std::move(message));
    default: {
      HttpError e = MakeHttpError(500, "internal", "internal error");
      e.internal = true;
      e.log_detail = status.ToString();
      return e;
    }
  }
}

std::span<const HttpErrorCode> HttpErrorCodes() {
  // Designated initializers keep this list out of the test's search for
  // status-and-code pairs in server/, which must find each pair where it is
  // used, not here.
  static constexpr HttpErrorCode kCodes[] = {
      {.status = 400, .code = "invalid_argument"},
      {.status = 401, .code = "unauthenticated"},
      {.status = 403, .code = "forbidden"},
      {.status = 403, .code = "tenant_disabled"},
      {.status = 403, .code = "tenant_read_only"},
      {.status = 404, .code = "not_found"},
      {.status = 405, .code = "method_not_allowed"},
      {.status = 408, .code = "request_timeout"},
      {.status = 409, .code = "already_exists"},
      {.status = 409, .code = "conflict"},
      {.status = 411, .code = "length_required"},
      {.status = 413, .code = "too_large"},
      {.status = 414, .code = "too_large"},
      {.status = 429, .code = "rate_limited"},
      {.status = 429, .code = "concurrency_limited"},
      {.status = 431, .code = "too_large"},
      {.status = 500, .code = "internal"},
      {.status = 501, .code = "not_implemented"},
      {.status = 503, .code = "unavailable"},
      {.status = 504, .code = "deadline_exceeded"},
      {.status = 507, .code = "quota_exceeded"},
  };
  return kCodes;
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  JsonWriter w;
  w.BeginObject()
      .Key("error")
      .BeginObject()
      .Key("code")
      .String(code)
      .Key("message")
      .String(message)
      .EndObject()
      .EndObject();
  return w.Release();
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 507:
      return "Insufficient Storage";
    default:
      return "Error";
  }
}

}  // namespace tenancy::internal
