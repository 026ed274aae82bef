#pragma once

// The seam between where the mesh config comes from (a local file today, istiod's xDS later)
// and the agent that consumes it.

#include <functional>
#include <memory>

#include "common/result.h"
#include "model/snapshot.h"

namespace nodemesh::config {

// Publishes complete, immutable snapshots of the mesh config.
//
// Contract: start() delivers the initial snapshot to `on_update` before it returns, or fails
// (and then never calls it). Afterwards, each accepted new config version is delivered from the
// source's own thread, one call at a time, never concurrently. A rejected version is not
// delivered: the last snapshot delivered stays in force. After stop() returns no more calls are
// made. stop() is idempotent, safe to call without start(), and must not be called from inside
// `on_update`.
class ConfigSource {
 public:
  using UpdateCallback = std::function<void(std::shared_ptr<const model::Snapshot>)>;

  virtual ~ConfigSource() = default;

  virtual Status start(UpdateCallback on_update) = 0;
  virtual void stop() = 0;
};

}  // namespace nodemesh::config
