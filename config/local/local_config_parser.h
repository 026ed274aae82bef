#pragma once

// Internal to config/local/: the parser behind parseLocalConfig(), one YAML document in, a
// LoadResult out. Its methods live in local_config_{parser,workloads,services,policies}.cc and,
// for Gateway API routes, local_config_routes.cc and local_config_route_rules.cc.

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/local/local_config.h"
#include "config/local/yaml_reader.h"
#include "model/snapshot.h"
#include "model/validation.h"

namespace nodemesh::config::local_internal {

using model::Authorization;
using model::GatewayAddress;
using model::Service;
using model::Workload;

// ObjectMeta: every field Kubernetes may print; only name, namespace and creationTimestamp mean
// something here (in routes and rate limit policies), the others are accepted so that `kubectl get
// -o yaml` output loads.
inline constexpr std::string_view kObjectMetaFields[] = {"name",
                                                         "namespace",
                                                         "creationTimestamp",
                                                         "labels",
                                                         "annotations",
                                                         "uid",
                                                         "generation",
                                                         "resourceVersion",
                                                         "managedFields",
                                                         "ownerReferences",
                                                         "finalizers",
                                                         "generateName",
                                                         "deletionTimestamp",
                                                         "deletionGracePeriodSeconds",
                                                         "selfLink"};
// ASCII lowercase: header names compare case-insensitively (route matches, header modifiers, rate
// limit headers).
inline std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Which Gateway API route kind a section holds.
enum class RouteKind { Http, Grpc };

class LocalConfigParser {
 public:
  LocalConfigParser(std::string_view text, const std::string& file) : r_(file, text), text_(text) {}

  LoadResult run();

 private:
  struct Reference {
    std::string key;
    YAML::Node node;
    std::string path;
  };
  // Where an item of the model came from, for the findings of model::validate().
  struct Located {
    YAML::Node node;
    std::string path;
  };
  // Aligned with workloads_ / services_ / policies_: the item, its key's node when it has one
  // and, for the parts model::validate() checks, one entry per element the model holds. Set keys
  // with emplace(): assigning a YAML::Node writes through to the document.
  struct WorkloadNodes {
    Located item;
    std::optional<Located> key;
    std::vector<Located> addresses;
    std::vector<Located> policy_refs;
    std::map<std::string, Located, std::less<>> service_refs;
  };
  struct ServiceNodes {
    Located item;
    std::optional<Located> key;
    std::vector<Located> vips;
  };

  void parse();

  // ---- helpers for optional fields ----

  void readString(const FieldMap& f, std::string_view key, std::string& out);

  void readRequiredString(FieldMap& f, std::string_view key, std::string& out);

  void readStringList(const YAML::Node& node, const std::string& path,
                      std::vector<std::string>& out);

  // service port -> target port. A service may map to target port 0 ("the endpoint says").
  void readPortMap(const YAML::Node& node, const std::string& path, bool allow_zero_target,
                   model::PortMap& out);

  std::optional<GatewayAddress> readGateway(const YAML::Node& node, const std::string& path);

  std::optional<model::HealthStatus> readStatus(const YAML::Node& node, const std::string& path);

  // ---- workloads ----

  void parseWorkload(const YAML::Node& node, const std::string& path);

  // ---- services ----

  void parseService(const YAML::Node& node, const std::string& path);

  std::optional<model::LoadBalancing> readLoadBalancer(const YAML::Node& node,
                                                       const std::string& path);

  // ---- policies ----

  void parsePolicy(const YAML::Node& node, const std::string& path);

  // Istio reports the same through the policy's status ("ztunnel does not support HTTP
  // attributes"); the semantics are policy/'s (docs/policy.md).
  void warnL7(const YAML::Node& at, const std::string& path, const Authorization& p,
              const std::set<std::string>& names);

  model::Match parseMatch(const YAML::Node& node, const std::string& path);
  // One `when` condition: {key, values, notValues}; unknown keys and bad values are problems.
  std::optional<model::Condition> parseCondition(const YAML::Node& node, const std::string& path);

  // ztunnel's StringMatch is an externally tagged enum: {Exact: v}, {Prefix: v}, {Suffix: v},
  // {Presence: []}; serde_yaml also reads the tag form (!Exact v).
  std::optional<model::StringMatch> readStringMatch(const YAML::Node& node,
                                                    const std::string& path);

