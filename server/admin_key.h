// The admin key, kept as its SHA-256 and compared in constant time.
//
// Comparing digests (not the keys) makes the comparison's time independent of
// where a guess first differs and of the key's length; CRYPTO_memcmp makes
// the digest comparison itself constant-time.
//
// Thread safety: immutable after construction; safe for concurrent use.

#ifndef TENANCY_SERVER_ADMIN_KEY_H_
#define TENANCY_SERVER_ADMIN_KEY_H_

#include <array>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tenancy::internal {

class AdminKey {
 public:
  // An empty `key` means "no admin key": Matches() is always false.
  explicit AdminKey(std::string_view key);
  // Intentionally copyable.
  AdminKey(const AdminKey&) = default;
  AdminKey& operator=(const AdminKey&) = default;

  bool configured() const { return configured_; }
  bool Matches(std::string_view candidate) const;

 private:
  bool configured_ = false;
  std::array<unsigned char, 32> digest_{};
};

// The admin key held in the file at `path` (tenancyd's and tenancyctl's
// --admin-key-file): its bytes without trailing whitespace and newlines.
// INVALID_ARGUMENT when the file cannot be read or holds nothing else; the
// message names the file.
absl::StatusOr<std::string> ReadAdminKeyFile(const std::string& path);

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ADMIN_KEY_H_
