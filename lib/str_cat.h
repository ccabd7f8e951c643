// String helpers. Abseil 20220623's absl::string_view is not std::string_view,
// so absl::StrCat does not take the std::string_view our API uses; this StrCat
// converts such arguments and forwards everything else unchanged.

#ifndef TENANCY_LIB_STR_CAT_H_
#define TENANCY_LIB_STR_CAT_H_

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
  if constexpr (std::is_same_v<T, std::string_view>) {
    return ToAbsl(value);
  } else {
    return (value);
  }
}

template <typename... Args>
std::string StrCat(const Args&... args) {
  return absl::StrCat(StrCatArg(args)...);
}

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_STR_CAT_H_
