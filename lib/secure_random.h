// Randomness for the library: OpenSSL's RAND_bytes, for every random value.
//
// Why not Abseil's generators: absl::BitGen and InsecureBitGen seed from a
// process-wide pool (absl::random_internal::RandenPool) guarded by a spinlock
// inside Debian's uninstrumented libabsl, so ThreadSanitizer builds report
// the pool's own memcpy from two threads as a race. OpenSSL 3 keeps a DRBG per
// thread, behind pthread locks that TSan does see, and its output is
// unguessable, which lease tokens and API keys need anyway. A draw of 8 bytes
// costs about 0.1-0.2 us here, which only the claim and nack paths pay.
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_LIB_SECURE_RANDOM_H_
#define TENANCY_LIB_SECURE_RANDOM_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tenancy::internal {

// Fills out[0, size) with cryptographically strong random bytes. INTERNAL if
// OpenSSL's generator fails (it then has no entropy; nothing is written that
// could be mistaken for random).
absl::Status SecureRandomBytes(void* out, size_t size);

// A uniformly random 64-bit value from SecureRandomBytes; never 0 when
// `nonzero` (0 often means "none" in the caller's encoding).
absl::StatusOr<uint64_t> SecureRandomU64(bool nonzero = false);

// A uniform double in [0, 1), for jitter. Falls back to 0.5 (the mean) if the
// generator fails: jitter only spreads retries out, it guards nothing.
double RandomUnitInterval();

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_SECURE_RANDOM_H_
