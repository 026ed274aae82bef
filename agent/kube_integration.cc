#include "agent/kube_integration.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "k8s/annotate.h"
#include "k8s/objects.h"

namespace nodemesh::agent {

namespace {

std::string podKey(const std::string& namespace_name, const std::string& name) {
  return namespace_name + "/" + name;
}

}  // namespace

KubeIntegration::KubeIntegration(KubeIntegrationOptions options, KubeIntegrationHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)), pods_(options_.pods) {}

Result<std::unique_ptr<KubeIntegration>> KubeIntegration::start(KubeIntegrationOptions options,
                                                                KubeIntegrationHooks hooks) {
  if (options.api.server.empty()) {
    auto in_cluster = k8s::inClusterConfig();
    if (!in_cluster)
      return Error{in_cluster.error().code, "Kubernetes API: " + in_cluster.error().message};
    in_cluster->connect_timeout = options.api.connect_timeout;
    in_cluster->request_timeout = options.api.request_timeout;
    options.api = std::move(*in_cluster);
  }
  std::unique_ptr<KubeIntegration> self(new KubeIntegration(std::move(options), std::move(hooks)));
  // One client per informer (a watch holds its connection, and stop() shuts the client down),
  // one for everything else.
  std::unique_ptr<k8s::Client> clients[3];
  for (auto& client : clients) {
    auto created = k8s::Client::create(self->options_.api);
    if (!created) {
      return Error{created.error().code, "Kubernetes API: " + created.error().message};
    }
    client = std::move(*created);
  }
  self->api_ = std::move(clients[0]);
  KubeIntegration* k = self.get();
  self->annotator_ = std::thread([k] { k->annotateLoop(); });

  k8s::InformerCallbacks ns_callbacks;
  ns_callbacks.on_upsert = [k](const nlohmann::json& object) {
    auto ns = k8s::parseNamespace(object);
    if (ns && k->pods_.upsertNamespace(*ns)) k->onChange();
  };
  ns_callbacks.on_delete = [k](const nlohmann::json& object) {
    auto meta = k8s::parseObjectMeta(object);
    if (meta && k->pods_.removeNamespace(meta->name)) k->onChange();
  };
  ns_callbacks.on_synced = [k] {
    k->pods_.setNamespacesSynced();
    spdlog::info("kubernetes: namespaces listed");
    k->onChange();
  };
  self->namespaces_ = k8s::Informer::start(std::move(clients[1]), k8s::namespaceInformerOptions(),
                                           std::move(ns_callbacks));

  k8s::InformerCallbacks pod_callbacks;
  pod_callbacks.on_upsert = [k](const nlohmann::json& object) {
    auto pod = k8s::parsePod(object);
    if (pod && k->pods_.upsertPod(*pod)) k->onChange();
  };
  pod_callbacks.on_delete = [k](const nlohmann::json& object) {
    auto meta = k8s::parseObjectMeta(object);
    if (meta && k->pods_.removePod(meta->namespace_name, meta->name)) k->onChange();
  };
  pod_callbacks.on_synced = [k] {
    k->pods_.setPodsSynced();
    spdlog::info("kubernetes: pods of node {} listed", k->options_.pods.node);
    k->onChange();
  };
  self->pod_informer_ =
      k8s::Informer::start(std::move(clients[2]), k8s::podInformerOptions(self->options_.pods.node),
                           std::move(pod_callbacks));

  if (auto st = self->startCniServer(); !st) return st.error();
  if (!self->options_.cni_conf_dir.empty()) {
    cni::InstallOptions& install = self->install_;
    install.conf_dir = self->options_.cni_conf_dir;
    install.bin_dir = self->options_.cni_bin_dir;
    install.binary_source = self->options_.cni_plugin_binary;
    install.plugin_fields["agentSocket"] = self->options_.cni_socket;
    if (!self->options_.cni_state_file.empty()) {
      install.plugin_fields["stateFile"] = self->options_.cni_state_file;
    }
    install.plugin_fields["excludeNamespaces"] = self->options_.pods.membership.excluded_namespaces;
    self->installing_ = true;
    self->install_stop_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!self->install_stop_.valid()) return Error::fromErrno("eventfd");
    self->installer_ = std::thread([k] {
      if (auto st = cni::installAndKeepInstalled(k->install_, k->install_stop_.get()); !st) {
        spdlog::error("installing the CNI plugin in {}: {}", k->install_.conf_dir,
                      st.error().message);
      }
    });
    spdlog::info("CNI plugin kept in the primary config of {} (binary in {})", install.conf_dir,
                 install.bin_dir);
  }
  spdlog::info("kubernetes: watching pods of node {} and namespaces at {}",
               self->options_.pods.node, self->options_.api.server);
  return self;
}

