#pragma once

// The config in force for one worker: the snapshot and the authorizer built for it, set by the
// agent's thread, read by the worker's thread for each new connection.

#include <memory>
#include <mutex>

#include "model/snapshot.h"
#include "policy/authorizer.h"

namespace nodemesh::tunnel {

class MeshState {
 public:
  void set(model::SnapshotPtr snapshot, std::shared_ptr<const policy::Authorizer> authorizer) {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(snapshot);
    authorizer_ = std::move(authorizer);
  }
  model::SnapshotPtr snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshot_;
  }
  // Null until the first config (no config: no policy).
  std::shared_ptr<const policy::Authorizer> authorizer() const {
    std::lock_guard<std::mutex> lock(mu_);
    return authorizer_;
  }

 private:
  mutable std::mutex mu_;
  model::SnapshotPtr snapshot_;
  std::shared_ptr<const policy::Authorizer> authorizer_;
};

}  // namespace nodemesh::tunnel
