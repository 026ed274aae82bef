#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

#include "model/snapshot.h"

namespace nodemesh::agent {

// Hands each config snapshot a ConfigSource publishes to the parts of the agent that use it.
// The source starts before them (a bad config stops the start before anything is installed)
// and stops after them; a part subscribes once it exists and, through its Subscription,
// stops hearing before it is destroyed. Thread-safe.
class SnapshotFanout {
 public:
  using Consumer = std::function<void(model::SnapshotPtr)>;

  // Unsubscribes when destroyed; a delivery in progress finishes first.
  class Subscription {
   public:
    Subscription(SnapshotFanout& fanout, uint64_t id) : fanout_(fanout), id_(id) {}
    ~Subscription() { fanout_.unsubscribe(id_); }
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

   private:
    SnapshotFanout& fanout_;
    uint64_t id_;
  };

  // Keeps `snapshot` as the current one and hands it to every subscriber, in order of
  // subscription. Calls are serialized.
  void publish(model::SnapshotPtr snapshot);
  // Hands `consumer` the current snapshot (if any) at once, then every later one.
  [[nodiscard]] std::unique_ptr<Subscription> subscribe(Consumer consumer);
  // The last snapshot published; null before the first.
  model::SnapshotPtr current() const;

 private:
  void unsubscribe(uint64_t id);

  mutable std::mutex mu_;
  model::SnapshotPtr current_;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Consumer> consumers_;
};

}  // namespace nodemesh::agent
