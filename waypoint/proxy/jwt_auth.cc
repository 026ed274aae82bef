#include "waypoint/proxy/jwt_auth.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

namespace nodemesh::waypoint {

namespace {

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

// A value for `www-authenticate`'s quoted realm: no quote, backslash or control character
// (RFC 9110 section 5.6.4), whatever the client sent in its authority or path.
std::string quotable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c != '"' && c != '\\' && u >= 0x20 && u != 0x7f) out.push_back(c);
  }
  return out;
}

// The values of claim `name` ("a.b" names a nested claim; a top-level claim whose name holds a
// dot is found too).
const std::vector<std::string>* claimValues(const policy::RequestAuth& auth,
                                            const std::string& name) {
  std::vector<std::string> path;
  size_t start = 0;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', start)) {
    path.push_back(name.substr(start, dot - start));
    start = dot + 1;
  }
  path.push_back(name.substr(start));
  auto it = auth.claims.find(path);
  if (it == auth.claims.end() && path.size() > 1) it = auth.claims.find({name});
  return it == auth.claims.end() ? nullptr : &it->second;
}

bool headerSafe(std::string_view v) {
  return std::none_of(v.begin(), v.end(), [](char c) { return c == '\r' || c == '\n' || c == 0; });
}

}  // namespace

std::string JwtCheck::summary() const {
  switch (result) {
    case Result::kAuthenticated:
      return auth.principal;
    case Result::kRejected:
      return failure ? std::string(auth::toString(failure->reason)) : "invalid";
    case Result::kNoToken:
      return "missing";
    case Result::kNotApplicable:
      break;
  }
  return "-";
}

JwtCheck WaypointJwt::check(const model::Service& service, RequestHead& head,
                            std::chrono::system_clock::time_point now) {
  JwtCheck out;
  if (!snapshot_) return out;
  std::vector<const model::JwtRule*> rules;
  for (const model::RequestAuthentication& ra : snapshot_->requestAuthentications()) {
    if (!ra.appliesTo(service.namespace_name, service.name)) continue;
    for (const model::JwtRule& rule : ra.jwt_rules) rules.push_back(&rule);
  }
  if (rules.empty()) return out;
  out.result = JwtCheck::Result::kNoToken;

  // The first configured location the request fills carries the token.
  const model::JwtHeaderLocation* location = nullptr;
  std::string token;
  for (const model::JwtRule* rule : rules) {
    for (const model::JwtHeaderLocation& loc : rule->from_headers) {
      auto value = headerValue(head.headers, loc.name);
      // RFC 6750 section 2.1: the scheme ("Bearer") is case-insensitive.
      if (!value || !startsWithIgnoreCase(*value, loc.prefix)) continue;
      location = &loc;
      token = value->substr(loc.prefix.size());
      break;
    }
    if (location) break;
  }
  if (!location) return out;

  auto reject = [&](auth::JwtFailure failure) {
    out.result = JwtCheck::Result::kRejected;
    ++stats_.failures[static_cast<size_t>(failure.reason)];
    spdlog::debug("waypoint: JWT refused for {}/{}: {} ({})", service.namespace_name, service.name,
                  failure.message(), failure.detail);
    out.failure = std::move(failure);
    // Envoy's jwt_authn challenge (RFC 6750 section 3).
    out.www_authenticate = "Bearer realm=\"" + quotable(head.scheme) + "://" +
                           quotable(head.authority) + quotable(pathWithoutQuery(head.path)) +
                           "\", error=\"invalid_token\"";
    return out;
  };
  auto parsed = auth::parseJwt(token);
  if (auto* f = std::get_if<auth::JwtFailure>(&parsed)) return reject(std::move(*f));
  const auth::ParsedJwt& jwt = std::get<auth::ParsedJwt>(parsed);
  // The rule of the token's issuer that reads this location (Envoy: the provider whose
  // from_headers found it).
  const model::JwtRule* rule = nullptr;
  for (const model::JwtRule* r : rules) {
    if (r->issuer != jwt.issuer) continue;
    if (std::find(r->from_headers.begin(), r->from_headers.end(), *location) !=
        r->from_headers.end()) {
      rule = r;
      break;
    }
  }
  if (!rule) {
    return reject(auth::JwtFailure{auth::JwtFailureReason::kUnknownIssuer, "iss " + jwt.issuer});
  }
  auto verified =
      auth::verifyJwt(jwt, auth::JwtVerifier{rule->issuer, rule->audiences, rule->jwks}, now);
  if (auto* f = std::get_if<auth::JwtFailure>(&verified)) return reject(std::move(*f));
  out.result = JwtCheck::Result::kAuthenticated;
  out.auth = std::move(std::get<policy::RequestAuth>(verified));
  ++stats_.authenticated;
  const std::string location_name = location->name;  // `location` points into the snapshot
  if (!rule->forward_original_token) removeHeader(head.headers, location_name);
  for (const model::ClaimToHeader& c : rule->output_claim_to_headers) {
    const std::vector<std::string>* values = claimValues(out.auth, c.claim);
    if (!values || values->empty()) continue;
    std::string joined;
    for (const std::string& v : *values) {
      if (!joined.empty()) joined += ',';
      joined += v;
    }
    // A claim is the token issuer's text: never let it end the header (RFC 9110 section 5.5).
    if (headerSafe(joined)) setHeader(head.headers, c.header, joined);
  }
  return out;
}

}  // namespace nodemesh::waypoint
