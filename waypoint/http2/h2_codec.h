#pragma once

// The waypoint's L7 HTTP/2 codec: ordinary requests and responses with bodies and trailers
// (RFC 9113 §8.1), gRPC included, sans-I/O over nghttp2. One codec per HTTP/2 connection, used
// from one thread: as a server for the requests a client sends inside an HBONE stream (prior
// knowledge, no h2c upgrade), as a client for the requests the waypoint multiplexes onto an
// upstream connection. The owner feeds received bytes to receive() and writes pendingOutput().
//
// Bounded by construction (docs/waypoint.md "HTTP/2 and gRPC"):
// - Receiving: DATA reaches H2CodecHandler::onData and the windows reopen only when the owner
//   calls consumed(), so a connection holds at most its connection window of unread body.
// - Sending: sendData() queues at most max_send_queue_bytes per stream and
//   max_send_queue_total_bytes per connection and returns what it took; onWritable follows.
// - Control frames the peer provokes (PING/SETTINGS ACKs, RST_STREAM) that the owner has not
//   written count against max_pending_output_bytes, then nghttp2's max_outbound_ack.
// - Floods (rapid reset, CONTINUATION, empty frames, PING/SETTINGS) end the connection with
//   GOAWAY ENHANCE_YOUR_CALM; malformed requests (RFC 9113 §8.1.1) end their stream with
//   PROTOCOL_ERROR; other connection errors send GOAWAY with their code. receive() then fails.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "hbone/byte_queue.h"
#include "hbone/h2_errors.h"
#include "waypoint/http2/http_head.h"

struct nghttp2_session;

namespace nodemesh::waypoint::http2 {

using StreamId = int32_t;
using Clock = std::chrono::steady_clock;

enum class Role { kClient, kServer };

struct H2CodecOptions {
  uint32_t initial_stream_window = 1024 * 1024;  // SETTINGS_INITIAL_WINDOW_SIZE
  uint32_t connection_window = 4 * 1024 * 1024;  // raised by WINDOW_UPDATE at start
  // Server: advertised SETTINGS_MAX_CONCURRENT_STREAMS; more get REFUSED_STREAM. Client: the
  // most streams opened even if the peer allows more.
  uint32_t max_concurrent_streams = 100;
  // SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2 size), enforced per header block: a larger
  // request gets 431, larger trailers or a larger response reset the stream.
  uint32_t max_header_list_bytes = 64 * 1024;
  // CONTINUATION frames after one HEADERS (nghttp2_option_set_max_continuations).
  size_t max_continuations = 8;
  // SETTINGS ACK + PING ACK frames queued inside nghttp2 (nghttp2_option_set_max_outbound_ack).
  size_t max_outbound_ack = 1000;
  size_t max_settings_entries = 32;  // per SETTINGS frame (nghttp2_option_set_max_settings)
  // Rapid reset (CVE-2023-44487), server: peer streams reset by the peer before our response
  // HEADERS went out, counted in a fixed window; more than the limit is a flood.
  uint32_t premature_reset_limit = 100;
  std::chrono::milliseconds premature_reset_window{10000};
  // nghttp2's own token bucket over every RST_STREAM received (server; GOAWAY INTERNAL_ERROR).
  uint64_t reset_rate_burst = 1000;
  uint64_t reset_rate_per_second = 33;
  // Consecutive DATA frames without payload and without END_STREAM (CVE-2019-9518).
  uint32_t max_consecutive_empty_frames = 16;
  size_t max_send_queue_bytes = 256 * 1024;             // per stream, see sendData()
  size_t max_send_queue_total_bytes = 4 * 1024 * 1024;  // per connection
  size_t output_batch_bytes = 64 * 1024;                // pendingOutput() gathers up to this
  // Non-DATA output (ACKs, resets, responses) pulled from nghttp2 beyond this while the owner
  // does not write stays in nghttp2, where max_outbound_ack bounds it.
  size_t max_pending_output_bytes = 1024 * 1024;
  std::function<Clock::time_point()> now;  // empty: Clock::now (tests inject a clock)
};

// Why a stream ended.
struct StreamClose {
  uint32_t error_code = hbone::kH2NoError;  // NO_ERROR when both sides ended, else the reset
  // Client: the server did not process the request (above a GOAWAY's last stream id, refused
  // with REFUSED_STREAM, or never sent): it may be retried on another connection (RFC 9113
  // §8.7).
  bool retryable = false;
};

struct H2CodecStats {
  uint64_t streams_opened = 0;     // client: submitRequest; server: onRequestHeaders
  uint64_t streams_active = 0;     // of those, not yet closed
  uint64_t requests_rejected = 0;  // server: answered or reset by the codec itself
  uint64_t premature_resets = 0;   // server: streams the peer reset before our response
  uint64_t resets_sent = 0;
  uint64_t resets_received = 0;
  uint64_t bytes_sent = 0;  // DATA payload
  uint64_t bytes_received = 0;
  uint64_t pings_acked = 0;
};

// Events of one codec. They run only inside receive() and pendingOutput(); they may call the
// stream methods, ping() and goaway(), but not receive() or pendingOutput(), and must not
// destroy the codec. Every stream the owner saw gets exactly one onStreamClosed.
class H2CodecHandler {
 public:
  virtual ~H2CodecHandler() = default;

