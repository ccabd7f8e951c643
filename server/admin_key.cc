#include "admin_key.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

namespace tenancy::internal {
namespace {

std::array<unsigned char, 32> Sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

}  // namespace

AdminKey::AdminKey(std::string_view key) : configured_(!key.empty()), digest_(Sha256(key)) {}

bool AdminKey::Matches(std::string_view candidate) const {
  std::array<unsigned char, 32> digest = Sha256(candidate);
  bool equal = CRYPTO_memcmp(digest.data(), digest_.data(), digest.size()) == 0;
  return configured_ && equal;
}

}  // namespace tenancy::internal
