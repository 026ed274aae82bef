// nodemesh-agent: the node agent. Loads the capture programs, follows the node's pods and
// runs the tunnel that relays what the programs capture. See docs/agent.md.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/access_log.h"
#include "agent/admin/admin_api.h"
#include "agent/admin/http_server.h"
#include "agent/agent.h"
#include "agent/bpf/capture_programs.h"
#include "agent/netns_pod_source.h"
#include "agent/steady_clock.h"
#include "common/cgroup.h"
#include "config/local/local_config.h"
#include "config/local/local_file_source.h"
#include "hbone/tls/tls_context.h"
#include "hbone/tls_provider.h"
#include "identity/cert_manager.h"
#include "identity/clock.h"
#include "identity/local_ca.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent {
namespace {

struct Flags {
  std::string config;
  std::string node;
  bool validate = false;
  std::string cgroup;
  std::string bpffs = "/sys/fs/bpf/nodemesh";
  std::vector<uint16_t> exclude_outbound_ports;
  std::vector<uint16_t> exclude_inbound_ports;
  std::vector<std::string> exclude_cidrs;
  std::string log_level = "info";
  int scan_interval_ms = 200;
  int process_scan_interval_ms = 2000;
  std::string netns_dir = "/var/run/netns";
  std::string state_dir = "/var/lib/nodemesh";
  std::string trust_domain = "cluster.local";
  int cert_lifetime_s = 24 * 3600;
  unsigned workers = 0;
  unsigned recv_buffers = 128;
  unsigned busy_poll_us = 0;
  uint16_t admin_port = admin::kDefaultAdminPort;
  uint16_t metrics_port = admin::kDefaultMetricsPort;
  uint16_t readiness_port = admin::kDefaultReadinessPort;
  std::string access_log_format = "text";
  int connect_timeout_ms = 10000;
  unsigned connect_attempts = 3;
};

class BpfOrigDst final : public tunnel::OrigDstResolver {
 public:
  explicit BpfOrigDst(CapturePrograms& capture) : capture_(capture) {}
  std::optional<SocketAddress> takeOrigDst(uint64_t cookie, const SocketAddress& app) override {
    return capture_.takeOrigDst(cookie, app);
  }

 private:
  CapturePrograms& capture_;
};

int validate(const std::string& path) {
  auto result = config::loadLocalConfigFile(path);
  for (const auto& w : result.warnings) std::cerr << w.toString() << " (warning)\n";
  if (!result.ok()) {
    for (const auto& p : result.problems) std::cerr << p.toString() << "\n";
    std::cerr << path << ": invalid (" << result.problems.size() << " problem"
              << (result.problems.size() == 1 ? "" : "s") << ")\n";
    return 1;
  }
  std::cout << path << ": valid: " << result.snapshot->summary() << "\n";
  return 0;
}

void logCounters(const CapturePrograms& capture) {
  auto counters = capture.nodeCounters();
  if (!counters) return;
  std::string line;
  for (int i = 0; i < NM_REASON_MAX; ++i) {
    if ((*counters)[i] == 0) continue;
    line += fmt::format(" {}={}", reasonName(i), (*counters)[i]);
  }
  spdlog::info("capture counters:{}", line.empty() ? " none" : line);
}

void logTunnelStats(const tunnel::Tunnel& tunnel) {
  spdlog::info("tunnel stats: {}", tunnel::formatTunnelStats(tunnel.stats()));
}

// What the admin API and /metrics read of the running agent.
class AgentAdminState final : public admin::AdminState {
 public:
  AgentAdminState(const Flags& flags, std::string cgroup, const Exclusions& exclusions,
                  const Agent& agent, const tunnel::Tunnel& tunnel,
                  const identity::CertificateManager& certificates)
      : flags_(flags),
        cgroup_(std::move(cgroup)),
        exclusions_(exclusions),
        agent_(agent),
        tunnel_(tunnel),
        certificates_(certificates) {}

