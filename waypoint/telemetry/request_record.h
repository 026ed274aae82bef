#pragma once

// Everything the waypoint knows about one finished request, in one struct: the metrics, the
// access log line and (later) the span are all computed from it, so they never disagree.
//
// A record is a view of the finished stream: its pointers (into the config snapshot) and string
// views (into the stream's headers) must stay valid for the duration of the telemetry call it is
// passed to, which keeps none of them.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/ip_address.h"
#include "model/service.h"
#include "model/workload.h"
#include "waypoint/telemetry/response_flags.h"

namespace nodemesh::waypoint {

// The HTTP version the client spoke to the waypoint (the access log's protocol field).
enum class HttpVersion { kHttp10, kHttp11, kHttp2 };
// "HTTP/1.0", "HTTP/1.1", "HTTP/2" (Envoy's %PROTOCOL%).
std::string_view toString(HttpVersion v);

struct RequestRecord {
  // --- the client ---
  // The client's workload, when the config knows its address; null for a client outside the
  // config (its labels are then "unknown").
  const model::Workload* source_workload = nullptr;
  // The SPIFFE ID the client's certificate proved (HBONE); empty without mutual TLS.
  std::string_view source_principal;
  // The client's address: HBONE's `forwarded: for=`, else the peer address.
  std::optional<SocketAddress> source_address;
  // The request arrived over HBONE (mutual TLS): connection_security_policy="mutual_tls".
  bool mutual_tls = true;

  // --- where it went ---
  // The service the client addressed (the HBONE :authority's VIP); null when it addressed a
  // workload directly or no service matched.
  const model::Service* destination_service = nullptr;
  // The endpoint that served the request (the last attempt's); null when none was picked.
  const model::Workload* destination_workload = nullptr;
  // The identity the upstream's certificate proved; empty when there was no upstream.
  std::string_view destination_principal;
  // The endpoint address the last attempt went to (Envoy's %UPSTREAM_HOST%).
  std::optional<SocketAddress> upstream_host;
  // Requests sent upstream (Envoy's %UPSTREAM_REQUEST_ATTEMPT_COUNT%): 1, more after retries,
  // 0 when the waypoint answered without an upstream.
  uint32_t upstream_attempts = 0;
  // The route (HTTPRoute/GRPCRoute "namespace/name", and rule) that served it; empty for none.
  std::string_view route_name;
  // The authorization of the request: "allow", "deny", or "-" when no policy applied (or the
  // waypoint answered before checking); the deciding policy ("namespace/name", or the
  // unmatched ALLOW policies, comma-separated) and rule index.
  std::string_view authz_result = "-";
  std::string_view authz_policy;
  std::optional<size_t> authz_rule;
  // RequestAuthentication: the token's principal ("iss/sub"), why it was refused ("expired",
  // "bad_signature", ...), "missing"; empty when no RequestAuthentication applied.
  std::string_view jwt;

  // --- the request ---
  std::string_view method;
  std::string_view authority;  // :authority or Host
  std::string_view path;       // the path as received, with the query
  HttpVersion http_version = HttpVersion::kHttp11;
  // content-type application/grpc: request_protocol="grpc" instead of "http".
  bool grpc = false;
  std::string_view user_agent;
  std::string_view request_id;  // x-request-id as forwarded (see request_id.h)
  std::string_view trace_id;    // 32 lowercase hex digits, the W3C trace id (trace_context.h)
  std::string_view span_id;     // 16 lowercase hex digits, the waypoint's span

  // --- the response ---
  // The status sent to the client; 0 when none was (the client went away first), as in Envoy.
  uint32_t response_code = 0;
  // grpc-status of the response (trailers or trailers-only); nullopt when absent.
  std::optional<uint32_t> grpc_status;
  ResponseFlags response_flags;
  uint64_t request_bytes = 0;   // request body bytes received from the client
  uint64_t response_bytes = 0;  // response body bytes sent to the client

  std::chrono::system_clock::time_point start_time;  // when the request's headers arrived
  std::chrono::microseconds duration{0};             // until the last byte was sent or reset
};

}  // namespace nodemesh::waypoint
