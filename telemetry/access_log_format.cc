#include "telemetry/access_log_format.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace nodemesh::telemetry {

namespace {

bool isControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

}  // namespace

std::string logTimestamp(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(ms);
  std::chrono::sys_seconds whole{secs};
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", whole, static_cast<int>((ms - secs).count()));
}

std::string logTextValue(std::string_view value) {
  if (value.empty()) return "-";
  bool plain = true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '\\' || c == '=' || isControl(c)) {
      plain = false;
      break;
    }
  }
  if (plain) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (isControl(c)) {
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace nodemesh::telemetry
