// Request targets ("/v1/kv/a%2Fb?limit=10") split and percent-decoded by
// tenancyd itself.
//
// cpp-httplib 0.11.4 decodes Request::path before routing, so "%2F" becomes
// "/" and a key could no longer be told from a path. tenancyd routes on the
// raw Request::target instead and decodes each piece once, strictly:
// "%" must be followed by two hex digits, and '+' stays '+' in paths (it means
// a space only in query strings, as in HTML forms and curl --data-urlencode).
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_SERVER_REQUEST_TARGET_H_
#define TENANCY_SERVER_REQUEST_TARGET_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tenancy::internal {

// Decodes %XX escapes. When `plus_is_space`, '+' decodes to ' '.
// INVALID_ARGUMENT for a '%' not followed by two hex digits.
absl::StatusOr<std::string> PercentDecode(std::string_view text, bool plus_is_space);

// Encodes every byte outside the RFC 3986 unreserved set as %XX, so that
// any byte string becomes one path segment or query value.
std::string PercentEncode(std::string_view bytes);

// A request target split at the first '?'.
struct SplitTarget {
  std::string_view path;   // raw, still percent-encoded
  std::string_view query;  // raw, without the '?'; empty if none
  // Intentionally copyable.
};
SplitTarget SplitRequestTarget(std::string_view target);

// The name=value pairs of a query string, in order, decoded ('+' is a space).
// A pair without '=' has an empty value. INVALID_ARGUMENT for a bad escape.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view query);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_REQUEST_TARGET_H_
