// Router::Call: one request as the router's steps and route handlers see it.
// Private to router*.cc and routes_*.cc.

#ifndef TENANCY_SERVER_ROUTER_CALL_H_
#define TENANCY_SERVER_ROUTER_CALL_H_

#include <httplib.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "admission.h"
#include "route_table.h"
#include "router.h"
#include "tenancy/tenant.h"

namespace tenancy::internal {

// Not thread-safe: lives on the worker thread serving the request.
struct Router::Call {
  Call(const httplib::Request& request, httplib::Response& response,
       Exchange* ex)
      : req(request),
        res(response),
        exchange(ex),
        start(std::chrono::steady_clock::now()) {}
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  const httplib::Request& req;
  httplib::Response& res;
  Exchange* const exchange;  // nullptr only outside HttpTransport
  const std::chrono::steady_clock::time_point start;

  RouteMatch match;
  // Tenant routes: the tenant the request acts on, and its runtime.
  std::optional<Tenant> tenant;
  std::shared_ptr<TenantRuntime> runtime;
  AdmissionTicket ticket;
  bool via_admin_key = false;
  // The request body, once read.
  std::string body;
};

// Sets a JSON response.
inline void ReplyJson(httplib::Response& res, int status, std::string body) {
  res.status = status;
  res.body = std::move(body);
  res.set_header("Content-Type", "application/json");
}

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_ROUTER_CALL_H_
