#include "admin_key.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"

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

absl::StatusOr<std::string> ReadAdminKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError("cannot read --admin-key-file " + path + ": " +
                                      std::strerror(errno));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string key = buffer.str();
  while (!key.empty() &&
         (key.back() == '\n' || key.back() == '\r' || key.back() == ' ' || key.back() == '\t')) {
    key.pop_back();
  }
  if (key.empty()) return absl::InvalidArgumentError("--admin-key-file " + path + " is empty");
  return key;
}

}  // namespace tenancy::internal
