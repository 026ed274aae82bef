#include "model/route_validation.h"

#include <fmt/format.h>
#include <re2/re2.h>

#include <array>
#include <cctype>
#include <charconv>
#include <string>

#include "common/ip_address.h"

namespace nodemesh::model {
namespace {

constexpr size_t kMaxPathLength = 1024;
constexpr size_t kMaxHostnameLength = 253;

bool isLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

bool isHexDigit(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

// RFC 3986 pchar plus '/': unreserved, sub-delims, ':', '@' (the CRD's path pattern).
bool isPathChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c)) != 0) return true;
  constexpr std::string_view kOthers = "-/._~!$&'()*+,;=:@";
  return kOthers.find(c) != std::string_view::npos;
}

// [a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*
bool isDnsSubdomain(std::string_view name) {
  if (name.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || !isLowerAlnum(label.front()) || !isLowerAlnum(label.back())) return false;
    for (char c : label) {
      if (!isLowerAlnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool isIdentifier(std::string_view s) {
  if (s.empty() || isDigit(s.front())) return false;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '_') return false;
  }
  return true;
}

// Reads exactly `n` digits at `pos`.
bool readDigits(std::string_view text, size_t& pos, size_t n, int& out) {
  if (pos + n > text.size()) return false;
  auto [ptr, ec] = std::from_chars(text.data() + pos, text.data() + pos + n, out);
  if (ec != std::errc() || ptr != text.data() + pos + n) return false;
  pos += n;
  return true;
}

bool expect(std::string_view text, size_t& pos, std::string_view chars) {
  if (pos >= text.size() || chars.find(text[pos]) == std::string_view::npos) return false;
  ++pos;
  return true;
}

}  // namespace

Status checkRegex(std::string_view pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  RE2 re(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re.ok()) return Error::invalid("not an RE2 regular expression: " + re.error());
  return okStatus();
}

Status checkPathValue(std::string_view path) {
  if (path.size() > kMaxPathLength) return Error::invalid("longer than 1024 characters");
  if (path.empty() || path.front() != '/') return Error::invalid("must start with '/'");
  for (std::string_view bad : {"//", "/./", "/../", "%2f", "%2F", "#"}) {
    if (path.find(bad) != std::string_view::npos) {
      return Error::invalid("must not contain '" + std::string(bad) + "'");
    }
  }
  if (path.ends_with("/.") || path.ends_with("/..")) {
    return Error::invalid("must not end with '/.' or '/..'");
  }
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%') {
      if (i + 2 >= path.size() || !isHexDigit(path[i + 1]) || !isHexDigit(path[i + 2])) {
        return Error::invalid("'%' must start a percent-encoded byte such as %20");
      }
      i += 2;
    } else if (!isPathChar(path[i])) {
      return Error::invalid("character '" + std::string(1, path[i]) + "' is not allowed in a path");
    }
  }
  return okStatus();
}

Status checkHostname(std::string_view hostname, bool allow_wildcard) {
  if (hostname.size() > kMaxHostnameLength) return Error::invalid("longer than 253 characters");
  if (IpAddress::parse(hostname)) return Error::invalid("an IP address is not a hostname");
  std::string_view rest = hostname;
  if (allow_wildcard && rest.starts_with("*.")) rest.remove_prefix(2);
  if (!isDnsSubdomain(rest)) {
    return Error::invalid(
        fmt::format("'{}' is not a lowercase RFC 1123 hostname{}", hostname,
                    allow_wildcard ? " (a wildcard is only allowed as '*.' first)" : ""));
  }
  return okStatus();
}

Status checkHeaderName(std::string_view name) {
  if (name.empty()) return Error::invalid("empty header name");
  if (name.size() > 256) return Error::invalid("longer than 256 characters");
  constexpr std::string_view kTokenChars = "!#$%&'*+-.^_`|~";
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 &&
        kTokenChars.find(c) == std::string_view::npos) {
      return Error::invalid(fmt::format("'{}' is not an HTTP header name (RFC 7230)", name));
    }
  }
  return okStatus();
}

