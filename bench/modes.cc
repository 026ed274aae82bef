#include "bench/modes.h"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <sstream>

#include <cmath>
#include <optional>

#include <fmt/format.h>

#include "sim/process.h"
#include "sim/testapp_client.h"

namespace nodemesh::bench {
namespace {

using sim::HarnessError;
using sim::Process;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kCipherSuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
constexpr const char* kGroups = "X25519:P-256";  // nodemesh's kGroups (ztunnel/tls/tls_context.h)
constexpr auto kReadyTimeout = seconds(20);

SocketAddress address(const std::string& ip, uint16_t port) {
  return SocketAddress{IpAddress::parse(ip).value(), port};
}

// Stops a tunnel process: SIGTERM, then SIGKILL if it does not exit in time.
void terminate(Process& p) {
  p.signal(SIGTERM);
  if (!p.waitExit(seconds(20))) p.kill();
}

// Waits until `to` answers HTTP/1.1 and HTTP/2 (prior knowledge) GETs with 200 from the client
// pod (curl).
void waitForHttp(Environment& env, const SocketAddress& to, const std::string& who,
                 std::optional<SocketAddress> h2_to = std::nullopt) {
  for (const auto& check : {std::pair<std::string, SocketAddress>{"--http1.1", to},
                            {"--http2-prior-knowledge", h2_to.value_or(to)}}) {
    const std::string& flag = check.first;  // named, not bound: lambdas capture them (C++20)
    const SocketAddress& target = check.second;
    sim::CommandResult last;
    const bool ok = sim::waitFor(
        [&] {
          last = env.runInClient({"curl", "-s", flag, "-o", "/dev/null", "-w", "%{http_code}",
                                  "--max-time", "2", "http://" + target.toString() + "/bench"},
                                 seconds(5));
          return last.out == "200";
        },
        kReadyTimeout, milliseconds(200));
    if (!ok) {
      throw HarnessError(fmt::format("{}: no 200 for curl {} http://{}/bench: {} {}", who, flag,
                                     target.toString(), last.out, last.err));
    }
  }
}

class Direct final : public Mode {
 public:
  explicit Direct(Environment& env) : env_(env) {}
  std::string name() const override { return "direct"; }
  void start() override { env_.probe(env_.serverIp(), appPort(Service::kEcho), seconds(5)); }
  std::map<std::string, std::string> stop() override { return {}; }
  SocketAddress endpoint(Service service) const override {
    return address(env_.serverIp(), appPort(service));
  }
  std::vector<pid_t> tunnelPids() const override { return {}; }

 private:
  Environment& env_;
};

// What share of an L7 hop's requests went to v2, from its per-request log lines (those with
// `line_marker`): the facts for the results, and an error when the split is not the route's
// 90/10 beyond chance (5 standard deviations of a binomial draw, and a few requests). No line at
// all is an error unless `none_ok`.
std::map<std::string, std::string> checkSplit(const std::string& who, const std::string& log,
                                              const std::string& line_marker,
                                              const std::string& v1_marker,
                                              const std::string& v2_marker, bool none_ok) {
  size_t v1 = 0;
  size_t v2 = 0;
  std::string odd;  // a few lines that name both backends (a retry) or neither
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find(line_marker) == std::string::npos) continue;
    const bool to_v1 = line.find(v1_marker) != std::string::npos;
    const bool to_v2 = line.find(v2_marker) != std::string::npos;
    v1 += to_v1 ? 1 : 0;
    v2 += to_v2 ? 1 : 0;
    if (to_v1 == to_v2 && std::count(odd.begin(), odd.end(), '\n') < 5) odd += line + "\n";
  }
  const double n = static_cast<double>(v1 + v2);
  const double share = kV2Weight / 100.0;
  if ((n == 0 && !none_ok) ||
      std::abs(static_cast<double>(v2) - share * n) > 5 * std::sqrt(n * share * (1 - share)) + 5) {
    throw HarnessError(fmt::format("{}: {} requests to v1 and {} to v2, not a {}/{} split{}{}", who,
                                   v1, v2, kV1Weight, kV2Weight,
                                   odd.empty() ? "" : "; lines like:\n", odd));
  }
  return {{"requests_logged_v1", std::to_string(v1)}, {"requests_logged_v2", std::to_string(v2)}};
}

