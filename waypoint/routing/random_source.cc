#include "waypoint/routing/random_source.h"

namespace nodemesh::waypoint {

uint64_t SeededRandom::below(uint64_t bound) {
  if (bound == 0) return 0;
  return std::uniform_int_distribution<uint64_t>(0, bound - 1)(engine_);
}

}  // namespace nodemesh::waypoint
