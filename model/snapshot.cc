#include "model/snapshot.h"

namespace nodemesh::model {
namespace {

// ztunnel's tie-break when several workloads claim one address: pods are not spoofable by
// other resources, and an HBONE workload carries more mesh context than a TCP one. Pod uids
// are "<cluster>//Pod/<ns>/<name>" from istiod and "<cluster>//v1/Pod/<ns>/<name>" in ztunnel's
// examples.
int addressRank(const Workload& w) {
  bool is_pod = w.uid.find("/Pod/") != std::string::npos;
  bool is_hbone = w.protocol == Protocol::Hbone;
  return (is_pod ? 2 : 0) + (is_hbone ? 1 : 0);
}

std::string plural(size_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

}  // namespace

Snapshot::Snapshot(std::vector<Workload> workloads, std::vector<Service> services,
                   std::vector<Authorization> policies)
    : workloads_(std::move(workloads)),
      services_(std::move(services)),
      policies_(std::move(policies)) {
  for (size_t i = 0; i < workloads_.size(); ++i) {
    const Workload& w = workloads_[i];
    workload_by_uid_.emplace(w.uid, i);
    workload_by_name_.emplace(w.namespace_name + "/" + w.name, i);
    if (w.network_mode == NetworkMode::HostNetwork) continue;
    for (const IpAddress& ip : w.workload_ips) {
      auto [it, inserted] = workload_by_ip_.emplace(ip, i);
      if (!inserted && addressRank(w) > addressRank(workloads_[it->second])) it->second = i;
    }
  }
  for (size_t i = 0; i < services_.size(); ++i) {
    service_by_key_.emplace(services_[i].key(), i);
    for (const NetworkAddress& vip : services_[i].vips) service_by_vip_[vip.address] = i;
  }
  for (size_t i = 0; i < policies_.size(); ++i) policy_by_key_.emplace(policies_[i].key(), i);
}

std::shared_ptr<const Snapshot> Snapshot::create(std::vector<Workload> workloads,
                                                 std::vector<Service> services,
                                                 std::vector<Authorization> policies) {
  return std::make_shared<const Snapshot>(std::move(workloads), std::move(services),
                                          std::move(policies));
}

const Workload* Snapshot::workloadByUid(std::string_view uid) const {
  auto it = workload_by_uid_.find(uid);
  return it == workload_by_uid_.end() ? nullptr : &workloads_[it->second];
}

const Workload* Snapshot::workloadByName(std::string_view namespaced_name) const {
  auto it = workload_by_name_.find(namespaced_name);
  return it == workload_by_name_.end() ? nullptr : &workloads_[it->second];
}

const Workload* Snapshot::workloadByIp(const IpAddress& ip) const {
  auto it = workload_by_ip_.find(ip);
  return it == workload_by_ip_.end() ? nullptr : &workloads_[it->second];
}

std::vector<const Workload*> Snapshot::workloadsOnNode(std::string_view node) const {
  std::vector<const Workload*> out;
  for (const Workload& w : workloads_) {
    if (w.node == node) out.push_back(&w);
  }
  return out;
}

const Service* Snapshot::serviceByVip(const IpAddress& ip) const {
  auto it = service_by_vip_.find(ip);
  return it == service_by_vip_.end() ? nullptr : &services_[it->second];
}

const Service* Snapshot::serviceByKey(std::string_view key) const {
  auto it = service_by_key_.find(key);
  return it == service_by_key_.end() ? nullptr : &services_[it->second];
}

std::vector<Endpoint> Snapshot::endpoints(const Service& service) const {
  std::map<std::string, Endpoint> by_uid;
  for (const Endpoint& ep : service.endpoints) by_uid[ep.workload_uid] = ep;
  std::string key = service.key();
  for (const Workload& w : workloads_) {
    auto it = w.services.find(key);
    if (it == w.services.end()) continue;
    by_uid[w.uid] = Endpoint{w.uid, it->second, w.status};
  }
  std::vector<Endpoint> out;
  out.reserve(by_uid.size());
  for (auto& [uid, ep] : by_uid) out.push_back(std::move(ep));
  return out;
}

const Authorization* Snapshot::policy(std::string_view key) const {
  auto it = policy_by_key_.find(key);
  return it == policy_by_key_.end() ? nullptr : &policies_[it->second];
}

std::string Snapshot::summary() const {
  return plural(workloads_.size(), "workload", "workloads") + ", " +
         plural(services_.size(), "service", "services") + ", " +
         plural(policies_.size(), "policy", "policies");
}

}  // namespace nodemesh::model
