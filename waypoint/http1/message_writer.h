#pragma once

// Serializes outgoing messages (RFC 9112 §2-§7): the start line and fields, the framing fields
// the codec decides on, the body framed by Content-Length, chunked or the close, and the end of
// the message. Output accumulates until the owner takes it (pendingOutput / consumeOutput); the
// owner bounds it by not producing more while pendingBytes() is high.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"
#include "waypoint/http1/message.h"

namespace nodemesh::waypoint::http1 {

// How the codec frames an outgoing message.
struct OutgoingFraming {
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;  // kContentLength
  // Send "Content-Length: <declared_length>" although no body follows (a response to HEAD, a
  // 304: RFC 9110 §8.6 lets them carry the length the full response would have).
  bool declare_length = false;
  uint64_t declared_length = 0;
  std::string_view connection;  // value of a Connection field to add: "close", "keep-alive", ""
};

class MessageWriter {
 public:
  // Start line and fields. The fields that carry framing (Content-Length, Transfer-Encoding,
  // Connection, Keep-Alive) are dropped from `headers` and written from `framing` instead, so a
  // message can never say two things about its length. Names must be tokens and values free of
  // CR, LF and NUL (no response splitting); the start line likewise.
  Status writeRequestHead(const RequestHead& head, const OutgoingFraming& framing);
  Status writeResponseHead(const ResponseHead& head, const OutgoingFraming& framing);
  // A 1xx response (100 Continue, 103 Early Hints): only allowed between messages.
  Status writeInterim(int status, const Headers& headers);
  // Body bytes, framed as the head said. Fails past the Content-Length, or for a message
  // without body. Empty input writes nothing (an empty chunk would end the body).
  Status writeBody(std::span<const uint8_t> data);
  // Ends the message: the last chunk and `trailers` when chunked (trailers are dropped with
  // other framings, which cannot carry them); fails if fewer bytes than the Content-Length
  // were written.
  Status writeEnd(const Headers& trailers);

  bool inMessage() const { return in_message_; }
  BodyFraming framing() const { return framing_; }

  std::span<const uint8_t> pendingOutput() const;
  void consumeOutput(size_t n);
  size_t pendingBytes() const { return out_.size() - head_; }
  void append(std::string_view bytes) { out_.append(bytes); }

 private:
  Status writeFields(const Headers& headers, const OutgoingFraming& framing);
  void startBody(const OutgoingFraming& framing);

  std::string out_;
  size_t head_ = 0;  // consumed bytes at the front of out_
  bool in_message_ = false;
  BodyFraming framing_ = BodyFraming::kNone;
  uint64_t remaining_ = 0;
};

}  // namespace nodemesh::waypoint::http1
