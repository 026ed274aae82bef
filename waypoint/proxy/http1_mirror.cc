#include "waypoint/proxy/http1_mirror.h"

#include <utility>

#include <spdlog/spdlog.h>

namespace nodemesh::waypoint {

std::string shadowHost(std::string_view host) {
  // A port follows the last ':' unless the host is a bracketed IPv6 literal without a port.
  const auto colon = host.rfind(':');
  const auto bracket = host.rfind(']');
  if (colon == std::string_view::npos || (bracket != std::string_view::npos && bracket > colon)) {
    std::string out(host);
    out.append("-shadow");
    return out;
  }
  std::string out(host.substr(0, colon));
  out.append("-shadow");
  out.append(host.substr(colon));
  return out;
}

Http1Mirror::Http1Mirror(Http1UpstreamPool& pool, Clock::time_point deadline)
    : pool_(pool), deadline_(deadline) {}

bool Http1Mirror::start(const UpstreamTarget& target, const http1::RequestHead& head,
                        std::optional<uint64_t> body_length) {
  if (body_length && *body_length > pool_.options().mirror_body_limit) {
    done(/*clean=*/false, "body over the mirror limit");
    ++pool_.stats().mirrors_cancelled;
    return false;
  }
  auto up = pool_.acquire(target, *this);
  if (!up) {
    spdlog::debug("waypoint: mirror to {}: {}", target.authority, up.error().message);
    ++pool_.stats().mirrors_failed;
    done(/*clean=*/false, "no upstream");
    return false;
  }
  up_ = *up;
  http1::RequestHead copy = head;
  const std::string host(copy.headers.get("host").value_or(""));
  copy.headers.remove("host");
  copy.headers.add("host", shadowHost(host));
  if (Status st = up_->codec().sendRequestHead(copy, body_length); !st.ok()) {
    ++pool_.stats().mirrors_failed;
    done(/*clean=*/false, "request head");
    return false;
  }
  (void)up_->flush();
  return true;
}

void Http1Mirror::body(std::span<const uint8_t> data) {
  if (state_ != State::kSending || !up_) return;
  body_bytes_ += data.size();
  if (body_bytes_ > pool_.options().mirror_body_limit) {
    ++pool_.stats().mirrors_cancelled;
    return done(/*clean=*/false, "body over the mirror limit");
  }
  if (Status st = up_->codec().sendBody(data); !st.ok()) {
    ++pool_.stats().mirrors_failed;
    return done(/*clean=*/false, "body");
  }
  (void)up_->flush();
}

void Http1Mirror::end() {
  if (state_ != State::kSending || !up_) return;
  if (Status st = up_->codec().sendEnd(); !st.ok()) {
    ++pool_.stats().mirrors_failed;
    return done(/*clean=*/false, "end");
  }
  state_ = State::kWaiting;
  (void)up_->flush();
  // Answered before the request was written whole (an early 4xx): nothing left to wait for.
  if (response_complete_) done(/*clean=*/true, nullptr);
}

void Http1Mirror::cancel() {
  if (state_ == State::kDone) return;
  ++pool_.stats().mirrors_cancelled;
  done(/*clean=*/false, "cancelled");
}

void Http1Mirror::onUpstreamData() {
  if (!up_) return;
  if (Status st = up_->pump([] { return true; }); !st.ok() && state_ != State::kDone) {
    ++pool_.stats().mirrors_failed;
    done(/*clean=*/false, "bad response");
  }
}

void Http1Mirror::onUpstreamWritable() {
  if (up_) (void)up_->flush();
}

void Http1Mirror::onUpstreamFailed(const std::string& why) {
  if (state_ == State::kDone) return;
  spdlog::debug("waypoint: mirror to {} failed: {}", up_ ? up_->authority() : "?", why);
  ++pool_.stats().mirrors_failed;
  done(/*clean=*/false, "failed");
}

void Http1Mirror::onResponseHead(const http1::ResponseHead& /*head*/,
                                 const http1::ResponseInfo& /*info*/) {}

void Http1Mirror::onResponseComplete() {
  response_complete_ = true;
  // The response is discarded; the connection serves the next request once the copy is out.
  if (state_ == State::kWaiting) done(/*clean=*/true, nullptr);
}

void Http1Mirror::onResponseError(const http1::Rejection& /*rejection*/) {
  if (state_ == State::kDone) return;
  ++pool_.stats().mirrors_failed;
  done(/*clean=*/false, "bad response");
}

void Http1Mirror::done(bool clean, const char* counter_reason) {
  if (state_ == State::kDone) return;
  state_ = State::kDone;
  if (counter_reason) spdlog::debug("waypoint: mirror ended: {}", counter_reason);
  if (up_) pool_.release(up_, clean);
  up_ = nullptr;
}

}  // namespace nodemesh::waypoint
