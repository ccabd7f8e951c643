// Tenant routes: /v1/kv, /v1/batch, /v1/usage (and their /t/{id}/ mirrors).

#include "json.h"
#include "request_target.h"
#include "route_bodies.h"
#include "router.h"
#include "router_call.h"
#include "spec_json.h"
#include "str_cat.h"
#include "tenancy/kv_store.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

HttpError Invalid(std::string message) {
  return MakeHttpError(400, "invalid_argument", std::move(message));
}

// A scan's cursor on the wire: base64url of the library's cursor.
std::string WireCursor(std::string_view library_cursor) { return Base64UrlEncode(library_cursor); }

// Writes a key and a value as strings, or both as base64 with
// "encoding":"base64" when either is not UTF-8.
void WriteKeyValue(JsonWriter& w, std::string_view key, std::string_view value) {
  w.BeginObject();
  if (IsValidUtf8(key) && IsValidUtf8(value)) {
    w.Key("key").String(key).Key("value").String(value);
  } else {
    w.Key("key").Base64(key).Key("value").Base64(value).Key("encoding").String("base64");
  }
  w.EndObject();
}

}  // namespace

std::optional<HttpError> Router::KvGet(Call& call) {
  auto value = call.tenant->kv().Get(call.match.key);
  if (!value.ok()) return HttpErrorFromStatus(value.status());
  call.res->status = 200;
  call.res->body = *std::move(value);
  call.res->set_header("Content-Type", "application/octet-stream");
  return std::nullopt;
}

std::optional<HttpError> Router::KvPut(Call& call) {
  absl::Status s = call.tenant->kv().Put(call.match.key, call.body);
  if (!s.ok()) return HttpErrorFromStatus(s);
  call.res->status = 204;
  return std::nullopt;
}

std::optional<HttpError> Router::KvDelete(Call& call) {
  absl::Status s = call.tenant->kv().Delete(call.match.key);
  if (!s.ok()) return HttpErrorFromStatus(s);
  call.res->status = 204;
  return std::nullopt;
}

