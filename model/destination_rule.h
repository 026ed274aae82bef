#pragma once

// Istio's DestinationRule (networking.istio.io/v1), the part the waypoint applies: per backend
// service, outlier detection (ejection of endpoints that answer 5xx) and circuit breaking
// (connection pool limits). The local config's `destinationRules` list holds them; defaults are
// Istio's, filled in by the loader. docs/waypoint.md ("Outlier detection", "Circuit breaking")
// says how the waypoint applies them.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "model/route_common.h"

namespace nodemesh::model {

// trafficPolicy.outlierDetection. Istio's defaults (an Envoy cluster's with Istio's overrides).
struct OutlierDetection {
  // Consecutive 5xx responses (any 5xx) that eject an endpoint; 0 turns the check off.
  uint32_t consecutive_5xx_errors = 5;
  // Consecutive 502/503/504 responses that eject an endpoint; 0 (the default) turns it off.
  uint32_t consecutive_gateway_errors = 0;
  // How often the ejection multiplier of an endpoint that stayed in is lowered by one.
  std::chrono::milliseconds interval = std::chrono::seconds(10);
  // An ejection lasts base_ejection_time times the endpoint's ejection count, at most 300 s.
  std::chrono::milliseconds base_ejection_time = std::chrono::seconds(30);
  // At most this share of a service's endpoints is ejected at once (Istio: 0 means the default).
  uint32_t max_ejection_percent = 10;
  // Below this share of usable endpoints the ejections are ignored (Envoy's panic threshold);
  // 0 (Istio's default) never.
  uint32_t min_health_percent = 0;

  bool operator==(const OutlierDetection&) const = default;
};

// trafficPolicy.connectionPool. Unset (or 0, as Istio reads its int32 fields) is unlimited
// (Istio: 2^32-1).
struct ConnectionPool {
  std::optional<uint32_t> max_connections;              // tcp.maxConnections
  std::optional<uint32_t> http1_max_pending_requests;   // http.http1MaxPendingRequests
  std::optional<uint32_t> http2_max_requests;           // http.http2MaxRequests
  std::optional<uint32_t> max_requests_per_connection;  // http.maxRequestsPerConnection

  bool operator==(const ConnectionPool&) const = default;
};

struct DestinationRule {
  RouteMetadata metadata;
  std::string host;          // spec.host as written
  std::string service_host;  // the FQDN it names (a short name resolved in the rule's namespace)
  std::optional<ConnectionPool> connection_pool;
  std::optional<OutlierDetection> outlier_detection;

  std::string key() const { return metadata.key(); }
  bool operator==(const DestinationRule&) const = default;
};

// Istio's resolution of spec.host (ResolveShortnameToFQDN): a name without a dot is a Service of
// the rule's namespace, <name>.<namespace>.svc.cluster.local; any other name is the FQDN it says.
inline std::string resolveDestinationHost(const std::string& host, const std::string& ns) {
  if (host.find('.') == std::string::npos) return host + "." + ns + ".svc.cluster.local";
  return host;
}

}  // namespace nodemesh::model
