// LocalConfigParser: the `destinationRules` section. Each item is Istio's DestinationRule
// (networking.istio.io/v1, v1beta1 and v1alpha3 are the same schema) as `kubectl get -o yaml`
// prints it. The waypoint applies trafficPolicy.outlierDetection and trafficPolicy.connectionPool;
// Istio fields it cannot apply (subsets, portLevelSettings, loadBalancer, tls, ...) are refused
// by name rather than ignored, so that a rule never silently means less than it says. Values are
// checked as Istio's validation does (percentages 0-100, durations at least 1ms, no negative
// counts), with Istio's defaults.

#include <utility>

#include "config/local/local_config_parser.h"
#include "model/route_validation.h"

namespace nodemesh::config::local_internal {

namespace {

constexpr std::string_view kKind = "DestinationRule";
constexpr std::string_view kApiVersions[] = {
    "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"};
constexpr std::string_view kObjectFields[] = {"apiVersion", "kind", "metadata", "spec", "status"};
// Istio's fields; those the waypoint does not apply are read only to be refused by name.
constexpr std::string_view kSpecFields[] = {"host", "trafficPolicy", "subsets", "exportTo",
                                            "workloadSelector"};
constexpr std::string_view kTrafficPolicyFields[] = {
    "connectionPool",    "outlierDetection", "loadBalancer",  "tls",
    "portLevelSettings", "tunnel",           "proxyProtocol", "retryBudget"};
constexpr std::string_view kConnectionPoolFields[] = {"tcp", "http"};
constexpr std::string_view kTcpFields[] = {"maxConnections", "connectTimeout", "tcpKeepalive",
                                           "maxConnectionDuration", "idleTimeout"};
constexpr std::string_view kHttpFields[] = {"http1MaxPendingRequests",
                                            "http2MaxRequests",
                                            "maxRequestsPerConnection",
                                            "maxRetries",
                                            "idleTimeout",
                                            "h2UpgradePolicy",
                                            "useClientProtocol",
                                            "maxConcurrentStreams"};
constexpr std::string_view kOutlierFields[] = {"consecutive5xxErrors",
                                               "consecutiveGatewayErrors",
                                               "interval",
                                               "baseEjectionTime",
                                               "maxEjectionPercent",
                                               "minHealthPercent",
                                               "consecutiveErrors",
                                               "splitExternalLocalOriginErrors",
                                               "consecutiveLocalOriginFailures"};
// The fields of each map above that the waypoint applies.
constexpr std::string_view kSupportedTcp[] = {"maxConnections"};
constexpr std::string_view kSupportedHttp[] = {"http1MaxPendingRequests", "http2MaxRequests",
                                               "maxRequestsPerConnection"};

constexpr uint32_t kMaxCount = 0x7fffffff;  // Istio's int32 fields
constexpr auto kMinDuration = std::chrono::milliseconds(1);

bool contains(std::span<const std::string_view> list, std::string_view key) {
  return std::find(list.begin(), list.end(), key) != list.end();
}

}  // namespace

void LocalConfigParser::refuseUnsupported(const FieldMap& f,
                                          std::span<const std::string_view> known,
                                          std::span<const std::string_view> supported,
                                          std::string_view why) {
  for (const auto& entry : f.node()) {
    const std::string key = entry.first.as<std::string>("");
    if (!contains(known, key) || contains(supported, key)) continue;
    r_.problem(entry.first, f.pathOf(key),
               std::string(key) + " is not supported by the waypoint (" + std::string(why) +
                   "); remove it");
  }
}

void LocalConfigParser::parseDestinationRule(const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, std::string(kKind), kObjectFields);
  if (!f.valid()) return;
  if (auto v = f.require("apiVersion")) {
    auto text = r_.readString(*v, f.pathOf("apiVersion"));
    if (text && !contains(kApiVersions, *text)) {
      r_.problem(*v, f.pathOf("apiVersion"),
                 "unsupported apiVersion '" + *text + "'; expected networking.istio.io/v1");
    }
  }
  if (auto k = f.require("kind")) {
    auto text = r_.readString(*k, f.pathOf("kind"));
    if (text && *text != kKind) {
      r_.problem(*k, f.pathOf("kind"),
                 "kind '" + *text + "' in destinationRules; expected " + std::string(kKind));
    }
  }
  model::DestinationRule rule;
  auto meta_node = f.require("metadata");
  if (!meta_node) return;
  FieldMap meta(r_, *meta_node, f.pathOf("metadata"), "metadata", kObjectMetaFields);
  if (!meta.valid()) return;
  rule.metadata.namespace_name = "default";  // as Kubernetes
  readString(meta, "namespace", rule.metadata.namespace_name);
  if (rule.metadata.namespace_name.empty()) {
    r_.problem(meta.node(), meta.path(), "metadata.namespace must not be empty");
  }
  if (auto name = meta.require("name")) {
    if (auto n = r_.readString(*name, meta.pathOf("name"))) rule.metadata.name = *n;
    if (rule.metadata.name.empty()) {
      r_.problem(*name, meta.pathOf("name"), "a DestinationRule needs a non-empty name");
    } else {
      auto [prev, inserted] =
          destination_rule_lines_.emplace(rule.key(), YamlReader::lineOf(*name));
      if (!inserted) {
        r_.problem(*name, meta.pathOf("name"),
                   "duplicate DestinationRule '" + rule.key() + "' (first defined at line " +
                       std::to_string(prev->second) + ")");
      }
    }
  }
  auto spec_node = f.require("spec");
  if (!spec_node) return;
  FieldMap spec(r_, *spec_node, f.pathOf("spec"), "DestinationRule spec", kSpecFields);
  if (!spec.valid()) return;
  for (std::string_view key : {"subsets", "exportTo", "workloadSelector"}) {
    if (auto n = spec.get(key)) {
      r_.problem(*n, spec.pathOf(key),
                 std::string(key) +
                     " is not supported: the waypoint applies a rule's top-level trafficPolicy "
                     "to every endpoint of the service (route to a subset with a Service of its "
                     "own instead)");
    }
  }
  if (auto host = spec.require("host")) {
    if (auto text = r_.readString(*host, spec.pathOf("host"))) rule.host = *text;
    if (rule.host.empty()) {
      r_.problem(*host, spec.pathOf("host"), "host must not be empty");
    } else if (rule.host.find('*') != std::string::npos) {
      r_.problem(*host, spec.pathOf("host"),
                 "wildcard host '" + rule.host + "' is not supported: name one service");
    } else if (auto valid = model::checkHostname(rule.host, /*allow_wildcard=*/false); !valid) {
      r_.problem(*host, spec.pathOf("host"), "invalid host: " + valid.error().message);
    } else {
      rule.service_host = model::resolveDestinationHost(rule.host, rule.metadata.namespace_name);
      auto [prev, inserted] =
          destination_rule_hosts_.emplace(rule.service_host, std::make_pair(rule.key(), 0));
      if (!inserted) {
        // Istio merges such rules in an order of its own; one rule per host says it plainly.
        r_.problem(*host, spec.pathOf("host"),
                   "host " + rule.service_host + " already has DestinationRule '" +
                       prev->second.first + "'");
      } else {
        prev->second.second = YamlReader::lineOf(*host);
        destination_rule_refs_.push_back(Reference{rule.service_host, *host, spec.pathOf("host")});
      }
    }
  }
  if (auto tp = spec.get("trafficPolicy")) {
    FieldMap policy(r_, *tp, spec.pathOf("trafficPolicy"), "trafficPolicy", kTrafficPolicyFields);
    if (policy.valid()) {
      refuseUnsupported(policy, kTrafficPolicyFields,
                        std::span<const std::string_view>(kTrafficPolicyFields, 2),
                        "only connectionPool and outlierDetection");
      if (auto n = policy.get("connectionPool")) {
        rule.connection_pool = readConnectionPool(*n, policy.pathOf("connectionPool"));
      }
      if (auto n = policy.get("outlierDetection")) {
        rule.outlier_detection = readOutlierDetection(*n, policy.pathOf("outlierDetection"));
      }
    }
  }
  destination_rules_.push_back(std::move(rule));
}

