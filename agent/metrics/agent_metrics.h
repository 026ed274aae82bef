#pragma once

// The whole /metrics page of the agent (port 15020): Istio's TCP metrics, then nodemesh's own.
// Everything is read at scrape time from state the agent keeps anyway (atomics, the pinned
// counter map, the certificate list): a scrape costs the data path nothing but the TcpMetrics
// copy (see tcp_metrics.h).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/metrics/tcp_metrics.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent::metrics {

struct CertificateExpiry {
  std::string identity;  // SPIFFE ID
  std::chrono::system_clock::time_point not_after;
};

struct AgentMetricsInput {
  const TcpMetrics* tcp = nullptr;
  // Node-wide capture counters by reason (nm_node_stats); nullopt when unreadable.
  std::optional<std::map<std::string, uint64_t>> capture_counters;
  tunnel::TunnelStats tunnel;
  uint64_t enrolled_pods = 0;
  std::vector<CertificateExpiry> certificates;
  uint64_t certificate_rotation_failures = 0;
  bool ready = false;
  uint64_t config_workloads = 0;
  uint64_t config_services = 0;
  uint64_t config_policies = 0;
  // Istio's CA (identity/cert_manager.h counts for either issuer).
  uint64_t certificate_requests = 0;
  uint64_t certificate_request_failures = 0;
  // istiod's xDS, when the config comes from it.
  struct XdsType {
    std::string type;  // the short type name: "Address", "Authorization"
    uint64_t responses = 0;
    uint64_t nacks = 0;
  };
  std::optional<bool> xds_connected;  // nullopt: the config comes from a file
  uint64_t xds_connects = 0;
  std::vector<XdsType> xds_types;
};

std::string renderAgentMetrics(const AgentMetricsInput& in);

}  // namespace nodemesh::agent::metrics