  void setSnapshot(model::SnapshotPtr snapshot) {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(snapshot);
  }
  model::SnapshotPtr snapshot() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshot_;
  }
  std::vector<admin::PodView> pods() const override {
    std::vector<admin::PodView> out;
    for (const auto& pod : agent_.enrolledPods()) {
      admin::PodView view{pod.name, pod.workload_uid, pod.netns_path, pod.netns_cookie, {}};
      for (const auto& ip : pod.ips) view.ips.push_back(ip.toString());
      out.push_back(std::move(view));
    }
    return out;
  }
  std::vector<tunnel::ConnectionInfo> connections() const override { return tunnel_.connections(); }
  std::vector<admin::CertificateView> certificates() const override {
    std::vector<admin::CertificateView> out;
    for (const auto& cert : certificates_.certificates()) {
      out.push_back({cert->identity().toString(), cert->serialHex(), cert->notBefore(),
                     cert->notAfter(), cert->pemCertificate()});
    }
    return out;
  }
  admin::AgentInfo info() const override {
    return {flags_.node,
            flags_.bpffs,
            cgroup_,
            flags_.config,
            flags_.trust_domain,
            exclusions_.outbound_ports,
            exclusions_.inbound_ports,
            exclusions_.cidrs};
  }
  void quit() override { ::kill(::getpid(), SIGTERM); }

 private:
  const Flags& flags_;
  std::string cgroup_;
  Exclusions exclusions_;
  const Agent& agent_;
  const tunnel::Tunnel& tunnel_;
  const identity::CertificateManager& certificates_;
  mutable std::mutex mu_;
  model::SnapshotPtr snapshot_;
};

// The admin (127.0.0.1 only), metrics and readiness servers; a port of 0 disables one.
struct HttpServers {
  std::unique_ptr<admin::HttpServer> admin;
  std::unique_ptr<admin::HttpServer> metrics;
  std::unique_ptr<admin::HttpServer> readiness;

  void stop() {
    for (auto* s : {admin.get(), metrics.get(), readiness.get()}) {
      if (s) s->stop();
    }
  }
};

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

