// tenancyd's pure pieces without a socket: the JSON writer and readers,
// base64, percent-decoding, route matching and the Status->HTTP mapping.

#include <catch2/catch.hpp>
#include <chrono>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "admission.h"
#include "http_status.h"
#include "json.h"
#include "request_target.h"
#include "route_table.h"
#include "tenancy/status.h"

namespace tenancy::internal {
namespace {

TEST_CASE("Json: whole numbers are written as integers, others in their shortest exact form",
          "[json]") {
  struct Case {
    double value;
    const char* text;
  };
  for (const Case& c :
       {Case{1000, "1000"}, Case{1e6, "1000000"}, Case{0, "0"}, Case{-0.0, "0"}, Case{-3, "-3"},
        Case{9007199254740992.0, "9007199254740992"}, Case{0.5, "0.5"}, Case{0.1, "0.1"},
        Case{1234.5678, "1234.5678"}, Case{1e300, "1e+300"}, Case{2.5e-7, "2.5e-07"},
        // Whole beyond 2^53: exponent form, never an over-wide integer literal.
        Case{1444444444444444444444.5, "1.4444444444444443e+21"},
        Case{18014398509481984.0, "1.8014398509481984e+16"}}) {
    INFO(c.text);
    JsonWriter w;
    w.Double(c.value);
    CHECK(w.Release() == c.text);
  }
}

TEST_CASE("Json: the writer escapes and always produces valid JSON", "[json]") {
  JsonWriter w;
  w.BeginObject()
      .Key("s")
      .String("a\"b\\c\n\t\x01\x7f/é")
      .Key("bad")
      .String("x\xff\xc3y")
      .Key("n")
      .Int(-3)
      .Key("u")
      .Uint(18446744073709551615ull)
      .Key("d")
      .Double(0.5)
      .Key("inf")
      .Double(1.0 / 0.0)
      .Key("b")
      .Bool(true)
      .Key("z")
      .Null()
      .Key("a")
      .BeginArray()
      .Int(1)
      .String("x")
      .EndArray()
      .Key("bytes")
      .Base64(std::string("\0\xff", 2))
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

TEST_CASE("Json: base64 round-trips every byte and accepts one encoding only", "[json]") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string bytes = all.substr(0, n);
    CHECK(*Base64Decode(Base64Encode(bytes)) == bytes);
    CHECK(*Base64UrlDecode(Base64UrlEncode(bytes)) == bytes);
  }
  CHECK(Base64Encode("f") == "Zg==");
  CHECK(Base64UrlEncode("\xfb\xff") == "-_8");
  CHECK_FALSE(Base64Decode("Zg=").ok());   // bad length
  CHECK_FALSE(Base64Decode("Zh==").ok());  // non-zero trailing bits
  CHECK_FALSE(Base64Decode("Z!==").ok());  // not the alphabet
  CHECK_FALSE(Base64Decode("-_8=").ok());  // url alphabet in standard
  CHECK_FALSE(Base64UrlDecode("Zg==").ok());
  CHECK_FALSE(Base64UrlDecode("Z").ok());
}

TEST_CASE(
    "Json: the object reader refuses unknown, duplicated and mistyped "
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

TEST_CASE("RequestTarget: percent-decoding is strict and keeps '+' in paths", "[url]") {
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

TEST_CASE("Routes: raw targets match the documented routes", "[routes]") {
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
  for (const char* bad :
       {"/t/A/v1/kv/x", "/t/../v1/kv/x", "/t/%2e%2e/v1/kv/x", "/admin/tenants/a%2Fb",
        "/admin/tenants/%zz", "/v1/kv/%", "http://host/v1/kv/x"}) {
    INFO(bad);
    CHECK_FALSE(MatchRoute("GET", bad, &(m = RouteMatch()), &e));
    CHECK(e.status == 400);
  }
}

// A path of the table with sample values for its parameters.
std::string SamplePath(std::string_view path_template) {
  std::string path(path_template);
  for (auto [param, value] : {std::pair<std::string_view, std::string_view>{"{key_id}", "0123"},
                              {"{key}", "k"},
                              {"{id}", "acme"}}) {
    for (size_t at = path.find(param); at != std::string::npos; at = path.find(param)) {
      path.replace(at, param.size(), value);
    }
  }
  return path;
}

TEST_CASE("RouteTable: every route is matched by its own method and path", "[routes]") {
  REQUIRE(Routes().size() == static_cast<size_t>(kNumRoutes - 1));
  for (const RouteInfo& route : Routes()) {
    const std::string path = SamplePath(route.path);
    INFO(route.method << " " << path);
    RouteMatch m;
    HttpError e;
    REQUIRE(MatchRoute(route.method, path, &m, &e));
    CHECK(m.id == route.id);
    CHECK(RouteInfoOf(route.id).name == route.name);
    if (route.method == "GET") {
      REQUIRE(MatchRoute("HEAD", path, &(m = RouteMatch()), &e));
      CHECK(m.id == route.id);
    }
    // Tenant routes and /health are served under /t/{id}/ too; no other is.
    const bool mirrored = route.kind == RouteKind::kTenant || route.id == RouteId::kHealth;
    CHECK(MatchRoute(route.method, "/t/acme" + path, &(m = RouteMatch()), &e) == mirrored);
    if (mirrored) CHECK(m.id == route.id);
  }
}

TEST_CASE("RouteTable: names and method-path pairs are unique", "[routes]") {
  std::set<std::string_view> names;
  std::set<std::pair<std::string_view, std::string_view>> endpoints;
  for (const RouteInfo& route : Routes()) {
    CHECK(names.insert(route.name).second);
    CHECK(endpoints.emplace(route.method, route.path).second);
    CHECK(route.path.substr(0, 1) == "/");
  }
  CHECK(RouteName(RouteId::kUnmatched) == "unmatched");
  CHECK(KindOf(RouteId::kUnmatched) == RouteKind::kPublic);
}

TEST_CASE("RouteTable: a wrong method is 405 with every method of the path", "[routes]") {
  const std::pair<const char*, const char*> cases[] = {
      {"/health", "GET, HEAD"},
      {"/t/acme/health", "GET, HEAD"},
      {"/version", "GET, HEAD"},
      {"/metrics", "GET, HEAD"},
      {"/v1/kv", "GET, HEAD"},
      {"/v1/kv/k", "GET, HEAD, PUT, DELETE"},
      {"/v1/batch", "POST"},
      {"/v1/usage", "GET, HEAD"},
      {"/v1/cache/k", "GET, HEAD, PUT, DELETE"},
      // Only a POST names the increment; for other methods "k/incr" is a key.
      {"/v1/cache/k/incr", "GET, HEAD, PUT, DELETE"},
      {"/v1/jobs", "POST"},
      {"/v1/jobs/claim", "POST"},
      {"/v1/jobs/j1", "GET, HEAD"},
      {"/v1/jobs/j1/ack", "POST"},
      {"/v1/jobs/j1/nack", "POST"},
      {"/admin/tenants", "GET, HEAD, POST"},
      {"/admin/tenants/acme", "GET, HEAD, PUT, DELETE"},
      {"/admin/tenants/acme/enable", "POST"},
      {"/admin/tenants/acme/purge", "POST"},
      {"/admin/tenants/acme/stats", "GET, HEAD"},
      {"/admin/tenants/acme/keys", "GET, HEAD, POST"},
      {"/admin/tenants/acme/keys/0123", "DELETE"},
  };
  for (const auto& [target, allow] : cases) {
    for (const char* method : {"GET", "PUT", "POST", "DELETE", "PATCH"}) {
      if (std::string_view(allow).find(method) != std::string_view::npos) continue;
      // POST of ".../incr" is the increment route itself.
      if (std::string_view(target).ends_with("/incr") && std::string_view(method) == "POST") {
        continue;
      }
      INFO(method << " " << target);
      RouteMatch m;
      HttpError e;
      CHECK_FALSE(MatchRoute(method, target, &m, &e));
      CHECK(e.status == 405);
      CHECK(e.code == "method_not_allowed");
      CHECK(e.allow == allow);
    }
  }
}

TEST_CASE("HttpStatus: every status maps to the documented status and code", "[status]") {
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
      {MakeError(absl::StatusCode::kPermissionDenied, ErrorReason::kTenantDisabled, "x"), 403,
       "tenant_disabled"},
      {MakeError(absl::StatusCode::kPermissionDenied, ErrorReason::kTenantReadOnly, "x"), 403,
       "tenant_read_only"},
      {absl::NotFoundError("x"), 404, "not_found"},
      {MakeError(absl::StatusCode::kNotFound, ErrorReason::kTenantDeleted, "x"), 404, "not_found"},
      {absl::AlreadyExistsError("x"), 409, "already_exists"},
      {absl::FailedPreconditionError("x"), 409, "conflict"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kStorageQuota, "x"), 507,
       "quota_exceeded"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kKeyQuota, "x"), 507,
       "quota_exceeded"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kRateLimited, "x"), 429,
       "rate_limited"},
      {MakeError(absl::StatusCode::kResourceExhausted, ErrorReason::kConcurrencyLimited, "x"), 429,
       "concurrency_limited"},
      {MakeError(absl::StatusCode::kDeadlineExceeded, ErrorReason::kConcurrencyLimited, "x"), 429,
       "concurrency_limited"},
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
  CHECK(HttpErrorFromStatus(absl::InternalError("/var/lib/secret")).message == "internal error");
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
  for (RouteId write :
       {RouteId::kKvPut, RouteId::kKvDelete, RouteId::kBatch, RouteId::kCachePut,
        RouteId::kCacheDelete, RouteId::kCacheIncr, RouteId::kCacheDeletePrefix,
        RouteId::kJobEnqueue, RouteId::kJobClaim, RouteId::kJobAck, RouteId::kJobNack}) {
    CHECK(LimitClassOfRoute(write) == LimitClassId::kWrites);
  }
  CHECK(LimitClassOfRoute(RouteId::kKvScan) == LimitClassId::kScans);
  for (RouteId read : {RouteId::kKvGet, RouteId::kCacheGet, RouteId::kJobGet, RouteId::kUsage}) {
    CHECK(LimitClassOfRoute(read) == LimitClassId::kRequests);
  }
}
