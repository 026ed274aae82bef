#include "agent/kube_pods.h"

#include <algorithm>

#include <fmt/format.h>

#include "k8s/annotate.h"

namespace nodemesh::agent {

namespace {

std::string podKey(const std::string& namespace_name, const std::string& name) {
  return namespace_name + "/" + name;
}

std::string label(const k8s::ObjectMeta& meta, std::string_view key) {
  auto it = meta.labels.find(std::string(key));
  return it == meta.labels.end() ? std::string() : it->second;
}

// Istio's canonical service name and revision labels, then the common fallbacks (istio's
// labels.CanonicalService).
std::string canonicalName(const k8s::Pod& pod) {
  for (const char* key : {"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"}) {
    if (auto v = label(pod.metadata, key); !v.empty()) return v;
  }
  return pod.metadata.name;
}

std::string canonicalRevision(const k8s::Pod& pod) {
  for (const char* key :
       {"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"}) {
    if (auto v = label(pod.metadata, key); !v.empty()) return v;
  }
  return "latest";
}

bool finished(const k8s::Pod& pod) {
  return pod.phase == "Succeeded" || pod.phase == "Failed";
}

bool sameMeshView(const k8s::Pod& a, const k8s::Pod& b) {
  return a.metadata.labels == b.metadata.labels &&
         a.metadata.annotations == b.metadata.annotations && a.node_name == b.node_name &&
         a.host_network == b.host_network && a.service_account_name == b.service_account_name &&
         a.phase == b.phase && a.pod_ips == b.pod_ips && a.metadata.uid == b.metadata.uid;
}

}  // namespace

std::vector<IpAddress> cniAddresses(const std::vector<std::string>& cidrs) {
  std::vector<IpAddress> out;
  for (const std::string& text : cidrs) {
    // The interface's address, not its network: "10.244.1.5/24" is 10.244.1.5.
    auto ip = IpAddress::parse(text.substr(0, text.find('/')));
    if (!ip) continue;
    if (std::find(out.begin(), out.end(), *ip) == out.end()) out.push_back(*ip);
  }
  return out;
}

KubePods::KubePods(KubePodsOptions options) : options_(std::move(options)) {}

std::string KubePods::workloadUid(const std::string& namespace_name,
                                  const std::string& name) const {
  return fmt::format("{}//Pod/{}/{}", options_.cluster_id, namespace_name, name);
}

bool KubePods::upsertPod(const k8s::Pod& pod) {
  if (!pod.node_name.empty() && pod.node_name != options_.node) {
    return removePod(pod.metadata.namespace_name, pod.metadata.name);
  }
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = podKey(pod.metadata.namespace_name, pod.metadata.name);
  auto it = pods_.find(key);
  if (it != pods_.end() && sameMeshView(it->second, pod)) {
    it->second = pod;  // a newer resourceVersion of the same view
    return false;
  }
  // A pod recreated under the same name (a StatefulSet's) is a new pod: what the CNI plugin said
  // about the old one no longer applies.
  if (it != pods_.end() && it->second.metadata.uid != pod.metadata.uid) cni_.erase(key);
  pods_[key] = pod;
  return true;
}

bool KubePods::removePod(const std::string& namespace_name, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = podKey(namespace_name, name);
  const bool removed = pods_.erase(key) > 0;
  return cni_.erase(key) > 0 || removed;
}

bool KubePods::upsertNamespace(const k8s::Namespace& ns) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = namespaces_.find(ns.metadata.name);
  const bool changed = it == namespaces_.end() || it->second.metadata.labels != ns.metadata.labels;
  namespaces_[ns.metadata.name] = ns;
  return changed;
}

bool KubePods::removeNamespace(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return namespaces_.erase(name) > 0;
}

void KubePods::setPodsSynced() {
  std::lock_guard<std::mutex> lock(mu_);
  pods_synced_ = true;
}

void KubePods::setNamespacesSynced() {
  std::lock_guard<std::mutex> lock(mu_);
  namespaces_synced_ = true;
}

bool KubePods::synced() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pods_synced_ && namespaces_synced_;
}

k8s::Membership KubePods::membershipLocked(const k8s::Pod& pod) const {
  auto ns = namespaces_.find(pod.metadata.namespace_name);
  return k8s::podMembership(pod, ns == namespaces_.end() ? nullptr : &ns->second,
                            options_.membership);
}

