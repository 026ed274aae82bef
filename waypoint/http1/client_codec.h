#pragma once

// The client side of one HTTP/1.1 connection, without I/O: requests out (to the upstream pod),
// responses in. The owner sends requests with sendRequestHead/sendBody/sendEnd, writes
// pendingOutput() to the upstream stream and feeds what comes back to receive().
//
// Rules:
// - Requests go out as HTTP/1.1 (RFC 9110 §6.2: an intermediary sends its own version), framed
//   by Content-Length when the length is known and chunked when it is not. Up to
//   CodecOptions::max_outstanding_requests may be pipelined; responses are matched to them in
//   order, and the request method decides whether a response has a body (HEAD).
// - Responses are framed per RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; chunked;
//   Content-Length; otherwise until the upstream closes (receiveEof() ends that body).
//   Interim responses (100 Continue, 103) are reported with ResponseInfo::interim and the final
//   response follows for the same request. 101 is an error: the codec never sends Upgrade (the
//   waypoint passes upgrade requests through as TCP instead).
// - Bodies are handed out as they arrive, never buffered. Any malformed response, or a
//   response nobody asked for, fails the connection (onResponseError; the owner answers its
//   own client, typically 502) and the codec refuses further input.
// - The connection may be reused (isReusable()) once every response is complete and both sides
//   kept it alive.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/result.h"
#include "waypoint/http1/body_decoder.h"
#include "waypoint/http1/head_reader.h"
#include "waypoint/http1/message.h"
#include "waypoint/http1/message_writer.h"
#include "waypoint/http1/options.h"

namespace nodemesh::waypoint::http1 {

// Events of a ClientCodec. They run inside receive() and receiveEof(); they may call the
// codec's send* and output methods, but not receive(), and must not destroy the codec.
class ClientHandler {
 public:
  virtual ~ClientHandler() = default;
  // A response head: interim (info.interim, more heads follow) or final.
  virtual void onResponseHead(const ResponseHead& head, const ResponseInfo& info) = 0;
  // Body bytes (decoded from chunked); the span is valid only during the call.
  virtual void onResponseBody(std::span<const uint8_t> data) = 0;
  // The trailer section of a chunked response, when it has fields; before onResponseComplete.
  virtual void onResponseTrailers(const Headers& /*trailers*/) {}
  virtual void onResponseComplete() = 0;
  // The response was malformed or unexpected; the connection is unusable.
  virtual void onResponseError(const Rejection& /*rejection*/) {}
};

class ClientCodec : private BodySink {
 public:
  static Result<std::unique_ptr<ClientCodec>> create(ClientHandler& handler,
                                                     const CodecOptions& options = {});
  ~ClientCodec() override = default;
  ClientCodec(const ClientCodec&) = delete;
  ClientCodec& operator=(const ClientCodec&) = delete;

  // ---- output: requests ----

  // body_length: known length (0 for none), or nullopt for a chunked body. Framing fields in
  // `head` are replaced; "Connection: close" in it makes this the last request. A head with
  // Upgrade is refused, as is CONNECT (neither is half-supported). Fails while a request is
  // still being written, when max_outstanding_requests are unanswered, or after close/failure.
  Status sendRequestHead(const RequestHead& head, std::optional<uint64_t> body_length);
  Status sendBody(std::span<const uint8_t> data);
  Status sendEnd(const Headers& trailers = {});

  std::span<const uint8_t> pendingOutput() const { return writer_.pendingOutput(); }
  void consumeOutput(size_t n) { writer_.consumeOutput(n); }
  size_t pendingBytes() const { return writer_.pendingBytes(); }

  // ---- input: responses ----

  // Parses received bytes; consumes all of them unless the response ends the connection (then
  // the rest is ignored). An error means the connection is broken.
  Result<size_t> receive(std::span<const uint8_t> data);
  // The upstream closed: completes a close-delimited response; anything else in progress is
  // an error ("upstream closed before the response was complete").
  Status receiveEof();

  // A request is unanswered or a response is arriving (the owner's response timer runs).
  bool messageInProgress() const;
  // Idle, healthy and kept alive: may serve another request.
  bool isReusable() const;
  // Close now: failed (queued output is dropped), or closing and the output is written.
  bool shouldClose() const;
  size_t outstandingRequests() const { return outstanding_.size(); }
  // Input bytes the codec holds (a partial head, chunk-size line or trailer section): never more
  // than max_header_bytes + max_chunk_line_bytes, whatever the peer sends.
  size_t bufferedBytes() const { return head_reader_.raw().size() + body_.bufferedBytes(); }

 private:
  enum class State {
    kHead,     // waiting for (or reading) the next response head
    kBody,     // reading a response body
    kClosing,  // the last response arrived (close) or no more requests may be sent
    kFailed,   // malformed response, unexpected bytes or early close
  };
  struct Outstanding {
    std::string method;
    bool close = false;  // the request asked for Connection: close
  };

  ClientCodec(ClientHandler& handler, const CodecOptions& options);
  void onBodyBytes(std::span<const uint8_t> data) override;
  void onHead();
  void completeResponse();
  void fail(const Rejection& rejection);

  ClientHandler& handler_;
  CodecOptions options_;
  HeadReader head_reader_;
  BodyDecoder body_;
  MessageWriter writer_;
  State state_ = State::kHead;
  std::deque<Outstanding> outstanding_;
  bool keep_alive_ = true;     // neither side asked to close so far
  bool last_request_ = false;  // a request with Connection: close went out
  Rejection failure_;
};

}  // namespace nodemesh::waypoint::http1
