#pragma once

// The tunnel's counters, declared once (Envoy's ALL_*_STATS pattern). TunnelStats (the sum the
// agent reads), TunnelCounters (each worker's live atomics), the SIGUSR1 "tunnel stats:" line and
// the Prometheus series are all generated from NODEMESH_TUNNEL_STATS: adding a counter is one line.
//
// X(field, kind, family, label, label_value, help)
//   kind         Counter or Gauge
//   family       the Prometheus metric family; one family's entries are consecutive
//   label        the label that tells the family's entries apart ("" for a family of one)
//   help         the family's HELP text, on its first entry ("" on the others)

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

// clang-format off
#define NODEMESH_TUNNEL_STATS(X)                                                                   \
  X(accepted_outbound, Counter, "nodemesh_tunnel_connections_accepted_total", "listener",          \
    "outbound", "Connections accepted by the tunnel, by listener")                                 \
  X(accepted_inbound, Counter, "nodemesh_tunnel_connections_accepted_total", "listener",           \
    "inbound", "")                                                                                 \
  X(accepted_hbone, Counter, "nodemesh_tunnel_connections_accepted_total", "listener", "hbone",   \
    "")                                                                                            \
  X(completed, Counter, "nodemesh_tunnel_connections_completed_total", "", "",                     \
    "Relayed connections that finished cleanly in both directions")                                \
  X(active, Gauge, "nodemesh_tunnel_connections_active", "", "", "Relayed connections open now")  \
  X(failed_connect, Counter, "nodemesh_tunnel_connection_failures_total", "reason", "connect",     \
    "Relayed connections that failed, by cause")                                                   \
  X(failed_no_orig_dst, Counter, "nodemesh_tunnel_connection_failures_total", "reason",            \
    "no_orig_dst", "")                                                                             \
  X(failed_io, Counter, "nodemesh_tunnel_connection_failures_total", "reason", "io", "")           \
  X(failed_no_waypoint, Counter, "nodemesh_tunnel_connection_failures_total", "reason",            \
    "no_waypoint", "")                                                                             \
  X(bytes_to_dst, Counter, "nodemesh_tunnel_bytes_total", "direction", "to_destination",           \
    "Bytes relayed by the tunnel (live, unlike istio_tcp_*_bytes_total)")                          \
  X(bytes_from_dst, Counter, "nodemesh_tunnel_bytes_total", "direction", "from_destination", "")  \
  X(tls_handshakes_client, Counter, "nodemesh_tls_handshakes_total", "role", "client",             \
    "Completed TLS handshakes, by role")                                                           \
  X(tls_handshakes_server, Counter, "nodemesh_tls_handshakes_total", "role", "server", "")         \
  X(tls_handshake_failures, Counter, "nodemesh_tls_handshake_failures_total", "", "",              \
    "TLS handshakes that failed or timed out")                                                     \
  X(hbone_streams_opened, Counter, "nodemesh_hbone_streams_total", "event", "opened",              \
    "HBONE CONNECT streams: opened as client, accepted (200) or rejected as server")               \
  X(hbone_streams_accepted, Counter, "nodemesh_hbone_streams_total", "event", "accepted", "")      \
  X(hbone_streams_rejected, Counter, "nodemesh_hbone_streams_total", "event", "rejected", "")      \
  X(waypoint_streams, Counter, "nodemesh_tunnel_waypoint_connections_total", "", "",               \
    "Outbound connections sent to a waypoint (their destination has one)")                         \
  X(same_node_deliveries, Counter, "nodemesh_tunnel_same_node_connections_total", "", "",         \
    "Connections between two pods of this node delivered without HBONE (--same-node-fast-path)")  \
  X(same_node_refused, Counter, "nodemesh_tunnel_same_node_refused_total", "", "",                \
    "Same-node fast-path connections refused before delivery (a tunnel port, the destination's "   \
    "policy or caps: what HBONE would have answered 400, 401 or 503)")                             \
  X(splice_pipes_created, Counter, "nodemesh_tunnel_splice_pipes_created_total", "", "",          \
    "Pipes made for the plain relay's splicing (--splice); a worker reuses drained ones")          \
  X(hbone_keepalive_pings, Counter, "nodemesh_hbone_keepalive_pings_total", "", "",              \
    "HTTP/2 PINGs sent on idle pooled HBONE connections (--hbone-keepalive-s)")                    \
  X(hbone_idle_closed, Counter, "nodemesh_hbone_idle_closed_total", "", "",                        \
    "Pooled HBONE connections closed after --hbone-idle-timeout-s without a stream")               \
  X(hbone_server_idle_closed, Counter, "nodemesh_hbone_server_idle_closed_total", "", "",         \
    "Accepted HBONE connections closed after --hbone-server-idle-timeout-s without a stream")      \
  X(hbone_handshakes_shed, Counter, "nodemesh_hbone_handshakes_shed_total", "", "",               \
    "Accepted HBONE connections closed mid-handshake to make room (--max-pending-handshakes)")    \
  X(hbone_floods_control, Counter, "nodemesh_hbone_floods_total", "kind", "control_frames",       \
    "HBONE connections ended with GOAWAY ENHANCE_YOUR_CALM: frames needing an answer (PING, "      \
    "SETTINGS, refused streams) sent faster than the answers were read, or a rapid reset")          \
  X(hbone_floods_reset, Counter, "nodemesh_hbone_floods_total", "kind", "rapid_reset", "")         \
  X(hbone_reset_before_connect, Counter, "nodemesh_hbone_streams_reset_before_connect_total", "",  \
    "", "Accepted CONNECT streams the peer reset before the application was connected (no "       \
    "connection made)")                                                                             \
  X(hbone_pool_size, Gauge, "nodemesh_hbone_pool_connections", "", "",                             \
    "Pooled HBONE client connections open (one TLS connection each)")                              \
  X(hbone_streams_reopened, Counter, "nodemesh_hbone_streams_reopened_total", "", "",              \
    "Outbound HBONE streams the peer refused unprocessed (a GOAWAY crossed them) and that were "  \
    "opened again on another connection")                                                          \
  X(hbone_server_conns, Gauge, "nodemesh_hbone_server_connections", "", "",                        \
    "Accepted HBONE connections open (on the pods' 15008)")                                        \
  X(buffered_bytes, Gauge, "nodemesh_tunnel_buffered_bytes", "", "",                               \
    "Bytes HBONE peers sent that applications have not read yet (--max-buffered-bytes)")          \
  X(hbone_buffer_bytes, Gauge, "nodemesh_hbone_buffer_bytes", "", "",                              \
    "Memory the HBONE connections' ciphertext buffers hold (TLS input and output, socket send), "  \
    "taken each second after the drained ones over 16 KiB are released")                          \
  X(overload_streams_shed, Counter, "nodemesh_tunnel_overload_total", "action", "reset_stream",    \
    "HBONE streams reset (the ones holding the most) or refused with 503 because the buffered "   \
    "bytes were over --max-buffered-bytes")                                                        \
  X(overload_streams_refused, Counter, "nodemesh_tunnel_overload_total", "action",                 \
    "refuse_stream", "")                                                                           \
  X(denied, Counter, "nodemesh_tunnel_policy_denials_total", "when", "connect",                    \
    "Inbound connections refused by authorization policy: when they arrived, or open ones closed " \
    "after a policy change")                                                                       \
  X(closed_by_policy, Counter, "nodemesh_tunnel_policy_denials_total", "when", "policy_change",    \
    "")                                                                                            \
  X(refused_connections, Counter, "nodemesh_tunnel_workload_limit_refusals_total", "limit",       \
    "connections", "Inbound connections refused over their workload's cap: open connections "     \
    "(--max-inbound-connections-per-workload) or new ones per second "                           \
    "(--max-inbound-connection-rate-per-workload)")                                               \
  X(refused_rate, Counter, "nodemesh_tunnel_workload_limit_refusals_total", "limit", "rate", "")   \
  X(connect_retries, Counter, "nodemesh_tunnel_connect_retries_total", "", "",                     \
    "Service connections retried on another endpoint after a failed connect")                      \
  X(connect_timeouts, Counter, "nodemesh_tunnel_connect_timeouts_total", "", "",                   \
    "Connects that did not complete within --connect-timeout-ms")                                  \
  X(busy_poll_hits, Counter, "nodemesh_tunnel_busy_polls_total", "result", "hit",                  \
    "Tunnel workers' busy polls (--busy-poll-us): found work (hit), ran out (miss), or not made "  \
    "because polls kept missing (skipped, adaptive polling)")                                      \
  X(busy_poll_misses, Counter, "nodemesh_tunnel_busy_polls_total", "result", "miss", "")          \
  X(busy_poll_skipped, Counter, "nodemesh_tunnel_busy_polls_total", "result", "skipped", "")      \
  X(recv_buffers_exhausted, Counter, "nodemesh_tunnel_receive_buffers_exhausted_total", "", "",    \
    "Receives that found the worker's receive buffers all in use (ENOBUFS; --recv-buffers)")
