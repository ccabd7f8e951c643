#include "router.h"

#include <functional>

#include "cluster_directory.h"
#include "json.h"
#include "request_target.h"
#include "router_call.h"
#include "str_cat.h"
#include "tenancy/kv_store.h"

namespace tenancy::internal {
namespace {

using Clock = std::chrono::steady_clock;

// Credentials are printable ASCII without spaces: a NUL, CR, LF or any other
// control byte (raw, since header values are never percent-decoded) can only
// be an attempt to smuggle something past a comparison or into a log.
bool IsCleanCredential(std::string_view s) {
  if (s.empty() || s.size() > 1024) return false;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i], b = prefix[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}

// Header values are read from the raw head (RequestHead::Header): httplib
// 0.11.4 percent-decodes the values it hands out, which would turn
// "Bearer <key>%00" into "Bearer <key>".

// A header that must appear at most once. nullopt if absent; an empty string
// if repeated (an empty value is refused by every caller).
std::optional<std::string> SingleHeader(const RequestHead& head, std::string_view name) {
  bool repeated = false;
  std::optional<std::string_view> value = head.Header(name, &repeated);
  if (!value.has_value()) return std::nullopt;
  if (repeated) return std::string();
  return std::string(*value);
}

// The credential of "Authorization: Bearer <token>". nullopt if the header is
// absent; an empty string if it is present but not one clean bearer token.
std::optional<std::string> BearerToken(const RequestHead& head) {
  std::optional<std::string> value = SingleHeader(head, "Authorization");
  if (!value.has_value() || value->empty()) return value;
  std::string_view v = *value;
  if (!StartsWithIgnoreCase(v, "bearer ")) return std::string();
  v.remove_prefix(7);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  if (!IsCleanCredential(v)) return std::string();
  return std::string(v);
}

// Bodies larger than this make a request background work.
constexpr uint64_t kBackgroundBodyBytes = 256 << 10;

// A complete HTTP/1.1 response decided on the head: a refusal, or a
// constant answer.
std::string FormatHead(int status, size_t body_size) {
  return StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                "\r\nContent-Type: application/json\r\nContent-Length: ", body_size, "\r\n");
}

std::string FinishHead(std::string out, std::string_view body, bool head_request, bool close,
                       int keep_alive_seconds, size_t keep_alive_max) {
  if (close) {
    out += "Connection: close\r\n";
  } else {
    out += StrCat("Keep-Alive: timeout=", keep_alive_seconds, ", max=", keep_alive_max, "\r\n");
  }
  out += "\r\n";
  if (!head_request) out += body;
  return out;
}

std::string FormatResponse(int status, std::string_view body, bool head_request, bool close,
                           int keep_alive_seconds, size_t keep_alive_max) {
  return FinishHead(FormatHead(status, body.size()), body, head_request, close, keep_alive_seconds,
                    keep_alive_max);
}

std::string FormatRefusal(const HttpError& error, bool head_request, bool close,
                          int keep_alive_seconds, size_t keep_alive_max) {
  std::string body = ErrorBody(error.code, error.message);
  std::string out = FormatHead(error.status, body.size());
  if (error.retry_after_seconds.has_value()) {
    out += StrCat("Retry-After: ", *error.retry_after_seconds, "\r\n");
  }
  if (!error.allow.empty()) out += StrCat("Allow: ", error.allow, "\r\n");
  if (error.status == 401) out += "WWW-Authenticate: Bearer\r\n";
  return FinishHead(std::move(out), body, head_request, close, keep_alive_seconds, keep_alive_max);
}

// A route of the cluster (node-to-node, or its admin routes) on a node
// alone.
HttpError NotInCluster() {
  return MakeHttpError(404, "not_found",
                       "this node is not in a cluster (tenancyd --cluster-etcd starts one)");
}

HttpError Unauthenticated(std::string message) {
  return MakeHttpError(401, "unauthenticated", std::move(message));
}

// Trusted mode with --host-suffix: the tenant a request's Host names.
// nullopt for the bare suffix (the default tenant); INVALID_ARGUMENT for no
// Host, two, or one that is neither SUFFIX nor ID.SUFFIX. Host names are
// case-insensitive; a port and one trailing dot are ignored.
absl::StatusOr<std::optional<std::string>> TenantOfHost(const RequestHead& head,
                                                        std::string_view suffix) {
  bool repeated = false;
  std::optional<std::string_view> value = head.Header("Host", &repeated);
  if (!value.has_value() || value->empty()) {
    return absl::InvalidArgumentError("a Host header is required");
  }
  if (repeated) return absl::InvalidArgumentError("more than one Host header");
  std::string_view h = *value;
  if (!h.empty() && h.front() == '[') {
    return absl::InvalidArgumentError("the Host is not under the server's suffix");
  }
  if (size_t colon = h.rfind(':'); colon != std::string_view::npos) {
    std::string_view port = h.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos) {
      return absl::InvalidArgumentError("malformed Host port");
    }
    h = h.substr(0, colon);
  }
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);
  std::string host(h);
  for (char& ch : host) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  std::string want(suffix);
  if (!want.empty() && want.back() == '.') want.pop_back();
  for (char& ch : want) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  if (host == want) return std::optional<std::string>();
  if (host.size() > want.size() + 1 &&
      host.compare(host.size() - want.size(), want.size(), want) == 0 &&
      host[host.size() - want.size() - 1] == '.') {
    std::string sub = host.substr(0, host.size() - want.size() - 1);
    if (!ValidateTenantId(sub).ok()) {
      return absl::InvalidArgumentError("the Host's subdomain is not a tenant id");
    }
    return std::optional<std::string>(std::move(sub));
  }
  return absl::InvalidArgumentError("the Host is not under the server's suffix");
}

}  // namespace

