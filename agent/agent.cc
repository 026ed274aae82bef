#include "agent/agent.h"

#include <algorithm>

#include <spdlog/spdlog.h>

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

CaptureListenerFds captureFds(const tunnel::PodListenerFds& l) {
  return {l.outbound_v4, l.outbound_v6, l.inbound_v4, l.inbound_v6, l.hbone_v4, l.hbone_v6};
}

}  // namespace

Agent::Agent(AgentOptions options, PodSource& pods, CaptureControl& capture, tunnel::Tunnel& tunnel,
             const SteadyClock& clock)
    : options_(std::move(options)),
      pods_(pods),
      capture_(capture),
      tunnel_(tunnel),
      clock_(clock) {}

Agent::~Agent() {
  unenrollAll();
}

void Agent::setSnapshot(model::SnapshotPtr snapshot) {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = std::move(snapshot);
  snapshot_changed_.store(true);
}

bool Agent::scanDue(bool pods_changed) const {
  return !reconciled_once_ || pending_ || pods_changed || snapshot_changed_.load() ||
         clock_.now() - last_pass_ >= options_.idle_pass_interval;
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
  // The workloads this agent captures: in the mesh (model::inMesh), scheduled here, by address.
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
    for (const auto& [id, pod] : enrolled_) enrolled_uids.insert(pod.workload_uid);
    for (const auto& [ip, w] : wanted) pending = pending || !enrolled_uids.count(w->uid);
  }

  last_pass_ = clock_.now();
  pending_ = pending;
  const std::vector<PodNetns> listed = pods_.list(pending);

  // Namespaces new and gone since the last pass.
  std::set<uint64_t> present;
  for (const PodNetns& p : listed) {
    present.insert(p.id);
    if (netns_.count(p.id)) continue;
    auto opened = pods_.open(p);
    if (!opened) continue;  // raced with its removal
    Netns ns;
    ns.source = p;
    ns.fd = std::move(opened->fd);
    ns.cookie = opened->cookie;
    netns_.emplace(p.id, std::move(ns));
  }
  for (auto it = netns_.begin(); it != netns_.end();) {
    if (present.count(it->first)) {
      ++it;
      continue;
    }
    unenroll(it->first);
    it = netns_.erase(it);  // closes our fd: the kernel can free the namespace
  }

  for (auto& [id, ns] : netns_) {
    bool is_enrolled;
    {
      std::lock_guard<std::mutex> lock(enrolled_mu_);
      is_enrolled = enrolled_.count(id) > 0;
    }
    if (!is_enrolled && !pending) continue;
    if (!is_enrolled || ns.missing_addresses) {
      // Addresses appear after the namespace (the CNI plugin runs later): look again each pass.
      auto addrs = pods_.addresses(ns.source, ns.fd.get());
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
                       ns.source.path, match->uid, it->second->uid);
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
      if (is_enrolled) current = enrolled_.at(id);
    }
    if (is_enrolled && (!match || match->uid != current.workload_uid || ips != current.ips)) {
      unenroll(id);
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
                       ns.source.path, match->uid);
        }
        ns.warned_conflict = true;
        continue;
      }
      ns.missing_addresses = ips.size() < match->workload_ips.size();
      enroll(id, ns, *match, ips);
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

void Agent::enroll(uint64_t key, Netns& ns, const model::Workload& workload,
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
  if (auto st = capture_.enrollPod(ns.cookie, ns.fd.get(), ips, captureFds(*listeners)); !st) {
    if (!ns.warned) spdlog::error("enroll {}: {}", name, st.error().message);
    ns.warned = true;
    (void)capture_.unenrollPod(ns.cookie, ips);
    tunnel_.removePod(ns.cookie);
    return;
  }
  ns.warned = false;
  EnrolledPod pod{ns.cookie, ns.source.path, workload.uid, name, ips};
  {
    std::lock_guard<std::mutex> lock(enrolled_mu_);
    enrolled_[key] = pod;
  }
  spdlog::info("enrolled pod {} (netns {}, cookie {}, ips {})", name, ns.source.path, ns.cookie,
               joinIps(ips));
}

void Agent::unenroll(uint64_t id) {
  EnrolledPod pod;
  {
    std::lock_guard<std::mutex> lock(enrolled_mu_);
    auto it = enrolled_.find(id);
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
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lock(enrolled_mu_);
    for (const auto& [id, pod] : enrolled_) ids.push_back(id);
  }
  for (uint64_t id : ids) unenroll(id);
}

void Agent::leaveEnrolled() {
  std::lock_guard<std::mutex> lock(enrolled_mu_);
  enrolled_.clear();
}

std::vector<EnrolledPod> Agent::enrolledPods() const {
  std::lock_guard<std::mutex> lock(enrolled_mu_);
  std::vector<EnrolledPod> out;
  for (const auto& [id, pod] : enrolled_) out.push_back(pod);
  return out;
}

}  // namespace nodemesh::agent
