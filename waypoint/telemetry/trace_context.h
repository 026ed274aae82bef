#pragma once

// W3C Trace Context (https://www.w3.org/TR/trace-context/) at the waypoint: read the client's
// `traceparent` strictly, continue its trace with a span of our own, pass `tracestate` on, and
// start a new sampled trace when the client sent none or a broken one. Pure functions; the
// randomness comes from a RandomBytes.
//
// Rules enforced (spec section in brackets):
//   [3.2.2.1] version: 2 lowercase hex digits, "ff" invalid. Version 00 is exactly
//             `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>` (55 characters).
//   [3.2.2.3/4] hex digits lowercase only; an all-zero trace-id or parent-id is invalid.
//   [3.2.4]   a higher version is read by its first four fields: at least 55 characters, the
//             same fields, then the end or a '-' (what follows is that version's business);
//             only the sampled bit of its flags is kept, since later bits mean what we cannot
//             know.
//   [3.3]     tracestate goes on unchanged; when the combined value is over 512 characters or
//             32 members it is cut the spec's way (members over 128 characters first, then from
//             the end). Without a valid traceparent tracestate is dropped [3.3.1].
//   Two traceparent headers make the request's trace invalid [3.2]: the codec says so.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "waypoint/telemetry/random_bytes.h"

namespace nodemesh::waypoint {

using TraceIdHex = std::array<char, 32>;  // lowercase hex, never all '0'
using SpanIdHex = std::array<char, 16>;   // lowercase hex, never all '0'

inline constexpr size_t kMaxTracestateLength = 512;
inline constexpr size_t kMaxTracestateMembers = 32;
inline constexpr uint8_t kTraceFlagSampled = 0x01;

// One span's position in a trace: what `traceparent` carries.
struct TraceContext {
  TraceIdHex trace_id{};
  SpanIdHex span_id{};  // traceparent's parent-id: the sender's span
  uint8_t flags = 0;

  bool sampled() const { return (flags & kTraceFlagSampled) != 0; }
  std::string_view traceId() const { return {trace_id.data(), trace_id.size()}; }
  std::string_view spanId() const { return {span_id.data(), span_id.size()}; }
  // "00-<trace-id>-<span-id>-<flags>", the value to send upstream.
  std::string traceparent() const;
  bool operator==(const TraceContext&) const = default;
};

// The traceparent value as received (surrounding spaces and tabs, HTTP's OWS, are ignored).
// The error says which rule failed.
Result<TraceContext> parseTraceparent(std::string_view value);

// The trace headers of a request as the codec received them.
struct InboundTrace {
  std::optional<std::string_view> traceparent;
  bool traceparent_repeated = false;  // more than one traceparent field: invalid
  // Several tracestate fields are one list joined with ',' (RFC 9110 5.3): the codec joins them.
  std::optional<std::string_view> tracestate;
};

// The waypoint's hop in the trace.
struct HopTrace {
  // The waypoint's span: the client's trace id and flags (or a new sampled trace), and a new
  // span id. context.traceparent() is what the upstream request carries.
  TraceContext context;
  // The client's span (the inbound parent-id), when the trace continued.
  std::optional<SpanIdHex> parent_span_id;
  // What the upstream request carries as tracestate; empty: send none.
  std::string tracestate;
  // No valid traceparent arrived; a new trace began here.
  bool restarted = false;
};

HopTrace continueTrace(const InboundTrace& in, RandomBytes& random);

// tracestate bounded as [3.3.1.5] says a vendor may cut it; unchanged when within the bounds.
std::string boundTracestate(std::string_view tracestate);

}  // namespace nodemesh::waypoint