Router::Router(const ServerOptions& options, Engine* engine, ServerMetrics* metrics,
               Admission* admission, std::shared_ptr<Logger> logger)
    : options_(options),
      engine_(engine),
      metrics_(metrics),
      admission_(admission),
      logger_(std::move(logger)),
      admin_key_(options.admin_key),
      cluster_secret_(options.cluster != nullptr ? options.cluster->secret() : std::string()),
      forwarder_(options.cluster != nullptr ? std::make_unique<Forwarder>(options.cluster->secret())
                                            : nullptr) {
  // HttpServer::Start registered the class with its limits.
  claim_waits_ = *engine_->limiter().Class(kClaimWaitsClass);
  if (!admin_key_.configured()) {
    logger_->Log(LogLevel::kWarning,
                 "admin API disabled: no admin key configured "
                 "(--admin-key-file or TENANCY_ADMIN_KEY); every admin route "
                 "answers 403");
  }
}

Router::~Router() = default;

namespace {

// 200 either way: a degraded engine still serves every read, so a load
// balancer that took it out of rotation on a 503 would turn a partial outage
// into a total one. Monitoring reads "status" (or tenancy_engine_degraded).
// The summary names no files: /health needs no credentials.
std::string HealthBody(const EngineHealth& health) {
  if (health.ok) return R"({"status":"ok"})";
  JsonWriter w;
  w.BeginObject().Key("status").String("degraded").Key("reason").String(health.summary).EndObject();
  return w.Release();
}

}  // namespace

