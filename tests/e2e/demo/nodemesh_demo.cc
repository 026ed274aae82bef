// nodemesh-demo: the README's main job. Builds a simulated cluster from a local config file
// (one network namespace per node and per pod, joined by bridges, as in the e2e tests), runs
// one nodemesh-agent per node, sends real TCP traffic between every pair of pods and prints
// what happened to each connection; then removes everything it created.
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
#include <string>
#include <vector>

#include <fmt/format.h>

#include "agent/bpf/pinned_counters.h"
#include "agent/config/local_config.h"
#include "tests/e2e/harness/privileged.h"
#include "tests/e2e/harness/sim_cluster.h"
#include "tests/e2e/harness/testapp_client.h"

namespace nodemesh::demo {
namespace {

using e2e::Process;
using e2e::SimCluster;
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
  std::string direction, pod, src, dst, to_dst, from_dst, result, transport, src_identity;
};

std::vector<AccessLine> accessLines(const std::string& log) {
  static const std::regex kLine(
      R"(access direction=(\w+) pod=(\S+) src=(\S+) dst=(\S+) bytes_to_dst=(\d+) )"
      R"(bytes_from_dst=(\d+) duration_ms=\d+ result=(ok|".*") transport=(\w+))"
      R"((?: src_identity=(\S+))?)");
  std::vector<AccessLine> out;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kLine); it != std::sregex_iterator();
       ++it) {
    const auto& m = *it;
    out.push_back({m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9]});
  }
  return out;
}

std::string humanBytes(uint64_t n) {
  if (n >= (1u << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1 << 20));
  if (n >= 1024) return fmt::format("{:.1f} KiB", static_cast<double>(n) / 1024);
  return fmt::format("{} B", n);
}

int runDemo(const std::string& config_path, uint64_t bytes) {
  if (auto problem = e2e::privilegedEnvironmentProblem()) {
    std::cerr << "nodemesh-demo needs root on a Linux host with network namespaces, cgroup2 "
                 "and bpffs: "
              << *problem << "\n";
    return 1;
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
  std::string cfg = cluster.writeFile("mesh.yaml", e2e::readFile(config_path));

  std::map<std::string, Process*> agents;
  for (const auto& node : node_order) {
    e2e::ProcessSpec spec;
    spec.netns_path = cluster.nodeNetnsPath(node);
    spec.cgroup_path = cluster.nodeCgroupPath(node);
    spec.argv = {e2e::agentPath(),
                 "--config",
                 cfg,
                 "--node",
                 node,
                 "--cgroup",
                 spec.cgroup_path,
                 "--bpffs",
                 cluster.bpffsDir() + "/" + node,
                 "--state-dir",
                 cluster.workDir() + "/ca"};
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
    Process& s = cluster.startInPod(p.short_name, {e2e::testappPath(), "serve", "--port",
                                                   std::to_string(kAppPort), "--count", "0"});
    if (!e2e::waitForListening(s)) {
      std::cerr << "server in " << p.name << " did not start: " << s.output();
      return 1;
    }
    servers[p.short_name] = &s;
  }

  std::cout << fmt::format(
      "\nEvery pod connects to every other pod on port {} and sends {} "
      "each way (then half-closes):\n\n",
      kAppPort, humanBytes(bytes));
  std::cout << fmt::format("{:<31} {:<17} {:<13} {:<12} {:<12} {:<14} {}\n", "CONNECTION",
                           "CLIENT SAW", "SERVER SAW", "CAPTURED AT", "DELIVERED BY", "TUNNEL",
                           "CLIENT IDENTITY");
  int failures = 0;
  for (const auto& from : pods) {
    for (const auto& to : pods) {
      if (from.name == to.name) continue;
      std::map<std::string, size_t> before;
      for (auto& [node, agent] : agents) before[node] = agent->output().size();
      std::string target = to.ip + ":" + std::to_string(kAppPort);
      auto r = cluster.runInPod(from.short_name,
                                {e2e::testappPath(), "connect", "--to", target, "--send",
                                 std::to_string(bytes), "--expect", std::to_string(bytes)},
                                seconds(60));
      auto done = e2e::findEvent(r.out, "done");
      bool ok = done && done->value("ok", false);
      failures += ok ? 0 : 1;
      // Let the agents write their access lines for this connection.
      e2e::waitFor(
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
          if (line.direction == "outbound") {
            captured = node + ":15001";
            tunnel = line.transport == "hbone" ? "HBONE (mTLS)" : "plain TCP";
          } else {
            delivered = node + (line.transport == "hbone" ? ":15008" : ":15006");
            if (line.transport == "hbone") {
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
      auto seen = e2e::findLastEvent(servers[to.short_name]->output(), "conn");
      std::string server_saw = seen ? e2e::hostOf(seen->value("peer", "")) : "?";
      std::cout << fmt::format("{:<31} {:<17} {:<13} {:<12} {:<12} {:<14} {}\n",
                               from.short_name + " -> " + to.short_name,
                               done ? done->value("peer", "?") : "?", server_saw, captured,
                               delivered, tunnel, ok ? identity : "FAILED " + r.out + r.err);
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
  std::cout << "\nHow to read this: every connection carried " << humanBytes(bytes) << " each way"
            << (failures == 0 ? ", intact" : "")
            << ". An enrolled pod's connection is captured by\n"
               "its node's agent on 15001 (the client still sees the address it dialled). Between "
               "two mesh pods it\ntravels as HBONE: HTTP/2 CONNECT over mutual TLS 1.3 to the "
               "destination pod's 15008, where the\nagent checks the client's SPIFFE identity; a "
               "client outside the mesh arrives in plain TCP and is\ncaptured on 15006. Either way "
               "the server sees the real client address (no NAT).\n";

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
  if (failures) std::cout << failures << " connection(s) failed.\n";
  return failures == 0 && clean ? 0 : 1;
}

}  // namespace
}  // namespace nodemesh::demo

int main(int argc, char** argv) {
  try {
    CLI::App app{
        "nodemesh-demo: a simulated two-node cluster with nodemesh agents and real "
        "traffic between pods"};
    std::string config = std::string(NODEMESH_EXAMPLES_DIR) + "/two-nodes.yaml";
    uint64_t bytes = 1 << 20;
    app.add_option("--config", config, "mesh config (ztunnel's local config format)")
        ->capture_default_str()
        ->check(CLI::ExistingFile);
    app.add_option("--bytes", bytes, "bytes each connection sends each way")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30));
    CLI11_PARSE(app, argc, argv);
    return nodemesh::demo::runDemo(config, bytes);
  } catch (const std::exception& e) {
    // Harness setup errors (a command that failed while building the cluster), and anything
    // else that would otherwise end in std::terminate() without running the cleanup.
    std::cerr << "nodemesh-demo: " << e.what() << "\n";
    return 1;
  }
}
