#pragma once

// The server side of one HTTP/1.1 connection, without I/O: requests in (from the client's
// tunnel stream), responses out. The owner feeds received bytes to receive(), answers each
// request through sendResponseHead/sendBody/sendEnd, and writes pendingOutput() to the stream.
//
// Rules:
// - One request at a time. Pipelined requests are processed in order, and request N+1 is not
//   parsed before the response to N is complete: while the owner is responding, receive()
//   consumes nothing (wantsRead() is false) and the owner keeps the bytes and stops reading
//   its stream, which is the back-pressure. The codec never queues requests.
// - Bodies are never buffered: request body bytes go to onRequestBody as they arrive, spans
//   into the caller's input. The codec buffers at most one head, one chunk-size line or one
//   trailer section (CodecOptions).
// - Bad input (RFC 9112 §11.2 smuggling shapes and the rest of docs/waypoint.md) is answered by
//   the codec itself with the error status and "Connection: close" when no response has
//   started; after that it refuses further input (receive() fails) and shouldClose() turns true
//   once the output is written.
// - Upgrade requests (h2c, websocket) are reported by onUpgrade and not parsed further: the
//   owner falls back to TCP passthrough, starting with upgradeBytes(). CONNECT is refused (400).
// - Expect: 100-continue is reported (RequestInfo::expect_continue) and not answered by the
//   codec: the owner calls sendContinue() once it decides to take the body (after routing and
//   policy), or relays the upstream's 100, or answers with a final status at once. The body is
//   read either way (the client may send it without waiting).
// - A final response that completes before its request did closes the connection afterwards
//   (the rest of that body is never read: RFC 9112 §9.6 lets a server close instead). The head
//   does not announce it: heads may go out while a request body is still streaming.
// - The codec has no clock: the owner times requests with messageInProgress() and calls
//   timeout(), which answers 408 when a request is half-received and closes.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "common/result.h"
#include "waypoint/http1/body_decoder.h"
#include "waypoint/http1/head_reader.h"
#include "waypoint/http1/message.h"
#include "waypoint/http1/message_writer.h"
#include "waypoint/http1/options.h"

namespace nodemesh::waypoint::http1 {

// Events of a ServerCodec. They run inside receive(); they may call the codec's send*, timeout()
// and output methods, but not receive(), and must not destroy the codec.
class ServerHandler {
 public:
  virtual ~ServerHandler() = default;
  // A valid request head; answer with sendResponseHead(), now or later.
  virtual void onRequestHead(const RequestHead& head, const RequestInfo& info) = 0;
  // Body bytes (decoded from chunked); the span is valid only during the call.
  virtual void onRequestBody(std::span<const uint8_t> data) = 0;
  // The trailer section of a chunked request, when it has fields; before onRequestComplete.
  virtual void onRequestTrailers(const Headers& /*trailers*/) {}
  virtual void onRequestComplete() = 0;
  // An upgrade request (RequestInfo::upgrade): the codec stops; pass the connection through as
  // TCP, starting with upgradeBytes() and then the bytes receive() did not consume.
  virtual void onUpgrade(const RequestHead& /*head*/, const RequestInfo& /*info*/) {}
  // The codec refused the input and queued the error response (when none had started).
  virtual void onRequestError(const Rejection& /*rejection*/) {}
};

struct ServerStats {
  uint64_t requests = 0;   // heads given to onRequestHead
  uint64_t responses = 0;  // completed by sendEnd
  uint64_t rejected = 0;   // answered by the codec with an error status
  uint64_t timeouts = 0;   // 408 sent
};

class ServerCodec : private BodySink {
 public:
  // Fails when the options are out of range. `handler` must outlive the codec.
  static Result<std::unique_ptr<ServerCodec>> create(ServerHandler& handler,
                                                     const CodecOptions& options = {});
  ~ServerCodec() override = default;
  ServerCodec(const ServerCodec&) = delete;
  ServerCodec& operator=(const ServerCodec&) = delete;

  // ---- input ----

  // Parses received bytes; returns how many were consumed. Fewer than given when a request is
  // complete and its response is not (keep the rest and feed it again once wantsRead()), or
  // after onUpgrade. An error means the input was refused: write pendingOutput() and close.
  Result<size_t> receive(std::span<const uint8_t> data);
  // The client half-closed. Between requests that ends the connection; in the middle of one it
  // is an error (400 queued); after a complete request the response still goes out.
  Status receiveEof();
  bool wantsRead() const;
  // Some of a request has arrived and not all of it: the owner's request timer runs.
  bool messageInProgress() const;
  // The owner's timer fired: 408 Request Timeout with Connection: close when a request is half
  // received and no response has started; in every case no more requests are read.
  void timeout();

  // ---- output: the response to the current request ----

  // 100 Continue, for a request with expect_continue, before the final response.
  Status sendContinue();
  // Another 1xx (103 Early Hints), before the final response.
  Status sendInterim(int status, const Headers& headers);
  // The final response head. body_length: the body's size when known, else the body is
  // chunked (HTTP/1.1 client) or delimited by closing the connection (HTTP/1.0 client).
  // Framing fields in `head` are replaced (MessageWriter); "Connection: close" in it closes the
  // connection after this response. No body follows for HEAD requests, 204 and 304 (a length
  // given for HEAD or 304 is sent as Content-Length).
  Status sendResponseHead(const ResponseHead& head, std::optional<uint64_t> body_length);
  Status sendBody(std::span<const uint8_t> data);
  // Ends the response (trailers only go out when it is chunked).
  Status sendEnd(const Headers& trailers = {});

  std::span<const uint8_t> pendingOutput() const { return writer_.pendingOutput(); }
  void consumeOutput(size_t n) { writer_.consumeOutput(n); }
  size_t pendingBytes() const { return writer_.pendingBytes(); }

  // No more requests will be read; once true and the output is written, close the stream.
  bool isClosing() const;
  bool shouldClose() const;
  // After onUpgrade: the raw bytes of the upgrade request the codec consumed.
  std::string_view upgradeBytes() const;
  const ServerStats& stats() const { return stats_; }
  // Input bytes the codec holds (a partial head, chunk-size line or trailer section): never more
  // than max_header_bytes + max_chunk_line_bytes, whatever the peer sends.
  size_t bufferedBytes() const { return head_reader_.raw().size() + body_.bufferedBytes(); }

 private:
  enum class State {
    kHead,        // between requests or reading a head
    kBody,        // head delivered, reading the body
    kResponding,  // request complete, waiting for the owner to finish the response
    kUpgraded,    // onUpgrade reported; the codec is out of the way
    kClosing,     // no more input; the current response may still be finished, then close
    kFailed,      // input refused; only pendingOutput() is left
  };

  ServerCodec(ServerHandler& handler, const CodecOptions& options);
  void onBodyBytes(std::span<const uint8_t> data) override;
  void onHead();
  void fail(const Rejection& rejection);
  // Moves on when the request or the response of the current exchange completes.
  void advance();
  bool responseAllowed() const;

  ServerHandler& handler_;
  CodecOptions options_;
  HeadReader head_reader_;
  BodyDecoder body_;
  MessageWriter writer_;
  State state_ = State::kHead;
  RequestInfo info_;
  std::string method_;
  Version version_ = Version::kHttp11;
  bool request_done_ = false;
  bool response_started_ = false;
  bool response_done_ = false;
  bool continue_sent_ = false;
  bool keep_alive_ = true;  // for the current exchange
  ServerStats stats_;
};

}  // namespace nodemesh::waypoint::http1