// ---- nodemesh ---------------------------------------------------------------------------

// `with_waypoint`: the waypoint mode, the agents plus nodemesh-waypoint in the proxy pod.
class Nodemesh final : public Mode {
 public:
  // `agent`: the nodemesh-agent binary (another build for a variant mode).
  Nodemesh(Environment& env, std::string name, std::string agent, bool with_waypoint = false)
      : env_(env),
        name_(std::move(name)),
        agent_(std::move(agent)),
        with_waypoint_(with_waypoint) {}
  std::string name() const override { return name_; }

  void start() override {
    agents_.clear();
    waypoint_ = nullptr;
    for (const char* node : {"node1", "node2"}) agents_.push_back(&startAgent(node));
    try {
      waitForLog(*agents_[0], "enrolled pod bench/client", kReadyTimeout);
      waitForLog(*agents_[1], "enrolled pod bench/server", kReadyTimeout);
      waitForLog(*agents_[0], "enrolled pod bench/local-server", kReadyTimeout);
      if (with_waypoint_) waitForLog(*agents_[1], "enrolled pod bench/server-v2", kReadyTimeout);
    } catch (const HarnessError& e) {
      // What holds the pods' ports, for a failed enrollment ("Address already in use").
      std::string sockets;
      for (const char* pod : {Environment::kClientPod, Environment::kServerPod}) {
        sockets += std::string("\nsockets in pod ") + pod + ":\n" +
                   env_.cluster().runInPod(pod, {"ss", "-tanp"}).out;
      }
      throw HarnessError(e.what() + sockets);
    }
    // Through capture and HBONE: the client is enrolled, so this cannot go around the mesh.
    // An enrolled pod whose capture is not in force yet would reach the server directly, and
    // the probe would pass all the same: probe until the client's agent has accepted it.
    const bool captured = sim::waitFor(
        [&] {
          env_.probe(env_.serverIp(), appPort(Service::kEcho), kReadyTimeout);
          return statOf(*agents_[0], "accepted_outbound") > 0;
        },
        kReadyTimeout, milliseconds(200));
    if (!captured) {
      throw HarnessError("the client pod's connections are not captured by its agent");
    }
    if (with_waypoint_) startWaypoint();
  }

  std::map<std::string, std::string> stop() override {
    std::map<std::string, std::string> facts;
    if (waypoint_ != nullptr) {
      terminate(*waypoint_);
      const std::string log = sim::readFile(waypoint_->spec().stdout_path);
      const std::optional<int> code = waypoint_->exitCode();
      waypoint_ = nullptr;
      if (code != 0) {
        throw HarnessError("nodemesh-waypoint exited with " + std::to_string(code.value_or(-1)));
      }
      // Per-request access lines come from the HTTP/1.1 requests (HTTP/2 is passed through as
      // TCP until the waypoint routes it).
      facts.merge(checkSplit("nodemesh-waypoint", log, " access ",
                             fmt::format("upstream_host={}:", Environment::kServerIp),
                             fmt::format("upstream_host={}:", Environment::kServerV2Ip),
                             /*none_ok=*/true));
    }
    // What actually ran, for the results (a variant run must show its own build); read now,
    // long after taskset exec'd it.
    std::error_code ec;
    if (!agents_.empty()) {
      facts["agent_executable"] =
          std::filesystem::read_symlink("/proc/" + std::to_string(agents_[0]->pid()) + "/exe", ec)
              .string();
    }
    for (size_t i = 0; i < agents_.size(); ++i) {
      Process& agent = *agents_[i];
      const std::string side = i == 0 ? "client_agent" : "server_agent";
      size_t before = countOf(sim::readFile(agent.spec().stderr_path), "tunnel stats:");
      agent.signal(SIGUSR1);
      sim::waitFor(
          [&] {
            return countOf(sim::readFile(agent.spec().stderr_path), "tunnel stats:") > before;
          },
          seconds(5));
      std::string log = sim::readFile(agent.spec().stderr_path);
      auto pos = log.rfind("tunnel stats:");
      if (pos != std::string::npos) {
        facts[side + "_stats"] = log.substr(pos, log.find('\n', pos) - pos);
      }
      terminate(agent);
      if (agent.exitCode() != 0) {
        throw HarnessError("nodemesh-agent on " + std::string(i == 0 ? "node1" : "node2") +
                           " exited with " + std::to_string(agent.exitCode().value_or(-1)));
      }
    }
    agents_.clear();
    // The traffic must have crossed the mesh as HBONE (or, on one node, through the agent's
    // fast path when the variant turns it on), or the figures are not nodemesh's.
    const std::string& stats = facts["client_agent_stats"];
    auto counted = [&](const char* name) {
      std::smatch m;
      return std::regex_search(stats, m, std::regex(std::string(name) + "=([0-9]+)")) &&
             m[1].str() != "0";
    };
    if (!counted("hbone_streams_opened") && !counted("same_node_deliveries")) {
      throw HarnessError("nodemesh carried no HBONE stream and no same-node connection: " + stats);
    }
    return facts;
  }

