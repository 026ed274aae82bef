#pragma once

// Which TCP congestion control the benchmark's pods can use. A network namespace other than the
// host's may only choose an algorithm listed in the host's
// net.ipv4.tcp_allowed_congestion_control (the kernel answers EPERM otherwise), and a new
// namespace starts with the host's default. The benchmark never changes the host: when the
// algorithm asked for cannot be had, the pods keep the host's default and the report says so.

#include <string>
#include <string_view>

namespace nodemesh::bench {

struct CongestionControlChoice {
  // The algorithm to set in each pod; empty: set nothing, the pods keep the host's default.
  std::string set;
  // The algorithm the pods will use.
  std::string expected;
  // Why the algorithm asked for was not used; empty when it was (or "host" was asked for).
  std::string fallback_reason;
};

// `requested` is an algorithm name or "host"; `allowed` and `available` are the host's
// space-separated net.ipv4.tcp_allowed_congestion_control and
// tcp_available_congestion_control, `host_default` its net.ipv4.tcp_congestion_control.
CongestionControlChoice chooseCongestionControl(std::string_view requested,
                                                std::string_view allowed,
                                                std::string_view available,
                                                std::string_view host_default);

// The same, reading the host's settings from /proc/sys/net/ipv4 (read-only).
CongestionControlChoice chooseCongestionControl(std::string_view requested);

}  // namespace nodemesh::bench
