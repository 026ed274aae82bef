#pragma once

// What the node agent's and the waypoint's access logs share: the text/JSON switch
// (--access-log-format), the timestamp and the quoting of text values, so that one parser
// reads the lines of both.

#include <chrono>
#include <string>
#include <string_view>

namespace nodemesh::telemetry {

enum class AccessLogFormat { kText, kJson };

// RFC 3339 in UTC with milliseconds: "2026-11-18T11:06:40.123Z".
std::string logTimestamp(std::chrono::system_clock::time_point t);

// A `key=value` value of a text line: "-" when empty; as is when it has no space, quote,
// backslash, '=' or control character; else double-quoted with `"` and `\` escaped and control
// characters as \n, \r, \t or \xHH, so that no value (a request path, a user agent) can break a
// line in two or forge a field.
std::string logTextValue(std::string_view value);
// The same, appended to `out` (no string of its own: the waypoint writes a line per request).
void appendLogTextValue(std::string& out, std::string_view value);

// Appends `value` as a JSON string (RFC 8259) with its quotes: `"` and `\` escaped, control
// characters as \b \f \n \r \t or \u00XX, and each byte that is not part of valid UTF-8
// (RFC 3629: no overlongs, surrogates or code points past U+10FFFF) replaced by U+FFFD, as
// nlohmann::json's dump(..., error_handler_t::replace) writes it, at a fraction of the cost of
// building a json object per log line.
void appendJsonString(std::string& out, std::string_view value);

}  // namespace nodemesh::telemetry