  SocketAddress endpoint(Service service) const override {
    return address(env_.serverIp(), appPort(service));
  }

  std::vector<pid_t> tunnelPids() const override {
    std::vector<pid_t> pids;
    for (Process* p : agents_) pids.push_back(p->pid());
    if (waypoint_ != nullptr) pids.push_back(waypoint_->pid());
    return pids;
  }

  SocketAddress httpEndpoint(HttpVersion version) const override {
    if (!with_waypoint_) return Mode::httpEndpoint(version);
    return address(kBackendVip, kBackendServicePort);
  }

  std::vector<pid_t> proxyPids() const override {
    if (waypoint_ == nullptr) return {};
    return {waypoint_->pid()};
  }

 private:
  // The waypoint in its pod (not enrolled), pinned to its node's CPU like everything there,
  // then a request through it: the backend service's VIP answers only through the waypoint.
  void startWaypoint() {
    sim::SimCluster& cluster = env_.cluster();
    sim::ProcessSpec spec;
    spec.netns_path = cluster.podNetnsPath(Environment::kProxyPod);
    spec.cgroup_path = cluster.nodeCgroupPath(cluster.pod(Environment::kProxyPod).node);
    spec.argv = env_.pinned(cluster.pod(Environment::kProxyPod).node,
                            {sim::waypointPath(), "--config", env_.meshConfig(), "--workload",
                             Environment::kWaypointUid, "--state-dir", cluster.workDir() + "/ca"});
    spec.stdout_path = fmt::format("{}/{}-waypoint-{}.log", cluster.workDir(), name_, runs_);
    spec.stderr_path = spec.stdout_path;
    waypoint_ = &cluster.startProcess(spec);
    if (!waypoint_->waitForOutput("serving HBONE on", kReadyTimeout)) {
      throw HarnessError("nodemesh-waypoint did not start:\n" + waypoint_->output());
    }
    waitForHttp(env_, address(kBackendVip, kBackendServicePort), "nodemesh-waypoint");
  }

  // A counter of the agent's `tunnel stats:` line (SIGUSR1 makes it log one); 0 if none came.
  static uint64_t statOf(Process& agent, const std::string& key) {
    const size_t before = countOf(sim::readFile(agent.spec().stderr_path), "tunnel stats:");
    agent.signal(SIGUSR1);
    std::string log;
    sim::waitFor(
        [&] {
          log = sim::readFile(agent.spec().stderr_path);
          return countOf(log, "tunnel stats:") > before;
        },
        seconds(5), milliseconds(20));
    const auto pos = log.rfind("tunnel stats:");
    if (pos == std::string::npos) return 0;
    std::smatch m;
    const std::string line = log.substr(pos, log.find('\n', pos) - pos);
    if (!std::regex_search(line, m, std::regex(" " + key + "=([0-9]+)"))) return 0;
    return std::stoull(m[1].str());
  }

  static size_t countOf(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
    return n;
  }

  static void waitForLog(Process& p, const std::string& needle, milliseconds timeout) {
    bool found = sim::waitFor(
        [&] {
          return sim::readFile(p.spec().stderr_path).find(needle) != std::string::npos ||
                 !p.isRunning();
        },
        timeout, milliseconds(50));
    if (!found || sim::readFile(p.spec().stderr_path).find(needle) == std::string::npos) {
      throw HarnessError("nodemesh-agent: no '" + needle + "' in its log:\n" +
                         sim::readFile(p.spec().stderr_path));
    }
  }

