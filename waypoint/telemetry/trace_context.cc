#include "waypoint/telemetry/trace_context.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace nodemesh::waypoint {

namespace {

constexpr size_t kVersion00Length = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2
constexpr char kHex[] = "0123456789abcdef";

bool isLowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool allLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), isLowerHex);
}

bool allZero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

uint8_t hexValue(char c) {
  return static_cast<uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10);
}

std::string_view trimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

template <size_t N>
void randomHex(std::array<char, N>& out, RandomBytes& random) {
  std::array<uint8_t, N / 2> bytes{};
  // An all-zero id is invalid [3.2.2.3/4]: draw again (a 2^-64 event at worst).
  do {
    random.fill(bytes);
  } while (std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; }));
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0x0f];
  }
}

// Splits a tracestate list on ',' and drops empty members (the list may have them, 3.3.1.1).
std::vector<std::string_view> members(std::string_view list) {
  std::vector<std::string_view> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view member = trimOws(list.substr(0, comma));
    if (!member.empty()) out.push_back(member);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

std::string TraceContext::traceparent() const {
  return fmt::format("00-{}-{}-{:02x}", traceId(), spanId(), flags);
}

Result<TraceContext> parseTraceparent(std::string_view value) {
  value = trimOws(value);
  if (value.size() < 3 || value[2] != '-') {
    return Error::invalid("traceparent: no 2-digit version followed by '-'");
  }
  const std::string_view version = value.substr(0, 2);
  if (!allLowerHex(version)) return Error::invalid("traceparent: version is not lowercase hex");
  if (version == "ff") return Error::invalid("traceparent: version ff is invalid");
  const bool v00 = version == "00";
  if (value.size() < kVersion00Length) return Error::invalid("traceparent: too short");
  if (v00 && value.size() != kVersion00Length) {
    return Error::invalid("traceparent: version 00 has exactly 4 fields");
  }
  if (!v00 && value.size() > kVersion00Length && value[kVersion00Length] != '-') {
    return Error::invalid("traceparent: flags not followed by '-' or the end");
  }
  if (value[35] != '-' || value[52] != '-') {
    return Error::invalid("traceparent: fields not separated by '-'");
  }
  const std::string_view trace_id = value.substr(3, 32);
  const std::string_view span_id = value.substr(36, 16);
  const std::string_view flags = value.substr(53, 2);
  if (!allLowerHex(trace_id) || !allLowerHex(span_id) || !allLowerHex(flags)) {
    return Error::invalid("traceparent: a field is not lowercase hex");
  }
  if (allZero(trace_id)) return Error::invalid("traceparent: trace-id is all zeros");
  if (allZero(span_id)) return Error::invalid("traceparent: parent-id is all zeros");

  TraceContext ctx;
  std::copy(trace_id.begin(), trace_id.end(), ctx.trace_id.begin());
  std::copy(span_id.begin(), span_id.end(), ctx.span_id.begin());
  ctx.flags = static_cast<uint8_t>(hexValue(flags[0]) << 4 | hexValue(flags[1]));
  // A later version's other flag bits may mean anything: keep only "sampled" (3.2.4).
  if (!v00) ctx.flags &= kTraceFlagSampled;
  return ctx;
}

std::string boundTracestate(std::string_view tracestate) {
  tracestate = trimOws(tracestate);
  const size_t commas = static_cast<size_t>(std::count(tracestate.begin(), tracestate.end(), ','));
  if (tracestate.size() <= kMaxTracestateLength && commas < kMaxTracestateMembers) {
    return std::string(tracestate);
  }
  std::vector<std::string_view> list = members(tracestate);
  auto joined_size = [&list] {
    size_t n = list.empty() ? 0 : list.size() - 1;
    for (std::string_view m : list) n += m.size();
    return n;
  };
  // Members over 128 characters go first, then members from the end (3.3.1.5).
  if (joined_size() > kMaxTracestateLength) {
    std::erase_if(list, [](std::string_view m) { return m.size() > 128; });
  }
  while (!list.empty() &&
         (joined_size() > kMaxTracestateLength || list.size() > kMaxTracestateMembers)) {
    list.pop_back();
  }
  std::string out;
  for (std::string_view m : list) {
    if (!out.empty()) out += ',';
    out += m;
  }
  return out;
}

HopTrace continueTrace(const InboundTrace& in, RandomBytes& random) {
  HopTrace hop;
  std::optional<TraceContext> inbound;
  if (in.traceparent && !in.traceparent_repeated) {
    Result<TraceContext> parsed = parseTraceparent(*in.traceparent);
    if (parsed.ok()) inbound = parsed.value();
  }
  if (inbound) {
    hop.context.trace_id = inbound->trace_id;
    hop.context.flags = inbound->flags;
    hop.parent_span_id = inbound->span_id;
    if (in.tracestate) hop.tracestate = boundTracestate(*in.tracestate);
  } else {
    // A new trace, sampled so that the request's path shows up; no tracestate belongs to it.
    randomHex(hop.context.trace_id, random);
    hop.context.flags = kTraceFlagSampled;
    hop.restarted = true;
  }
  do {
    randomHex(hop.context.span_id, random);
  } while (hop.parent_span_id && *hop.parent_span_id == hop.context.span_id);
  return hop;
}

}  // namespace nodemesh::waypoint