HeadDecision Router::DecideHead(const RequestHead& head) {
  auto call = std::make_unique<Call>(head.method, head.target);
  std::optional<HttpError> error = Prepare(*call, head);
  HeadDecision decision;
  const auto& t = options_.transport;
  const int keep_alive_seconds = static_cast<int>(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(t.keep_alive_timeout).count()));
  if (!error.has_value()) {
    // Constant answers need no worker.
    switch (call->match.id) {
      case RouteId::kHealth:
      case RouteId::kVersion: {
        std::string body = call->match.id == RouteId::kHealth
                               ? HealthBody(engine_->Health())
                               : StrCat(R"({"version":")", TENANCY_VERSION_STRING, "\"}");
        decision.immediate = FormatResponse(200, body, head.method == "HEAD", head.refusal_closes,
                                            keep_alive_seconds, t.keep_alive_max_requests);
        Account(*call, 200);
        return decision;
      }
      default:
        break;
    }
    decision.lane = LaneOf(*call, head);
    decision.takes_body = RouteTakesBody(call->match.id);
    decision.streams_body = RouteInfoOf(call->match.id).body == BodyKind::kStream;
    decision.context = std::move(call);
    return decision;
  }
  Account(*call, error->status);
  if (error->internal) LogInternal(*call, *error);
  decision.immediate = FormatRefusal(*error, head.method == "HEAD", head.refusal_closes,
                                     keep_alive_seconds, t.keep_alive_max_requests);
  return decision;
}

Lane Router::LaneOf(const Call& call, const RequestHead& head) const {
  Lane lane;
  if (!call.tenant.has_value()) {
    // Admin: the control lane; data moves on the background workers. Not a
    // move this node only forwards (it holds no slot: Prepare), nor the
    // archive a move sends here: the move holds a background worker on its
    // owner, and two nodes moving tenants to each other must not wait for
    // each other's.
    lane.background = IsLifecycleCall(call) && call.lifecycle_slot != nullptr &&
                      call.match.id != RouteId::kClusterReceiveArchive;
    return lane;
  }
  lane.key = Lane::TenantLane(call.tenant->number());
  // Heavy work runs on the background workers, at a lower OS priority: a
  // large body (a batch of thousands of operations, a large value) or a
  // scan (the route of the scans class) that asks for more than one default
  // page.
  const RouteInfo& route = RouteInfoOf(call.match.id);
  if (route.limit_class == LimitClassId::kScans) {
    auto params = ParseQuery(call.match.query);
    if (params.ok()) {
      for (const auto& [name, value] : *params) {
        if (name != "limit") continue;
        // Digits only is checked by the route; longer than "100" is more.
        lane.background = value.size() > 3 || (value.size() == 3 && value > "100");
      }
    }
  } else {
    lane.background = head.body_length > kBackgroundBodyBytes;
  }
  return lane;
}

void Router::Handle(Exchange& exchange) {
  std::unique_ptr<Call> call(static_cast<Call*>(exchange.TakeContext().release()));
  call->res = &exchange.response();
  call->exchange = &exchange;
  call->body = exchange.body();
  std::optional<HttpError> error = Execute(*call);
  if (error.has_value() && error->status == 404) {
    if (auto replaced = ReplacedWhileRunning(*call); replaced.has_value()) error = replaced;
  }
  if (error.has_value()) {
    ReplyError(*call, *error);
    if (error->status == 408 || error->status >= 500) exchange.CloseAfterResponse();
  }
  Account(*call, call->res->status);
}

std::optional<HttpError> Router::ReplacedWhileRunning(const Call& call) const {
  if (!call.tenant.has_value() || !call.forward_to.empty()) return std::nullopt;
  // The handle taken at the head names the tenant's data as it was then; an
  // import, a restore or a move's last step gives the tenant new data (a new
  // number) and the old handle answers NOT_FOUND. The tenant is still there:
  // the request is worth sending again, not a 404.
  auto now = engine_->GetTenant(call.tenant->id());
  if (!now.ok() || now->number() == call.tenant->number()) return std::nullopt;
  return RetryLaterError(503, "unavailable",
                         StrCat("tenant \"", call.tenant->id(),
                                "\": its data was replaced while this request ran (an "
                                "import, a restore or a move); retry"),
                         1);
}

