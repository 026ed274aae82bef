#pragma once

// HBONE's HTTP/2 layer: a sans-I/O codec over nghttp2 for CONNECT tunnels (RFC 9113 §8.5).
// It sees only the plaintext HTTP/2 bytes of one connection (TLS is the layer below) and no
// sockets: the event loop feeds received bytes to receive() and writes pendingOutput() to the
// transport. One session per connection, used from one thread.
//
// Flow control is manual and bounded in both directions:
// - Receiving: DATA is handed to H2Handler::onData, and the stream and connection windows
//   reopen only when the owner calls consumed() for bytes it has actually written on, so a slow
//   reader slows the remote writer and a stream never holds more than its window (4 MiB).
// - Sending: send() queues at most H2Options::max_send_queue_bytes per stream and returns how
//   much it took; after a short write the owner stops reading its TCP socket until
//   H2Handler::onWritable.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/ip_address.h"
#include "common/result.h"
#include "hbone/byte_queue.h"
#include "hbone/h2_errors.h"

struct nghttp2_session;

namespace nodemesh::hbone {

using StreamId = int32_t;

// The HBONE status codes (DESIGN.md "The tunnel").
inline constexpr int kStatusOk = 200;
inline constexpr int kStatusBadRequest = 400;
inline constexpr int kStatusUnauthorized = 401;  // denied by policy
inline constexpr int kStatusHeaderFieldsTooLarge = 431;
inline constexpr int kStatusServiceUnavailable = 503;  // no upstream

enum class H2Role { kClient, kServer };

struct H2Options {
  uint32_t initial_stream_window = 4 * 1024 * 1024;  // SETTINGS_INITIAL_WINDOW_SIZE
  uint32_t connection_window = 16 * 1024 * 1024;     // raised by WINDOW_UPDATE at start
  // Server: advertised SETTINGS_MAX_CONCURRENT_STREAMS. Client: the most streams opened on
  // one connection even if the peer allows more (the pool's per-connection limit).
  uint32_t max_concurrent_streams = 100;
  // SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2 size: name + value + 32 per field).
  // Enforced locally: a bigger request gets 431, a bigger response resets the stream, and
  // openConnect() refuses to build one.
  uint32_t max_header_list_bytes = 16 * 1024;
  size_t max_send_queue_bytes = 256 * 1024;  // per stream, see send()
  size_t output_batch_bytes = 64 * 1024;     // pendingOutput() gathers frames up to this
  // Flood bounds (the peer is sent GOAWAY ENHANCE_YOUR_CALM and H2Handler::onFlood is called).
  // Output the peer's own frames make (PING and SETTINGS ACKs, RST_STREAMs, error responses)
  // while it does not read: after a receive(), frames are moved out of nghttp2 only up to
  // max_pending_output_bytes of unwritten output; behind that, nghttp2 keeps at most 1,000
  // ACKs (nghttp2_option_set_max_outbound_ack) and max_queued_frames frames in all, and either
  // bound reached is a flood. A slow reader of tunnel DATA is not one: DATA waits in the
  // streams' send queues, not in nghttp2's frame queue.
  size_t max_pending_output_bytes = 256 * 1024;
  size_t max_queued_frames = 1000;
  // Server: rapid reset (CVE-2023-44487), Envoy's premature-reset rule: a stream the peer
  // resets before it was answered or within premature_reset_min_lifetime of its request is
  // premature; once premature resets reach half of max(streams opened,
  // premature_reset_stream_count), the connection is a flood. 0 turns the check off.
  uint32_t premature_reset_stream_count = 500;
  std::chrono::milliseconds premature_reset_min_lifetime{1000};
};

// What made a session a flood (H2Handler::onFlood).
enum class H2Flood {
  kControlFrames,  // frames that need an answer (PING, SETTINGS, ...) faster than it is read
  kRapidReset,     // streams opened and reset at once
};

struct Header {
  std::string name;  // lowercase, as on the wire
  std::string value;

