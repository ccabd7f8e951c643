// Router::Call: one request as the router's steps and route handlers see it.
// Private to router*.cc and routes_*.cc.

#ifndef TENANCY_SERVER_ROUTER_CALL_H_
#define TENANCY_SERVER_ROUTER_CALL_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "admission.h"
#include "http_transport.h"
#include "route_table.h"
#include "router.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

// Not thread-safe: one thread at a time (the one deciding on the head, then
// the worker running the request). Prepared when the head arrives and handed
// to the request's Exchange as its context, with the request's permit.
struct Router::Call final : public ExchangeContext {
  Call(std::string_view request_method, std::string_view request_target)
      : method(request_method), target(request_target), start(std::chrono::steady_clock::now()) {}

  const std::string method;
  // The raw request target; match.query points into it.
  const std::string target;
  const std::chrono::steady_clock::time_point start;

  // Set when the request runs (Router::Handle).
  HttpResponse* res = nullptr;
  Exchange* exchange = nullptr;

  RouteMatch match;
  // Tenant routes: the tenant the request acts on, and its runtime.
  std::optional<Tenant> tenant;
  std::shared_ptr<TenantRuntime> runtime;
  AdmissionTicket ticket;
  // Admin routes that move a tenant's data: the server's lifecycle slot,
  // given back when the call ends.
  std::shared_ptr<void> lifecycle_slot;
  bool via_admin_key = false;
  // Cluster mode: the owner's URL when the tenant's data is on another node
  // (the call is forwarded there, with the request's Content-Type), and
  // whether this call came forwarded from another node.
  std::string forward_to;
  std::string content_type;
  bool forwarded_in = false;
  // The request body (the transport's buffer; valid while the request runs).
  std::string_view body;
};

// Sets a JSON response.
inline void ReplyJson(HttpResponse& res, int status, std::string body) {
  res.status = status;
  res.body = std::move(body);
  res.set_header("Content-Type", "application/json");
}

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ROUTER_CALL_H_
