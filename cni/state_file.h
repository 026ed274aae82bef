#pragma once

// The file the agent keeps for the CNI plugin, read only when the plugin cannot reach the agent:
// which pods must not start outside the mesh while the agent is down.
//
//   {"version": 1,
//    "ambientNamespaces": ["shop"],          // namespaces labelled istio.io/dataplane-mode=ambient
//    "ambientPods": ["default/legacy-1"],    // optional: pods opted in by their own label
//    "optOutPods": ["shop/debug-0"]}         // optional: pods labelled
//    istio.io/dataplane-mode=none
//
// Pods are "namespace/name". The agent rewrites the whole file whenever its view changes
// (writeCniState: a temporary file in the same directory, fsync, rename), so a reader sees the old
// or the new file, never a mix.

#include <string>
#include <vector>

#include "common/result.h"

namespace nodemesh::cni {

inline constexpr int kStateFileVersion = 1;

struct CniState {
  std::vector<std::string> ambient_namespaces;
  std::vector<std::string> ambient_pods;
  std::vector<std::string> opt_out_pods;

  // Must a pod with this namespace and name (may be empty: the runtime did not say) be in the
  // mesh? Opt-out wins, then the pod's own opt-in, then its namespace's.
  bool requiresMesh(const std::string& pod_namespace, const std::string& pod_name) const;

  bool operator==(const CniState&) const = default;
};

std::string encodeCniState(const CniState& state);
Result<CniState> decodeCniState(const std::string& text);

// Atomic replace (see above). The directory is created (0755) when missing; the file is 0644.
Status writeCniState(const std::string& path, const CniState& state);
// ENOENT in the error code when the file does not exist (the agent never wrote it).
Result<CniState> readCniState(const std::string& path);

}  // namespace nodemesh::cni