  bool operator==(const Header&) const = default;
};

// A CONNECT request the server accepted for the owner to answer.
struct ConnectRequest {
  std::string authority;  // ":authority", e.g. "10.0.0.1:8080"
  SocketAddress target;   // the authority, parsed
  std::string forwarded;  // "forwarded" (several fields joined with ", "), e.g. for="10.0.0.2:5"
  std::string baggage;    // "baggage" (joined with ",")
  std::string traceparent;
  std::vector<Header> other_headers;  // every other regular header, in arrival order
};

// What a client puts into a CONNECT request besides the authority.
struct ConnectHeaders {
  std::optional<SocketAddress> forwarded_for;  // sent as forwarded: for="<ip:port>"
  std::string baggage;                         // omitted when empty
  std::string traceparent;                     // omitted when empty
  std::vector<Header> extra;                   // lowercase names; no pseudo or hop-by-hop
};

struct H2Stats {
  uint64_t streams_opened = 0;     // client: openConnect; server: requests given to onRequest
  uint64_t streams_active = 0;     // of those, not yet closed
  uint64_t requests_rejected = 0;  // server: answered 400/431 by the codec itself
  uint64_t resets_sent = 0;
  uint64_t resets_received = 0;
  uint64_t bytes_sent = 0;  // DATA payload
  uint64_t bytes_received = 0;
  uint64_t pings_acked = 0;
  uint64_t premature_resets = 0;  // server: see H2Options::premature_reset_stream_count
};

// Events of one session. Callbacks run only inside receive() and pendingOutput(). They may call
// the session's stream methods (send, endStream, respond, consumed, resetStream, openConnect,
// ping, goaway) but must not call receive() or pendingOutput() and must not destroy the session.
class H2Handler {
 public:
  virtual ~H2Handler() = default;

  // Server: a well-formed CONNECT to an ip:port. Answer with respond(), now or later.
  virtual void onRequest(StreamId /*stream*/, const ConnectRequest& /*request*/) {}
  // Client: the final response. 200: the tunnel is up; otherwise the stream is over (a
  // nodemesh server resets it with NO_ERROR; onStreamClosed follows).
  virtual void onResponse(StreamId /*stream*/, int /*status*/) {}
  // Server: the codec itself answered a request (400 not a CONNECT / bad authority, 431
  // header block too large), for logs and counters. The stream is already answered.
  virtual void onRequestRejected(StreamId /*stream*/, int /*status*/, std::string_view /*reason*/) {
  }
  // Tunnel bytes from the peer. The span is valid only during the call. Every byte must be
  // acknowledged with consumed() once written on (also after the stream closed), or the
  // connection window shrinks for good.
  virtual void onData(StreamId stream, std::span<const uint8_t> data) = 0;
  // The peer half-closed the stream (END_STREAM): the TCP peer's FIN.
  virtual void onEndStream(StreamId /*stream*/) {}
  // Once per stream the owner knows of, whoever closed it: kH2NoError when both sides ended,
  // else the RST_STREAM code (the owner's own resetStream() code included).
  virtual void onStreamClosed(StreamId /*stream*/, uint32_t /*error_code*/) {}
  // The send queue of a stream on which send() came up short has room again.
  virtual void onWritable(StreamId /*stream*/) {}
  // The peer sent GOAWAY: streams above last_stream were not processed (they close with
  // REFUSED_STREAM) and openConnect() fails from now on.
  virtual void onGoaway(StreamId /*last_stream*/, uint32_t /*error_code*/) {}
  virtual void onPingAck(uint64_t /*opaque*/) {}
  // The peer floods the session: GOAWAY ENHANCE_YOUR_CALM is queued and receive() fails from
  // now on (`detail` says what was seen, for the log).
  virtual void onFlood(H2Flood /*kind*/, std::string_view /*detail*/) {}
};

class H2Session {
 public:
  // Queues the connection preface (client), SETTINGS and the connection WINDOW_UPDATE.
  // `handler` must outlive the session.
  static Result<std::unique_ptr<H2Session>> create(H2Role role, H2Handler& handler,
                                                   const H2Options& options = {});
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  // ---- transport side ----

  // Processes bytes from the peer. An error means the connection is broken (malformed HTTP/2,
  // flood, peer not speaking HTTP/2): write out what pendingOutput() still holds (a GOAWAY
  // when there is one) and close.
  Status receive(std::span<const uint8_t> data);
  // Bytes to write to the transport (at most output_batch_bytes), empty when there is nothing
  // to write now even if wantsWrite(). The span stays valid, whatever else is called, until
  // consumeOutput() releases it, so a write may be in flight while receive() runs; the bytes
  // stay pending until then. Call again after consuming: more may be waiting.
  std::span<const uint8_t> pendingOutput();
  // n bytes of pendingOutput() were written (n may be less than its size: a short write).
  void consumeOutput(size_t n);
  bool wantsWrite() const;
  bool wantsRead() const;
  // Nothing more to read or write: GOAWAY exchanged with no stream left, or a fatal error and
  // the last bytes were written. The owner closes the transport.
  bool isClosed() const;

  // ---- streams ----

