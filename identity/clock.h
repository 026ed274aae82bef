#pragma once

#include <chrono>

namespace nodemesh::identity {

// Wall-clock time, as certificates see it (notBefore/notAfter are wall-clock instants). A seam
// so that tests can move time through certificate lifetimes without sleeping.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point now() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
};

}  // namespace nodemesh::identity
