#pragma once

// The benchmark's world: the e2e tests' simulated two-node cluster (tests/e2e/harness) with a
// client pod on node1 and a server pod on node2, a P-256 CA and certificates for the peers, and
// the application servers in the server pod. Every mode under test (modes.h) carries the same
// client traffic to the same server applications.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/congestion_control.h"
#include "sim/sim_cluster.h"

namespace nodemesh::bench {

// The applications in the server pod, each on its own port.
enum class Service { kIperf, kSockperf, kEcho, kHttp };

inline constexpr Service kServices[] = {Service::kIperf, Service::kSockperf, Service::kEcho,
                                        Service::kHttp};

// Ports below 20000, where the pods' ephemeral range starts (Environment::tunePod).
uint16_t appPort(Service s);     // where the application listens in the server pod
uint16_t tunnelPort(Service s);  // stunnel/HAProxy: the TLS port in the server pod, and the
                                 // local port in the client pod the client connects to
const char* serviceName(Service s);

// The waypoint benchmark (modes waypoint, haproxy-l7, nginx-l7): the L7 hop splits requests 90/10
// between the server pod (v1) and the server-v2 pod, both serving HTTP/1.1 and HTTP/2 (h2c) on
// appPort(Service::kHttp).
enum class HttpVersion { kHttp1, kHttp2 };
inline constexpr int kV1Weight = 90;
inline constexpr int kV2Weight = 10;
inline constexpr const char* kBackendVip = "10.96.0.20";  // the service with the waypoint, :80
inline constexpr uint16_t kBackendServicePort = 80;
// The L7 peers: the client pod's local port (and the proxy pod's TLS port) per HTTP version,
// and the TLS port in front of the HTTP server in each backend pod.
uint16_t l7PeerPort(HttpVersion v);
// The scenarios through an L7 hop ("l7-h1", "l7-h1-max", "l7-h2", "l7-h2-max"); the L7 modes
// run only these.
bool isL7Scenario(const std::string& scenario);
inline constexpr uint16_t kBackendTlsPort = 18080;

struct Options {
  bool quick = false;
  int repeats = 3;
  std::vector<std::string> modes = {"direct", "nodemesh", "stunnel", "haproxy"};
  std::vector<std::string> scenarios;  // empty: all
  std::string out_dir;
  std::string source_dir;
  bool keep_logs = false;
  // Each node's processes (its tunnel, its pod's applications) on a CPU of its own: two
  // single-core nodes rather than six processes floating over the machine's cores.
  bool pin = true;
  // Client and server pods on one node (the direct and nodemesh modes only): what the agent
  // does for two pods it owns both ends of.
  bool same_node = false;
  // TCP congestion control in the pods, where every TCP endpoint of every mode lives: Linux's
  // default, whatever the host's default is (with BBR, one connection's ping-pong p50 lands 10-25%
  // above the floor or not, by the state its pacing settles in). "host" keeps the host's. A pod
  // may only choose an algorithm the host allows (net.ipv4.tcp_allowed_congestion_control); when
  // this one is not allowed, the pods keep the host's default and the report says so.
  std::string congestion_control = "cubic";
  // Per-scenario lengths (see nodemesh_bench.cc for the full and --quick values).
  std::chrono::milliseconds throughput_time{5000};
  std::chrono::milliseconds latency_time{2000};  // per sockperf run
  int latency_runs = 3;                          // sockperf runs per size and repeat
  std::chrono::milliseconds conn_rate_time{5000};
  std::chrono::milliseconds http_warmup{1000};
  std::chrono::milliseconds http_window{8000};
  int http_rate = 1000;
  // The L7 scenarios: the closed-loop window of the maximum (after http_warmup); the fixed-rate
  // part uses http_warmup, http_window and http_rate.
  std::chrono::milliseconds l7_max_window{8000};
  int l7_h1_connections = 16;
  int l7_h2_connections = 4;
  int l7_h2_streams = 16;
  int http_connections = 16;
  int conn_rate_concurrency = 16;
  int idle_connections = 10000;
  std::string idle_note;                 // why idle_connections is lower than asked, if it is
  int fd_limit = 0;                      // RLIMIT_NOFILE of the tunnel processes
  std::vector<std::string> agent_flags;  // extra nodemesh-agent flags (experiments)
  std::string perf_dir;                  // profile the nodemesh agents into this directory
  // Other nodemesh-agent builds, each run as the mode "nodemesh-<name>": (name, path).
  std::vector<std::pair<std::string, std::string>> agent_variants;
};

class Environment {
 public:
  static constexpr const char* kClientPod = "client";
  static constexpr const char* kServerPod = "server";
  static constexpr const char* kClientIp = "10.244.1.10";
  static constexpr const char* kServerIp = "10.244.2.20";
  // The waypoint benchmark's second backend and its L7 proxy's pod (the waypoint or a peer),
  // both on node2 like the server.
  static constexpr const char* kServerV2Pod = "server-v2";
  static constexpr const char* kServerV2Ip = "10.244.2.21";
  static constexpr const char* kProxyPod = "proxy";
  static constexpr const char* kProxyIp = "10.244.2.9";
  static constexpr const char* kWaypointUid = "bench//v1/Pod/bench/waypoint";
  // The same applications as the server's in a pod on the client's node (--same-node).
  static constexpr const char* kLocalServerPod = "local-server";
  static constexpr const char* kLocalServerIp = "10.244.1.20";
  // The server the direct and nodemesh modes reach: the local one with Options::same_node.
  const char* serverIp() const { return options_.same_node ? kLocalServerIp : kServerIp; }
  const char* serverPod() const { return options_.same_node ? kLocalServerPod : kServerPod; }

