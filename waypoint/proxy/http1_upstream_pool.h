#pragma once

// The waypoint's HTTP/1.1 connections to endpoints, kept alive between requests. One connection
// is one HBONE CONNECT stream to the endpoint's 15008 (`:authority` podIP:targetPort, on the
// pooled HboneConn to that pod) carrying an http1::ClientCodec; the endpoint's agent turns it
// into one TCP connection to the pod, so reusing it saves the pod a connection per request.
//
// Rules:
// - A leased connection belongs to one user (a client's session, or a mirror) until it is
//   released; its stream and codec events go to that user only.
// - It goes back to the pool only after a clean exchange: the response complete, the request
//   fully written, both sides kept the connection alive (ClientCodec::isReusable()), nothing
//   received beyond the response, the stream open both ways, and fewer than
//   `max_idle_per_endpoint` idle ones for that authority. Otherwise it is closed (a FIN after a
//   clean exchange, a reset after a failure).
// - An idle connection is closed when the endpoint sends anything or ends its side (the pod
//   closed its keep-alive connection), and after `idle_timeout`. The most recently used idle
//   connection is taken first, so the others age out when the load drops.
// - Objects are freed only in reap() (after each batch of completions), never inside a callback.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "waypoint/http1/client_codec.h"
#include "waypoint/proxy/hbone_conn.h"

namespace nodemesh::waypoint {

// Where an upstream exchange goes: an endpoint chosen by the router.
struct UpstreamTarget {
  HboneConn* conn = nullptr;  // the pooled HBONE connection to the endpoint's 15008
  std::string authority;      // the CONNECT authority: the endpoint's podIP:targetPort
  std::string endpoint_uid;
  uint16_t endpoint_port = 0;  // the target port it was picked on (the load balancer's key)
  // Requests a connection carries before it is closed (DestinationRule maxRequestsPerConnection,
  // of the request that opened it); 0: unlimited.
  uint32_t max_requests = 0;
};

struct Http1UpstreamPoolOptions {
  size_t max_idle_per_endpoint = 32;
  std::chrono::milliseconds idle_timeout{15000};
  // A mirror copies the request body up to this many bytes; a longer body cancels the mirror.
  size_t mirror_body_limit = 64 * 1024;
};

struct Http1UpstreamStats {
  uint64_t connects = 0;        // new upstream HTTP/1.1 connections (CONNECT streams opened)
  uint64_t reuses = 0;          // requests sent on an idle connection taken from the pool
  uint64_t retries = 0;         // requests sent again on a new connection after a reused one failed
  uint64_t idle = 0;            // idle connections now
  uint64_t idle_closed = 0;     // idle connections closed (timeout, or the endpoint closed)
  uint64_t mirrors = 0;         // mirror requests started
  uint64_t mirrors_failed = 0;  // mirror requests that got no complete response
  uint64_t mirrors_cancelled = 0;  // body over the limit, timed out, or the client went away
  uint64_t request_timeouts = 0;   // route timeouts (request or backendRequest) that fired
};

class Http1Upstream;

// The user of a leased connection: its codec's events (ClientHandler) and its stream's. The
// user reacts by pumping input (Http1Upstream::pump), flushing output, or releasing it.
class Http1UpstreamUser : public http1::ClientHandler {
 public:
  // Bytes (or the endpoint's end of stream) wait in the connection: pump() them.
  virtual void onUpstreamData() = 0;
  virtual void onUpstreamWritable() = 0;
  // The CONNECT was refused, or the stream was reset or lost: release it (it cannot be used).
  virtual void onUpstreamFailed(const std::string& why) = 0;
};

class Http1UpstreamPool;

class Http1Upstream final : public StreamOwner, private http1::ClientHandler {
 public:
  Http1Upstream(const Http1Upstream&) = delete;
  Http1Upstream& operator=(const Http1Upstream&) = delete;
  ~Http1Upstream() override = default;

  http1::ClientCodec& codec() { return *codec_; }
  const std::string& authority() const { return target_.authority; }
  const std::string& endpointUid() const { return target_.endpoint_uid; }
  // The HBONE connection its stream is on: alive while the stream is (its loss closes the
  // stream first), so a retry can open its new stream there.
  HboneConn* hboneConnection() const { return target_.conn; }
  // Taken from the pool: it served an exchange before this lease.
  bool reused() const { return reused_; }
  // Whether the endpoint sent any byte during this lease (its end of stream is not a byte).
  bool receivedAny() const { return received_in_lease_; }
  // The endpoint's agent accepted the CONNECT (it reached the pod): before that, nothing sent
  // on it can have reached the application.
  bool established() const { return established_; }
  // Writes the codec's output to the stream as far as the stream takes it.
  Status flush();
  // Gives received bytes to the codec while `more()` says the user keeps up, then the endpoint's
  // end of stream once every byte before it went in. Stops when the user released the connection
  // inside an event. An error: the response was malformed (onResponseError came too).
  Status pump(const std::function<bool()>& more);

