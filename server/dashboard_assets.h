// The dashboard page of GET /admin/ui: its HTML, script and style sheet,
// compiled into tenancyd from server/dashboard/ (CMake writes the definitions
// at build time, see server/embed_dashboard.cmake), so that the page needs no
// file at run time and loads nothing from outside the server.
//
// Thread safety: constant data.

#ifndef TENANCY_SERVER_DASHBOARD_ASSETS_H_
#define TENANCY_SERVER_DASHBOARD_ASSETS_H_

#include <string_view>

namespace tenancy::internal {

// server/dashboard/index.html, app.js and app.css, byte for byte.
extern const std::string_view kDashboardHtml;
extern const std::string_view kDashboardScript;
extern const std::string_view kDashboardStyle;

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_DASHBOARD_ASSETS_H_
