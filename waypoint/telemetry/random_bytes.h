#pragma once

// Where trace ids, span ids and request ids get their randomness: an interface, so that tests
// pass a fixed sequence and check exact header values.

#include <cstdint>
#include <span>

namespace nodemesh::waypoint {

class RandomBytes {
 public:
  virtual ~RandomBytes() = default;
  // Fills `out` with uniformly random bytes. Called from any worker thread.
  virtual void fill(std::span<uint8_t> out) = 0;
};

// The real one: a per-thread 64-bit Mersenne Twister seeded from std::random_device, so that
// workers draw without a lock or a syscall. Ids need to be unique, not secret (the W3C Trace
// Context spec asks for randomness, not unpredictability; x-request-id is a correlation key).
class SystemRandom final : public RandomBytes {
 public:
  void fill(std::span<uint8_t> out) override;
};

}  // namespace nodemesh::waypoint
