#include "bench/congestion_control.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <string>

namespace nodemesh::bench {
namespace {

bool listed(std::string_view list, std::string_view name) {
  std::istringstream words{std::string(list)};
  std::string word;
  while (words >> word) {
    if (word == name) return true;
  }
  return false;
}

std::string readProcSys(const std::string& name) {
  std::ifstream in("/proc/sys/net/ipv4/" + name);
  std::string text;
  std::getline(in, text);
  return text;
}

}  // namespace

CongestionControlChoice chooseCongestionControl(std::string_view requested,
                                                std::string_view allowed,
                                                std::string_view available,
                                                std::string_view host_default) {
  CongestionControlChoice choice;
  if (requested == "host") {
    choice.expected = std::string(host_default);
    return choice;
  }
  if (listed(allowed, requested)) {
    choice.set = std::string(requested);
    choice.expected = std::string(requested);
    return choice;
  }
  choice.expected = std::string(host_default);
  choice.fallback_reason =
      listed(available, requested)
          ? fmt::format(
                "{} is not in the host's net.ipv4.tcp_allowed_congestion_control ({}), "
                "the only algorithms a pod's network namespace may choose",
                requested, allowed)
          : fmt::format("this kernel has no TCP congestion control named {} (available: {})",
                        requested, available);
  return choice;
}

CongestionControlChoice chooseCongestionControl(std::string_view requested) {
  return chooseCongestionControl(requested, readProcSys("tcp_allowed_congestion_control"),
                                 readProcSys("tcp_available_congestion_control"),
                                 readProcSys("tcp_congestion_control"));
}

}  // namespace nodemesh::bench
