#pragma once

#include <chrono>

namespace nodemesh::agent {

// Monotonic time for the agent's pacing (when a discovery pass is due). A seam so that tests
// move time without sleeping.
class SteadyClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~SteadyClock() = default;
  virtual TimePoint now() const = 0;
};

class RealSteadyClock final : public SteadyClock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace nodemesh::agent
