// Head validation and framing decisions. Each check names the RFC 9112 / 9110 section it
// enforces; http-parser runs last, as a second opinion on the same bytes.

#include "waypoint/http1/head_parser.h"

#include <http_parser.h>

#include <cstring>
#include <string>

namespace nodemesh::waypoint::http1 {

namespace {

Rejection reject(int status, std::string reason) {
  return Rejection{status, std::move(reason)};
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

bool isAlnum(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool isTchar(char c) {
  return isAlnum(c) || (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

// field-vchar / SP / HTAB, obs-text included (RFC 9110 §5.5): no CTL, no DEL.
bool isFieldValueChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// RFC 9112 §5: field-line = field-name ":" OWS field-value OWS.
std::optional<Rejection> parseFieldLine(std::string_view line, Headers& out) {
  if (line.front() == ' ' || line.front() == '\t') {
    // §5.2: obs-fold is deprecated; a proxy must reject it or replace it, and replacing it
    // would forward something the client did not send. (Also covers whitespace between the
    // start line and the first field, §2.2.)
    return reject(400, "obs-fold line continuation in a header field");
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return reject(400, "header field line without a colon");
  }
  const std::string_view name = line.substr(0, colon);
  if (name.empty()) {
    return reject(400, "empty header field name");
  }
  if (name.back() == ' ' || name.back() == '\t') {
    // §5.1: a server MUST reject whitespace between the field name and the colon with 400.
    return reject(400, "whitespace between a header field name and the colon");
  }
  if (!isToken(name)) {
    return reject(400, "invalid character in a header field name");
  }
  const std::string_view value = trimOws(line.substr(colon + 1));
  for (char c : value) {
    if (!isFieldValueChar(c)) {
      return reject(400, "control character in a header field value");
    }
  }
  out.add(name, value);
  return std::nullopt;
}

std::optional<Rejection> parseFields(const HeadReader& reader, Headers& out) {
  for (std::string_view line : reader.fieldLines()) {
    if (auto rejection = parseFieldLine(line, out)) {
      return rejection;
    }
  }
  return std::nullopt;
}

// HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3); only 1.0 and 1.1 are ours.
std::optional<Rejection> parseVersion(std::string_view s, Version& version) {
  if (s.size() != 8 || s.substr(0, 5) != "HTTP/" || !isDigit(s[5]) || s[6] != '.' ||
      !isDigit(s[7])) {
    return reject(400, "malformed HTTP version");
  }
  if (s[5] == '1' && s[7] == '1') {
    version = Version::kHttp11;
  } else if (s[5] == '1' && s[7] == '0') {
    version = Version::kHttp10;
  } else {
    return reject(505, "HTTP version other than 1.0 or 1.1");
  }
  return std::nullopt;
}

// Content-Length = 1*DIGIT (RFC 9110 §8.6). A repeated field is refused even with equal values
// (the RFC allows merging them): one more field is one more way for two parsers to disagree.
std::optional<Rejection> parseContentLength(const Headers& headers, uint64_t& length) {
  const std::vector<std::string_view> values = headers.getAll("content-length");
  if (values.size() > 1) {
    return reject(400, "repeated Content-Length");
  }
  const std::string_view value = values.front();
  if (value.empty() || value.size() > 19) {
    return reject(400, "Content-Length is not a number below 10^19");
  }
  length = 0;
  for (char c : value) {
    if (!isDigit(c)) {
      return reject(400, "Content-Length is not a number");
    }
    length = length * 10 + static_cast<uint64_t>(c - '0');
  }
  return std::nullopt;
}

// Transfer-Encoding (RFC 9112 §6.1): the codings in order, all fields joined.
std::vector<std::string_view> transferCodings(const Headers& headers) {
  std::vector<std::string_view> codings;
  for (std::string_view value : headers.getAll("transfer-encoding")) {
    for (std::string_view element : splitList(value)) {
      codings.push_back(element);
    }
  }
  return codings;
}

// uri-host [ ":" port ] with the characters of reg-name / IP-literal / IPv4 (RFC 3986 §3.2.2);
// no userinfo ("@"), no path.
bool isValidAuthority(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!isAlnum(c) && std::strchr("-._~!$&'()*+,;=:[]%", c) == nullptr) {
      return false;
    }
  }
  return true;
}

// http-parser, run over the raw head with the body skipped: the second opinion on the request
// or status line and on Content-Length / Transfer-Encoding.
struct ParserRun {
  bool headers_done = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
};

int onHeadersComplete(http_parser* parser) {
  auto* run = static_cast<ParserRun*>(parser->data);
  run->headers_done = true;
  run->has_content_length = (parser->flags & F_CONTENTLENGTH) != 0;
  run->content_length = parser->content_length;
  return 1;  // skip the body: BodyDecoder frames it
}

std::optional<Rejection> runHttpParser(std::string_view raw, http_parser_type type,
                                       ParserRun& run) {
  http_parser parser;
  http_parser_init(&parser, type);
  parser.data = &run;
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_headers_complete = &onHeadersComplete;
  http_parser_execute(&parser, &settings, raw.data(), raw.size());
  const auto err = static_cast<http_errno>(parser.http_errno);
  if (err == HPE_INVALID_METHOD) {
    // A token, but not a method the parser (or the waypoint) knows: RFC 9110 §9.1.
    return reject(501, "method not implemented");
  }
  if (err == HPE_HEADER_OVERFLOW) {
    return reject(431, "header section larger than the parser's limit");
  }
  if (err != HPE_OK) {
    return reject(400, std::string("http-parser: ") + http_errno_description(err));
  }
  if (!run.headers_done) {
    return reject(400, "http-parser did not see the end of the head");
  }
  return std::nullopt;
}

std::optional<Rejection> checkTarget(const RequestHead& head, RequestInfo& info) {
  const std::string_view target = head.target;
  if (target.find('#') != std::string_view::npos) {
    return reject(400, "fragment in the request target");  // RFC 9112 §3.2: not in a target
  }
  if (head.method == "CONNECT") {
    // Authority-form (§3.2.3) is only for CONNECT, and the waypoint is not a forward proxy: a
    // tunnel inside the tunnel would carry bytes past L7 routing and policy.
    return reject(400, "CONNECT is not supported inside the waypoint");
  }
  if (target == "*") {
    if (head.method != "OPTIONS") {
      return reject(400, "asterisk-form target outside OPTIONS");  // §3.2.4
    }
    info.target_form = TargetForm::kAsterisk;
    info.path.assign(1, '*');
    return std::nullopt;
  }
  if (target.front() == '/') {
    info.target_form = TargetForm::kOrigin;
    info.path = std::string(target);
    return std::nullopt;
  }
  const size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) {
    return reject(400, "request target is neither origin-form, absolute-form nor asterisk-form");
  }
  // §3.2.2 absolute-form: the target's authority replaces Host.
  const std::string_view scheme = target.substr(0, scheme_end);
  if (!equalsIgnoreCase(scheme, "http") && !equalsIgnoreCase(scheme, "https")) {
    return reject(400, "absolute-form target with a scheme other than http or https");
  }
  const std::string_view rest = target.substr(scheme_end + 3);
  const size_t path_start = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, path_start);
  if (!isValidAuthority(authority)) {
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be rejected.
    return reject(400, "invalid authority in the absolute-form target");
  }
  info.target_form = TargetForm::kAbsolute;
  info.scheme = std::string(scheme);
  info.authority = std::string(authority);
  const std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  // (Appends rather than "/" + string or = "/": GCC 12 -O3 warns falsely on those, PR 105329.)
  info.path.clear();
  if (path.empty() || path.front() == '?') info.path.push_back('/');
  info.path.append(path);
  return std::nullopt;
}

std::optional<Rejection> deriveRequestInfo(const RequestHead& head, RequestInfo& info) {
  const Headers& headers = head.headers;
  const bool http11 = head.version == Version::kHttp11;
  // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, valid when present. An empty Host is legal
  // for URIs without authority, but the waypoint routes by it.
  const std::vector<std::string_view> hosts = headers.getAll("host");
  if (hosts.size() > 1) {
    return reject(400, "more than one Host field");
  }
  if (hosts.empty() && http11) {
    return reject(400, "HTTP/1.1 request without Host");
  }
  if (!hosts.empty()) {
    if (!isValidAuthority(hosts.front())) {
      return reject(400, "invalid Host");
    }
    info.authority = std::string(hosts.front());
  }
  if (auto rejection = checkTarget(head, info)) {
    return rejection;
  }
  const std::vector<std::string_view> codings = transferCodings(headers);
  if (headers.has("transfer-encoding")) {
    if (!http11) {
      // §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
      return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if (headers.has("content-length")) {
      // §6.3 (3) and §11.2: the classic smuggling shape; a proxy must not pick one.
      return reject(400, "both Content-Length and Transfer-Encoding");
    }
    if (codings.empty() || !equalsIgnoreCase(codings.back(), "chunked")) {
      // §6.3 (4): a request whose final coding is not chunked has no determinable length.
      return reject(400, "Transfer-Encoding whose final coding is not chunked");
    }
    for (size_t i = 0; i + 1 < codings.size(); ++i) {
      if (equalsIgnoreCase(codings[i], "chunked")) {
        return reject(400, "chunked applied more than once");  // §6.1
      }
      if (!isToken(codings[i])) {
        return reject(400, "invalid transfer coding");
      }
    }
    if (codings.size() > 1) {
      // §6.1: a server that does not understand a coding responds 501. We only forward
      // chunked (re-framed), so every other coding is unknown to us.
      return reject(501, "transfer coding other than chunked");
    }
    info.framing = BodyFraming::kChunked;
  } else if (headers.has("content-length")) {
    if (auto rejection = parseContentLength(headers, info.content_length)) {
      return rejection;
    }
    info.framing = info.content_length > 0 ? BodyFraming::kContentLength : BodyFraming::kNone;
  }
  // §9.3: persistence by version and Connection.
  const bool close = headers.hasToken("connection", "close");
  info.keep_alive = http11 ? !close : headers.hasToken("connection", "keep-alive") && !close;
  // RFC 9110 §10.1.1: 100-continue is the only expectation; others get 417. HTTP/1.0 clients
  // cannot expect anything (a server MUST ignore it).
  if (http11) {
    for (std::string_view value : headers.getAll("expect")) {
      for (std::string_view element : splitList(value)) {
        if (!equalsIgnoreCase(element, "100-continue")) {
          return reject(417, "unsupported expectation");
        }
        info.expect_continue = true;
      }
    }
  }
  // RFC 9110 §7.8: Upgrade counts only with "Connection: upgrade", and not in HTTP/1.0.
  info.upgrade = http11 && headers.has("upgrade") && headers.hasToken("connection", "upgrade");
  return std::nullopt;
}

}  // namespace

bool isToken(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!isTchar(c)) {
      return false;
    }
  }
  return true;
}

