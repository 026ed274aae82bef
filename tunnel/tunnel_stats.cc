#include "tunnel/tunnel_stats.h"

#include <fmt/format.h>

namespace nodemesh::tunnel {

std::string formatTunnelStats(const TunnelStats& stats) {
  std::string line;
  for (const TunnelStatInfo& info : kTunnelStatInfo) {
    if (!line.empty()) line += ' ';
    line += fmt::format("{}={}", info.field, stats.*info.value);
  }
  return line;
}

}  // namespace nodemesh::tunnel