  // Server: a well-formed request. end_stream: no body follows (onEndStream still comes).
  virtual void onRequestHeaders(StreamId /*stream*/, const RequestHead& /*head*/,
                                bool /*end_stream*/) {}
  // Server: the codec answered or reset a request itself (400, 431, 501, PROTOCOL_ERROR as
  // status 0), for logs and counters; the owner never sees that stream otherwise.
  virtual void onRequestRejected(StreamId /*stream*/, int /*status*/, std::string_view /*reason*/) {
  }
  // Client: an interim 1xx response (100 Continue, 103 Early Hints); the final one follows.
  virtual void onInformational(StreamId /*stream*/, const ResponseHead& /*head*/) {}
  // Client: the final response. end_stream: no body follows (a gRPC trailers-only response).
  virtual void onResponseHeaders(StreamId /*stream*/, const ResponseHead& /*head*/,
                                 bool /*end_stream*/) {}
  // Body bytes, valid during the call. Each must be given back with consumed() once written
  // on (also after the stream closed), or the connection window shrinks for good.
  virtual void onData(StreamId stream, std::span<const uint8_t> data) = 0;
  // Trailers (gRPC's grpc-status/grpc-message); onEndStream follows.
  virtual void onTrailers(StreamId /*stream*/, const HeaderList& /*trailers*/) {}
  // The peer finished its side (END_STREAM).
  virtual void onEndStream(StreamId /*stream*/) {}
  virtual void onStreamClosed(StreamId /*stream*/, const StreamClose& /*close*/) {}
  // The send queue of a stream on which sendData() came up short has room again.
  virtual void onWritable(StreamId /*stream*/) {}
  // The peer sent GOAWAY. Client: streams above last_stream close with retryable set and
  // submitRequest() fails from now on.
  virtual void onGoaway(StreamId /*last_stream*/, uint32_t /*error_code*/) {}
  virtual void onPingAck(uint64_t /*opaque*/) {}
};

class H2Codec {
 public:
  // Queues the client preface (client), SETTINGS and the connection WINDOW_UPDATE.
  // `handler` must outlive the codec.
  static Result<std::unique_ptr<H2Codec>> create(Role role, H2CodecHandler& handler,
                                                 const H2CodecOptions& options = {});
  ~H2Codec();
  H2Codec(const H2Codec&) = delete;
  H2Codec& operator=(const H2Codec&) = delete;

  // ---- transport side (same contract as hbone::H2Session) ----

  // An error means the connection is over: write what pendingOutput() still holds (a GOAWAY
  // when there is one) and close.
  Status receive(std::span<const uint8_t> data);
  // At most output_batch_bytes; valid until consumeOutput() releases it.
  std::span<const uint8_t> pendingOutput();
  void consumeOutput(size_t n);
  bool wantsWrite() const;
  bool wantsRead() const;
  // Nothing more to read or write: the owner closes the transport.
  bool isClosed() const;

  // ---- server ----

  // Answers a request. A 1xx status (not 101) is interim and may be followed by more;
  // end_stream sends the final response without a body (a gRPC trailers-only response). A
  // response that completes while the client still sends is followed by RST_STREAM NO_ERROR
  // (RFC 9113 §8.1).
  Status respond(StreamId stream, const ResponseHead& head, bool end_stream);

