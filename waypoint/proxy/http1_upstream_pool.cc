#include "waypoint/proxy/http1_upstream_pool.h"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

#include "waypoint/proxy/http1_mirror.h"

namespace nodemesh::waypoint {

// ---- one connection ----

Status Http1Upstream::flush() {
  if (!open_) return Error{EPIPE, "upstream stream closed"};
  while (codec_->pendingBytes() > 0) {
    auto taken = target_.conn->send(stream_, codec_->pendingOutput());
    if (!taken) return taken.error();
    if (*taken == 0) break;  // onStreamWritable brings the user back
    codec_->consumeOutput(*taken);
  }
  return okStatus();
}

Status Http1Upstream::pump(const std::function<bool()>& more) {
  Http1UpstreamUser* const user = user_;
  while (!in_.empty() && user_ == user && state_ == State::kLeased && more()) {
    std::vector<uint8_t> chunk = std::move(in_.front());
    in_.pop_front();
    if (open_) (void)target_.conn->consumed(stream_, chunk.size());
    auto taken = codec_->receive(chunk);
    if (!taken) return taken.error();
  }
  if (in_.empty() && eof_ && !eof_delivered_ && user_ == user && state_ == State::kLeased) {
    eof_delivered_ = true;
    if (Status st = codec_->receiveEof(); !st.ok()) return st;
  }
  return okStatus();
}

void Http1Upstream::onConnectResponse(int status) {
  if (status == hbone::kStatusOk) {
    established_ = true;
    return;
  }
  const std::string why = "the endpoint's agent answered " + std::to_string(status);
  if (user_) return user_->onUpstreamFailed(why);
  pool_.close(this, /*graceful=*/false);
}

void Http1Upstream::onStreamData(std::span<const uint8_t> data) {
  if (state_ != State::kLeased) {
    // Bytes nobody asked for on an idle connection: it is out of step, never reuse it.
    if (open_) (void)target_.conn->consumed(stream_, data.size());
    ++pool_.stats_.idle_closed;
    return pool_.close(this, /*graceful=*/false);
  }
  received_in_lease_ = true;
  in_.emplace_back(data.begin(), data.end());
  if (user_) user_->onUpstreamData();
}

void Http1Upstream::onStreamEnd() {
  eof_ = true;
  if (state_ != State::kLeased) {
    ++pool_.stats_.idle_closed;  // the pod closed its idle keep-alive connection
    return pool_.close(this, /*graceful=*/true);
  }
  if (user_) user_->onUpstreamData();
}

void Http1Upstream::onStreamWritable() {
  if (user_) user_->onUpstreamWritable();
}

void Http1Upstream::onStreamClosed(uint32_t error_code, const std::string& why) {
  open_ = false;
  if (state_ != State::kLeased) {
    ++pool_.stats_.idle_closed;
    return pool_.close(this, /*graceful=*/false);
  }
  // Closed cleanly after the endpoint's end of stream: what it sent is still to be read.
  if (eof_ && error_code == hbone::kH2NoError) {
    if (user_) user_->onUpstreamData();
    return;
  }
  if (user_) {
    user_->onUpstreamFailed(why.empty() ? std::string("upstream stream closed (") +
                                              std::string(hbone::h2ErrorName(error_code)) + ")"
                                        : why);
  }
}

void Http1Upstream::onResponseHead(const http1::ResponseHead& head,
                                   const http1::ResponseInfo& info) {
  if (user_) user_->onResponseHead(head, info);
}

void Http1Upstream::onResponseBody(std::span<const uint8_t> data) {
  if (user_) user_->onResponseBody(data);
}

void Http1Upstream::onResponseTrailers(const http1::Headers& trailers) {
  if (user_) user_->onResponseTrailers(trailers);
}

void Http1Upstream::onResponseComplete() {
  if (user_) user_->onResponseComplete();
}

void Http1Upstream::onResponseError(const http1::Rejection& rejection) {
  if (user_) return user_->onResponseError(rejection);
  if (state_ == State::kIdle) pool_.close(this, /*graceful=*/false);
}

// ---- the pool ----

Http1UpstreamPool::Http1UpstreamPool(Http1UpstreamPoolOptions options) : options_(options) {}

Http1UpstreamPool::~Http1UpstreamPool() {
  // The loop fails every HBONE connection before the proxy goes, so streams are closed by now;
  // any still open are let go without touching their connection's state machine further.
  for (auto& up : all_) {
    if (up->open_) up->target_.conn->detach(up->stream_, /*reset=*/true);
    up->open_ = false;
  }
}

Result<Http1Upstream*> Http1UpstreamPool::acquire(const UpstreamTarget& target,
                                                  Http1UpstreamUser& user, bool fresh) {
  if (!fresh) {
    auto it = idle_.find(target.authority);
    while (it != idle_.end() && !it->second.empty()) {
      Http1Upstream* up = it->second.back();
      it->second.pop_back();
      if (it->second.empty()) idle_.erase(it);
      --stats_.idle;
      if (up->open_ && up->codec_->isReusable() && up->in_.empty() && !up->eof_) {
        up->state_ = Http1Upstream::State::kLeased;
        up->user_ = &user;
        up->reused_ = true;
        ++up->leases_;
        up->received_in_lease_ = false;
        ++stats_.reuses;
        return up;
      }
      close(up, /*graceful=*/false);
      it = idle_.find(target.authority);
    }
  }
  if (!target.conn) return Error::invalid("no HBONE connection to " + target.authority);
  auto owned = std::unique_ptr<Http1Upstream>(new Http1Upstream(*this));
  Http1Upstream* up = owned.get();
  auto codec = http1::ClientCodec::create(*up);
  if (!codec) return codec.error();
  up->codec_ = std::move(*codec);
  up->target_ = target;
  up->leases_ = 1;
  up->user_ = &user;
  hbone::ConnectHeaders headers;
  auto stream = target.conn->openConnect(target.authority, headers, up);
  if (!stream) return stream.error();
  up->stream_ = *stream;
  up->open_ = true;
  all_.push_back(std::move(owned));
  up->self_ = std::prev(all_.end());
  ++stats_.connects;
  return up;
}

void Http1UpstreamPool::release(Http1Upstream* up, bool clean) {
  if (!up || up->state_ != Http1Upstream::State::kLeased) return;
  up->user_ = nullptr;
  std::vector<Http1Upstream*>& idle = idle_[up->target_.authority];
  const bool reusable = clean && up->open_ && up->codec_->isReusable() &&
                        up->codec_->pendingBytes() == 0 && up->in_.empty() && !up->eof_ &&
                        up->target_.conn->state() == HboneConn::State::kOpen &&
                        idle.size() < options_.max_idle_per_endpoint &&
                        (up->target_.max_requests == 0 || up->leases_ < up->target_.max_requests);
  if (!reusable) {
    if (idle.empty()) idle_.erase(up->target_.authority);
    return close(up, /*graceful=*/clean);
  }
  up->state_ = Http1Upstream::State::kIdle;
  up->idle_since_ = Clock::now();
  idle.push_back(up);
  ++stats_.idle;
}

void Http1UpstreamPool::removeIdle(Http1Upstream* up) {
  auto it = idle_.find(up->target_.authority);
  if (it == idle_.end()) return;
  auto& list = it->second;
  auto at = std::find(list.begin(), list.end(), up);
  if (at == list.end()) return;
  list.erase(at);
  --stats_.idle;
  if (list.empty()) idle_.erase(it);
}

void Http1UpstreamPool::close(Http1Upstream* up, bool graceful) {
  if (up->state_ == Http1Upstream::State::kClosed) return;
  if (up->state_ == Http1Upstream::State::kIdle) removeIdle(up);
  up->state_ = Http1Upstream::State::kClosed;
  up->user_ = nullptr;
  if (up->open_) {
    // A FIN ends the pod's TCP connection as a client closing it would; a reset when the
    // exchange broke (the endpoint must not take a partial request as whole).
    if (graceful) (void)up->target_.conn->endStream(up->stream_);
    up->target_.conn->detach(up->stream_, /*reset=*/!graceful);
    up->open_ = false;
  }
  closed_.push_back(std::move(*up->self_));
  all_.erase(up->self_);
}

Http1Mirror* Http1UpstreamPool::startMirror(const UpstreamTarget& target,
                                            const http1::RequestHead& head,
                                            std::optional<uint64_t> body_length,
                                            std::chrono::milliseconds timeout) {
  ++stats_.mirrors;
  mirrors_.push_back(std::make_unique<Http1Mirror>(*this, Clock::now() + timeout));
  Http1Mirror* m = mirrors_.back().get();
  (void)m->start(target, head, body_length);
  return m;
}

void Http1UpstreamPool::onTimer(Clock::time_point now) {
  std::vector<Http1Upstream*> expired;
  for (auto& [authority, list] : idle_) {
    for (Http1Upstream* up : list) {
      if (now - up->idle_since_ >= options_.idle_timeout) expired.push_back(up);
    }
  }
  for (Http1Upstream* up : expired) {
    ++stats_.idle_closed;
    close(up, /*graceful=*/true);
  }
  for (auto& m : mirrors_) {
    if (!m->finished() && now >= m->deadline()) m->cancel();
  }
}

void Http1UpstreamPool::reap() {
  closed_.clear();
  for (auto it = mirrors_.begin(); it != mirrors_.end();) {
    if ((*it)->finished() && !(*it)->attached()) {
      it = mirrors_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace nodemesh::waypoint