std::optional<model::Workload> KubePods::workloadLocked(const k8s::Pod& pod) const {
  if (finished(pod) || !membershipLocked(pod).enrolled) return std::nullopt;
  const std::string key = podKey(pod.metadata.namespace_name, pod.metadata.name);
  std::vector<IpAddress> ips = pod.pod_ips;
  if (ips.empty()) {
    auto cni = cni_.find(key);
    if (cni != cni_.end()) ips = cni->second.ips;
  }
  if (ips.empty()) return std::nullopt;  // nothing to match a network namespace with yet
  model::Workload w;
  w.uid = workloadUid(pod.metadata.namespace_name, pod.metadata.name);
  w.name = pod.metadata.name;
  w.namespace_name = pod.metadata.namespace_name;
  w.service_account = pod.service_account_name.empty() ? "default" : pod.service_account_name;
  w.trust_domain = options_.trust_domain;
  w.workload_ips = std::move(ips);
  w.node = options_.node;
  w.cluster_id = options_.cluster_id;
  w.protocol = model::Protocol::Hbone;
  w.canonical_name = canonicalName(pod);
  w.canonical_revision = canonicalRevision(pod);
  w.workload_name = w.canonical_name;
  w.workload_type = "pod";
  return w;
}

CniDecision KubePods::cniAdd(const cni::CniRequest& request, const k8s::Pod* fetched) {
  std::lock_guard<std::mutex> lock(mu_);
  CniDecision decision;
  if (request.pod_namespace.empty() || request.pod_name.empty()) {
    decision.reason = "the runtime did not name the pod (no K8S_POD_NAMESPACE/K8S_POD_NAME)";
    return decision;
  }
  const std::string key = podKey(request.pod_namespace, request.pod_name);
  if (fetched) pods_[key] = *fetched;
  auto pod = pods_.find(key);
  if (pod == pods_.end()) {
    decision.reason = "the pod is not known to the API server";
    return decision;
  }
  if (!request.pod_uid.empty() && !pod->second.metadata.uid.empty() &&
      request.pod_uid != pod->second.metadata.uid) {
    decision.reason = fmt::format("the API knows pod {} with uid {}, the runtime set up uid {}",
                                  key, pod->second.metadata.uid, request.pod_uid);
    return decision;
  }
  cni_[key] = CniRecord{request.container_id, request.netns, cniAddresses(request.ips)};
  const k8s::Membership m = membershipLocked(pod->second);
  decision.reason = k8s::describe(m.reason);
  if (!m.enrolled) return decision;
  decision.workload = workloadLocked(pod->second);
  if (!decision.workload) {
    decision.reason += "; but the chain's result has no address to find the pod by";
    return decision;
  }
  decision.enroll = true;
  return decision;
}

bool KubePods::knowsPod(const std::string& namespace_name, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return pods_.count(podKey(namespace_name, name)) > 0;
}

bool KubePods::cniDel(const cni::CniRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!request.pod_namespace.empty() && !request.pod_name.empty()) {
    auto it = cni_.find(podKey(request.pod_namespace, request.pod_name));
    if (it != cni_.end() &&
        (request.container_id.empty() || it->second.container_id == request.container_id)) {
      cni_.erase(it);
      return true;
    }
    return false;
  }
  for (auto it = cni_.begin(); it != cni_.end(); ++it) {
    if (!request.container_id.empty() && it->second.container_id == request.container_id) {
      cni_.erase(it);
      return true;
    }
  }
  return false;
}

std::vector<model::Workload> KubePods::workloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<model::Workload> out;
  for (const auto& [key, pod] : pods_) {
    if (auto w = workloadLocked(pod)) out.push_back(std::move(*w));
  }
  return out;
}

cni::CniState KubePods::cniState() const {
  std::lock_guard<std::mutex> lock(mu_);
  cni::CniState state;
  const auto& excluded = options_.membership.excluded_namespaces;
  for (const auto& [name, ns] : namespaces_) {
    if (std::find(excluded.begin(), excluded.end(), name) != excluded.end()) continue;
    if (label(ns.metadata, k8s::kDataplaneModeLabel) == k8s::kDataplaneModeAmbient) {
      state.ambient_namespaces.push_back(name);
    }
  }
  for (const auto& [key, pod] : pods_) {
    const std::string mode = label(pod.metadata, k8s::kDataplaneModeLabel);
    if (mode == k8s::kDataplaneModeNone) state.opt_out_pods.push_back(key);
    if (mode == k8s::kDataplaneModeAmbient) state.ambient_pods.push_back(key);
  }
  return state;
}

std::vector<KubePodRef> KubePods::pods() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<KubePodRef> out;
  for (const auto& [key, pod] : pods_) {
    auto a = pod.metadata.annotations.find(std::string(k8s::kRedirectionAnnotation));
    out.push_back({pod.metadata.namespace_name, pod.metadata.name,
                   workloadUid(pod.metadata.namespace_name, pod.metadata.name),
                   a != pod.metadata.annotations.end() && a->second == k8s::kRedirectionEnabled});
  }
  return out;
}

std::optional<k8s::Membership> KubePods::membership(const std::string& namespace_name,
                                                    const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto pod = pods_.find(podKey(namespace_name, name));
  if (pod == pods_.end()) return std::nullopt;
  return membershipLocked(pod->second);
}

}  // namespace nodemesh::agent
