#include "secure_random.h"

#include <openssl/rand.h>

#include <climits>

namespace tenancy::internal {

absl::Status SecureRandomBytes(void* out, size_t size) {
  if (size > static_cast<size_t>(INT_MAX) ||
      RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(size)) != 1) {
    return absl::InternalError("random generator failed (OpenSSL RAND_bytes)");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SecureRandomU64(bool nonzero) {
  uint64_t value = 0;
  do {
    if (absl::Status s = SecureRandomBytes(&value, sizeof(value)); !s.ok()) return s;
  } while (nonzero && value == 0);
  return value;
}

double RandomUnitInterval() {
  absl::StatusOr<uint64_t> bits = SecureRandomU64();
  if (!bits.ok()) return 0.5;
  // The top 53 bits: every double in [0, 1) with that spacing, equally likely.
  return static_cast<double>(*bits >> 11) * 0x1.0p-53;
}

}  // namespace tenancy::internal
