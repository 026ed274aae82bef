#pragma once

// Which of this node's pods are in the mesh when the agent follows the Kubernetes API: the
// agent's copy of its node's Pods and of the Namespaces (fed by the informers, k8s/informer.h)
// and of what the CNI plugin said about the pods it set up (cni/cni_server.h), turned into the
// workloads the agent enrolls (one per opted-in pod, as istiod would describe it) and into the
// state file the CNI plugin reads when the agent is down (cni/state_file.h).
//
// Membership follows Istio's labels (k8s::podMembership). A pod's addresses come from its status
// (status.podIPs), or, until the kubelet has written them there, from the CNI chain's result: the
// CNI ADD happens before the kubelet knows the pod's address, and the agent enrolls the pod
// before the ADD returns.
//
// Thread-safe: the informers' threads, the CNI server's thread and the agent's loop call it.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cni/protocol.h"
#include "cni/state_file.h"
#include "common/ip_address.h"
#include "k8s/membership.h"
#include "k8s/objects.h"
#include "model/workload.h"

namespace nodemesh::agent {

struct KubePodsOptions {
  std::string node;
  std::string trust_domain = "cluster.local";
  std::string cluster_id = "Kubernetes";  // istiod's default cluster ID; the workloads' uid prefix
  k8s::MembershipOptions membership;
};

// What the agent decided about a pod the CNI plugin announced.
struct CniDecision {
  bool enroll = false;
  std::string reason;                       // k8s::describe() of the membership, or why unknown
  std::optional<model::Workload> workload;  // when enroll: what the agent must enroll
};

// A pod the agent may annotate: its key and whether it carries the redirection annotation now.
struct KubePodRef {
  std::string namespace_name;
  std::string name;
  std::string workload_uid;  // the uid of its workload (workloadUid())
  bool annotated = false;    // ambient.istio.io/redirection: enabled, as the API last said
};

class KubePods {
 public:
  explicit KubePods(KubePodsOptions options);

  // "<cluster id>//Pod/<namespace>/<name>": the uid istiod gives a pod's workload.
  std::string workloadUid(const std::string& namespace_name, const std::string& name) const;

  // Informer events. Each returns whether the set of workloads (or the CNI state) changed.
  // Pods of other nodes are ignored (the informer's field selector already leaves them out).
  bool upsertPod(const k8s::Pod& pod);
  bool removePod(const std::string& namespace_name, const std::string& name);
  bool upsertNamespace(const k8s::Namespace& ns);
  bool removeNamespace(const std::string& name);
  void setPodsSynced();
  void setNamespacesSynced();
  bool synced() const;

  // The CNI plugin's ADD: records the pod's netns and addresses (prevResult), and decides.
  // `fetched` is the pod as the API server returned it when the informer did not know it yet
  // (nullptr: not fetched, or the fetch failed).
  CniDecision cniAdd(const cni::CniRequest& request, const k8s::Pod* fetched);
  // Whether the pod a CNI request names is known (by namespace and name).
  bool knowsPod(const std::string& namespace_name, const std::string& name) const;
  // The CNI plugin's DEL: forgets what the ADD recorded (idempotent).
  bool cniDel(const cni::CniRequest& request);

  // One workload per pod of this node that is in the mesh, not finished, and has an address.
  std::vector<model::Workload> workloads() const;
  // The pods whose namespaces and labels the CNI plugin needs when the agent is down.
  cni::CniState cniState() const;
  // Every pod of this node the API knows, for the annotation.
  std::vector<KubePodRef> pods() const;
  // The membership of one pod ("not known" when the API has not shown it).
  std::optional<k8s::Membership> membership(const std::string& namespace_name,
                                            const std::string& name) const;

 private:
  struct CniRecord {
    std::string container_id;
    std::string netns;
    std::vector<IpAddress> ips;
  };

  std::optional<model::Workload> workloadLocked(const k8s::Pod& pod) const;
  k8s::Membership membershipLocked(const k8s::Pod& pod) const;

  const KubePodsOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, k8s::Pod> pods_;              // by "namespace/name"
  std::map<std::string, k8s::Namespace> namespaces_;  // by name
  std::map<std::string, CniRecord> cni_;              // by "namespace/name"
  bool pods_synced_ = false;
  bool namespaces_synced_ = false;
};

// The CIDR strings of a CNI result ("10.244.1.5/24") as addresses; bad ones are skipped.
std::vector<IpAddress> cniAddresses(const std::vector<std::string>& cidrs);

}  // namespace nodemesh::agent