void KubeIntegration::stopInstaller() {
  if (!installer_.joinable()) return;
  const uint64_t one = 1;
  if (::write(install_stop_.get(), &one, sizeof(one)) != sizeof(one)) {
    spdlog::error("stopping the CNI installer: {}", std::strerror(errno));
    installer_.detach();  // never joinable without the wake-up; the process is stopping
    return;
  }
  installer_.join();
}

void KubeIntegration::uninstallCni() {
  // Only what this agent installed: never the default directories of InstallOptions.
  if (!installing_) return;
  installing_ = false;
  stopInstaller();
  if (auto st = cni::uninstall(install_); !st) {
    spdlog::error("uninstalling the CNI plugin from {}: {}", install_.conf_dir, st.error().message);
  } else {
    spdlog::info("CNI plugin removed from {}", install_.conf_dir);
  }
  if (!options_.cni_state_file.empty() && ::unlink(options_.cni_state_file.c_str()) != 0 &&
      errno != ENOENT) {
    spdlog::warn("removing {}: {}", options_.cni_state_file, std::strerror(errno));
  }
}

Status KubeIntegration::startCniServer() {
  if (options_.cni_socket.empty()) return okStatus();
  auto server =
      cni::CniServer::start(cni::CniServerOptions{options_.cni_socket, 2000},
                            [this](const cni::CniRequest& request) { return handleCni(request); });
  if (!server) {
    return Error{server.error().code,
                 "CNI socket " + options_.cni_socket + ": " + server.error().message};
  }
  cni_server_ = std::move(*server);
  spdlog::info("CNI plugin socket listening on {}", options_.cni_socket);
  return okStatus();
}

void KubeIntegration::releaseCniSocket() {
  if (cni_server_) cni_server_->stop();
}

Status KubeIntegration::restoreCniSocket() {
  return startCniServer();
}

KubeIntegration::~KubeIntegration() {
  // The installer stops watching; the plugin stays installed unless uninstallCni() ran (the
  // next agent takes over).
  stopInstaller();
  // The CNI server and the informers call into this object: stop them first.
  if (cni_server_) cni_server_->stop();
  if (pod_informer_) pod_informer_->stop();
  if (namespaces_) namespaces_->stop();
  {
    std::lock_guard<std::mutex> lock(annotate_mu_);
    stopping_ = true;
  }
  annotate_cv_.notify_all();
  pass_cv_.notify_all();
  if (annotator_.joinable()) annotator_.join();
}

void KubeIntegration::onChange() {
  writeState();
  hooks_.workloads_changed();
  hooks_.wake();
  {
    std::lock_guard<std::mutex> lock(annotate_mu_);
    annotate_poked_ = true;
  }
  annotate_cv_.notify_all();
}

void KubeIntegration::writeState() {
  // A partial view would let the plugin start an ambient pod outside the mesh: only write once
  // both lists are complete (until then the previous run's file stays).
  if (options_.cni_state_file.empty() || !pods_.synced()) return;
  cni::CniState state = pods_.cniState();
  std::lock_guard<std::mutex> lock(state_mu_);
  if (state_written_ && state == written_state_) return;
  if (auto st = cni::writeCniState(options_.cni_state_file, state); !st) {
    spdlog::error("CNI state file {}: {}", options_.cni_state_file, st.error().message);
    return;
  }
  state_written_ = true;
  written_state_ = std::move(state);
}

void KubeIntegration::passDone() {
  {
    std::lock_guard<std::mutex> lock(pass_mu_);
    ++passes_;
  }
  pass_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(annotate_mu_);
    annotate_poked_ = true;
  }
  annotate_cv_.notify_all();
}

