// json_fuzzer: the JSON readers of the library and of tenancyd. The first
// byte of the input picks the reader, the rest is the text:
//
//   0  ParseTenantSpecJson, with and without the id of the URL
//   1  the batch body (ParseBatchBody)
//   2  the job body (ParseJobBody)
//   3  the ack and nack bodies (ParseLeaseBody)
//   4  the permit body (ParseTakeBody)
//   5  ParseJsonObject + JsonObjectReader over any object, and JsonWriter
//   6  Base64 and Base64url, both ways
//
// Invariants checked:
//   - an accepted spec, written back as JSON (JsonWriter), reads back equal;
//     with the URL's id, an accepted body names that tenant;
//   - an accepted batch is at most max_ops operations; an accepted body
//     written back reads back the same (batch: as base64; job; lease);
//   - any object written back with JsonWriter parses again to the same
//     values, and writing that again gives the same text (one spelling);
//     the reader refuses every field twice and accepts the object once all
//     its fields were asked for;
//   - base64 decoding accepts exactly the encoder's output (one encoding per
//     byte string) and the encoder's output always decodes.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "json.h"
#include "route_bodies.h"
#include "simdjson.h"
#include "spec_writer.h"
#include "tenancy/tenant_spec_json.h"

namespace tenancy::internal {
namespace {

constexpr size_t kMaxOps = 8;

void FuzzSpec(std::string_view text) {
  auto spec = ParseTenantSpecJson(text);
  if (spec.ok()) {
    JsonWriter w;
    w.BeginObject();
    WriteSpecFields(w, *spec);
    w.EndObject();
    const std::string again_text = w.Release();
    auto again = ParseTenantSpecJson(again_text);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(*again == *spec);
  }
  auto addressed = ParseTenantSpecJson(text, "acme");
  if (addressed.ok()) FUZZ_CHECK(addressed->id == "acme");
}

void FuzzBatch(std::string_view text) {
  auto batch = ParseBatchBody(text, kMaxOps);
  if (!batch.ok()) return;
  FUZZ_CHECK(batch->size() <= kMaxOps);
  JsonWriter w;
  w.BeginObject().Key("ops").BeginArray();
  for (const WriteBatch::Op& op : batch->ops()) {
    w.BeginObject();
    w.Key("op").String(op.type == WriteBatch::OpType::kPut ? "put" : "delete");
    w.Key("key").Base64(op.key);
    if (op.type == WriteBatch::OpType::kPut) w.Key("value").Base64(op.value);
    w.Key("encoding").String("base64");
    w.EndObject();
  }
  w.EndArray().EndObject();
  auto again = ParseBatchBody(w.Release(), kMaxOps);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->size() == batch->size());
  for (size_t i = 0; i < batch->size(); ++i) {
    const WriteBatch::Op& a = batch->ops()[i];
    const WriteBatch::Op& b = again->ops()[i];
    FUZZ_CHECK(a.type == b.type && a.key == b.key && a.value == b.value);
  }
}

void FuzzJob(std::string_view text) {
  auto spec = ParseJobBody(text);
  if (!spec.ok()) return;
  JsonWriter w;
  w.BeginObject();
  w.Key("type").String(spec->type);
  w.Key("payload").Base64(spec->payload).Key("encoding").String("base64");
  w.Key("idempotency_key").String(spec->idempotency_key);
  w.Key("priority").Int(spec->priority);
  w.Key("max_attempts").Uint(spec->max_attempts);
  w.EndObject();
  auto again = ParseJobBody(w.Release());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->type == spec->type && again->payload == spec->payload &&
             again->idempotency_key == spec->idempotency_key && again->priority == spec->priority &&
             again->max_attempts == spec->max_attempts);
  FUZZ_CHECK(spec->delay >= absl::ZeroDuration());
}

void FuzzLease(std::string_view text) {
  for (bool nack : {false, true}) {
    auto body = ParseLeaseBody(text, nack);
    if (!body.ok()) continue;
    FUZZ_CHECK(!body->lease.empty());
    JsonWriter w;
    w.BeginObject().Key("lease").String(body->lease);
    if (nack) w.Key("error").String(body->nack.error);
    w.EndObject();
    auto again = ParseLeaseBody(w.Release(), nack);
    FUZZ_CHECK(again.ok() && again->lease == body->lease && again->nack.error == body->nack.error);
  }
}

void FuzzTake(std::string_view text) {
  auto body = ParseTakeBody(text);
  if (!body.ok()) return;
  FUZZ_CHECK(body->wait >= absl::ZeroDuration() && body->wait <= absl::Seconds(20));
  FUZZ_CHECK(body->lease >= absl::ZeroDuration());
}

