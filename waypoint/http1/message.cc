// Header list helpers, hop-by-hop fields and reason phrases.

#include "waypoint/http1/message.h"

#include "waypoint/http1/options.h"

#include <algorithm>
#include <array>
#include <utility>

namespace nodemesh::waypoint::http1 {

namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string toLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

// RFC 9110 §7.6.1 and RFC 9113 §8.2.2 (Proxy-Connection: the pre-standard one).
constexpr std::array<std::string_view, 6> kHopByHop = {
    "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"};

}  // namespace

std::string_view versionString(Version version) {
  return version == Version::kHttp10 ? "HTTP/1.0" : "HTTP/1.1";
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

void Headers::add(std::string_view name, std::string_view value) {
  fields_.push_back(HeaderField{std::string(name), std::string(value)});
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const HeaderField& field : fields_) {
    if (equalsIgnoreCase(field.name, name)) {
      return std::string_view{field.value};
    }
  }
  return std::nullopt;
}

std::vector<std::string_view> Headers::getAll(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const HeaderField& field : fields_) {
    if (equalsIgnoreCase(field.name, name)) {
      out.emplace_back(field.value);
    }
  }
  return out;
}

size_t Headers::count(std::string_view name) const {
  return static_cast<size_t>(
      std::count_if(fields_.begin(), fields_.end(),
                    [&](const HeaderField& field) { return equalsIgnoreCase(field.name, name); }));
}

bool Headers::hasToken(std::string_view name, std::string_view token) const {
  for (const HeaderField& field : fields_) {
    if (!equalsIgnoreCase(field.name, name)) {
      continue;
    }
    for (std::string_view element : splitList(field.value)) {
      if (equalsIgnoreCase(element, token)) {
        return true;
      }
    }
  }
  return false;
}

size_t Headers::remove(std::string_view name) {
  const size_t before = fields_.size();
  std::erase_if(fields_,
                [&](const HeaderField& field) { return equalsIgnoreCase(field.name, name); });
  return before - fields_.size();
}

std::vector<std::string_view> splitList(std::string_view value) {
  std::vector<std::string_view> out;
  while (!value.empty()) {
    const size_t comma = value.find(',');
    std::string_view element = trim(value.substr(0, comma));
    if (!element.empty()) {
      out.push_back(element);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    value.remove_prefix(comma + 1);
  }
  return out;
}

std::vector<std::string> hopByHopNames(const Headers& headers) {
  std::vector<std::string> names(kHopByHop.begin(), kHopByHop.end());
  for (std::string_view value : headers.getAll("connection")) {
    for (std::string_view element : splitList(value)) {
      std::string name = toLower(element);
      if (std::find(names.begin(), names.end(), name) == names.end()) {
        names.push_back(std::move(name));
      }
    }
  }
  return names;
}

size_t stripHopByHop(Headers& headers) {
  size_t removed = 0;
  for (const std::string& name : hopByHopNames(headers)) {
    removed += headers.remove(name);
  }
  return removed;
}

Status validateCodecOptions(const CodecOptions& options) {
  if (options.max_header_bytes == 0 || options.max_header_bytes > kParserHeaderLimit ||
      options.max_request_line_bytes == 0 ||
      options.max_request_line_bytes > options.max_header_bytes || options.max_header_count == 0 ||
      options.max_chunk_line_bytes == 0 || options.max_outstanding_requests == 0) {
    return Error::invalid("HTTP/1.1 codec options out of range");
  }
  return okStatus();
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace nodemesh::waypoint::http1
