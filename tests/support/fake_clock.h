#pragma once

#include <chrono>
#include <mutex>

#include "identity/clock.h"

namespace nodemesh::testing {

// A Clock that only moves when told to. Thread-safe.
class FakeClock final : public identity::Clock {
 public:
  explicit FakeClock(std::chrono::system_clock::time_point start) : now_(start) {}

  std::chrono::system_clock::time_point now() const override {
    std::lock_guard lock(mutex_);
    return now_;
  }
  void set(std::chrono::system_clock::time_point t) {
    std::lock_guard lock(mutex_);
    now_ = t;
  }
  void advance(std::chrono::system_clock::duration d) {
    std::lock_guard lock(mutex_);
    now_ += d;
  }

 private:
  mutable std::mutex mutex_;
  std::chrono::system_clock::time_point now_;
};

}  // namespace nodemesh::testing
