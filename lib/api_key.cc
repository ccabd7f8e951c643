// The low-level SHA256_Init/Update/Final functions are deprecated in OpenSSL 3
// but are the only way to hash without a per-call algorithm fetch: OpenSSL
// 3.0's one-shot SHA256() goes through EVP_Q_digest, which fetches the
// algorithm and allocates a context every call (about 370 ns for a 63-byte
// key here, against about 100 ns). Key resolution must stay under 200 ns.
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "api_key.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "hex.h"
#include "secure_random.h"

namespace tenancy::internal {

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest digest;
  SHA256_CTX context;
  SHA256_Init(&context);
  SHA256_Update(&context, data.data(), data.size());
  SHA256_Final(digest.data(), &context);
  return digest;
}

std::string DigestToHex(const Sha256Digest& digest) {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::optional<Sha256Digest> DigestFromHex(std::string_view hex) {
  std::optional<std::string> bytes = HexDecode(hex);
  if (!bytes.has_value() || bytes->size() != 32) return std::nullopt;
  Sha256Digest digest;
  std::memcpy(digest.data(), bytes->data(), digest.size());
  return digest;
}

absl::StatusOr<GeneratedKey> GenerateApiKey() {
  uint8_t id_bytes[8];
  // 192 random bits: far past guessing, and it keeps the whole key at 52
  // bytes, under the 55 that SHA-256 hashes in one compression block (a
  // 256-bit secret would make every resolution hash two).
  uint8_t secret_bytes[24];
  if (!SecureRandomBytes(id_bytes, sizeof(id_bytes)).ok() ||
      !SecureRandomBytes(secret_bytes, sizeof(secret_bytes)).ok()) {
    return absl::InternalError("api key: random generator failed");
  }
  GeneratedKey key;
  key.key_id =
      HexEncode(std::string_view(reinterpret_cast<const char*>(id_bytes), sizeof(id_bytes)));
  key.prefix = "tk_" + key.key_id;
  key.secret = key.prefix + "_" +
               absl::WebSafeBase64Escape(absl::string_view(
                   reinterpret_cast<const char*>(secret_bytes), sizeof(secret_bytes)));
  OPENSSL_cleanse(secret_bytes, sizeof(secret_bytes));
  return key;
}

bool DigestEquals(const Sha256Digest& a, const Sha256Digest& b) {
  // Constant time without CRYPTO_memcmp's byte-at-a-time loop: this runs on
  // every key resolution, as the registry index's equality.
  uint64_t diff = 0;
  for (size_t i = 0; i < a.size(); i += sizeof(uint64_t)) {
    uint64_t x, y;
    std::memcpy(&x, a.data() + i, sizeof(x));
    std::memcpy(&y, b.data() + i, sizeof(y));
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace tenancy::internal
