// tenancyd's pure pieces without a socket: the JSON writer and readers,
// base64, percent-decoding, route matching and the Status->HTTP mapping.

#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "absl/status/status.h"
#include "admission.h"
#include "http_status.h"
#include "json.h"
#include "request_target.h"
#include "route_table.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

TEST_CASE("Json: the writer escapes and always produces valid JSON", "[json]") {
  JsonWriter w;
  w.BeginObject()
      .Key("s").String("a\"b\\c\n\t\x01\x7f/é")
      .Key("bad").String("x\xff\xc3y")
      .Key("n").Int(-3)
      .Key("u").Uint(18446744073709551615ull)
      .Key("d").Double(0.5)
      .Key("inf").Double(1.0 / 0.0)
      .Key("b").Bool(true)
      .Key("z").Null()
      .Key("a").BeginArray().Int(1).String("x").EndArray()
      .Key("bytes").Base64(std::string("\0\xff", 2))
      .EndObject();
  std::string out = w.Release();
  CHECK(out ==
        "{\"s\":\"a\\\"b\\\\c\\n\\t\\u0001\\u007f/é\",\"bad\":\"x\xEF\xBF\xBD\xEF\xBF\xBDy\","
        "\"n\":-3,\"u\":18446744073709551615,\"d\":0.5,\"inf\":null,\"b\":true,"
        "\"z\":null,\"a\":[1,\"x\"],\"bytes\":\"AP8=\"}");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  CHECK_FALSE(parser.parse(out).get(doc));
  CHECK(IsValidUtf8(out));
}

TEST_CASE("Json: base64 round-trips every byte and accepts one encoding only",
          "[json]") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string bytes = all.substr(0, n);
    CHECK(*Base64Decode(Base64Encode(bytes)) == bytes);
    CHECK(*Base64UrlDecode(Base64UrlEncode(bytes)) == bytes);
  }
  CHECK(Base64Encode("f") == "Zg==");
  CHECK(Base64UrlEncode("\xfb\xff") == "-_8");
  CHECK_FALSE(Base64Decode("Zg=").ok());    // bad length
  CHECK_FALSE(Base64Decode("Zh==").ok());   // non-zero trailing bits
  CHECK_FALSE(Base64Decode("Z!==").ok());   // not the alphabet
  CHECK_FALSE(Base64Decode("-_8=").ok());   // url alphabet in standard
  CHECK_FALSE(Base64UrlDecode("Zg==").ok());
  CHECK_FALSE(Base64UrlDecode("Z").ok());
}

TEST_CASE("Json: the object reader refuses unknown, duplicated and mistyped "
          "fields",
          "[json]") {
  simdjson::dom::parser parser;
  auto object = ParseJsonObject(parser, R"({"a":"x","n":5,"f":1.5,"neg":-1,"o":{}})");
  REQUIRE(object.ok());
  JsonObjectReader r(*object, "spec");
  CHECK(**r.OptionalString("a") == "x");
  CHECK(**r.OptionalUint("n") == 5);
  CHECK_FALSE(r.OptionalUint("f").ok());
  CHECK_FALSE(r.OptionalUint("neg").ok());
  CHECK_FALSE(r.OptionalString("n").ok());
  CHECK(r.OptionalObject("o")->has_value());
  CHECK_FALSE(r.OptionalBool("missing")->has_value());
  CHECK(r.Finish().ok());

  auto extra = ParseJsonObject(parser, R"({"a":1,"b":2})");
  JsonObjectReader unknown(*extra, "spec");
  (void)unknown.OptionalUint("a");
  CHECK(absl::IsInvalidArgument(unknown.Finish()));

  auto twice = ParseJsonObject(parser, R"({"a":1,"a":2})");
  JsonObjectReader dup(*twice, "spec");
  CHECK(absl::IsInvalidArgument(dup.OptionalUint("a").status()));

  CHECK_FALSE(ParseJsonObject(parser, "[1]").ok());
  CHECK_FALSE(ParseJsonObject(parser, "{").ok());
  CHECK_FALSE(ParseJsonObject(parser, "{\"a\":\"\xff\"}").ok());
  CHECK_FALSE(ParseJsonObject(parser, "").ok());
}

TEST_CASE("RequestTarget: percent-decoding is strict and keeps '+' in paths",
          "[url]") {
  CHECK(*PercentDecode("a%2Fb%00%ff+", false) == std::string("a/b\0\xff+", 6));
  CHECK(*PercentDecode("a+b", true) == "a b");
  CHECK_FALSE(PercentDecode("%", false).ok());
  CHECK_FALSE(PercentDecode("%4", false).ok());
  CHECK_FALSE(PercentDecode("%4g", false).ok());
  CHECK(PercentEncode(std::string("a/b \0~", 6)) == "a%2Fb%20%00~");
  auto q = ParseQuery("a=1&b=%20x+y&&c&d=");
  REQUIRE(q.ok());
  REQUIRE(q->size() == 4);
  CHECK((*q)[1].second == " x y");
  CHECK((*q)[2].first == "c");
  CHECK((*q)[2].second.empty());
  CHECK_FALSE(ParseQuery("a=%zz").ok());
}

