// Lower-case hex: the one form the library writes ids, hashes and cursors in,
// and the only one it reads back (so every value has one spelling).
//
// Thread safety: pure functions, safe for concurrent use.

#ifndef TENANCY_LIB_HEX_H_
#define TENANCY_LIB_HEX_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace tenancy::internal {

inline std::string HexEncode(std::string_view bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

// The bytes of `hex`, or nullopt unless it is lower-case hex of even length.
inline std::optional<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  return absl::HexStringToBytes(absl::string_view(hex.data(), hex.size()));
}

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_HEX_H_
