// nodemesh-agent: the node agent. Loads the capture programs, follows the node's pods and
// runs the tunnel that relays what the programs capture. See docs/agent.md.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/daemon.h"
#include "config/local/local_config.h"

namespace nodemesh::agent {
namespace {

struct Flags {
  DaemonOptions daemon;
  bool validate = false;
  std::string log_level = "info";
  std::vector<std::string> exclude_cidrs;
  std::string access_log_format = "text";
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

// The agents that hand over to each other are those that share their pins.
std::string defaultHandoffSocket(const std::string& bpffs) {
  std::string name;
  for (char c : bpffs) {
    if (c == '/') {
      if (!name.empty() && name.back() != '-') name += '-';
    } else {
      name += c;
    }
  }
  while (!name.empty() && name.back() == '-') name.pop_back();
  constexpr size_t kMaxName = 80;  // sun_path holds 107 bytes
  if (name.size() > kMaxName) {
    uint64_t fnv = 14695981039346656037ULL;  // FNV-1a: the same name in every build
    for (unsigned char c : bpffs) fnv = (fnv ^ c) * 1099511628211ULL;
    name = fmt::format("{:016x}", fnv);
  }
  return "/run/nodemesh/" + name + ".handoff";
}

int run(DaemonOptions options) {
  auto daemon = Daemon::start(std::move(options));
  if (!daemon) return 1;  // logged
  (*daemon)->run();
  return Daemon::stop(std::move(*daemon)) ? 0 : 1;
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
      "the capture counters. A killed agent leaves its pins; the next start reuses them.\n"
      "Upgrades: start the new agent while the old one runs; it takes the old one's listening\n"
      "sockets (--handoff-socket), and the old one drains its connections and exits.");
  auto* config = app.add_option("--config", flags.daemon.config,
                                "local config file (ztunnel's local config format)")
                     ->check(CLI::ExistingFile);
  auto* xds = app.add_option("--xds-address", flags.daemon.xds_address,
                             "take the mesh config from istiod over delta xDS at host:port "
                             "(e.g. istiod.istio-system.svc:15012) instead of --config; "
                             "certificates then come from Istio's CA too (docs/xds.md)")
                  ->excludes(config);
  app.add_option("--ca-address", flags.daemon.ca_address,
                 "Istio's CA (IstioCertificateService) at host:port (default: --xds-address)");
  app.add_flag("--local-ca", flags.daemon.local_ca,
               "use the embedded CA (--state-dir) even with --xds-address");
  app.add_option("--istiod-root-cert", flags.daemon.istiod_root_cert,
                 "PEM root certificate that istiod's TLS certificate chains to (the "
                 "istio-ca-root-cert ConfigMap)")
      ->capture_default_str();
  app.add_option("--istiod-token-file", flags.daemon.istiod_token_file,
                 "service account token (audience istio-ca) sent to istiod, read again for "
                 "every call; empty sends none")
      ->capture_default_str();
  app.add_option("--istiod-server-name", flags.daemon.istiod_server_name,
                 "name istiod's certificate must carry (default: the host of the address; set "
                 "it when the address is an IP, e.g. istiod.istio-system.svc)");
  app.add_option("--istiod-module", flags.daemon.istiod_module,
                 "the istiod module, loaded only with --xds-address or --ca-address (default: "
                 "../lib/nodemesh/libnodemesh-istiod.so from the agent's own directory)");
  app.add_option("--xds-initial-timeout-s", flags.daemon.xds_initial_timeout_s,
                 "seconds to wait at start for istiod's first answer of each type")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_flag("--validate", flags.validate, "check the config file and exit (0 = valid)");
  app.add_option("--node", flags.daemon.node,
                 "this node's name (default: $NODE_NAME, else hostname)");
  app.add_option("--cgroup", flags.daemon.cgroup,
                 "cgroup2 directory to attach the cgroup programs to (default: the cgroup2 "
                 "root)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--bpffs", flags.daemon.bpffs, "directory on bpffs for this agent's pins")
      ->capture_default_str();
  app.add_option("--exclude-outbound-ports", flags.daemon.exclusions.outbound_ports,
                 "destination ports never captured")
      ->delimiter(',')
      ->check(CLI::Range(1, 65535));
  app.add_option("--exclude-inbound-ports", flags.daemon.exclusions.inbound_ports,
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
  app.add_option("--scan-interval-ms", flags.daemon.scan_interval_ms,
                 "how often pods are looked for, in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(10, 10000));
  app.add_option("--process-scan-interval-ms", flags.daemon.process_scan_interval_ms,
                 "how often namespaces used only by processes (/proc/*/ns/net) are looked for "
                 "once every pod is enrolled, in milliseconds (named ones: every scan)")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--netns-dir", flags.daemon.netns_dir, "where named network namespaces live")
      ->capture_default_str();
  app.add_option("--netns-prefix", flags.daemon.netns_prefix,
                 "only named network namespaces whose name starts with this are looked at (and "
                 "no process in another named one); empty: all");
  app.add_option("--state-dir", flags.daemon.state_dir,
                 "the local CA's root key and certificate (0600), shared by the agents of a "
                 "cluster; created on first start")
      ->capture_default_str();
  app.add_option("--trust-domain", flags.daemon.trust_domain, "SPIFFE trust domain of the local CA")
      ->capture_default_str();
  app.add_option("--cert-lifetime", flags.daemon.cert_lifetime_s,
                 "workload certificate lifetime in seconds; renewed at half-life")
      ->capture_default_str()
      ->check(CLI::Range(2, 365 * 24 * 3600));
  app.add_option("--workers", flags.daemon.workers,
                 "tunnel worker threads, one io_uring each (default: one per CPU the agent may "
                 "use)")
      ->check(CLI::Range(1, 256));
  auto power_of_two = [](const std::string& v) -> std::string {
    unsigned long n = std::strtoul(v.c_str(), nullptr, 10);
    return n >= 2 && n <= 32768 && (n & (n - 1)) == 0 ? "" : "must be a power of two, 2..32768";
  };
  app.add_option("--recv-buffers", flags.daemon.recv_buffers,
                 "receive buffers (16 KiB each, a TLS record) per tunnel worker for its HBONE "
                 "sockets, shared through an io_uring provided buffer ring; a power of two")
      ->capture_default_str()
      ->check(power_of_two);
  app.add_option("--app-recv-buffers", flags.daemon.app_recv_buffers,
                 "receive buffers (--app-recv-buffer-size each) per tunnel worker for the pods' "
                 "sockets and plain TCP, in a ring of their own; a power of two")
      ->capture_default_str()
      ->check(power_of_two);
  app.add_option("--busy-poll-us", flags.daemon.busy_poll_us,
                 "microseconds each tunnel worker polls for work before it sleeps: lower "
                 "round-trip latency for CPU kept busy (docs/tunnel.md); 0 disables it")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_flag("--busy-poll-fixed", flags.daemon.busy_poll_fixed,
               "with --busy-poll-us, poll before every sleep; by default a worker stops polling "
               "while more than two of its last eight polls found nothing and probes again now "
               "and then (sparse traffic and idle workers then cost next to no CPU)");
  app.add_option("--admin-port", flags.daemon.admin_port,
                 "admin API port, on 127.0.0.1 only (/config_dump, /connections, /logging, "
                 "/explain, /quitquitquit); 0 disables it")
      ->capture_default_str();
  app.add_option("--metrics-port", flags.daemon.metrics_port,
                 "Prometheus /metrics port (all addresses); 0 disables it")
      ->capture_default_str();
  app.add_option("--readiness-port", flags.daemon.readiness_port,
                 "/healthz/ready port (all addresses); 0 disables it")
      ->capture_default_str();
  app.add_option("--access-log-format", flags.access_log_format,
                 "access log lines on stdout: text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--access-log-flush-ms", flags.daemon.access_log_flush_ms,
                 "access log lines reach stdout in one write every this many ms (or per 64 KiB); "
                 "0 writes each line at once")
      ->capture_default_str()
      ->check(CLI::Range(0, 60000));
  app.add_option("--connect-timeout-ms", flags.daemon.connect_timeout_ms,
                 "a connect to a destination or to a peer's 15008 that takes longer fails (and "
                 "is retried on another endpoint for a service)")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--connect-attempts", flags.daemon.connect_attempts,
                 "endpoints tried per connection to a service (the first pick plus retries on "
                 "other endpoints after a connect failure)")
      ->capture_default_str()
      ->check(CLI::Range(1, 10));
  app.add_option("--max-inbound-connections-per-workload",
                 flags.daemon.max_inbound_connections_per_workload,
                 "inbound connections (15006 and HBONE streams on 15008) open at once per "
                 "enrolled pod; more are refused (reset, or HBONE 503); 0: unlimited")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000000));
  auto* rate = app.add_option("--max-inbound-connection-rate-per-workload",
                              flags.daemon.max_inbound_connection_rate_per_workload,
                              "new inbound connections per second per enrolled pod (may be "
                              "fractional); more are refused; 0: unlimited")
                   ->capture_default_str()
                   ->check(CLI::Range(0.0, 1000000.0));
  app.add_option("--inbound-connection-burst-per-workload",
                 flags.daemon.inbound_connection_burst_per_workload,
                 "new inbound connections a pod admits at once after an idle period, before "
                 "the rate spaces them out; 0: one second's worth of the rate (rounded up)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000000))
      ->needs(rate);
  app.add_option("--hbone-keepalive-s", flags.daemon.hbone_keepalive_s,
                 "an idle pooled HBONE connection gets an HTTP/2 PING this often, in seconds")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--hbone-idle-timeout-s", flags.daemon.hbone_idle_timeout_s,
                 "a pooled HBONE connection without a stream for this long is closed, in "
                 "seconds")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  app.add_option("--hbone-server-idle-timeout-s", flags.daemon.hbone_server_idle_timeout_s,
                 "an accepted HBONE connection (a pod's 15008) without a stream for this long "
                 "gets GOAWAY and is closed, in seconds")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  // A byte count with a unit suffix (KiB, MiB, GiB; plain bytes without one), within a range.
  auto add_size = [&app](const std::string& name, uint64_t& value, const std::string& help,
                         uint64_t min, uint64_t max, const std::string& fallback) {
    app.add_option(name, value, help + " (suffixes KiB, MiB, GiB)")
        ->transform(CLI::AsSizeValue(false))
        ->check(CLI::Range(min, max))
        ->default_str(fallback);
  };
  app.add_flag("--same-node-fast-path,!--no-same-node-fast-path", flags.daemon.same_node_fast_path,
               "deliver connections between two pods of this node without HBONE (no TLS, no "
               "HTTP/2), with the destination's policy, caps, access log and metrics as over "
               "HBONE; connections through a waypoint still use HBONE (on by default; "
               "--no-same-node-fast-path sends them over HBONE to this node's 15008)");
  app.add_flag("--splice", flags.daemon.splice,
               "the plain TCP relay (same-node fast path, passthrough, plain inbound) moves bytes "
               "with splice(2) through a pipe per direction, without copying them through the "
               "agent");
  add_size("--splice-pipe-size", flags.daemon.splice_pipe_bytes,
           "with --splice, the most a pipe holds per direction of a connection (F_SETPIPE_SZ)",
           4096, uint64_t{1} << 20, "64KiB");
  add_size("--app-recv-buffer-size", flags.daemon.app_recv_buffer_bytes,
           "size of each receive buffer for the pods' sockets (--app-recv-buffers)", 4096,
           uint64_t{1} << 20, "64KiB");
  add_size("--max-buffered-bytes", flags.daemon.max_buffered_bytes,
           "budget for bytes HBONE peers sent that applications have not read yet, over all "
           "workers; at the budget new streams from peers that hold much get 503, over it the "
           "streams holding the most are reset; 0: no budget",
           0, std::numeric_limits<uint64_t>::max(), "256MiB");
  // HTTP/2 windows are 31-bit (RFC 9113 6.9.1) and at least the protocol's default.
  add_size("--hbone-stream-window", flags.daemon.hbone_stream_window,
           "HTTP/2 flow-control window of each HBONE stream (SETTINGS_INITIAL_WINDOW_SIZE): the "
           "most a peer may send on a stream ahead of the application reading it",
           65535, 0x7fffffff, "4MiB");
  add_size("--hbone-connection-window", flags.daemon.hbone_connection_window,
           "HTTP/2 flow-control window of each HBONE connection: the most a peer may send on all "
           "of a connection's streams ahead of the applications",
           65535, 0x7fffffff, "16MiB");
  app.add_option("--hbone-max-streams", flags.daemon.hbone_max_streams,
                 "concurrent streams per HBONE connection: advertised to peers "
                 "(SETTINGS_MAX_CONCURRENT_STREAMS; more are refused) and the most this agent "
                 "opens on one pooled connection")
      ->capture_default_str()
      ->check(CLI::Range(1U, 10000U));
  add_size("--hbone-max-pending-output", flags.daemon.hbone_max_pending_output,
           "unwritten output an HBONE connection may hold before the agent stops taking frames "
           "that need an answer (PING, SETTINGS) from a peer that does not read; behind it at "
           "most 1,000 frames, then GOAWAY ENHANCE_YOUR_CALM",
           uint64_t{16} << 10, uint64_t{64} << 20, "256KiB");
  app.add_option("--hbone-handshake-timeout-s", flags.daemon.hbone_handshake_timeout_s,
                 "an HBONE connection whose TLS handshake has not finished by then is closed, in "
                 "seconds")
      ->capture_default_str()
      ->check(CLI::Range(1, 300));
  app.add_option("--max-pending-handshakes", flags.daemon.max_pending_handshakes,
                 "accepted HBONE connections still in their TLS handshake, over all workers; "
                 "at the bound a new one closes the oldest pending one")
      ->capture_default_str()
      ->check(CLI::Range(1U, 1000000U));
  app.add_option("--proc-dir", flags.daemon.proc_dir,
                 "the node's /proc, where namespaces used by processes are found (in a "
                 "container: the host's /proc mounted elsewhere)")
      ->capture_default_str();
  auto* kube = app.add_flag("--kubernetes", flags.daemon.kubernetes,
                            "follow the Kubernetes API: this node's Pods and the Namespaces decide "
                            "which pods are in the mesh (istio.io/dataplane-mode labels); "
                            "in-cluster configuration unless --kube-api-server is given");
  app.add_option(
         "--kube-api-server", flags.daemon.kube_api_server,
         "API server URL (https://host:port), with --kubernetes; default: the in-cluster one")
      ->needs(kube);
  app.add_option("--kube-ca-file", flags.daemon.kube_ca_file,
                 "PEM file of the CA that signs the API server's certificate")
      ->check(CLI::ExistingFile);
  app.add_option("--kube-token-file", flags.daemon.kube_token_file,
                 "bearer token file, read again for each request")
      ->check(CLI::ExistingFile);
  app.add_option("--cni-socket", flags.daemon.cni_socket,
                 "unix socket the nodemesh-cni plugin calls on each pod's ADD/DEL/CHECK "
                 "(needs --kubernetes)")
      ->needs(kube);
  app.add_option("--cni-state-file", flags.daemon.cni_state_file,
                 "file telling the nodemesh-cni plugin which pods must be in the mesh while the "
                 "agent is down (needs --kubernetes)")
      ->needs(kube);
  app.add_option("--cni-conf-dir", flags.daemon.cni_conf_dir,
                 "install nodemesh-cni into the node's primary CNI config in this directory and "
                 "keep it there; removed when the agent leaves the node (needs --cni-socket)")
      ->needs("--cni-socket");
  app.add_option("--cni-bin-dir", flags.daemon.cni_bin_dir,
                 "where the plugin binary is copied with --cni-conf-dir")
      ->capture_default_str();
  app.add_option("--cni-plugin-binary", flags.daemon.cni_plugin_binary,
                 "the nodemesh-cni binary to copy (default: next to nodemesh-agent)");
  app.add_option("--exclude-namespaces", flags.daemon.exclude_namespaces,
                 "namespaces whose pods are never enrolled")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--cluster-id", flags.daemon.cluster_id,
                 "cluster name in the workload uids (istiod's CLUSTER_ID)")
      ->capture_default_str();
  auto* handoff = app.add_option(
      "--handoff-socket", flags.daemon.handoff_socket,
      "unix socket where an upgrade happens: a new agent started on the node takes the "
      "running agent's listening sockets there, and the running one drains and exits "
      "(default: /run/nodemesh/<--bpffs, '/' as '-'>.handoff: agents that share their pins "
      "hand over to each other; \"none\": no handoff; docs/agent.md)");
  app.add_option("--drain-timeout-s", flags.daemon.drain_timeout_s,
                 "after handing over to a new agent, how long open connections are served "
                 "before they are closed")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  CLI11_PARSE(app, argc, argv);
  if (config->count() == 0 && xds->count() == 0) {
    std::cerr << "one of --config or --xds-address is required\n";
    return 2;
  }
  if (flags.validate && config->count() == 0) {
    std::cerr << "--validate needs --config\n";
    return 2;
  }
  if (!flags.daemon.kube_api_server.empty() &&
      (flags.daemon.kube_ca_file.empty() || flags.daemon.kube_token_file.empty())) {
    std::cerr << "--kube-api-server needs --kube-ca-file and --kube-token-file\n";
    return 2;
  }

