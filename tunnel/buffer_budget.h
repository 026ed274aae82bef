#pragma once

// The agent's budget for data it holds on behalf of a slow reader (docs/security.md, "Total
// buffered memory"): bytes an HBONE peer sent that the application has not read yet. Flow
// control bounds each stream (4 MiB) and each connection (16 MiB), not their sum: 100
// authenticated peers writing to applications that never read would pin 1.6 GB. The budget is
// the sum's bound, shared by every worker (Envoy's overload manager is the model):
// - at the budget, a peer whose streams already hold shedFloor() or more gets 503 for a new
//   stream (Envoy: stop accepting); peers that hold little, the normal clients, are still
//   served, so that a flood cannot lock them out;
// - over it, each worker resets its streams that hold the most, largest first, until the total
//   is back under the low-water mark (Envoy: reset_high_memory_stream). A stream is only shed
//   while it holds at least shedFloor(): small streams are the well-behaved majority.
// Lock-free: workers add and remove their bytes on their own threads; a decision may see a
// total a few bytes stale, which only moves a shed or a refusal by one stream.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace nodemesh::tunnel {

class BufferBudget {
 public:
  // `limit` bytes over all workers; 0: no budget (only the total is kept, for the gauge).
  explicit BufferBudget(uint64_t limit) : limit_(limit) {}

  void add(uint64_t n) { used_.fetch_add(n, std::memory_order_relaxed); }
  void remove(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }

  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }
  // At or over the budget: new streams are refused.
  bool full() const { return limit_ > 0 && used() >= limit_; }
  // Over the budget: streams are shed.
  bool over() const { return limit_ > 0 && used() > limit_; }
  // Shedding stops once the total is at or under this (90% of the budget), so that the next
  // few bytes do not shed the next stream at once.
  uint64_t lowWater() const { return limit_ - limit_ / 10; }
  // The least a stream must hold to be shed: 1 MiB (Envoy tracks streams from 1 MiB up for
  // reset_high_memory_stream), less for a budget under 16 MiB.
  uint64_t shedFloor() const { return std::min<uint64_t>(uint64_t{1} << 20, limit_ / 16); }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

}  // namespace nodemesh::tunnel