std::optional<HttpError> Router::Prepare(Call& call, const RequestHead& head) {
  HttpError error;
  if (!MatchRoute(call.method, call.target, &call.match, &error)) return error;
  const RouteId route = call.match.id;

  // Framing, before anything of the body is read. (A body a route does not
  // take is never read; the transport closes the connection after the
  // response.)
  if (head.has_transfer_encoding) {
    return MakeHttpError(411, "length_required",
                         "Transfer-Encoding (chunked) request bodies are not "
                         "accepted; send Content-Length");
  }
  if (RouteTakesBody(route) && RouteInfoOf(route).body != BodyKind::kStream) {
    const uint64_t limit =
        RouteTakesJson(route) ? options_.max_json_body_bytes : engine_->options().max_value_bytes;
    if (head.body_length > limit) {
      return MakeHttpError(
          413, "too_large",
          StrCat("request body of ", head.body_length, " bytes is over the limit of ", limit));
    }
  }

  switch (KindOf(route)) {
    case RouteKind::kPublic:
      if (call.match.tenant_prefix) {
        // /t/{id}/health answers for that tenant: 404 when it does not
        // exist and 403 when disabled, as every route of the tenant.
        auto tenant = engine_->GetTenant(call.match.tenant);
        if (!tenant.ok()) return HttpErrorFromStatus(tenant.status());
        if (absl::Status s = tenant->CheckReadable(); !s.ok()) return HttpErrorFromStatus(s);
      }
      return std::nullopt;
    case RouteKind::kAdmin:
      if (route == RouteId::kMetrics && options_.metrics_public) return std::nullopt;
      if (route == RouteId::kAdminMoveTenant && options_.cluster != nullptr &&
          head.Header(kForwardedSecretHeader).has_value()) {
        // A move sent on to the tenant's owner by the node it reached, which
        // checked the admin key (AdminMoveTenant).
        if (auto e = AuthorizePeer(head); e.has_value()) return e;
        call.forwarded_in = true;
      } else if (auto e = AuthorizeAdmin(head, route); e.has_value()) {
        return e;
      }
      if (auto e = ClusterAdminRefusal(call); e.has_value()) return e;
      // A move holds a slot where it runs, on the tenant's owner, not on the
      // node that forwards it there (which may be the target, whose slot the
      // archive needs).
      if (route == RouteId::kAdminMoveTenant && options_.cluster != nullptr &&
          options_.cluster->OwnerOf(call.match.admin_tenant).kind != TenantOwner::Kind::kSelf) {
        return std::nullopt;
      }
      if (IsLifecycleCall(call)) return TakeLifecycleSlot(call);
      return std::nullopt;
    case RouteKind::kPeer:
      if (options_.cluster == nullptr) return NotInCluster();
      if (auto e = AuthorizePeer(head); e.has_value()) return e;
      return TakeLifecycleSlot(call);
    case RouteKind::kTenant:
      break;
  }

  // Only a cluster's nodes look for the marker (a node alone needs no trust
  // in it, and its requests skip the lookups).
  const bool forwarded =
      options_.cluster != nullptr && (head.Header(kForwardedTenantHeader).has_value() ||
                                      head.Header(kForwardedSecretHeader).has_value());
  if (auto e = forwarded ? AcceptForwarded(call, head) : ResolveTenant(call, head); e.has_value()) {
    return e;
  }
  call.runtime = RuntimeFor(*call.tenant);
  call.runtime->series.calls[static_cast<int>(ParseHttpMethod(call.method))]->Increment();
  absl::Status state =
      IsWriteRoute(route) ? call.tenant->CheckWritable() : call.tenant->CheckReadable();
  if (!state.ok()) return HttpErrorFromStatus(state);
  if (options_.cluster != nullptr) {
    if (auto e = PlaceCall(call, head); e.has_value()) return e;
    // The owner admits it, under the tenant's limits there.
    if (!call.forward_to.empty()) return std::nullopt;
  }
  auto ticket = admission_->Admit(*call.tenant, LimitClassOfRoute(route));
  if (!ticket.ok()) return HttpErrorFromStatus(ticket.status());
  call.ticket = std::move(*ticket);
  return std::nullopt;
}