  Process& startAgent(const std::string& node) {
    sim::SimCluster& cluster = env_.cluster();
    sim::ProcessSpec spec;
    spec.netns_path = cluster.nodeNetnsPath(node);
    spec.cgroup_path = cluster.nodeCgroupPath(node);
    // One worker per agent: the peers run one worker each too.
    spec.argv = env_.pinned(
        node, {agent_, "--config", env_.meshConfig(), "--node", node, "--cgroup", spec.cgroup_path,
               "--bpffs", cluster.bpffsDir() + "/" + node, "--state-dir", cluster.workDir() + "/ca",
               "--netns-prefix", cluster.prefix() + "-", "--workers", "1"});
    const auto& extra = env_.options().agent_flags;
    spec.argv.insert(spec.argv.end(), extra.begin(), extra.end());
    const std::string stem =
        cluster.workDir() + "/" + name_ + "-" + node + "-" + std::to_string(++runs_);
    spec.stdout_path = stem + ".access.log";  // one line per connection
    spec.stderr_path = stem + ".log";
    return cluster.startProcess(spec);
  }

  Environment& env_;
  std::string name_;
  std::string agent_;
  bool with_waypoint_;
  std::vector<Process*> agents_;
  Process* waypoint_ = nullptr;
  int runs_ = 0;
};

// ---- stunnel and HAProxy ----------------------------------------------------------------

// A TLS tunnel made of two processes: the client side in the client pod (accepting on
// 127.0.0.1:tunnelPort), the server side in the server pod (accepting TLS on
// serverIp:tunnelPort, forwarding to 127.0.0.1:appPort).
class PeerTunnel : public Mode {
 public:
  explicit PeerTunnel(Environment& env) : env_(env) {}

  void start() override {
    sim::SimCluster& cluster = env_.cluster();
    const std::string stem = cluster.workDir() + "/" + name() + "-" + std::to_string(++runs_);
    server_ = &cluster.startProcess(podSpec(Environment::kServerPod, stem + "-server",
                                            /*client=*/false));
    client_ = &cluster.startProcess(podSpec(Environment::kClientPod, stem + "-client",
                                            /*client=*/true));
    env_.probe("127.0.0.1", tunnelPort(Service::kEcho), kReadyTimeout);
  }

  std::map<std::string, std::string> stop() override {
    for (Process* p : {client_, server_}) {
      if (p != nullptr) terminate(*p);
    }
    client_ = server_ = nullptr;
    return {};
  }

  SocketAddress endpoint(Service service) const override {
    return address("127.0.0.1", tunnelPort(service));
  }

  std::vector<pid_t> tunnelPids() const override {
    std::vector<pid_t> pids;
    for (Process* p : {client_, server_}) {
      if (p != nullptr) pids.push_back(p->pid());
    }
    return pids;
  }

 protected:
  // The process for one side: its argv, given the config file written for it.
  virtual std::vector<std::string> command(const std::string& config_path) = 0;
  virtual std::string config(bool client) = 0;

  Environment& env_;

 private:
  sim::ProcessSpec podSpec(const std::string& pod, const std::string& stem, bool client) {
    sim::SimCluster& cluster = env_.cluster();
    std::string path = stem + ".conf";
    cluster.writeFile(path.substr(path.rfind('/') + 1), config(client));
    sim::ProcessSpec spec;
    spec.netns_path = cluster.podNetnsPath(pod);
    spec.cgroup_path = cluster.nodeCgroupPath(cluster.pod(pod).node);
    spec.argv = env_.pinned(cluster.pod(pod).node, command(path));
    spec.stdout_path = stem + ".log";
    spec.stderr_path = spec.stdout_path;
    return spec;
  }

  Process* client_ = nullptr;
  Process* server_ = nullptr;
  int runs_ = 0;
};

class Stunnel final : public PeerTunnel {
 public:
  using PeerTunnel::PeerTunnel;
  std::string name() const override { return "stunnel"; }

 protected:
  std::vector<std::string> command(const std::string& config_path) override {
    return {"stunnel", config_path};
  }

