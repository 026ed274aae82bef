#pragma once

// Which protocol a tunnel stream speaks, from its first bytes: the waypoint parses HTTP/1.1 and
// HTTP/2 and passes everything else through as TCP.

#include <cstdint>
#include <span>

namespace nodemesh::waypoint::http1 {

enum class DetectedProtocol {
  kNeedMore,  // the bytes so far are a prefix of both an HTTP message and something else
  kHttp1,     // starts with a known method and SP ("GET ", "POST ", ...)
  kHttp2,     // the prior-knowledge connection preface (RFC 9113 §3.4)
  kOther,     // not HTTP: pass through as TCP
};

// Conservative on purpose: a TCP protocol misread as HTTP/1 would be answered with 400 and
// broken, while HTTP misread as TCP only loses L7 features. So HTTP/1 means one of the methods
// the parser knows (RFC 9110 §9 plus the WebDAV and other registered ones http-parser lists)
// followed by a single SP; "SSH-2.0-..." or a TLS ClientHello is kOther. Decides after at
// most 24 bytes (the HTTP/2 preface's length).
DetectedProtocol detectProtocol(std::span<const uint8_t> first_bytes);

}  // namespace nodemesh::waypoint::http1
