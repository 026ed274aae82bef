#include "agent/daemon.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include "agent/istiod_loader.h"
#include "common/cgroup.h"
#include "hbone/tls/tls_context.h"

namespace nodemesh::agent {
namespace {

class BpfOrigDst final : public tunnel::OrigDstResolver {
 public:
  explicit BpfOrigDst(CapturePrograms& capture) : capture_(capture) {}
  std::optional<SocketAddress> takeOrigDst(uint64_t cookie, const SocketAddress& app) override {
    return capture_.takeOrigDst(cookie, app);
  }

 private:
  CapturePrograms& capture_;
};

// Logs a start failure and passes it on.
Error failed(Error error) {
  spdlog::error("{}", error.message);
  return error;
}

// A port of 0 disables the server.
Result<std::unique_ptr<admin::HttpServer>> serve(const char* name, const char* address,
                                                 uint16_t port, size_t threads,
                                                 std::vector<admin::Route> routes) {
  if (port == 0) return std::unique_ptr<admin::HttpServer>();
  admin::HttpServerOptions options;
  options.name = name;
  options.address = address;
  options.port = port;
  options.threads = threads;
  auto server = admin::HttpServer::start(options, std::move(routes));
  if (server) spdlog::info("{} endpoint listening on {}:{}", name, address, port);
  return server;
}

}  // namespace

Daemon::Daemon(DaemonOptions options) : options_(std::move(options)) {}

xds::IstiodConnection Daemon::istiodConnection(const std::string& address) const {
  xds::IstiodConnection c;
  c.address = address;
  c.root_cert_file = options_.istiod_root_cert;
  c.token_file = options_.istiod_token_file;
  c.cluster_id = options_.cluster_id;
  c.tls_server_name = options_.istiod_server_name;
  return c;
}

Result<xds::Istiod*> Daemon::istiod() {
  if (istiod_ == nullptr) {
    auto loaded = loadIstiodModule(options_.istiod_module);
    if (!loaded) return loaded.error();
    istiod_ = *loaded;
  }
  return istiod_;
}

Daemon::~Daemon() {
  if (accepts_waiter_.joinable()) {
    const uint64_t one = 1;
    if (::write(accepts_waiter_stop_.get(), &one, sizeof(one)) < 0) {
      spdlog::warn("handoff: waking the thread waiting for the previous agent: {}",
                   std::strerror(errno));
    }
    accepts_waiter_.join();
  }
  // The informers' callbacks publish through publishMerged(), which reads kube_ under
  // publish_mu_: take it out under the lock, stop it (joining those threads) outside it.
  std::unique_ptr<KubeIntegration> kube;
  {
    std::lock_guard<std::mutex> lock(publish_mu_);
    kube = std::move(kube_);
  }
  kube.reset();
}

Result<std::unique_ptr<Daemon>> Daemon::start(DaemonOptions options) {
  std::unique_ptr<Daemon> self(new Daemon(std::move(options)));
  // Each step adds members; returning early destroys the ones added so far, newest first.
  self->loop_thread_ = pthread_self();
  for (auto step :
       {&Daemon::startConfig, &Daemon::startCapture, &Daemon::startIdentity, &Daemon::startTunnel,
        &Daemon::startHandoff, &Daemon::startKubernetes, &Daemon::startServers}) {
    if (auto st = (self.get()->*step)(); !st) return st.error();
  }
  // After an upgrade, run() listens once it has taken over from the previous agent.
  if (!self->inheritance_) self->listenForHandoff();
  self->running_ = true;
  spdlog::info("nodemesh-agent running on node {} ({} tunnel worker{})", self->options_.node,
               self->workers_, self->workers_ == 1 ? "" : "s");
  return self;
}

Status Daemon::startConfig() {
  if (options_.cgroup.empty()) {
    auto root = findCgroup2Root();
    if (!root) return failed(root.error());
    cgroup_ = *root;
  } else {
    cgroup_ = options_.cgroup;
  }
  std::string what = options_.config;
  if (options_.xds_address.empty()) {
    config_source_ = std::make_unique<config::LocalFileSource>(options_.config);
  } else {
    // istiod: the first snapshot (both types answered) before anything is installed.
    auto istiod_module = istiod();
    if (!istiod_module) return failed(istiod_module.error());
    xds::IstiodConfigOptions xds_options;
    xds_options.connection = istiodConnection(options_.xds_address);
    xds_options.node_name = options_.node;
    xds_options.cluster_id = options_.cluster_id;
    xds_options.initial_timeout = std::chrono::seconds(options_.xds_initial_timeout_s);
    auto source = (*istiod_module)->configSource(std::move(xds_options));
    if (!source) return failed(Error{source.error().code, "xDS: " + source.error().message});
    xds_ = source->get();
    config_source_ = std::move(*source);
    what = "istiod at " + options_.xds_address;
    spdlog::info("mesh config from {} (delta xDS)", what);
  }
  // The one load of the config: a bad file stops the start before anything is installed.
  auto started = config_source_->start([this](model::SnapshotPtr snapshot) {
    spdlog::info("config in force: {}", snapshot->summary());
    {
      std::lock_guard<std::mutex> lock(publish_mu_);
      source_snapshot_ = std::move(snapshot);
    }
    publishMerged();
  });
  if (!started) {
    // One "file:line: reason" per line.
    std::string_view problems = started.error().message;
    while (!problems.empty()) {
      auto end = problems.find('\n');
      if (end != 0) spdlog::error("{}", problems.substr(0, end));
      problems = end == std::string_view::npos ? "" : problems.substr(end + 1);
    }
    spdlog::error("{}: no valid config, not starting", what);
    return started.error();
  }
  return okStatus();
}

Status Daemon::startCapture() {
  CaptureOptions capture_options;
  capture_options.bpffs_dir = options_.bpffs;
  capture_options.cgroup_path = cgroup_;
  auto capture = CapturePrograms::install(capture_options);
  if (!capture) {
    return failed(
        Error{capture.error().code, "installing capture programs: " + capture.error().message});
  }
  capture_ = std::move(*capture);
  uninstall_capture_.emplace([this] {
    if (keep_capture_) {
      spdlog::info("capture left in place under {} for the next agent", options_.bpffs);
      return;
    }
    if (!running_) {
      (void)capture_->uninstall();
      return;
    }
    Status st = capture_->uninstall();
    if (!st) {
      spdlog::error("uninstall: {}", st.error().message);
    } else {
      spdlog::info("stopped; nothing left pinned under {}", options_.bpffs);
    }
    if (stop_status_) *stop_status_ = std::move(st);
  });
  const auto& report = capture_->installReport();
  spdlog::info(
      "capture programs attached to cgroup {} (links created {}, reused {}; maps {}) "
      "pinned under {}",
      cgroup_, report.links_created, report.links_reused, report.maps_reused ? "reused" : "created",
      options_.bpffs);
  if (auto st = capture_->setExclusions(options_.exclusions); !st) {
    return failed(Error{st.error().code, "exclusions: " + st.error().message});
  }
  return okStatus();
}

Status Daemon::startIdentity() {
  const std::string ca_address =
      options_.local_ca
          ? ""
          : (options_.ca_address.empty() ? options_.xds_address : options_.ca_address);
  if (!ca_address.empty()) {
    // Istio's CA: certificates for this node's workloads, asked for as ztunnel does.
    auto istiod_module = istiod();
    if (!istiod_module) return failed(istiod_module.error());
    auto ca = (*istiod_module)->certificateAuthority(istiodConnection(ca_address), wall_clock_);
    if (!ca) return failed(Error{ca.error().code, "Istio CA: " + ca.error().message});
    istio_ca_ = std::move(*ca);
    istio_roots_ = istio_ca_->trustBundle();
    auto factory = tls::TlsContextFactory::create(istio_roots_->rawRoots());
    if (!factory) return failed(Error{factory.error().code, "TLS: " + factory.error().message});
    certificates_ = std::make_unique<identity::CertificateManager>(
        *istio_ca_, wall_clock_, std::chrono::seconds(options_.cert_lifetime_s));
    tls_ = std::make_unique<hbone::TlsProvider>(*certificates_, std::move(*factory));
    spdlog::info("workload certificates from Istio's CA at {} (roots from {})", ca_address,
                 options_.istiod_root_cert);
    return okStatus();
  }
  // The embedded CA: its root lives in the state directory (shared by the agents of one
  // cluster); workload certificates are issued in memory and never written anywhere.
  auto ca = identity::LocalCa::loadOrCreate(options_.state_dir, options_.trust_domain, wall_clock_);
  if (!ca) {
    return failed(
        Error{ca.error().code, "local CA in " + options_.state_dir + ": " + ca.error().message});
  }
  ca_ = std::move(*ca);
  auto factory = tls::TlsContextFactory::create(ca_->rootCertificate());
  if (!factory) return failed(Error{factory.error().code, "TLS: " + factory.error().message});
  certificates_ = std::make_unique<identity::CertificateManager>(
      *ca_, wall_clock_, std::chrono::seconds(options_.cert_lifetime_s));
  tls_ = std::make_unique<hbone::TlsProvider>(*certificates_, std::move(*factory));
  spdlog::info("local CA for trust domain {} in {}", options_.trust_domain, options_.state_dir);
  return okStatus();
}

Status Daemon::startTunnel() {
  orig_dst_ = std::make_unique<BpfOrigDst>(*capture_);
  tunnel::TunnelOptions tunnel_options;
  tunnel_options.workers = options_.workers ? options_.workers : tunnel::defaultWorkerCount();
  tunnel_options.hbone_recv_buffer_count = options_.recv_buffers;
  tunnel_options.app_recv_buffer_count = options_.app_recv_buffers;
  tunnel_options.app_recv_buffer_bytes = options_.app_recv_buffer_bytes;
  tunnel_options.busy_poll = std::chrono::microseconds(options_.busy_poll_us);
  tunnel_options.busy_poll_adaptive = !options_.busy_poll_fixed;
  tunnel_options.node = options_.node;
  tunnel_options.connect_timeout = std::chrono::milliseconds(options_.connect_timeout_ms);
  tunnel_options.connect_attempts = options_.connect_attempts;
  tunnel_options.keepalive_interval = std::chrono::seconds(options_.hbone_keepalive_s);
  tunnel_options.pool_idle_timeout = std::chrono::seconds(options_.hbone_idle_timeout_s);
  tunnel_options.server_idle_timeout = std::chrono::seconds(options_.hbone_server_idle_timeout_s);
  tunnel_options.max_pending_handshakes = options_.max_pending_handshakes;
  tunnel_options.max_buffered_bytes = options_.max_buffered_bytes;
  tunnel_options.same_node_fast_path = options_.same_node_fast_path;
  tunnel_options.splice = options_.splice;
  tunnel_options.splice_pipe_bytes = options_.splice_pipe_bytes;
  tunnel_options.h2.initial_stream_window = static_cast<uint32_t>(options_.hbone_stream_window);
  tunnel_options.h2.connection_window = static_cast<uint32_t>(options_.hbone_connection_window);
  tunnel_options.h2.max_concurrent_streams = options_.hbone_max_streams;
  tunnel_options.h2.max_pending_output_bytes = options_.hbone_max_pending_output;
  tunnel_options.handshake_timeout = std::chrono::seconds(options_.hbone_handshake_timeout_s);
  tunnel_options.inbound_limits.max_connections = options_.max_inbound_connections_per_workload;
  tunnel_options.inbound_limits.connections_per_second =
      options_.max_inbound_connection_rate_per_workload;
  tunnel_options.inbound_limits.burst = options_.inbound_connection_burst_per_workload;
  workers_ = tunnel_options.workers;
  telemetry_ = std::make_unique<ConnectionTelemetry>(
      options_.access_log_format, ConnectionTelemetry::Sink{},
      std::chrono::milliseconds(options_.access_log_flush_ms));
  telemetry_->setSnapshot(config_.current());
  auto tunnel = tunnel::startTunnel(
      tunnel_options, *orig_dst_, tls_.get(),
      [this](const tunnel::ConnectionRecord& r) { telemetry_->onClose(r); },
      [this](const tunnel::ConnectionRecord& r) { telemetry_->onOpen(r); });
  if (!tunnel) {
    return failed(Error{tunnel.error().code, "starting the tunnel: " + tunnel.error().message});
  }
  tunnel_ = std::move(*tunnel);
  stop_tunnel_.emplace([this] {
    tunnel_->stop();
    if (!running_) return;
    logCounters();
    spdlog::info("tunnel stats: {}", tunnel::formatTunnelStats(tunnel_->stats()));
  });

  NetnsPodSourceOptions pod_options;
  pod_options.netns_dir = options_.netns_dir;
  pod_options.name_prefix = options_.netns_prefix;
  pod_options.process_scan_interval = std::chrono::milliseconds(options_.process_scan_interval_ms);
  pod_options.proc_dir = options_.proc_dir;
  pods_ = std::make_unique<NetnsPodSource>(pod_options, steady_clock_);
  AgentOptions agent_options;
  agent_options.node = options_.node;
  agent_options.idle_pass_interval = std::chrono::milliseconds(options_.process_scan_interval_ms);
  agent_ = std::make_unique<Agent>(agent_options, *pods_, *capture_, *tunnel_, steady_clock_);
  admin::AgentInfo info{
      options_.node,
      options_.bpffs,
      cgroup_,
      options_.xds_address.empty() ? options_.config : "xds:" + options_.xds_address,
      options_.trust_domain,
      options_.exclusions.outbound_ports,
      options_.exclusions.inbound_ports,
      options_.exclusions.cidrs,
      options_.same_node_fast_path};
  admin_state_ =
      std::make_unique<AgentAdminState>(info, config_, *agent_, *tunnel_, *certificates_);
  admin_state_->setControlPlane([this] { return describeControlPlane(); });
  config_subscription_ = config_.subscribe([this](model::SnapshotPtr snapshot) {
    tunnel_->setSnapshot(snapshot);
    telemetry_->setSnapshot(snapshot);
    agent_->setSnapshot(std::move(snapshot));
  });
  readiness_.setProgramsAttached();
  readiness_.setConfigLoaded();
  readiness_.setTunnelStarted();
  return okStatus();
}

Status Daemon::startKubernetes() {
  if (!options_.kubernetes) return okStatus();
  KubeIntegrationOptions kube;
  kube.api.server = options_.kube_api_server;
  kube.api.ca_file = options_.kube_ca_file;
  kube.api.token_file = options_.kube_token_file;
  kube.pods.node = options_.node;
  kube.pods.trust_domain = options_.trust_domain;
  kube.pods.cluster_id = options_.cluster_id;
  kube.pods.membership.excluded_namespaces = options_.exclude_namespaces;
  kube.cni_socket = options_.cni_socket;
  kube.cni_state_file = options_.cni_state_file;
  kube.cni_conf_dir = options_.cni_conf_dir;
  kube.cni_bin_dir = options_.cni_bin_dir;
  kube.cni_plugin_binary = options_.cni_plugin_binary;
  if (kube.cni_plugin_binary.empty()) {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    kube.cni_plugin_binary = (self.parent_path() / "nodemesh-cni").string();
  }
  KubeIntegrationHooks hooks;
  hooks.workloads_changed = [this] { publishMerged(); };
  hooks.wake = [this] { pthread_kill(loop_thread_, SIGUSR2); };
  hooks.enrolled_uids = [this] {
    std::set<std::string> uids;
    for (const auto& pod : agent_->enrolledPods()) uids.insert(pod.workload_uid);
    return uids;
  };
  readiness_.setPodsPending();
  auto kube_started = KubeIntegration::start(std::move(kube), std::move(hooks));
  if (!kube_started) return failed(kube_started.error());
  {
    // The config file's watcher thread reads kube_ in publishMerged().
    std::lock_guard<std::mutex> lock(publish_mu_);
    kube_ = std::move(*kube_started);
  }
  publishMerged();  // what the informers found before kube_ was set
  return okStatus();
}

void Daemon::publishMerged() {
  std::lock_guard<std::mutex> lock(publish_mu_);
  if (!source_snapshot_) return;
  if (!kube_) {
    config_.publish(source_snapshot_);
    return;
  }
  // The source's workloads win: a pod the file (or istiod) also describes (by uid or by
  // address) keeps that description.
  std::vector<model::Workload> workloads = source_snapshot_->workloads();
  std::set<IpAddress> taken;
  for (const auto& w : workloads) taken.insert(w.workload_ips.begin(), w.workload_ips.end());
  for (auto& w : kube_->workloads()) {
    const bool clash = source_snapshot_->workloadByUid(w.uid) != nullptr ||
                       std::any_of(w.workload_ips.begin(), w.workload_ips.end(),
                                   [&](const IpAddress& ip) { return taken.count(ip) > 0; });
    if (clash) continue;
    taken.insert(w.workload_ips.begin(), w.workload_ips.end());
    workloads.push_back(std::move(w));
  }
  config_.publish(model::Snapshot::create(
      std::move(workloads), source_snapshot_->services(), source_snapshot_->policies(),
      source_snapshot_->httpRoutes(), source_snapshot_->grpcRoutes(),
      source_snapshot_->rateLimitPolicies(), source_snapshot_->destinationRules()));
}

Status Daemon::startServers() {
  std::lock_guard<std::mutex> lock(servers_mu_);
  // Off the data path: each server has its own threads; /metrics reads atomics, the pinned
  // counter map and a copy of the TCP metrics (see agent/metrics/agent_metrics.h).
  auto admin = serve("admin", admin::kAdminAddress, options_.admin_port, 2,
                     admin::adminRoutes(*admin_state_));
  if (!admin) return failed(admin.error());
  admin_server_ = std::move(*admin);
  auto metrics = serve("metrics", "0.0.0.0", options_.metrics_port, 2,
                       admin::metricsRoutes([this] { return metricsInput(); }));
  if (!metrics) return failed(metrics.error());
  metrics_server_ = std::move(*metrics);
  auto readiness =
      serve("readiness", "0.0.0.0", options_.readiness_port, 1, admin::readinessRoutes(readiness_));
  if (!readiness) return failed(readiness.error());
  readiness_server_ = std::move(*readiness);
  return okStatus();
}

void Daemon::run() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);  // a wake-up: the Kubernetes side changed something
  timespec interval{options_.scan_interval_ms / 1000,
                    (options_.scan_interval_ms % 1000) * 1000000L};
  // Named namespaces are watched: once every pod is enrolled, a pass runs when one comes or
  // goes rather than every interval (a pass on the tunnel's CPU showed in its p99.9 latency).
  while (true) {
    if (handed_over_) return;
    const bool pods_changed = pods_->changed();
    if (!handoff_in_progress_ && agent_->scanDue(pods_changed)) {
      // Both lists were complete before this pass started: it saw every pod of the node.
      const bool listed = kube_ && kube_->synced();
      agent_->reconcile();
      if (kube_) kube_->passDone();
      if (listed) readiness_.setPodsEnrolled();
      if (inheritance_ && (!kube_ || listed)) {
        // The first pass that saw every pod took them, on the previous agent's sockets: it can
        // stop accepting. (With --kubernetes, passes before the pods are listed see none.)
        if (size_t dropped = tunnel_->dropUnadoptedListeners(); dropped > 0) {
          spdlog::info("handoff: closed {} inherited sockets of pods that are gone", dropped);
        }
        if (auto st = confirmHandoff(*inheritance_); !st) {
          spdlog::warn("handoff: telling the previous agent: {}", st.error().message);
        } else {
          spdlog::info("handoff: took over from the previous agent");
          restartAcceptsWhenPreviousStops(std::move(*inheritance_));
        }
        inheritance_.reset();
        listenForHandoff();
      }
    }
    int sig = sigtimedwait(&signals, nullptr, &interval);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {}: detaching and removing everything", strsignal(sig));
      return;
    }
    if (sig == SIGUSR1) {
      spdlog::info("discovery: passes={} enrolled_pods={} netns_watched={}", agent_->passes(),
                   agent_->enrolledPods().size(), pods_->watching() ? 1 : 0);
      logCounters();
      spdlog::info("tunnel stats: {}", tunnel::formatTunnelStats(tunnel_->stats()));
    }
    // Renewal at half-life; connections keep the certificate they were made with.
    if (size_t rotated = certificates_->rotateDue(); rotated > 0) {
      spdlog::info("rotated {} workload certificate{}", rotated, rotated == 1 ? "" : "s");
    }
  }
}

