#pragma once

// The agent's Kubernetes side (docs/kubernetes.md): the informers on this node's Pods and on
// the Namespaces (k8s/informer.h) feeding KubePods, the CNI plugin's socket (cni/cni_server.h)
// whose ADD returns only once the pod is enrolled, the state file the plugin reads while the
// agent is down, and the `ambient.istio.io/redirection` annotation on enrolled pods.
//
// It does not enroll anything itself: it says which workloads this node has (workloads()), and
// the daemon merges them into the config snapshot the Agent reconciles against, so a pod from
// the API is enrolled exactly like one from the local config file. The daemon tells it when a
// reconcile pass ended (passDone()), which is when a waiting CNI ADD looks again.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/kube_pods.h"
#include "cni/cni_server.h"
#include "cni/installer.h"
#include "common/fd.h"
#include "common/result.h"
#include "k8s/client.h"
#include "k8s/informer.h"

namespace nodemesh::agent {

struct KubeIntegrationOptions {
  // The API server; an empty `server` means the in-cluster configuration (k8s::inClusterConfig).
  k8s::ClientConfig api;
  KubePodsOptions pods;
  std::string cni_socket;      // empty: no CNI server
  std::string cni_state_file;  // empty: no state file
  // Where to install the plugin (cni/installer.h): the node's CNI conf dir (empty: the agent
  // does not install it) and bin dir, and the binary to copy there.
  std::string cni_conf_dir;
  std::string cni_bin_dir = "/opt/cni/bin";
  std::string cni_plugin_binary;
  // How long a CNI ADD waits for the pod's enrollment before it fails (the runtime retries).
  std::chrono::milliseconds cni_enroll_timeout{4000};
  // How often an annotation patch that failed is tried again.
  std::chrono::milliseconds annotate_retry{2000};
};

struct KubeIntegrationHooks {
  std::function<void()> workloads_changed;               // republish the merged snapshot
  std::function<void()> wake;                            // run a reconcile pass soon
  std::function<std::set<std::string>()> enrolled_uids;  // the workload uids enrolled now
};

class KubeIntegration {
 public:
  // Creates the clients (fails on a bad server URL or unreadable CA/token file), starts both
  // informers (they retry API failures on their own) and the CNI server.
  static Result<std::unique_ptr<KubeIntegration>> start(KubeIntegrationOptions options,
                                                        KubeIntegrationHooks hooks);
  ~KubeIntegration();
  KubeIntegration(const KubeIntegration&) = delete;
  KubeIntegration& operator=(const KubeIntegration&) = delete;
  KubeIntegration(KubeIntegration&&) = delete;
  KubeIntegration& operator=(KubeIntegration&&) = delete;

  // The workloads of this node's pods in the mesh (KubePods::workloads()).
  std::vector<model::Workload> workloads() const { return pods_.workloads(); }
  // A reconcile pass ended: waiting ADDs and the annotator look at what is enrolled now.
  void passDone();
  bool synced() const { return pods_.synced(); }

  // Whether the agent's own pod (pod_namespace/pod_name) is being replaced by its DaemonSet, a
  // rolling update or a restart, rather than removed with it: its controlling DaemonSet still
  // exists and is not being deleted (istio-cni's test before it cleans up). Errors are the
  // API's; the caller decides.
  Result<bool> replacedByDaemonSet(const std::string& pod_namespace, const std::string& pod_name);
  // Stops the annotator and removes the redirection annotation from every pod of the node that
  // has it (the agent is leaving the node and takes the capture with it). Best effort, bounded
  // by `budget`; returns how many were removed.
  size_t removeAllAnnotations(std::chrono::milliseconds budget);
  // The agent leaves the node for good: takes the plugin out of the node's CNI config (its
  // config restored byte for byte) and removes the state file, so that pods start without
  // nodemesh instead of waiting for an agent that will not come. Idempotent.
  void uninstallCni();
  uint64_t cniRequests() const { return cni_server_ ? cni_server_->served() : 0; }
  // Upgrades (agent/handoff.h): the next agent binds the CNI socket; if it fails, this one
  // listens again. Meanwhile the plugin falls back to the state file.
  void releaseCniSocket();
  Status restoreCniSocket();

 private:
  KubeIntegration(KubeIntegrationOptions options, KubeIntegrationHooks hooks);

  Status startCniServer();
  void onChange();  // after a change of KubePods: state file, snapshot, annotator
  void writeState();
  cni::CniReply handleCni(const cni::CniRequest& request);
  cni::CniReply cniAdd(const cni::CniRequest& request);
  void annotateLoop();

  const KubeIntegrationOptions options_;
  const KubeIntegrationHooks hooks_;
  KubePods pods_;

  std::mutex state_mu_;
  bool state_written_ = false;
  cni::CniState written_state_;

  std::mutex pass_mu_;
  std::condition_variable pass_cv_;
  uint64_t passes_ = 0;

  std::unique_ptr<k8s::Client> api_;  // GETs on the CNI path and annotation patches

  std::mutex annotate_mu_;
  std::condition_variable annotate_cv_;
  bool annotate_poked_ = false;
  bool stopping_ = false;
  struct Attempt {
    bool enable = false;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Attempt> attempts_;  // by "namespace/name"; annotator thread only
  std::thread annotator_;

  std::unique_ptr<k8s::Informer> namespaces_;
  std::unique_ptr<k8s::Informer> pod_informer_;
  std::unique_ptr<cni::CniServer> cni_server_;

  // The plugin's installation, kept current by a thread (cni::installAndKeepInstalled).
  cni::InstallOptions install_;
  bool installing_ = false;  // --cni-conf-dir was given: install_ is this agent's
  UniqueFd install_stop_;    // an eventfd: the thread returns when it is readable
  std::thread installer_;
  void stopInstaller();
};

}  // namespace nodemesh::agent
