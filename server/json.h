// JSON for tenancyd: a small writer that always produces valid JSON (escaping,
// UTF-8 checked, base64 for bytes) and strict parsing helpers over simdjson.
//
// Keys and values of the key-value store are bytes. In JSON they travel as
// strings when they are valid UTF-8, and as base64 (RFC 4648, with padding)
// otherwise, flagged by "encoding":"base64" next to them (server/README.md,
// "Conventions").
//
// Thread safety: JsonWriter and JsonObjectReader are not thread-safe (one per
// request). The free functions are pure and safe for concurrent use.

#ifndef TENANCY_SERVER_JSON_H_
#define TENANCY_SERVER_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "simdjson.h"

namespace tenancy::internal {

// True if `bytes` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view bytes);

// Standard base64 (RFC 4648 section 4) with '=' padding.
std::string Base64Encode(std::string_view bytes);
// Decodes standard base64 with padding. INVALID_ARGUMENT on any character
// outside the alphabet, bad padding or non-zero trailing bits, so that every
// byte string has exactly one accepted encoding.
absl::StatusOr<std::string> Base64Decode(std::string_view text);

// Base64url (RFC 4648 section 5) without padding, for opaque tokens (scan
// cursors) that travel in URLs.
std::string Base64UrlEncode(std::string_view bytes);
absl::StatusOr<std::string> Base64UrlDecode(std::string_view text);

// Writes one JSON value. Strings are escaped; bytes that are not UTF-8 are
// replaced by U+FFFD, so the output is always valid JSON (callers that must
// keep bytes exact use Base64 and say so with "encoding":"base64").
//
//   JsonWriter w;
//   w.BeginObject().Key("status").String("ok").EndObject();
//   std::string body = w.Release();
//
// REQUIRES: calls form one well-nested value (Key only directly inside an
// object, exactly one value after each Key). Checked with assert().
class JsonWriter {
 public:
  JsonWriter() = default;
  // Not copyable: it owns a growing buffer.
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view value);
  // The bytes as a base64 string.
  JsonWriter& Base64(std::string_view bytes);
  JsonWriter& Int(int64_t value);
  JsonWriter& Uint(uint64_t value);
  // Non-finite values are written as null (JSON has no NaN or infinity).
  JsonWriter& Double(double value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();

  // The text so far. Valid only until the next call.
  std::string_view view() const { return out_; }
  // The text; the writer is empty afterwards.
  std::string Release();

 private:
  // Writes the separator a new value needs at this position.
  void BeforeValue();
  void WriteEscaped(std::string_view s);

  std::string out_;
  // One entry per open container: true once it holds an element.
  std::vector<bool> has_element_;
  bool after_key_ = false;
};

// Reads one JSON object field by field and refuses what it does not know:
// unknown fields, duplicated fields, wrong types. Every error is
// INVALID_ARGUMENT naming the field.
//
//   JsonObjectReader r(element, "spec");
//   auto enabled = r.OptionalBool("enabled");
//   ...
//   if (auto s = r.Finish(); !s.ok()) return s;  // unknown fields
class JsonObjectReader {
 public:
  // `context` names the object in messages ("spec", "ops[3]").
  // REQUIRES: `object` outlives the reader.
  JsonObjectReader(simdjson::dom::object object, std::string context);
  JsonObjectReader(const JsonObjectReader&) = delete;
  JsonObjectReader& operator=(const JsonObjectReader&) = delete;

  bool Has(std::string_view field) const;

  absl::StatusOr<std::optional<std::string_view>> OptionalString(std::string_view field);
  absl::StatusOr<std::optional<bool>> OptionalBool(std::string_view field);
  // A non-negative number; fractions allowed.
  absl::StatusOr<std::optional<double>> OptionalNonNegativeNumber(std::string_view field);
  // A non-negative integer (a JSON number without fraction or exponent).
  absl::StatusOr<std::optional<uint64_t>> OptionalUint(std::string_view field);
  // An integer within int64 (a JSON number without fraction, or a double
  // that is an exact integer within +-2^53).
  absl::StatusOr<std::optional<int64_t>> OptionalInt(std::string_view field);
  absl::StatusOr<std::optional<simdjson::dom::object>> OptionalObject(std::string_view field);
  absl::StatusOr<std::optional<simdjson::dom::array>> OptionalArray(std::string_view field);

  // OK if every field of the object was asked for and none appears twice.
  absl::Status Finish() const;

  const std::string& context() const { return context_; }

 private:
  absl::StatusOr<std::optional<simdjson::dom::element>> Find(std::string_view field);
  absl::Status WrongType(std::string_view field, std::string_view want) const;

  simdjson::dom::object object_;
  std::string context_;
  std::vector<std::string_view> consumed_;
};

// Parses `text` with `parser` and returns its top-level object.
// INVALID_ARGUMENT if the text is not JSON, not UTF-8, or not an object.
// The result is valid until the parser's next parse.
absl::StatusOr<simdjson::dom::object> ParseJsonObject(simdjson::dom::parser& parser,
                                                      std::string_view text);

// A per-thread parser, so that request handlers reuse its buffers.
simdjson::dom::parser& ThreadLocalJsonParser();

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_JSON_H_
