#pragma once

// The parts of Gateway API routes (gateway.networking.k8s.io/v1) that HTTPRoute and GRPCRoute
// share: object metadata, parent and backend references, header matches and the filters both
// kinds accept. Values are kept as users write them, with the API's defaults filled in by the
// loader; the waypoint's routing engine (waypoint/routing/) compiles them.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nodemesh::model {

struct RouteMetadata {
  std::string name;
  std::string namespace_name;
  // Absent in hand-written files; such routes sort after every timestamped one when the
  // precedence rules ask for "the oldest route".
  std::optional<std::chrono::sys_seconds> creation_timestamp;

  // "namespace/name", the order the precedence rules use after the timestamp.
  std::string key() const { return namespace_name + "/" + name; }
  bool operator==(const RouteMetadata&) const = default;
};

// spec.parentRefs[]. The API's defaults are group "gateway.networking.k8s.io" and kind
// "Gateway"; a mesh route names a Service with group "" and kind "Service" (GAMMA).
struct ParentRef {
  std::string group = "gateway.networking.k8s.io";
  std::string kind = "Gateway";
  std::optional<std::string> namespace_name;  // defaults to the route's namespace
  std::string name;
  std::optional<uint16_t> port;
  std::optional<std::string> section_name;

  bool isService() const { return group.empty() && kind == "Service"; }
  bool operator==(const ParentRef&) const = default;
};

// A BackendObjectReference: group "" and kind "Service" by default; the loader only accepts
// Services.
struct BackendObjectRef {
  std::string group;
  std::string kind = "Service";
  std::string name;
  std::optional<std::string> namespace_name;  // defaults to the route's namespace
  std::optional<uint16_t> port;

  bool operator==(const BackendObjectRef&) const = default;
};

// Exact is the API's default; RegularExpression uses RE2 syntax (full match), as Envoy does.
enum class StringMatchType { Exact, RegularExpression };
std::string_view toString(StringMatchType type);

struct HeaderMatch {
  StringMatchType type = StringMatchType::Exact;
  std::string name;  // as written; compared case-insensitively
  std::string value;

  bool operator==(const HeaderMatch&) const = default;
};

struct HttpHeader {
  std::string name;
  std::string value;

  bool operator==(const HttpHeader&) const = default;
};

// RequestHeaderModifier / ResponseHeaderModifier. The loader rejects a header name that appears
// in more than one action, so the order of the three does not matter.
struct HeaderModifier {
  std::vector<HttpHeader> set;
  std::vector<HttpHeader> add;
  std::vector<std::string> remove;

  bool operator==(const HeaderModifier&) const = default;
};

// RequestMirror: `percent` and `fraction` both become numerator/denominator; neither means all.
struct RequestMirror {
  BackendObjectRef backend;
  uint32_t numerator = 100;
  uint32_t denominator = 100;

  bool operator==(const RequestMirror&) const = default;
};

enum class PathModifierType { ReplaceFullPath, ReplacePrefixMatch };
std::string_view toString(PathModifierType type);

struct PathModifier {
  PathModifierType type = PathModifierType::ReplaceFullPath;
  std::string value;  // replaceFullPath or replacePrefixMatch (may be empty for the latter)

  bool operator==(const PathModifier&) const = default;
};

struct RequestRedirect {
  std::optional<std::string> scheme;  // "http" or "https"; the request's when absent
  std::optional<std::string> hostname;
  std::optional<PathModifier> path;
  std::optional<uint16_t> port;
  int status_code = 302;

  bool operator==(const RequestRedirect&) const = default;
};

struct UrlRewrite {
  std::optional<std::string> hostname;
  std::optional<PathModifier> path;

  bool operator==(const UrlRewrite&) const = default;
};

// The filters nodemesh implements. GRPCRoute uses the first three only. ExtensionRef, CORS and
// ExternalAuth are rejected by the loader: the spec forbids skipping a filter it cannot apply.
enum class FilterType {
  RequestHeaderModifier,
  ResponseHeaderModifier,
  RequestMirror,
  RequestRedirect,
  UrlRewrite
};
std::string_view toString(FilterType type);  // the API's spelling ("URLRewrite")

struct RouteFilter {
  FilterType type = FilterType::RequestHeaderModifier;
  std::variant<HeaderModifier, RequestMirror, RequestRedirect, UrlRewrite> config;

  bool operator==(const RouteFilter&) const = default;
};

// An HTTPBackendRef / GRPCBackendRef.
struct RouteBackendRef {
  BackendObjectRef ref;
  uint32_t weight = 1;  // 0..1,000,000
  std::vector<RouteFilter> filters;

  bool operator==(const RouteBackendRef&) const = default;
};

}  // namespace nodemesh::model
