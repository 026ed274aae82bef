#include "waypoint/proxy/loop.h"

#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

#include "common/sockets.h"

namespace nodemesh::waypoint {

Loop::Loop(const LoopOptions& options, hbone::TlsProvider& tls, identity::SpiffeId self,
           std::string self_uid)
    : options_(options), tls_(tls), self_(std::move(self)), proxy_(std::move(self_uid)) {}

Result<std::unique_ptr<Loop>> Loop::start(const LoopOptions& options, hbone::TlsProvider& tls,
                                          identity::SpiffeId self, std::string self_uid,
                                          model::SnapshotPtr snapshot,
                                          RequestTelemetry* telemetry) {
  std::unique_ptr<Loop> loop(new Loop(options, tls, std::move(self), std::move(self_uid)));
  auto fd = listenTcp(options.listen, /*mark=*/0);
  if (!fd)
    return Error{fd.error().code,
                 "listen on " + options.listen.toString() + ": " + fd.error().message};
  loop->listen_fd_ = std::move(*fd);
  loop->wake_fd_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!loop->wake_fd_.valid()) return Error::fromErrno("eventfd");
  loop->retry_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  if (!loop->retry_fd_.valid()) return Error::fromErrno("timerfd_create");
  loop->proxy_.setRetryBudget(options.retry_budget);
  loop->proxy_.setSnapshot(std::move(snapshot));
  loop->proxy_.setTelemetry(telemetry);
  loop->proxy_.setRequestTimeout(options.request_timeout);
  loop->proxy_.setUpstreamOptions(options.upstream);
  std::promise<Status> started;
  auto result = started.get_future();
  Loop* l = loop.get();
  loop->thread_ = std::thread([l, &started] {
    // The ring is created on the thread that submits (IORING_SETUP_SINGLE_ISSUER).
    auto ring = io::UringRing::create(l->options_.ring_entries, l->options_.hbone.connect_timeout,
                                      /*busy_poll=*/false);
    if (!ring) return started.set_value(ring.error());
    auto buffers = (*ring)->createBufferRing(/*group=*/0, l->options_.recv_buffers,
                                             l->options_.recv_buffer_bytes);
    if (!buffers) return started.set_value(buffers.error());
    l->ring_ = std::move(*ring);
    l->buffers_ = std::move(*buffers);
    l->receivers_ = std::make_unique<io::Receivers>(*l->ring_);
    l->conns_ = std::make_unique<HboneConns>(*l->ring_, *l->receivers_, *l->buffers_, l->tls_,
                                             l->self_, l->proxy_, l->options_.hbone);
    l->proxy_.setConnections(l->conns_.get());
    started.set_value(okStatus());
    l->run();
  });
  Status st = result.get();
  if (!st) {
    loop->thread_.join();
    return st.error();
  }
  return loop;
}

Loop::~Loop() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void Loop::setSnapshot(model::SnapshotPtr snapshot) {
  {
    std::lock_guard lock(mu_);
    pending_snapshot_ = std::move(snapshot);
  }
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

void Loop::stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_requested_) return;
    stop_requested_ = true;
  }
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

LoopStats Loop::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Loop::publishStats() {
  std::lock_guard lock(mu_);
  stats_.connections = conns_->stats();
  stats_.proxy = proxy_.stats();
}

void Loop::run() {
  ring_->acceptMultishot(listen_fd_.get(), &accept_tag_);
  ring_->read(wake_fd_.get(), &wake_buf_, sizeof(wake_buf_), &wake_tag_);
  ring_->timeout(timer_interval_, &timer_tag_);
  ring_->read(retry_fd_.get(), &retry_buf_, sizeof(retry_buf_), &retry_tag_);
  while (!stopping_) {
    ring_->submitAndDispatch();
    conns_->flush();
    proxy_.reap();
    armRetryTimer();
  }
  conns_->failAll("waypoint stopping");
  conns_->flush();
  proxy_.reap();
  publishStats();
}

void Loop::onCompletion(uint8_t op, int res, unsigned flags) {
  switch (op) {
    case kAccept:
      if (res >= 0) {
        conns_->acceptServer(UniqueFd(res));
      } else if (res != -ECANCELED) {
        spdlog::warn("waypoint: accept: {}", std::strerror(-res));
      }
      // A multishot accept that stopped (an error, or the kernel ran out of room) is re-armed.
      if (!(flags & IORING_CQE_F_MORE) && !stopping_) {
        ring_->acceptMultishot(listen_fd_.get(), &accept_tag_);
      }
      return;
    case kWake:
      return onWake();
    case kRetryTimer:
      // Expired: the due retries run and the read is armed again.
      retry_armed_.reset();
      proxy_.runRetries(Clock::now());
      if (!stopping_) ring_->read(retry_fd_.get(), &retry_buf_, sizeof(retry_buf_), &retry_tag_);
      return;
    case kTimer:
      receivers_->rearmStarved();
      conns_->onTimer();
      proxy_.onTimer();
      publishStats();
      if (!stopping_) ring_->timeout(timer_interval_, &timer_tag_);
      return;
    default:
      return;
  }
}

void Loop::armRetryTimer() {
  const std::optional<Clock::time_point> next = proxy_.nextRetry();
  if (next == retry_armed_) return;
  itimerspec spec{};
  if (next) {
    // steady_clock is CLOCK_MONOTONIC; 0 would disarm, so a due retry gets 1 ns.
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(next->time_since_epoch()).count();
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  }
  if (::timerfd_settime(retry_fd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
    spdlog::warn("waypoint: timerfd_settime: {}", std::strerror(errno));
    return;
  }
  retry_armed_ = next;
}

void Loop::onWake() {
  model::SnapshotPtr snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot = std::move(pending_snapshot_);
    stopping_ = stop_requested_;
  }
  if (snapshot) {
    spdlog::info("waypoint: config in force: {}", snapshot->summary());
    proxy_.setSnapshot(std::move(snapshot));
  }
  if (!stopping_) ring_->read(wake_fd_.get(), &wake_buf_, sizeof(wake_buf_), &wake_tag_);
}

}  // namespace nodemesh::waypoint
