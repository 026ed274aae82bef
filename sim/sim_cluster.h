#pragma once

// A simulated Kubernetes cluster for privileged end-to-end tests, built from kernel objects
// that live only as long as the test:
//
//   underlay netns ── bridge br0 ── veth ── node netns (eth0 = underlay IP, ip_forward=1)
//                                            └─ cni0 bridge (pod CIDR .1) ── veth ── pod netns
//
// Pods are wired by Debian's CNI plugins (bridge + static IPAM, loopback) invoked exactly as a
// container runtime would, and removed with CNI DEL. Every node routes the other nodes' pod
// CIDRs via their underlay IPs. Nothing is created in the root network namespace: all links
// live inside the cluster's own namespaces, so interface names never need to be unique.
//
// Every name (netns, cgroup, bpffs and temp directories) starts with a per-instance prefix
// nmt<pid>x<counter>. The destructor removes everything, also when the test failed or threw;
// a run that was killed is cleaned up by the next one (sweepStale(), which removes objects
// whose embedded pid is no longer alive), or at once for programs that call
// cleanUpWhenInterrupted() (interrupt.h) when a signal ended them.
//
// Setup methods throw HarnessError (see process.h). Not thread-safe: use from the test thread.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sim/process.h"

namespace nodemesh::sim {

inline constexpr const char* kCniBinDir = "/usr/lib/cni";

struct NodeInfo {
  std::string name;
  int index = 0;             // 1-based, in order of addNode()
  std::string netns_name;    // <prefix>-n-<name>
  std::string netns_path;    // /var/run/netns/<netns_name>
  std::string underlay_ip;   // "192.168.250.1"
  int underlay_prefix = 24;  // prefix length of the underlay subnet
  std::string pod_cidr;      // "10.244.1.0/24"
  std::string gateway_ip;    // first host of pod_cidr, on the node's cni0 bridge
  std::string cgroup_path;   // <cgroup2 root>/<prefix>/<name>
  // Dual stack only (SimClusterOptions::dual_stack), else empty:
  std::string underlay_ip6;  // "fd00:250::1" (/64)
  std::string pod_cidr6;     // "fd00:244:1::/64"
  std::string gateway_ip6;   // "fd00:244:1::1", on cni0
};

struct PodInfo {
  std::string name;
  std::string node;
  std::string ip;          // "10.244.1.10"
  std::string ip6;         // dual stack only: "fd00:244:1::10" (the IPv4 address's last octet)
  std::string netns_name;  // <prefix>-p-<name>
  std::string netns_path;  // /var/run/netns/<netns_name>
};

struct SimClusterOptions {
  // Default underlay subnet: node N gets host N of it (addNode(name)).
  std::string underlay_cidr = "192.168.250.0/24";
  // Keep the work directory (process logs) after teardown; also NODEMESH_E2E_KEEP_LOGS=1.
  bool keep_logs = false;
  // Dual stack: node N also gets fd00:250::N/64 on the underlay and the pod CIDR
  // fd00:244:N::/64 (gateway ::1), routed between nodes like the IPv4 one; a pod with IPv4
  // address a.b.c.D also gets fd00:244:N::D (written in decimal digits, so .10 -> ::10).
  bool dual_stack = false;
};

// Tells teardown() whether the caller has failed (the e2e tests: the current gtest test), so
// that the tail of every process's output is printed first. Default: never.
void setFailureProbe(std::function<bool()> probe);

class SimCluster {
 public:
  // Sweeps leftovers of dead runs, then creates the underlay netns, the cgroup base directory
  // and the work directory. Requires root (see NODEMESH_REQUIRE_ROOT_OR_SKIP()).
  SimCluster();
  explicit SimCluster(SimClusterOptions options);
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  // Kills processes, CNI DEL + deletes pods, deletes nodes and the underlay, removes the bpffs
  // directory, cgroups and work directory. Idempotent, never throws; problems are printed.
  // When the failure probe says the caller has failed, the tail of every process's output is
  // printed first.
  void teardown();

  // Removes objects of earlier runs whose embedded pid is dead: kills the processes in their
  // cgroups, deletes their netns, bpffs and work directories, rmdirs their cgroups.
  static void sweepStale();
  // What still exists for `prefix` (netns, cgroup dir, bpffs dir, work dir), for tests that
  // check the cleanup. Empty when nothing is left.
  static std::vector<std::string> findLeftovers(const std::string& prefix);

  const std::string& prefix() const { return prefix_; }

