// nodemesh-demo: the README's main job. Builds a simulated cluster from a local config file
// (one network namespace per node and per pod, joined by bridges, as in the e2e tests), runs
// one nodemesh-agent per node, sends real TCP traffic between every pair of pods and to each
// service VIP, and prints what happened to each connection (captured where, carried how, which
// identity, allowed or denied by which policy, which endpoint served a service), then routes HTTP
// through a waypoint by an HTTPRoute it changes on the fly (waypoint_demo.cc); then removes
// everything it created.
//
// It reuses the e2e harness (tests/e2e/harness) on purpose: the demo and the tests build the
// same kind of node, so what the demo shows is what the tests check.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "agent/bpf/pinned_counters.h"
#include "config/local/local_config.h"
#include "policy/authorizer.h"
#include "sim/interrupt.h"
#include "sim/privileged.h"
#include "sim/sim_cluster.h"
#include "sim/testapp_client.h"
#include "tests/e2e/demo/waypoint_demo.h"

namespace nodemesh::demo {
namespace {

using sim::Process;
using sim::SimCluster;
using std::chrono::seconds;

constexpr uint16_t kAppPort = 8080;

struct DemoPod {
  std::string name;  // namespace/name
  std::string short_name;
  std::string node;
  std::string ip;
  bool enrolled = false;  // protocol HBONE
};

struct AccessLine {
  std::string direction, dst, transport, src_identity;
};

// The fields the demo shows, from the agents' text access log lines.
std::vector<AccessLine> accessLines(const std::string& log) {
  std::vector<AccessLine> out;
  // Complete lines only: the last may still be being written.
  std::istringstream in(log.substr(0, log.rfind('\n') + 1));
  for (std::string line; std::getline(in, line);) {
    if (line.find(" access ") == std::string::npos) continue;
    auto field = [&](const std::string& key) {
      auto pos = line.find(" " + key + "=");
      if (pos == std::string::npos) return std::string();
      pos += key.size() + 2;
      return line.substr(pos, line.find(' ', pos) - pos);
    };
    out.push_back({field("direction"), field("dst"), field("transport"), field("src_identity")});
  }
  return out;
}

// What the example's policies say about a connection to `to` on `port`: "-" when no policy
// applies, else "allow <policy>" / "DENY <policy>".
struct Expected {
  bool allowed = true;
  std::string text = "-";
};

Expected expectedVerdict(const policy::Authorizer& authorizer, const DemoPod& from,
                         const DemoPod& to, uint16_t port) {
  const model::Workload* dst = authorizer.snapshot()->workloadByIp(IpAddress::parse(to.ip).value());
  const model::Workload* src =
      authorizer.snapshot()->workloadByIp(IpAddress::parse(from.ip).value());
  if (!to.enrolled || dst == nullptr) return {};  // not captured inbound: no enforcement
  std::string identity = from.enrolled && src ? src->identity() : "";
  policy::ConnectionAttributes attrs{IpAddress::parse(from.ip).value(),
                                     IpAddress::parse(to.ip).value(), port, std::nullopt};
  if (!identity.empty()) attrs.source_identity = identity;
  auto verdict = authorizer.check(*dst, attrs);
  if (verdict.outcome == policy::Outcome::NoPolicy) return {};
  std::string deciding = std::string(verdict.policy);
  for (auto p : verdict.unmatched_allow) deciding += (deciding.empty() ? "" : ",") + std::string(p);
  if (deciding.empty()) deciding = "(" + verdict.reason() + ")";
  return {verdict.allowed, (verdict.allowed ? "allow " : "DENY ") + deciding};
}

std::string humanBytes(uint64_t n) {
  if (n >= (1u << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1 << 20));
  if (n >= 1024) return fmt::format("{:.1f} KiB", static_cast<double>(n) / 1024);
  return fmt::format("{} B", n);
}

// `expect_denied`: when not empty, the pod pairs ("from>to", short names) that must be refused,
// every other pair must connect. An expectation written by hand, independent of the Authorizer
// the agents run (the POLICY column alone would agree with a broken one).
int runDemo(const std::string& config_path, uint64_t bytes, bool with_waypoint,
            const std::set<std::string>& expect_denied) {
  if (auto problem = sim::privilegedEnvironmentProblem()) {
    std::cerr << "nodemesh-demo needs root on a Linux host with network namespaces, cgroup2 "
                 "and bpffs: "
              << *problem << "\n";
    // 77: "skipped" for CTest, unless the privileged tests are required (CI).
    return sim::privilegedTestsRequired() ? 1 : 77;
  }
  auto config = config::loadLocalConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << config.problemsText();
    return 1;
  }