  std::string config(bool client) override {
    const std::string d = env_.certDir();
    const std::string who = client ? "client" : "server";
    std::ostringstream c;
    // Foreground, no pid file; warnings only (notice level logs several lines per connection,
    // more than nodemesh's one access-log line).
    c << "foreground = yes\npid =\nsyslog = no\ndebug = 4\n";
    for (Service s : kServices) {
      c << "[" << serviceName(s) << "]\n";
      if (client) {
        c << "client = yes\naccept = 127.0.0.1:" << tunnelPort(s)
          << "\nconnect = " << Environment::kServerIp << ":" << tunnelPort(s)
          << "\nsessionResume = no\n";
      } else {
        c << "accept = " << Environment::kServerIp << ":" << tunnelPort(s)
          << "\nconnect = 127.0.0.1:" << appPort(s) << "\noptions = NO_TICKET\n";
      }
      c << "cert = " << d << "/" << who << ".pem\nkey = " << d << "/" << who
        << ".key\nCAfile = " << d << "/ca.pem\nverifyChain = yes\n"
        << "sslVersionMin = TLSv1.3\nsslVersionMax = TLSv1.3\nciphersuites = " << kCipherSuites
        << "\ncurves = " << kGroups << "\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n";
    }
    return c.str();
  }
};

class Haproxy final : public PeerTunnel {
 public:
  using PeerTunnel::PeerTunnel;
  std::string name() const override { return "haproxy"; }

 protected:
  std::vector<std::string> command(const std::string& config_path) override {
    return {"haproxy", "-db", "-f", config_path};
  }

  std::string config(bool client) override {
    const std::string d = env_.certDir();
    const std::string who = client ? "client" : "server";
    std::ostringstream c;
    // No session cache, no tickets: every connection is a full handshake (see modes.h). HAProxy
    // 2.6 has no `curves` on server lines: the client side offers OpenSSL's default groups,
    // whose first key share is X25519 as with nodemesh.
    // maxconn: as many connections as the descriptor limit allows (two descriptors each).
    const int maxconn = std::max(1000, env_.options().fd_limit / 2 - 100);
    c << "global\n  nbthread 1\n  maxconn " << maxconn << "\n  tune.ssl.cachesize 0\n"
      << "  ssl-default-bind-ciphersuites " << kCipherSuites << "\n"
      << "  ssl-default-server-ciphersuites " << kCipherSuites << "\n"
      << "  ssl-default-bind-options ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3 no-tls-tickets\n"
      << "  ssl-default-server-options ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3 no-tls-tickets\n"
      << "defaults\n  mode tcp\n  maxconn " << maxconn << "\n  timeout connect 5s\n"
      << "  timeout client 1h\n  timeout server 1h\n";
    const std::string tls =
        "ssl crt " + d + "/" + who + ".bundle.pem ca-file " + d + "/ca.pem verify required";
    for (Service s : kServices) {
      const std::string n = serviceName(s);
      c << "frontend f_" << n << "\n";
      if (client) {
        c << "  bind 127.0.0.1:" << tunnelPort(s) << "\n  default_backend b_" << n << "\n"
          << "backend b_" << n << "\n  server s " << Environment::kServerIp << ":" << tunnelPort(s)
          << " " << tls << " no-ssl-reuse\n";
      } else {
        c << "  bind " << Environment::kServerIp << ":" << tunnelPort(s) << " " << tls << " curves "
          << kGroups << "\n  default_backend b_" << n << "\n"
          << "backend b_" << n << "\n  server s 127.0.0.1:" << appPort(s) << "\n";
      }
    }
    return c.str();
  }
};

// ---- HAProxy and nginx as the L7 hop -------------------------------------------------------

// The TLS settings HAProxy's global section shares between the L4 and L7 configs: TLS 1.3
// only, nodemesh's cipher suites, no session cache or tickets (modes.h).
std::string haproxyTlsGlobals() {
  return fmt::format(
      "  tune.ssl.cachesize 0\n"
      "  ssl-default-bind-ciphersuites {0}\n"
      "  ssl-default-server-ciphersuites {0}\n"
      "  ssl-default-bind-options ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3 no-tls-tickets\n"
      "  ssl-default-server-options ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3 no-tls-tickets\n",
      kCipherSuites);
}

// A peer's L7 proxy in the proxy pod, with HAProxy (mode tcp) as the TLS ends in the client pod
// and in front of each backend (modes.h). Subclasses write the L7 proxy's config.
class L7Peer : public Mode {
 public:
  explicit L7Peer(Environment& env) : env_(env) {}

