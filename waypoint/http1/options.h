#pragma once

// Limits of the HTTP/1.1 codec and the shape of a rejected message. Per-connection memory is
// bounded by them: the codec buffers at most one head (max_header_bytes), one chunk-size line
// (max_chunk_line_bytes) or one trailer section (max_header_bytes); bodies are never buffered.

#include <cstddef>
#include <string>

#include "common/result.h"

namespace nodemesh::waypoint::http1 {

struct CodecOptions {
  // Start line + header fields + their CRLFs; more is 431 (Envoy's default is 60 KiB too). Also
  // bounds a trailer section. At most 80 KiB: http-parser's own compile-time limit, a process-wide
  // setting we do not change.
  size_t max_header_bytes = 60 * 1024;
  // A longer request line is 414 URI Too Long (a longer status line: a malformed response).
  size_t max_request_line_bytes = 16 * 1024;
  size_t max_header_count = 100;  // more fields (or trailer fields) is 431, like Envoy
  // A chunk-size line with its extensions (RFC 9112 §7.1.1); longer is 400. Extensions are
  // never used in practice; a long one is a slow-drip attack on the parser.
  size_t max_chunk_line_bytes = 4096;
  // Client side: requests sent and not yet answered (pipelining upstream).
  size_t max_outstanding_requests = 16;
};

inline constexpr size_t kParserHeaderLimit = 80 * 1024;  // HTTP_MAX_HEADER_SIZE

// Whether the options are in range (the codecs' create() checks them).
Status validateCodecOptions(const CodecOptions& options);

// Why the codec refused a message: the status the server side answers with (400, 414, 431,
// 501, 505, 417) and a reason for logs. The client side reports it to its owner, who answers
// its own downstream (typically with 502).
struct Rejection {
  int status = 400;
  std::string reason;
};

}  // namespace nodemesh::waypoint::http1
