// The stored key layout:
//
//   [tenant number, 8 bytes big-endian][namespace, 1 byte][user key]
//
// Keys are prefixed with the tenant's number, never its id text, so no id can
// be a prefix of another tenant's keys. Every tenant's data, across all its
// namespaces, is the one contiguous range [number, number + 1).

#ifndef TENANCY_LIB_KEY_ENCODING_H_
#define TENANCY_LIB_KEY_ENCODING_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "coding.h"

namespace tenancy::internal {

// A tenant's subsystems. Values are stored on disk: never renumber.
enum class Namespace : uint8_t {
  kKv = 0x01,        // KvStore entries
  kJobs = 0x02,      // job records
  kJobIndex = 0x03,  // job ready/lease index
};

inline constexpr size_t kTenantPrefixSize = 8;
inline constexpr size_t kKeyHeaderSize = kTenantPrefixSize + 1;

// [number][ns]
inline std::string KeyHeader(uint64_t tenant, Namespace ns) {
  std::string out;
  out.reserve(kKeyHeaderSize);
  PutFixed64BigEndian(&out, tenant);
  out.push_back(static_cast<char>(ns));
  return out;
}

// [number][ns][user_key]
inline std::string EncodeKey(uint64_t tenant, Namespace ns, std::string_view user_key) {
  std::string out;
  out.reserve(kKeyHeaderSize + user_key.size());
  PutFixed64BigEndian(&out, tenant);
  out.push_back(static_cast<char>(ns));
  out.append(user_key.data(), user_key.size());
  return out;
}

// [number][ns][user_key] without a heap allocation for keys of up to
// kInlineBytes: the point paths (Get, Put, Delete) encode one key per call,
// and an allocation per call is a measurable share of a memtable hit.
// Not copyable: view() points into the object itself.
class EncodedKey {
 public:
  static constexpr size_t kInlineBytes = 64;

  EncodedKey(uint64_t tenant, Namespace ns, std::string_view user_key)
      : size_(kKeyHeaderSize + user_key.size()) {
    if (size_ > kInlineBytes) {
      heap_.reset(new char[size_]);
      data_ = heap_.get();
    }
    for (int i = 7; i >= 0; --i) {
      data_[i] = static_cast<char>(tenant & 0xff);
      tenant >>= 8;
    }
    data_[kTenantPrefixSize] = static_cast<char>(ns);
    if (!user_key.empty()) {
      std::memcpy(data_ + kKeyHeaderSize, user_key.data(), user_key.size());
    }
  }
  EncodedKey(const EncodedKey&) = delete;
  EncodedKey& operator=(const EncodedKey&) = delete;

  std::string_view view() const { return std::string_view(data_, size_); }

 private:
  size_t size_;
  char inline_[kInlineBytes];
  std::unique_ptr<char[]> heap_;
  char* data_ = inline_;
};

// The first key of the tenant's range: [number].
inline std::string TenantRangeStart(uint64_t tenant) {
  std::string out;
  PutFixed64BigEndian(&out, tenant);
  return out;
}

// One past the tenant's range: [number + 1]. Numbers never reach UINT64_MAX.
inline std::string TenantRangeEnd(uint64_t tenant) { return TenantRangeStart(tenant + 1); }

// The smallest string greater than every string that starts with `prefix`,
// or nullopt when there is none (empty, or all 0xff).
inline std::optional<std::string> PrefixSuccessor(std::string_view prefix) {
  std::string out(prefix);
  while (!out.empty()) {
    uint8_t last = static_cast<uint8_t>(out.back());
    if (last != 0xff) {
      out.back() = static_cast<char>(last + 1);
      return out;
    }
    out.pop_back();
  }
  return std::nullopt;
}

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_KEY_ENCODING_H_
