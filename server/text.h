// String building for tenancyd. Debian's Abseil 20220623 has its own
// absl::string_view (not std::string_view), so absl::StrCat does not take the
// std::string_views our API uses; Cat() converts them at the call.
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_SERVER_TEXT_H_
#define TENANCY_SERVER_TEXT_H_

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tenancy::internal {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

template <typename T>
decltype(auto) CatArg(const T& value) {
  if constexpr (std::is_arithmetic_v<T>) {
    return value;
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    return ToAbsl(std::string_view(value));
  } else {
    return (value);
  }
}

// absl::StrCat over strings, string_views (std and absl) and numbers.
template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(CatArg(args)...);
}

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_TEXT_H_