Status checkSectionName(std::string_view name) {
  if (name.size() > kMaxHostnameLength || !isDnsSubdomain(name)) {
    return Error::invalid(
        fmt::format("'{}' is not a lowercase DNS name (letters, digits, '-' and '.')", name));
  }
  return okStatus();
}

Status checkGrpcService(std::string_view service) {
  std::string_view rest = service;
  if (rest.starts_with('.')) rest.remove_prefix(1);
  size_t start = 0;
  while (true) {
    size_t dot = rest.find('.', start);
    std::string_view part =
        rest.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!isIdentifier(part)) {
      return Error::invalid(
          fmt::format("'{}' is not a gRPC service name such as 'pkg.Service'", service));
    }
    if (dot == std::string_view::npos) return okStatus();
    start = dot + 1;
  }
}

Status checkGrpcMethod(std::string_view method) {
  if (!isIdentifier(method)) {
    return Error::invalid(fmt::format("'{}' is not a gRPC method name", method));
  }
  return okStatus();
}

Result<std::chrono::milliseconds> parseGatewayDuration(std::string_view text) {
  auto bad = [&] {
    return Error::invalid(
        fmt::format("'{}' is not a duration such as 1h, 30s or 500ms (GEP-2257)", text));
  };
  std::chrono::milliseconds total{0};
  size_t pos = 0;
  int parts = 0;
  while (pos < text.size()) {
    size_t digits = 0;
    while (pos + digits < text.size() && isDigit(text[pos + digits])) ++digits;
    if (digits == 0 || digits > 5 || ++parts > 4) return bad();
    int64_t value = 0;
    std::from_chars(text.data() + pos, text.data() + pos + digits, value);
    pos += digits;
    std::string_view rest = text.substr(pos);
    if (rest.starts_with("ms")) {
      total += std::chrono::milliseconds(value);
      pos += 2;
    } else if (rest.starts_with('h')) {
      total += std::chrono::hours(value);
      ++pos;
    } else if (rest.starts_with('m')) {
      total += std::chrono::minutes(value);
      ++pos;
    } else if (rest.starts_with('s')) {
      total += std::chrono::seconds(value);
      ++pos;
    } else {
      return bad();
    }
  }
  if (parts == 0) return bad();
  return total;
}

Result<std::chrono::sys_seconds> parseTimestamp(std::string_view text) {
  auto bad = [&] {
    return Error::invalid(
        fmt::format("'{}' is not an RFC 3339 time such as 2024-05-01T10:00:00Z", text));
  };
  size_t pos = 0;
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  if (!readDigits(text, pos, 4, year) || !expect(text, pos, "-") ||
      !readDigits(text, pos, 2, month) || !expect(text, pos, "-") ||
      !readDigits(text, pos, 2, day) || !expect(text, pos, "Tt") ||
      !readDigits(text, pos, 2, hour) || !expect(text, pos, ":") ||
      !readDigits(text, pos, 2, minute) || !expect(text, pos, ":") ||
      !readDigits(text, pos, 2, second)) {
    return bad();
  }
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < text.size() && isDigit(text[pos])) ++pos;
    if (pos == start) return bad();
  }
  int offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = 0;
    int om = 0;
    if (!readDigits(text, pos, 2, oh) || !expect(text, pos, ":") || !readDigits(text, pos, 2, om) ||
        oh > 23 || om > 59) {
      return bad();
    }
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return bad();
  }
  if (pos != text.size() || hour > 23 || minute > 59 || second > 60) return bad();
  std::chrono::year_month_day ymd{std::chrono::year(year),
                                  std::chrono::month(static_cast<unsigned>(month)),
                                  std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return bad();
  return std::chrono::sys_seconds{std::chrono::sys_days{ymd}} + std::chrono::hours(hour) +
         std::chrono::minutes(minute - offset_minutes) + std::chrono::seconds(second);
}

}  // namespace nodemesh::model