  void start() override {
    sim::SimCluster& cluster = env_.cluster();
    const std::string stem = fmt::format("{}/{}-{}", cluster.workDir(), name(), ++runs_);
    for (const auto& [pod, ip] :
         {std::pair<std::string, std::string>{Environment::kServerPod, Environment::kServerIp},
          {Environment::kServerV2Pod, Environment::kServerV2Ip}}) {
      const std::string path =
          cluster.writeFile(fmt::format("{}-{}-tls.conf", name(), pod), backendTlsConfig(pod, ip));
      processes_.push_back(&start(pod, stem + "-" + pod + "-tls", {"haproxy", "-db", "-f", path}));
    }
    const std::string proxy_stem = stem + "-proxy";
    proxy_ = &start(Environment::kProxyPod, proxy_stem, proxyCommand(proxy_stem));
    processes_.push_back(proxy_);
    const std::string client_path =
        cluster.writeFile(name() + "-client-tls.conf", clientTlsConfig());
    processes_.push_back(&start(Environment::kClientPod, stem + "-client-tls",
                                {"haproxy", "-db", "-f", client_path}));
    waitForHttp(env_, httpEndpoint(HttpVersion::kHttp1), name(), httpEndpoint(HttpVersion::kHttp2));
  }

  std::map<std::string, std::string> stop() override {
    for (Process* p : processes_) terminate(*p);
    const std::string log = proxyLog();
    processes_.clear();
    proxy_ = nullptr;
    return checkSplit(name(), log, "bench-request", fmt::format(" {}:", Environment::kServerIp),
                      fmt::format(" {}:", Environment::kServerV2Ip), /*none_ok=*/false);
  }

  SocketAddress endpoint(Service /*service*/) const override {
    return address("127.0.0.1", l7PeerPort(HttpVersion::kHttp1));
  }
  SocketAddress httpEndpoint(HttpVersion version) const override {
    return address("127.0.0.1", l7PeerPort(version));
  }
  std::vector<pid_t> tunnelPids() const override {
    std::vector<pid_t> pids;
    for (Process* p : processes_) pids.push_back(p->pid());
    return pids;
  }
  std::vector<pid_t> proxyPids() const override {
    if (proxy_ == nullptr) return {};
    return {proxy_->pid()};
  }

 protected:
  // The L7 proxy's argv; `stem` names its files in the work directory.
  virtual std::vector<std::string> proxyCommand(const std::string& stem) = 0;
  // Its per-request log: lines with "bench-request <upstream address> <status>".
  virtual std::string proxyLog() = 0;

  std::string maxconn() const {
    return std::to_string(std::max(1000, env_.options().fd_limit / 2 - 100));
  }

  Environment& env_;
  Process* proxy_ = nullptr;

 private:
  Process& start(const std::string& pod, const std::string& stem, std::vector<std::string> argv) {
    sim::SimCluster& cluster = env_.cluster();
    sim::ProcessSpec spec;
    spec.netns_path = cluster.podNetnsPath(pod);
    spec.cgroup_path = cluster.nodeCgroupPath(cluster.pod(pod).node);
    spec.argv = env_.pinned(cluster.pod(pod).node, std::move(argv));
    spec.stdout_path = stem + ".log";
    spec.stderr_path = spec.stdout_path;
    return cluster.startProcess(spec);
  }

  // Mutual TLS in front of a backend's HTTP server, ALPN h2 or http/1.1 (the L7 proxy's choice).
  std::string backendTlsConfig(const std::string& pod, const std::string& ip) const {
    const std::string d = env_.certDir();
    return fmt::format(
        "global\n  nbthread 1\n  maxconn {0}\n{1}"
        "defaults\n  mode tcp\n  maxconn {0}\n  timeout connect 5s\n  timeout client 1h\n"
        "  timeout server 1h\n"
        "frontend f\n  bind {2}:{3} ssl crt {4}/{5}.bundle.pem ca-file {4}/ca.pem verify required "
        "curves {6} alpn h2,http/1.1\n  default_backend b\n"
        "backend b\n  server s 127.0.0.1:{7}\n",
        maxconn(), haproxyTlsGlobals(), ip, kBackendTlsPort, d, pod, kGroups,
        appPort(Service::kHttp));
  }

