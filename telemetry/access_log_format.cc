#include "telemetry/access_log_format.h"

#include <algorithm>
#include <array>
#include <optional>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace nodemesh::telemetry {

namespace {

// The length of the valid UTF-8 sequence at the start of `s`, or 0 when it does not start with
// one (RFC 3629 section 4's table of well-formed byte sequences).
size_t utf8SequenceLength(std::string_view s) {
  const auto byte = [&s](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;  // no overlongs
    if (b0 == 0xed) hi = 0x9f;  // no surrogates
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;  // no overlongs
    if (b0 == 0xf4) hi = 0x8f;  // nothing past U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  }
  return n;
}

bool isControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// The bytes that make a text value need quotes, as a table: the waypoint checks every value of
// every request's line, and one lookup per byte is several times cheaper than five compares.
constexpr std::array<bool, 256> kNeedsQuoting = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  for (unsigned char c : {' ', '"', '\\', '='}) t[c] = true;
  t[0x7f] = true;
  return t;
}();

}  // namespace

std::string logTimestamp(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(ms);
  // The date and time to the second are formatted once per second and thread: lines come by the
  // thousand per second, and the calendar conversion is most of the cost.
  thread_local std::optional<std::chrono::seconds> cached_secs;
  thread_local std::string cached;  // "2026-11-18T11:06:40."
  if (secs != cached_secs) {
    cached = fmt::format("{:%Y-%m-%dT%H:%M:%S}.", std::chrono::sys_seconds{secs});
    cached_secs = secs;
  }
  std::string out;
  out.reserve(cached.size() + 4);
  out.append(cached);
  fmt::format_to(std::back_inserter(out), "{:03d}Z", static_cast<int>((ms - secs).count()));
  return out;
}

void appendLogTextValue(std::string& out, std::string_view value) {
  if (value.empty()) {
    out += '-';
    return;
  }
  const bool plain = std::none_of(value.begin(), value.end(), [](char c) {
    return kNeedsQuoting[static_cast<unsigned char>(c)];
  });
  if (plain) {
    out.append(value);
    return;
  }
  out += '"';
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (isControl(c)) {
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  out += '"';
}

std::string logTextValue(std::string_view value) {
  std::string out;
  appendLogTextValue(out, value);
  return out;
}

void appendJsonString(std::string& out, std::string_view value) {
  out += '"';
  while (!value.empty()) {
    const char c = value.front();
    const auto u = static_cast<unsigned char>(c);
    size_t consumed = 1;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      switch (c) {
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
      }
    } else if (u < 0x80) {
      out += c;
    } else if (const size_t n = utf8SequenceLength(value); n > 0) {
      out.append(value.substr(0, n));
      consumed = n;
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
    }
    value.remove_prefix(consumed);
  }
  out += '"';
}

}  // namespace nodemesh::telemetry