std::optional<model::ConnectionPool> LocalConfigParser::readConnectionPool(
    const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, "connectionPool", kConnectionPoolFields);
  if (!f.valid()) return std::nullopt;
  model::ConnectionPool out;
  // Istio's int32 fields: negative is an error, 0 is "not set" (unlimited).
  auto read = [&](const FieldMap& m, std::string_view key, std::optional<uint32_t>& into) {
    auto n = m.get(key);
    if (!n) return;
    if (auto v = readBounded(*n, m.pathOf(key), 0, kMaxCount); v && *v > 0) into = *v;
  };
  if (auto tcp = f.get("tcp")) {
    FieldMap t(r_, *tcp, f.pathOf("tcp"), "connectionPool.tcp", kTcpFields);
    if (t.valid()) {
      refuseUnsupported(t, kTcpFields, kSupportedTcp, "of connectionPool.tcp, only maxConnections");
      read(t, "maxConnections", out.max_connections);
    }
  }
  if (auto http = f.get("http")) {
    FieldMap h(r_, *http, f.pathOf("http"), "connectionPool.http", kHttpFields);
    if (h.valid()) {
      refuseUnsupported(h, kHttpFields, kSupportedHttp,
                        "of connectionPool.http, only http1MaxPendingRequests, http2MaxRequests "
                        "and maxRequestsPerConnection");
      read(h, "http1MaxPendingRequests", out.http1_max_pending_requests);
      read(h, "http2MaxRequests", out.http2_max_requests);
      read(h, "maxRequestsPerConnection", out.max_requests_per_connection);
    }
  }
  return out;
}

