#pragma once

// Where the routing engine's random choices come from (weighted backends, mirror percentages):
// an interface so that tests can seed it and count outcomes.

#include <cstdint>
#include <random>

namespace nodemesh::waypoint {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Uniform in [0, bound); 0 when bound is 0.
  virtual uint64_t below(uint64_t bound) = 0;
};

// A Mersenne Twister; one per worker thread (not thread-safe).
class SeededRandom final : public RandomSource {
 public:
  explicit SeededRandom(uint64_t seed) : engine_(seed) {}
  uint64_t below(uint64_t bound) override;

 private:
  std::mt19937_64 engine_;
};

}  // namespace nodemesh::waypoint
