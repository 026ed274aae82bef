#include "bench/modes.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <sstream>

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

class Direct final : public Mode {
 public:
  explicit Direct(Environment& env) : env_(env) {}
  std::string name() const override { return "direct"; }
  void start() override { env_.probe(Environment::kServerIp, appPort(Service::kEcho), seconds(5)); }
  std::map<std::string, std::string> stop() override { return {}; }
  SocketAddress endpoint(Service service) const override {
    return address(Environment::kServerIp, appPort(service));
  }
  std::vector<pid_t> tunnelPids() const override { return {}; }

 private:
  Environment& env_;
};

// ---- nodemesh ---------------------------------------------------------------------------

class Nodemesh final : public Mode {
 public:
  // `agent`: the nodemesh-agent binary (another build for a variant mode).
  Nodemesh(Environment& env, std::string name, std::string agent)
      : env_(env), name_(std::move(name)), agent_(std::move(agent)) {}
  std::string name() const override { return name_; }

  void start() override {
    agents_.clear();
    for (const char* node : {"node1", "node2"}) agents_.push_back(&startAgent(node));
    try {
      waitForLog(*agents_[0], "enrolled pod bench/client", kReadyTimeout);
      waitForLog(*agents_[1], "enrolled pod bench/server", kReadyTimeout);
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
    env_.probe(Environment::kServerIp, appPort(Service::kEcho), kReadyTimeout);
  }

  std::map<std::string, std::string> stop() override {
    std::map<std::string, std::string> facts;
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
    // The traffic must have crossed the mesh as HBONE, or the figures are not nodemesh's.
    const std::string& stats = facts["client_agent_stats"];
    std::smatch m;
    if (!std::regex_search(stats, m, std::regex("hbone_streams_opened=([0-9]+)")) ||
        m[1].str() == "0") {
      throw HarnessError("nodemesh carried no HBONE stream: " + stats);
    }
    return facts;
  }

  SocketAddress endpoint(Service service) const override {
    return address(Environment::kServerIp, appPort(service));
  }

  std::vector<pid_t> tunnelPids() const override {
    std::vector<pid_t> pids;
    for (Process* p : agents_) pids.push_back(p->pid());
    return pids;
  }

 private:
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
    spec.argv =
        env_.pinned(node, {agent_, "--config", env_.meshConfig(), "--node", node, "--cgroup",
                           spec.cgroup_path, "--bpffs", cluster.bpffsDir() + "/" + node,
                           "--state-dir", cluster.workDir() + "/ca", "--workers", "1"});
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
  std::vector<Process*> agents_;
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

}  // namespace

std::unique_ptr<Mode> makeMode(const std::string& name, Environment& env) {
  if (name == "direct") return std::make_unique<Direct>(env);
  if (name == "nodemesh") return std::make_unique<Nodemesh>(env, name, sim::agentPath());
  for (const auto& [variant, path] : env.options().agent_variants) {
    if (name == "nodemesh-" + variant) return std::make_unique<Nodemesh>(env, name, path);
  }
  if (name == "stunnel") return std::make_unique<Stunnel>(env);
  if (name == "haproxy") return std::make_unique<Haproxy>(env);
  return nullptr;
}

}  // namespace nodemesh::bench
