#include "waypoint/telemetry/request_id.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace nodemesh::waypoint {

bool isSaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x21 && u <= 0x7e;
  });
}

std::string newRequestId(RandomBytes& random) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::array<uint8_t, 16> b{};
  random.fill(b);
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // variant 10 (RFC 9562)
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 0x0f];
  }
  return out;
}

std::string requestIdFor(std::optional<std::string_view> inbound, RandomBytes& random) {
  if (inbound && isSaneRequestId(*inbound)) return std::string(*inbound);
  return newRequestId(random);
}

}  // namespace nodemesh::waypoint
