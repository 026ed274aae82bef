#include "waypoint/routing/filters.h"

#include <variant>

namespace nodemesh::waypoint {
namespace {

uint16_t wellKnownPort(std::string_view scheme) {
  return scheme == "https" ? 443 : 80;
}

}  // namespace

void applyHeaderModifier(const model::HeaderModifier& modifier, Headers& headers) {
  for (const model::HttpHeader& h : modifier.set) setHeader(headers, h.name, h.value);
  for (const model::HttpHeader& h : modifier.add) addHeader(headers, h.name, h.value);
  for (const std::string& name : modifier.remove) removeHeader(headers, name);
}

std::string replacePathPrefix(std::string_view path, std::string_view prefix,
                              std::string_view replacement) {
  // The prefix without trailing '/', so that "/" and "/foo/" cover whole elements.
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  if (!path.starts_with(prefix)) return std::string(path);
  std::string_view rest = path.substr(prefix.size());  // "" or "/..."
  std::string out(replacement);
  if (out.ends_with('/') && rest.starts_with('/')) out.pop_back();
  out += rest;
  if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
  return out;
}

std::string modifyPath(const model::PathModifier& modifier, std::string_view request_path,
                       const std::optional<std::string>& matched_prefix) {
  std::string_view path = pathWithoutQuery(request_path);
  std::string_view query = queryString(request_path);
  std::string out;
  if (modifier.type == model::PathModifierType::ReplaceFullPath) {
    out = modifier.value;
  } else if (matched_prefix) {
    out = replacePathPrefix(path, *matched_prefix, modifier.value);
  } else {
    out = std::string(path);
  }
  if (!query.empty()) {
    out += '?';
    out.append(query);
  }
  return out;
}

ResponseHead buildRedirect(const model::RequestRedirect& redirect, const RequestHead& request,
                           uint16_t service_port,
                           const std::optional<std::string>& matched_prefix) {
  std::string scheme = redirect.scheme.value_or(request.scheme);
  std::string host = redirect.hostname.value_or(hostWithoutPort(request.authority));
  uint16_t port = service_port;
  if (redirect.port) {
    port = *redirect.port;
  } else if (redirect.scheme) {
    port = wellKnownPort(*redirect.scheme);
  }
  std::string location = scheme + "://";
  location += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  bool default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
  if (!default_port && port != 0) {
    location += ':';
    location += std::to_string(port);
  }
  if (redirect.path) {
    location += modifyPath(*redirect.path, request.path, matched_prefix);
  } else {
    location += request.path.empty() ? "/" : request.path;
  }
  ResponseHead response;
  response.status = redirect.status_code;
  addHeader(response.headers, "location", location);
  return response;
}

void applyUrlRewrite(const model::UrlRewrite& rewrite, RequestHead& request,
                     const std::optional<std::string>& matched_prefix) {
  if (rewrite.hostname) request.authority = *rewrite.hostname;
  if (rewrite.path) request.path = modifyPath(*rewrite.path, request.path, matched_prefix);
}

bool mirrorFires(const model::RequestMirror& mirror, RandomSource& random) {
  if (mirror.numerator == 0) return false;
  if (mirror.numerator >= mirror.denominator) return true;
  return random.below(mirror.denominator) < mirror.numerator;
}

// By variant, not by the type tag (see findRedirect in route_decision.cc): nothing here may
// throw on the data path. A RequestHeaderModifier and a ResponseHeaderModifier share the
// HeaderModifier payload, so the tag picks between them.
void applyRequestFilters(const RouteDecision& decision, RequestHead& request) {
  for (const model::RouteFilter* f : decision.filters) {
    const auto* headers = std::get_if<model::HeaderModifier>(&f->config);
    if (headers != nullptr && f->type == model::FilterType::RequestHeaderModifier) {
      applyHeaderModifier(*headers, request.headers);
    } else if (const auto* rewrite = std::get_if<model::UrlRewrite>(&f->config)) {
      applyUrlRewrite(*rewrite, request, decision.matched_prefix);
    }
  }
}

void applyResponseFilters(const RouteDecision& decision, ResponseHead& response) {
  for (const model::RouteFilter* f : decision.filters) {
    const auto* headers = std::get_if<model::HeaderModifier>(&f->config);
    if (headers != nullptr && f->type == model::FilterType::ResponseHeaderModifier) {
      applyHeaderModifier(*headers, response.headers);
    }
  }
}

}  // namespace nodemesh::waypoint