 private:
  friend class Http1UpstreamPool;
  enum class State { kLeased, kIdle, kClosed };

  explicit Http1Upstream(Http1UpstreamPool& pool) : pool_(pool) {}

  // StreamOwner
  void onConnectResponse(int status) override;
  void onStreamData(std::span<const uint8_t> data) override;
  void onStreamEnd() override;
  void onStreamWritable() override;
  void onStreamClosed(uint32_t error_code, const std::string& why) override;
  // ClientHandler: forwarded to the user; while idle nothing may arrive.
  void onResponseHead(const http1::ResponseHead& head, const http1::ResponseInfo& info) override;
  void onResponseBody(std::span<const uint8_t> data) override;
  void onResponseTrailers(const http1::Headers& trailers) override;
  void onResponseComplete() override;
  void onResponseError(const http1::Rejection& rejection) override;

  Http1UpstreamPool& pool_;
  State state_ = State::kLeased;
  UpstreamTarget target_;
  hbone::StreamId stream_ = 0;
  bool open_ = false;  // the stream is ours (not closed, not detached)
  std::unique_ptr<http1::ClientCodec> codec_;
  Http1UpstreamUser* user_ = nullptr;
  std::deque<std::vector<uint8_t>> in_;  // received, not yet given to the codec
  bool eof_ = false;                     // the endpoint ended its side
  bool eof_delivered_ = false;
  bool reused_ = false;
  bool established_ = false;
  uint32_t leases_ = 0;  // requests it carried (UpstreamTarget::max_requests)
  bool received_in_lease_ = false;
  Clock::time_point idle_since_;
  std::list<std::unique_ptr<Http1Upstream>>::iterator self_;
};

class Http1Mirror;

class Http1UpstreamPool {
 public:
  explicit Http1UpstreamPool(Http1UpstreamPoolOptions options = {});
  ~Http1UpstreamPool();
  Http1UpstreamPool(const Http1UpstreamPool&) = delete;
  Http1UpstreamPool& operator=(const Http1UpstreamPool&) = delete;

  // A connection to `target.authority` for `user`: the most recently used idle one (unless
  // `fresh`), else a new CONNECT stream on `target.conn`.
  Result<Http1Upstream*> acquire(const UpstreamTarget& target, Http1UpstreamUser& user,
                                 bool fresh = false);
  // The user is finished with `up` and hears nothing more of it. `clean`: the exchange ended
  // well (kept if it may serve another request, else closed with a FIN); otherwise reset.
  void release(Http1Upstream* up, bool clean);

  // A copy of a request to a mirror backend (RequestMirror): `head` as it goes out, the body
  // fed by the caller. The pool owns it; the caller's pointer stays valid until it calls
  // Http1Mirror::detach(). Its response is read and discarded; it never affects the original.
  Http1Mirror* startMirror(const UpstreamTarget& target, const http1::RequestHead& head,
                           std::optional<uint64_t> body_length, std::chrono::milliseconds timeout);

  // Periodically: idle connections past the idle timeout close, mirrors past their deadline
  // are cancelled.
  void onTimer(Clock::time_point now);
  // After each batch of completions: frees what closed or finished.
  void reap();

  const Http1UpstreamPoolOptions& options() const { return options_; }
  void setOptions(const Http1UpstreamPoolOptions& options) { options_ = options; }
  Http1UpstreamStats& stats() { return stats_; }
  const Http1UpstreamStats& stats() const { return stats_; }

 private:
  friend class Http1Upstream;
  friend class Http1Mirror;
  // Closes `up` (FIN when `graceful` and the stream is open, else a reset) and forgets it.
  void close(Http1Upstream* up, bool graceful);
  void removeIdle(Http1Upstream* up);

  Http1UpstreamPoolOptions options_;
  Http1UpstreamStats stats_;
  std::list<std::unique_ptr<Http1Upstream>> all_;
  std::vector<std::unique_ptr<Http1Upstream>> closed_;       // freed in reap()
  std::map<std::string, std::vector<Http1Upstream*>> idle_;  // by authority, most recent last
  std::list<std::unique_ptr<Http1Mirror>> mirrors_;
};

}  // namespace nodemesh::waypoint
