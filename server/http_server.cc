#include "http_server.h"

#include <algorithm>

#include "admission.h"
#include "http_transport.h"
#include "router.h"
#include "server_metrics.h"
#include "str_cat.h"
#include "tenancy/tenant.h"

namespace tenancy {

namespace {

// Trusted mode sends requests that name no tenant to the default tenant, so
// it must exist: made here when missing. Idempotent, and it never touches an
// existing tenant (one an admin disabled stays disabled).
absl::Status EnsureDefaultTenant(Engine& engine, const std::string& id, Logger& logger) {
  auto existing = engine.registry().Get(id);
  if (existing.ok()) return absl::OkStatus();
  if (!absl::IsNotFound(existing.status())) return existing.status();
  TenantSpec spec;
  spec.id = id;
  auto created = engine.registry().Create(spec);
  if (absl::IsAlreadyExists(created.status())) return absl::OkStatus();  // made meanwhile
  if (!created.ok()) {
    return absl::Status(
        created.status().code(),
        internal::StrCat("creating the default tenant \"", id, "\": ", created.status().message()));
  }
  logger.Log(LogLevel::kInfo,
             internal::StrCat("created the default tenant \"", id,
                              "\" (trusted mode sends requests that name no tenant to it)"));
  return absl::OkStatus();
}

}  // namespace

HttpServer::HttpServer(ServerOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(ServerOptions options,
                                                              Engine* engine) {
  if (engine == nullptr) return absl::InvalidArgumentError("engine is null");
  if (options.threads < 1 || options.threads > 1024) {
    return absl::InvalidArgumentError("threads must be in [1, 1024]");
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError("port must be in [0, 65535]");
  }
  if (options.max_claim_wait_seconds < 0 || options.max_claim_wait_seconds > 300 ||
      absl::Seconds(options.max_claim_wait_seconds) > engine->options().jobs.max_claim_wait) {
    return absl::InvalidArgumentError(
        "max_claim_wait_seconds must be in [0, 300] and within the engine's "
        "jobs.max_claim_wait");
  }
  if (options.max_waiting_claims < -1 || options.max_waiting_claims >= options.threads ||
      options.max_waiting_claims_per_tenant < -1) {
    return absl::InvalidArgumentError(
        "max_waiting_claims must be in [-1, threads) and "
        "max_waiting_claims_per_tenant >= -1");
  }
  if (options.tenant_headers.empty()) {
    return absl::InvalidArgumentError("tenant_headers: name at least one header");
  }
  for (const std::string& name : options.tenant_headers) {
    if (!internal::IsHttpFieldName(name)) {
      return absl::InvalidArgumentError(
          internal::StrCat("tenant header \"", name, "\" is not an HTTP field name"));
    }
  }
  if (options.cluster != nullptr && options.auth != AuthMode::kApiKey) {
    // Trusted mode makes its default tenant locally, outside the cluster's
    // registry; not yet served.
    return absl::InvalidArgumentError("a cluster's nodes take api-key auth only, for now");
  }
  if ((options.cluster == nullptr) != (options.mover == nullptr)) {
    return absl::InvalidArgumentError("a cluster node needs both its directory and its mover");
  }
  if (options.auth == AuthMode::kTrusted) {
    if (absl::Status s = ValidateTenantId(options.default_tenant); !s.ok()) {
      return absl::InvalidArgumentError(internal::StrCat("default tenant: ", s.message()));
    }
  }
  if (options.logger == nullptr) {
    options.logger = std::shared_ptr<Logger>(std::shared_ptr<Logger>{}, &engine->logger());
  }
  options.transport.worker_threads = options.threads;
  // The server's classes follow the worker count unless given.
  options.default_tenant_limits.try_emplace("requests", int64_t{4} * options.threads);
  options.default_tenant_limits.try_emplace("requests/writes", int64_t{2} * options.threads);
  options.default_tenant_limits.try_emplace("requests/scans", std::max(1, options.threads / 2));
  // Claims that wait for a job hold a worker each: at most half the workers
  // in all, and half of that per tenant.
  const int waiting_claims =
      options.max_waiting_claims >= 0 ? options.max_waiting_claims : options.threads / 2;
  const int waiting_claims_per_tenant = options.max_waiting_claims_per_tenant >= 0
                                            ? options.max_waiting_claims_per_tenant
                                            : std::max(1, waiting_claims / 2);
  options.global_limits.try_emplace(std::string(internal::kClaimWaitsClass), waiting_claims);
  options.default_tenant_limits.try_emplace(std::string(internal::kClaimWaitsClass),
                                            waiting_claims_per_tenant);

  if (options.auth == AuthMode::kTrusted) {
    if (absl::Status s = EnsureDefaultTenant(*engine, options.default_tenant, *options.logger);
        !s.ok()) {
      return s;
    }
  }

  std::unique_ptr<HttpServer> server(new HttpServer(std::move(options)));
  const ServerOptions& o = server->options_;
  auto admission = internal::Admission::Create(
      engine, internal::AdmissionOptions{.default_tenant_limits = o.default_tenant_limits,
                                         .global_limits = o.global_limits});
  if (!admission.ok()) return admission.status();
  server->admission_ = *std::move(admission);
  server->metrics_ = std::make_unique<internal::ServerMetrics>(engine, o.logger);
  server->router_ = std::make_unique<internal::Router>(o, engine, server->metrics_.get(),
                                                       server->admission_.get(), o.logger);
  server->transport_ = std::make_unique<internal::HttpTransport>(o.transport);

  internal::Router* router = server->router_.get();
  internal::HttpTransport& t = *server->transport_;
  t.set_head_handler(
      [router](const internal::RequestHead& head) { return router->DecideHead(head); });
  t.set_request_handler([router](internal::Exchange& exchange) { router->Handle(exchange); });

  auto port = t.Bind(o.host, o.port);
  if (!port.ok()) return port.status();
  server->port_ = *port;
  if (absl::Status s = t.Start(); !s.ok()) return s;
  server->metrics_->WatchTransport(&t);
  return server;
}

HttpServer::~HttpServer() {
  Shutdown();
  if (metrics_ != nullptr) metrics_->StopWatchingTransport();
  transport_.reset();
}

void HttpServer::Shutdown() {
  // Claims waiting for a job end first: the transport waits for every
  // request in flight.
  if (router_ != nullptr) router_->BeginShutdown();
  if (transport_ != nullptr) transport_->Stop();
}

Metrics& HttpServer::metrics() { return metrics_->registry(); }

}  // namespace tenancy
