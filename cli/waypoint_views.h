#pragma once

// What `nodemeshctl waypoint ...` shows, from the waypoint's admin API (docs/waypoint.md, "Admin
// API"): its routes as a table (one row per rule), and the explanation of a request as the
// waypoint's routing engine wrote it. Pure functions, unit-tested without a waypoint.

#include <cstddef>

#include <nlohmann/json.hpp>

#include "cli/views.h"

namespace nodemesh::cli {

// From GET /routes.
View waypointRoutesView(const nlohmann::json& routes, size_t width);
// From GET /explain/request: its "text" (RouteExplanation::toText()).
View waypointExplainView(const nlohmann::json& explanation);

}  // namespace nodemesh::cli
