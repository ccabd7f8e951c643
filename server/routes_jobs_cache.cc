// Cache and job routes: /v1/cache/{key}, /v1/jobs... (and their /t/{id}/
// mirrors). Each is a thin layer over TenantCache and JobQueue: parameters
// are parsed and refused here (400 before the library is called, so a bad
// request changes nothing), everything else is the library's.
//
// A claim that waits (wait_s) holds its worker thread until a job comes or
// the wait ends; ServerOptions::max_waiting_claims bounds how many may wait
// at once (in all and per tenant), so waiting claims never take every worker.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "json.h"
#include "request_target.h"
#include "route_bodies.h"
#include "router.h"
#include "router_call.h"
#include "str_cat.h"
#include "tenancy/cache.h"
#include "tenancy/jobs.h"

namespace tenancy::internal {
namespace {

HttpError Invalid(std::string message) {
  return MakeHttpError(400, "invalid_argument", std::move(message));
}

// The query parameters of a route: each of `allowed` at most once, nothing
// else (as the scan route does).
class QueryParams {
 public:
  static absl::StatusOr<QueryParams> Parse(std::string_view query,
                                           std::initializer_list<std::string_view> allowed) {
    auto pairs = ParseQuery(query);
    if (!pairs.ok()) {
      return absl::InvalidArgumentError("bad percent-escape in the query string");
    }
    QueryParams params;
    for (auto& [name, value] : *pairs) {
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        return absl::InvalidArgumentError(
            StrCat("unknown query parameter \"", PercentEncode(name), "\""));
      }
      for (const auto& seen : params.values_) {
        if (seen.first == name) {
          return absl::InvalidArgumentError(StrCat("query parameter \"", name, "\" given twice"));
        }
      }
      params.values_.emplace_back(std::move(name), std::move(value));
    }
    return params;
  }

  const std::string* Find(std::string_view name) const {
    for (const auto& [n, v] : values_) {
      if (n == name) return &v;
    }
    return nullptr;
  }

 private:
  std::vector<std::pair<std::string, std::string>> values_;
};

// "30", "0.5": a non-negative decimal number of seconds (at most 9 digits
// before the point and 9 after). nullopt if it is not one.
std::optional<absl::Duration> ParseSeconds(std::string_view text) {
  const size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view fraction =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  auto digits = [](std::string_view s, size_t max) {
    if (s.empty() || s.size() > max) return false;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  };
  if (!digits(whole, 9)) return std::nullopt;
  if (dot != std::string_view::npos && !digits(fraction, 9)) return std::nullopt;
  int64_t seconds = 0;
  for (char c : whole) seconds = seconds * 10 + (c - '0');
  int64_t nanos = 0;
  for (size_t i = 0; i < 9; ++i) {
    nanos = nanos * 10 + (i < fraction.size() ? fraction[i] - '0' : 0);
  }
  return absl::Seconds(seconds) + absl::Nanoseconds(nanos);
}

// "-12": a decimal int64 (an optional '-', then digits).
std::optional<int64_t> ParseInt64(std::string_view text) {
  const bool negative = !text.empty() && text.front() == '-';
  if (negative) text.remove_prefix(1);
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t magnitude = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    magnitude = magnitude * 10 + static_cast<uint64_t>(c - '0');
  }
  const uint64_t limit =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
  if (magnitude > limit) return std::nullopt;
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

// ?ttl=SECONDS on the cache writes. nullopt: none given.
absl::StatusOr<std::optional<std::chrono::nanoseconds>> TtlParam(const QueryParams& params) {
  const std::string* ttl = params.Find("ttl");
  if (ttl == nullptr) return std::nullopt;
  std::optional<absl::Duration> d = ParseSeconds(*ttl);
  if (!d.has_value() || *d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ttl must be a positive number of seconds (e.g. 60 or 0.5)");
  }
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(*d));
}

// A job time: RFC 3339 UTC with milliseconds, or null for "never" / "none".
void WriteJobTime(JsonWriter& w, absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) {
    w.Null();
    return;
  }
  w.String(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone()));
}

