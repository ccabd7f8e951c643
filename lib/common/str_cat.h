// StrCat for the library and tenancyd. Abseil 20220623's absl::string_view is
// not std::string_view, so absl::StrCat does not take the std::string_views
// our API uses; this StrCat converts anything that converts to
// std::string_view (and forwards numbers and Abseil's own types) at the call.
//
// lib/common/ holds the few header-only helpers tenancyd uses too; nothing in
// it has behaviour a host would need.
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_LIB_COMMON_STR_CAT_H_
#define TENANCY_LIB_COMMON_STR_CAT_H_

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
decltype(auto) StrCatArg(const T& value) {
  if constexpr (std::is_arithmetic_v<T>) {
    return value;
  } else if constexpr (std::is_convertible_v<const T&, std::string_view> &&
                       !std::is_same_v<T, absl::string_view>) {
    return ToAbsl(std::string_view(value));
  } else {
    return (value);
  }
}

template <typename... Args>
std::string StrCat(const Args&... args) {
  return absl::StrCat(StrCatArg(args)...);
}

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_COMMON_STR_CAT_H_