int run(const Flags& flags) {
  std::string cgroup = flags.cgroup;
  if (cgroup.empty()) {
    auto root = findCgroup2Root();
    if (!root) {
      spdlog::error("{}", root.error().message);
      return 1;
    }
    cgroup = *root;
  }
  config::LoadResult first = config::loadLocalConfigFile(flags.config);
  if (!first.ok()) {
    for (const auto& p : first.problems) spdlog::error("{}", p.toString());
    spdlog::error("{}: invalid config, not starting", flags.config);
    return 1;
  }

  Exclusions exclusions;
  exclusions.outbound_ports = flags.exclude_outbound_ports;
  exclusions.inbound_ports = flags.exclude_inbound_ports;
  for (const auto& text : flags.exclude_cidrs) {
    auto cidr = Cidr::parse(text);
    if (!cidr) {
      spdlog::error("--exclude-cidrs: {}", cidr.error().message);
      return 2;
    }
    exclusions.cidrs.push_back(*cidr);
  }

  CaptureOptions capture_options;
  capture_options.bpffs_dir = flags.bpffs;
  capture_options.cgroup_path = cgroup;
  auto capture = CapturePrograms::install(capture_options);
  if (!capture) {
    spdlog::error("installing capture programs: {}", capture.error().message);
    return 1;
  }
  const auto& report = (*capture)->installReport();
  spdlog::info(
      "capture programs attached to cgroup {} (links created {}, reused {}; maps {}) "
      "pinned under {}",
      cgroup, report.links_created, report.links_reused, report.maps_reused ? "reused" : "created",
      flags.bpffs);
  if (auto st = (*capture)->setExclusions(exclusions); !st) {
    spdlog::error("exclusions: {}", st.error().message);
    (void)(*capture)->uninstall();
    return 1;
  }

  // The embedded CA: its root lives in the state directory (shared by the agents of one
  // cluster); workload certificates are issued in memory and never written anywhere.
  identity::SystemClock clock;
  auto ca = identity::LocalCa::loadOrCreate(flags.state_dir, flags.trust_domain, clock);
  if (!ca) {
    spdlog::error("local CA in {}: {}", flags.state_dir, ca.error().message);
    (void)(*capture)->uninstall();
    return 1;
  }
  auto factory = tls::TlsContextFactory::create((*ca)->rootCertificate());
  if (!factory) {
    spdlog::error("TLS: {}", factory.error().message);
    (void)(*capture)->uninstall();
    return 1;
  }
  identity::CertificateManager certificates(**ca, clock,
                                            std::chrono::seconds(flags.cert_lifetime_s));
  hbone::TlsProvider tls(certificates, std::move(*factory));
  spdlog::info("local CA for trust domain {} in {}", flags.trust_domain, flags.state_dir);

  BpfOrigDst orig_dst(**capture);
  tunnel::TunnelOptions tunnel_options;
  tunnel_options.workers = flags.workers ? flags.workers : tunnel::defaultWorkerCount();
  tunnel_options.recv_buffer_count = flags.recv_buffers;
  tunnel_options.busy_poll = std::chrono::microseconds(flags.busy_poll_us);
  tunnel_options.node = flags.node;
  tunnel_options.connect_timeout = std::chrono::milliseconds(flags.connect_timeout_ms);
  tunnel_options.connect_attempts = flags.connect_attempts;
  ConnectionTelemetry telemetry(flags.access_log_format == "json" ? AccessLogFormat::kJson
                                                                  : AccessLogFormat::kText);
  telemetry.setSnapshot(first.snapshot);
  auto tunnel = tunnel::startTunnel(
      tunnel_options, orig_dst, &tls,
      [&telemetry](const tunnel::ConnectionRecord& r) { telemetry.onClose(r); },
      [&telemetry](const tunnel::ConnectionRecord& r) { telemetry.onOpen(r); });
  if (!tunnel) {
    spdlog::error("starting the tunnel: {}", tunnel.error().message);
    (void)(*capture)->uninstall();
    return 1;
  }

  RealSteadyClock steady_clock;
  NetnsPodSourceOptions pod_options;
  pod_options.netns_dir = flags.netns_dir;
  pod_options.process_scan_interval = std::chrono::milliseconds(flags.process_scan_interval_ms);
  NetnsPodSource pods(pod_options, steady_clock);
  AgentOptions agent_options;
  agent_options.node = flags.node;
  agent_options.idle_pass_interval = std::chrono::milliseconds(flags.process_scan_interval_ms);
  Agent agent(agent_options, pods, **capture, **tunnel, steady_clock);
  agent.setSnapshot(first.snapshot);
  (*tunnel)->setSnapshot(first.snapshot);
  AgentAdminState admin_state(flags, cgroup, exclusions, agent, **tunnel, certificates);
  admin_state.setSnapshot(first.snapshot);
  admin::Readiness readiness;
  readiness.setProgramsAttached();
  readiness.setConfigLoaded();
  readiness.setTunnelStarted();

  // Off the data path: each server has its own threads; /metrics reads atomics, the pinned
  // counter map and a copy of the TCP metrics (see agent/metrics/agent_metrics.h).
  const CapturePrograms& capture_ref = **capture;
  const tunnel::Tunnel& tunnel_ref = **tunnel;
  auto gather = [&] {
    metrics::AgentMetricsInput in;
    in.tcp = &telemetry.tcpMetrics();
    if (auto counters = capture_ref.nodeCounters()) {
      std::map<std::string, uint64_t> by_reason;
      for (int i = 0; i < NM_REASON_MAX; ++i)
        by_reason[std::string(reasonName(i))] = (*counters)[i];
      in.capture_counters = std::move(by_reason);
    }
    in.tunnel = tunnel_ref.stats();
    in.enrolled_pods = agent.enrolledPods().size();
    for (const auto& cert : certificates.certificates()) {
      in.certificates.push_back({cert->identity().toString(), cert->notAfter()});
    }
    in.certificate_rotation_failures = certificates.rotationFailures();
    in.ready = readiness.ready();
    if (auto snap = admin_state.snapshot()) {
      in.config_workloads = snap->workloads().size();
      in.config_services = snap->services().size();
      in.config_policies = snap->policies().size();
    }
    return in;
  };
  HttpServers servers;
  {
    auto admin_server =
        serve("admin", admin::kAdminAddress, flags.admin_port, 2, admin::adminRoutes(admin_state));
    auto metrics_server =
        admin_server
            ? serve("metrics", "0.0.0.0", flags.metrics_port, 2, admin::metricsRoutes(gather))
            : Result<std::unique_ptr<admin::HttpServer>>(admin_server.error());
    auto readiness_server =
        metrics_server ? serve("readiness", "0.0.0.0", flags.readiness_port, 1,
                               admin::readinessRoutes(readiness))
                       : Result<std::unique_ptr<admin::HttpServer>>(metrics_server.error());
    if (!readiness_server) {
      spdlog::error("{}", readiness_server.error().message);
      (*tunnel)->stop();
      (void)(*capture)->uninstall();
      return 1;
    }
    servers.admin = std::move(*admin_server);
    servers.metrics = std::move(*metrics_server);
    servers.readiness = std::move(*readiness_server);
  }

  config::LocalFileSource source(flags.config);
  auto started = source.start(
      [&agent, &tunnel = *tunnel, &telemetry, &admin_state](model::SnapshotPtr snapshot) {
        spdlog::info("config in force: {}", snapshot->summary());
        tunnel->setSnapshot(snapshot);
        telemetry.setSnapshot(snapshot);
        admin_state.setSnapshot(snapshot);
        agent.setSnapshot(std::move(snapshot));
      });
  if (!started) {
    spdlog::error("{}", started.error().message);
    servers.stop();
    (*tunnel)->stop();
    (void)(*capture)->uninstall();
    return 1;
  }

  spdlog::info("nodemesh-agent running on node {} ({} tunnel worker{})", flags.node,
               tunnel_options.workers, tunnel_options.workers == 1 ? "" : "s");
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  timespec interval{flags.scan_interval_ms / 1000, (flags.scan_interval_ms % 1000) * 1000000L};
  // Named namespaces are watched: once every pod is enrolled, a pass runs when one comes or
  // goes rather than every interval (a pass on the tunnel's CPU showed in its p99.9 latency).
  while (true) {
    const bool pods_changed = pods.changed();
    if (agent.scanDue(pods_changed)) agent.reconcile();
    int sig = sigtimedwait(&signals, nullptr, &interval);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("received {}: detaching and removing everything", strsignal(sig));
      break;
    }
    if (sig == SIGUSR1) {
      spdlog::info("discovery: passes={} enrolled_pods={} netns_watched={}", agent.passes(),
                   agent.enrolledPods().size(), pods.watching() ? 1 : 0);
      logCounters(**capture);
      logTunnelStats(**tunnel);
    }
    // Renewal at half-life; connections keep the certificate they were made with.
    if (size_t rotated = certificates.rotateDue(); rotated > 0) {
      spdlog::info("rotated {} workload certificate{}", rotated, rotated == 1 ? "" : "s");
    }
  }

  readiness.setStopping();
  servers.stop();
  source.stop();
  agent.unenrollAll();
  (*tunnel)->stop();
  logCounters(**capture);
  logTunnelStats(**tunnel);
  if (auto st = (*capture)->uninstall(); !st) {
    spdlog::error("uninstall: {}", st.error().message);
    return 1;
  }
  spdlog::info("stopped; nothing left pinned under {}", flags.bpffs);
  return 0;
}