cni::CniReply KubeIntegration::handleCni(const cni::CniRequest& request) {
  const std::string pod = request.pod_name.empty()
                              ? fmt::format("container {}", request.container_id)
                              : podKey(request.pod_namespace, request.pod_name);
  switch (request.command) {
    case cni::CniCommand::kAdd: {
      cni::CniReply reply = cniAdd(request);
      if (reply.ok) {
        spdlog::info("CNI ADD {}: {}", pod, reply.message);
      } else {
        spdlog::warn("CNI ADD {}: refused: {}", pod, reply.error);
      }
      return reply;
    }
    case cni::CniCommand::kDel:
      // The namespace goes away with the pod; the agent's scan unenrolls it then. DEL only
      // forgets the chain's addresses, and is a no-op the second time.
      if (pods_.cniDel(request)) onChange();
      return cni::CniReply::success(false, "forgotten");
    case cni::CniCommand::kCheck: {
      auto m = pods_.membership(request.pod_namespace, request.pod_name);
      if (!m || !m->enrolled) return cni::CniReply::success(false, "not in the mesh");
      const std::string uid = pods_.workloadUid(request.pod_namespace, request.pod_name);
      if (hooks_.enrolled_uids().count(uid) == 0) {
        return cni::CniReply::failure(fmt::format("pod {} is in the mesh ({}) but not enrolled",
                                                  pod, k8s::describe(m->reason)));
      }
      return cni::CniReply::success(true, "enrolled");
    }
  }
  return cni::CniReply::failure("unknown command");
}

cni::CniReply KubeIntegration::cniAdd(const cni::CniRequest& request) {
  std::optional<k8s::Pod> fetched;
  std::string fetch_error;
  if (!request.pod_namespace.empty() && !request.pod_name.empty() &&
      !pods_.knowsPod(request.pod_namespace, request.pod_name)) {
    // The informer has not seen the pod yet (the scheduler's binding and the kubelet's ADD can
    // beat the watch event): one GET, only then.
    const std::string path =
        fmt::format("/api/v1/namespaces/{}/pods/{}", k8s::queryEscape(request.pod_namespace),
                    k8s::queryEscape(request.pod_name));
    auto object = api_->getJson(path);
    if (object) {
      auto pod = k8s::parsePod(*object);
      if (pod) {
        fetched = std::move(*pod);
      } else {
        fetch_error = pod.error().message;
      }
    } else {
      fetch_error = object.error().message;
    }
  }
  const CniDecision decision = pods_.cniAdd(request, fetched ? &*fetched : nullptr);
  if (!decision.enroll) {
    // Not knowing the pod must not let a pod of an ambient namespace start outside the mesh.
    if (!fetch_error.empty() &&
        pods_.cniState().requiresMesh(request.pod_namespace, request.pod_name)) {
      return cni::CniReply::failure(fmt::format(
          "pod {}/{} is in an ambient namespace, and the API server did not say more: {}",
          request.pod_namespace, request.pod_name, fetch_error));
    }
    onChange();  // the fetched pod, the chain's addresses
    return cni::CniReply::success(false, "not enrolled: " + decision.reason);
  }
  onChange();  // publishes the workload and wakes the agent's loop
  const std::string uid = decision.workload->uid;
  const auto deadline = std::chrono::steady_clock::now() + options_.cni_enroll_timeout;
  std::unique_lock<std::mutex> lock(pass_mu_);
  while (true) {
    // The pass count is read before looking: a pass that ends while we look is not missed.
    const uint64_t seen = passes_;
    lock.unlock();
    const bool enrolled = hooks_.enrolled_uids().count(uid) > 0;
    lock.lock();
    if (enrolled) return cni::CniReply::success(true, "enrolled: " + decision.reason);
    if (!pass_cv_.wait_until(lock, deadline, [&] { return passes_ != seen; })) break;
    {
      std::lock_guard<std::mutex> stop_lock(annotate_mu_);
      if (stopping_) break;
    }
  }
  return cni::CniReply::failure(
      fmt::format("pod {}/{} ({}) was not enrolled within {} ms; the agent's log says why",
                  request.pod_namespace, request.pod_name, decision.reason,
                  options_.cni_enroll_timeout.count()));
}

