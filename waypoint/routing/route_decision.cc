// RouteTable: from the winning rule to the decision: redirect, backend by weight, filters,
// mirrors.

#include <algorithm>
#include <numeric>
#include <variant>

#include "waypoint/routing/filters.h"
#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint {
namespace {

// The first redirect among the filters. By variant, not by the type tag: a snapshot from a
// source that got them out of step must not make std::get throw on the data path.
const model::RequestRedirect* findRedirect(const std::vector<const model::RouteFilter*>& filters) {
  for (const model::RouteFilter* f : filters) {
    if (const auto* redirect = std::get_if<model::RequestRedirect>(&f->config)) return redirect;
  }
  return nullptr;
}

void fail(RouteDecision& d, std::string reason) {
  d.action = RouteAction::Respond;
  d.status = 500;
  d.response_flag = "NC";
  d.reason = std::move(reason);
  d.response = ResponseHead{500, {}};
}

std::string refName(const model::BackendObjectRef& ref, const std::string& route_namespace) {
  return ref.namespace_name.value_or(route_namespace) + "/" + ref.name;
}

}  // namespace

MatchedRule RouteTable::matchedRule(const Candidate& c) const {
  MatchedRule m;
  m.kind = c.route.kind;
  m.rule_index = c.rule;
  m.match_index = c.match;
  if (c.route.kind == RouteKind::Http) {
    const model::HttpRoute& route = *http_[c.route.index].route;
    m.route = &route.metadata;
    m.rule_name = route.rules[c.rule].name;
    m.backend_refs = &route.rules[c.rule].backend_refs;
    m.rule_filters = &route.rules[c.rule].filters;
  } else {
    const model::GrpcRoute& route = *grpc_[c.route.index].route;
    m.route = &route.metadata;
    m.rule_name = route.rules[c.rule].name;
    m.backend_refs = &route.rules[c.rule].backend_refs;
    m.rule_filters = &route.rules[c.rule].filters;
  }
  return m;
}

RouteDecision RouteTable::decide(const Candidate& winner, const RouteTarget& target,
                                 const RequestHead& request, RandomSource& random) const {
  RouteDecision d;
  d.matched = matchedRule(winner);
  const std::string& route_namespace = d.matched->route->namespace_name;
  if (winner.route.kind == RouteKind::Http) {
    const model::HttpRouteRule& rule = http_[winner.route.index].route->rules[winner.rule];
    d.timeouts = rule.timeouts;
    d.retry = rule.retry;
    const model::PathMatch& path = rule.matches[winner.match].path;
    if (path.type == model::PathMatchType::PathPrefix) d.matched_prefix = path.value;
  }
  for (const model::RouteFilter& f : *d.matched->rule_filters) d.filters.push_back(&f);

  auto redirect = [&](const model::RequestRedirect* config) {
    d.action = RouteAction::Respond;
    d.response = buildRedirect(*config, request, target.port, d.matched_prefix);
    d.status = d.response->status;
    d.reason = d.matched->describe() + ": redirect";
  };
  if (const model::RequestRedirect* config = findRedirect(d.filters)) {
    redirect(config);
    return d;
  }

  const std::vector<model::RouteBackendRef>& backends = *d.matched->backend_refs;
  if (backends.empty()) {
    fail(d, d.matched->describe() + ": the rule has no backendRefs");
    return d;
  }
  uint64_t total = 0;
  for (const model::RouteBackendRef& b : backends) total += b.weight;
  if (total == 0) {
    fail(d, d.matched->describe() + ": every backendRef has weight 0");
    return d;
  }
  // Cumulative weights: backend i owns [sum of weights before i, that sum + weight i), so a
  // weight of 0 owns nothing and is never chosen.
  uint64_t pick = random.below(total);
  const model::RouteBackendRef* chosen = &backends.back();
  for (const model::RouteBackendRef& b : backends) {
    if (pick < b.weight) {
      chosen = &b;
      break;
    }
    pick -= b.weight;
  }
  std::string name = refName(chosen->ref, route_namespace);
  const model::Service* service = snapshot_->serviceByName(name);
  uint16_t port = chosen->ref.port.value_or(target.port);
  if (service == nullptr) {
    fail(d, d.matched->describe() + ": backend service " + name + " does not exist");
    return d;
  }
  if (service->ports.count(port) == 0) {
    fail(d, d.matched->describe() + ": backend service " + name + " has no port " +
                std::to_string(port));
    return d;
  }
  d.action = RouteAction::Forward;
  d.status = 0;
  d.backend = ChosenBackend{service, port, chosen};
  for (const model::RouteFilter& f : chosen->filters) d.filters.push_back(&f);
  if (const model::RequestRedirect* config = findRedirect(d.filters)) {
    redirect(config);  // a backend's own filters may redirect (implementation-specific in the API)
    return d;
  }
  // d.reason stays empty on this path, taken by every forwarded request: explain() writes it
  // (forwardReason) when someone asks.
  for (const model::RouteFilter* f : d.filters) {
    const auto* mirror = std::get_if<model::RequestMirror>(&f->config);
    if (mirror == nullptr) continue;
    const model::Service* to = snapshot_->serviceByName(refName(mirror->backend, route_namespace));
    // A mirror whose service is missing is dropped (the spec: "must be dropped").
    if (to == nullptr || !mirrorFires(*mirror, random)) continue;
    d.mirrors.push_back(MirrorTarget{to, mirror->backend.port.value_or(port), mirror});
  }
  return d;
}

}  // namespace nodemesh::waypoint