std::optional<HttpError> Router::AuthorizeAdmin(const RequestHead& head, RouteId route) {
  if (!admin_key_.configured()) {
    if (!logged_no_admin_key_.exchange(true)) {
      logger_->Log(LogLevel::kWarning,
                   StrCat("refused ", RouteName(route),
                          ": the admin API is disabled because no admin key is "
                          "configured (--admin-key-file or TENANCY_ADMIN_KEY)"));
    }
    return MakeHttpError(403, "forbidden", "the admin API is disabled: no admin key is configured");
  }
  std::optional<std::string> header = SingleHeader(head, "X-Admin-Key");
  std::optional<std::string> bearer = BearerToken(head);
  if (!header.has_value() && !bearer.has_value()) {
    return Unauthenticated("admin key required (X-Admin-Key or Bearer)");
  }
  // Every credential given must be the admin key.
  if (header.has_value() && (!IsCleanCredential(*header) || !admin_key_.Matches(*header))) {
    return Unauthenticated("wrong admin key");
  }
  if (bearer.has_value() && (bearer->empty() || !admin_key_.Matches(*bearer))) {
    return Unauthenticated("wrong admin key");
  }
  return std::nullopt;
}

std::optional<HttpError> Router::ResolveTenant(Call& call, const RequestHead& head) {
  // A tenant named by /t/{id}/ or by the tenant headers (X-Tenant-ID unless
  // configured): all that are given must agree.
  std::optional<std::string> named;
  std::string_view named_by;
  if (call.match.tenant_prefix) {
    named = call.match.tenant;
    named_by = "/t/{id}/";
  }
  for (const std::string& name : options_.tenant_headers) {
    std::optional<std::string> header = SingleHeader(head, name);
    if (!header.has_value()) continue;
    if (!IsCleanCredential(*header) || !ValidateTenantId(*header).ok()) {
      return MakeHttpError(400, "invalid_argument", StrCat("bad ", name));
    }
    if (named.has_value() && *named != *header) {
      return MakeHttpError(400, "invalid_argument",
                           StrCat(name, " and ", named_by, " name different tenants"));
    }
    named = *header;
    named_by = name;
  }

  auto open = [&](const std::string& id) -> std::optional<HttpError> {
    auto tenant = engine_->GetTenant(id);
    if (!tenant.ok()) return HttpErrorFromStatus(tenant.status());
    call.tenant = *std::move(tenant);
    return std::nullopt;
  };

  if (options_.auth == AuthMode::kTrusted) {
    if (named.has_value()) return open(*named);
    if (!options_.host_suffix.empty()) {
      // The Host decides: it must be there once and be SUFFIX (the default
      // tenant) or ID.SUFFIX. Anything else is refused rather than guessed,
      // so a malformed or smuggled Host never lands in the default tenant.
      auto tenant = TenantOfHost(head, options_.host_suffix);
      if (!tenant.ok()) {
        return MakeHttpError(400, "invalid_argument", std::string(tenant.status().message()));
      }
      if (tenant->has_value()) return open(**tenant);
    }
    return open(options_.default_tenant);
  }

  // api-key mode.
  std::optional<std::string> bearer = BearerToken(head);
  std::optional<std::string> admin_header = SingleHeader(head, "X-Admin-Key");
  if (bearer.has_value() && !bearer->empty()) {
    auto tenant = engine_->ResolveApiKey(*bearer);
    if (tenant.ok()) {
      if (named.has_value() && *named != tenant->id()) {
        return MakeHttpError(403, "forbidden", "this API key belongs to another tenant");
      }
      if (admin_header.has_value()) {
        return MakeHttpError(400, "invalid_argument",
                             "give a tenant key or the admin key, not both");
      }
      call.tenant = *std::move(tenant);
      return std::nullopt;
    }
    if (!absl::IsUnauthenticated(tenant.status())) {
      return HttpErrorFromStatus(tenant.status());
    }
  }
  // Not a tenant key: the admin key, acting on the tenant named.
  bool admin = false;
  if (bearer.has_value()) {
    if (bearer->empty() || !admin_key_.Matches(*bearer)) {
      return Unauthenticated("unknown, revoked or malformed API key");
    }
    admin = true;
  }
  if (admin_header.has_value()) {
    if (!IsCleanCredential(*admin_header) || !admin_key_.Matches(*admin_header)) {
      return Unauthenticated("wrong admin key");
    }
    admin = true;
  }
  if (!admin) {
    return Unauthenticated("an API key is required (Authorization: Bearer)");
  }
  if (!named.has_value()) {
    return MakeHttpError(400, "invalid_argument",
                         StrCat("the admin key acts on a tenant named by /t/{id}/ or ",
                                options_.tenant_headers.front()));
  }
  call.via_admin_key = true;
  return open(*named);
}

