// SimCluster: teardown on every path, sweeping what dead runs left behind, and finding leftovers.

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
#include <functional>
#include <regex>
#include <sstream>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/cgroup.h"
#include "common/ip_address.h"
#include "common/netns.h"
#include "sim/privileged.h"
#include "sim/sim_cluster_internal.h"

namespace nodemesh::sim {

namespace cluster_internal {

void deleteNetns(const std::string& name, std::vector<std::string>& problems) {
  std::string path = std::string(kNetnsDir) + "/" + name;
  if (!exists(path)) return;
  CommandSpec spec;
  spec.argv = {"ip", "netns", "delete", name};
  CommandResult r = runCommand(spec);
  if (r.ok()) return;
  // What `ip netns delete` does, done by hand.
  ::umount2(path.c_str(), MNT_DETACH);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    problems.push_back(r.describe() + "; " + errnoText("unlink " + path));
  }
}

// A zombie counts as dead: a killed test runner stays one until its parent reaps it, and
// everything it created is just as orphaned as after the reap.
bool pidAlive(pid_t pid) {
  if (pid == ::getpid()) return true;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');  // comm may contain spaces and parentheses
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace cluster_internal

namespace {

using cluster_internal::deleteNetns;
using cluster_internal::errnoText;
using cluster_internal::exists;
using cluster_internal::kBpffsRoot;
using cluster_internal::kNetnsDir;
using cluster_internal::pidAlive;
using cluster_internal::tempRoot;
using cluster_internal::writeString;

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kCleanupTimeout = seconds(5);

// Every object a cluster creates carries this: nmt<pid>x<counter>...
const std::regex& staleNamePattern() {
  static const std::regex kPattern("^nmt([0-9]+)x.*");
  return kPattern;
}

std::optional<pid_t> embeddedPid(const std::string& name) {
  std::smatch m;
  if (!std::regex_match(name, m, staleNamePattern())) return std::nullopt;
  try {
    return static_cast<pid_t>(std::stol(m[1].str()));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// All cgroup directories at and below root, deepest first.
std::vector<std::string> cgroupTreeBottomUp(const std::string& root) {
  std::vector<std::string> dirs;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return dirs;
  dirs.push_back(root);
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) dirs.push_back(it->path().string());
  }
  std::sort(dirs.begin(), dirs.end(), [](const std::string& a, const std::string& b) {
    return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
  });
  return dirs;
}

bool cgroupPopulated(const std::string& cgroup) {
  std::ifstream in(cgroup + "/cgroup.events");
  std::string key;
  std::string value;
  while (in >> key >> value) {
    if (key == "populated") return value != "0";
  }
  return false;
}

// Kills every process in the cgroup tree: cgroup.kill (Linux 5.14+) in one write, else SIGKILL
// to each pid listed in cgroup.procs until the tree is empty.
void killCgroupTree(const std::string& root, std::vector<std::string>& problems) {
  if (!exists(root)) return;
  bool have_kill = writeString(root + "/cgroup.kill", "1");
  bool empty = waitFor(
      [&] {
        if (!cgroupPopulated(root)) return true;
        if (!have_kill) {
          for (const auto& dir : cgroupTreeBottomUp(root)) {
            std::ifstream procs(dir + "/cgroup.procs");
            pid_t pid;
            while (procs >> pid) ::kill(pid, SIGKILL);
          }
        }
        return false;
      },
      kCleanupTimeout);
  if (!empty) problems.push_back("processes in " + root + " did not die");
}

void removeCgroupTree(const std::string& root, std::vector<std::string>& problems) {
  for (const auto& dir : cgroupTreeBottomUp(root)) {
    bool removed = waitFor([&] { return ::rmdir(dir.c_str()) == 0 || errno == ENOENT; },
                           kCleanupTimeout, milliseconds(50));
    if (!removed) problems.push_back(errnoText("rmdir " + dir));
  }
}

void removeTree(const std::string& path, std::vector<std::string>& problems) {
  if (path.empty() || !exists(path)) return;
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) problems.push_back("remove " + path + ": " + ec.message());
}

// Entries of dir whose name starts with the stale-name pattern and whose pid is dead.
std::vector<std::string> staleEntries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    auto pid = embeddedPid(name);
    if (pid && !pidAlive(*pid)) out.push_back(name);
  }
  return out;
}

// The agents' upgrade handoff sockets: by default /run/nodemesh/<--bpffs with '/' as
// '-'>.handoff (agent/main.cc), so for this cluster's pins "sys-fs-bpf-<prefix>-<node>.handoff".
// An agent removes its own on a clean stop; one killed (as teardown kills) leaves it.
constexpr const char* kHandoffDir = "/run/nodemesh";
constexpr std::string_view kHandoffPrefix = "sys-fs-bpf-";