// A job as the job routes answer it. The payload is a string when it is
// UTF-8, else base64 with "encoding":"base64". The lease only after a claim.
void WriteJob(JsonWriter& w, const Job& job, bool with_payload) {
  w.BeginObject();
  w.Key("id").String(job.id);
  w.Key("type").String(job.type);
  w.Key("state").String(JobStateName(job.state));
  w.Key("priority").Int(job.priority);
  w.Key("attempts").Uint(job.attempts);
  w.Key("max_attempts").Uint(job.max_attempts);
  w.Key("created_at");
  WriteJobTime(w, job.created_at);
  w.Key("next_run_at");  // claimed: the lease expiry; dead: null
  WriteJobTime(w, job.next_run_at);
  w.Key("lease_expires_at");
  WriteJobTime(w, job.lease_expires_at);
  if (!job.lease.empty()) w.Key("lease").String(job.lease);
  w.Key("last_error").String(job.last_error);
  if (with_payload) {
    if (IsValidUtf8(job.payload)) {
      w.Key("payload").String(job.payload);
    } else {
      w.Key("payload").Base64(job.payload).Key("encoding").String("base64");
    }
  }
  w.EndObject();
}

}  // namespace

// --- Bodies (route_bodies.h) ---

absl::StatusOr<LeaseBody> ParseLeaseBody(std::string_view body, bool nack) {
  auto object = ParseJsonObject(ThreadLocalJsonParser(), body);
  if (!object.ok()) return object.status();
  JsonObjectReader r(*object, nack ? "nack" : "ack");
  auto lease = r.OptionalString("lease");
  if (!lease.ok()) return lease.status();
  LeaseBody out;
  if (nack) {
    auto error = r.OptionalString("error");
    if (!error.ok()) return error.status();
    auto retry = r.OptionalNonNegativeNumber("retry_after_s");
    if (!retry.ok()) return retry.status();
    if (error->has_value()) out.nack.error = std::string(**error);
    if (retry->has_value()) out.nack.retry_after = absl::Seconds(**retry);
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  if (!lease->has_value() || (*lease)->empty()) {
    return absl::InvalidArgumentError(StrCat(r.context(), ": field \"lease\" is required"));
  }
  out.lease = std::string(**lease);
  return out;
}

absl::StatusOr<JobSpec> ParseJobBody(std::string_view body) {
  auto object = ParseJsonObject(ThreadLocalJsonParser(), body);
  if (!object.ok()) return object.status();
  JsonObjectReader r(*object, "job");
  auto type = r.OptionalString("type");
  auto payload = r.OptionalString("payload");
  auto encoding = r.OptionalString("encoding");
  auto idempotency_key = r.OptionalString("idempotency_key");
  auto delay = r.OptionalNonNegativeNumber("delay_s");
  auto priority = r.OptionalInt("priority");
  auto max_attempts = r.OptionalUint("max_attempts");
  for (const absl::Status& s :
       {type.status(), payload.status(), encoding.status(), idempotency_key.status(),
        delay.status(), priority.status(), max_attempts.status()}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;

  JobSpec spec;
  if (!type->has_value()) return absl::InvalidArgumentError("job: field \"type\" is required");
  spec.type = std::string(**type);
  if (payload->has_value()) spec.payload = std::string(**payload);
  if (encoding->has_value()) {
    if (**encoding != "base64") {
      return absl::InvalidArgumentError("job: encoding must be \"base64\" (or absent)");
    }
    auto decoded = Base64Decode(spec.payload);
    if (!decoded.ok()) return absl::InvalidArgumentError("job: payload is not valid base64");
    spec.payload = *std::move(decoded);
  }
  if (idempotency_key->has_value()) {
    spec.idempotency_key = std::string(**idempotency_key);
  }
  if (delay->has_value()) spec.delay = absl::Seconds(**delay);
  if (priority->has_value()) {
    if (**priority < std::numeric_limits<int32_t>::min() ||
        **priority > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError("job: priority must be within int32");
    }
    spec.priority = static_cast<int32_t>(**priority);
  }
  if (max_attempts->has_value()) {
    // 0, as in the library, means the engine's default.
    if (**max_attempts > std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError("job: max_attempts is too large");
    }
    spec.max_attempts = static_cast<uint32_t>(**max_attempts);
  }
  return spec;
}

// --- Cache ---

std::optional<HttpError> Router::CacheGet(Call& call) {
  auto params = QueryParams::Parse(call.match.query, {});
  if (!params.ok()) return HttpErrorFromStatus(params.status());
  auto value = call.tenant->cache().Get(call.match.key);
  if (!value.ok()) return HttpErrorFromStatus(value.status());
  call.res->status = 200;
  call.res->body = *std::move(value);
  call.res->set_header("Content-Type", "application/octet-stream");
  return std::nullopt;
}

std::optional<HttpError> Router::CachePut(Call& call) {
  auto params = QueryParams::Parse(call.match.query, {"ttl"});
  if (!params.ok()) return HttpErrorFromStatus(params.status());
  auto ttl = TtlParam(*params);
  if (!ttl.ok()) return HttpErrorFromStatus(ttl.status());
  absl::Status s = call.tenant->cache().Set(call.match.key, call.body, *ttl);
  if (!s.ok()) return HttpErrorFromStatus(s);
  call.res->status = 204;
  return std::nullopt;
}

std::optional<HttpError> Router::CacheDelete(Call& call) {
  auto params = QueryParams::Parse(call.match.query, {});
  if (!params.ok()) return HttpErrorFromStatus(params.status());
  auto removed = call.tenant->cache().Delete(call.match.key);
  if (!removed.ok()) return HttpErrorFromStatus(removed.status());
  call.res->status = 204;
  return std::nullopt;
}

// DELETE /v1/cache?prefix=P: the tenant's entries under P; the prefix is
// required (an empty one, "?prefix=", names the whole cache) so that a bare
// DELETE /v1/cache cannot drop everything by accident.
std::optional<HttpError> Router::CacheDeletePrefix(Call& call) {
  auto params = QueryParams::Parse(call.match.query, {"prefix"});
  if (!params.ok()) return HttpErrorFromStatus(params.status());
  const std::string* prefix = params->Find("prefix");
  if (prefix == nullptr) {
    return Invalid("prefix is required (an empty prefix deletes the whole cache)");
  }
  auto deleted = call.tenant->cache().DeletePrefix(*prefix);
  if (!deleted.ok()) return HttpErrorFromStatus(deleted.status());
  JsonWriter w;
  w.BeginObject().Key("deleted").Uint(*deleted).EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::CacheIncr(Call& call) {
  auto params = QueryParams::Parse(call.match.query, {"by", "ttl"});
  if (!params.ok()) return HttpErrorFromStatus(params.status());
  int64_t by = 1;
  if (const std::string* text = params->Find("by"); text != nullptr) {
    std::optional<int64_t> parsed = ParseInt64(*text);
    if (!parsed.has_value()) return Invalid("by must be an integer within int64");
    by = *parsed;
  }
  auto ttl = TtlParam(*params);
  if (!ttl.ok()) return HttpErrorFromStatus(ttl.status());
  auto value = call.tenant->cache().Increment(call.match.key, by, *ttl);
  if (!value.ok()) return HttpErrorFromStatus(value.status());
  JsonWriter w;
  w.BeginObject().Key("value").Int(*value).EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

// --- Jobs ---

std::optional<HttpError> Router::JobEnqueue(Call& call) {
  auto spec = ParseJobBody(call.body);
  if (!spec.ok()) return HttpErrorFromStatus(spec.status());
  auto result = call.tenant->jobs().Enqueue(*spec);
  if (!result.ok()) return HttpErrorFromStatus(result.status());
  JsonWriter w;
  w.BeginObject();
  w.Key("id").String(result->id);
  w.Key("created").Bool(result->created);
  w.EndObject();
  // The contract: 201 with the job's id. A retried enqueue whose idempotency key
  // is stored answers as the first one did (as Stripe replays do), with
  // "created": false saying nothing new was stored.
  ReplyJson(*call.res, 201, w.Release());
  return std::nullopt;
}

std::optional<Permit> Router::BeginWait(Call& call) {
  // A permit of the claim-waits class (per tenant, then in all) or no wait.
  auto permit = call.tenant->TryAcquire(claim_waits_);
  if (!permit.ok()) return std::nullopt;
  // Waiting is not work: the tenant's other requests may run meanwhile.
  call.exchange->BeginLongWait();
  return *std::move(permit);
}

std::optional<HttpError> Router::JobClaim(Call& call) {
  auto params = QueryParams::Parse(call.match.query, {"type", "lease_s", "wait_s"});
  if (!params.ok()) return HttpErrorFromStatus(params.status());
  ClaimOptions options;
  if (const std::string* type = params->Find("type"); type != nullptr) {
    options.type = *type;
  }
  if (const std::string* lease = params->Find("lease_s"); lease != nullptr) {
    std::optional<absl::Duration> d = ParseSeconds(*lease);
    if (!d.has_value() || *d <= absl::ZeroDuration()) {
      return Invalid("lease_s must be a positive number of seconds");
    }
    options.lease = *d;  // the library bounds it by max_lease
  }
  absl::Duration wait = absl::ZeroDuration();
  if (const std::string* text = params->Find("wait_s"); text != nullptr) {
    std::optional<absl::Duration> d = ParseSeconds(*text);
    if (!d.has_value() || *d > absl::Seconds(options_.max_claim_wait_seconds)) {
      return Invalid(StrCat("wait_s must be a number of seconds in [0, ",
                            options_.max_claim_wait_seconds, "]"));
    }
    wait = *d;
  }

  // One library call either way: a claim that may wait takes a slot first;
  // without one it only looks, and is told to come back if it finds nothing.
  std::optional<Permit> wait_permit;
  if (wait > absl::ZeroDuration()) wait_permit = BeginWait(call);
  const bool waits = wait_permit.has_value();
  if (waits) {
    options.wait = wait;
    options.cancel = &stopping_;
  }
  auto claimed = call.tenant->jobs().Claim(options);
  wait_permit.reset();
  if (!claimed.ok()) return HttpErrorFromStatus(claimed.status());
  if (!claimed->has_value()) {
    if (wait > absl::ZeroDuration() && !waits) {
      return RetryLaterError(429, "concurrency_limited",
                             "no job now, and every slot for claims that wait is taken; retry "
                             "later",
                             1);
    }
    call.res->status = 204;
    return std::nullopt;
  }
  JsonWriter w;
  WriteJob(w, **claimed, /*with_payload=*/true);
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::JobAck(Call& call) {
  auto body = ParseLeaseBody(call.body, /*nack=*/false);
  if (!body.ok()) return HttpErrorFromStatus(body.status());
  absl::Status s = call.tenant->jobs().Ack(call.match.job_id, body->lease);
  if (!s.ok()) return HttpErrorFromStatus(s);
  JsonWriter w;
  w.BeginObject();
  w.Key("id").String(call.match.job_id);
  w.Key("acked").Bool(true);
  w.EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::JobNack(Call& call) {
  auto body = ParseLeaseBody(call.body, /*nack=*/true);
  if (!body.ok()) return HttpErrorFromStatus(body.status());
  auto job = call.tenant->jobs().Nack(call.match.job_id, body->lease, body->nack);
  if (!job.ok()) return HttpErrorFromStatus(job.status());
  JsonWriter w;
  WriteJob(w, *job, /*with_payload=*/false);
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::JobGet(Call& call) {
  auto params = QueryParams::Parse(call.match.query, {});
  if (!params.ok()) return HttpErrorFromStatus(params.status());
  auto job = call.tenant->jobs().Inspect(call.match.job_id);
  if (!job.ok()) return HttpErrorFromStatus(job.status());
  JsonWriter w;
  WriteJob(w, *job, /*with_payload=*/true);
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

}  // namespace tenancy::internal
