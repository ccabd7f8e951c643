// Admin routes: /admin/tenants..., /admin/cluster, /metrics.
//
// In cluster mode (ServerOptions::cluster) the registry's changes go to
// etcd through the ClusterDirectory, which applies them to this node's
// registry before it returns; reads answer from this node's registry, which
// holds every tenant of the cluster.

#include "cluster_directory.h"
#include "json.h"
#include "request_target.h"
#include "router.h"
#include "router_call.h"
#include "spec_json.h"
#include "str_cat.h"
#include "tenancy/tenant_registry.h"
#include "tenancy/tenant_spec_json.h"

namespace tenancy::internal {
namespace {

HttpError Invalid(std::string message) {
  return MakeHttpError(400, "invalid_argument", std::move(message));
}

// The body of a JSON admin route, parsed; an empty body is an empty object.
void ReplyStatus(HttpResponse& res, int status, std::string_view id, std::string_view state) {
  JsonWriter w;
  w.BeginObject().Key("tenant_id").String(id).Key("status").String(state).EndObject();
  ReplyJson(res, status, w.Release());
}

}  // namespace

std::optional<HttpError> Router::AdminListTenants(Call& call) {
  auto params = ParseQuery(call.match.query);
  if (!params.ok()) return Invalid("bad percent-escape in the query string");
  ListOptions list;
  for (auto& [name, value] : *params) {
    if (name == "start_after") {
      list.start_after = value;
    } else if (name == "limit") {
      size_t limit = 0;
      bool digits = !value.empty() && value.size() <= 5;
      for (char c : value) {
        digits = digits && c >= '0' && c <= '9';
        if (digits) limit = limit * 10 + static_cast<size_t>(c - '0');
      }
      if (!digits || limit < 1 || limit > 1000) {
        return Invalid("limit must be an integer in [1, 1000]");
      }
      list.limit = limit;
    } else {
      return Invalid(StrCat("unknown query parameter \"", PercentEncode(name), "\""));
    }
  }
  auto page = engine_->registry().List(list);
  if (!page.ok()) return HttpErrorFromStatus(page.status());
  JsonWriter w;
  w.BeginObject().Key("tenants").BeginArray();
  for (const TenantInfo& info : page->tenants) WriteTenantSummary(w, info);
  w.EndArray().Key("next_start_after");
  if (page->next_start_after.empty()) {
    w.Null();
  } else {
    w.String(page->next_start_after);
  }
  // For a dashboard's bars: the fraction of a quota that the engine warns at.
  w.Key("quota_warning_fraction").Double(engine_->options().quota_warning_fraction);
  w.EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminCreateTenant(Call& call) {
  auto spec = ParseTenantSpecJson(call.body);
  if (!spec.ok()) return HttpErrorFromStatus(spec.status());
  // One write: the tenant never exists without its key. Unlike the
  // registry's idempotent Create, an existing id is 409 whatever its spec.
  NewApiKey key;
  TenantState state = TenantState::kActive;
  if (options_.cluster != nullptr) {
    auto created = options_.cluster->CreateTenant(*spec);
    if (!created.ok()) return HttpErrorFromStatus(created.status());
    key = std::move(created->key);
    auto info = engine_->registry().Get(spec->id);
    state = info.ok() ? info->state : TenantState::kActive;
  } else {
    auto created = engine_->registry().CreateWithKey(*spec);
    if (!created.ok()) return HttpErrorFromStatus(created.status());
    key = std::move(created->key);
    state = created->info.state;
    logger_->Log(LogLevel::kInfo, StrCat("admin: created tenant \"", spec->id, "\" with API key ",
                                         key.prefix, "..."));
  }
  JsonWriter w;
  w.BeginObject()
      .Key("tenant_id")
      .String(spec->id)
      .Key("api_key")
      .String(key.secret)
      .Key("key_id")
      .String(key.key_id)
      .Key("status")
      .String(TenantStateName(state))
      .EndObject();
  ReplyJson(*call.res, 201, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminPutTenant(Call& call) {
  auto spec = ParseTenantSpecJson(call.body, call.match.admin_tenant);
  if (!spec.ok()) return HttpErrorFromStatus(spec.status());
  TenantInfo info;
  if (options_.cluster != nullptr) {
    absl::Status put = options_.cluster->PutTenant(*spec).status();
    if (!put.ok()) return HttpErrorFromStatus(put);
    auto applied = engine_->registry().Get(spec->id);
    if (!applied.ok()) return HttpErrorFromStatus(applied.status());
    info = *std::move(applied);
  } else {
    auto result = engine_->registry().Upsert(*spec);
    if (!result.ok()) return HttpErrorFromStatus(result.status());
    info = std::move(result->info);
  }
  JsonWriter w;
  WriteTenantDetail(w, info, admission_->EffectiveLimits(info.spec));
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminGetTenant(Call& call) {
  auto info = engine_->registry().Get(call.match.admin_tenant);
  if (!info.ok()) return HttpErrorFromStatus(info.status());
  JsonWriter w;
  WriteTenantDetail(w, *info, admission_->EffectiveLimits(info->spec));
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminDisableTenant(Call& call) {
  absl::Status s = options_.cluster != nullptr
                       ? options_.cluster->SetEnabled(call.match.admin_tenant, false)
                       : engine_->registry().Disable(call.match.admin_tenant);
  if (!s.ok()) return HttpErrorFromStatus(s);
  ReplyStatus(*call.res, 200, call.match.admin_tenant, "disabled");
  return std::nullopt;
}

std::optional<HttpError> Router::AdminEnableTenant(Call& call) {
  TenantRegistry& registry = engine_->registry();
  absl::Status s = options_.cluster != nullptr
                       ? options_.cluster->SetEnabled(call.match.admin_tenant, true)
                       : registry.Enable(call.match.admin_tenant);
  if (!s.ok()) return HttpErrorFromStatus(s);
  auto info = registry.Get(call.match.admin_tenant);
  if (!info.ok()) return HttpErrorFromStatus(info.status());
  ReplyStatus(*call.res, 200, call.match.admin_tenant, TenantStateName(info->state));
  return std::nullopt;
}

std::optional<HttpError> Router::AdminPurgeTenant(Call& call) {
  if (IsLifecycleCall(call)) return AdminArchiveAndPurge(call);
  auto params = ParseQuery(call.match.query);
  if (!params.ok()) return Invalid("bad percent-escape in the query string");
  for (const auto& [name, value] : *params) {
    if (name != "archive") {
      return Invalid(StrCat("unknown query parameter \"", PercentEncode(name), "\""));
    }
    if (value != "false") return Invalid("archive must be true or false");
  }
  const std::string& id = call.match.admin_tenant;
  auto info = engine_->registry().Get(id);
  if (!info.ok()) return HttpErrorFromStatus(info.status());
  absl::Status s = engine_->registry().Purge(id);
  if (!s.ok()) return HttpErrorFromStatus(s);
  ForgetTenant(id, info->number);
  logger_->Log(LogLevel::kInfo, StrCat("admin: purged tenant \"", id, "\""));
  ReplyStatus(*call.res, 200, id, "purged");
  return std::nullopt;
}

std::optional<HttpError> Router::AdminListKeys(Call& call) {
  auto keys = engine_->registry().ListApiKeys(call.match.admin_tenant);
  if (!keys.ok()) return HttpErrorFromStatus(keys.status());
  JsonWriter w;
  w.BeginObject().Key("keys").BeginArray();
  for (const ApiKeyInfo& k : *keys) {
    w.BeginObject().Key("key_id").String(k.key_id).Key("prefix").String(k.prefix);
    w.Key("created_at");
    WriteTime(w, k.created_at);
    w.EndObject();
  }
  w.EndArray().EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminCreateKey(Call& call) {
  auto key = options_.cluster != nullptr
                 ? options_.cluster->CreateApiKey(call.match.admin_tenant)
                 : engine_->registry().CreateApiKey(call.match.admin_tenant);
  if (!key.ok()) return HttpErrorFromStatus(key.status());
  logger_->Log(LogLevel::kInfo, StrCat("admin: new API key ", key->prefix, "... for tenant \"",
                                       call.match.admin_tenant, "\""));
  JsonWriter w;
  w.BeginObject()
      .Key("key_id")
      .String(key->key_id)
      .Key("api_key")
      .String(key->secret)
      .Key("prefix")
      .String(key->prefix)
      .EndObject();
  ReplyJson(*call.res, 201, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminRevokeKey(Call& call) {
  absl::Status s =
      options_.cluster != nullptr
          ? options_.cluster->RevokeApiKey(call.match.admin_tenant, call.match.key_id)
          : engine_->registry().RevokeApiKey(call.match.admin_tenant, call.match.key_id);
  if (!s.ok()) return HttpErrorFromStatus(s);
  call.res->status = 204;
  return std::nullopt;
}

std::optional<HttpError> Router::AdminStats(Call& call) {
  auto info = engine_->registry().Get(call.match.admin_tenant);
  if (!info.ok()) return HttpErrorFromStatus(info.status());
  JsonWriter w;
  w.BeginObject()
      .Key("tenant_id")
      .String(info->spec.id)
      .Key("storage_used_bytes")
      .Uint(info->usage.bytes)
      .Key("storage_used_mb")
      .Double(static_cast<double>(info->usage.bytes) / kBytesPerMb)
      .Key("quota_mb")
      .Double(static_cast<double>(info->spec.quota.storage_bytes) / kBytesPerMb)
      .Key("keys")
      .Uint(info->usage.keys)
      .Key("api_calls_today")
      .Uint(info->requests.calls_today)
      .Key("last_active");
  WriteTime(w, info->requests.last_active);
  w.EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::MetricsText(Call& call) {
  call.res->status = 200;
  call.res->body = metrics_->registry().ExpositionText();
  call.res->set_header("Content-Type", std::string(kPrometheusTextContentType));
  return std::nullopt;
}

std::optional<HttpError> Router::AdminCluster(Call& call) {
  // On a node alone: 404 in Prepare (ClusterAdminRefusal).
  const ClusterView view = options_.cluster->View();
  auto limits = [](JsonWriter& w, const ConcurrencyLimits& limits) {
    w.BeginObject();
    for (const auto& [name, limit] : limits) w.Key(name).Int(limit);
    w.EndObject();
  };
  JsonWriter w;
  w.BeginObject()
      .Key("node_id")
      .String(view.self)
      .Key("etcd_connected")
      .Bool(view.etcd_connected)
      .Key("revision")
      .Int(view.revision)
      .Key("global_limits");
  limits(w, view.global_limits);
  w.Key("global_limits_here");
  limits(w, view.global_limits_here);
  w.Key("nodes").BeginArray();
  for (const ClusterNodeView& node : view.nodes) {
    w.BeginObject().Key("id").String(node.id).Key("advertise_url");
    if (node.alive) {
      w.String(node.advertise_url);
    } else {
      w.Null();
    }
    w.Key("alive").Bool(node.alive).Key("tenants").BeginArray();
    for (const std::string& tenant : node.tenants) w.String(tenant);
    w.EndArray().EndObject();
  }
  w.EndArray().EndObject();
  ReplyJson(*call.res, 200, w.Release());
  return std::nullopt;
}

std::optional<HttpError> Router::AdminClusterLimits(Call& call) {
  // On a node alone: 404 in Prepare (ClusterAdminRefusal).
  auto object = ParseJsonObject(ThreadLocalJsonParser(), call.body);
  if (!object.ok()) return HttpErrorFromStatus(object.status());
  JsonObjectReader r(*object, "limits");
  auto global = r.OptionalObject("global_limits");
  if (!global.ok()) return HttpErrorFromStatus(global.status());
  if (absl::Status s = r.Finish(); !s.ok()) return HttpErrorFromStatus(s);
  if (!global->has_value()) {
    return MakeHttpError(400, "invalid_argument",
                         "limits: field \"global_limits\" (an object of class: limit) is required");
  }
  ConcurrencyLimits limits;
  for (auto member : **global) {
    int64_t limit;
    if (member.value.get_int64().get(limit) || limit < 0) {
      return MakeHttpError(
          400, "invalid_argument",
          StrCat("limits: global_limits.", member.key, " must be a non-negative integer"));
    }
    limits.emplace(std::string(member.key), limit);
  }
  if (absl::Status s = options_.cluster->SetGlobalLimits(limits); !s.ok()) {
    return HttpErrorFromStatus(s);
  }
  logger_->Log(LogLevel::kInfo,
               StrCat("admin: cluster-wide global limits set (", limits.size(), " classes)"));
  return AdminCluster(call);
}

}  // namespace tenancy::internal
