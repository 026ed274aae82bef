// SimCluster: starting processes in nodes and pods, running commands, their output.

#include "sim/sim_cluster.h"

#include <cstdio>
#include <string>
#include <vector>

namespace nodemesh::sim {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string tail(const std::string& text, size_t max) {
  if (text.size() <= max) return text;
  return "...\n" + text.substr(text.size() - max);
}

}  // namespace

Process& SimCluster::track(ProcessSpec spec, const std::string& pod) {
  if (torn_down_) throw HarnessError("the cluster has been torn down");
  if (spec.argv.empty()) throw HarnessError("empty argv");
  if (spec.cgroup_path.empty()) spec.cgroup_path = scratch_cgroup_;
  std::string base = spec.argv[0].substr(spec.argv[0].rfind('/') + 1);
  char seq[16];
  std::snprintf(seq, sizeof(seq), "%02d", ++process_seq_);
  std::string stem = work_dir_ + "/" + seq + "-" + (pod.empty() ? "" : pod + "-") + base;
  if (spec.stdout_path.empty()) spec.stdout_path = stem + ".out";
  if (spec.stderr_path.empty()) spec.stderr_path = stem + ".err";
  processes_.push_back({Process::spawn(spec), pod});
  return *processes_.back().process;
}

Process& SimCluster::startProcess(ProcessSpec spec) {
  return track(std::move(spec), "");
}

Process& SimCluster::startInNode(const std::string& node_name, std::vector<std::string> argv,
                                 std::vector<std::string> env) {
  const NodeInfo& n = node(node_name);
  ProcessSpec spec;
  spec.netns_path = n.netns_path;
  spec.cgroup_path = n.cgroup_path;
  spec.argv = std::move(argv);
  spec.env = std::move(env);
  return track(std::move(spec), "");
}

Process& SimCluster::startInPod(const std::string& pod_name, std::vector<std::string> argv,
                                std::vector<std::string> env) {
  const PodInfo& p = pod(pod_name);
  ProcessSpec spec;
  spec.netns_path = p.netns_path;
  spec.cgroup_path = node(p.node).cgroup_path;
  spec.argv = std::move(argv);
  spec.env = std::move(env);
  return track(std::move(spec), pod_name);
}

CommandResult SimCluster::runInNetns(const std::string& netns_path,
                                     const std::vector<std::string>& argv,
                                     std::chrono::milliseconds timeout) {
  CommandSpec spec;
  spec.netns_path = netns_path;
  spec.cgroup_path = scratch_cgroup_;
  spec.argv = argv;
  spec.timeout = timeout;
  return runCommand(spec);
}

CommandResult SimCluster::runInNode(const std::string& node_name,
                                    const std::vector<std::string>& argv,
                                    std::chrono::milliseconds timeout) {
  const NodeInfo& n = node(node_name);
  CommandSpec spec;
  spec.netns_path = n.netns_path;
  spec.cgroup_path = n.cgroup_path;
  spec.argv = argv;
  spec.timeout = timeout;
  return runCommand(spec);
}

CommandResult SimCluster::runInPod(const std::string& pod_name,
                                   const std::vector<std::string>& argv,
                                   std::chrono::milliseconds timeout) {
  const PodInfo& p = pod(pod_name);
  CommandSpec spec;
  spec.netns_path = p.netns_path;
  spec.cgroup_path = node(p.node).cgroup_path;
  spec.argv = argv;
  spec.timeout = timeout;
  return runCommand(spec);
}

void SimCluster::dumpProcessOutput() const {
  for (const auto& entry : processes_) {
    const Process& p = *entry.process;
    auto code = p.exitCode();
    std::string state = code ? "exit " + std::to_string(*code) : "running";
    std::fprintf(stderr, "[sim_cluster] ---- %s (pid %d, %s) ----\n", p.name().c_str(), p.pid(),
                 state.c_str());
    std::string out = tail(p.output(), 4096);
    std::string err =
        p.spec().stderr_path == p.spec().stdout_path ? "" : tail(p.errorOutput(), 4096);
    if (!out.empty()) std::fprintf(stderr, "[stdout]\n%s\n", out.c_str());
    if (!err.empty()) std::fprintf(stderr, "[stderr]\n%s\n", err.c_str());
  }
}
}  // namespace nodemesh::sim
