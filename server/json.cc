#include "json.h"

#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

#include "absl/strings/escaping.h"
#include "str_cat.h"

namespace tenancy::internal {

bool IsValidUtf8(std::string_view bytes) {
  return simdjson::validate_utf8(bytes.data(), bytes.size());
}

// Abseil decodes leniently (missing padding, stray bits); a decoding is
// accepted only if encoding its bytes gives the text back, so that every
// byte string has exactly one accepted encoding.
std::string Base64Encode(std::string_view bytes) { return absl::Base64Escape(ToAbsl(bytes)); }

absl::StatusOr<std::string> Base64Decode(std::string_view text) {
  std::string out;
  if (!absl::Base64Unescape(ToAbsl(text), &out) || absl::Base64Escape(out) != ToAbsl(text)) {
    return absl::InvalidArgumentError("not canonical base64");
  }
  return out;
}

std::string Base64UrlEncode(std::string_view bytes) {
  return absl::WebSafeBase64Escape(ToAbsl(bytes));
}

absl::StatusOr<std::string> Base64UrlDecode(std::string_view text) {
  std::string out;
  if (!absl::WebSafeBase64Unescape(ToAbsl(text), &out) ||
      absl::WebSafeBase64Escape(out) != ToAbsl(text)) {
    return absl::InvalidArgumentError("not canonical unpadded base64url");
  }
  return out;
}

// ---------------------------------------------------------------------------
// JsonWriter

void JsonWriter::BeforeValue() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!has_element_.empty()) {
    if (has_element_.back()) out_.push_back(',');
    has_element_.back() = true;
  }
}

JsonWriter& JsonWriter::BeginObject() {
  BeforeValue();
  out_.push_back('{');
  has_element_.push_back(false);
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  assert(!has_element_.empty() && !after_key_);
  has_element_.pop_back();
  out_.push_back('}');
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  BeforeValue();
  out_.push_back('[');
  has_element_.push_back(false);
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  assert(!has_element_.empty() && !after_key_);
  has_element_.pop_back();
  out_.push_back(']');
  return *this;
}

JsonWriter& JsonWriter::Key(std::string_view key) {
  assert(!has_element_.empty() && !after_key_);
  BeforeValue();
  WriteEscaped(key);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view value) {
  BeforeValue();
  WriteEscaped(value);
  return *this;
}

JsonWriter& JsonWriter::Base64(std::string_view bytes) {
  BeforeValue();
  out_.push_back('"');
  out_.append(Base64Encode(bytes));
  out_.push_back('"');
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t value) {
  BeforeValue();
  absl::StrAppend(&out_, value);
  return *this;
}

JsonWriter& JsonWriter::Uint(uint64_t value) {
  BeforeValue();
  absl::StrAppend(&out_, value);
  return *this;
}

JsonWriter& JsonWriter::Double(double value) {
  BeforeValue();
  if (!std::isfinite(value)) {
    out_.append("null");
    return *this;
  }
  // The one rule for numbers: a whole number within 2^53 prints as an
  // integer (1000, never 1e+03); any other value as the shortest text that
  // reads back as the same double. A whole number beyond 2^53 is written in
  // exponent form: shortest plain form would be an integer literal too wide
  // for 64 bits (1444444444444444500000), which JSON readers refuse.
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  const bool whole = value == std::floor(value);
  if (whole && std::fabs(value) <= kExactIntegers) {
    absl::StrAppend(&out_, static_cast<int64_t>(value));
    return *this;
  }
  char buf[32];
  const std::to_chars_result r =
      whole ? std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific)
            : std::to_chars(buf, buf + sizeof(buf), value);
  out_.append(buf, r.ptr);
  return *this;
}

JsonWriter& JsonWriter::Bool(bool value) {
  BeforeValue();
  out_.append(value ? "true" : "false");
  return *this;
}

JsonWriter& JsonWriter::Null() {
  BeforeValue();
  out_.append("null");
  return *this;
}

std::string JsonWriter::Release() {
  assert(has_element_.empty() && !after_key_);
  std::string out = std::move(out_);
  out_.clear();
  return out;
}

void JsonWriter::WriteEscaped(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out_.push_back('"');
  const bool valid = IsValidUtf8(s);
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (valid) {
        out_.push_back(static_cast<char>(c));
        ++i;
        continue;
      }
      // Copy one well-formed sequence, or write U+FFFD for one bad byte.
      size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (len > 1 && i + len <= s.size() && IsValidUtf8(s.substr(i, len))) {
        out_.append(s.substr(i, len));
        i += len;
      } else {
        out_.append("\xEF\xBF\xBD");
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        out_.append("\\\"");
        break;
      case '\\':
        out_.append("\\\\");
        break;
      case '\n':
        out_.append("\\n");
        break;
      case '\r':
        out_.append("\\r");
        break;
      case '\t':
        out_.append("\\t");
        break;
      case '\b':
        out_.append("\\b");
        break;
      case '\f':
        out_.append("\\f");
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out_.append("\\u00");
          out_.push_back(kHex[c >> 4]);
          out_.push_back(kHex[c & 15]);
        } else {
          out_.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out_.push_back('"');
}

// ---------------------------------------------------------------------------
// Parsing

simdjson::dom::parser& ThreadLocalJsonParser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

absl::StatusOr<simdjson::dom::object> ParseJsonObject(simdjson::dom::parser& parser,
                                                      std::string_view text) {
  // An empty body may have no storage at all; simdjson copies from it.
  if (text.data() == nullptr) text = std::string_view("", 0);
  simdjson::dom::element root;
  auto error = parser.parse(text.data(), text.size()).get(root);
  if (error) {
    return absl::InvalidArgumentError(StrCat("malformed JSON: ", simdjson::error_message(error)));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object)) {
    return absl::InvalidArgumentError("the body must be a JSON object");
  }
  return object;
}