  // ---- topology ----
  // underlay_ip may carry a prefix length ("192.168.250.1/24"); without one the prefix of
  // options.underlay_cidr applies. pod_cidr is an IPv4 CIDR, its first host is the gateway.
  const NodeInfo& addNode(const std::string& name, const std::string& underlay_ip,
                          const std::string& pod_cidr);
  // Node N (1-based) gets host N of the underlay subnet and pod CIDR 10.244.N.0/24.
  const NodeInfo& addNode(const std::string& name);
  // A pod netns wired to `node` by CNI: lo up, eth0 = ip/<pod prefix>, default route via the
  // node's gateway (and, dual stack, the IPv6 address and default route too). ip must be inside
  // the node's pod CIDR.
  const PodInfo& addPod(const std::string& node, const std::string& name, const std::string& ip);
  // Kills the processes started in the pod, runs CNI DEL and deletes its netns.
  void removePod(const std::string& name);

  const NodeInfo& node(const std::string& name) const;
  const PodInfo& pod(const std::string& name) const;
  bool hasPod(const std::string& name) const { return pods_.count(name) != 0; }
  std::string nodeNetnsPath(const std::string& name) const;
  std::string podNetnsPath(const std::string& name) const;
  std::string underlayNetnsPath() const;

  // ---- cgroups ----
  // <cgroup2 root>/<prefix>: every cgroup of this cluster lives below it.
  const std::string& cgroupBase() const { return cgroup_base_; }
  // The node's cgroup: processes started in the node or in its pods run here, so it is where
  // the agent attaches its cgroup BPF programs in tests.
  std::string nodeCgroupPath(const std::string& name) const;
  // mkdir -p <cgroupBase()>/<relative>; returns the absolute path.
  std::string createCgroup(const std::string& relative);

  // ---- bpffs ----
  // /sys/fs/bpf/<prefix>, created (and bpffs mounted) on first call; removed with every pin
  // below it at teardown.
  const std::string& bpffsDir();

  // ---- files ----
  // A temp directory for logs and configs (<tmp>/<prefix>), removed at teardown.
  const std::string& workDir() const { return work_dir_; }
  // Writes content to <workDir()>/<name> and returns the path.
  std::string writeFile(const std::string& name, const std::string& content);

  // ---- processes ----
  // Starts a process owned by the cluster (killed at teardown at the latest). Empty
  // cgroup_path: the cluster's scratch cgroup <cgroupBase()>/_misc, so that every process is
  // reachable for cleanup. Empty stdout/stderr paths: <workDir()>/<seq>-<name>.out/.err.
  Process& startProcess(ProcessSpec spec);
  // In the node's netns and cgroup (the agent).
  Process& startInNode(const std::string& node, std::vector<std::string> argv,
                       std::vector<std::string> env = {});
  // In the pod's netns and its node's cgroup (applications). removePod() kills them.
  Process& startInPod(const std::string& pod, std::vector<std::string> argv,
                      std::vector<std::string> env = {});

  // Short commands with captured output, in the scratch cgroup.
  CommandResult runInNetns(const std::string& netns_path, const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // In the node's netns and cgroup.
  CommandResult runInNode(const std::string& node, const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // In the pod's netns and its node's cgroup (so the node's BPF programs see it).
  CommandResult runInPod(const std::string& pod, const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  struct PodState {
    PodInfo info;
    std::string cni_config;  // the bridge plugin's network config, for DEL
    bool cni_added = false;
  };
  struct ProcessEntry {
    std::unique_ptr<Process> process;
    std::string pod;  // the pod it runs in, empty otherwise
  };

  void createUnderlay();
  void ip(const std::vector<std::string>& args);  // `ip ...`, throws on failure
  CommandResult cni(const PodState& pod, const std::string& command, bool loopback);
  void deletePod(PodState& pod, std::vector<std::string>& problems);
  void dumpProcessOutput() const;
  Process& track(ProcessSpec spec, const std::string& pod);

  SimClusterOptions options_;
  std::string prefix_;
  std::string cgroup_root_;
  std::string cgroup_base_;
  std::string scratch_cgroup_;
  std::string work_dir_;
  std::string bpffs_dir_;
  std::string underlay_netns_;
  bool underlay_created_ = false;
  std::map<std::string, NodeInfo> nodes_;
  std::vector<std::string> node_order_;
  std::map<std::string, PodState> pods_;
  std::vector<std::string> pod_order_;
  std::vector<ProcessEntry> processes_;
  int process_seq_ = 0;
  bool torn_down_ = false;
};

}  // namespace nodemesh::sim
