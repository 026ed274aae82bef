#pragma once

// The waypoint's HTTP/2 upstreams: requests that arrived over HTTP/2 go on over HTTP/2 (as
// Istio's waypoint does by default), multiplexed. Per endpoint (its podIP:targetPort, the
// CONNECT authority) a pool of upstream connections, each one HBONE CONNECT stream to the
// endpoint's 15008 carrying an http2::H2Codec client; requests from any client session share
// them while they have streams left (availableStreams()), and another is opened when all are
// full.
//
// Rules:
// - A request the server did not process (a close the codec marks retryable: REFUSED_STREAM,
//   above a GOAWAY's last stream id, never sent) is sent once more on a new connection, with
//   the request body kept for that (up to kMaxReplayBytes; a longer body is not retried).
// - The owner's retries (retry.h) reuse what a call keeps: a call it reset() is sent again, to
//   another endpoint, with send().
// - Back-pressure is the codec's: response DATA is given back (consumed()) by the call's owner
//   once it passed it on, request DATA is taken only while the stream's send queue has room.
// - Nothing is freed inside a callback: closed connections wait for reap().
// - A connection without requests for idle_timeout is closed with GOAWAY.

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "waypoint/http2/h2_codec.h"
#include "waypoint/proxy/hbone_conn.h"

namespace nodemesh::waypoint {

// Events of one upstream request. They may call the H2UpstreamCall's methods, not destroy it.
class H2UpstreamHandler {
 public:
  virtual ~H2UpstreamHandler() = default;
  virtual void onUpstreamInformational(const http2::ResponseHead& /*head*/) {}
  virtual void onUpstreamResponse(const http2::ResponseHead& head, bool end_stream) = 0;
  // Give each byte back with H2UpstreamCall::consumed() once passed on.
  virtual void onUpstreamData(std::span<const uint8_t> data) = 0;
  virtual void onUpstreamTrailers(const http2::HeaderList& trailers) = 0;
  virtual void onUpstreamEnd() = 0;
  // sendData() came up short earlier and has room again.
  virtual void onUpstreamWritable() = 0;
  // The stream is over: NO_ERROR after both ends, else a reset or the connection's loss
  // (`why`). Last event.
  virtual void onUpstreamClosed(uint32_t error_code, const std::string& why) = 0;
};

struct H2UpstreamOptions {
  http2::H2CodecOptions codec;
  std::chrono::milliseconds idle_timeout{30000};
};

struct H2UpstreamStats {
  uint64_t connections_opened = 0;
  uint64_t connections_active = 0;  // open now
  uint64_t requests = 0;
  uint64_t retries = 0;  // requests sent again on a new connection
};

class H2Upstreams;
class H2UpstreamConn;
class H2Mirror;

// One request on a pooled upstream connection; owned by the client session. Destroying it
// while the stream is open resets the stream (CANCEL).
class H2UpstreamCall {
 public:
  static constexpr size_t kMaxReplayBytes = 64 * 1024;

  // Made by H2Upstreams::open().
  H2UpstreamCall(H2UpstreamHandler& handler, http2::RequestHead head, std::string authority,
                 std::function<HboneConn*(std::string*)> connect)
      : handler_(handler),
        head_(std::move(head)),
        authority_(std::move(authority)),
        connect_(std::move(connect)) {}
  ~H2UpstreamCall();
  H2UpstreamCall(const H2UpstreamCall&) = delete;
  H2UpstreamCall& operator=(const H2UpstreamCall&) = delete;

  // Request body; returns how many bytes were taken (0: wait for onUpstreamWritable).
  Result<size_t> sendData(std::span<const uint8_t> data);
  // Ends the request after the body, with trailers when not empty.
  Status end(const http2::HeaderList& trailers = {});
  // RST_STREAM `error_code`; no more events.
  void reset(uint32_t error_code);
  // Gives back n bytes of onUpstreamData.
  void consumed(size_t n);
  bool open() const { return conn_ != nullptr; }
  // Whether the request went out on a connection the endpoint's agent accepted (its CONNECT
  // answered 200): the pod may have seen it. Else a failure means nothing of it was processed.
  bool reached() const { return reached_; }
  // Whether the body taken so far, with `more` bytes still to come, is kept whole for a retry.
  bool replayable(size_t more = 0) const {
    return replayable_ && replay_.size() + more <= kMaxReplayBytes;
  }

 private:
  friend class H2Upstreams;
  friend class H2UpstreamConn;

  H2UpstreamHandler& handler_;
  http2::RequestHead head_;
  std::string authority_;
  std::function<HboneConn*(std::string*)> connect_;
  H2UpstreamConn* conn_ = nullptr;
  http2::StreamId stream_ = 0;
  // For a retry: the body taken so far (while it fits), whether the request ended, trailers.
  std::vector<uint8_t> replay_;
  bool replayable_ = true;
  bool ended_ = false;
  http2::HeaderList trailers_;
  bool retried_ = false;
  bool reached_ = false;  // see reached()
  bool response_seen_ = false;
  uint64_t unconsumed_ = 0;  // onUpstreamData bytes not yet given back
};

// One upstream HTTP/2 connection: a CONNECT stream to an endpoint with a client codec inside.
class H2UpstreamConn final : public StreamOwner, public http2::H2CodecHandler {
 public:
  H2UpstreamConn(H2Upstreams& pool, std::string authority)
      : pool_(pool), authority_(std::move(authority)) {}
  ~H2UpstreamConn() override;
  H2UpstreamConn(const H2UpstreamConn&) = delete;
  H2UpstreamConn& operator=(const H2UpstreamConn&) = delete;

