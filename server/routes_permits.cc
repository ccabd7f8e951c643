// Permit routes: /v1/permits and /v1/permits/{permit}[/renew] (and their
// /t/{id}/ mirrors), a thin layer over Engine::permits() (PermitLeases). The
// body is parsed and bounded here (400 before the library is called, so a bad
// request changes nothing); which classes may be taken, leases, tokens and
// expiry are the library's.
//
// A permit request that waits (wait_s) holds its worker thread until a permit
// comes or the wait ends, as a waiting job claim does, and is bounded the same
// way: it holds a permit of kClaimWaitsClass while it waits (the same class,
// so waiting claims and waiting permit requests together never take every
// worker), and its lane lets go of it (Exchange::BeginLongWait).

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/time/time.h"
#include "json.h"
#include "route_bodies.h"
#include "router.h"
#include "router_call.h"
#include "spec_json.h"
#include "str_cat.h"
#include "tenancy/leased_permits.h"

namespace tenancy::internal {
namespace {

// The longest wait_s; more is 400. As long as a claim may wait by default.
constexpr int kMaxPermitWaitSeconds = 20;
// The lease when lease_s is not given.
constexpr double kDefaultPermitLeaseSeconds = 60;

HttpError Invalid(std::string message) {
  return MakeHttpError(400, "invalid_argument", std::move(message));
}

}  // namespace

absl::StatusOr<TakeBody> ParseTakeBody(std::string_view body) {
  auto object = ParseJsonObject(ThreadLocalJsonParser(), body);
  if (!object.ok()) return object.status();
  JsonObjectReader r(*object, "permit");
  auto cls = r.OptionalString("class");
  auto lease = r.OptionalNonNegativeNumber("lease_s");
  auto wait = r.OptionalNonNegativeNumber("wait_s");
  for (const absl::Status& s : {cls.status(), lease.status(), wait.status()}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  if (!cls->has_value()) {
    return absl::InvalidArgumentError("permit: field \"class\" is required");
  }
  const double wait_s = wait->value_or(0);
  if (wait_s > kMaxPermitWaitSeconds) {
    return absl::InvalidArgumentError(
        StrCat("permit: wait_s must be a number of seconds in [0, ", kMaxPermitWaitSeconds, "]"));
  }
  // lease_s is bounded by the library (0 < lease_s <= 3600).
  return TakeBody{.class_name = std::string(**cls),
                  .lease = absl::Seconds(lease->value_or(kDefaultPermitLeaseSeconds)),
                  .wait = absl::Seconds(wait_s)};
}

std::optional<HttpError> Router::PermitTake(Call& call) {
  if (!call.match.query.empty()) return Invalid("permit routes take no query parameters");
  auto body = ParseTakeBody(call.body);
  if (!body.ok()) return HttpErrorFromStatus(body.status());

  // A request that may wait takes a slot of the waiting class first; without
  // one it only takes a free permit, and is told to come back otherwise.
  std::optional<Permit> wait_permit;
  if (body->wait > absl::ZeroDuration()) wait_permit = BeginWait(call);
  const bool waits = wait_permit.has_value();
  auto deadline = std::chrono::steady_clock::now();
  if (waits) deadline += absl::ToChronoNanoseconds(body->wait);
  auto taken = engine_->permits().Take(*call.tenant, body->class_name, body->lease, deadline);
  wait_permit.reset();
  if (!taken.ok()) {
    HttpError error = HttpErrorFromStatus(taken.status());
    if (error.status == 429 && body->wait > absl::ZeroDuration() && !waits) {
      error.message += "; every slot for requests that wait is taken, so this one did not wait";
    }
    return error;
  }
  JsonWriter w;
  w.BeginObject();
  w.Key("permit").String(taken->token);
  w.Key("class").String(taken->class_name);
  w.Key("expires_at");
  WriteTime(w, taken->expires_at);
  w.EndObject();
  ReplyJson(*call.res, 201, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::PermitRenew(Call& call) {
  if (!call.match.query.empty()) return Invalid("permit routes take no query parameters");
  auto object = ParseJsonObject(ThreadLocalJsonParser(), call.body);
  if (!object.ok()) return HttpErrorFromStatus(object.status());
  JsonObjectReader r(*object, "renew");
  auto lease = r.OptionalNonNegativeNumber("lease_s");
  if (!lease.ok()) return HttpErrorFromStatus(lease.status());
  if (absl::Status s = r.Finish(); !s.ok()) return HttpErrorFromStatus(s);
  auto expires_at = engine_->permits().Renew(
      *call.tenant, call.match.permit, absl::Seconds(lease->value_or(kDefaultPermitLeaseSeconds)));
  if (!expires_at.ok()) return HttpErrorFromStatus(expires_at.status());
  JsonWriter w;
  w.BeginObject().Key("expires_at");
  WriteTime(w, *expires_at);
  w.EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::PermitRelease(Call& call) {
  if (!call.match.query.empty()) return Invalid("permit routes take no query parameters");
  absl::Status s = engine_->permits().Release(*call.tenant, call.match.permit);
  if (!s.ok()) return HttpErrorFromStatus(s);
  call.res->status = 204;
  return std::nullopt;
}

}  // namespace tenancy::internal
