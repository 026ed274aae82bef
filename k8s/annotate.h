#pragma once

// The pod annotation that tells istiod a pod's traffic is captured by the node proxy:
// `ambient.istio.io/redirection: enabled`. istiod marks a workload HBONE only when it is set,
// so the agent sets it after the pod's capture is in place and removes it on unenroll. Written
// through a JSON merge patch on the pods/status subresource, as istio-cni does: patching
// pods/status can change metadata too, and needs a smaller RBAC grant than patching pods.

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "k8s/client.h"

namespace nodemesh::k8s {

inline constexpr std::string_view kRedirectionAnnotation = "ambient.istio.io/redirection";
inline constexpr std::string_view kRedirectionEnabled = "enabled";

// {"metadata":{"annotations":{"ambient.istio.io/redirection":"enabled"}}}, or null for removal.
nlohmann::json redirectionPatch(bool enabled);
// "/api/v1/namespaces/<ns>/pods/<name>/status"; names are checked (RFC 1123 characters) so that
// nothing can be smuggled into the path.
Result<std::string> podStatusPath(std::string_view namespace_name, std::string_view name);

// Sets the annotation. Fails with the API's message (a 404 means the pod is gone).
Status setRedirectionAnnotation(Client& client, std::string_view namespace_name,
                                std::string_view name);
// Removes the annotation; a pod that no longer exists counts as done (404 is success).
Status removeRedirectionAnnotation(Client& client, std::string_view namespace_name,
                                   std::string_view name);

}  // namespace nodemesh::k8s
