#include "bench/bench_env.h"

#include <unistd.h>

#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "sim/process.h"
#include "sim/testapp_client.h"

namespace nodemesh::bench {

using sim::CommandResult;
using sim::HarnessError;
using std::chrono::milliseconds;
using std::chrono::seconds;

uint16_t appPort(Service s) {
  switch (s) {
    case Service::kIperf:
      return 5201;
    case Service::kSockperf:
      return 11111;
    case Service::kEcho:
      return 7000;
    case Service::kHttp:
      return 8080;
  }
  return 0;
}

uint16_t tunnelPort(Service s) {
  return static_cast<uint16_t>(17001 + static_cast<int>(s));
}

const char* serviceName(Service s) {
  switch (s) {
    case Service::kIperf:
      return "iperf3";
    case Service::kSockperf:
      return "sockperf";
    case Service::kEcho:
      return "echo";
    case Service::kHttp:
      return "http";
  }
  return "?";
}

uint16_t l7PeerPort(HttpVersion v) {
  return v == HttpVersion::kHttp1 ? 18001 : 18002;
}

bool isL7Scenario(const std::string& scenario) {
  return scenario.rfind("l7-", 0) == 0;
}

std::string loadgenPath() {
  return sim::binDir() + "/nm-loadgen";
}

namespace {

void check(const CommandResult& r) {
  if (!r.ok()) throw HarnessError(r.describe());
}

}  // namespace

Environment::Environment(const Options& options)
    : options_(options), congestion_(chooseCongestionControl(options.congestion_control)) {
  sim::SimClusterOptions cluster_options;
  cluster_options.keep_logs = options.keep_logs;
  cluster_ = std::make_unique<sim::SimCluster>(cluster_options);
  cluster_->addNode("node1");
  cluster_->addNode("node2");
  cluster_->addPod("node1", kClientPod, kClientIp);
  cluster_->addPod("node2", kServerPod, kServerIp);
  cluster_->addPod("node2", kServerV2Pod, kServerV2Ip);
  cluster_->addPod("node2", kProxyPod, kProxyIp);
  cluster_->addPod("node1", kLocalServerPod, kLocalServerIp);
  for (const char* pod : {kClientPod, kServerPod, kServerV2Pod, kProxyPod, kLocalServerPod}) {
    tunePod(pod);
  }
  makeCertificates();
  // The pods are mesh workloads; no policy (everything is allowed). The waypoint's pod has
  // protocol TCP: it terminates and originates HBONE itself, no agent enrolls it
  // (docs/waypoint.md). Only the backend VIP goes through the waypoint; the other modes connect
  // to pod addresses, which have no waypoint.
  mesh_config_ = cluster_->writeFile(
      "mesh.yaml", fmt::format(R"(workloads:
- uid: bench//v1/Pod/bench/client
  name: client
  namespace: bench
  serviceAccount: client
  workloadIps: ["10.244.1.10"]
  protocol: HBONE
  node: node1
- uid: bench//v1/Pod/bench/server
  name: server
  namespace: bench
  serviceAccount: server
  workloadIps: ["10.244.2.20"]
  protocol: HBONE
  node: node2
  services:
    bench/backend.bench.svc.cluster.local: {{{0}: {1}}}
    bench/backend-v1.bench.svc.cluster.local: {{{0}: {1}}}
- uid: bench//v1/Pod/bench/local-server
  name: local-server
  namespace: bench
  serviceAccount: server
  workloadIps: ["10.244.1.20"]
  protocol: HBONE
  node: node1
- uid: bench//v1/Pod/bench/server-v2
  name: server-v2
  namespace: bench
  serviceAccount: server
  workloadIps: ["{2}"]
  protocol: HBONE
  node: node2
  services:
    bench/backend.bench.svc.cluster.local: {{{0}: {1}}}
    bench/backend-v2.bench.svc.cluster.local: {{{0}: {1}}}
- uid: {3}
  name: waypoint
  namespace: bench
  serviceAccount: waypoint
  workloadIps: ["{4}"]
  protocol: TCP
  node: node2
  services:
    bench/waypoint.bench.svc.cluster.local: {{15008: 15008}}
services:
- {{name: backend, namespace: bench, hostname: backend.bench.svc.cluster.local,
   vips: ["/{5}"], ports: {{{0}: {1}}},
   waypoint: {{destination: "bench/waypoint.bench.svc.cluster.local", hboneMtlsPort: 15008}}}}
- {{name: backend-v1, namespace: bench, hostname: backend-v1.bench.svc.cluster.local,
   vips: ["/10.96.0.21"], ports: {{{0}: {1}}}}}
- {{name: backend-v2, namespace: bench, hostname: backend-v2.bench.svc.cluster.local,
   vips: ["/10.96.0.22"], ports: {{{0}: {1}}}}}
- {{name: waypoint, namespace: bench, hostname: waypoint.bench.svc.cluster.local,
   vips: ["/10.96.0.9"], ports: {{15008: 15008}}}}
httpRoutes:
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {{name: backend, namespace: bench}}
  spec:
    parentRefs: [{{group: "", kind: Service, name: backend, port: {0}}}]
    rules:
    - backendRefs:
      - {{name: backend-v1, port: {0}, weight: {6}}}
      - {{name: backend-v2, port: {0}, weight: {7}}}
)",
                               kBackendServicePort, appPort(Service::kHttp), kServerV2Ip,
                               kWaypointUid, kProxyIp, kBackendVip, kV1Weight, kV2Weight));
  startServers();
}