TEST_CASE("Routes: raw targets match API.md's routes", "[routes]") {
  RouteMatch m;
  HttpError e;
  REQUIRE(MatchRoute("GET", "/v1/kv/a%2Fb?x=1", &m, &e));
  CHECK(m.id == RouteId::kKvGet);
  CHECK(m.key == "a/b");
  CHECK(m.query == "x=1");
  REQUIRE(MatchRoute("PUT", "/t/acme/v1/kv/", &(m = RouteMatch()), &e));
  CHECK(m.id == RouteId::kKvPut);
  CHECK(m.tenant_prefix);
  CHECK(m.tenant == "acme");
  CHECK(m.key.empty());
  REQUIRE(MatchRoute("HEAD", "/v1/kv", &(m = RouteMatch()), &e));
  CHECK(m.id == RouteId::kKvScan);
  REQUIRE(MatchRoute("DELETE", "/admin/tenants/acme/keys/0123", &(m = RouteMatch()), &e));
  CHECK(m.id == RouteId::kAdminRevokeKey);
  CHECK(m.admin_tenant == "acme");
  CHECK(m.key_id == "0123");
  REQUIRE(MatchRoute("POST", "/admin/tenants/acme/purge", &(m = RouteMatch()), &e));
  CHECK(m.id == RouteId::kAdminPurgeTenant);

  CHECK_FALSE(MatchRoute("GET", "/nope", &(m = RouteMatch()), &e));
  CHECK(e.status == 404);
  CHECK_FALSE(MatchRoute("POST", "/v1/kv/x", &(m = RouteMatch()), &e));
  CHECK(e.status == 405);
  CHECK(e.allow == "GET, HEAD, PUT, DELETE");
  for (const char* bad : {"/t/A/v1/kv/x", "/t/../v1/kv/x", "/t/%2e%2e/v1/kv/x",
                          "/admin/tenants/a%2Fb", "/admin/tenants/%zz", "/v1/kv/%",
                          "http://host/v1/kv/x"}) {
    INFO(bad);
    CHECK_FALSE(MatchRoute("GET", bad, &(m = RouteMatch()), &e));
    CHECK(e.status == 400);
  }
}

TEST_CASE("HttpStatus: every status maps to API.md's status and code", "[status]") {
  struct Row {
    absl::Status status;
    int http;
    std::string code;
  };
  const Row rows[] = {
      {absl::InvalidArgumentError("x"), 400, "invalid_argument"},
      {MakeError(absl::StatusCode::kInvalidArgument, ErrorReason::kTooLarge, "x"), 413,
       "too_large"},
      {absl::UnauthenticatedError("x"), 401, "unauthenticated"},
      {absl::PermissionDeniedError("x"), 403, "forbidden"},
      {MakeError(absl::StatusCode::kPermissionDenied, ErrorReason::kTenantDisabled, "x"),
       403, "tenant_disabled"},
      {MakeError(absl::StatusCode::kPermissionDenied, ErrorReason::kTenantReadOnly, "x"),
       403, "tenant_read_only"},
      {absl::NotFoundError("x"), 404, "not_found"},
      {MakeError(absl::StatusCode::kNotFound, ErrorReason::kTenantDeleted, "x"), 404,
       "not_found"},
      {absl::AlreadyExistsError("x"), 409, "already_exists"},
      {absl::FailedPreconditionError("x"), 409, "conflict"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kStorageQuota, "x"),
       507, "quota_exceeded"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kKeyQuota, "x"), 507,
       "quota_exceeded"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kRateLimited, "x"),
       429, "rate_limited"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kConcurrencyLimited,
                 "x"),
       429, "concurrency_limited"},
      {MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kConcurrencyLimited,
                 "x"),
       429, "concurrency_limited"},
      {absl::DeadlineExceededError("x"), 504, "deadline_exceeded"},
      {absl::UnavailableError("x"), 503, "unavailable"},
      {absl::UnimplementedError("x"), 501, "not_implemented"},
      {absl::InternalError("/var/lib/secret/path"), 500, "internal"},
      {absl::DataLossError("x"), 500, "internal"},
  };
  for (const Row& row : rows) {
    INFO(row.status.ToString());
    HttpError e = HttpErrorFromStatus(row.status);
    CHECK(e.status == row.http);
    CHECK(e.code == row.code);
  }
  // 500s never show the status; 429s and 503s carry Retry-After in whole
  // seconds, rounded up, at least 1.
  CHECK(HttpErrorFromStatus(absl::InternalError("/var/lib/secret")).message ==
        "internal error");
  absl::Status rate = WithRetryAfter(
      MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kRateLimited, "x"),
      std::chrono::milliseconds(1500));
  CHECK(HttpErrorFromStatus(rate).retry_after_seconds == 2);
  absl::Status soon = WithRetryAfter(
      MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kRateLimited, "x"),
      std::chrono::milliseconds(1));
  CHECK(HttpErrorFromStatus(soon).retry_after_seconds == 1);
  CHECK(HttpErrorFromStatus(absl::UnavailableError("x")).retry_after_seconds == 1);
  CHECK(ErrorBody("too_large", "a \"b\"") ==
        R"({"error":{"code":"too_large","message":"a \"b\""}})");
}

}  // namespace
}  // namespace tenancy::internal

TEST_CASE("Admission: every route that changes state holds the writes class",
          "[server][admission]") {
  using tenancy::internal::LimitClassId;
  using tenancy::internal::LimitClassOfRoute;
  using tenancy::internal::RouteId;
  for (RouteId write : {RouteId::kKvPut, RouteId::kKvDelete, RouteId::kBatch,
                        RouteId::kCachePut, RouteId::kCacheDelete,
                        RouteId::kCacheIncr, RouteId::kJobEnqueue,
                        RouteId::kJobClaim, RouteId::kJobAck, RouteId::kJobNack}) {
    CHECK(LimitClassOfRoute(write) == LimitClassId::kWrites);
  }
  CHECK(LimitClassOfRoute(RouteId::kKvScan) == LimitClassId::kScans);
  for (RouteId read : {RouteId::kKvGet, RouteId::kCacheGet, RouteId::kJobGet,
                       RouteId::kUsage}) {
    CHECK(LimitClassOfRoute(read) == LimitClassId::kRequests);
  }
}