  std::optional<model::StringMatch> readStringMatchValue(const YAML::Node& kind_node,
                                                         const std::string& kind,
                                                         const YAML::Node& value,
                                                         const std::string& path);

  // ---- routes: Gateway API HTTPRoute / GRPCRoute objects (local_config_routes.cc) ----

  void parseHttpRoute(const YAML::Node& node, const std::string& path);
  void parseGrpcRoute(const YAML::Node& node, const std::string& path);

  // apiVersion, kind, metadata (name unique per namespace and kind) and status; returns the
  // FieldMap of `spec`, or nullopt when the object is unusable.
  std::optional<FieldMap> readRouteObject(const YAML::Node& node, const std::string& path,
                                          RouteKind kind, model::RouteMetadata& metadata);
  void readParentRefs(const FieldMap& spec, const model::RouteMetadata& metadata,
                      std::vector<model::ParentRef>& out);
  void readHostnames(const FieldMap& spec, std::vector<std::string>& out);
  // group/kind (a Service only), name, namespace, port (required) of a backendRef.
  std::optional<model::BackendObjectRef> readBackendObjectRef(FieldMap& f,
                                                              const std::string& route_namespace);
  void readBackendRefs(const YAML::Node& node, const std::string& path, RouteKind kind,
                       const std::string& route_namespace,
                       std::vector<model::RouteBackendRef>& out);
  // A filter list: types allowed for `kind`, at most one of each non-mirror type, never both
  // RequestRedirect and URLRewrite.
  void readFilters(const YAML::Node& node, const std::string& path, RouteKind kind,
                   const std::string& route_namespace, std::vector<model::RouteFilter>& out);
  std::optional<model::RouteFilter> readFilter(const YAML::Node& node, const std::string& path,
                                               RouteKind kind, const std::string& route_namespace);
  std::optional<model::HeaderModifier> readHeaderModifier(const YAML::Node& node,
                                                          const std::string& path);
  std::optional<model::RequestRedirect> readRedirect(const YAML::Node& node,
                                                     const std::string& path);
  std::optional<model::UrlRewrite> readRewrite(const YAML::Node& node, const std::string& path);
  std::optional<model::RequestMirror> readMirror(const YAML::Node& node, const std::string& path,
                                                 const std::string& route_namespace);
  std::optional<model::PathModifier> readPathModifier(const YAML::Node& node,
                                                      const std::string& path);
  // Header matches (HTTP and gRPC) or query parameter matches: names unique (header names
  // case-insensitively), RegularExpression values compiled.
  void readHeaderMatches(const YAML::Node& node, const std::string& path, bool query_params,
                         std::vector<model::HeaderMatch>& out);
  std::optional<std::string> readHostnameField(const FieldMap& f, std::string_view key);
  std::optional<uint32_t> readBounded(const YAML::Node& node, const std::string& path, uint32_t min,
                                      uint32_t max);
  // Warns about references to services this file does not define.
  void noteServiceRef(const std::string& key, const YAML::Node& node, const std::string& path,
                      std::string_view what);

  // ---- route rules (local_config_route_rules.cc) ----

  void readHttpRules(const FieldMap& spec, const std::string& route_namespace,
                     std::vector<model::HttpRouteRule>& out);
  std::optional<model::HttpRouteMatch> readHttpMatch(const YAML::Node& node,
                                                     const std::string& path);
  void readGrpcRules(const FieldMap& spec, const std::string& route_namespace,
                     std::vector<model::GrpcRouteRule>& out);
  std::optional<model::GrpcRouteMatch> readGrpcMatch(const YAML::Node& node,
                                                     const std::string& path);
  std::optional<model::RouteTimeouts> readTimeouts(const YAML::Node& node, const std::string& path);
  std::optional<model::RouteRetry> readRetry(const YAML::Node& node, const std::string& path);
  // Rule names unique within a route; at most 128 matches over all rules.
  void checkRuleLimits(const YAML::Node& rules, const std::string& path,
                       const std::vector<std::optional<std::string>>& names, size_t matches);
  // ReplacePrefixMatch needs exactly one PathPrefix match; RequestRedirect excludes backendRefs.
  void checkHttpRule(const YAML::Node& node, const std::string& path,
                     const model::HttpRouteRule& rule);

