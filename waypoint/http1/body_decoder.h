#pragma once

// Frames one message body (RFC 9112 §6, §7.1): Content-Length, chunked (strict chunk-size
// lines, bounded extensions, trailers) or until the connection closes. Body bytes are handed
// out as they arrive, as spans into the caller's input: nothing is buffered but one chunk-size
// line or one trailer section.

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "waypoint/http1/head_reader.h"
#include "waypoint/http1/message.h"
#include "waypoint/http1/options.h"

namespace nodemesh::waypoint::http1 {

class BodySink {
 public:
  virtual ~BodySink() = default;
  virtual void onBodyBytes(std::span<const uint8_t> data) = 0;
};

class BodyDecoder {
 public:
  explicit BodyDecoder(const CodecOptions& options)
      : options_(options), trailer_reader_(HeadKind::kTrailers, options) {}

  // Starts a body; kNone completes at once (feed() returns complete without consuming).
  void start(BodyFraming framing, uint64_t content_length);

  struct Step {
    size_t consumed = 0;
    bool complete = false;
    std::optional<Rejection> rejection;
  };
  // Decodes from `data`, passing body bytes to `sink`; stops after the end of the body.
  Step feed(std::span<const uint8_t> data, BodySink& sink);
  // The peer closed: true when that ends the body (kUntilClose, or nothing started).
  bool endsAtClose() const;
  // Whether some of the body is still to come.
  bool inProgress() const { return state_ != State::kDone; }
  // Bytes held between feed() calls: a partial chunk-size line or trailer section.
  size_t bufferedBytes() const { return line_.size() + trailer_reader_.raw().size(); }
  // The trailer section of a chunked body, once complete (empty when there was none).
  const Headers& trailers() const { return trailers_; }

 private:
  enum class State {
    kLength,
    kUntilClose,
    kChunkSize,
    kChunkData,
    kChunkDataCr,
    kChunkDataLf,
    kTrailers,
    kDone
  };
  std::optional<Rejection> onChunkLine();

  const CodecOptions& options_;
  State state_ = State::kDone;
  uint64_t remaining_ = 0;  // of the Content-Length or of the current chunk
  std::string line_;        // the chunk-size line so far
  bool line_cr_ = false;
  HeadReader trailer_reader_;
  Headers trailers_;
};

}  // namespace nodemesh::waypoint::http1