// Short connections at thousands per second leave tens of thousands of TIME_WAIT sockets:
// let new connections reuse them (RFC 6191 timestamps make that safe) and widen the ephemeral
// range, which starts above every port that anything listens on here (the mesh's 150xx, the
// applications' and the peers' tunnel ports), so that a TIME_WAIT socket never holds a port a
// listener needs. The TCP congestion control is fixed too (Options::congestion_control). The
// same for every mode; these are the pods' own namespaces.
void Environment::tunePod(const std::string& pod) {
  std::vector<std::string> argv = {"sysctl",
                                   "-q",
                                   "-w",
                                   "net.ipv4.tcp_tw_reuse=1",
                                   "net.ipv4.ip_local_port_range=20000 65535",
                                   "net.core.somaxconn=8192"};
  if (!congestion_.set.empty()) {
    argv.push_back("net.ipv4.tcp_congestion_control=" + congestion_.set);
  }
  check(cluster_->runInPod(pod, argv));
  // What the pod really uses, for the report (the same in both pods: both start from the
  // host's default and get the same setting).
  const auto used = cluster_->runInPod(pod, {"sysctl", "-n", "net.ipv4.tcp_congestion_control"});
  check(used);
  congestion_used_ = used.out.substr(0, used.out.find_last_not_of(" \n") + 1);
}