  // Builds the cluster, the CA and certificates, and starts the server applications. Throws
  // sim::HarnessError.
  explicit Environment(const Options& options);
  ~Environment() = default;
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  sim::SimCluster& cluster() { return *cluster_; }
  const Options& options() const { return options_; }

  // Certificates (PEM) in the work directory: ca.pem, <name>.pem, <name>.key, and
  // <name>.bundle.pem (certificate + key, HAProxy's crt), for server, client, server-v2 and proxy.
  std::string certDir() const { return cert_dir_; }
  // The nodemesh local config: the pods, and for the waypoint the backend service (VIP
  // kBackendVip) whose HTTPRoute splits 90/10 between backend-v1 (server) and backend-v2.
  const std::string& meshConfig() const { return mesh_config_; }

  // `argv` run on the CPU of `node` (taskset) when Options::pin, else unchanged.
  std::vector<std::string> pinned(const std::string& node, std::vector<std::string> argv) const;
  // A command in the client pod (its node's cgroup and CPU); throws when it cannot start.
  sim::CommandResult runInClient(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout);
  // A process in `pod` (its node's cgroup and CPU).
  sim::Process& startInPod(const std::string& pod, const std::vector<std::string>& argv);
  // Waits until `echo` answers end to end at addr:port from the client pod.
  void probe(const std::string& addr, uint16_t port, std::chrono::milliseconds timeout);

  // The TCP congestion control the pods use, and why it is not the one asked for (empty when it
  // is): the benchmark falls back to the host's default rather than fail (congestion_control.h).
  const std::string& congestionControlUsed() const { return congestion_used_; }
  const std::string& congestionControlFallback() const { return congestion_.fallback_reason; }

  // Tears the cluster down now (also done by the destructor) and returns what was left behind
  // (namespaces, cgroups, pins, work directory): empty when the cleanup was complete.
  std::vector<std::string> teardown();

 private:
  void tunePod(const std::string& pod);
  void makeCertificates();
  void startServers();

  Options options_;
  CongestionControlChoice congestion_;
  std::string congestion_used_;
  std::unique_ptr<sim::SimCluster> cluster_;
  std::string cert_dir_;
  std::string mesh_config_;
};

// The path of nm-loadgen (next to the other binaries, see sim::binDir()).
std::string loadgenPath();

}  // namespace nodemesh::bench