// Removes the handoff sockets whose cluster prefix satisfies `match`, then the directory if
// nothing else is in it.
void removeHandoffSockets(const std::function<bool(const std::string&)>& match,
                          std::vector<std::string>& problems) {
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (auto it = fs::directory_iterator(kHandoffDir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(kHandoffPrefix, 0) != 0) continue;
    std::string rest = name.substr(kHandoffPrefix.size());
    const std::string cluster = rest.substr(0, rest.find_first_of("-."));
    if (match(cluster)) doomed.push_back(it->path());
  }
  for (const auto& path : doomed) {
    if (!fs::remove(path, ec) && ec)
      problems.push_back("remove " + path.string() + ": " + ec.message());
  }
  fs::remove(kHandoffDir, ec);  // only when empty; an error (not empty, absent) is fine
}

void reportProblems(const std::string& what, const std::vector<std::string>& problems) {
  for (const auto& p : problems)
    std::fprintf(stderr, "[sim_cluster] %s: %s\n", what.c_str(), p.c_str());
}

std::function<bool()>& failureProbe() {
  static std::function<bool()> probe = [] { return false; };
  return probe;
}

}  // namespace

void setFailureProbe(std::function<bool()> probe) {
  failureProbe() = std::move(probe);
}

void SimCluster::teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  std::vector<std::string> problems;
  try {
    if (failureProbe()()) dumpProcessOutput();

    // 1. Processes: the tracked ones first (reaped, so their pids are not left as zombies),
    //    then anything they started, through the cgroups.
    for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) {
      if (!it->process->kill()) {
        problems.push_back(it->process->name() + " (pid " + std::to_string(it->process->pid()) +
                           ") did not die");
      }
    }
    if (!cgroup_base_.empty()) killCgroupTree(cgroup_base_, problems);

    // 2. Pods (CNI DEL while the node still exists), nodes, the underlay.
    for (auto it = pod_order_.rbegin(); it != pod_order_.rend(); ++it) {
      deletePod(pods_.at(*it), problems);
    }
    pods_.clear();
    pod_order_.clear();
    for (auto it = node_order_.rbegin(); it != node_order_.rend(); ++it) {
      deleteNetns(nodes_.at(*it).netns_name, problems);
    }
    if (underlay_created_) deleteNetns(underlay_netns_, problems);
    underlay_created_ = false;

    // 3. Pins (links pinned here would keep programs attached), cgroups, files.
    removeTree(bpffs_dir_, problems);
    removeHandoffSockets([this](const std::string& cluster) { return cluster == prefix_; },
                         problems);
    if (!cgroup_base_.empty()) removeCgroupTree(cgroup_base_, problems);
    if (!options_.keep_logs) {
      removeTree(work_dir_, problems);
    } else if (!work_dir_.empty()) {
      std::fprintf(stderr, "[sim_cluster] logs kept in %s\n", work_dir_.c_str());
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("teardown: ") + e.what());
  }
  reportProblems("teardown " + prefix_, problems);
}

void SimCluster::sweepStale() {
  std::vector<std::string> problems;
  try {
    auto root = findCgroup2Root();
    std::vector<std::string> cgroups = root ? staleEntries(*root) : std::vector<std::string>{};
    for (const auto& name : cgroups) {
      std::fprintf(stderr, "[sim_cluster] sweeping stale cgroup %s\n", name.c_str());
      killCgroupTree(*root + "/" + name, problems);
    }
    for (const auto& name : staleEntries(kNetnsDir)) {
      std::fprintf(stderr, "[sim_cluster] sweeping stale netns %s\n", name.c_str());
      deleteNetns(name, problems);
    }
    for (const auto& name : staleEntries(kBpffsRoot)) {
      std::fprintf(stderr, "[sim_cluster] sweeping stale bpffs dir %s\n", name.c_str());
      removeTree(std::string(kBpffsRoot) + "/" + name, problems);
    }
    removeHandoffSockets(
        [](const std::string& cluster) {
          auto pid = embeddedPid(cluster);
          return pid && !pidAlive(*pid);
        },
        problems);
    for (const auto& name : cgroups) removeCgroupTree(*root + "/" + name, problems);
    for (const auto& name : staleEntries(tempRoot())) {
      std::fprintf(stderr, "[sim_cluster] sweeping stale work dir %s\n", name.c_str());
      removeTree(tempRoot() + "/" + name, problems);
    }
  } catch (const std::exception& e) {
    problems.emplace_back(e.what());
  }
  reportProblems("sweep", problems);
}

std::vector<std::string> SimCluster::findLeftovers(const std::string& prefix) {
  std::vector<std::string> left;
  std::error_code ec;
  for (auto it = fs::directory_iterator(kNetnsDir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind(prefix + "-", 0) == 0) left.push_back("netns " + name);
  }
  if (auto root = findCgroup2Root(); root && exists(*root + "/" + prefix)) {
    left.push_back("cgroup " + *root + "/" + prefix);
  }
  if (exists(std::string(kBpffsRoot) + "/" + prefix)) {
    left.push_back("bpffs " + std::string(kBpffsRoot) + "/" + prefix);
  }
  if (exists(tempRoot() + "/" + prefix)) left.push_back("work dir " + tempRoot() + "/" + prefix);
  ec.clear();
  for (auto it = fs::directory_iterator(kHandoffDir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(std::string(kHandoffPrefix) + prefix + "-", 0) == 0) {
      left.push_back("handoff socket " + it->path().string());
    }
  }
  return left;
}
}  // namespace nodemesh::sim