void Environment::makeCertificates() {
  cert_dir_ = cluster_->workDir();
  const std::string& d = cert_dir_;
  const std::vector<std::string> p256 = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                         "-nodes"};
  std::vector<std::string> ca = {"openssl", "req", "-x509"};
  ca.insert(ca.end(), p256.begin(), p256.end());
  ca.insert(ca.end(), {"-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "2", "-subj",
                       "/CN=nodemesh-bench-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                       "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  check(sim::runLocal(ca, seconds(20)));
  int serial = 1;
  for (const auto& [name, ip] : {std::pair<std::string, std::string>{"server", kServerIp},
                                 {"client", kClientIp},
                                 {"server-v2", kServerV2Ip},
                                 {"proxy", kProxyIp}}) {
    std::vector<std::string> req = {"openssl", "req"};
    req.insert(req.end(), p256.begin(), p256.end());
    req.insert(req.end(), {"-keyout", d + "/" + name + ".key", "-out", d + "/" + name + ".csr",
                           "-subj", "/CN=" + name});
    check(sim::runLocal(req, seconds(20)));
    // The name nginx checks on both backends of its upstream (proxy_ssl_name).
    const std::string backend_san =
        name.rfind("server", 0) == 0 ? ",DNS:backend.bench.svc.cluster.local" : "";
    std::string ext = cluster_->writeFile(
        name + ".ext", "subjectAltName=URI:spiffe://cluster.local/ns/bench/sa/" + name + ",IP:" +
                           ip + backend_san + "\nextendedKeyUsage=serverAuth,clientAuth\n" +
                           "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n");
    check(sim::runLocal(
        {"openssl", "x509", "-req", "-in", d + "/" + name + ".csr", "-CA", d + "/ca.pem", "-CAkey",
         d + "/ca.key", "-set_serial", std::to_string(++serial), "-days", "2", "-out",
         d + "/" + name + ".pem", "-extfile", ext},
        seconds(20)));
    cluster_->writeFile(name + ".bundle.pem", sim::readFile(d + "/" + name + ".pem") +
                                                  sim::readFile(d + "/" + name + ".key"));
  }
}

void Environment::startServers() {
  for (const char* pod : {kServerPod, kLocalServerPod}) {
    startInPod(pod, {"iperf3", "-s", "-p", std::to_string(appPort(Service::kIperf))});
    startInPod(pod, {"sockperf", "sr", "--tcp", "-i", "0.0.0.0", "-p",
                     std::to_string(appPort(Service::kSockperf))});
    startInPod(pod,
               {loadgenPath(), "echo-server", "--port", std::to_string(appPort(Service::kEcho))});
  }
  for (const char* pod : {kServerPod, kServerV2Pod, kLocalServerPod}) {
    startInPod(pod, {loadgenPath(), "http-server", "--port",
                     std::to_string(appPort(Service::kHttp)), "--body", "1024"});
  }
  bool listening = sim::waitFor(
      [&] {
        for (const char* pod : {kServerPod, kLocalServerPod}) {
          CommandResult r = cluster_->runInPod(pod, {"ss", "-Hltn"});
          for (Service s : kServices) {
            if (r.out.find(fmt::format(":{} ", appPort(s))) == std::string::npos) return false;
          }
        }
        CommandResult r = cluster_->runInPod(kServerV2Pod, {"ss", "-Hltn"});
        return r.out.find(fmt::format(":{} ", appPort(Service::kHttp))) != std::string::npos;
      },
      seconds(10), milliseconds(100));
  if (!listening) throw HarnessError("the server applications did not start listening");
  probe(serverIp(), appPort(Service::kEcho), seconds(10));
}

std::vector<std::string> Environment::pinned(const std::string& node,
                                             std::vector<std::string> argv) const {
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (!options_.pin || cpus < 2) return argv;
  const int cpu = (cluster_->node(node).index - 1) % static_cast<int>(cpus);
  argv.insert(argv.begin(), {"taskset", "-c", std::to_string(cpu)});  // execs: same pid
  return argv;
}

CommandResult Environment::runInClient(const std::vector<std::string>& argv,
                                       std::chrono::milliseconds timeout) {
  return cluster_->runInPod(kClientPod, pinned(cluster_->pod(kClientPod).node, argv), timeout);
}

sim::Process& Environment::startInPod(const std::string& pod,
                                      const std::vector<std::string>& argv) {
  return cluster_->startInPod(pod, pinned(cluster_->pod(pod).node, argv));
}

void Environment::probe(const std::string& addr, uint16_t port, std::chrono::milliseconds timeout) {
  CommandResult r = runInClient({loadgenPath(), "probe", "--to", addr + ":" + std::to_string(port),
                                 "--timeout-ms", std::to_string(timeout.count())},
                                timeout + seconds(5));
  if (!r.ok()) throw HarnessError("no echo through " + addr + ":" + std::to_string(port));
}

std::vector<std::string> Environment::teardown() {
  std::string prefix = cluster_->prefix();
  cluster_->teardown();
  return sim::SimCluster::findLeftovers(prefix);
}

}  // namespace nodemesh::bench
