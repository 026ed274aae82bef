#include "k8s/membership.h"

#include <algorithm>

namespace nodemesh::k8s {
namespace {

bool hasLabel(const ObjectMeta& meta, std::string_view key, std::string_view value) {
  auto it = meta.labels.find(std::string(key));
  return it != meta.labels.end() && it->second == value;
}

}  // namespace

Membership podMembership(const Pod& pod, const Namespace* ns, const MembershipOptions& options) {
  const std::string& pod_ns = pod.metadata.namespace_name;
  if (std::find(options.excluded_namespaces.begin(), options.excluded_namespaces.end(), pod_ns) !=
      options.excluded_namespaces.end()) {
    return {false, MembershipReason::kExcludedNamespace};
  }
  if (pod.host_network) return {false, MembershipReason::kHostNetwork};
  if (pod.metadata.annotations.contains(std::string(kSidecarStatusAnnotation))) {
    return {false, MembershipReason::kSidecar};
  }
  if (hasLabel(pod.metadata, kDataplaneModeLabel, kDataplaneModeNone)) {
    return {false, MembershipReason::kPodOptedOut};
  }
  if (hasLabel(pod.metadata, kDataplaneModeLabel, kDataplaneModeAmbient)) {
    return {true, MembershipReason::kPodOptedIn};
  }
  if (ns != nullptr && hasLabel(ns->metadata, kDataplaneModeLabel, kDataplaneModeAmbient)) {
    return {true, MembershipReason::kNamespaceOptedIn};
  }
  return {false, MembershipReason::kNotOptedIn};
}

std::string describe(MembershipReason reason) {
  switch (reason) {
    case MembershipReason::kExcludedNamespace:
      return "the pod's namespace is excluded";
    case MembershipReason::kHostNetwork:
      return "the pod uses the host network";
    case MembershipReason::kSidecar:
      return "the pod has an Istio sidecar (annotation sidecar.istio.io/status)";
    case MembershipReason::kPodOptedOut:
      return "pod label istio.io/dataplane-mode=none";
    case MembershipReason::kPodOptedIn:
      return "pod label istio.io/dataplane-mode=ambient";
    case MembershipReason::kNamespaceOptedIn:
      return "namespace label istio.io/dataplane-mode=ambient";
    case MembershipReason::kNotOptedIn:
      return "neither the pod nor its namespace has istio.io/dataplane-mode=ambient";
  }
  return "unknown";
}

}  // namespace nodemesh::k8s
