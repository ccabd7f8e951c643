// key_encoding_fuzzer: the stored key layout (lib/key_encoding.h), the
// integer and string coding under it (lib/coding.h), and scan cursors, from
// the library's (KvStore::ScanCursorAfter) to the server's base64url ones.
//
// Invariants checked:
//   - EncodeKey, EncodedKey and KeyHeader agree, and the tenant number reads
//     back from the prefix;
//   - the encoding keeps the order of user keys within a tenant and
//     namespace, keeps tenants apart (every key of a tenant lies in
//     [TenantRangeStart, TenantRangeEnd), and a lower number sorts first);
//   - PrefixSuccessor is above every string with the prefix, and absent only
//     for an empty or all-0xff prefix;
//   - varints and length-prefixed strings round-trip; decoding arbitrary
//     bytes gives a value whose encoding reads back the same;
//   - a cursor names its direction and key, survives base64url (URL-safe,
//     no padding, unchanged by percent-encoding) and the server's decoding
//     accepts exactly the encoder's output.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "coding.h"
#include "fuzz_check.h"
#include "json.h"
#include "key_encoding.h"
#include "request_target.h"
#include "tenancy/kv_store.h"

namespace tenancy::internal {
namespace {

int Sign(int c) { return (c > 0) - (c < 0); }

void CheckKeys(FuzzedDataProvider& in) {
  const uint64_t tenant = in.ConsumeIntegralInRange<uint64_t>(
      0, std::numeric_limits<uint64_t>::max() - 1);  // numbers never reach the max
  const uint64_t other = in.ConsumeIntegral<uint64_t>();
  const auto ns = static_cast<Namespace>(in.ConsumeIntegralInRange<uint8_t>(1, 3));
  const std::string a = in.ConsumeRandomLengthString(200);
  const std::string b = in.ConsumeRandomLengthString(200);

  const std::string ka = EncodeKey(tenant, ns, a);
  const std::string kb = EncodeKey(tenant, ns, b);
  FUZZ_CHECK(ka.size() == kKeyHeaderSize + a.size());
  FUZZ_CHECK(ka == KeyHeader(tenant, ns) + a);
  EncodedKey inline_a(tenant, ns, a);
  FUZZ_CHECK(inline_a.view() == ka);
  FUZZ_CHECK(DecodeFixed64BigEndian(ka.data()) == tenant);
  FUZZ_CHECK(static_cast<uint8_t>(ka[kTenantPrefixSize]) == static_cast<uint8_t>(ns));

  FUZZ_CHECK(Sign(a.compare(b)) == Sign(ka.compare(kb)));
  FUZZ_CHECK(TenantRangeStart(tenant) <= ka && ka < TenantRangeEnd(tenant));
  if (other != tenant) {
    const std::string ko = EncodeKey(other, ns, b);
    FUZZ_CHECK((other < tenant) == (ko < ka));
  }

  const std::optional<std::string> next = PrefixSuccessor(a);
  if (next.has_value()) {
    FUZZ_CHECK(a + b < *next);
    FUZZ_CHECK(next->substr(0, a.size()) != a);
  } else {
    for (char c : a) FUZZ_CHECK(static_cast<uint8_t>(c) == 0xff);
  }
}

void CheckCoding(FuzzedDataProvider& in) {
  const uint64_t value = in.ConsumeIntegral<uint64_t>();
  const std::string text = in.ConsumeRandomLengthString(300);
  std::string encoded;
  PutVarint64(&encoded, value);
  PutLengthPrefixed(&encoded, text);
  std::string_view view = encoded;
  uint64_t decoded = 0;
  std::string decoded_text;
  FUZZ_CHECK(GetVarint64(&view, &decoded) && decoded == value);
  FUZZ_CHECK(GetLengthPrefixed(&view, &decoded_text) && decoded_text == text);
  FUZZ_CHECK(view.empty());

  // Arbitrary bytes: what decodes must encode to something that reads back
  // the same (not necessarily the same bytes: 0x80 0x00 is a long zero).
  std::string_view raw = text;
  const size_t before = raw.size();
  if (GetVarint64(&raw, &decoded)) {
    std::string canonical;
    PutVarint64(&canonical, decoded);
    FUZZ_CHECK(canonical.size() <= before - raw.size());
    std::string_view again = canonical;
    uint64_t again_value = 0;
    FUZZ_CHECK(GetVarint64(&again, &again_value) && again_value == decoded && again.empty());
  }
}

bool IsUrlSafe(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

void CheckCursor(FuzzedDataProvider& in) {
  ScanOptions options;
  options.reverse = in.ConsumeBool();
  const std::string last = in.ConsumeRandomLengthString(300);
  const std::string cursor = KvStore::ScanCursorAfter(options, last);
  FUZZ_CHECK(!cursor.empty());
  FUZZ_CHECK(cursor[0] == (options.reverse ? 'r' : 'f'));
  FUZZ_CHECK(cursor.substr(1) == last);

  const std::string wire = Base64UrlEncode(cursor);
  FUZZ_CHECK(IsUrlSafe(wire));
  FUZZ_CHECK(PercentEncode(wire) == wire);
  auto back = Base64UrlDecode(wire);
  FUZZ_CHECK(back.ok() && *back == cursor);

  // A cursor a client made up, as the scan route decodes it.
  const std::string made_up = in.ConsumeRemainingBytesAsString();
  if (auto raw = Base64UrlDecode(made_up); raw.ok()) {
    FUZZ_CHECK(IsUrlSafe(made_up));
    FUZZ_CHECK(Base64UrlEncode(*raw) == made_up);
  }
}

}  // namespace
}  // namespace tenancy::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider in(bytes, size);
  tenancy::internal::CheckKeys(in);
  tenancy::internal::CheckCoding(in);
  tenancy::internal::CheckCursor(in);
  return 0;
}
