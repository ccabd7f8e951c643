// API key secrets: generation (OpenSSL's RAND_bytes), hashing (SHA-256) and
// the public parts shown to operators.
//
// A generated secret is "tk_" + key_id + "_" + 32 characters of base64url
// (24 random bytes): 52 bytes in all, one SHA-256 block. key_id is 16 hex
// characters (8 random bytes); the public prefix is "tk_" + key_id, so logs
// can tell keys apart without the secret.

#ifndef TENANCY_LIB_API_KEY_H_
#define TENANCY_LIB_API_KEY_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tenancy::internal {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);

// Lower-case hex of `digest`; and back (nullopt unless 64 hex characters).
std::string DigestToHex(const Sha256Digest& digest);
std::optional<Sha256Digest> DigestFromHex(std::string_view hex);

struct GeneratedKey {
  std::string key_id;
  std::string prefix;
  std::string secret;
};
// INTERNAL if the random generator fails.
absl::StatusOr<GeneratedKey> GenerateApiKey();

// Constant-time equality of two digests.
bool DigestEquals(const Sha256Digest& a, const Sha256Digest& b);

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_API_KEY_H_
