// Byte encodings for stored records, in the manner of LevelDB's util/coding.h:
// varints and length-prefixed strings for registry records, big-endian fixed
// integers for key prefixes (so byte order equals numeric order).

#ifndef TENANCY_LIB_CODING_H_
#define TENANCY_LIB_CODING_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tenancy::internal {

inline void PutFixed64BigEndian(std::string* dst, uint64_t value) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  dst->append(buf, 8);
}

inline uint64_t DecodeFixed64BigEndian(const char* p) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

inline void PutFixed64(std::string* dst, uint64_t value) {
  char buf[8];
  std::memcpy(buf, &value, 8);  // little-endian hosts only (x86-64, arm64)
  dst->append(buf, 8);
}

inline uint64_t DecodeFixed64(const char* p) {
  uint64_t value;
  std::memcpy(&value, p, 8);
  return value;
}

inline void PutVarint64(std::string* dst, uint64_t value) {
  while (value >= 0x80) {
    dst->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  dst->push_back(static_cast<char>(value));
}

inline void PutLengthPrefixed(std::string* dst, std::string_view value) {
  PutVarint64(dst, value.size());
  dst->append(value.data(), value.size());
}

inline void PutDouble(std::string* dst, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, 8);
  PutFixed64(dst, bits);
}

// Reads from the front of `input`, advancing it. Each returns false when the
// input is truncated or malformed.
inline bool GetVarint64(std::string_view* input, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !input->empty(); shift += 7) {
    uint64_t byte = static_cast<uint8_t>(input->front());
    input->remove_prefix(1);
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

inline bool GetLengthPrefixed(std::string_view* input, std::string* value) {
  uint64_t size;
  if (!GetVarint64(input, &size) || input->size() < size) return false;
  value->assign(input->data(), size);
  input->remove_prefix(size);
  return true;
}

inline bool GetFixed64(std::string_view* input, uint64_t* value) {
  if (input->size() < 8) return false;
  *value = DecodeFixed64(input->data());
  input->remove_prefix(8);
  return true;
}

inline bool GetDouble(std::string_view* input, double* value) {
  uint64_t bits;
  if (!GetFixed64(input, &bits)) return false;
  std::memcpy(value, &bits, 8);
  return true;
}

inline bool GetByte(std::string_view* input, uint8_t* value) {
  if (input->empty()) return false;
  *value = static_cast<uint8_t>(input->front());
  input->remove_prefix(1);
  return true;
}

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_CODING_H_