// main() without the last-resort exception handler.
int agentMain(int argc, char** argv) {
  Flags flags;
  CLI::App app{"nodemesh-agent: the nodemesh node agent (eBPF capture + tunnel)"};
  app.footer(
      "Examples:\n"
      "  nodemesh-agent --config examples/two-nodes.yaml --validate\n"
      "  nodemesh-agent --config /etc/nodemesh/mesh.yaml --node node1\n"
      "  nodemesh-agent --config mesh.yaml --node node1 --cgroup /sys/fs/cgroup/unified/test \\\n"
      "      --bpffs /sys/fs/bpf/nodemesh-test --exclude-outbound-ports 9000,9001\n"
      "Signals: SIGTERM/SIGINT detach and remove everything the agent created; SIGUSR1 logs\n"
      "the capture counters. A killed agent leaves its pins; the next start reuses them.");
  app.add_option("--config", flags.config, "local config file (ztunnel's local config format)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_flag("--validate", flags.validate, "check the config file and exit (0 = valid)");
  app.add_option("--node", flags.node, "this node's name (default: $NODE_NAME, else hostname)");
  app.add_option("--cgroup", flags.cgroup,
                 "cgroup2 directory to attach the cgroup programs to (default: the cgroup2 "
                 "root)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--bpffs", flags.bpffs, "directory on bpffs for this agent's pins")
      ->capture_default_str();
  app.add_option("--exclude-outbound-ports", flags.exclude_outbound_ports,
                 "destination ports never captured")
      ->delimiter(',')
      ->check(CLI::Range(1, 65535));
  app.add_option("--exclude-inbound-ports", flags.exclude_inbound_ports,
                 "pod ports whose inbound connections are never captured")
      ->delimiter(',')
      ->check(CLI::Range(1, 65535));
  app.add_option("--exclude-cidrs", flags.exclude_cidrs,
                 "CIDRs never captured: as destination (outbound) and as source (inbound, e.g. "
                 "the node's address for kubelet probes)")
      ->delimiter(',');
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--scan-interval-ms", flags.scan_interval_ms,
                 "how often pods are looked for, in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(10, 10000));
  app.add_option("--process-scan-interval-ms", flags.process_scan_interval_ms,
                 "how often namespaces used only by processes (/proc/*/ns/net) are looked for "
                 "once every pod is enrolled, in milliseconds (named ones: every scan)")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--netns-dir", flags.netns_dir, "where named network namespaces live")
      ->capture_default_str();
  app.add_option("--state-dir", flags.state_dir,
                 "the local CA's root key and certificate (0600), shared by the agents of a "
                 "cluster; created on first start")
      ->capture_default_str();
  app.add_option("--trust-domain", flags.trust_domain, "SPIFFE trust domain of the local CA")
      ->capture_default_str();
  app.add_option("--cert-lifetime", flags.cert_lifetime_s,
                 "workload certificate lifetime in seconds; renewed at half-life")
      ->capture_default_str()
      ->check(CLI::Range(2, 365 * 24 * 3600));
  app.add_option("--workers", flags.workers,
                 "tunnel worker threads, one io_uring each (default: one per CPU the agent may "
                 "use)")
      ->check(CLI::Range(1, 256));
  app.add_option("--recv-buffers", flags.recv_buffers,
                 "receive buffers (16 KiB each) per tunnel worker, shared by its sockets through "
                 "an io_uring provided buffer ring; a power of two")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        unsigned long n = std::strtoul(v.c_str(), nullptr, 10);
        return n >= 2 && n <= 32768 && (n & (n - 1)) == 0 ? "" : "must be a power of two, 2..32768";
      });
  app.add_option("--busy-poll-us", flags.busy_poll_us,
                 "microseconds each tunnel worker polls for work before it sleeps: lower "
                 "round-trip latency for CPU kept busy (docs/tunnel.md); 0 disables it")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--admin-port", flags.admin_port,
                 "admin API port, on 127.0.0.1 only (/config_dump, /connections, /logging, "
                 "/explain, /quitquitquit); 0 disables it")
      ->capture_default_str();
  app.add_option("--metrics-port", flags.metrics_port,
                 "Prometheus /metrics port (all addresses); 0 disables it")
      ->capture_default_str();
  app.add_option("--readiness-port", flags.readiness_port,
                 "/healthz/ready port (all addresses); 0 disables it")
      ->capture_default_str();
  app.add_option("--access-log-format", flags.access_log_format,
                 "access log lines on stdout: text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--connect-timeout-ms", flags.connect_timeout_ms,
                 "a connect to a destination or to a peer's 15008 that takes longer fails (and "
                 "is retried on another endpoint for a service)")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--connect-attempts", flags.connect_attempts,
                 "endpoints tried per connection to a service (the first pick plus retries on "
                 "other endpoints after a connect failure)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10));
  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_logger_mt("nodemesh");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  // The "nodemesh" logger only: the access log has its own (agent/access_log.h).
  logger->set_level(spdlog::level::from_str(flags.log_level));

  if (flags.validate) return nodemesh::agent::validate(flags.config);

  if (flags.node.empty()) {
    const char* env = std::getenv("NODE_NAME");
    if (env && *env) {
      flags.node = env;
    } else {
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      flags.node = host;
    }
  }
  // Block the signals the main loop waits for before any thread starts: threads inherit it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return nodemesh::agent::run(flags);
}

}  // namespace
}  // namespace nodemesh::agent

int main(int argc, char** argv) {
  try {
    return nodemesh::agent::agentMain(argc, argv);
  } catch (const std::exception& e) {
    // Errors are Results, not exceptions; this is for what a library still throws
    // (std::bad_alloc, spdlog, std::filesystem): exit with its message after the stack
    // unwinds (the destructors stop the tunnel thread) instead of in std::terminate().
    std::cerr << "nodemesh-agent: " << e.what() << "\n";
    return 1;
  }
}
