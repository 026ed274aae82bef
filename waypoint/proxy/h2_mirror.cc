#include "waypoint/proxy/h2_mirror.h"

#include <utility>

#include <spdlog/spdlog.h>

#include "waypoint/proxy/http1_mirror.h"

namespace nodemesh::waypoint {

void H2Mirror::start(H2Upstreams& upstreams, const H2MirrorTarget& target, http2::RequestHead head,
                     bool end_stream, std::optional<uint64_t> content_length) {
  ++stats_.mirrors;
  if (content_length && *content_length > body_limit_) {
    return done(&stats_.mirrors_cancelled, "body over the mirror limit");
  }
  head.authority = shadowHost(head.authority);
  client_ended_ = end_stream;
  end_sent_ = end_stream;
  auto call = upstreams.open(std::move(head), end_stream, target.authority, target.connect, *this);
  if (!call) {
    spdlog::debug("waypoint: HTTP/2 mirror to {}: {}", target.authority, call.error().message);
    return done(&stats_.mirrors_failed, "no upstream");
  }
  call_ = std::move(*call);
  if (end_stream) state_ = State::kWaiting;
}

void H2Mirror::body(std::span<const uint8_t> data) {
  if (state_ != State::kSending) return;
  body_bytes_ += data.size();
  if (body_bytes_ > body_limit_) return done(&stats_.mirrors_cancelled, "body over the limit");
  pending_.insert(pending_.end(), data.begin(), data.end());
  pump();
}

void H2Mirror::end(const http2::HeaderList& trailers) {
  if (state_ != State::kSending) return;
  client_ended_ = true;
  trailers_ = trailers;
  pump();
}

void H2Mirror::cancel() {
  if (state_ == State::kDone) return;
  done(&stats_.mirrors_cancelled, "cancelled");
}

void H2Mirror::pump() {
  if (state_ != State::kSending || !call_) return;
  if (!pending_.empty()) {
    auto taken = call_->sendData(pending_);
    if (!taken) return done(&stats_.mirrors_failed, "body");
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(*taken));
    if (!pending_.empty()) return;  // onUpstreamWritable brings us back
  }
  if (client_ended_ && !end_sent_) {
    end_sent_ = true;
    if (Status st = call_->end(trailers_); !st) return done(&stats_.mirrors_failed, "end");
    state_ = State::kWaiting;
    // Answered before the copy was whole (an early 4xx): nothing left to wait for.
    if (response_ended_) done(nullptr, nullptr);
  }
}

void H2Mirror::onUpstreamResponse(const http2::ResponseHead& /*head*/, bool end_stream) {
  if (end_stream) onUpstreamEnd();
}

void H2Mirror::onUpstreamData(std::span<const uint8_t> data) {
  if (call_) call_->consumed(data.size());  // discarded, so the window reopens at once
}

void H2Mirror::onUpstreamEnd() {
  response_ended_ = true;
  if (state_ == State::kWaiting) done(nullptr, nullptr);
}

void H2Mirror::onUpstreamClosed(uint32_t error_code, const std::string& why) {
  if (state_ == State::kDone) return;
  if (error_code == hbone::kH2NoError && response_ended_) return done(nullptr, nullptr);
  spdlog::debug("waypoint: HTTP/2 mirror failed: {}", why);
  done(&stats_.mirrors_failed, "failed");
}

void H2Mirror::done(uint64_t* counter, const char* why) {
  if (state_ == State::kDone) return;
  state_ = State::kDone;
  if (counter) ++*counter;
  if (why) spdlog::debug("waypoint: HTTP/2 mirror ended: {}", why);
  // Not a clean end: the backend must not take the copy as whole (reset does nothing on a stream
  // that closed already). A clean end (both ends sent) closes the stream by itself.
  if (call_ && counter) call_->reset(hbone::kH2Cancel);
  std::vector<uint8_t>().swap(pending_);
}

}  // namespace nodemesh::waypoint
