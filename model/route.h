#pragma once

// Gateway API HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1) as users write them, with
// the API's defaults filled in. Field names follow the API (apis/v1/httproute_types.go,
// grpcroute_types.go); precedence and matching live in waypoint/routing/.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "model/route_common.h"

namespace nodemesh::model {

enum class PathMatchType { Exact, PathPrefix, RegularExpression };
std::string_view toString(PathMatchType type);

struct PathMatch {
  PathMatchType type = PathMatchType::PathPrefix;
  std::string value = "/";

  bool operator==(const PathMatch&) const = default;
};

// One entry of rules[].matches: every condition must hold (AND).
struct HttpRouteMatch {
  PathMatch path;
  std::vector<HeaderMatch> headers;
  std::vector<HeaderMatch> query_params;  // names compared exactly (case-sensitive)
  std::optional<std::string> method;      // GET, HEAD, POST, ...

  bool operator==(const HttpRouteMatch&) const = default;
};

struct RouteTimeouts {
  std::optional<std::chrono::milliseconds> request;
  std::optional<std::chrono::milliseconds> backend_request;

  bool operator==(const RouteTimeouts&) const = default;
};

// GEP-1731 (HTTPRouteRetry): how the rule's requests are retried. Absent from a rule, the
// waypoint's default applies (Istio's: 2 retries on 503, connection failures and resets).
struct RouteRetry {
  std::vector<int> codes;            // response statuses retried (400-599)
  std::optional<uint32_t> attempts;  // retries after the first try; absent: the default's
  std::optional<std::chrono::milliseconds> backoff;  // base interval; absent: the default's

  bool operator==(const RouteRetry&) const = default;
};

struct HttpRouteRule {
  std::optional<std::string> name;
  // Never empty: the loader puts the API's default (PathPrefix "/") in when none is given.
  std::vector<HttpRouteMatch> matches;
  std::vector<RouteFilter> filters;
  std::vector<RouteBackendRef> backend_refs;
  RouteTimeouts timeouts;
  std::optional<RouteRetry> retry;

  bool operator==(const HttpRouteRule&) const = default;
};

struct HttpRoute {
  RouteMetadata metadata;
  std::vector<ParentRef> parent_refs;
  std::vector<std::string> hostnames;
  // Never empty: the API's default is one rule matching every request.
  std::vector<HttpRouteRule> rules;

  std::string key() const { return metadata.key(); }
  bool operator==(const HttpRoute&) const = default;
};

// GRPCRoute: a method match without service and method is not allowed; one without the other
// matches any service (or any method).
struct GrpcMethodMatch {
  StringMatchType type = StringMatchType::Exact;
  std::string service;  // "pkg.Service"; empty matches any
  std::string method;   // "Method"; empty matches any

  bool operator==(const GrpcMethodMatch&) const = default;
};

struct GrpcRouteMatch {
  std::optional<GrpcMethodMatch> method;
  std::vector<HeaderMatch> headers;

  bool operator==(const GrpcRouteMatch&) const = default;
};

struct GrpcRouteRule {
  std::optional<std::string> name;
  // May be empty: a rule without matches matches every gRPC request.
  std::vector<GrpcRouteMatch> matches;
  std::vector<RouteFilter> filters;
  std::vector<RouteBackendRef> backend_refs;

  bool operator==(const GrpcRouteRule&) const = default;
};

struct GrpcRoute {
  RouteMetadata metadata;
  std::vector<ParentRef> parent_refs;
  std::vector<std::string> hostnames;
  std::vector<GrpcRouteRule> rules;

  std::string key() const { return metadata.key(); }
  bool operator==(const GrpcRoute&) const = default;
};

}  // namespace nodemesh::model
