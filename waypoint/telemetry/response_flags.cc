#include "waypoint/telemetry/response_flags.h"

#include <array>

namespace nodemesh::waypoint {

namespace {

#define NODEMESH_RESPONSE_FLAG_CODE(name, code) code,
constexpr std::array kCodes = {NODEMESH_RESPONSE_FLAGS(NODEMESH_RESPONSE_FLAG_CODE)};
#undef NODEMESH_RESPONSE_FLAG_CODE
static_assert(kCodes.size() <= 32, "ResponseFlags keeps the set in a uint32_t");

}  // namespace

const char* ResponseFlags::code(ResponseFlag f) {
  return kCodes[static_cast<size_t>(f)];
}

std::string ResponseFlags::toString() const {
  if (bits_ == 0) return "-";
  std::string out;
  for (size_t i = 0; i < kCodes.size(); ++i) {
    if ((bits_ & (uint32_t{1} << i)) == 0) continue;
    if (!out.empty()) out += ',';
    out += kCodes[i];
  }
  return out;
}

}  // namespace nodemesh::waypoint
