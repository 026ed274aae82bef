#include "agent/agent_admin_state.h"

#include <signal.h>
#include <unistd.h>

namespace nodemesh::agent {

std::vector<admin::PodView> AgentAdminState::pods() const {
  std::vector<admin::PodView> out;
  for (const auto& pod : agent_.enrolledPods()) {
    admin::PodView view{pod.name, pod.workload_uid, pod.netns_path, pod.netns_cookie, {}};
    for (const auto& ip : pod.ips) view.ips.push_back(ip.toString());
    out.push_back(std::move(view));
  }
  return out;
}

std::vector<admin::CertificateView> AgentAdminState::certificates() const {
  std::vector<admin::CertificateView> out;
  for (const auto& cert : certificates_.certificates()) {
    out.push_back({cert->identity().toString(), cert->serialHex(), cert->notBefore(),
                   cert->notAfter(), cert->pemCertificate()});
  }
  return out;
}

void AgentAdminState::quit() {
  ::kill(::getpid(), SIGTERM);
}

}  // namespace nodemesh::agent
