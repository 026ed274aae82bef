#pragma once

// The waypoint's routing decision: which Gateway API route and rule serve a request to a
// Service, and where it goes. Built once per config snapshot, then called per request (const,
// safe from any number of threads as long as each passes its own RandomSource). A decision
// points into the table's snapshot: keep the table (or the snapshot) while using it.
//
// Rules, from the Gateway API (apis/v1/httproute_types.go, grpcroute_types.go) and GAMMA:
// - A route attaches to a Service through a parentRef with group "" and kind Service; the
//   parentRef's namespace defaults to the route's; `port` must equal the service port of the
//   request; `sectionName` names a port, and since the local format has no port names it must
//   be the port number ("80"). Parents of other kinds (Gateways) are ignored.
// - A route in the Service's namespace is a producer route and applies to every client; a route
//   in another namespace is a consumer route and applies only to clients of that namespace,
//   which then use their consumer routes instead of the producer routes (GEP-1686).
// - An HTTPRoute and a GRPCRoute on the same parent with intersecting hostnames: only the older
//   one (then the alphabetically first "namespace/name") is used.
// - HTTP precedence across all rules of the applicable routes: hostnames (when matched, see
//   RouteTableOptions), then an Exact path, then a RegularExpression path (as Istio orders them;
//   the spec leaves regex precedence to implementations), then the longest PathPrefix, then a
//   method match, then the most header matches, then the most query parameter matches; ties go
//   to the oldest route (no creationTimestamp counts as newest), then "namespace/name"
//   alphabetically, then the first rule in list order.
// - gRPC precedence: hostnames, then the most characters in a matching service, then in a
//   matching method, then the most header matches; the same tie-breaks.
// - No matching rule: 404 with response flag NR (Envoy's "no route"). No route attached at all:
//   the Service itself on the original port.
// - Backends: chosen by weight (a 0 weight is never chosen); no backendRefs or all weights 0:
//   500; a chosen backend whose Service (or port) does not exist: 500, as the spec requires for
//   the share of traffic an invalid backend would have received. Response flag NC for these.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/snapshot.h"
#include "waypoint/routing/http_head.h"
#include "waypoint/routing/matchers.h"
#include "waypoint/routing/random_source.h"

namespace nodemesh::waypoint {

enum class RouteKind { Http, Grpc };
std::string_view toString(RouteKind kind);  // "HTTPRoute", "GRPCRoute"

struct RouteTableOptions {
  // GAMMA (GEP-1294) says mesh implementations SHOULD NOT infer anything from spec.hostnames,
  // and Istio ignores them for Service parents, so by default they are ignored. With true, a
  // route applies only when one of its hostnames matches the request's host (port stripped),
  // and hostname precedence comes first, as for Gateway listeners.
  bool match_hostnames = false;
};

// Which service, port and client a request is for; the waypoint knows these from the HBONE
// CONNECT (the service VIP and port) and the client's SPIFFE identity.
struct RouteTarget {
  std::string service_key;       // "namespace/hostname"
  uint16_t port = 0;             // the service port the client connected to
  std::string source_namespace;  // the client's namespace; empty if unknown (no consumer routes)
  bool grpc = false;             // content-type application/grpc*: GRPCRoutes apply
};

// The route, rule and match that decided.
struct MatchedRule {
  RouteKind kind = RouteKind::Http;
  const model::RouteMetadata* route = nullptr;
  size_t rule_index = 0;
  size_t match_index = 0;  // index in rule.matches; 0 for a gRPC rule without matches
  std::optional<std::string> rule_name;
  const std::vector<model::RouteBackendRef>* backend_refs = nullptr;
  const std::vector<model::RouteFilter>* rule_filters = nullptr;