  // Pods: every workload with an IPv4 address and a node; nodes in order of appearance, each
  // with the /24 of its first pod as pod CIDR.
  std::vector<DemoPod> pods;
  std::vector<std::string> node_order;
  std::map<std::string, std::string> node_cidr;
  for (const auto& w : config.snapshot->workloads()) {
    if (w.node.empty() || w.workload_ips.empty() || !w.workload_ips[0].isV4()) continue;
    DemoPod p{w.namespace_name + "/" + w.name, w.name, w.node, w.workload_ips[0].toString(),
              w.protocol == model::Protocol::Hbone};
    if (!node_cidr.count(w.node)) {
      node_order.push_back(w.node);
      node_cidr[w.node] = Cidr(w.workload_ips[0], 96 + 24).toString();
    }
    pods.push_back(p);
  }
  if (pods.size() < 2) {
    std::cerr << config_path
              << ": the demo needs at least two workloads with a node and an "
                 "IPv4 address\n";
    return 1;
  }

  std::cout << "nodemesh demo: " << node_order.size() << " simulated nodes, " << pods.size()
            << " pods from " << config_path << "\n\n";
  SimCluster cluster;
  int index = 0;
  for (const auto& node : node_order) {
    ++index;
    cluster.addNode(node, "192.168.250." + std::to_string(index) + "/24", node_cidr[node]);
  }
  for (const auto& p : pods) cluster.addPod(p.node, p.short_name, p.ip);
  std::string cfg = cluster.writeFile("mesh.yaml", sim::readFile(config_path));

  std::map<std::string, Process*> agents;
  for (const auto& node : node_order) {
    sim::ProcessSpec spec;
    spec.netns_path = cluster.nodeNetnsPath(node);
    spec.cgroup_path = cluster.nodeCgroupPath(node);
    spec.argv = {sim::agentPath(),
                 "--config",
                 cfg,
                 "--node",
                 node,
                 "--cgroup",
                 spec.cgroup_path,
                 "--bpffs",
                 cluster.bpffsDir() + "/" + node,
                 "--state-dir",
                 cluster.workDir() + "/ca",
                 "--netns-prefix",
                 cluster.prefix() + "-"};
    spec.stdout_path = cluster.workDir() + "/agent-" + node + ".log";
    spec.stderr_path = spec.stdout_path;
    agents[node] = &cluster.startProcess(spec);
  }
  for (const auto& p : pods) {
    if (!p.enrolled) continue;
    if (!agents[p.node]->waitForOutput("enrolled pod " + p.name, seconds(10))) {
      std::cerr << "agent on " << p.node << " did not enroll " << p.name << ":\n"
                << agents[p.node]->output();
      return 1;
    }
  }
  std::cout << "Enrolled pods (protocol HBONE, found by their addresses):\n";
  for (const auto& p : pods) {
    std::cout << fmt::format("  {:<8} {:<28} {:<14} {}\n", p.node, p.name, p.ip,
                             p.enrolled ? "enrolled" : "not enrolled (protocol TCP)");
  }

  std::map<std::string, Process*> servers;
  for (const auto& p : pods) {
    Process& s = cluster.startInPod(p.short_name, {sim::testappPath(), "serve", "--port",
                                                   std::to_string(kAppPort), "--count", "0"});
    if (!sim::waitForListening(s)) {
      std::cerr << "server in " << p.name << " did not start: " << s.output();
      return 1;
    }
    servers[p.short_name] = &s;
  }