// clang-format on

namespace nodemesh::tunnel {

// The tunnel's counters summed over its workers.
struct TunnelStats {
#define NODEMESH_STATS_FIELD(field, ...) uint64_t field = 0;
  NODEMESH_TUNNEL_STATS(NODEMESH_STATS_FIELD)
#undef NODEMESH_STATS_FIELD

  TunnelStats& operator+=(const TunnelStats& o) {
#define NODEMESH_STATS_ADD(field, ...) field += o.field;
    NODEMESH_TUNNEL_STATS(NODEMESH_STATS_ADD)
#undef NODEMESH_STATS_ADD
    return *this;
  }
};

// One worker's counters: written by its thread, read by any (relaxed: each is a statistic on
// its own, no reader needs them consistent with each other).
struct TunnelCounters {
#define NODEMESH_STATS_ATOMIC(field, ...) std::atomic<uint64_t> field{0};
  NODEMESH_TUNNEL_STATS(NODEMESH_STATS_ATOMIC)
#undef NODEMESH_STATS_ATOMIC

  TunnelStats snapshot() const {
    TunnelStats s;
#define NODEMESH_STATS_LOAD(field, ...) s.field = field.load(std::memory_order_relaxed);
    NODEMESH_TUNNEL_STATS(NODEMESH_STATS_LOAD)
#undef NODEMESH_STATS_LOAD
    return s;
  }
};

inline void bump(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.fetch_add(n, std::memory_order_relaxed);
}
inline void subtract(std::atomic<uint64_t>& gauge, uint64_t n = 1) {
  gauge.fetch_sub(n, std::memory_order_relaxed);
}

// One entry of the list, for code that walks every counter (the metrics page).
struct TunnelStatInfo {
  const char* field;
  bool gauge;
  const char* family;
  const char* label;
  const char* label_value;
  const char* help;
  uint64_t TunnelStats::*value;
};

inline constexpr TunnelStatInfo kTunnelStatInfo[] = {
#define NODEMESH_STATS_INFO(field, kind, family, label, label_value, help) \
  {#field,                                                                 \
   std::string_view(#kind) == "Gauge",                                     \
   family,                                                                 \
   label,                                                                  \
   label_value,                                                            \
   help,                                                                   \
   &TunnelStats::field},
    NODEMESH_TUNNEL_STATS(NODEMESH_STATS_INFO)
#undef NODEMESH_STATS_INFO
};

// "accepted_outbound=1 accepted_inbound=0 ...": every counter, in the list's order (SIGUSR1).
std::string formatTunnelStats(const TunnelStats& stats);

}  // namespace nodemesh::tunnel