  // The client pod's TLS origination to the proxy: one port per HTTP version, with its ALPN.
  std::string clientTlsConfig() const {
    const std::string d = env_.certDir();
    std::string c = fmt::format(
        "global\n  nbthread 1\n  maxconn {0}\n{1}"
        "defaults\n  mode tcp\n  maxconn {0}\n  timeout connect 5s\n  timeout client 1h\n"
        "  timeout server 1h\n",
        maxconn(), haproxyTlsGlobals());
    for (const auto& [version, alpn] :
         {std::pair<HttpVersion, std::string>{HttpVersion::kHttp1, "http/1.1"},
          {HttpVersion::kHttp2, "h2"}}) {
      const uint16_t port = l7PeerPort(version);
      c += fmt::format(
          "frontend f{0}\n  bind 127.0.0.1:{0}\n  default_backend b{0}\n"
          "backend b{0}\n  server s {1}:{0} ssl crt {2}/client.bundle.pem ca-file {2}/ca.pem "
          "verify required alpn {3}\n",
          port, Environment::kProxyIp, d, alpn);
    }
    return c;
  }

  std::vector<Process*> processes_;
  int runs_ = 0;
};

// HAProxy 2.6 in mode http, one thread: HTTP/1.1 keep-alive to the backends for HTTP/1.1
// clients, HTTP/2 (ALPN h2) for HTTP/2 clients; weighted round robin.
class HaproxyL7 final : public L7Peer {
 public:
  using L7Peer::L7Peer;
  std::string name() const override { return "haproxy-l7"; }

 protected:
  std::vector<std::string> proxyCommand(const std::string& /*stem*/) override {
    const std::string d = env_.certDir();
    std::string c = fmt::format(
        "global\n  nbthread 1\n  maxconn {0}\n{1}  log stdout format raw local0\n"
        "defaults\n  mode http\n  maxconn {0}\n  log global\n"
        "  log-format \"bench-request %si:%sp %ST\"\n  timeout connect 5s\n"
        "  timeout client 1h\n  timeout server 1h\n  timeout http-keep-alive 1h\n",
        maxconn(), haproxyTlsGlobals());
    const std::string tls =
        fmt::format("ssl crt {0}/proxy.bundle.pem ca-file {0}/ca.pem verify required", d);
    for (const auto& [version, alpn] :
         {std::pair<HttpVersion, std::string>{HttpVersion::kHttp1, "http/1.1"},
          {HttpVersion::kHttp2, "h2"}}) {
      const uint16_t port = l7PeerPort(version);
      c += fmt::format(
          "frontend f{0}\n  bind {1}:{0} {2} curves {3} alpn {4}\n  default_backend b{0}\n"
          "backend b{0}\n"
          "  server v1 {5}:{6} weight {7} {2} alpn {4}{8}\n"
          "  server v2 {9}:{6} weight {10} {2} alpn {4}{8}\n",
          port, Environment::kProxyIp, tls, kGroups, alpn, Environment::kServerIp, kBackendTlsPort,
          kV1Weight, version == HttpVersion::kHttp2 ? " proto h2" : "", Environment::kServerV2Ip,
          kV2Weight);
    }
    return {"haproxy", "-db", "-f", env_.cluster().writeFile(name() + ".conf", c)};
  }

  std::string proxyLog() override {
    return proxy_ ? sim::readFile(proxy_->spec().stdout_path) : "";
  }
};

// nginx 1.22 (one process, no master): HTTP/2 (ALPN h2) or HTTP/1.1 from the client, HTTP/1.1
// keep-alive to the backends (nginx proxies HTTP/1.x only); weighted round robin.
class NginxL7 final : public L7Peer {
 public:
  using L7Peer::L7Peer;
  std::string name() const override { return "nginx-l7"; }