std::optional<HttpError> Router::KvScan(Call& call) {
  auto params = ParseQuery(call.match.query);
  if (!params.ok()) return Invalid("bad percent-escape in the query string");
  ScanOptions options;
  options.limit = 100;
  std::optional<std::string> cursor;
  bool seen[6] = {};
  for (auto& [name, value] : *params) {
    static constexpr std::string_view kNames[6] = {"prefix", "start",   "end",
                                                   "limit",  "reverse", "cursor"};
    int index = -1;
    for (int i = 0; i < 6; ++i) {
      if (name == kNames[i]) index = i;
    }
    if (index < 0) {
      return Invalid(StrCat("unknown query parameter \"", PercentEncode(name), "\""));
    }
    if (seen[index]) return Invalid(StrCat("query parameter \"", name, "\" given twice"));
    seen[index] = true;
    switch (index) {
      case 0:
        options.prefix = std::move(value);
        break;
      case 1:
        options.start = std::move(value);
        break;
      case 2:
        options.end = std::move(value);
        break;
      case 3: {
        uint64_t limit = 0;
        bool digits = !value.empty() && value.size() <= 9;
        for (char c : value) digits = digits && c >= '0' && c <= '9';
        if (digits) {
          for (char c : value) limit = limit * 10 + static_cast<uint64_t>(c - '0');
        }
        if (!digits || limit < 1 || limit > KvStore::kMaxScanLimit) {
          return Invalid(StrCat("limit must be an integer in [1, ", KvStore::kMaxScanLimit, "]"));
        }
        options.limit = limit;
        break;
      }
      case 4:
        if (value == "true" || value == "1") {
          options.reverse = true;
        } else if (value == "false" || value == "0") {
          options.reverse = false;
        } else {
          return Invalid("reverse must be true or false");
        }
        break;
      case 5:
        cursor = std::move(value);
        break;
    }
  }
  if (cursor.has_value() && !cursor->empty()) {
    auto raw = Base64UrlDecode(*cursor);
    if (!raw.ok() || raw->empty()) return Invalid("bad cursor");
    options.cursor = *std::move(raw);  // the library checks it belongs here
  }

  // One library call, bounded in bytes by the response budget; the JSON
  // (escapes, base64) may grow past it, so writing stops there too, and the
  // cursor continues after the last item written.
  options.max_bytes = options_.max_scan_response_bytes;
  auto result = call.tenant->kv().Scan(options);
  if (!result.ok()) return HttpErrorFromStatus(result.status());
  JsonWriter w;
  w.BeginObject().Key("items").BeginArray();
  std::string next = std::move(result->cursor);
  for (size_t i = 0; i < result->items.size(); ++i) {
    const KeyValue& item = result->items[i];
    if (i > 0 &&
        w.view().size() + item.key.size() + item.value.size() > options_.max_scan_response_bytes) {
      next = KvStore::ScanCursorAfter(options, result->items[i - 1].key);
      break;
    }
    WriteKeyValue(w, item.key, item.value);
  }
  w.EndArray().Key("cursor");
  if (!next.empty()) {
    w.String(WireCursor(next));
  } else {
    w.Null();
  }
  w.EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

// The body of POST /v1/batch (route_bodies.h).
absl::StatusOr<WriteBatch> ParseBatchBody(std::string_view body, size_t max_ops) {
  auto object = ParseJsonObject(ThreadLocalJsonParser(), body);
  if (!object.ok()) return object.status();
  JsonObjectReader reader(*object, "batch");
  auto ops = reader.OptionalArray("ops");
  if (!ops.ok()) return ops.status();
  if (absl::Status s = reader.Finish(); !s.ok()) return s;
  if (!ops->has_value()) return absl::InvalidArgumentError("batch: field \"ops\" is required");
  if ((**ops).size() > max_ops) {
    return MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge,
                     StrCat("batch: more than ", max_ops, " operations"));
  }
  WriteBatch batch;
  size_t index = 0;
  for (simdjson::dom::element element : **ops) {
    const std::string context = StrCat("ops[", index++, "]");
    simdjson::dom::object op;
    if (element.get_object().get(op)) {
      return absl::InvalidArgumentError(StrCat(context, " must be an object"));
    }
    JsonObjectReader r(op, context);
    auto type = r.OptionalString("op");
    auto key = r.OptionalString("key");
    auto value = r.OptionalString("value");
    auto encoding = r.OptionalString("encoding");
    for (const absl::Status& s : {type.status(), key.status(), value.status(), encoding.status()}) {
      if (!s.ok()) return s;
    }
    if (absl::Status s = r.Finish(); !s.ok()) return s;
    bool base64 = false;
    if (encoding->has_value()) {
      if (**encoding != "base64") {
        return absl::InvalidArgumentError(
            StrCat(context, ": encoding must be \"base64\" (or absent)"));
      }
      base64 = true;
    }
    if (!key->has_value()) {
      return absl::InvalidArgumentError(StrCat(context, ": field \"key\" is required"));
    }
    std::string key_bytes(**key);
    std::string value_bytes;
    if (value->has_value()) value_bytes = std::string(**value);
    if (base64) {
      auto k = Base64Decode(key_bytes);
      if (!k.ok()) return absl::InvalidArgumentError(StrCat(context, ": key is not valid base64"));
      key_bytes = *std::move(k);
      if (value->has_value()) {
        auto v = Base64Decode(value_bytes);
        if (!v.ok()) {
          return absl::InvalidArgumentError(StrCat(context, ": value is not valid base64"));
        }
        value_bytes = *std::move(v);
      }
    }
    if (!type->has_value()) {
      return absl::InvalidArgumentError(StrCat(context, ": field \"op\" is required"));
    }
    if (**type == "put") {
      if (!value->has_value()) {
        return absl::InvalidArgumentError(StrCat(context, ": a put needs a \"value\""));
      }
      batch.Put(key_bytes, value_bytes);
    } else if (**type == "delete") {
      if (value->has_value()) {
        return absl::InvalidArgumentError(StrCat(context, ": a delete takes no \"value\""));
      }
      batch.Delete(key_bytes);
    } else {
      return absl::InvalidArgumentError(StrCat(context, ": op must be \"put\" or \"delete\""));
    }
  }
  return batch;
}

std::optional<HttpError> Router::Batch(Call& call) {
  auto batch = ParseBatchBody(call.body, options_.max_batch_ops);
  if (!batch.ok()) return HttpErrorFromStatus(batch.status());
  absl::Status s = call.tenant->kv().Write(*batch);
  if (!s.ok()) return HttpErrorFromStatus(s);
  JsonWriter w;
  w.BeginObject().Key("applied").Uint(batch->size()).EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::Usage(Call& call) {
  const Tenant& t = *call.tenant;
  t.RecordCall(CallKind::kOther);
  const TenantSpec spec = t.spec();
  const tenancy::Usage usage = t.usage();
  const RequestStats requests = t.requests();
  JsonWriter w;
  w.BeginObject()
      .Key("tenant_id")
      .String(t.id())
      .Key("state")
      .String(TenantStateName(t.state()))
      .Key("storage_used_bytes")
      .Uint(usage.bytes)
      .Key("storage_used_mb")
      .Double(static_cast<double>(usage.bytes) / kBytesPerMb)
      .Key("keys")
      .Uint(usage.keys)
      .Key("quota_mb")
      .Double(static_cast<double>(spec.quota.storage_bytes) / kBytesPerMb)
      .Key("quota");
  WriteQuota(w, spec.quota);
  w.Key("api_calls_today").Uint(requests.calls_today).Key("last_active");
  WriteTime(w, requests.last_active);
  w.EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

}  // namespace tenancy::internal
