// Private helpers for propagating absl::Status. Abseil 20220623 (Debian
// bookworm) has no ABSL_RETURN_IF_ERROR, so we define ours once, here.

#ifndef TENANCY_LIB_STATUS_MACROS_H_
#define TENANCY_LIB_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TENANCY_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status tenancy_status_ = (expr);           \
    if (!tenancy_status_.ok()) return tenancy_status_; \
  } while (0)

#define TENANCY_STATUS_CONCAT_INNER_(a, b) a##b
#define TENANCY_STATUS_CONCAT_(a, b) TENANCY_STATUS_CONCAT_INNER_(a, b)

// TENANCY_ASSIGN_OR_RETURN(auto x, Foo()); declares or assigns `lhs` from a
// StatusOr, returning its status on error.
#define TENANCY_ASSIGN_OR_RETURN(lhs, expr) \
  TENANCY_ASSIGN_OR_RETURN_IMPL_(TENANCY_STATUS_CONCAT_(tenancy_statusor_, __LINE__), lhs, expr)

#define TENANCY_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = *std::move(statusor)

#endif  // TENANCY_LIB_STATUS_MACROS_H_