 protected:
  std::vector<std::string> proxyCommand(const std::string& stem) override {
    const std::string d = env_.certDir();
    access_log_ = stem + ".access.log";
    error_log_ = stem + ".log";
    const std::string tmp = stem + ".tmp";
    std::filesystem::create_directories(tmp);
    const std::string c = fmt::format(
        R"(daemon off;
master_process off;
worker_processes 1;
pid {0}.pid;
error_log {0}.log warn;
worker_rlimit_nofile {1};
events {{ worker_connections {1}; }}
http {{
  log_format bench 'bench-request $upstream_addr $status $upstream_status';
  access_log {2} bench;
  client_body_temp_path {3}; proxy_temp_path {3}; fastcgi_temp_path {3};
  uwsgi_temp_path {3}; scgi_temp_path {3};
  keepalive_requests 100000000;
  keepalive_timeout 1h;
  tcp_nodelay on;
  ssl_protocols TLSv1.3;
  ssl_conf_command Ciphersuites {4};
  ssl_ecdh_curve X25519:prime256v1;
  ssl_session_cache off;
  ssl_session_tickets off;
  ssl_certificate {5}/proxy.pem;
  ssl_certificate_key {5}/proxy.key;
  ssl_client_certificate {5}/ca.pem;
  ssl_verify_client on;
  upstream backend {{
    server {6}:{7} weight={8};
    server {9}:{7} weight={10};
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 1h;
  }}
  server {{
    listen {11}:{12} ssl;
    listen {11}:{13} ssl http2;
    location / {{
      proxy_pass https://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_conf_command Ciphersuites {4};
      proxy_ssl_certificate {5}/proxy.pem;
      proxy_ssl_certificate_key {5}/proxy.key;
      proxy_ssl_trusted_certificate {5}/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name backend.bench.svc.cluster.local;
      proxy_ssl_session_reuse off;
    }}
  }}
}}
)",
        stem, maxconn(), access_log_, tmp, kCipherSuites, d, Environment::kServerIp,
        kBackendTlsPort, kV1Weight, Environment::kServerV2Ip, kV2Weight, Environment::kProxyIp,
        l7PeerPort(HttpVersion::kHttp1), l7PeerPort(HttpVersion::kHttp2));
    return {"nginx", "-e", stem + ".log", "-c", env_.cluster().writeFile(name() + ".conf", c)};
  }

  std::string proxyLog() override {
    // Its error log's warnings, for a failed split check (they stay in the work directory).
    const std::string errors = sim::readFile(error_log_);
    if (!errors.empty()) {
      std::fprintf(stderr, "[bench] nginx-l7 error log (last 2 KiB):\n%s\n",
                   errors.substr(errors.size() > 2048 ? errors.size() - 2048 : 0).c_str());
    }
    return sim::readFile(access_log_);
  }

 private:
  std::string access_log_;
  std::string error_log_;
};

}  // namespace

bool isL7Mode(const std::string& name) {
  return name == "waypoint" || name == "haproxy-l7" || name == "nginx-l7";
}

bool modeRuns(const std::string& mode, const std::string& scenario) {
  if (isL7Mode(mode)) return isL7Scenario(scenario);
  if (mode == "stunnel" || mode == "haproxy") return !isL7Scenario(scenario);
  return true;  // direct, nodemesh and its variants
}

bool isKnownMode(const std::string& name, const Options& options) {
  for (const char* m :
       {"direct", "nodemesh", "stunnel", "haproxy", "waypoint", "haproxy-l7", "nginx-l7"}) {
    if (name == m) return true;
  }
  for (const auto& [variant, path] : options.agent_variants) {
    if (name == "nodemesh-" + variant) return true;
  }
  return false;
}

std::unique_ptr<Mode> makeMode(const std::string& name, Environment& env) {
  if (name == "direct") return std::make_unique<Direct>(env);
  if (name == "nodemesh") return std::make_unique<Nodemesh>(env, name, sim::agentPath());
  for (const auto& [variant, path] : env.options().agent_variants) {
    if (name == "nodemesh-" + variant) return std::make_unique<Nodemesh>(env, name, path);
  }
  if (name == "stunnel") return std::make_unique<Stunnel>(env);
  if (name == "haproxy") return std::make_unique<Haproxy>(env);
  if (name == "waypoint") {
    return std::make_unique<Nodemesh>(env, name, sim::agentPath(), /*with_waypoint=*/true);
  }
  if (name == "haproxy-l7") return std::make_unique<HaproxyL7>(env);
  if (name == "nginx-l7") return std::make_unique<NginxL7>(env);
  return nullptr;
}

}  // namespace nodemesh::bench