std::optional<HttpError> Router::AuthorizePeer(const RequestHead& head) {
  std::optional<std::string> secret = SingleHeader(head, kForwardedSecretHeader);
  if (!secret.has_value() || !IsCleanCredential(*secret) || !cluster_secret_.Matches(*secret)) {
    return Unauthenticated("a node-to-node request without this cluster's secret");
  }
  return std::nullopt;
}

std::optional<HttpError> Router::AcceptForwarded(Call& call, const RequestHead& head) {
  // Only another node of this cluster may name a tenant without credentials.
  if (auto e = AuthorizePeer(head); e.has_value()) return e;
  std::optional<std::string> tenant = SingleHeader(head, kForwardedTenantHeader);
  if (!tenant.has_value() || !IsCleanCredential(*tenant) || !ValidateTenantId(*tenant).ok()) {
    return MakeHttpError(400, "invalid_argument", StrCat("bad ", kForwardedTenantHeader));
  }
  if (call.match.tenant_prefix && call.match.tenant != *tenant) {
    return MakeHttpError(400, "invalid_argument",
                         StrCat(kForwardedTenantHeader, " and /t/{id}/ name different tenants"));
  }
  auto opened = engine_->GetTenant(*tenant);
  if (absl::IsNotFound(opened.status())) {
    // The node that forwarded it knows the tenant: this one has not applied
    // the registry's change yet (it will within a second).
    return RetryLaterError(503, "unavailable",
                           StrCat("tenant \"", *tenant, "\" is not known here yet; retry"), 1);
  }
  if (!opened.ok()) return HttpErrorFromStatus(opened.status());
  call.tenant = *std::move(opened);
  call.forwarded_in = true;
  return std::nullopt;
}

std::optional<HttpError> Router::PlaceCall(Call& call, const RequestHead& head) {
  const TenantOwner owner = options_.cluster->OwnerOf(call.tenant->id());
  switch (owner.kind) {
    case TenantOwner::Kind::kSelf:
      return std::nullopt;
    case TenantOwner::Kind::kPeer:
      if (call.forwarded_in) return NotForwardedAgain(call.tenant->id(), owner.node_id);
      call.forward_to = owner.advertise_url;
      call.content_type = SingleHeader(head, "Content-Type").value_or("");
      return std::nullopt;
    case TenantOwner::Kind::kDown:
      return RetryLaterError(
          503, "unavailable",
          StrCat("tenant \"", call.tenant->id(), "\" is on node \"", owner.node_id,
                 "\", which is not alive; it is served again when that node "
                 "returns"),
          5);
    case TenantOwner::Kind::kUnplaced:
      break;
  }
  return RetryLaterError(503, "unavailable",
                         StrCat("tenant \"", call.tenant->id(), "\" has no node in the cluster"),
                         5);
}

HttpError Router::NotForwardedAgain(std::string_view tenant, std::string_view owner) {
  return RetryLaterError(
      503, "unavailable",
      StrCat("tenant \"", tenant, "\" is on node \"", owner, "\" by this node's registry; retry"),
      1);
}

