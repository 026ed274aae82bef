// LocalConfigParser: spec.rules of HTTPRoute and GRPCRoute, with their matches, timeouts and the
// CRD's cross-field rules (apis/v1/httproute_types.go, grpcroute_types.go).

#include <algorithm>
#include <utility>

#include "config/local/local_config_parser.h"
#include "model/route_validation.h"

namespace nodemesh::config::local_internal {

namespace {

constexpr std::string_view kHttpRuleFields[] = {"name",        "matches",  "filters",
                                                "backendRefs", "timeouts", "retry"};
constexpr std::string_view kGrpcRuleFields[] = {"name", "matches", "filters", "backendRefs"};
constexpr std::string_view kHttpMatchFields[] = {"path", "headers", "queryParams", "method"};
constexpr std::string_view kGrpcMatchFields[] = {"method", "headers"};
constexpr std::string_view kPathMatchFields[] = {"type", "value"};
constexpr std::string_view kHeaderMatchFields[] = {"type", "name", "value"};
constexpr std::string_view kMethodMatchFields[] = {"type", "service", "method"};
constexpr std::string_view kTimeoutFields[] = {"request", "backendRequest"};
constexpr std::string_view kRetryFields[] = {"codes", "attempts", "backoff"};

// A rule may ask for this many retries at most: more would multiply a failing backend's load
// beyond what the retry budget is there to stop.
constexpr uint32_t kMaxRetryAttempts = 10;

constexpr size_t kMaxRules = 16;
constexpr size_t kMaxMatchesPerRule = 64;
constexpr size_t kMaxMatchesPerRoute = 128;
constexpr size_t kMaxHeaderMatches = 16;

std::optional<model::StringMatchType> readMatchType(YamlReader& r, const FieldMap& f,
                                                    std::string_view what) {
  auto node = f.get("type");
  if (!node) return model::StringMatchType::Exact;
  using Type = model::StringMatchType;
  return r.readEnum<Type>(*node, f.pathOf("type"), what,
                          {{"Exact", Type::Exact}, {"RegularExpression", Type::RegularExpression}});
}

bool hasPrefixReplace(const std::vector<model::RouteFilter>& filters) {
  return std::any_of(filters.begin(), filters.end(), [](const model::RouteFilter& f) {
    const std::optional<model::PathModifier>* path = nullptr;
    if (const auto* redirect = std::get_if<model::RequestRedirect>(&f.config)) {
      path = &redirect->path;
    } else if (const auto* rewrite = std::get_if<model::UrlRewrite>(&f.config)) {
      path = &rewrite->path;
    }
    return path != nullptr && path->has_value() &&
           (*path)->type == model::PathModifierType::ReplacePrefixMatch;
  });
}

}  // namespace

void LocalConfigParser::readHttpRules(const FieldMap& spec, const std::string& route_namespace,
                                      std::vector<model::HttpRouteRule>& out) {
  auto node = spec.get("rules");
  std::vector<std::optional<std::string>> names;
  size_t matches = 0;
  if (node && node->IsSequence() && node->size() == 0) {
    r_.problem(*node, spec.pathOf("rules"), "an HTTPRoute needs at least one rule (or none given)");
  }
  if (node) {
    r_.forEachItem(
        *node, spec.pathOf("rules"), [&](const YAML::Node& item, const std::string& path) {
          FieldMap f(r_, item, path, "HTTPRoute rule", kHttpRuleFields);
          if (!f.valid()) return;
          model::HttpRouteRule rule;
          if (auto n = f.get("name")) {
            if (auto v = r_.readString(*n, f.pathOf("name"))) {
              if (auto ok = model::checkSectionName(*v); !ok) {
                r_.problem(*n, f.pathOf("name"), "invalid rule name: " + ok.error().message);
              }
              rule.name = *v;
            }
          }
          names.push_back(rule.name);
          if (auto m = f.get("matches")) {
            r_.forEachItem(*m, f.pathOf("matches"),
                           [&](const YAML::Node& mi, const std::string& mp) {
                             if (rule.matches.size() == kMaxMatchesPerRule) {
                               r_.problem(mi, mp, "more than 64 matches in a rule");
                               return;
                             }
                             if (auto match = readHttpMatch(mi, mp))
                               rule.matches.push_back(std::move(*match));
                           });
          }
          // The API's default: one PathPrefix "/" match, which matches every request.
          if (rule.matches.empty()) rule.matches.emplace_back();
          matches += rule.matches.size();
          if (auto v = f.get("filters")) {
            readFilters(*v, f.pathOf("filters"), RouteKind::Http, route_namespace, rule.filters);
          }
          if (auto v = f.get("backendRefs")) {
            readBackendRefs(*v, f.pathOf("backendRefs"), RouteKind::Http, route_namespace,
                            rule.backend_refs);
          }
          if (auto v = f.get("timeouts")) {
            if (auto t = readTimeouts(*v, f.pathOf("timeouts"))) rule.timeouts = *t;
          }
          if (auto v = f.get("retry")) rule.retry = readRetry(*v, f.pathOf("retry"));
          checkHttpRule(item, path, rule);
          out.push_back(std::move(rule));
        });
    checkRuleLimits(*node, spec.pathOf("rules"), names, matches);
  }
  // The API's default when spec.rules is absent: one rule matching everything, no backends.
  if (!node) out.emplace_back().matches.emplace_back();
}

void LocalConfigParser::checkHttpRule(const YAML::Node& node, const std::string& path,
                                      const model::HttpRouteRule& rule) {
  bool one_prefix_match =
      rule.matches.size() == 1 && rule.matches[0].path.type == model::PathMatchType::PathPrefix;
  bool prefix_replace = hasPrefixReplace(rule.filters);
  for (const model::RouteBackendRef& b : rule.backend_refs) {
    prefix_replace = prefix_replace || hasPrefixReplace(b.filters);
  }
  if (prefix_replace && !one_prefix_match) {
    r_.problem(node, path,
               "a ReplacePrefixMatch path modifier needs exactly one match, of type PathPrefix");
  }
  bool redirect = std::any_of(rule.filters.begin(), rule.filters.end(), [](const auto& f) {
    return f.type == model::FilterType::RequestRedirect;
  });
  if (redirect && !rule.backend_refs.empty()) {
    r_.problem(node, path, "RequestRedirect filter must not be used together with backendRefs");
  }
}

void LocalConfigParser::checkRuleLimits(const YAML::Node& rules, const std::string& path,
                                        const std::vector<std::optional<std::string>>& names,
                                        size_t matches) {
  if (names.size() > kMaxRules) r_.problem(rules, path, "more than 16 rules");
  if (matches > kMaxMatchesPerRoute) {
    r_.problem(rules, path, "more than 128 matches over all rules of a route");
  }
  std::set<std::string> seen;
  for (const auto& name : names) {
    if (name && !seen.insert(*name).second) {
      r_.problem(rules, path, "rule name '" + *name + "' must be unique within the route");
    }
  }
}

std::optional<model::HttpRouteMatch> LocalConfigParser::readHttpMatch(const YAML::Node& node,
                                                                      const std::string& path) {
  FieldMap f(r_, node, path, "HTTPRoute match", kHttpMatchFields);
  if (!f.valid()) return std::nullopt;
  model::HttpRouteMatch match;
  bool ok = true;
  if (auto p = f.get("path")) {
    FieldMap pf(r_, *p, f.pathOf("path"), "path match", kPathMatchFields);
    if (!pf.valid()) return std::nullopt;
    using Type = model::PathMatchType;
    if (auto t = pf.get("type")) {
      auto type = r_.readEnum<Type>(*t, pf.pathOf("type"), "path match type",
                                    {{"Exact", Type::Exact},
                                     {"PathPrefix", Type::PathPrefix},
                                     {"RegularExpression", Type::RegularExpression}});
      if (!type) return std::nullopt;
      match.path.type = *type;
    }
    if (auto v = pf.get("value")) {
      auto text = r_.readString(*v, pf.pathOf("value"));
      if (!text) return std::nullopt;
      match.path.value = *text;
      auto valid = match.path.type == Type::RegularExpression ? model::checkRegex(*text)
                                                              : model::checkPathValue(*text);
      if (!valid) {
        r_.problem(*v, pf.pathOf("value"), "invalid path: " + valid.error().message);
        ok = false;
      }
    }
  }
  if (auto h = f.get("headers")) readHeaderMatches(*h, f.pathOf("headers"), false, match.headers);
  if (auto q = f.get("queryParams")) {
    readHeaderMatches(*q, f.pathOf("queryParams"), true, match.query_params);
  }
  if (auto m = f.get("method")) {
    auto method = r_.readEnum<std::string>(*m, f.pathOf("method"), "method",
                                           {{"GET", "GET"},
                                            {"HEAD", "HEAD"},
                                            {"POST", "POST"},
                                            {"PUT", "PUT"},
                                            {"DELETE", "DELETE"},
                                            {"CONNECT", "CONNECT"},
                                            {"OPTIONS", "OPTIONS"},
                                            {"TRACE", "TRACE"},
                                            {"PATCH", "PATCH"}});
    ok = ok && method.has_value();
    match.method = method;
  }
  return ok ? std::optional(std::move(match)) : std::nullopt;
}

void LocalConfigParser::readHeaderMatches(const YAML::Node& node, const std::string& path,
                                          bool query_params, std::vector<model::HeaderMatch>& out) {
  std::map<std::string, int, std::less<>> seen;
  std::string_view what = query_params ? "query param match" : "header match";
  r_.forEachItem(node, path, [&](const YAML::Node& item, const std::string& item_path) {
    if (out.size() == kMaxHeaderMatches) {
      r_.problem(item, item_path, "more than 16 " + std::string(what) + "es");
      return;
    }
    FieldMap f(r_, item, item_path, std::string(what), kHeaderMatchFields);
    if (!f.valid()) return;
    model::HeaderMatch match;
    auto type = readMatchType(r_, f, std::string(what) + " type");
    readRequiredString(f, "name", match.name);
    readRequiredString(f, "value", match.value);
    if (!type || !f.get("name") || !f.get("value")) return;
    match.type = *type;
    if (auto valid = model::checkHeaderName(match.name); !valid) {
      r_.problem(item, f.pathOf("name"), "invalid name: " + valid.error().message);
      return;
    }
    size_t max_value = query_params ? 1024 : 4096;
    if (match.value.empty() || match.value.size() > max_value) {
      r_.problem(item, f.pathOf("value"),
                 "value must be 1 to " + std::to_string(max_value) + " characters");
      return;
    }
    if (match.type == model::StringMatchType::RegularExpression) {
      if (auto valid = model::checkRegex(match.value); !valid) {
        r_.problem(item, f.pathOf("value"), "invalid value: " + valid.error().message);
        return;
      }
    }
    // Header names compare case-insensitively, query parameter names exactly. The API server
    // rejects repeated names (listMapKey=name); nodemesh does the same, case-insensitively for
    // headers, rather than silently ignoring the later entry as the spec allows.
    std::string key = query_params ? match.name : lower(match.name);
    auto [prev, inserted] = seen.emplace(key, YamlReader::lineOf(item));
    if (!inserted) {
      r_.problem(item, item_path,
                 "duplicate " + std::string(what) + " name '" + match.name + "' (first at line " +
                     std::to_string(prev->second) + ")");
      return;
    }
    out.push_back(std::move(match));
  });
}

std::optional<model::RouteTimeouts> LocalConfigParser::readTimeouts(const YAML::Node& node,
                                                                    const std::string& path) {
  FieldMap f(r_, node, path, "timeouts", kTimeoutFields);
  if (!f.valid()) return std::nullopt;
  model::RouteTimeouts out;
  bool ok = true;
  for (std::string_view key : kTimeoutFields) {
    auto v = f.get(key);
    if (!v) continue;
    auto text = r_.readString(*v, f.pathOf(key));
    if (!text) {
      ok = false;
      continue;
    }
    auto d = model::parseGatewayDuration(*text);
    if (!d) {
      r_.problem(*v, f.pathOf(key), "invalid duration: " + d.error().message);
      ok = false;
      continue;
    }
    (key == "request" ? out.request : out.backend_request) = *d;
  }
  if (ok && out.request && out.backend_request && out.request->count() != 0 &&
      *out.backend_request > *out.request) {
    r_.problem(node, path, "backendRequest timeout cannot be longer than request timeout");
    ok = false;
  }
  return ok ? std::optional(out) : std::nullopt;
}

std::optional<model::RouteRetry> LocalConfigParser::readRetry(const YAML::Node& node,
                                                              const std::string& path) {
  FieldMap f(r_, node, path, "retry", kRetryFields);
  if (!f.valid()) return std::nullopt;
  model::RouteRetry out;
  bool ok = true;
  if (auto v = f.get("codes")) {
    r_.forEachItem(*v, f.pathOf("codes"), [&](const YAML::Node& item, const std::string& p) {
      auto code = r_.readUint32(item, p);
      if (!code) {
        ok = false;
        return;
      }
      // HTTPRouteRetryStatusCode: +kubebuilder:validation:Minimum=400, Maximum=599.
      if (*code < 400 || *code > 599) {
        r_.problem(item, p,
                   "a retry code must be between 400 and 599, not " + std::to_string(*code));
        ok = false;
        return;
      }
      if (std::find(out.codes.begin(), out.codes.end(), *code) == out.codes.end()) {
        out.codes.push_back(static_cast<int>(*code));
      }
    });
  }
  if (auto v = f.get("attempts")) {
    if (auto n = r_.readUint32(*v, f.pathOf("attempts"))) {
      if (*n > kMaxRetryAttempts) {
        r_.problem(*v, f.pathOf("attempts"),
                   "retry attempts must be between 0 and " + std::to_string(kMaxRetryAttempts) +
                       ", not " + std::to_string(*n));
        ok = false;
      } else {
        out.attempts = *n;
      }
    } else {
      ok = false;
    }
  }
  if (auto v = f.get("backoff")) {
    if (auto text = r_.readString(*v, f.pathOf("backoff"))) {
      auto d = model::parseGatewayDuration(*text);
      if (!d) {
        r_.problem(*v, f.pathOf("backoff"), "invalid duration: " + d.error().message);
        ok = false;
      } else {
        out.backoff = *d;
      }
    } else {
      ok = false;
    }
  }
  return ok ? std::optional(out) : std::nullopt;
}

void LocalConfigParser::readGrpcRules(const FieldMap& spec, const std::string& route_namespace,
                                      std::vector<model::GrpcRouteRule>& out) {
  // Unlike HTTPRoute, the GRPCRoute API has no default rule: no rules route nothing.
  auto node = spec.get("rules");
  if (!node) return;
  std::vector<std::optional<std::string>> names;
  size_t matches = 0;
  r_.forEachItem(*node, spec.pathOf("rules"), [&](const YAML::Node& item, const std::string& path) {
    FieldMap f(r_, item, path, "GRPCRoute rule", kGrpcRuleFields);
    if (!f.valid()) return;
    model::GrpcRouteRule rule;
    if (auto n = f.get("name")) {
      if (auto v = r_.readString(*n, f.pathOf("name"))) {
        if (auto ok = model::checkSectionName(*v); !ok) {
          r_.problem(*n, f.pathOf("name"), "invalid rule name: " + ok.error().message);
        }
        rule.name = *v;
      }
    }
    names.push_back(rule.name);
    if (auto m = f.get("matches")) {
      r_.forEachItem(*m, f.pathOf("matches"), [&](const YAML::Node& mi, const std::string& mp) {
        if (rule.matches.size() == kMaxMatchesPerRule) {
          r_.problem(mi, mp, "more than 64 matches in a rule");
          return;
        }
        if (auto match = readGrpcMatch(mi, mp)) rule.matches.push_back(std::move(*match));
      });
    }
    matches += rule.matches.size();
    if (auto v = f.get("filters")) {
      readFilters(*v, f.pathOf("filters"), RouteKind::Grpc, route_namespace, rule.filters);
    }
    if (auto v = f.get("backendRefs")) {
      readBackendRefs(*v, f.pathOf("backendRefs"), RouteKind::Grpc, route_namespace,
                      rule.backend_refs);
    }
    out.push_back(std::move(rule));
  });
  checkRuleLimits(*node, spec.pathOf("rules"), names, matches);
}

std::optional<model::GrpcRouteMatch> LocalConfigParser::readGrpcMatch(const YAML::Node& node,
                                                                      const std::string& path) {
  FieldMap f(r_, node, path, "GRPCRoute match", kGrpcMatchFields);
  if (!f.valid()) return std::nullopt;
  model::GrpcRouteMatch match;
  if (auto m = f.get("method")) {
    FieldMap mf(r_, *m, f.pathOf("method"), "gRPC method match", kMethodMatchFields);
    if (!mf.valid()) return std::nullopt;
    model::GrpcMethodMatch method;
    auto type = readMatchType(r_, mf, "gRPC method match type");
    if (!type) return std::nullopt;
    method.type = *type;
    readString(mf, "service", method.service);
    readString(mf, "method", method.method);
    if (method.service.empty() && method.method.empty()) {
      r_.problem(*m, f.pathOf("method"), "one or both of 'service' or 'method' must be specified");
      return std::nullopt;
    }
    bool ok = true;
    for (auto [key, value] :
         {std::pair<std::string_view, const std::string*>{"service", &method.service},
          {"method", &method.method}}) {
      if (value->empty()) continue;
      Status valid = okStatus();
      if (method.type == model::StringMatchType::RegularExpression) {
        valid = model::checkRegex(*value);
      } else {
        valid = key == "service" ? model::checkGrpcService(*value) : model::checkGrpcMethod(*value);
      }
      if (!valid) {
        r_.problem(*mf.get(key), mf.pathOf(key),
                   "invalid " + std::string(key) + ": " + valid.error().message);
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    match.method = std::move(method);
  }
  if (auto h = f.get("headers")) readHeaderMatches(*h, f.pathOf("headers"), false, match.headers);
  return match;
}

}  // namespace nodemesh::config::local_internal
