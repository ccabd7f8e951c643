#include "request_target.h"

#include "absl/status/status.h"

namespace tenancy::internal {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {
        return absl::InvalidArgumentError("bad percent-escape");
      }
      int h = HexValue(text[i + 1]);
      int l = HexValue(text[i + 2]);
      if (h < 0 || l < 0) return absl::InvalidArgumentError("bad percent-escape");
      out.push_back(static_cast<char>((h << 4) | l));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string PercentEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

SplitTarget SplitRequestTarget(std::string_view target) {
  SplitTarget split;
  size_t q = target.find('?');
  if (q == std::string_view::npos) {
    split.path = target;
  } else {
    split.path = target.substr(0, q);
    split.query = target.substr(q + 1);
  }
  return split;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(
    std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    auto decoded_name = PercentDecode(name, /*plus_is_space=*/true);
    if (!decoded_name.ok()) return decoded_name.status();
    auto decoded_value = PercentDecode(value, /*plus_is_space=*/true);
    if (!decoded_value.ok()) return decoded_value.status();
    out.emplace_back(std::move(*decoded_name), std::move(*decoded_value));
  }
  return out;
}

}  // namespace tenancy::internal