Status Daemon::startHandoff() {
  if (options_.handoff_socket.empty()) return okStatus();
  auto handoff = requestHandoff(options_.handoff_socket, std::chrono::seconds(10));
  if (!handoff) {
    return failed(Error{handoff.error().code, "taking over from the running agent at " +
                                                  options_.handoff_socket + ": " +
                                                  handoff.error().message});
  }
  if (!*handoff) return okStatus();  // no agent runs: a plain start
  spdlog::info("handoff: took {} listening sockets from the running agent at {}",
               (*handoff)->listeners.size(), options_.handoff_socket);
  tunnel_->adoptListeners(std::move((*handoff)->listeners));
  inheritance_ = std::move(**handoff);
  return okStatus();
}

void Daemon::logCounters() const {
  auto counters = capture_->nodeCounters();
  if (!counters) return;
  std::string line;
  for (int i = 0; i < NM_REASON_MAX; ++i) {
    if ((*counters)[i] == 0) continue;
    line += fmt::format(" {}={}", reasonName(i), (*counters)[i]);
  }
  spdlog::info("capture counters:{}", line.empty() ? " none" : line);
}

namespace {

std::string isoTime(std::chrono::system_clock::time_point t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

}  // namespace

nlohmann::json Daemon::describeControlPlane() const {
  nlohmann::json out;
  if (xds_ == nullptr) {
    out["config"] = {{"source", "file"}, {"path", options_.config}};
  } else {
    const xds::AdsStatus s = xds_->status();
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [url, t] : s.types) {
      types[url] = {{"ackedVersion", t.acked_version},
                    {"ackedNonce", t.acked_nonce},
                    {"synced", t.synced},
                    {"responses", t.responses},
                    {"acks", t.acks},
                    {"nacks", t.nacks},
                    {"resources", t.resources}};
    }
    nlohmann::json xds = {{"address", s.address},
                          {"connected", s.connected},
                          {"lastError", s.last_error},
                          {"types", types}};
#define NODEMESH_ADS_COUNTER_JSON(name) xds["counters"][#name] = s.name;
    NODEMESH_ADS_COUNTERS(NODEMESH_ADS_COUNTER_JSON)
#undef NODEMESH_ADS_COUNTER_JSON
    if (s.last_nack) {
      xds["lastNack"] = {{"typeUrl", s.last_nack->type_url},
                         {"nonce", s.last_nack->nonce},
                         {"reason", s.last_nack->reason},
                         {"time", isoTime(s.last_nack->time)}};
    } else {
      xds["lastNack"] = nullptr;
    }
    out["config"] = {{"source", "xds"}, {"xds", xds}};
  }
  nlohmann::json ca;
  if (istio_ca_) {
    ca = {{"issuer", "istiod"},
          {"address", options_.ca_address.empty() ? options_.xds_address : options_.ca_address}};
  } else {
    ca = {{"issuer", "local"}, {"stateDir", options_.state_dir}};
  }
  const auto stats = certificates_->stats();
#define NODEMESH_CERT_COUNTER_JSON(name) ca["counters"][#name] = stats.name;
  NODEMESH_CERT_MANAGER_COUNTERS(NODEMESH_CERT_COUNTER_JSON)
#undef NODEMESH_CERT_COUNTER_JSON
  ca["identities"] = nlohmann::json::array();
  for (const auto& st : certificates_->status()) {
    nlohmann::json id = {{"identity", st.identity.toString()},
                         {"consecutiveFailures", st.consecutive_failures},
                         {"lastError", st.last_error}};
    if (st.certificate) id["expirationTime"] = isoTime(st.certificate->notAfter());
    ca["identities"].push_back(std::move(id));
  }
  out["ca"] = std::move(ca);
  return out;
}