std::optional<HttpError> Router::ForwardCall(Call& call) {
  auto answer = forwarder_->Forward(call.forward_to, {.method = call.method,
                                                      .target = call.target,
                                                      .tenant = call.tenant->id(),
                                                      .content_type = call.content_type,
                                                      .body = call.body});
  if (!answer.ok()) return HttpErrorFromStatus(answer.status());
  *call.res = *std::move(answer);
  return std::nullopt;
}

std::optional<HttpError> Router::ClusterAdminRefusal(const Call& call) const {
  if (options_.cluster == nullptr) {
    switch (call.match.id) {
      case RouteId::kAdminCluster:
      case RouteId::kAdminClusterLimits:
      case RouteId::kAdminMoveTenant:
        return NotInCluster();
      default:
        return std::nullopt;
    }
  }
  switch (call.match.id) {
    case RouteId::kAdminPurgeTenant:
    case RouteId::kAdminImportTenant:
    case RouteId::kAdminRestoreTenant:
    case RouteId::kAdminRestoreArchive:
      return MakeHttpError(501, "not_implemented",
                           StrCat(RouteName(call.match.id),
                                  " is not served in cluster mode yet (a tenant's data is on "
                                  "one node, its registry in etcd)"));
    case RouteId::kAdminExportTenant:
    case RouteId::kAdminStats: {
      const TenantOwner owner = options_.cluster->OwnerOf(call.match.admin_tenant);
      if (owner.kind == TenantOwner::Kind::kSelf || owner.kind == TenantOwner::Kind::kUnplaced) {
        return std::nullopt;
      }
      return MakeHttpError(409, "conflict",
                           StrCat("tenant \"", call.match.admin_tenant, "\"'s data is on node \"",
                                  owner.node_id, "\"",
                                  owner.advertise_url.empty()
                                      ? std::string(" (not alive)")
                                      : StrCat(" at ", owner.advertise_url, ": ask it there")));
    }
    default:
      return std::nullopt;
  }
}

std::shared_ptr<TenantRuntime> Router::RuntimeFor(const Tenant& tenant) {
  const uint64_t number = tenant.number();
  Shard& shard = shards_[number % kShards];
  {
    absl::ReaderMutexLock lock(&shard.mu);
    auto it = shard.tenants.find(number);
    if (it != shard.tenants.end()) return it->second;
  }
  auto runtime = std::make_shared<TenantRuntime>();
  runtime->id = tenant.id();
  runtime->series = metrics_->ResolveTenant(tenant.id());
  absl::MutexLock lock(&shard.mu);
  auto [it, inserted] = shard.tenants.emplace(number, runtime);
  return it->second;
}

void Router::ForgetTenant(const std::string& id, uint64_t number) {
  {
    Shard& shard = shards_[number % kShards];
    absl::MutexLock lock(&shard.mu);
    shard.tenants.erase(number);
  }
  metrics_->ForgetTenant(id);
}

