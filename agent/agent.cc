#include "agent/agent.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "agent/pod_discovery.h"
#include "common/netns.h"
#include "model/mesh.h"

namespace nodemesh::agent {

namespace {

std::string joinIps(const std::vector<IpAddress>& ips) {
  std::string out;
  for (const auto& ip : ips) {
    if (!out.empty()) out += ',';
    out += ip.toString();
  }
  return out;
}

}  // namespace

Agent::Agent(AgentOptions options, CapturePrograms& capture, tunnel::Tunnel& tunnel)
    : options_(std::move(options)), capture_(capture), tunnel_(tunnel) {}

void Agent::setSnapshot(model::SnapshotPtr snapshot) {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = std::move(snapshot);
  snapshot_changed_.store(true);
}

bool Agent::scanDue(std::chrono::steady_clock::time_point now, bool netns_changed) const {
  return !reconciled_once_ || pending_ || netns_changed || snapshot_changed_.load() ||
         now - last_pass_ >= options_.process_scan_interval;
}

void Agent::reconcile() {
  passes_.fetch_add(1, std::memory_order_relaxed);
  // Cleared before the snapshot is read: a change that lands during the pass calls for another.
  snapshot_changed_.store(false);
  model::SnapshotPtr snapshot;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot = snapshot_;
  }
  // The workloads this agent captures: HBONE, scheduled here, by address.
  std::map<IpAddress, const model::Workload*> wanted;
  if (snapshot) {
    for (const model::Workload* w : snapshot->workloadsOnNode(options_.node)) {
      if (!model::inMesh(*w)) continue;
      for (const IpAddress& ip : w->workload_ips) wanted[ip] = w;
    }
  }

  // Looking into namespaces costs a netlink dump each: only do it while some wanted workload
  // has no pod yet. In steady state (everything enrolled) a pass is a readdir and a stat per
  // named namespace, and now and then a readlink per process.
  bool pending = false;
  {
    std::lock_guard<std::mutex> lock(enrolled_mu_);
    std::set<std::string> enrolled_uids;
    for (const auto& [inode, pod] : enrolled_) enrolled_uids.insert(pod.workload_uid);
    for (const auto& [ip, w] : wanted) pending = pending || !enrolled_uids.count(w->uid);
  }

  // The process pass reads a link per process on the machine (hundreds of microseconds on
  // a node; run every 200 ms it showed up in the tunnel's p99.9 latency), so it runs every
  // process_scan_interval, and at once while a workload waits for its pod.
  const auto now = std::chrono::steady_clock::now();
  bool scan_processes =
      pending || !reconciled_once_ || now - last_process_scan_ >= options_.process_scan_interval;
  auto candidates = listNetns(options_.netns_dir, options_.proc_dir, scan_processes);
  if (!scan_processes) {
    // A name that disappeared may leave a namespace some process still uses: look before
    // unenrolling it.
    std::set<uint64_t> named;
    for (const auto& c : candidates) named.insert(c.inode);
    for (const auto& [inode, ns] : netns_) {
      scan_processes = scan_processes || (ns.named && !named.count(inode));
    }
    if (scan_processes) candidates = listNetns(options_.netns_dir, options_.proc_dir, true);
  }
  if (scan_processes) last_process_scan_ = now;
  last_pass_ = now;
  pending_ = pending;

  // Namespaces gone since the last pass.
  std::set<uint64_t> present;
  for (const auto& c : candidates) {
    present.insert(c.inode);
    if (netns_.count(c.inode)) continue;
    auto fd = openNetns(c.path);
    if (!fd) continue;  // raced with its removal
    auto cookie = netnsCookie(fd->get());
    if (!cookie) {
      spdlog::warn("netns {}: {}", c.path, cookie.error().message);
      continue;
    }
    Netns ns;
    ns.fd = std::move(*fd);
    ns.path = c.path;
    ns.cookie = *cookie;
    ns.named = c.named;
    netns_.emplace(c.inode, std::move(ns));
  }
  for (auto it = netns_.begin(); it != netns_.end();) {
    // Without the process pass, namespaces found through a process were not looked for.
    if (present.count(it->first) || (!scan_processes && !it->second.named)) {
      ++it;
      continue;
    }
    unenroll(it->first);
    it = netns_.erase(it);  // closes our fd: the kernel can free the namespace
  }

