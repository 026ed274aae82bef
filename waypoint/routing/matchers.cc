#include "waypoint/routing/matchers.h"

#include <re2/re2.h>

namespace nodemesh::waypoint {
namespace {

bool wildcardMatches(std::string_view wildcard, std::string_view host) {
  // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
  std::string_view suffix = wildcard.substr(1);  // ".example.com"
  return host.size() > suffix.size() && host.ends_with(suffix);
}

bool hostnameMatches(std::string_view pattern, std::string_view host) {
  return pattern.starts_with("*.") ? wildcardMatches(pattern, host) : pattern == host;
}

// Two hostname patterns share a host: equal, one wildcard covers the other, or both wildcards
// and one suffix contains the other.
bool patternsIntersect(std::string_view a, std::string_view b) {
  bool wa = a.starts_with("*.");
  bool wb = b.starts_with("*.");
  if (!wa && !wb) return a == b;
  if (wa && !wb) return wildcardMatches(a, b);
  if (!wa && wb) return wildcardMatches(b, a);
  return a.substr(1).ends_with(b.substr(1)) || b.substr(1).ends_with(a.substr(1));
}

std::vector<CompiledHeaderMatch> compileHeaderMatches(const std::vector<model::HeaderMatch>& in,
                                                      bool& valid) {
  std::vector<CompiledHeaderMatch> out;
  out.reserve(in.size());
  for (const model::HeaderMatch& m : in) {
    CompiledHeaderMatch c{&m, {}};
    if (m.type == model::StringMatchType::RegularExpression) {
      c.regex = Regex(m.value);
      valid = valid && c.regex.valid();
    }
    out.push_back(std::move(c));
  }
  return out;
}

// A match on "host" sees the authority: HTTP/2 carries it as :authority, which a Gateway API
// header name cannot spell, and GEP-1294 tells mesh users to match the host this way.
std::optional<std::string> requestHeader(const RequestHead& request, std::string_view name) {
  auto value = headerValue(request.headers, name);
  if (!value && equalsIgnoreCase(name, "host") && !request.authority.empty()) {
    return request.authority;
  }
  return value;
}

bool headersMatch(const std::vector<CompiledHeaderMatch>& matches, const RequestHead& request) {
  for (const CompiledHeaderMatch& m : matches) {
    auto value = requestHeader(request, m.match->name);
    if (!value || !m.matchesValue(*value)) return false;
  }
  return true;
}

}  // namespace

Regex::Regex(const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<const RE2>(pattern, options);
  if (re->ok()) re_ = std::move(re);
}

bool Regex::fullMatch(std::string_view text) const {
  return re_ != nullptr && RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

bool pathPrefixMatches(std::string_view prefix, std::string_view path) {
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  if (prefix.empty()) return path.starts_with('/');  // "/" matches every path
  if (!path.starts_with(prefix)) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '/';
}

bool CompiledHeaderMatch::matchesValue(std::string_view value) const {
  if (match->type == model::StringMatchType::Exact) return value == match->value;
  return regex.fullMatch(value);
}

CompiledHttpMatch::CompiledHttpMatch(const model::HttpRouteMatch& match) : match_(&match) {
  headers_ = compileHeaderMatches(match.headers, valid_);
  query_params_ = compileHeaderMatches(match.query_params, valid_);
  if (match.path.type == model::PathMatchType::RegularExpression) {
    path_regex_ = Regex(match.path.value);
    valid_ = valid_ && path_regex_.valid();
  }
}

bool CompiledHttpMatch::matches(const RequestHead& request) const {
  std::string_view path = pathWithoutQuery(request.path);
  switch (match_->path.type) {
    case model::PathMatchType::Exact:
      if (path != match_->path.value) return false;
      break;
    case model::PathMatchType::PathPrefix:
      if (!pathPrefixMatches(match_->path.value, path)) return false;
      break;
    case model::PathMatchType::RegularExpression:
      if (!path_regex_.fullMatch(path)) return false;
      break;
  }
  if (match_->method && *match_->method != request.method) return false;
  if (!headersMatch(headers_, request)) return false;
  std::string_view query = queryString(request.path);
  for (const CompiledHeaderMatch& m : query_params_) {
    auto value = queryParam(query, m.match->name);
    if (!value || !m.matchesValue(*value)) return false;
  }
  return true;
}

std::optional<GrpcMethodName> parseGrpcPath(std::string_view path) {
  path = pathWithoutQuery(path);
  if (!path.starts_with('/')) return std::nullopt;
  path.remove_prefix(1);
  size_t slash = path.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == path.size()) {
    return std::nullopt;
  }
  std::string_view method = path.substr(slash + 1);
  if (method.find('/') != std::string_view::npos) return std::nullopt;
  return GrpcMethodName{path.substr(0, slash), method};
}

CompiledGrpcMatch::CompiledGrpcMatch(const model::GrpcRouteMatch& match) : match_(&match) {
  headers_ = compileHeaderMatches(match.headers, valid_);
  if (match.method && match.method->type == model::StringMatchType::RegularExpression) {
    if (!match.method->service.empty()) {
      service_regex_ = Regex(match.method->service);
      valid_ = valid_ && service_regex_.valid();
    }
    if (!match.method->method.empty()) {
      method_regex_ = Regex(match.method->method);
      valid_ = valid_ && method_regex_.valid();
    }
  }
}

bool CompiledGrpcMatch::matches(const RequestHead& request, const GrpcMethodName& name) const {
  if (match_->method) {
    const model::GrpcMethodMatch& m = *match_->method;
    bool regex = m.type == model::StringMatchType::RegularExpression;
    if (!m.service.empty() &&
        !(regex ? service_regex_.fullMatch(name.service) : name.service == m.service)) {
      return false;
    }
    if (!m.method.empty() &&
        !(regex ? method_regex_.fullMatch(name.method) : name.method == m.method)) {
      return false;
    }
  }
  return headersMatch(headers_, request);
}

std::optional<HostnameScore> matchHostnames(const std::vector<std::string>& hostnames,
                                            std::string_view host) {
  if (hostnames.empty()) return HostnameScore{};
  std::optional<HostnameScore> best;
  for (const std::string& h : hostnames) {
    if (!hostnameMatches(h, host)) continue;
    HostnameScore score{h.starts_with("*.") ? 0 : h.size(), h.size()};
    if (!best || *best < score) best = score;
  }
  return best;
}

bool hostnamesIntersect(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.empty() || b.empty()) return true;
  for (const std::string& x : a) {
    for (const std::string& y : b) {
      if (patternsIntersect(x, y)) return true;
    }
  }
  return false;
}

}  // namespace nodemesh::waypoint