std::optional<HttpError> Router::Execute(Call& call) {
  if (!call.forward_to.empty()) return ForwardCall(call);
  switch (call.match.id) {
    case RouteId::kHealth:
    case RouteId::kVersion:
      break;  // answered on the head (DecideHead)
    case RouteId::kKvGet:
      return KvGet(call);
    case RouteId::kKvPut:
      return KvPut(call);
    case RouteId::kKvDelete:
      return KvDelete(call);
    case RouteId::kKvScan:
      return KvScan(call);
    case RouteId::kBatch:
      return Batch(call);
    case RouteId::kUsage:
      return Usage(call);
    case RouteId::kAdminListTenants:
      return AdminListTenants(call);
    case RouteId::kAdminCreateTenant:
      return AdminCreateTenant(call);
    case RouteId::kAdminGetTenant:
      return AdminGetTenant(call);
    case RouteId::kAdminPutTenant:
      return AdminPutTenant(call);
    case RouteId::kAdminDisableTenant:
      return AdminDisableTenant(call);
    case RouteId::kAdminEnableTenant:
      return AdminEnableTenant(call);
    case RouteId::kAdminPurgeTenant:
      return AdminPurgeTenant(call);
    case RouteId::kAdminListKeys:
      return AdminListKeys(call);
    case RouteId::kAdminCreateKey:
      return AdminCreateKey(call);
    case RouteId::kAdminRevokeKey:
      return AdminRevokeKey(call);
    case RouteId::kAdminStats:
      return AdminStats(call);
    case RouteId::kMetrics:
      return MetricsText(call);
    case RouteId::kAdminCluster:
      return AdminCluster(call);
    case RouteId::kAdminClusterLimits:
      return AdminClusterLimits(call);
    case RouteId::kAdminMoveTenant:
      return AdminMoveTenant(call);
    case RouteId::kClusterReceiveArchive:
      return ClusterReceiveArchive(call);
    case RouteId::kAdminUi:
    case RouteId::kAdminUiScript:
    case RouteId::kAdminUiStyle:
      return AdminUi(call);
    case RouteId::kAdminExportTenant:
      return AdminExportTenant(call);
    case RouteId::kAdminImportTenant:
      return AdminImportTenant(call);
    case RouteId::kAdminRestoreTenant:
      return AdminRestoreTenant(call);
    case RouteId::kAdminCreateBackup:
      return AdminCreateBackup(call);
    case RouteId::kAdminListBackups:
      return AdminListBackups(call);
    case RouteId::kAdminDeleteBackup:
      return AdminDeleteBackup(call);
    case RouteId::kAdminListArchives:
      return AdminListArchives(call);
    case RouteId::kAdminRestoreArchive:
      return AdminRestoreArchive(call);
    case RouteId::kCacheGet:
      return CacheGet(call);
    case RouteId::kCachePut:
      return CachePut(call);
    case RouteId::kCacheDelete:
      return CacheDelete(call);
    case RouteId::kCacheDeletePrefix:
      return CacheDeletePrefix(call);
    case RouteId::kCacheIncr:
      return CacheIncr(call);
    case RouteId::kJobEnqueue:
      return JobEnqueue(call);
    case RouteId::kJobClaim:
      return JobClaim(call);
    case RouteId::kJobAck:
      return JobAck(call);
    case RouteId::kJobNack:
      return JobNack(call);
    case RouteId::kJobGet:
      return JobGet(call);
    case RouteId::kPermitTake:
      return PermitTake(call);
    case RouteId::kPermitRenew:
      return PermitRenew(call);
    case RouteId::kPermitRelease:
      return PermitRelease(call);
    case RouteId::kUnmatched:
      break;
  }
  return MakeHttpError(404, "not_found", "no such route");
}

void Router::Account(Call& call, int status) {
  // Refusals are counted per tenant by the library, where it refuses.
  const double seconds = std::chrono::duration<double>(Clock::now() - call.start).count();
  metrics_->ObserveResponse(call.match.id, status, seconds);
  if (call.runtime != nullptr) call.runtime->series.duration->Observe(seconds);
}

void Router::ReplyError(Call& call, const HttpError& error) {
  HttpResponse& res = *call.res;
  res.status = error.status;
  res.body = ErrorBody(error.code, error.message);
  res.set_header("Content-Type", "application/json");
  if (error.retry_after_seconds.has_value()) {
    res.set_header("Retry-After", std::to_string(*error.retry_after_seconds));
  }
  if (!error.allow.empty()) res.set_header("Allow", error.allow);
  if (error.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  if (error.internal) LogInternal(call, error);
}

void Router::LogInternal(const Call& call, const HttpError& error) {
  logger_->Log(LogLevel::kError,
               StrCat(call.method, " ", RouteName(call.match.id),
                      call.tenant.has_value() ? StrCat(" tenant \"", call.tenant->id(), "\"")
                                              : std::string(),
                      ": ", error.log_detail));
}

}  // namespace tenancy::internal
