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

// Adds route `index` under the key of every Service its parentRefs name (once per service).
void indexRoute(const std::vector<ParentRef>& parents, const std::string& route_namespace,
                size_t index, const std::map<std::string, size_t, std::less<>>& service_by_name,
                const std::vector<Service>& services,
                std::map<std::string, std::vector<size_t>, std::less<>>& out) {
  for (const ParentRef& parent : parents) {
    if (!parent.isService()) continue;
    auto it =
        service_by_name.find(parent.namespace_name.value_or(route_namespace) + "/" + parent.name);
    if (it == service_by_name.end()) continue;
    std::vector<size_t>& routes = out[services[it->second].key()];
    if (routes.empty() || routes.back() != index) routes.push_back(index);
  }
}

}  // namespace

Snapshot::Snapshot(std::vector<Workload> workloads, std::vector<Service> services,
                   std::vector<Authorization> policies, std::vector<HttpRoute> http_routes,
                   std::vector<GrpcRoute> grpc_routes, std::vector<RateLimitPolicy> rate_limits,
                   std::vector<DestinationRule> destination_rules,
                   std::vector<RequestAuthentication> request_authentications)
    : workloads_(std::move(workloads)),
      services_(std::move(services)),
      policies_(std::move(policies)),
      http_routes_(std::move(http_routes)),
      grpc_routes_(std::move(grpc_routes)),
      rate_limits_(std::move(rate_limits)),
      destination_rules_(std::move(destination_rules)),
      request_authentications_(std::move(request_authentications)) {
  for (size_t i = 0; i < destination_rules_.size(); ++i) {
    destination_rule_by_host_.emplace(destination_rules_[i].service_host, i);
  }
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
    service_by_name_.emplace(services_[i].namespace_name + "/" + services_[i].name, i);
    for (const NetworkAddress& vip : services_[i].vips) service_by_vip_[vip.address] = i;
  }
  for (size_t i = 0; i < policies_.size(); ++i) policy_by_key_.emplace(policies_[i].key(), i);
  for (size_t i = 0; i < http_routes_.size(); ++i) {
    indexRoute(http_routes_[i].parent_refs, http_routes_[i].metadata.namespace_name, i,
               service_by_name_, services_, http_routes_by_service_);
  }
  for (size_t i = 0; i < grpc_routes_.size(); ++i) {
    indexRoute(grpc_routes_[i].parent_refs, grpc_routes_[i].metadata.namespace_name, i,
               service_by_name_, services_, grpc_routes_by_service_);
  }
}

std::shared_ptr<const Snapshot> Snapshot::create(
    std::vector<Workload> workloads, std::vector<Service> services,
    std::vector<Authorization> policies, std::vector<HttpRoute> http_routes,
    std::vector<GrpcRoute> grpc_routes, std::vector<RateLimitPolicy> rate_limits,
    std::vector<DestinationRule> destination_rules,
    std::vector<RequestAuthentication> request_authentications) {
  return std::make_shared<const Snapshot>(
      std::move(workloads), std::move(services), std::move(policies), std::move(http_routes),
      std::move(grpc_routes), std::move(rate_limits), std::move(destination_rules),
      std::move(request_authentications));
}

const DestinationRule* Snapshot::destinationRuleFor(const Service& service) const {
  auto it = destination_rule_by_host_.find(service.hostname);
  return it == destination_rule_by_host_.end() ? nullptr : &destination_rules_[it->second];
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

const Service* Snapshot::serviceByName(std::string_view namespaced_name) const {
  auto it = service_by_name_.find(namespaced_name);
  return it == service_by_name_.end() ? nullptr : &services_[it->second];
}

AttachedRoutes Snapshot::routesForService(std::string_view service_key) const {
  AttachedRoutes out;
  if (auto it = http_routes_by_service_.find(service_key); it != http_routes_by_service_.end()) {
    for (size_t i : it->second) out.http.push_back(&http_routes_[i]);
  }
  if (auto it = grpc_routes_by_service_.find(service_key); it != grpc_routes_by_service_.end()) {
    for (size_t i : it->second) out.grpc.push_back(&grpc_routes_[i]);
  }
  return out;
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
  std::string out = plural(workloads_.size(), "workload", "workloads") + ", " +
                    plural(services_.size(), "service", "services") + ", " +
                    plural(policies_.size(), "policy", "policies");
  size_t routes = http_routes_.size() + grpc_routes_.size();
  if (routes > 0) out += ", " + plural(routes, "route", "routes");
  if (!rate_limits_.empty()) {
    out += ", " + plural(rate_limits_.size(), "rate limit policy", "rate limit policies");
  }
  if (!destination_rules_.empty()) {
    out += ", " + plural(destination_rules_.size(), "destination rule", "destination rules");
  }
  if (!request_authentications_.empty()) {
    out += ", " + plural(request_authentications_.size(), "request authentication",
                         "request authentications");
  }
  return out;
}

}  // namespace nodemesh::model
