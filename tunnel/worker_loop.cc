#include "tunnel/worker_loop.h"

#include "tunnel/poll_backoff.h"

namespace nodemesh::tunnel {

Result<std::unique_ptr<WorkerLoop>> WorkerLoop::create(const WorkerShared& shared) {
  const TunnelOptions& o = shared.options;
  auto ring = io::UringRing::create(o.ring_entries, o.connect_timeout, o.busy_poll.count() > 0);
  if (!ring) return ring.error();
  // Two buffer rings: application sockets in one, HBONE sockets in the other. A shared ring
  // deadlocks: application sockets can hold every buffer while their streams wait for HTTP/2
  // window updates, which only an HBONE socket can receive.
  auto app =
      (*ring)->createBufferRing(/*group=*/0, o.app_recv_buffer_count, o.app_recv_buffer_bytes);
  if (!app) return app.error();
  auto hbone =
      (*ring)->createBufferRing(/*group=*/1, o.hbone_recv_buffer_count, o.hbone_recv_buffer_bytes);
  if (!hbone) return hbone.error();
  return std::unique_ptr<WorkerLoop>(
      new WorkerLoop(shared, std::move(*ring), std::move(*app), std::move(*hbone)));
}

WorkerLoop::WorkerLoop(const WorkerShared& shared, std::unique_ptr<io::UringRing> ring,
                       std::unique_ptr<io::BufferRing> app_buffers,
                       std::unique_ptr<io::BufferRing> hbone_buffers)
    : shared_(shared),
      ring_(std::move(ring)),
      app_buffers_(std::move(app_buffers)),
      hbone_buffers_(std::move(hbone_buffers)),
      receivers_(*ring_, &shared.counters.recv_buffers_exhausted),
      pods_(*ring_, shared.options, *this),
      dialer_(shared.options, shared.counters, pods_, outbound_),
      pipes_(shared.options.splice_pipe_bytes, &shared.counters.splice_pipes_created),
      ctx_{*ring_,
           receivers_,
           *app_buffers_,
           shared.counters,
           *this,
           dialer_,
           shared.budget,
           shared.options.connect_timeout,
           shared.options.splice ? &pipes_ : nullptr},
      relay_(ctx_),
      bridges_(ctx_),
      authorizer_(shared.mesh, shared.counters),
      inbound_(ctx_, shared.options, relay_, bridges_, authorizer_, shared.limits),
      pool_(shared.tls ? std::make_unique<HbonePool>(ctx_, *hbone_buffers_, *shared.tls,
                                                     shared.options, inbound_)
                       : nullptr),
      outbound_(ctx_, shared.options, shared.resolver, shared.mesh, relay_, bridges_, pool_.get(),
                dialer_, pods_, inbound_) {}

void WorkerLoop::run() {
  armWake();
  armTimer();
  const auto busy_poll = shared_.options.busy_poll;
  PollBackoff backoff(shared_.options.busy_poll_adaptive);
  while (true) {
    if (busy_poll.count() > 0) {
      if (!backoff.shouldPoll()) {
        bump(shared_.counters.busy_poll_skipped);
      } else {
        switch (ring_->pollBeforeWait(busy_poll)) {
          case io::UringRing::PollResult::kReady:
            break;
          case io::UringRing::PollResult::kFound:
            bump(shared_.counters.busy_poll_hits);
            backoff.hit();
            break;
          case io::UringRing::PollResult::kExpired:
            bump(shared_.counters.busy_poll_misses);
            backoff.miss();
            break;
        }
      }
    }
    ring_->submitAndDispatch();
    if (draining_ && !accepts_stopped_ && pods_.acceptsStopped()) {
      accepts_stopped_ = true;
      shared_.mailbox.setAcceptsStopped();
    }
    // Before the flush: the resets of shed streams go out with it.
    bridges_.shedOverBudget();
    if (pool_) pool_->flushDirty();
    // After the flush: it may feed input held back and so accept more streams.
    bridges_.startDeferredConnects();
    if (shared_.mailbox.stopping() && shutdownDone()) break;
  }
}

void WorkerLoop::onCompletion(uint8_t op, int /*res*/, unsigned /*flags*/) {
  if (op == kWake) return onWake();
  timer_in_flight_ = false;
  onTimer();
}

void WorkerLoop::armWake() {
  ring_->read(shared_.mailbox.wakeFd(), &wake_buf_, sizeof(wake_buf_), &wake_tag_);
}

void WorkerLoop::armTimer() {
  ring_->timeout(timer_interval_, &timer_tag_);
  timer_in_flight_ = true;
}

void WorkerLoop::onWake() {
  Mailbox& mailbox = shared_.mailbox;
  mailbox.answerConnections([this] { return describeConnections(); });
  for (auto& command : mailbox.takePods()) {
    pods_.retire(command.cookie);
    if (command.pod) pods_.add(std::move(command.pod));
  }
  const bool stopping = mailbox.stopping();
  if (mailbox.takeDrain() && !stopping) {
    pods_.drain();
    draining_ = true;
    if (pool_) pool_->drainServers();
  }
  if (mailbox.takeRestartAccepts() && !stopping && !draining_) pods_.restartAccepts();
  if (stopping) {
    pods_.retireAll();
    relay_.abortAll("agent stopping");
    if (pool_) pool_->failAll("agent stopping");
    if (timer_in_flight_) ring_->removeTimeout(&timer_tag_);
  }
  if (mailbox.takePolicyChange() && !stopping) authorizer_.revokeDenied(relay_, bridges_);
  if (!stopping) armWake();
}

void WorkerLoop::onTimer() {
  if (shared_.mailbox.stopping()) return;
  // Safety net for receivers waiting for buffers (normally re-armed as buffers come back).
  receivers_.rearmStarved();
  if (pool_) pool_->onTimer();
  dialer_.prune(Clock::now());  // endpoints of removed workloads
  armTimer();
}

bool WorkerLoop::shutdownDone() const {
  return pods_.empty() && relay_.empty() && bridges_.empty() && (!pool_ || pool_->empty()) &&
         !timer_in_flight_;
}

void WorkerLoop::onAccepted(Listener& listener, UniqueFd fd) {
  switch (listener.kind) {
    case ListenerKind::kOutbound:
      return outbound_.accept(*listener.pod, std::move(fd));
    case ListenerKind::kInbound:
      return inbound_.acceptPlaintext(*listener.pod, std::move(fd));
    case ListenerKind::kHbone:
      // A pod gets a 15008 listener only with an identity, which it has only with TLS.
      if (pool_) pool_->acceptServer(*listener.pod, std::move(fd));
      return;
  }
}

void WorkerLoop::onRetiring(Pod& pod) {
  // Server-side HBONE connections point at the pod: detach them.
  if (pool_) pool_->forgetPod(pod);
}

void WorkerLoop::opened(const ConnectionRecord& record) {
  if (shared_.on_open) shared_.on_open(record);
}

void WorkerLoop::finished(const ConnectionRecord& record) {
  if (shared_.access_log) shared_.access_log(record);
}

std::vector<ConnectionInfo> WorkerLoop::describeConnections() const {
  const auto now = Clock::now();
  std::vector<ConnectionInfo> out;
  relay_.describe(out, now);
  bridges_.describe(out, now);
  return out;
}

}  // namespace nodemesh::tunnel