  // ---- client ----

  // Sends a request; end_stream: no body. Fails (EAGAIN) when availableStreams() is 0,
  // (ESHUTDOWN) after GOAWAY, (EMSGSIZE) over the header list limits, (EINVAL) for a head
  // toH2RequestFields() rejects.
  Result<StreamId> submitRequest(const RequestHead& head, bool end_stream);
  // How many more streams submitRequest() may open now (the peer's
  // SETTINGS_MAX_CONCURRENT_STREAMS and our own limit).
  uint32_t availableStreams() const;

  // ---- both ----

  // Queues body bytes; returns how many were taken (0: wait for onWritable). Client bytes go
  // with the request; server bytes need a final response first.
  Result<size_t> sendData(StreamId stream, std::span<const uint8_t> data);
  // Queues trailers after the queued body and ends the stream.
  Status sendTrailers(StreamId stream, const HeaderList& trailers);
  // Ends the sending side after the queued body.
  Status endStream(StreamId stream);
  // RST_STREAM with `error_code` (CANCEL when the downstream went away, ...).
  Status resetStream(StreamId stream, uint32_t error_code);
  // Reopens the windows for n bytes onData delivered on `stream` (also after it closed).
  Status consumed(StreamId stream, size_t n);

  // ---- connection ----

  Result<uint64_t> ping();  // the ACK reaches onPingAck with the returned value
  // GOAWAY: NO_ERROR lets active streams finish; any other code ends the connection.
  Status goaway(uint32_t error_code = hbone::kH2NoError);

  Role role() const { return role_; }
  const H2CodecStats& stats() const { return stats_; }
  size_t queuedBytes(StreamId stream) const;  // sendData() bytes not yet framed
  size_t queuedBytesTotal() const { return total_queued_; }
  // DATA bytes onData delivered that consumed() has not given back yet (open and closed
  // streams): 0 whenever the owner holds no body bytes.
  uint64_t unconsumedBytes() const;

 private:
  struct Stream;
  struct Callbacks;  // the nghttp2 callbacks (h2_codec_callbacks.cc)

  H2Codec(Role role, H2CodecHandler& handler, const H2CodecOptions& options);
  Status init();
  Stream* findStream(StreamId id);
  const Stream* findStream(StreamId id) const;
  Clock::time_point now() const;
  void fillOutput(bool for_receive);
  void resumeIfDeferred(Stream& stream);
  Status checkSendable(const Stream* stream, StreamId id) const;
  void finishHeaderBlock(Stream& stream, bool request, bool end_stream);
  void finishRequest(Stream& stream, const HeaderList& fields, bool end_stream);
  void dropQueue(Stream& stream);
  size_t headerLimit() const;
  void rejectRequest(Stream& stream, int status, std::string_view reason);
  void countPrematureReset();
  void terminate(uint32_t error_code, const std::string& message);
  void closeStream(StreamId id, uint32_t error_code);
  void fail(std::string message);
  Error sessionError() const;

  Role role_;
  H2CodecHandler& handler_;
  H2CodecOptions options_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<StreamId, std::unique_ptr<Stream>> streams_;
  hbone::OutputQueue out_;
  std::vector<StreamId> writable_;       // onWritable owed, delivered outside nghttp2
  std::vector<StreamId> total_blocked_;  // came up short on the connection-wide queue limit
  size_t total_queued_ = 0;
  H2CodecStats stats_;
  std::unordered_map<StreamId, uint64_t> closed_unconsumed_;
  StreamId goaway_last_stream_ = -1;  // client: from the peer's GOAWAY, -1 before one
  uint32_t consecutive_empty_frames_ = 0;
  uint32_t window_resets_ = 0;  // premature resets in the current window
  Clock::time_point window_start_{};
  uint64_t next_ping_ = 0;
  bool last_frame_was_data_ = false;
  bool goaway_sent_ = false;
  uint32_t owner_goaway_code_ = hbone::kH2NoError;
  bool dead_ = false;    // nghttp2 returned a fatal error: only out_ is left to write
  bool failed_ = false;  // a connection error: receive() fails from now on
  std::string error_;
  std::string last_invalid_;
  int depth_ = 0;  // > 0 while inside nghttp2
};

}  // namespace nodemesh::waypoint::http2
