#pragma once

// The agent's HTTP endpoints (DESIGN.md, "Ports"):
//   127.0.0.1:15000  admin API: /config_dump, /connections, /logging, /explain, /quitquitquit
//   0.0.0.0:15020    /metrics (and /stats/prometheus, Istio's sidecar path)
//   0.0.0.0:15021    /healthz/ready
// The routes read the agent through AdminState (the agent implements it in main.cc; tests
// substitute a fake). See docs/observability.md for every endpoint and its output.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/explain/explain.h"
#include "agent/metrics/agent_metrics.h"
#include "common/http_server.h"
#include "common/ip_address.h"
#include "model/snapshot.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent::admin {

// The HTTP server is shared with the waypoint (common/http_server.h).
using http::HttpHandler;
using http::HttpRequest;
using http::HttpResponse;
using http::HttpServer;
using http::HttpServerOptions;
using http::Route;

inline constexpr const char* kAdminAddress = "127.0.0.1";  // never any other address
inline constexpr uint16_t kDefaultAdminPort = 15000;
inline constexpr uint16_t kDefaultMetricsPort = 15020;
inline constexpr uint16_t kDefaultReadinessPort = 15021;

struct PodView {
  std::string name;  // "namespace/name"
  std::string workload_uid;
  std::string netns;
  uint64_t netns_cookie = 0;
  std::vector<std::string> ips;
};

struct CertificateView {
  std::string identity;
  std::string serial;  // hex
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  std::string pem;  // certificate chain only; private keys never leave the agent
};

struct AgentInfo {
  std::string node;
  std::string bpffs;
  std::string cgroup;
  std::string config;
  std::string trust_domain;
  std::vector<uint16_t> exclude_outbound_ports;
  std::vector<uint16_t> exclude_inbound_ports;
  std::vector<Cidr> exclude_cidrs;
  bool same_node_fast_path = true;  // tunnel::TunnelOptions::same_node_fast_path
};

class AdminState {
 public:
  virtual ~AdminState() = default;
  virtual model::SnapshotPtr snapshot() const = 0;
  virtual std::vector<PodView> pods() const = 0;
  virtual std::vector<tunnel::ConnectionInfo> connections() const = 0;
  virtual std::vector<CertificateView> certificates() const = 0;
  virtual AgentInfo info() const = 0;
  // /quitquitquit: start a clean stop (as SIGTERM does); returns at once.
  virtual void quit() = 0;
  // Where the config and the certificates come from, and how that is going (the config dump's
  // "controlPlane"): {"config": {"source": "file"|"xds", ...}, "ca": {...}}.
  virtual nlohmann::json controlPlane() const { return nlohmann::json::object(); }
};

// Ready once the capture programs are attached, a config is loaded and the tunnel runs.
class Readiness {
 public:
  void setProgramsAttached() { programs_.store(true); }
  void setConfigLoaded() { config_.store(true); }
  void setTunnelStarted() { tunnel_.store(true); }
  void setStopping() { stopping_.store(true); }
  // With Kubernetes: not ready until the node's pods are listed and a pass enrolled them, so
  // that a rolling update moves on only once this node's pods are captured again.
  void setPodsPending() { pods_.store(false); }
  void setPodsEnrolled() { pods_.store(true); }
  bool ready() const { return programs_ && config_ && tunnel_ && pods_ && !stopping_; }
  // "" when ready, else what is missing.
  std::string missing() const;

 private:
  std::atomic<bool> programs_{false};
  std::atomic<bool> config_{false};
  std::atomic<bool> tunnel_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> pods_{true};
};

nlohmann::json configDump(const AdminState& state);
nlohmann::json connectionsJson(const std::vector<tunnel::ConnectionInfo>& connections);
explain::CaptureView captureView(const AdminState& state);

std::vector<Route> adminRoutes(AdminState& state);
std::vector<Route> readinessRoutes(const Readiness& readiness);
std::vector<Route> metricsRoutes(std::function<metrics::AgentMetricsInput()> gather);

}  // namespace nodemesh::agent::admin