Result<bool> KubeIntegration::replacedByDaemonSet(const std::string& pod_namespace,
                                                  const std::string& pod_name) {
  auto pod =
      api_->getJson(fmt::format("/api/v1/namespaces/{}/pods/{}", k8s::queryEscape(pod_namespace),
                                k8s::queryEscape(pod_name)));
  if (!pod) return pod.error();
  std::string daemonset;
  const auto owners = pod->value("/metadata/ownerReferences"_json_pointer, nlohmann::json::array());
  if (owners.is_array()) {
    for (const auto& owner : owners) {
      if (owner.is_object() && owner.value("kind", "") == "DaemonSet" &&
          owner.value("controller", false)) {
        daemonset = owner.value("name", "");
      }
    }
  }
  if (daemonset.empty()) return false;  // not run by a DaemonSet: nothing will replace it
  auto ds = api_->get(fmt::format("/apis/apps/v1/namespaces/{}/daemonsets/{}",
                                  k8s::queryEscape(pod_namespace), k8s::queryEscape(daemonset)));
  if (!ds) return ds.error();
  if (ds->status == 404) return false;
  if (ds->status / 100 != 2) {
    return k8s::apiError("GET", "daemonsets/" + daemonset, *ds);
  }
  auto object = nlohmann::json::parse(ds->body, nullptr, false);
  if (object.is_discarded() || !object.is_object()) {
    return Error::invalid("daemonsets/" + daemonset + ": not a JSON object");
  }
  return !object.contains("/metadata/deletionTimestamp"_json_pointer);
}

size_t KubeIntegration::removeAllAnnotations(std::chrono::milliseconds budget) {
  {
    std::lock_guard<std::mutex> lock(annotate_mu_);
    stopping_ = true;
  }
  annotate_cv_.notify_all();
  if (annotator_.joinable()) annotator_.join();
  const auto deadline = std::chrono::steady_clock::now() + budget;
  size_t removed = 0;
  for (const KubePodRef& pod : pods_.pods()) {
    if (!pod.annotated) continue;
    if (std::chrono::steady_clock::now() >= deadline) {
      spdlog::warn("annotations: out of time; pod {}/{} keeps {}", pod.namespace_name, pod.name,
                   k8s::kRedirectionAnnotation);
      continue;
    }
    if (auto st = k8s::removeRedirectionAnnotation(*api_, pod.namespace_name, pod.name); !st) {
      spdlog::warn("pod {}/{}: removing annotation {}: {}", pod.namespace_name, pod.name,
                   k8s::kRedirectionAnnotation, st.error().message);
      continue;
    }
    ++removed;
  }
  return removed;
}

void KubeIntegration::annotateLoop() {
  std::unique_lock<std::mutex> lock(annotate_mu_);
  while (!stopping_) {
    annotate_cv_.wait_for(lock, options_.annotate_retry,
                          [this] { return annotate_poked_ || stopping_; });
    if (stopping_) break;
    annotate_poked_ = false;
    lock.unlock();
    // Set on pods that are enrolled; removed from pods no longer meant to be in the mesh. A pod
    // meant to be in the mesh but not enrolled yet (a restarting agent) keeps its annotation, so
    // that istiod does not flip it to plain TCP and back.
    std::set<std::string> wanted;
    for (const auto& w : pods_.workloads()) wanted.insert(w.uid);
    const std::set<std::string> enrolled = hooks_.enrolled_uids();
    const auto now = std::chrono::steady_clock::now();
    std::set<std::string> present;
    for (const KubePodRef& pod : pods_.pods()) {
      const std::string key = podKey(pod.namespace_name, pod.name);
      present.insert(key);
      bool enable;
      if (!pod.annotated && enrolled.count(pod.workload_uid) > 0) {
        enable = true;
      } else if (pod.annotated && wanted.count(pod.workload_uid) == 0) {
        enable = false;
      } else {
        attempts_.erase(key);
        continue;
      }
      // The informer brings the patched pod back a moment later; don't patch again until then.
      auto attempt = attempts_.find(key);
      if (attempt != attempts_.end() && attempt->second.enable == enable &&
          now - attempt->second.at < options_.annotate_retry) {
        continue;
      }
      attempts_[key] = Attempt{enable, now};
      Status st = enable ? k8s::setRedirectionAnnotation(*api_, pod.namespace_name, pod.name)
                         : k8s::removeRedirectionAnnotation(*api_, pod.namespace_name, pod.name);
      if (!st) {
        spdlog::warn("pod {}: {} annotation {}: {}", key, enable ? "setting" : "removing",
                     k8s::kRedirectionAnnotation, st.error().message);
      } else {
        spdlog::info("pod {}: annotation {} {}", key, k8s::kRedirectionAnnotation,
                     enable ? "set" : "removed");
      }
    }
    for (auto it = attempts_.begin(); it != attempts_.end();) {
      it = present.count(it->first) ? std::next(it) : attempts_.erase(it);
    }
    lock.lock();
  }
}

}  // namespace nodemesh::agent