  std::cout << fmt::format(
      "\nEvery pod connects to every other pod on port {} and sends {} "
      "each way (then half-closes):\n\n",
      kAppPort, humanBytes(bytes));
  std::cout << fmt::format("{:<31} {:<17} {:<13} {:<12} {:<12} {:<14} {:<15} {}\n", "CONNECTION",
                           "CLIENT SAW", "SERVER SAW", "CAPTURED AT", "DELIVERED BY", "TUNNEL",
                           "CLIENT IDENTITY", "POLICY");
  const policy::Authorizer authorizer(config.snapshot);
  int failures = 0;
  for (const auto& from : pods) {
    for (const auto& to : pods) {
      if (from.name == to.name) continue;
      std::map<std::string, size_t> before;
      for (auto& [node, agent] : agents) before[node] = agent->output().size();
      std::string target = to.ip + ":" + std::to_string(kAppPort);
      auto r = cluster.runInPod(from.short_name,
                                {sim::testappPath(), "connect", "--to", target, "--send",
                                 std::to_string(bytes), "--expect", std::to_string(bytes)},
                                seconds(60));
      auto done = sim::findEvent(r.out, "done");
      bool ok = done && done->value("ok", false);
      const Expected expected = expectedVerdict(authorizer, from, to, kAppPort);
      // A connection the policies deny must fail (reset), one they allow must succeed.
      bool as_expected = ok == expected.allowed;
      if (!expect_denied.empty() &&
          ok == (expect_denied.count(from.short_name + ">" + to.short_name) > 0)) {
        as_expected = false;
      }
      failures += as_expected ? 0 : 1;
      // Let the agents write their access lines for this connection.
      sim::waitFor(
          [&] {
            bool want_out = from.enrolled, want_in = to.enrolled;
            std::string a = agents[from.node]->output().substr(before[from.node]);
            std::string b = agents[to.node]->output().substr(
                from.node == to.node ? before[from.node] : before[to.node]);
            return (!want_out || a.find("direction=outbound") != std::string::npos) &&
                   (!want_in || b.find("direction=inbound") != std::string::npos);
          },
          seconds(2));
      std::string captured = "-";
      std::string delivered = "-";
      std::string tunnel = "-";
      std::string identity = "-";
      for (auto& [node, agent] : agents) {
        for (const auto& line : accessLines(agent->output().substr(before[node]))) {
          // transport: hbone (between nodes), local (the same-node fast path: the agent joins
          // both pods' sockets itself), tcp (a side outside the mesh).
          const bool hbone = line.transport == "hbone";
          const bool local = line.transport == "local";
          if (line.direction == "outbound") {
            captured = node + ":15001";
            tunnel = hbone ? "HBONE (mTLS)" : local ? "same node" : "plain TCP";
          } else {
            delivered = node + (hbone ? ":15008" : local ? ":local" : ":15006");
            if (hbone || local) {
              // spiffe://<td>/ns/<ns>/sa/<sa> -> <ns>/<sa>
              std::smatch id;
              static const std::regex kId(R"(/ns/([^/]+)/sa/([^/]+)$)");
              identity = std::regex_search(line.src_identity, id, kId)
                             ? id[1].str() + "/" + id[2].str()
                             : line.src_identity;
            } else if (tunnel == "-") {
              tunnel = "plain TCP";
            }
          }
        }
      }
      // Between two enrolled pods an allowed connection carries the client's identity, over
      // HBONE or within the node; anything else is a wrong report, and counts as a failure.
      std::string verdict =
          as_expected ? expected.text
                      : fmt::format("UNEXPECTED ({}; policy says {}): {}{}",
                                    ok ? "connected" : "refused", expected.text, r.out, r.err);
      if (as_expected && ok && from.enrolled && to.enrolled && identity == "-") {
        ++failures;
        verdict = "UNEXPECTED: no client identity in the access log between two mesh pods";
      }
      auto seen = sim::findLastEvent(servers[to.short_name]->output(), "conn");
      std::string server_saw = ok && seen ? sim::hostOf(seen->value("peer", "")) : "-";
      std::cout << fmt::format("{:<31} {:<17} {:<13} {:<12} {:<12} {:<14} {:<15} {}\n",
                               from.short_name + " -> " + to.short_name,
                               done ? done->value("peer", "?") : "?", server_saw, captured,
                               delivered, tunnel, identity, verdict);
    }
  }

  // Each service VIP: connections from the first enrolled pod, spread over the endpoints.
  constexpr int kServiceConnections = 6;
  for (const auto& service : config.snapshot->services()) {
    if (service.vips.empty() || service.ports.empty()) continue;
    const DemoPod* client = nullptr;
    for (const auto& p : pods) {
      if (p.enrolled && !client) client = &p;
    }
    if (!client) break;
    const std::string vip =
        service.vips[0].address.toString() + ":" + std::to_string(service.ports.begin()->first);
    std::cout << fmt::format("\n{} -> service {} ({}), {} connections:\n", client->short_name,
                             service.hostname, vip, kServiceConnections);
    for (int i = 0; i < kServiceConnections; ++i) {
      const size_t before = agents[client->node]->output().size();
      auto r = cluster.runInPod(client->short_name,
                                {sim::testappPath(), "connect", "--to", vip, "--send",
                                 std::to_string(bytes), "--expect", std::to_string(bytes)},
                                seconds(60));
      auto done = sim::findEvent(r.out, "done");
      const bool ok = done && done->value("ok", false);
      failures += ok ? 0 : 1;
      std::string endpoint = "?";
      sim::waitFor(
          [&] {
            for (const auto& line : accessLines(agents[client->node]->output().substr(before))) {
              if (line.direction == "outbound") endpoint = line.dst;
            }
            return endpoint != "?";
          },
          seconds(2));
      std::string name = endpoint;
      for (const auto& p : pods) {
        if (endpoint.rfind(p.ip + ":", 0) == 0) name = p.short_name + " (" + endpoint + ")";
      }
      std::cout << fmt::format("  #{} served by {}{}\n", i + 1, name,
                               ok ? "" : "  FAILED " + r.out + r.err);
    }
  }

