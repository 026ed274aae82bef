#include "waypoint/telemetry/random_bytes.h"

#include <cstring>
#include <random>

namespace nodemesh::waypoint {

void SystemRandom::fill(std::span<uint8_t> out) {
  thread_local std::mt19937_64 engine = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  size_t i = 0;
  while (i < out.size()) {
    const uint64_t word = engine();
    const size_t n = std::min(sizeof(word), out.size() - i);
    std::memcpy(out.data() + i, &word, n);
    i += n;
  }
}

}  // namespace nodemesh::waypoint
