#include "agent/snapshot_fanout.h"

namespace nodemesh::agent {

void SnapshotFanout::publish(model::SnapshotPtr snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  current_ = std::move(snapshot);
  for (const auto& [id, consumer] : consumers_) consumer(current_);
}

std::unique_ptr<SnapshotFanout::Subscription> SnapshotFanout::subscribe(Consumer consumer) {
  std::lock_guard<std::mutex> lock(mu_);
  if (current_) consumer(current_);
  const uint64_t id = next_id_++;
  consumers_.emplace(id, std::move(consumer));
  return std::make_unique<Subscription>(*this, id);
}

model::SnapshotPtr SnapshotFanout::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

void SnapshotFanout::unsubscribe(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  consumers_.erase(id);
}

}  // namespace nodemesh::agent
