#pragma once

// Gateway API match conditions, compiled once per snapshot and evaluated per request: path
// (Exact, PathPrefix element by element, RegularExpression), headers, query parameters, method,
// gRPC service/method, and route hostnames. Regexes are RE2 and must match the whole value.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "model/route.h"
#include "waypoint/routing/http_head.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace nodemesh::waypoint {

// A compiled regex; invalid() when the pattern does not compile (such a matcher never matches:
// a snapshot from a source that skipped validation must not widen a route).
class Regex {
 public:
  Regex() = default;
  explicit Regex(const std::string& pattern);

  bool valid() const { return re_ != nullptr; }
  bool fullMatch(std::string_view text) const;

 private:
  std::shared_ptr<const re2::RE2> re_;
};

// PathPrefix semantics: element by element, a trailing '/' of the prefix ignored ("/abc" matches
// "/abc", "/abc/" and "/abc/def", not "/abcd").
bool pathPrefixMatches(std::string_view prefix, std::string_view path);

struct CompiledHeaderMatch {
  const model::HeaderMatch* match = nullptr;
  Regex regex;  // for RegularExpression

  bool matchesValue(std::string_view value) const;
};

class CompiledHttpMatch {
 public:
  explicit CompiledHttpMatch(const model::HttpRouteMatch& match);

  const model::HttpRouteMatch& match() const { return *match_; }
  bool matches(const RequestHead& request) const;
  // Whether every regex compiled (explain reports the others).
  bool valid() const { return valid_; }

 private:
  const model::HttpRouteMatch* match_;
  Regex path_regex_;
  std::vector<CompiledHeaderMatch> headers_;
  std::vector<CompiledHeaderMatch> query_params_;
  bool valid_ = true;
};

// "/pkg.Service/Method" split; nullopt when the path is not a gRPC method path.
struct GrpcMethodName {
  std::string_view service;
  std::string_view method;
};
std::optional<GrpcMethodName> parseGrpcPath(std::string_view path);

class CompiledGrpcMatch {
 public:
  explicit CompiledGrpcMatch(const model::GrpcRouteMatch& match);

  const model::GrpcRouteMatch& match() const { return *match_; }
  bool matches(const RequestHead& request, const GrpcMethodName& name) const;
  bool valid() const { return valid_; }

 private:
  const model::GrpcRouteMatch* match_;
  Regex service_regex_;
  Regex method_regex_;
  std::vector<CompiledHeaderMatch> headers_;
  bool valid_ = true;
};

// How well a route's hostnames match a request host, for the precedence rule "characters in a
// matching non-wildcard hostname, then in a matching hostname". A route without hostnames
// matches every host with score {0, 0}.
struct HostnameScore {
  size_t exact_chars = 0;
  size_t any_chars = 0;

  bool operator==(const HostnameScore&) const = default;
  // Written out: clang-tidy 14 flags the literal 0 inside a defaulted operator<=>.
  friend bool operator<(const HostnameScore& a, const HostnameScore& b) {
    return std::tie(a.exact_chars, a.any_chars) < std::tie(b.exact_chars, b.any_chars);
  }
};
std::optional<HostnameScore> matchHostnames(const std::vector<std::string>& hostnames,
                                            std::string_view host);
// Whether two hostname lists can match a common host (empty lists match everything).
bool hostnamesIntersect(const std::vector<std::string>& a, const std::vector<std::string>& b);

}  // namespace nodemesh::waypoint