// Writes `e` with JsonWriter (exact: simdjson's strings are UTF-8, and its
// doubles print as the shortest text that reads back the same).
void WriteElement(JsonWriter& w, simdjson::dom::element e);

void WriteObject(JsonWriter& w, simdjson::dom::object object) {
  w.BeginObject();
  for (simdjson::dom::key_value_pair member : object) {
    w.Key(member.key);
    WriteElement(w, member.value);
  }
  w.EndObject();
}

void WriteElement(JsonWriter& w, simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: {
      // Held here: a range-for over a temporary simdjson_result's value
      // reads it after its end of life.
      const simdjson::dom::array array = e.get_array().value_unsafe();
      w.BeginArray();
      for (simdjson::dom::element child : array) WriteElement(w, child);
      w.EndArray();
      break;
    }
    case simdjson::dom::element_type::OBJECT:
      WriteObject(w, e.get_object().value_unsafe());
      break;
    case simdjson::dom::element_type::INT64:
      w.Int(e.get_int64().value_unsafe());
      break;
    case simdjson::dom::element_type::UINT64:
      w.Uint(e.get_uint64().value_unsafe());
      break;
    case simdjson::dom::element_type::DOUBLE:
      w.Double(e.get_double().value_unsafe());
      break;
    case simdjson::dom::element_type::STRING:
      w.String(e.get_string().value_unsafe());
      break;
    case simdjson::dom::element_type::BOOL:
      w.Bool(e.get_bool().value_unsafe());
      break;
    case simdjson::dom::element_type::NULL_VALUE:
      w.Null();
      break;
  }
}

void FuzzObject(std::string_view text) {
  simdjson::dom::parser parser;
  auto object = ParseJsonObject(parser, text);
  if (!object.ok()) return;

  JsonWriter w;
  WriteObject(w, *object);
  const std::string written = w.Release();
  simdjson::dom::parser again_parser;
  auto again = ParseJsonObject(again_parser, written);
  FUZZ_CHECK(again.ok());
  JsonWriter w2;
  WriteObject(w2, *again);
  FUZZ_CHECK(w2.Release() == written);

  // Ask for every field once as each type: one read per field succeeds
  // (duplicates aside), then Finish holds; a second ask of a field is fine,
  // an unknown field never is.
  JsonObjectReader reader(*object, "fuzz");
  bool duplicated = false;
  std::vector<std::string_view> seen;
  for (simdjson::dom::key_value_pair member : *object) {
    for (std::string_view s : seen) duplicated = duplicated || s == member.key;
    seen.push_back(member.key);
  }
  for (std::string_view field : seen) {
    FUZZ_CHECK(reader.Has(field));
    (void)reader.OptionalString(field);
    (void)reader.OptionalBool(field);
    (void)reader.OptionalNonNegativeNumber(field);
    (void)reader.OptionalUint(field);
    (void)reader.OptionalInt(field);
    (void)reader.OptionalObject(field);
    (void)reader.OptionalArray(field);
  }
  FUZZ_CHECK(reader.Finish().ok() == !duplicated);
}

void FuzzBase64(std::string_view text) {
  if (auto decoded = Base64Decode(text); decoded.ok()) {
    FUZZ_CHECK(Base64Encode(*decoded) == text);
  }
  auto round = Base64Decode(Base64Encode(text));
  FUZZ_CHECK(round.ok() && *round == text);
  if (auto decoded = Base64UrlDecode(text); decoded.ok()) {
    FUZZ_CHECK(Base64UrlEncode(*decoded) == text);
  }
  auto url_round = Base64UrlDecode(Base64UrlEncode(text));
  FUZZ_CHECK(url_round.ok() && *url_round == text);
}

void Run(uint8_t selector, std::string_view text) {
  switch (selector % 7) {
    case 0:
      FuzzSpec(text);
      break;
    case 1:
      FuzzBatch(text);
      break;
    case 2:
      FuzzJob(text);
      break;
    case 3:
      FuzzLease(text);
      break;
    case 4:
      FuzzTake(text);
      break;
    case 5:
      FuzzObject(text);
      break;
    case 6:
      FuzzBase64(text);
      break;
  }
}

}  // namespace
}  // namespace tenancy::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size == 0) return 0;
  tenancy::internal::Run(bytes[0],
                         std::string_view(reinterpret_cast<const char*>(bytes) + 1, size - 1));
  return 0;
}
