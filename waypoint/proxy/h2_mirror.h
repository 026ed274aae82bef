#pragma once

// One mirrored HTTP/2 or gRPC request (Gateway API RequestMirror): a copy of a client's request
// sent to the mirror backend's endpoint on the shared HTTP/2 upstreams (H2Upstreams), its
// response read and discarded. The HTTP/2 counterpart of Http1Mirror, with the same rules:
//
// - The original request is never delayed or failed by its mirror: the copy takes the client's
//   body as it arrives (it never back-pressures the client) and every failure of the mirror ends
//   the mirror alone.
// - The body is copied up to a limit (Http1UpstreamPoolOptions::mirror_body_limit, 64 KiB); a
//   longer body cancels the mirror (RST_STREAM CANCEL, so the backend never sees a truncated
//   request as whole).
// - The copy's :authority gets "-shadow" before the port (shadowHost(), as Envoy's shadow
//   writer does).
// - A mirror outlives the client's request (its response may come later); it ends on its
//   response, a failure, its deadline, or a cancel (the client's request was abandoned).
// - It counts in the waypoint's one set of mirror counters (Http1UpstreamStats mirrors*).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "waypoint/proxy/h2_upstream.h"
#include "waypoint/proxy/http1_upstream_pool.h"

namespace nodemesh::waypoint {

// Where a mirror copy goes: an endpoint of the mirror service.
struct H2MirrorTarget {
  std::string authority;  // the endpoint's podIP:targetPort
  std::function<HboneConn*(std::string*)> connect;
};

class H2Mirror final : public H2UpstreamHandler {
 public:
  H2Mirror(Http1UpstreamStats& stats, size_t body_limit, Clock::time_point deadline)
      : stats_(stats), body_limit_(body_limit), deadline_(deadline) {}
  ~H2Mirror() override = default;
  H2Mirror(const H2Mirror&) = delete;
  H2Mirror& operator=(const H2Mirror&) = delete;

  // Sends the copy of `head` (its :authority made the shadow one); end_stream: no body follows.
  // `content_length`: the request's declared body length, when it has one.
  void start(H2Upstreams& upstreams, const H2MirrorTarget& target, http2::RequestHead head,
             bool end_stream, std::optional<uint64_t> content_length);
  // The client's body bytes as they arrive; over the limit the mirror is cancelled.
  void body(std::span<const uint8_t> data);
  // The client's request ended (with trailers when not empty).
  void end(const http2::HeaderList& trailers);
  // The original request was abandoned before its end, or the deadline passed.
  void cancel();
  // The caller forgets this mirror; the upstreams free it once it has finished too.
  void detach() { attached_ = false; }

  bool finished() const { return state_ == State::kDone; }
  bool attached() const { return attached_; }
  Clock::time_point deadline() const { return deadline_; }

 private:
  enum class State { kSending, kWaiting, kDone };

  // H2UpstreamHandler: the response is discarded.
  void onUpstreamResponse(const http2::ResponseHead& head, bool end_stream) override;
  void onUpstreamData(std::span<const uint8_t> data) override;
  void onUpstreamTrailers(const http2::HeaderList& /*trailers*/) override {}
  void onUpstreamEnd() override;
  void onUpstreamWritable() override { pump(); }
  void onUpstreamClosed(uint32_t error_code, const std::string& why) override;

  // Moves the copied body the upstream stream has not taken yet; then the end.
  void pump();
  // Ends the mirror; its stream is reset unless it finished.
  void done(uint64_t* counter, const char* why);

  Http1UpstreamStats& stats_;
  size_t body_limit_;
  Clock::time_point deadline_;
  State state_ = State::kSending;
  // Owned here, never destroyed inside its own events (the upstreams free finished mirrors).
  std::unique_ptr<H2UpstreamCall> call_;
  uint64_t body_bytes_ = 0;
  std::vector<uint8_t> pending_;  // copied body not yet taken (at most body_limit_)
  bool client_ended_ = false;
  http2::HeaderList trailers_;
  bool end_sent_ = false;
  bool response_ended_ = false;
  bool attached_ = true;
};

}  // namespace nodemesh::waypoint
