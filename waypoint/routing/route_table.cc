#include "waypoint/routing/route_table.h"

#include <algorithm>
#include <variant>

#include "waypoint/routing/filters.h"

namespace nodemesh::waypoint {

namespace {

// The precedence facts in order; larger wins.
auto rank(const auto& c) {
  return std::make_tuple(c.host, c.path_rank, c.length, c.method_length, c.method, c.headers,
                         c.query_params);
}

// "Oldest first", where a route without a timestamp is the newest.
bool olderThan(const model::RouteMetadata& a, const model::RouteMetadata& b) {
  if (a.creation_timestamp && b.creation_timestamp) {
    return *a.creation_timestamp < *b.creation_timestamp;
  }
  return a.creation_timestamp.has_value() && !b.creation_timestamp.has_value();
}

// The route-level tie-breaks: oldest, then "namespace/name".
bool routeFirst(const model::RouteMetadata& a, const model::RouteMetadata& b) {
  if (olderThan(a, b)) return true;
  if (olderThan(b, a)) return false;
  return a.key() < b.key();
}

// Does this parentRef attach the route to `service` on `port`?
bool attaches(const model::ParentRef& parent, const std::string& route_namespace,
              const model::Service& service, uint16_t port) {
  if (!parent.isService() || parent.name != service.name) return false;
  if (parent.namespace_name.value_or(route_namespace) != service.namespace_name) return false;
  if (parent.port && *parent.port != port) return false;
  // Service ports have no names in Istio's workload API; the number stands in for the name.
  if (parent.section_name && *parent.section_name != std::to_string(port)) return false;
  return true;
}

template <typename Route>
bool attachesAny(const Route& route, const model::Service& service, uint16_t port) {
  return std::any_of(route.parent_refs.begin(), route.parent_refs.end(), [&](const auto& p) {
    return attaches(p, route.metadata.namespace_name, service, port);
  });
}

}  // namespace

std::string_view toString(RouteKind kind) {
  return kind == RouteKind::Http ? "HTTPRoute" : "GRPCRoute";
}

std::string MatchedRule::describe() const {
  std::string out = std::string(toString(kind)) + " " + (route ? route->key() : "?") + " rule " +
                    std::to_string(rule_index);
  if (rule_name) out += " (" + *rule_name + ")";
  return out + " match " + std::to_string(match_index);
}

RouteTable::RouteTable(model::SnapshotPtr snapshot, RouteTableOptions options)
    : snapshot_(std::move(snapshot)), options_(options) {
  if (!snapshot_) snapshot_ = std::make_shared<const model::Snapshot>();
  for (const model::HttpRoute& route : snapshot_->httpRoutes()) {
    CompiledHttpRoute compiled{&route, {}};
    for (const model::HttpRouteRule& rule : route.rules) {
      auto& matches = compiled.rules.emplace_back();
      for (const model::HttpRouteMatch& m : rule.matches) matches.emplace_back(m);
    }
    http_.push_back(std::move(compiled));
  }
  for (const model::GrpcRoute& route : snapshot_->grpcRoutes()) {
    CompiledGrpcRoute compiled{&route, {}};
    for (const model::GrpcRouteRule& rule : route.rules) {
      auto& matches = compiled.rules.emplace_back();
      for (const model::GrpcRouteMatch& m : rule.matches) matches.emplace_back(m);
    }
    grpc_.push_back(std::move(compiled));
  }
}

const model::RouteMetadata& RouteTable::metadataOf(const Active& a) const {
  return a.kind == RouteKind::Http ? http_[a.index].route->metadata
                                   : grpc_[a.index].route->metadata;
}

const std::vector<std::string>& RouteTable::hostnamesOf(const Active& a) const {
  static const std::vector<std::string> kAny;
  if (!options_.match_hostnames) return kAny;
  return a.kind == RouteKind::Http ? http_[a.index].route->hostnames
                                   : grpc_[a.index].route->hostnames;
}

std::vector<RouteTable::Active> RouteTable::activeRoutes(const model::Service& service,
                                                         const RouteTarget& target,
                                                         RouteTrace* trace) const {
  model::AttachedRoutes attached = snapshot_->routesForService(service.key());
  std::vector<Active> producer;
  std::vector<Active> consumer;
  auto consider = [&](RouteKind kind, size_t index, const auto& route) {
    if (!attachesAny(route, service, target.port)) {
      if (trace) {
        trace->notes.push_back(std::string(toString(kind)) + " " + route.key() +
                               ": no parentRef for port " + std::to_string(target.port));
      }
      return;
    }
    if (route.metadata.namespace_name == service.namespace_name) {
      producer.push_back(Active{kind, index});
    } else if (route.metadata.namespace_name == target.source_namespace) {
      consumer.push_back(Active{kind, index});
    } else if (trace) {
      trace->notes.push_back(std::string(toString(kind)) + " " + route.key() +
                             ": consumer route for clients in namespace " +
                             route.metadata.namespace_name + " only");
    }
  };
  for (const model::HttpRoute* r : attached.http) {
    consider(RouteKind::Http, static_cast<size_t>(r - snapshot_->httpRoutes().data()), *r);
  }
  for (const model::GrpcRoute* r : attached.grpc) {
    consider(RouteKind::Grpc, static_cast<size_t>(r - snapshot_->grpcRoutes().data()), *r);
  }
  if (!consumer.empty()) {
    if (trace && !producer.empty()) {
      trace->notes.push_back("consumer routes of namespace " + target.source_namespace +
                             " take precedence over the service's producer routes (GEP-1686)");
    }
    return consumer;
  }
  return producer;
}

void RouteTable::dropKindConflicts(std::vector<Active>& active, RouteTrace* trace) const {
  std::stable_sort(active.begin(), active.end(), [&](const Active& a, const Active& b) {
    return routeFirst(metadataOf(a), metadataOf(b));
  });
  std::vector<Active> kept;
  for (const Active& a : active) {
    auto conflict = std::find_if(kept.begin(), kept.end(), [&](const Active& k) {
      return k.kind != a.kind && hostnamesIntersect(hostnamesOf(k), hostnamesOf(a));
    });
    if (conflict == kept.end()) {
      kept.push_back(a);
    } else if (trace) {
      trace->notes.push_back(std::string(toString(a.kind)) + " " + metadataOf(a).key() +
                             ": not used, " + std::string(toString(conflict->kind)) + " " +
                             metadataOf(*conflict).key() +
                             " is older and serves the same hostnames");
    }
  }
  active = std::move(kept);
}

std::vector<RouteTable::Candidate> RouteTable::httpCandidates(const std::vector<Active>& active,
                                                              const RequestHead& request) const {
  std::vector<Candidate> out;
  std::string host = hostWithoutPort(request.authority);
  for (const Active& a : active) {
    if (a.kind != RouteKind::Http) continue;
    auto host_score = matchHostnames(hostnamesOf(a), host);
    if (!host_score) continue;
    const CompiledHttpRoute& route = http_[a.index];
    for (size_t r = 0; r < route.rules.size(); ++r) {
      for (size_t m = 0; m < route.rules[r].size(); ++m) {
        const CompiledHttpMatch& match = route.rules[r][m];
        if (!match.matches(request)) continue;
        const model::HttpRouteMatch& spec = match.match();
        Candidate c{a, r, m, *host_score};
        c.path_rank = spec.path.type == model::PathMatchType::Exact               ? 3
                      : spec.path.type == model::PathMatchType::RegularExpression ? 2
                                                                                  : 1;
        c.length = spec.path.value.size();
        c.method = spec.method.has_value();
        c.headers = spec.headers.size();
        c.query_params = spec.query_params.size();
        out.push_back(c);
      }
    }
  }
  return out;
}

std::vector<RouteTable::Candidate> RouteTable::grpcCandidates(const std::vector<Active>& active,
                                                              const RequestHead& request) const {
  std::vector<Candidate> out;
  auto name = parseGrpcPath(request.path);
  if (!name) return out;
  std::string host = hostWithoutPort(request.authority);
  for (const Active& a : active) {
    if (a.kind != RouteKind::Grpc) continue;
    auto host_score = matchHostnames(hostnamesOf(a), host);
    if (!host_score) continue;
    const CompiledGrpcRoute& route = grpc_[a.index];
    for (size_t r = 0; r < route.rules.size(); ++r) {
      if (route.rules[r].empty()) {  // no matches: every gRPC request
        out.push_back(Candidate{a, r, 0, *host_score});
        continue;
      }
      for (size_t m = 0; m < route.rules[r].size(); ++m) {
        const CompiledGrpcMatch& match = route.rules[r][m];
        if (!match.matches(request, *name)) continue;
        Candidate c{a, r, m, *host_score};
        if (const auto& method = match.match().method) {
          c.length = method->service.empty() ? 0 : name->service.size();
          c.method_length = method->method.empty() ? 0 : name->method.size();
        }
        c.headers = match.match().headers.size();
        out.push_back(c);
      }
    }
  }
  return out;
}

RouteDecision RouteTable::route(const RouteTarget& target, const RequestHead& request,
                                RandomSource& random, RouteTrace* trace) const {
  RouteDecision decision;
  const model::Service* service = snapshot_->serviceByKey(target.service_key);
  if (service == nullptr) {
    decision.status = 404;
    decision.response_flag = "NR";
    decision.reason = "unknown service " + target.service_key;
    decision.response = ResponseHead{404, {}};
    return decision;
  }
  std::vector<Active> active = activeRoutes(*service, target, trace);
  if (active.empty()) {
    decision.action = RouteAction::Forward;
    decision.default_route = true;
    decision.reason = "no route attached to " + service->key() + " port " +
                      std::to_string(target.port) + ": default route to the service";
    decision.backend = ChosenBackend{service, target.port, nullptr};
    return decision;
  }
  dropKindConflicts(active, trace);
  bool has_grpc = std::any_of(active.begin(), active.end(),
                              [](const Active& a) { return a.kind == RouteKind::Grpc; });
  std::vector<Candidate> candidates;
  if (target.grpc && has_grpc) candidates = grpcCandidates(active, request);
  // A gRPC request whose host no GRPCRoute serves may still match an HTTPRoute; GRPCRoute and
  // HTTPRoute rules are never merged for one host (dropKindConflicts made sure of that).
  if (candidates.empty()) candidates = httpCandidates(active, request);
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const Candidate& a, const Candidate& b) {
                     if (rank(a) != rank(b)) return rank(a) > rank(b);
                     const model::RouteMetadata& ma = metadataOf(a.route);
                     const model::RouteMetadata& mb = metadataOf(b.route);
                     if (routeFirst(ma, mb)) return true;
                     if (routeFirst(mb, ma)) return false;
                     return std::tie(a.rule, a.match) < std::tie(b.rule, b.match);
                   });
  if (trace) {
    for (const Candidate& c : candidates) trace->matches.push_back(matchedRule(c));
  }
  if (candidates.empty()) {
    decision.status = 404;
    decision.response_flag = "NR";
    decision.reason = "no route rule matched";
    decision.response = ResponseHead{404, {}};
    return decision;
  }
  return decide(candidates.front(), target, request, random);
}

}  // namespace nodemesh::waypoint
