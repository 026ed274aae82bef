// SimCluster: building the cluster (underlay, nodes, pods through the CNI plugins), its
// cgroups, bpffs directory and files.

#include "sim/sim_cluster.h"
#include <arpa/inet.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/cgroup.h"
#include "common/ip_address.h"
#include "common/netns.h"
#include "sim/privileged.h"
#include "sim/sim_cluster_internal.h"

namespace nodemesh::sim {
namespace {

using cluster_internal::deleteNetns;
using cluster_internal::errnoText;
using cluster_internal::exists;
using cluster_internal::kBpffsRoot;
using cluster_internal::kNetnsDir;
using cluster_internal::tempRoot;
using cluster_internal::writeString;

using std::chrono::seconds;

constexpr const char* kScratchCgroup = "_misc";

bool validName(const std::string& name) {
  if (name.empty() || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

void writeSysctl(const std::string& netns_path, const std::string& key, const std::string& value) {
  auto fd = openNetns(netns_path);
  if (!fd) throw HarnessError(fd.error().message);
  // /proc/sys/net resolves against the calling thread's netns at open time.
  auto scope = ScopedNetns::enter(fd->get());
  if (!scope) throw HarnessError(scope.error().message);
  if (!writeString("/proc/sys/" + key, value)) {
    throw HarnessError(errnoText("sysctl " + key + "=" + value + " in " + netns_path));
  }
}

}  // namespace

SimCluster::SimCluster() : SimCluster(SimClusterOptions{}) {}

SimCluster::SimCluster(SimClusterOptions options) : options_(std::move(options)) {
  static std::atomic<int> counter{0};
  prefix_ = "nmt" + std::to_string(::getpid()) + "x" + std::to_string(counter++);
  const char* keep = std::getenv("NODEMESH_E2E_KEEP_LOGS");
  if (keep != nullptr && std::strcmp(keep, "1") == 0) options_.keep_logs = true;

  sweepStale();
  try {
    auto root = findCgroup2Root();
    if (!root) throw HarnessError(root.error().message);
    cgroup_root_ = *root;
    cgroup_base_ = cgroup_root_ + "/" + prefix_;
    if (::mkdir(cgroup_base_.c_str(), 0755) != 0) {
      std::string err = errnoText("mkdir " + cgroup_base_);
      cgroup_base_.clear();  // not ours: never remove it
      throw HarnessError(err);
    }
    scratch_cgroup_ = createCgroup(kScratchCgroup);

    work_dir_ = tempRoot() + "/" + prefix_;
    if (::mkdir(work_dir_.c_str(), 0700) != 0) {
      std::string err = errnoText("mkdir " + work_dir_);
      work_dir_.clear();
      throw HarnessError(err);
    }
    createUnderlay();
  } catch (...) {
    teardown();
    throw;
  }
}

SimCluster::~SimCluster() {
  teardown();
}

void SimCluster::ip(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.argv = {"ip"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  CommandResult r = runCommand(spec);
  if (!r.ok()) throw HarnessError(r.describe());
}

void SimCluster::createUnderlay() {
  underlay_netns_ = prefix_ + "-ul";
  underlay_created_ = true;
  ip({"netns", "add", underlay_netns_});
  ip({"-n", underlay_netns_, "link", "add", "br0", "type", "bridge"});
  ip({"-n", underlay_netns_, "link", "set", "br0", "up"});
}

std::string SimCluster::underlayNetnsPath() const {
  return std::string(kNetnsDir) + "/" + underlay_netns_;
}

const NodeInfo& SimCluster::addNode(const std::string& name) {
  auto subnet = Cidr::parse(options_.underlay_cidr);
  if (!subnet || !subnet->base().isV4()) {
    throw HarnessError("invalid underlay_cidr " + options_.underlay_cidr);
  }
  uint32_t host = ntohl(subnet->base().v4().s_addr) + static_cast<uint32_t>(nodes_.size() + 1);
  std::string underlay_ip = IpAddress::fromV4HostOrder(host).toString();
  std::string pod_cidr = "10.244." + std::to_string(nodes_.size() + 1) + ".0/24";
  return addNode(name, underlay_ip, pod_cidr);
}

const NodeInfo& SimCluster::addNode(const std::string& name, const std::string& underlay_ip,
                                    const std::string& pod_cidr) {
  if (!validName(name)) throw HarnessError("invalid node name '" + name + "' ([a-z0-9-]{1,32})");
  if (nodes_.count(name)) throw HarnessError("node " + name + " exists");

  NodeInfo node;
  node.name = name;
  node.index = static_cast<int>(nodes_.size()) + 1;
  auto default_subnet = Cidr::parse(options_.underlay_cidr);
  if (!default_subnet) throw HarnessError("invalid underlay_cidr " + options_.underlay_cidr);
  auto underlay = Cidr::parse(underlay_ip);
  if (!underlay || !underlay->base().isV4()) {
    throw HarnessError("invalid underlay IP " + underlay_ip);
  }
  auto slash = underlay_ip.find('/');
  node.underlay_ip = underlay_ip.substr(0, slash);
  node.underlay_prefix =
      slash == std::string::npos ? default_subnet->prefixLen() - 96 : underlay->prefixLen() - 96;
  auto cidr = Cidr::parse(pod_cidr);
  if (!cidr || !cidr->base().isV4() || cidr->prefixLen() - 96 > 30) {
    throw HarnessError("invalid pod CIDR " + pod_cidr + " (IPv4, at most /30)");
  }
  node.pod_cidr = cidr->toString();
  node.gateway_ip = IpAddress::fromV4HostOrder(ntohl(cidr->base().v4().s_addr) + 1).toString();
  for (const auto& [other_name, other] : nodes_) {
    if (other.underlay_ip == node.underlay_ip) {
      throw HarnessError("underlay IP " + node.underlay_ip + " is used by " + other_name);
    }
    if (other.pod_cidr == node.pod_cidr) {
      throw HarnessError("pod CIDR " + node.pod_cidr + " is used by " + other_name);
    }
  }
  node.netns_name = prefix_ + "-n-" + name;
  node.netns_path = std::string(kNetnsDir) + "/" + node.netns_name;
  node.cgroup_path = cgroup_base_ + "/" + name;

  // Registered before anything exists, so teardown removes whatever part got created.
  NodeInfo& n = nodes_.emplace(name, node).first->second;
  node_order_.push_back(name);

  createCgroup(name);
  ip({"netns", "add", n.netns_name});
  std::string port = fmt::format("n{}", n.index);
  ip({"-n", underlay_netns_, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
      n.netns_name});
  ip({"-n", underlay_netns_, "link", "set", port, "master", "br0", "up"});
  ip({"-n", n.netns_name, "link", "set", "lo", "up"});
  ip({"-n", n.netns_name, "addr", "add", n.underlay_ip + "/" + std::to_string(n.underlay_prefix),
      "dev", "eth0"});
  ip({"-n", n.netns_name, "link", "set", "eth0", "up"});
  writeSysctl(n.netns_path, "net/ipv4/ip_forward", "1");
  if (options_.dual_stack) {
    n.underlay_ip6 = fmt::format("fd00:250::{}", n.index);
    n.pod_cidr6 = fmt::format("fd00:244:{}::/64", n.index);
    n.gateway_ip6 = fmt::format("fd00:244:{}::1", n.index);
    // No duplicate address detection: addresses (cni0's gateway too) are usable at once
    // instead of "tentative" for a second or two. All addresses here are unique by design.
    writeSysctl(n.netns_path, "net/ipv6/conf/default/accept_dad", "0");
    writeSysctl(n.netns_path, "net/ipv6/conf/all/accept_dad", "0");
    ip({"-n", n.netns_name, "addr", "add", n.underlay_ip6 + "/64", "dev", "eth0", "nodad"});
    writeSysctl(n.netns_path, "net/ipv6/conf/all/forwarding", "1");
  }

  for (const auto& other_name : node_order_) {
    if (other_name == name) continue;
    const NodeInfo& other = nodes_.at(other_name);
    ip({"-n", n.netns_name, "route", "add", other.pod_cidr, "via", other.underlay_ip});
    ip({"-n", other.netns_name, "route", "add", n.pod_cidr, "via", n.underlay_ip});
    if (options_.dual_stack) {
      ip({"-n", n.netns_name, "-6", "route", "add", other.pod_cidr6, "via", other.underlay_ip6});
      ip({"-n", other.netns_name, "-6", "route", "add", n.pod_cidr6, "via", n.underlay_ip6});
    }
  }
  return n;
}

const NodeInfo& SimCluster::node(const std::string& name) const {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) throw HarnessError("no node " + name);
  return it->second;
}

const PodInfo& SimCluster::pod(const std::string& name) const {
  auto it = pods_.find(name);
  if (it == pods_.end()) throw HarnessError("no pod " + name);
  return it->second.info;
}

std::string SimCluster::nodeNetnsPath(const std::string& name) const {
  return node(name).netns_path;
}

std::string SimCluster::podNetnsPath(const std::string& name) const {
  return pod(name).netns_path;
}

std::string SimCluster::nodeCgroupPath(const std::string& name) const {
  return node(name).cgroup_path;
}

const PodInfo& SimCluster::addPod(const std::string& node_name, const std::string& name,
                                  const std::string& ip_text) {
  const NodeInfo& n = node(node_name);
  if (!validName(name)) throw HarnessError("invalid pod name '" + name + "' ([a-z0-9-]{1,32})");
  if (pods_.count(name)) throw HarnessError("pod " + name + " exists");
  auto addr = IpAddress::parse(ip_text);
  auto cidr = Cidr::parse(n.pod_cidr);
  if (!addr || !addr->isV4() || !cidr->contains(*addr)) {
    throw HarnessError("pod IP " + ip_text + " is not in " + node_name + "'s CIDR " + n.pod_cidr);
  }
  if (addr->toString() == n.gateway_ip || *addr == cidr->base()) {
    throw HarnessError("pod IP " + ip_text + " is the network or gateway address");
  }
  for (const auto& [other_name, other] : pods_) {
    if (other.info.ip == addr->toString()) {
      throw HarnessError("pod IP " + ip_text + " is used by " + other_name);
    }
  }

  PodState state;
  state.info.name = name;
  state.info.node = node_name;
  state.info.ip = addr->toString();
  state.info.netns_name = prefix_ + "-p-" + name;
  state.info.netns_path = std::string(kNetnsDir) + "/" + state.info.netns_name;
  const std::string pod_prefix = std::to_string(cidr->prefixLen() - 96);
  nlohmann::json addresses = {
      {{"address", state.info.ip + "/" + pod_prefix}, {"gateway", n.gateway_ip}}};
  nlohmann::json routes = {{{"dst", "0.0.0.0/0"}, {"gw", n.gateway_ip}}};
  if (options_.dual_stack) {
    const std::string last_octet = state.info.ip.substr(state.info.ip.rfind('.') + 1);
    state.info.ip6 = fmt::format("fd00:244:{}::{}", n.index, last_octet);
    addresses.push_back({{"address", state.info.ip6 + "/64"}, {"gateway", n.gateway_ip6}});
    routes.push_back({{"dst", "::/0"}, {"gw", n.gateway_ip6}});
  }
  nlohmann::json config = {
      {"cniVersion", "1.0.0"},
      {"name", "nodemesh-e2e"},
      {"type", "bridge"},
      {"bridge", "cni0"},
      {"isGateway", true},
      {"ipMasq", false},  // no iptables: traffic stays inside our namespaces anyway
      {"hairpinMode", true},
      {"ipam", {{"type", "static"}, {"addresses", addresses}, {"routes", routes}}}};
  state.cni_config = config.dump();

  PodState& pod = pods_.emplace(name, std::move(state)).first->second;
  pod_order_.push_back(name);
  ip({"netns", "add", pod.info.netns_name});
  if (options_.dual_stack) {
    // eth0 is created inside the pod's netns by the plugin: it takes the default (no DAD).
    writeSysctl(pod.info.netns_path, "net/ipv6/conf/default/accept_dad", "0");
  }
  pod.cni_added = true;  // DEL must run even after a partial ADD (CNI spec: DEL is tolerant)
  for (bool loopback : {true, false}) {
    CommandResult r = cni(pod, "ADD", loopback);
    if (!r.ok()) throw HarnessError("CNI ADD for pod " + name + ": " + r.describe());
  }
  return pod.info;
}

// Runs a CNI plugin the way a container runtime does: in the host (here: node) network
// namespace, with the CNI_* variables and the network config on stdin.
CommandResult SimCluster::cni(const PodState& pod, const std::string& command, bool loopback) {
  CommandSpec spec;
  spec.netns_path = nodes_.at(pod.info.node).netns_path;
  spec.argv = {std::string(kCniBinDir) + (loopback ? "/loopback" : "/bridge")};
  spec.env = {"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + pod.info.netns_name,
              "CNI_NETNS=" + pod.info.netns_path,
              std::string("CNI_IFNAME=") + (loopback ? "lo" : "eth0"),
              std::string("CNI_PATH=") + kCniBinDir};
  spec.stdin_data =
      loopback ? R"({"cniVersion":"1.0.0","name":"lo","type":"loopback"})" : pod.cni_config;
  spec.timeout = seconds(20);
  return runCommand(spec);
}

void SimCluster::deletePod(PodState& pod, std::vector<std::string>& problems) {
  if (pod.cni_added && exists(pod.info.netns_path) && nodes_.count(pod.info.node) &&
      exists(nodes_.at(pod.info.node).netns_path)) {
    for (bool loopback : {false, true}) {
      try {
        CommandResult r = cni(pod, "DEL", loopback);
        if (!r.ok()) problems.push_back("CNI DEL for pod " + pod.info.name + ": " + r.describe());
      } catch (const std::exception& e) {
        problems.emplace_back(e.what());
      }
    }
  }
  pod.cni_added = false;
  deleteNetns(pod.info.netns_name, problems);
}

void SimCluster::removePod(const std::string& name) {
  auto it = pods_.find(name);
  if (it == pods_.end()) throw HarnessError("no pod " + name);
  for (auto& entry : processes_) {
    if (entry.pod == name) entry.process->kill();
  }
  std::vector<std::string> problems;
  deletePod(it->second, problems);
  pods_.erase(it);
  pod_order_.erase(std::remove(pod_order_.begin(), pod_order_.end(), name), pod_order_.end());
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
    throw HarnessError("removePod " + name + ": " + all);
  }
}

std::string SimCluster::createCgroup(const std::string& relative) {
  if (cgroup_base_.empty()) throw HarnessError("the cluster has no cgroup base");
  if (relative.empty() || relative.front() == '/' || relative.find("..") != std::string::npos) {
    throw HarnessError("invalid relative cgroup path '" + relative + "'");
  }
  std::string path = cgroup_base_;
  std::stringstream parts(relative);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    path += "/" + part;
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      throw HarnessError(errnoText("mkdir " + path));
    }
  }
  return path;
}

const std::string& SimCluster::bpffsDir() {
  if (!bpffs_dir_.empty()) return bpffs_dir_;
  if (auto st = ensureBpffsMounted(); !st) throw HarnessError(st.error().message);
  std::string dir = std::string(kBpffsRoot) + "/" + prefix_;
  bpffs_dir_ = dir;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw HarnessError(errnoText("mkdir " + dir));
  }
  return bpffs_dir_;
}

std::string SimCluster::writeFile(const std::string& name, const std::string& content) {
  if (name.find('/') != std::string::npos) throw HarnessError("writeFile: no '/' in names");
  std::string path = work_dir_ + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.flush();
  if (!out) throw HarnessError(errnoText("write " + path));
  return path;
}
}  // namespace nodemesh::sim