  for (auto& [inode, ns] : netns_) {
    bool is_enrolled;
    {
      std::lock_guard<std::mutex> lock(enrolled_mu_);
      is_enrolled = enrolled_.count(inode) > 0;
    }
    if (!is_enrolled && !pending) continue;
    if (!is_enrolled) {
      // Addresses appear after the namespace (the CNI plugin runs later): look again each pass.
      auto addrs = netnsAddresses(ns.fd.get());
      if (!addrs) continue;
      ns.addresses = std::move(*addrs);
    }
    const model::Workload* match = nullptr;
    std::vector<IpAddress> ips;
    for (const IpAddress& ip : ns.addresses) {
      auto it = wanted.find(ip);
      if (it == wanted.end()) continue;
      if (match && match != it->second) {
        if (!ns.warned_conflict) {
          spdlog::warn("netns {} holds addresses of two workloads ({} and {}); using the first",
                       ns.path, match->uid, it->second->uid);
        }
        ns.warned_conflict = true;
        continue;
      }
      match = it->second;
      ips.push_back(ip);
    }
    EnrolledPod current;
    {
      std::lock_guard<std::mutex> lock(enrolled_mu_);
      if (is_enrolled) current = enrolled_.at(inode);
    }
    if (is_enrolled && (!match || match->uid != current.workload_uid || ips != current.ips)) {
      unenroll(inode);
      is_enrolled = false;
    }
    if (match && !is_enrolled) {
      // Two namespaces claiming one workload's addresses cannot both be its pod: keep the one
      // enrolled first.
      bool taken = false;
      {
        std::lock_guard<std::mutex> lock(enrolled_mu_);
        for (const auto& [other, pod] : enrolled_) taken = taken || pod.workload_uid == match->uid;
      }
      if (taken) {
        if (!ns.warned_conflict) {
          spdlog::warn("netns {} also holds addresses of {}, already enrolled elsewhere; ignored",
                       ns.path, match->uid);
        }
        ns.warned_conflict = true;
        continue;
      }
      enroll(inode, ns, *match, ips);
    }
  }

  if (!reconciled_once_) {
    // After a restart: whatever an earlier run enrolled and is not back by now is gone.
    std::set<uint64_t> keep;
    for (const auto& pod : enrolledPods()) keep.insert(pod.netns_cookie);
    if (auto st = capture_.forgetPodsExcept(keep); !st) {
      spdlog::warn("cleaning up state of an earlier run: {}", st.error().message);
    }
    reconciled_once_ = true;
  }
}

void Agent::enroll(uint64_t inode, Netns& ns, const model::Workload& workload,
                   const std::vector<IpAddress>& ips) {
  std::string name = workload.namespace_name + "/" + workload.name;
  tunnel::PodSpec spec;
  spec.netns_cookie = ns.cookie;
  spec.netns_fd = ns.fd.get();
  spec.name = name;
  spec.ipv6 = std::any_of(ips.begin(), ips.end(), [](const IpAddress& ip) { return !ip.isV4(); });
  spec.ips = ips;
  auto id = identity::SpiffeId::create(workload.trust_domain, workload.namespace_name,
                                       workload.service_account);
  if (!id) {
    if (!ns.warned) spdlog::error("enroll {}: identity: {}", name, id.error().message);
    ns.warned = true;
    return;
  }
  spec.identity = *id;
  auto listeners = tunnel_.addPod(spec);
  if (!listeners) {
    if (!ns.warned) spdlog::error("enroll {}: {}", name, listeners.error().message);
    ns.warned = true;
    return;
  }
  if (auto st = capture_.enrollPod(ns.cookie, ns.fd.get(), ips, *listeners); !st) {
    if (!ns.warned) spdlog::error("enroll {}: {}", name, st.error().message);
    ns.warned = true;
    (void)capture_.unenrollPod(ns.cookie, ips);
    tunnel_.removePod(ns.cookie);
    return;
  }
  ns.warned = false;
  EnrolledPod pod{ns.cookie, ns.path, workload.uid, name, ips};
  {
    std::lock_guard<std::mutex> lock(enrolled_mu_);
    enrolled_[inode] = pod;
  }
  spdlog::info("enrolled pod {} (netns {}, cookie {}, ips {})", name, ns.path, ns.cookie,
               joinIps(ips));
}

void Agent::unenroll(uint64_t inode) {
  EnrolledPod pod;
  {
    std::lock_guard<std::mutex> lock(enrolled_mu_);
    auto it = enrolled_.find(inode);
    if (it == enrolled_.end()) return;
    pod = it->second;
    enrolled_.erase(it);
  }
  if (auto st = capture_.unenrollPod(pod.netns_cookie, pod.ips); !st) {
    spdlog::warn("unenroll {}: {}", pod.name, st.error().message);
  }
  tunnel_.removePod(pod.netns_cookie);
  spdlog::info("unenrolled pod {} (netns {}, cookie {})", pod.name, pod.netns_path,
               pod.netns_cookie);
}

void Agent::unenrollAll() {
  std::vector<uint64_t> inodes;
  {
    std::lock_guard<std::mutex> lock(enrolled_mu_);
    for (const auto& [inode, pod] : enrolled_) inodes.push_back(inode);
  }
  for (uint64_t inode : inodes) unenroll(inode);
}

std::vector<EnrolledPod> Agent::enrolledPods() const {
  std::lock_guard<std::mutex> lock(enrolled_mu_);
  std::vector<EnrolledPod> out;
  for (const auto& [inode, pod] : enrolled_) out.push_back(pod);
  return out;
}

}  // namespace nodemesh::agent
