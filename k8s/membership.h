#pragma once

// Which pods are in the mesh: Istio ambient's rules (istio-cni's PodRedirectionEnabled, plus the
// namespaces its chart excludes by default), as one pure function that the agent's enrollment
// and the CLI's explanation both call.
//
// Precedence, first match decides (the verdict is the same in every order; the order only picks
// the reason that is reported, and follows Istio's: hard exclusions before labels):
//   1. the pod's namespace is excluded (kube-system by default)      -> out
//   2. the pod uses the host's network (spec.hostNetwork)            -> out (capturing it would
//      capture the node)
//   3. the pod has an Istio sidecar (annotation sidecar.istio.io/status) -> out (sidecar and
//      node proxy together are not supported, as in Istio)
//   4. pod label istio.io/dataplane-mode=none                       -> out, even in an ambient
//      namespace
//   5. pod label istio.io/dataplane-mode=ambient                    -> in, whatever the
//      namespace says (also in a namespace labelled =none: Istio only gives =none a meaning on
//      pods)
//   6. namespace label istio.io/dataplane-mode=ambient              -> in
//   7. otherwise                                                    -> out
// Values are compared exactly ("Ambient" or "ambient " are not "ambient"), as Istio does.

#include <string>
#include <string_view>
#include <vector>

#include "k8s/objects.h"

namespace nodemesh::k8s {

inline constexpr std::string_view kDataplaneModeLabel = "istio.io/dataplane-mode";
inline constexpr std::string_view kDataplaneModeAmbient = "ambient";
inline constexpr std::string_view kDataplaneModeNone = "none";
inline constexpr std::string_view kSidecarStatusAnnotation = "sidecar.istio.io/status";

enum class MembershipReason {
  kExcludedNamespace,
  kHostNetwork,
  kSidecar,
  kPodOptedOut,
  kPodOptedIn,
  kNamespaceOptedIn,
  kNotOptedIn,
};

struct Membership {
  bool enrolled = false;
  MembershipReason reason = MembershipReason::kNotOptedIn;
};

struct MembershipOptions {
  // Pods in these namespaces are never enrolled (Istio's CNI chart: excludeNamespaces).
  std::vector<std::string> excluded_namespaces = {"kube-system"};
};

// `ns` is the pod's namespace object, or nullptr when it is not known (yet): the namespace
// label then counts as absent, so such a pod is only enrolled by its own label.
Membership podMembership(const Pod& pod, const Namespace* ns,
                         const MembershipOptions& options = {});

// "namespace kube-system is excluded", "pod label istio.io/dataplane-mode=none", ...
std::string describe(MembershipReason reason);

}  // namespace nodemesh::k8s