std::optional<model::OutlierDetection> LocalConfigParser::readOutlierDetection(
    const YAML::Node& node, const std::string& path) {
  FieldMap f(r_, node, path, "outlierDetection", kOutlierFields);
  if (!f.valid()) return std::nullopt;
  refuseUnsupported(f, kOutlierFields, std::span<const std::string_view>(kOutlierFields, 6),
                    "local-origin errors are not split, and consecutiveErrors is deprecated: use "
                    "consecutive5xxErrors or consecutiveGatewayErrors");
  model::OutlierDetection out;
  bool ok = true;
  auto count = [&](std::string_view key, uint32_t max, uint32_t& into) {
    auto n = f.get(key);
    if (!n) return;
    if (auto v = readBounded(*n, f.pathOf(key), 0, max)) {
      into = *v;
    } else {
      ok = false;
    }
  };
  count("consecutive5xxErrors", kMaxCount, out.consecutive_5xx_errors);
  count("consecutiveGatewayErrors", kMaxCount, out.consecutive_gateway_errors);
  count("maxEjectionPercent", 100, out.max_ejection_percent);
  count("minHealthPercent", 100, out.min_health_percent);
  // Istio: maxEjectionPercent 0 (its int32's zero value) leaves Envoy's default, 10.
  if (out.max_ejection_percent == 0) out.max_ejection_percent = 10;
  auto duration = [&](std::string_view key, std::chrono::milliseconds& into) {
    auto n = f.get(key);
    if (!n) return;
    auto text = r_.readString(*n, f.pathOf(key));
    if (!text) {
      ok = false;
      return;
    }
    auto d = model::parseGatewayDuration(*text);
    if (!d) {
      r_.problem(*n, f.pathOf(key), "invalid duration: " + d.error().message);
      ok = false;
    } else if (*d < kMinDuration) {
      r_.problem(*n, f.pathOf(key), std::string(key) + " must be at least 1ms");
      ok = false;
    } else {
      into = *d;
    }
  };
  duration("interval", out.interval);
  duration("baseEjectionTime", out.base_ejection_time);
  return ok ? std::optional(out) : std::nullopt;
}

void LocalConfigParser::checkDestinationRuleHosts() {
  std::set<std::string, std::less<>> known;
  for (const Service& s : services_) known.insert(s.hostname);
  for (const Reference& ref : destination_rule_refs_) {
    if (known.count(ref.key) == 0) {
      r_.warning(ref.node, ref.path,
                 "DestinationRule host " + ref.key +
                     " names no service in this file: the rule applies to nothing");
    }
  }
}

}  // namespace nodemesh::config::local_internal
