#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/access_log.h"
#include "agent/admin/admin_api.h"
#include "agent/agent.h"
#include "agent/agent_admin_state.h"
#include "agent/bpf/capture_programs.h"
#include "agent/cleanup.h"
#include "agent/handoff.h"
#include "agent/kube_integration.h"
#include "agent/netns_pod_source.h"
#include "agent/snapshot_fanout.h"
#include "agent/steady_clock.h"
#include "common/http_server.h"
#include "config/config_source.h"
#include "config/local/local_file_source.h"
#include "hbone/tls_provider.h"
#include "identity/cert_manager.h"
#include "identity/clock.h"
#include "identity/local_ca.h"
#include "tunnel/tunnel.h"
#include "xds/istiod.h"

namespace nodemesh::agent {

// What the agent's flags say (agent/main.cc documents each).
struct DaemonOptions {
  std::string config;  // the local config file; empty with xds_address
  // istiod (docs/xds.md): the mesh config over delta xDS from xds_address instead of a file,
  // and certificates from Istio's CA at ca_address (default: xds_address) unless local_ca.
  std::string xds_address;
  std::string ca_address;
  bool local_ca = false;
  std::string istiod_root_cert = "/var/run/secrets/istio/root-cert.pem";
  std::string istiod_token_file = "/var/run/secrets/tokens/istio-token";
  std::string istiod_server_name;  // empty: the host of the address
  int xds_initial_timeout_s = 30;
  std::string istiod_module;  // libnodemesh-istiod.so; empty: next to the binary (istiod_loader.h)
  std::string node;
  std::string cgroup;  // empty: the cgroup2 root
  std::string bpffs = "/sys/fs/bpf/nodemesh";
  Exclusions exclusions;
  int scan_interval_ms = 200;
  int process_scan_interval_ms = 2000;
  std::string netns_dir = "/var/run/netns";
  std::string netns_prefix;  // NetnsPodSourceOptions::name_prefix
  std::string state_dir = "/var/lib/nodemesh";
  std::string trust_domain = "cluster.local";
  int cert_lifetime_s = 24 * 3600;
  unsigned workers = 0;
  unsigned recv_buffers = 128;     // tunnel::TunnelOptions, HBONE ring
  unsigned app_recv_buffers = 32;  // the pods' sockets' ring
  uint64_t app_recv_buffer_bytes = uint64_t{64} << 10;
  unsigned busy_poll_us = 0;
  bool busy_poll_fixed = false;  // tunnel::TunnelOptions::busy_poll_adaptive, inverted
  uint16_t admin_port = admin::kDefaultAdminPort;
  uint16_t metrics_port = admin::kDefaultMetricsPort;
  uint16_t readiness_port = admin::kDefaultReadinessPort;
  AccessLogFormat access_log_format = AccessLogFormat::kText;
  int access_log_flush_ms = 200;  // 0: a write per line
  int connect_timeout_ms = 10000;
  int hbone_keepalive_s = 30;
  int hbone_idle_timeout_s = 300;
  int hbone_server_idle_timeout_s = 360;
  unsigned max_pending_handshakes = 512;
  uint64_t max_buffered_bytes = uint64_t{256} << 20;  // tunnel::TunnelOptions
  bool same_node_fast_path = true;                    // tunnel::TunnelOptions
  bool splice = false;                                // tunnel::TunnelOptions
  uint64_t splice_pipe_bytes = uint64_t{64} << 10;    // tunnel::TunnelOptions
  // The HBONE sessions' bounds (hbone::H2Options).
  uint64_t hbone_stream_window = uint64_t{4} << 20;
  uint64_t hbone_connection_window = uint64_t{16} << 20;
  unsigned hbone_max_streams = 100;
  uint64_t hbone_max_pending_output = uint64_t{256} << 10;
  int hbone_handshake_timeout_s = 10;
  unsigned connect_attempts = 3;
  // Per-workload caps on inbound connections (docs/tunnel.md); 0: none.
  unsigned max_inbound_connections_per_workload = 0;
  double max_inbound_connection_rate_per_workload = 0;
  unsigned inbound_connection_burst_per_workload = 0;  // 0: one second's worth of the rate
  std::string proc_dir = "/proc";  // the node's processes (/host/proc in a container)
  // Kubernetes (docs/kubernetes.md): off unless `kubernetes`.
  bool kubernetes = false;
  std::string kube_api_server;  // empty: the in-cluster configuration
  std::string kube_ca_file;
  std::string kube_token_file;
  std::string cni_socket;      // empty: no CNI plugin socket
  std::string cni_state_file;  // empty: no state file
  std::string cni_conf_dir;    // empty: the plugin is not installed by the agent
  std::string cni_bin_dir = "/opt/cni/bin";
  std::string cni_plugin_binary;  // empty: nodemesh-cni next to the agent's own binary
  std::vector<std::string> exclude_namespaces = {"kube-system"};
  std::string cluster_id = "Kubernetes";
  // The agent's own pod ($POD_NAMESPACE, $POD_NAME from the downward API): on SIGTERM, when its
  // DaemonSet will replace it, the capture stays in place for the next agent.
  std::string pod_namespace;
  std::string pod_name;
  // Upgrades (agent/handoff.h, docs/agent.md): the unix socket where this agent hands its
  // listening sockets to the next one (empty: no handoff; default /run/nodemesh/<node>.handoff),
  // and how long it then serves its open connections before it exits.
  std::string handoff_socket;
  int drain_timeout_s = 25;
};

// The node agent: config source, capture programs, identity, tunnel, pod discovery and the
// admin/metrics/readiness servers. Its parts are members declared in start order, so a start
// that fails half-way and a stop both undo exactly what was started, newest first, through the
// members' destructors (and a Cleanup where a step is not an object of its own).
class Daemon {
 public:
  // Starts every part; on failure logs why, undoes what was started and returns the error.
  // The caller blocks SIGTERM, SIGINT and SIGUSR1 before (run() waits for them).
  static Result<std::unique_ptr<Daemon>> start(DaemonOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // The discovery loop, until SIGTERM or SIGINT, or until a new agent took over (handoff);
  // SIGUSR1 logs the counters.
  void run();
  // Stops everything (the destructors, newest first) and reports whether the capture programs
  // were detached and every pin removed.
  static Status stop(std::unique_ptr<Daemon> daemon);

 private:
  explicit Daemon(DaemonOptions options);

  Status startConfig();
  Status startCapture();
  Status startIdentity();
  Status startTunnel();
  Status startKubernetes();
  Status startServers();
  // Upgrades: takes the listening sockets of the agent running at the handoff socket, if any.
  Status startHandoff();
  // Listens at the handoff socket for the next agent.
  void listenForHandoff();
  // After a handoff: serves the open connections until they end, the drain deadline passes or
  // SIGTERM/SIGINT comes; the capture stays for the next agent.
  void drainForNextAgent();
  // After taking over: once the previous agent reports that it accepts no more, re-arms this
  // agent's accepts (agent/handoff.h, "stopped"). On a thread of its own, joined on exit.
  void restartAcceptsWhenPreviousStops(Handoff handoff);
  // The source's snapshot plus the workloads of this node's pods from the Kubernetes API.
  void publishMerged();
  // The config dump's "controlPlane": where config and certificates come from.
  nlohmann::json describeControlPlane() const;
  xds::IstiodConnection istiodConnection(const std::string& address) const;
  // The istiod module, loaded on first use (with --xds-address or --ca-address only).
  Result<xds::Istiod*> istiod();
  // SIGTERM with Kubernetes: keep the capture for the next agent (keep_capture_), or remove the
  // pods' annotations because the capture goes.
  void decideCaptureOnStop();
  void logCounters() const;
  metrics::AgentMetricsInput metricsInput() const;

  const DaemonOptions options_;
  std::string cgroup_;
  unsigned workers_ = 0;
  pthread_t loop_thread_{};  // runs start() and run(); woken with SIGUSR2
  bool running_ = false;
  bool keep_capture_ = false;  // stop(): leave pods enrolled and programs pinned (an upgrade) //
                               // the start completed: the stop reports what it does
  Status* stop_status_ = nullptr;  // where the stop reports the uninstall (see stop())

  // The parts, in start order.
  SnapshotFanout config_;
  std::mutex publish_mu_;
  model::SnapshotPtr source_snapshot_;                   // the config source's, as last delivered
  std::unique_ptr<config::ConfigSource> config_source_;  // through publishMerged() to config_
  xds::Istiod* istiod_ = nullptr;                        // the module, once loaded
  xds::IstiodConfigSource* xds_ = nullptr;               // config_source_, when it is istiod
  std::unique_ptr<CapturePrograms> capture_;
  std::optional<Cleanup> uninstall_capture_;  // detaches and unpins everything
  identity::SystemClock wall_clock_;
  std::unique_ptr<identity::LocalCa> ca_;    // the embedded CA, or
  std::unique_ptr<xds::IstiodCa> istio_ca_;  // Istio's
  std::shared_ptr<const xds::TrustBundle> istio_roots_;
  std::unique_ptr<identity::CertificateManager> certificates_;
  std::unique_ptr<hbone::TlsProvider> tls_;
  std::unique_ptr<tunnel::OrigDstResolver> orig_dst_;
  std::unique_ptr<ConnectionTelemetry> telemetry_;
  std::unique_ptr<tunnel::Tunnel> tunnel_;
  std::optional<Cleanup> stop_tunnel_;  // joins the workers, logs the final counters
  std::optional<Handoff> inheritance_;  // from the previous agent, until confirmed in run()
  RealSteadyClock steady_clock_;
  std::unique_ptr<NetnsPodSource> pods_;
  std::unique_ptr<Agent> agent_;  // unenrolls every pod when destroyed
  std::unique_ptr<AgentAdminState> admin_state_;
  std::unique_ptr<SnapshotFanout::Subscription> config_subscription_;
  std::unique_ptr<KubeIntegration> kube_;  // calls into agent_ and config_: stopped before them
  admin::Readiness readiness_;
  std::mutex servers_mu_;  // the servers below are closed and reopened by a handoff
  std::unique_ptr<admin::HttpServer> admin_server_;  // 127.0.0.1 only
  std::unique_ptr<admin::HttpServer> metrics_server_;
  std::unique_ptr<admin::HttpServer> readiness_server_;
  std::atomic<bool> handoff_in_progress_{false};  // no discovery pass meanwhile
  std::atomic<bool> handed_over_{false};          // run() returns, stop() drains
  std::unique_ptr<HandoffServer> handoff_server_;
  UniqueFd handoff_conn_;         // the next agent's, after the handover: "stopped" goes there
  UniqueFd accepts_waiter_stop_;  // eventfd: ends the wait below early
  std::thread accepts_waiter_;    // restartAcceptsWhenPreviousStops()
};

}  // namespace nodemesh::agent