  std::string describe() const;  // "HTTPRoute shop/cart rule 1 (name) match 0"
};

struct ChosenBackend {
  const model::Service* service = nullptr;
  uint16_t port = 0;                            // service port to connect to
  const model::RouteBackendRef* ref = nullptr;  // null for the default route
};

struct MirrorTarget {
  const model::Service* service = nullptr;
  uint16_t port = 0;
  const model::RequestMirror* config = nullptr;
};

enum class RouteAction { Forward, Respond };

struct RouteDecision {
  RouteAction action = RouteAction::Respond;
  // Respond: the status (404, 500, or the redirect's 3xx) and the response to send (with
  // `location` for a redirect). Forward: 0.
  int status = 0;
  std::optional<ResponseHead> response;
  std::string response_flag;   // "NR" no route, "NC" no usable backend; empty otherwise
  std::string reason;          // one line for logs and explain
  bool default_route = false;  // no routes attached: straight to the service
  std::optional<MatchedRule> matched;
  std::optional<ChosenBackend> backend;
  // The filters to apply, in order: the rule's, then the chosen backend's.
  std::vector<const model::RouteFilter*> filters;
  // Mirrors this request goes to (percentages already decided); mirrors of missing services are
  // dropped, as the spec asks.
  std::vector<MirrorTarget> mirrors;
  // The PathPrefix value of the deciding match, for ReplacePrefixMatch.
  std::optional<std::string> matched_prefix;
  model::RouteTimeouts timeouts;
  std::optional<model::RouteRetry> retry;  // the rule's; none: the waypoint's default
};

// What route() saw, for explain: the routes considered and why some were left out, and every
// matching (route, rule, match) in precedence order, the winner first.
struct RouteTrace {
  std::vector<std::string> notes;
  std::vector<MatchedRule> matches;
};

class RouteTable {
 public:
  explicit RouteTable(model::SnapshotPtr snapshot, RouteTableOptions options = {});

  const model::Snapshot& snapshot() const { return *snapshot_; }
  const RouteTableOptions& options() const { return options_; }

  RouteDecision route(const RouteTarget& target, const RequestHead& request, RandomSource& random,
                      RouteTrace* trace = nullptr) const;

 private:
  struct CompiledHttpRoute {
    const model::HttpRoute* route;
    std::vector<std::vector<CompiledHttpMatch>> rules;  // [rule][match]
  };
  struct CompiledGrpcRoute {
    const model::GrpcRoute* route;
    std::vector<std::vector<CompiledGrpcMatch>> rules;
  };
  struct Active {
    RouteKind kind;
    size_t index;  // into http_ or grpc_
  };
  // One matching (route, rule, match) with its precedence facts (larger wins).
  struct Candidate {
    Active route;
    size_t rule = 0;
    size_t match = 0;
    HostnameScore host;
    // HTTP: Exact 3, RegularExpression 2, PathPrefix 1; `length` the prefix or pattern length.
    // gRPC: `length` the characters of the matching service, `method_length` of the method.
    int path_rank = 0;
    size_t length = 0;
    size_t method_length = 0;
    bool method = false;
    size_t headers = 0;
    size_t query_params = 0;
  };

  std::vector<Active> activeRoutes(const model::Service& service, const RouteTarget& target,
                                   RouteTrace* trace) const;
  const model::RouteMetadata& metadataOf(const Active& a) const;
  const std::vector<std::string>& hostnamesOf(const Active& a) const;
  void dropKindConflicts(std::vector<Active>& active, RouteTrace* trace) const;
  std::vector<Candidate> httpCandidates(const std::vector<Active>& active,
                                        const RequestHead& request) const;
  std::vector<Candidate> grpcCandidates(const std::vector<Active>& active,
                                        const RequestHead& request) const;
  MatchedRule matchedRule(const Candidate& c) const;
  RouteDecision decide(const Candidate& winner, const RouteTarget& target,
                       const RequestHead& request, RandomSource& random) const;

  model::SnapshotPtr snapshot_;
  RouteTableOptions options_;
  // Parallel to snapshot_->httpRoutes() / grpcRoutes(). decide() lives in route_decision.cc.
  std::vector<CompiledHttpRoute> http_;
  std::vector<CompiledGrpcRoute> grpc_;
};

}  // namespace nodemesh::waypoint