  // Client: opens a CONNECT stream to `authority` ("ip:port"; any valid authority is sent).
  // Fails when availableStreams() is 0, after GOAWAY, or when the header list would exceed
  // max_header_list_bytes or the peer's limit.
  Result<StreamId> openConnect(std::string_view authority, const ConnectHeaders& headers);
  // Client: how many more streams openConnect() may open now.
  uint32_t availableStreams() const;

  // Server: answers a request from onRequest(). 200 opens the tunnel; any other status
  // (400, 401, 503, ...) ends the stream, and the codec resets it with NO_ERROR if the client
  // is still sending.
  Status respond(StreamId stream, int status);

  // Queues tunnel bytes; returns how many were taken (0: the queue is full, wait for
  // onWritable). Bytes queued before the tunnel is up (client: before the 200) go out once it
  // is. Errors when the stream is unknown, closed, reset, or already ended locally.
  Result<size_t> send(StreamId stream, std::span<const uint8_t> data);
  // Half-closes the sending side: END_STREAM after the queued bytes (an empty DATA frame when
  // nothing is queued).
  Status endStream(StreamId stream);
  // Reopens the flow-control windows for n bytes that onData delivered on `stream`; also after
  // the stream closed (then only the connection window). nghttp2 sends the WINDOW_UPDATE once
  // half a window has been consumed. Fails for more bytes than were delivered.
  Status consumed(StreamId stream, size_t n);
  // RST_STREAM with `error_code` (kH2ConnectError when the TCP peer reset, kH2Cancel, ...).
  Status resetStream(StreamId stream, uint32_t error_code);

  // ---- connection ----

  // Sends a PING; its ACK reaches onPingAck with the returned opaque value.
  Result<uint64_t> ping();
  // Sends GOAWAY: no new streams; the session closes when the active ones are done.
  Status goaway(uint32_t error_code = kH2NoError);
  // Server only: the first half of a graceful shutdown (RFC 9113 6.8), a GOAWAY with the
  // largest stream ID: the peer stops opening streams here, and those it has sent meanwhile are
  // still served. goaway() a round trip later ends the session.
  Status shutdownNotice();

  H2Role role() const { return role_; }
  const H2Stats& stats() const { return stats_; }
  // Bytes queued by send() and not yet framed (0 for unknown streams).
  size_t queuedBytes(StreamId stream) const;
  // DATA bytes onData delivered that consumed() has not given back yet, open and closed streams
  // together. Whatever the owner does with a stream, this returns to 0 once it holds no bytes;
  // bytes that never come back shrink the connection window for good.
  uint64_t unconsumedBytes() const;

 private:
  struct Stream;
  struct Callbacks;  // the nghttp2 callbacks, with access to the members below

  H2Session(H2Role role, H2Handler& handler, const H2Options& options);
  Status init();
  Stream* findStream(StreamId id);
  const Stream* findStream(StreamId id) const;
  // Moves frames from nghttp2 into out_. for_receive: keep going past output_batch_bytes until
  // a DATA frame, so a connection-error GOAWAY queued by the last receive() is seen.
  void fillOutput(bool for_receive);
  void resumeIfDeferred(Stream& stream);
  void finishRequestHeaders(Stream& stream);
  void submitResponse(Stream& stream, int status);
  void closeStream(StreamId id, uint32_t error_code);
  void fail(std::string message);
  // Ends the session as a flood: GOAWAY ENHANCE_YOUR_CALM (written by hand when nghttp2 itself
  // gave up), onFlood, and receive() fails.
  void flood(H2Flood kind, const std::string& detail);
  // Server: the peer reset a stream; counts it when premature and checks the rapid-reset bound.
  void onPeerReset(StreamId id);
  Error sessionError() const;

  H2Role role_;
  H2Handler& handler_;
  H2Options options_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<StreamId, std::unique_ptr<Stream>> streams_;
  OutputQueue out_;
  std::vector<StreamId> writable_;  // onWritable owed, delivered outside nghttp2 callbacks
  H2Stats stats_;
  // Bytes onData delivered on streams that have closed since, until consumed() returns them.
  std::unordered_map<StreamId, uint64_t> closed_unconsumed_;
  uint64_t next_ping_ = 0;
  bool last_frame_was_data_ = false;
  bool goaway_sent_ = false;
  uint32_t owner_goaway_code_ = kH2NoError;  // a GOAWAY with this code is not a failure
  bool dead_ = false;  // nghttp2 returned a fatal error: only out_ is left to write
  bool failed_ = false;
  bool flooded_ = false;
  std::string error_;         // why the session failed, for receive()
  std::string last_invalid_;  // last invalid-frame / library error message, for context
  int depth_ = 0;             // > 0 while inside nghttp2 (receive, fillOutput)
};

}  // namespace nodemesh::hbone
