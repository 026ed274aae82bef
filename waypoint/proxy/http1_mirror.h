#pragma once

// One mirrored request (Gateway API RequestMirror): a copy of a client's request sent to the
// mirror backend on a pooled upstream connection, its response read and discarded.
//
// Rules:
// - The original request is never delayed or failed by its mirror: the copy is written only as
//   far as the upstream stream takes it (never back-pressuring the client), and every failure
//   of the mirror ends the mirror alone.
// - The body is copied up to Http1UpstreamPoolOptions::mirror_body_limit; a longer body cancels
//   the mirror (its stream is reset, so the backend never sees a truncated request as whole).
// - The copy's Host gets the suffix "-shadow" before the port, as Envoy's shadow writer does
//   (cart:80 -> cart-shadow:80), so mirror backends can tell copies apart in their logs.
// - A mirror outlives the client's session (the response may come later); it ends on its
//   response, a failure, its timeout, or a cancel (the client went away mid-request).

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "waypoint/proxy/http1_upstream_pool.h"

namespace nodemesh::waypoint {

// The Host of a mirror copy: "-shadow" appended to the host, before any port.
std::string shadowHost(std::string_view host);

class Http1Mirror final : public Http1UpstreamUser {
 public:
  Http1Mirror(Http1UpstreamPool& pool, Clock::time_point deadline);
  ~Http1Mirror() override = default;
  Http1Mirror(const Http1Mirror&) = delete;
  Http1Mirror& operator=(const Http1Mirror&) = delete;

  // Sends the head on a pooled connection; false (and finished) when none could be had.
  bool start(const UpstreamTarget& target, const http1::RequestHead& head,
             std::optional<uint64_t> body_length);
  // The client's body bytes, as they arrive; over the limit the mirror is cancelled.
  void body(std::span<const uint8_t> data);
  void end();
  // The original request was abandoned before its body was complete.
  void cancel();
  // The caller forgets this mirror; the pool frees it once it has finished too.
  void detach() { attached_ = false; }

  bool finished() const { return state_ == State::kDone; }
  bool attached() const { return attached_; }
  Clock::time_point deadline() const { return deadline_; }

 private:
  enum class State { kSending, kWaiting, kDone };

  // Http1UpstreamUser
  void onUpstreamData() override;
  void onUpstreamWritable() override;
  void onUpstreamFailed(const std::string& why) override;
  void onResponseHead(const http1::ResponseHead& head, const http1::ResponseInfo& info) override;
  void onResponseBody(std::span<const uint8_t> /*data*/) override {}
  void onResponseComplete() override;
  void onResponseError(const http1::Rejection& rejection) override;

  // Ends the mirror; the upstream goes back to the pool when `clean`.
  void done(bool clean, const char* counter_reason);

  Http1UpstreamPool& pool_;
  Clock::time_point deadline_;
  State state_ = State::kSending;
  Http1Upstream* up_ = nullptr;
  uint64_t body_bytes_ = 0;
  bool response_complete_ = false;
  bool attached_ = true;
};

}  // namespace nodemesh::waypoint
