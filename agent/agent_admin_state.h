#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/admin/admin_api.h"
#include "agent/agent.h"
#include "agent/snapshot_fanout.h"
#include "identity/cert_manager.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent {

// What the admin API and /metrics read of the running agent.
class AgentAdminState final : public admin::AdminState {
 public:
  AgentAdminState(admin::AgentInfo info, const SnapshotFanout& config, const Agent& agent,
                  const tunnel::Tunnel& tunnel, const identity::CertificateManager& certificates)
      : info_(std::move(info)),
        config_(config),
        agent_(agent),
        tunnel_(tunnel),
        certificates_(certificates) {}

  model::SnapshotPtr snapshot() const override { return config_.current(); }
  std::vector<admin::PodView> pods() const override;
  std::vector<tunnel::ConnectionInfo> connections() const override { return tunnel_.connections(); }
  std::vector<admin::CertificateView> certificates() const override;
  admin::AgentInfo info() const override { return info_; }
  // Stops the agent the way SIGTERM does.
  void quit() override;
  nlohmann::json controlPlane() const override {
    return control_plane_ ? control_plane_() : nlohmann::json::object();
  }
  // Set once, before the admin server starts.
  void setControlPlane(std::function<nlohmann::json()> describe) {
    control_plane_ = std::move(describe);
  }

 private:
  const admin::AgentInfo info_;
  const SnapshotFanout& config_;
  const Agent& agent_;
  const tunnel::Tunnel& tunnel_;
  const identity::CertificateManager& certificates_;
  std::function<nlohmann::json()> control_plane_;
};

}  // namespace nodemesh::agent