  // ---- rate limit policies (local_config_rate_limits.cc) ----

  void parseRateLimitPolicy(const YAML::Node& node, const std::string& path);
  void readRateLimitTargets(const FieldMap& spec, model::RateLimitPolicy& policy);
  // 1..1,000,000.
  std::optional<uint32_t> readRequestsPerSecond(const YAML::Node& node, const std::string& path);
  // Overrides (after total: none may exceed it); a ServiceAccount in at most one of them.
  void readRateLimitOverrides(const YAML::Node& node, const std::string& path,
                              model::RateLimitPolicy& policy);
  // Targets that name nothing in the file: warnings, as for routes' service references.
  void checkRateLimitTargets();

  // ---- Istio DestinationRules (local_config_destination_rules.cc) ----

  void parseDestinationRule(const YAML::Node& node, const std::string& path);
  std::optional<model::ConnectionPool> readConnectionPool(const YAML::Node& node,
                                                          const std::string& path);
  std::optional<model::OutlierDetection> readOutlierDetection(const YAML::Node& node,
                                                              const std::string& path);
  // A problem for each key of `f` in `known` (Istio's fields) but not in `supported` (the
  // waypoint's); unknown keys are FieldMap's to report.
  void refuseUnsupported(const FieldMap& f, std::span<const std::string_view> known,
                         std::span<const std::string_view> supported, std::string_view why);
  // Hosts that name no service of the file: warnings.
  void checkDestinationRuleHosts();

  // ---- Istio RequestAuthentications (local_config_request_authentications.cc) ----

  void parseRequestAuthentication(const YAML::Node& node, const std::string& path);
  void readRequestAuthenticationTarget(const YAML::Node& node, const std::string& path,
                                       model::RequestAuthentication& ra);
  // One jwtRule, its JWKS parsed; nullopt after a problem.
  std::optional<model::JwtRule> readJwtRule(const YAML::Node& node, const std::string& path);
  // Targets that name no Service of the file (warnings); one jwtRule per issuer.
  void checkRequestAuthentications();

  // ---- cross references: model::validate() plus the routes' references ----

  void checkReferences();
  // The node a finding of model::validate() is about.
  const Located& locate(const model::ValidationFinding& finding) const;
  const Located& keyOf(model::ValidationFinding::Kind kind, size_t index) const;
  bool keyRead(const model::ValidationFinding& finding) const;

  YamlReader r_;
  std::string_view text_;
  std::vector<Workload> workloads_;
  std::vector<Service> services_;
  std::vector<Authorization> policies_;
  std::vector<model::HttpRoute> http_routes_;
  std::vector<model::GrpcRoute> grpc_routes_;
  std::vector<model::RateLimitPolicy> rate_limits_;
  std::vector<model::DestinationRule> destination_rules_;
  std::vector<WorkloadNodes> workload_nodes_;
  std::vector<ServiceNodes> service_nodes_;
  std::vector<Located> policy_nodes_;
  // "Kind namespace/name" -> line, for duplicate routes.
  std::map<std::string, int, std::less<>> route_lines_;
  // Services named by route parentRefs / backendRefs, by "namespace/name".
  std::vector<Reference> route_service_refs_;
  // Rate limit policy targets: what they name ("Service ns/name", ...), where, for the checks that
  // need the whole file; and "policy key" / "target" -> line, for duplicates.
  std::vector<Reference> rate_limit_targets_;
  std::map<std::string, int, std::less<>> rate_limit_lines_;
  std::map<std::string, std::pair<std::string, int>, std::less<>> rate_limit_target_owner_;
  // DestinationRules: "namespace/name" -> line; service host -> (rule key, line); the hosts.
  std::map<std::string, int, std::less<>> destination_rule_lines_;
  std::map<std::string, std::pair<std::string, int>, std::less<>> destination_rule_hosts_;
  std::vector<Reference> destination_rule_refs_;
  // RequestAuthentications: the objects, "namespace/name" -> line, the Services they target.
  std::vector<model::RequestAuthentication> request_authentications_;
  std::map<std::string, int, std::less<>> request_authentication_lines_;
  std::vector<Reference> request_authentication_refs_;
  bool policies_ok_ = true;
};

}  // namespace nodemesh::config::local_internal