  auto logger = spdlog::stderr_logger_mt("nodemesh");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  // The "nodemesh" logger only: the access log has its own (agent/access_log.h).
  logger->set_level(spdlog::level::from_str(flags.log_level));

  if (flags.validate) return nodemesh::agent::validate(flags.daemon.config);

  if (flags.daemon.node.empty()) {
    const char* env = std::getenv("NODE_NAME");
    if (env && *env) {
      flags.daemon.node = env;
    } else {
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      flags.daemon.node = host;
    }
  }
  if (handoff->count() == 0) {
    flags.daemon.handoff_socket = defaultHandoffSocket(flags.daemon.bpffs);
  } else if (flags.daemon.handoff_socket == "none") {
    flags.daemon.handoff_socket.clear();
  }
  // The downward API's names of the agent's own pod (the chart sets them).
  for (auto [name, field] : {std::pair{"POD_NAMESPACE", &flags.daemon.pod_namespace},
                             std::pair{"POD_NAME", &flags.daemon.pod_name}}) {
    const char* env = std::getenv(name);
    if (env != nullptr) *field = env;
  }
  for (const auto& text : flags.exclude_cidrs) {
    auto cidr = Cidr::parse(text);
    if (!cidr) {
      spdlog::error("--exclude-cidrs: {}", cidr.error().message);
      return 2;
    }
    flags.daemon.exclusions.cidrs.push_back(*cidr);
  }
  flags.daemon.access_log_format =
      flags.access_log_format == "json" ? AccessLogFormat::kJson : AccessLogFormat::kText;
  // Block the signals the main loop waits for before any thread starts: threads inherit it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);  // the Kubernetes side wakes the loop with it
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return nodemesh::agent::run(std::move(flags.daemon));
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
