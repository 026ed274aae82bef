#pragma once

#include <functional>
#include <utility>

namespace nodemesh::agent {

// Runs a function when it goes out of scope, unless cancelled: for a step of a start sequence
// that is not itself an object whose destructor undoes it (Envoy's Cleanup).
class Cleanup {
 public:
  explicit Cleanup(std::function<void()> f) : f_(std::move(f)) {}
  ~Cleanup() {
    if (f_) f_();
  }
  Cleanup(const Cleanup&) = delete;
  Cleanup& operator=(const Cleanup&) = delete;

  void cancel() { f_ = nullptr; }

 private:
  std::function<void()> f_;
};

}  // namespace nodemesh::agent