std::optional<Rejection> parseRequestHead(const HeadReader& reader, RequestHead& head,
                                          RequestInfo& info) {
  // RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces.
  const std::string_view line = reader.startLine();
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    return reject(400, "malformed request line");
  }
  head.method = std::string(line.substr(0, sp1));
  head.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  if (!isToken(head.method)) {
    return reject(400, "invalid method");
  }
  if (head.target.empty()) {
    return reject(400, "empty request target");
  }
  for (char c : head.target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return reject(400, "invalid character in the request target");
    }
  }
  if (auto rejection = parseVersion(line.substr(sp2 + 1), head.version)) {
    return rejection;
  }
  if (auto rejection = parseFields(reader, head.headers)) {
    return rejection;
  }
  if (auto rejection = deriveRequestInfo(head, info)) {
    return rejection;
  }
  ParserRun run;
  if (auto rejection = runHttpParser(reader.raw(), HTTP_REQUEST, run)) {
    return rejection;
  }
  const bool ours = head.headers.has("content-length");
  if (run.has_content_length != ours || (ours && run.content_length != info.content_length)) {
    return reject(400, "parsers disagree on Content-Length");
  }
  return std::nullopt;
}

std::optional<Rejection> parseResponseHead(const HeadReader& reader,
                                           std::string_view request_method, ResponseHead& head,
                                           ResponseInfo& info) {
  // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; the SP before
  // an empty reason is commonly left out, and harmless.
  const std::string_view line = reader.startLine();
  if (line.size() < 12 || line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) ||
      !isDigit(line[11]) || (line.size() > 12 && line[12] != ' ')) {
    return reject(502, "malformed status line");
  }
  if (auto rejection = parseVersion(line.substr(0, 8), head.version)) {
    return reject(502, rejection->reason);
  }
  head.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  head.reason = line.size() > 13 ? std::string(line.substr(13)) : std::string();
  for (char c : head.reason) {
    if (!isFieldValueChar(c)) {
      return reject(502, "control character in the reason phrase");
    }
  }
  if (head.status < 100) {
    return reject(502, "status code below 100");
  }
  if (auto rejection = parseFields(reader, head.headers)) {
    return reject(502, rejection->reason);
  }
  const Headers& headers = head.headers;
  if (head.status == 101) {
    // The codec never sends Upgrade (upgrade requests fall back to TCP passthrough).
    return reject(502, "101 Switching Protocols without an upgrade request");
  }
  info.interim = head.status < 200;
  if (headers.has("transfer-encoding")) {
    const std::vector<std::string_view> codings = transferCodings(headers);
    if (head.version == Version::kHttp10 || headers.has("content-length")) {
      return reject(502, "Transfer-Encoding in HTTP/1.0 or with Content-Length");  // §6.1, §6.3
    }
    if (codings.size() != 1 && !codings.empty() && equalsIgnoreCase(codings.back(), "chunked")) {
      return reject(502, "transfer coding other than chunked");
    }
    // §6.3 (4): a response whose final coding is not chunked runs until the close.
    info.framing = !codings.empty() && equalsIgnoreCase(codings.back(), "chunked")
                       ? BodyFraming::kChunked
                       : BodyFraming::kUntilClose;
  } else if (headers.has("content-length")) {
    if (auto rejection = parseContentLength(headers, info.content_length)) {
      return reject(502, rejection->reason);
    }
    info.framing = info.content_length > 0 ? BodyFraming::kContentLength : BodyFraming::kNone;
  } else {
    info.framing = BodyFraming::kUntilClose;  // §6.3 (8)
  }
  // §6.3 (1): no body after HEAD, in 1xx, 204 and 304, whatever the fields say.
  if (request_method == "HEAD" || info.interim || head.status == 204 || head.status == 304) {
    info.framing = BodyFraming::kNone;
  }
  const bool close = headers.hasToken("connection", "close");
  info.keep_alive = head.version == Version::kHttp11
                        ? !close
                        : headers.hasToken("connection", "keep-alive") && !close;
  if (info.framing == BodyFraming::kUntilClose) {
    info.keep_alive = false;
  }
  ParserRun run;
  if (auto rejection = runHttpParser(reader.raw(), HTTP_RESPONSE, run)) {
    return reject(502, rejection->reason);
  }
  return std::nullopt;
}

std::optional<Rejection> parseTrailers(const HeadReader& reader, Headers& trailers) {
  return parseFields(reader, trailers);
}

}  // namespace nodemesh::waypoint::http1
