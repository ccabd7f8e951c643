// The JSON bodies of the tenant routes, read into plain values before the
// library is called. Pure functions, so that tests and fuzzers
// (tests/fuzz/json_fuzzer.cc) reach them without a server or an engine.
// Every refusal is INVALID_ARGUMENT naming the field (a batch over max_ops is
// INVALID_ARGUMENT with ErrorReason::kTooLarge: 413).
//
// Thread safety: pure functions, safe for concurrent use (each uses the
// thread's JSON parser).

#ifndef TENANCY_SERVER_ROUTE_BODIES_H_
#define TENANCY_SERVER_ROUTE_BODIES_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/jobs.h"
#include "tenancy/kv_store.h"

namespace tenancy::internal {

// POST /v1/batch: {"ops": [{"op": "put"|"delete", "key", "value",
// "encoding": "base64"}, ...]}, at most `max_ops` operations.
absl::StatusOr<WriteBatch> ParseBatchBody(std::string_view body, size_t max_ops);

// POST /v1/jobs: {"type", "payload", "encoding", "idempotency_key",
// "delay_s", "priority", "max_attempts"}.
absl::StatusOr<JobSpec> ParseJobBody(std::string_view body);

// The "lease" (required) of an ack or nack body, and for a nack its optional
// "error" and "retry_after_s". Intentionally copyable.
struct LeaseBody {
  std::string lease;
  NackOptions nack;
};
absl::StatusOr<LeaseBody> ParseLeaseBody(std::string_view body, bool nack);

// POST /v1/permits: {"class" (required), "lease_s", "wait_s"}.
// Intentionally copyable.
struct TakeBody {
  std::string class_name;
  absl::Duration lease;
  absl::Duration wait;
};
absl::StatusOr<TakeBody> ParseTakeBody(std::string_view body);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ROUTE_BODIES_H_