  Status start(HboneConn& hbone, const http2::H2CodecOptions& options);
  // Streams submitRequest() may open now (0 while closing).
  uint32_t availableStreams() const;
  // Writes what the codec has for the HBONE stream (later when inside a codec callback).
  void flush();
  // Closes with GOAWAY (idle, or the waypoint stops).
  void close(const std::string& why);
  bool dead() const { return dead_; }
  // Response DATA bytes not given back yet (H2Codec::unconsumedBytes).
  uint64_t unconsumedBytes() const { return codec_ && !dead_ ? codec_->unconsumedBytes() : 0; }
  bool idleSince(Clock::time_point cutoff) const { return calls_.empty() && since_ <= cutoff; }
  const std::string& authority() const { return authority_; }

  // StreamOwner (the HBONE stream)
  void onConnectResponse(int status) override;
  void onStreamData(std::span<const uint8_t> data) override;
  void onStreamEnd() override;
  void onStreamWritable() override;
  void onStreamClosed(uint32_t error_code, const std::string& why) override;

  // H2CodecHandler
  void onInformational(http2::StreamId stream, const http2::ResponseHead& head) override;
  void onResponseHeaders(http2::StreamId stream, const http2::ResponseHead& head,
                         bool end_stream) override;
  void onData(http2::StreamId stream, std::span<const uint8_t> data) override;
  void onTrailers(http2::StreamId stream, const http2::HeaderList& trailers) override;
  void onEndStream(http2::StreamId stream) override;
  void onStreamClosed(http2::StreamId stream, const http2::StreamClose& close) override;
  void onWritable(http2::StreamId stream) override;
  void onGoaway(http2::StreamId last_stream, uint32_t error_code) override;

 private:
  friend class H2UpstreamCall;
  friend class H2Upstreams;
  H2UpstreamCall* callOf(http2::StreamId stream) const;
  // Submits `call`'s request (and what it kept for a replay) on this connection.
  Status submit(H2UpstreamCall& call);
  // The connection is over: every call hears of it.
  void fail(const std::string& why);

  H2Upstreams& pool_;
  std::string authority_;
  HboneConn* hbone_ = nullptr;  // null once the HBONE stream closed
  hbone::StreamId hbone_stream_ = 0;
  std::unique_ptr<http2::H2Codec> codec_;
  std::map<http2::StreamId, H2UpstreamCall*> calls_;
  Clock::time_point since_ = Clock::now();  // created, or last without calls
  int depth_ = 0;                           // > 0 inside the codec
  bool flush_wanted_ = false;
  bool closing_ = false;
  bool dead_ = false;
  bool established_ = false;  // the CONNECT was answered 200
};

class H2Upstreams {
 public:
  explicit H2Upstreams(H2UpstreamOptions options = {}) : options_(std::move(options)) {}
  ~H2Upstreams();
  H2Upstreams(const H2Upstreams&) = delete;
  H2Upstreams& operator=(const H2Upstreams&) = delete;

  // Sends `head` to the endpoint `authority` on a pooled connection with a stream left, or on a
  // new one over `connect()`'s HBONE connection. end_stream: no body follows.
  Result<std::unique_ptr<H2UpstreamCall>> open(http2::RequestHead head, bool end_stream,
                                               const std::string& authority,
                                               std::function<HboneConn*(std::string*)> connect,
                                               H2UpstreamHandler& handler);
  // open() in two steps, for an owner that retries: the call, not sent yet ...
  static std::unique_ptr<H2UpstreamCall> call(http2::RequestHead head, bool end_stream,
                                              H2UpstreamHandler& handler);
  // ... and its request sent to `authority` as open() does. A call sent before must not be
  // open (reset()) and must be replayable(): its head, the body it kept and its end (trailers)
  // go again, to the endpoint given now (the owner's retry).
  Status send(H2UpstreamCall& call, std::string authority,
              std::function<HboneConn*(std::string*)> connect);
  // Keeps a RequestMirror copy (h2_mirror.h) until it has finished and its session forgot it;
  // returns it for the session to start and feed.
  H2Mirror* adoptMirror(std::unique_ptr<H2Mirror> mirror);
  // After each batch of completions: frees closed connections and finished mirrors.
  void reap();
  // On the loop's tick: closes idle connections, cancels mirrors past their deadline.
  void onTimer(Clock::time_point now);
  const H2UpstreamStats& stats() const { return stats_; }
  // Over every connection (H2UpstreamConn::unconsumedBytes).
  uint64_t unconsumedBytes() const;

 private:
  friend class H2UpstreamCall;
  friend class H2UpstreamConn;
  // A connection for `call` (not `avoid`), submitting its request there.
  Status place(H2UpstreamCall& call, const H2UpstreamConn* avoid);

  H2UpstreamOptions options_;
  std::multimap<std::string, std::unique_ptr<H2UpstreamConn>> conns_;  // by authority
  // After conns_: a mirror's call unhooks from its connection when it goes first.
  std::list<std::unique_ptr<H2Mirror>> mirrors_;
  H2UpstreamStats stats_;
};

}  // namespace nodemesh::waypoint
