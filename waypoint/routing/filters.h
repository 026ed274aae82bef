#pragma once

// Gateway API filters as pure functions on request and response heads: header modifiers,
// RequestRedirect (the response to send), URLRewrite, and the RequestMirror coin flip. route()
// decides which filters apply; the data path then calls applyRequestFilters() before forwarding
// and applyResponseFilters() on the response (a redirect or error response too).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "model/route_common.h"
#include "waypoint/routing/http_head.h"
#include "waypoint/routing/random_source.h"
#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint {

// set, add, remove; names case-insensitive.
void applyHeaderModifier(const model::HeaderModifier& modifier, Headers& headers);

// ReplacePrefixMatch on a path without query, element-wise as the API's table specifies:
// ("/foo/bar", "/foo", "/xyz") -> "/xyz/bar"; ("/foo", "/foo", "") -> "/"; a trailing '/' of
// the prefix or the replacement does not double or drop a '/'.
std::string replacePathPrefix(std::string_view path, std::string_view prefix,
                              std::string_view replacement);

// The request path after a path modifier, with the original query string kept. For
// ReplacePrefixMatch without a matched prefix (cannot happen for validated routes) the path is
// unchanged.
std::string modifyPath(const model::PathModifier& modifier, std::string_view request_path,
                       const std::optional<std::string>& matched_prefix);

// The redirect response: status and `location` = scheme://host[:port]path[?query]. The scheme,
// host and path default to the request's; the port to the scheme's well-known port when the
// filter sets a scheme, else to `service_port` (the "listener port" of a mesh route). Port 80
// for http and 443 for https are left out.
ResponseHead buildRedirect(const model::RequestRedirect& redirect, const RequestHead& request,
                           uint16_t service_port, const std::optional<std::string>& matched_prefix);

// Host (the whole authority) and path replacement for forwarding.
void applyUrlRewrite(const model::UrlRewrite& rewrite, RequestHead& request,
                     const std::optional<std::string>& matched_prefix);

// Whether a mirror copy is sent this time: numerator/denominator of requests.
bool mirrorFires(const model::RequestMirror& mirror, RandomSource& random);

// RequestHeaderModifier and URLRewrite filters of a Forward decision, in order.
void applyRequestFilters(const RouteDecision& decision, RequestHead& request);
// ResponseHeaderModifier filters of a decision.
void applyResponseFilters(const RouteDecision& decision, ResponseHead& response);

}  // namespace nodemesh::waypoint