metrics::AgentMetricsInput Daemon::metricsInput() const {
  metrics::AgentMetricsInput in;
  in.tcp = &telemetry_->tcpMetrics();
  if (auto counters = capture_->nodeCounters()) {
    std::map<std::string, uint64_t> by_reason;
    for (int i = 0; i < NM_REASON_MAX; ++i) by_reason[std::string(reasonName(i))] = (*counters)[i];
    in.capture_counters = std::move(by_reason);
  }
  in.tunnel = tunnel_->stats();
  in.enrolled_pods = agent_->enrolledPods().size();
  for (const auto& cert : certificates_->certificates()) {
    in.certificates.push_back({cert->identity().toString(), cert->notAfter()});
  }
  in.certificate_rotation_failures = certificates_->rotationFailures();
  const auto cert_stats = certificates_->stats();
  in.certificate_requests = cert_stats.issue_requests;
  in.certificate_request_failures = cert_stats.issue_failures;
  if (xds_ != nullptr) {
    const auto s = xds_->status();
    in.xds_connected = s.connected;
    in.xds_connects = s.connects;
    for (const auto& [url, t] : s.types) {
      in.xds_types.push_back({url.substr(url.rfind('.') + 1), t.responses, t.nacks});
    }
  }
  in.ready = readiness_.ready();
  if (auto snap = config_.current()) {
    in.config_workloads = snap->workloads().size();
    in.config_services = snap->services().size();
    in.config_policies = snap->policies().size();
  }
  return in;
}

}  // namespace nodemesh::agent