JsonObjectReader::JsonObjectReader(simdjson::dom::object object, std::string context)
    : object_(object), context_(std::move(context)) {}

bool JsonObjectReader::Has(std::string_view field) const {
  for (auto [key, value] : object_) {
    if (key == field) return true;
  }
  return false;
}

absl::StatusOr<std::optional<simdjson::dom::element>> JsonObjectReader::Find(
    std::string_view field) {
  consumed_.push_back(field);
  std::optional<simdjson::dom::element> found;
  for (auto [key, value] : object_) {
    if (key != field) continue;
    if (found.has_value()) {
      return absl::InvalidArgumentError(StrCat(context_, ": field \"", field, "\" given twice"));
    }
    found = value;
  }
  return found;
}

absl::Status JsonObjectReader::WrongType(std::string_view field, std::string_view want) const {
  return absl::InvalidArgumentError(StrCat(context_, ": field \"", field, "\" must be ", want));
}

absl::StatusOr<std::optional<std::string_view>> JsonObjectReader::OptionalString(
    std::string_view field) {
  auto found = Find(field);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<std::string_view>();
  std::string_view s;
  if ((**found).get_string().get(s)) return WrongType(field, "a string");
  return std::optional<std::string_view>(s);
}

absl::StatusOr<std::optional<bool>> JsonObjectReader::OptionalBool(std::string_view field) {
  auto found = Find(field);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<bool>();
  bool b;
  if ((**found).get_bool().get(b)) return WrongType(field, "true or false");
  return std::optional<bool>(b);
}

absl::StatusOr<std::optional<double>> JsonObjectReader::OptionalNonNegativeNumber(
    std::string_view field) {
  auto found = Find(field);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<double>();
  double d;
  if ((**found).get_double().get(d) || !(d >= 0) || !std::isfinite(d)) {
    return WrongType(field, "a non-negative number");
  }
  return std::optional<double>(d);
}

absl::StatusOr<std::optional<uint64_t>> JsonObjectReader::OptionalUint(std::string_view field) {
  auto found = Find(field);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<uint64_t>();
  const simdjson::dom::element& e = **found;
  uint64_t u;
  if (e.is_uint64()) {
    if (e.get_uint64().get(u)) return WrongType(field, "a non-negative integer");
    return std::optional<uint64_t>(u);
  }
  if (e.is_int64()) {  // negative
    return WrongType(field, "a non-negative integer");
  }
  // 1e3 or 5.0: accept doubles that are exact non-negative integers.
  double d;
  if (e.get_double().get(d) || !(d >= 0) || d > 9.007199254740992e15 || d != std::floor(d)) {
    return WrongType(field, "a non-negative integer");
  }
  return std::optional<uint64_t>(static_cast<uint64_t>(d));
}

absl::StatusOr<std::optional<int64_t>> JsonObjectReader::OptionalInt(std::string_view field) {
  auto found = Find(field);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<int64_t>();
  const simdjson::dom::element& e = **found;
  int64_t i;
  if (e.is_int64()) {
    if (e.get_int64().get(i)) return WrongType(field, "an integer");
    return std::optional<int64_t>(i);
  }
  if (e.is_uint64()) return WrongType(field, "an integer within int64");
  // -1e3 or 5.0: accept doubles that are exact integers.
  double d;
  if (e.get_double().get(d) || !(d >= -9.007199254740992e15) || d > 9.007199254740992e15 ||
      d != std::floor(d)) {
    return WrongType(field, "an integer");
  }
  return std::optional<int64_t>(static_cast<int64_t>(d));
}

absl::StatusOr<std::optional<simdjson::dom::object>> JsonObjectReader::OptionalObject(
    std::string_view field) {
  auto found = Find(field);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<simdjson::dom::object>();
  simdjson::dom::object o;
  if ((**found).get_object().get(o)) return WrongType(field, "an object");
  return std::optional<simdjson::dom::object>(o);
}

absl::StatusOr<std::optional<simdjson::dom::array>> JsonObjectReader::OptionalArray(
    std::string_view field) {
  auto found = Find(field);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<simdjson::dom::array>();
  simdjson::dom::array a;
  if ((**found).get_array().get(a)) return WrongType(field, "an array");
  return std::optional<simdjson::dom::array>(a);
}

absl::Status JsonObjectReader::Finish() const {
  // Duplicates are counted here too, as the contract says: Find reports them
  // only to a caller that checks the field's status, and Finish must not
  // accept {"a":1,"a":2} after a caller that did not (found by
  // tests/fuzz/json_fuzzer). Per asked-for field, so linear in the object.
  std::vector<int> seen(consumed_.size(), 0);
  for (auto [key, value] : object_) {
    bool known = false;
    for (size_t i = 0; i < consumed_.size(); ++i) {
      if (consumed_[i] == key) {
        if (++seen[i] > 1) {
          JsonWriter quoted;
          quoted.String(key);
          return absl::InvalidArgumentError(
              StrCat(context_, ": field ", quoted.view(), " given twice"));
        }
        known = true;
        break;
      }
    }
    if (!known) {
      JsonWriter quoted;
      quoted.String(key);
      return absl::InvalidArgumentError(StrCat(context_, ": unknown field ", quoted.view()));
    }
  }
  return absl::OkStatus();
}

}  // namespace tenancy::internal
