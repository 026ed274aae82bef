#pragma once

#include <chrono>

namespace nodemesh {

// Monotonic time for pacing and limits (when a discovery pass is due, how many connections a
// rate admits). A seam so that tests move time without sleeping.
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

}  // namespace nodemesh