  std::cout << "\nCapture counters (from the pinned BPF maps):\n";
  for (const auto& node : node_order) {
    std::string line;
    auto counters = agent::readPinnedCounters(cluster.bpffsDir() + "/" + node + "/maps");
    if (!counters) line = " (" + counters.error().message + ")";
    for (const auto& [name, n] : counters ? *counters : std::map<std::string, uint64_t>{}) {
      if (n) line += fmt::format(" {}={}", name, n);
    }
    std::cout << "  " << node << ":" << line << "\n";
  }
  std::cout << "\nHow to read this: every allowed connection carried " << humanBytes(bytes)
            << " each way" << (failures == 0 ? ", intact" : "")
            << ". An enrolled pod's connection is captured by\n"
               "its node's agent on 15001 (the client still sees the address it dialled). Between "
               "two mesh pods it\ntravels as HBONE: HTTP/2 CONNECT over mutual TLS 1.3 to the "
               "destination pod's 15008, where the\nagent checks the client's SPIFFE identity; "
               "between two mesh pods of one node, the agent owns\nboth ends and joins them itself "
               "(same node: the bytes never leave the node), with the same\nidentity check and "
               "policy. A client outside the mesh arrives in plain TCP and is captured on\n15006. "
               "Either way "
               "the server sees the real client address (no NAT). Inbound connections\nare checked "
               "against the config's authorization policies first: a denied HBONE stream gets 401\n"
               "and a denied plaintext connection a reset, before the server sees anything (SERVER "
               "SAW -).\nA connection to a service VIP goes to one of its endpoints (power of two "
               "choices, retried\nelsewhere if an endpoint refuses).\n";

  // The waypoint part adds its pods and services to the running cluster, after the matrix
  // above, which therefore shows the config's own pods only.
  const int waypoint_failures =
      with_waypoint ? runWaypointDemo({&cluster, cfg, node_order, agents}) : 0;

  std::cout << "\nStopping the agents (SIGTERM): ";
  bool clean = true;
  for (auto& [node, agent] : agents) {
    agent->signal(SIGTERM);
    auto status = agent->waitExit(seconds(10));
    clean = clean && status && *status == 0;
  }
  std::error_code ec;
  for (const auto& node : node_order) {
    clean = clean && !std::filesystem::exists(cluster.bpffsDir() + "/" + node, ec);
  }
  std::cout << (clean ? "programs detached, pins removed.\n" : "NOT clean, see agent logs.\n");
  cluster.teardown();
  std::cout << "Simulated cluster removed.\n";
  if (failures) std::cout << failures << " connection(s) did not end as the policies say.\n";
  if (waypoint_failures) std::cout << waypoint_failures << " waypoint check(s) failed.\n";
  return failures == 0 && waypoint_failures == 0 && clean ? 0 : 1;
}

}  // namespace
}  // namespace nodemesh::demo

int main(int argc, char** argv) {
  nodemesh::sim::runSweeperIfAsked();
  try {
    CLI::App app{
        "nodemesh-demo: a simulated two-node cluster with nodemesh agents and real "
        "traffic between pods, then HTTP routed by a waypoint"};
    std::string config = std::string(NODEMESH_EXAMPLES_DIR) + "/two-nodes.yaml";
    uint64_t bytes = 1 << 20;
    app.add_option("--config", config, "mesh config (ztunnel's local config format)")
        ->capture_default_str()
        ->check(CLI::ExistingFile);
    app.add_option("--bytes", bytes, "bytes each connection sends each way")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30));
    std::vector<std::string> expect_denied;
    app.add_option("--expect-denied", expect_denied,
                   "check the pod pairs refused: exactly these FROM>TO pairs (workload names, "
                   "comma-separated) must be refused and every other pair must connect")
        ->delimiter(',');
    bool no_waypoint = false;
    app.add_flag("--no-waypoint", no_waypoint,
                 "skip the waypoint part (L7 routing of an HTTP service by its HTTPRoute)");
    CLI11_PARSE(app, argc, argv);
    nodemesh::sim::cleanUpWhenInterrupted();
    return nodemesh::demo::runDemo(config, bytes, !no_waypoint,
                                   {expect_denied.begin(), expect_denied.end()});
  } catch (const std::exception& e) {
    // Harness setup errors (a command that failed while building the cluster), and anything
    // else that would otherwise end in std::terminate() without running the cleanup.
    std::cerr << "nodemesh-demo: " << e.what() << "\n";
    return 1;
  }
}
