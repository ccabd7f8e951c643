// The dashboard: GET /admin/ui, /admin/ui/app.js, /admin/ui/app.css.
//
// The page is public and holds no data: it asks for the admin key in the
// browser, keeps it in sessionStorage, and calls the admin API with it like
// any other client. Its script and style are files of their own (not inline),
// so that the Content-Security-Policy can refuse every inline script and
// style and every resource from elsewhere. The admin API sends no CORS
// headers: another origin's page cannot read its answers, with or without
// the key.

#include "dashboard_assets.h"
#include "router.h"
#include "router_call.h"

namespace tenancy::internal {
namespace {

// Sent with each of the dashboard's files.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

void ReplyAsset(HttpResponse& res, std::string_view body, std::string_view content_type) {
  res.status = 200;
  res.body = std::string(body);
  res.set_header("Content-Type", std::string(content_type));
  res.set_header("Content-Security-Policy", std::string(kContentSecurityPolicy));
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cache-Control", "no-cache");
}

}  // namespace

std::optional<HttpError> Router::AdminUi(Call& call) {
  switch (call.match.id) {
    case RouteId::kAdminUiScript:
      ReplyAsset(*call.res, kDashboardScript, "text/javascript; charset=utf-8");
      break;
    case RouteId::kAdminUiStyle:
      ReplyAsset(*call.res, kDashboardStyle, "text/css; charset=utf-8");
      break;
    default:
      ReplyAsset(*call.res, kDashboardHtml, "text/html; charset=utf-8");
      break;
  }
  return std::nullopt;
}

}  // namespace tenancy::internal
