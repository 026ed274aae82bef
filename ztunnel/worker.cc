// The io_uring worker: the loop, the pods' listeners, and the plain TCP relay behind 15001 (to
// a destination outside the mesh, with the tunnel's mark) and 15006 (inbound, delivered to
// the application from the client's address). HBONE is in hbone_relay.cc. See worker.h.
#include "ztunnel/worker.h"

#include <netinet/in.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

#include "common/netns.h"
#include "ztunnel/inpod_routing.h"
#include "ztunnel/inpod_sockets.h"

namespace nodemesh::ztunnel {
namespace internal {

Worker::Worker(const TunnelOptions& options, OrigDstResolver& resolver, TlsProvider* tls,
               AccessLogFn access_log, ConnectionOpenFn on_open)
    : options_(options),
      resolver_(resolver),
      tls_(tls),
      access_log_(std::move(access_log)),
      on_open_(std::move(on_open)),
      picker_(lb::LbOptions{.max_attempts = options.connect_attempts,
                            .connect_timeout = options.connect_timeout}) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.connect_timeout);
  connect_timeout_.tv_sec = ns.count() / 1000000000;
  connect_timeout_.tv_nsec = ns.count() % 1000000000;
}

Worker::~Worker() {
  stop();
}

Status Worker::init() {
  wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_.valid()) return Error::fromErrno("eventfd");
  // The ring is created by the thread that runs it: with IORING_SETUP_SINGLE_ISSUER only the
  // creating task may submit to it.
  // The thread owns the promise: set_value() may still be running when init() returns.
  std::promise<Status> ready;
  auto started = ready.get_future();
  thread_ = std::thread([this, ready = std::move(ready)]() mutable {
    Status st = initRing();
    const bool ok = st.ok();
    ready.set_value(std::move(st));
    if (ok) run();
  });
  Status st = started.get();
  if (!st.ok()) thread_.join();
  return st;
}

Status Worker::initRing() {
  // SINGLE_ISSUER + DEFER_TASKRUN (Linux 6.1): completion work runs only when this thread waits
  // for completions, in a batch, instead of interrupting it as soon as a socket turns ready; it
  // cut the round trip of small requests through the tunnel (bench/README.md). Older kernels
  // reject the flags, and the ring is then created without them.
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  // Busy polling watches IORING_SQ_TASKRUN: with DEFER_TASKRUN a socket that turns ready
  // queues work for this thread (the receive itself) and, when the thread is not asleep in
  // the ring, only raises that flag.
  if (options_.busy_poll.count() > 0) params.flags |= IORING_SETUP_TASKRUN_FLAG;
  int err = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
  if (err == -EINVAL && params.flags != 0) {
    params = io_uring_params{};
    err = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
  }
  if (err < 0) return Error::fromErrno("io_uring_queue_init", -err);
  ring_ready_ = true;
  // The ring's descriptor registered for this thread (Linux 5.18): io_uring_enter then skips
  // the file table lookup, 55-65 ns of each call here, and the worker makes two per wake-up.
  // Optional: without it liburing passes the plain descriptor.
  (void)io_uring_register_ring_fd(&ring_);
  // Two rings: TCP sockets (applications) in one, HBONE sockets in the other. A shared ring
  // deadlocks: application sockets can hold every buffer while their streams wait for HTTP/2
  // window updates, which only an HBONE socket can receive.
  auto buffers = BufferRing::create(&ring_, /*group=*/0, options_.recv_buffer_count,
                                    options_.recv_buffer_bytes);
  if (!buffers) return buffers.error();
  buffers_ = std::move(*buffers);
  auto hbone_buffers = BufferRing::create(&ring_, /*group=*/1, options_.recv_buffer_count,
                                          options_.recv_buffer_bytes);
  if (!hbone_buffers) return hbone_buffers.error();
  hbone_buffers_ = std::move(*hbone_buffers);
  return okStatus();
}

Result<PodListenerFds> Worker::addPod(const PodSpec& spec) {
  return addPod(spec, true);
}

Result<PodListenerFds> Worker::addPod(const PodSpec& spec, bool outbound) {
  auto pod = std::make_unique<Pod>();
  pod->cookie = spec.netns_cookie;
  pod->name = spec.name;
  pod->ips = spec.ips;
  pod->identity = tls_ ? spec.identity : std::nullopt;
  pod->netns.reset(::dup(spec.netns_fd));
  if (!pod->netns.valid()) return Error::fromErrno("dup netns fd");
  if (pod->identity) {
    // The workload's certificate is issued at enrollment (and its TLS context built), not on
    // its first connection.
    if (auto ctx = tls_->serverContext(*pod->identity); !ctx) {
      return Error{ctx.error().code, spec.name + ": certificate for " + pod->identity->toString() +
                                         ": " + ctx.error().message};
    }
  }

  PodListenerFds fds;
  {
    auto scope = ScopedNetns::enter(spec.netns_fd);
    if (!scope) return scope.error();
    if (auto st = installDeliveryRouting(options_.delivery_mark, options_.delivery_route_table);
        !st) {
      return Error{st.error().code, spec.name + ": " + st.error().message};
    }
    auto add = [&](const char* ip, uint16_t port, ListenerKind kind, int* out) -> Status {
      auto addr = SocketAddress{IpAddress::parse(ip).value(), port};
      // Only inbound listeners form a group across workers (outbound has one owner).
      auto fd = listenTcp(addr, options_.outbound_mark,
                          options_.workers > 1 && kind != ListenerKind::kOutbound);
      if (!fd) return Error{fd.error().code, spec.name + ": " + fd.error().message};
      auto l = std::make_unique<Listener>();
      l->fd = std::move(*fd);
      l->pod = pod.get();
      l->kind = kind;
      *out = l->fd.get();
      pod->listeners.push_back(std::move(l));
      return okStatus();
    };
    if (outbound) {
      if (auto st =
              add("127.0.0.1", options_.outbound_port, ListenerKind::kOutbound, &fds.outbound_v4);
          !st) {
        return st.error();
      }
    }
    if (auto st = add("0.0.0.0", options_.inbound_port, ListenerKind::kInbound, &fds.inbound_v4);
        !st) {
      return st.error();
    }
    if (pod->identity) {
      if (auto st = add("0.0.0.0", options_.hbone_port, ListenerKind::kHbone, &fds.hbone_v4); !st) {
        return st.error();
      }
    }
    if (spec.ipv6) {
      // A pod without ::1 (IPv6 disabled) still gets IPv4 capture: not fatal.
      if (!outbound) {
        // another worker serves the pod's outbound connections
      } else if (auto st =
                     add("::1", options_.outbound_port, ListenerKind::kOutbound, &fds.outbound_v6);
                 !st) {
        spdlog::warn("{}: no IPv6 outbound listener: {}", spec.name, st.error().message);
      }
      if (auto st = add("::", options_.inbound_port, ListenerKind::kInbound, &fds.inbound_v6);
          !st) {
        spdlog::warn("{}: no IPv6 inbound listener: {}", spec.name, st.error().message);
      }
      if (pod->identity) {
        if (auto st = add("::", options_.hbone_port, ListenerKind::kHbone, &fds.hbone_v6); !st) {
          spdlog::warn("{}: no IPv6 HBONE listener: {}", spec.name, st.error().message);
        }
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    commands_.push_back(Command{spec.netns_cookie, std::move(pod)});
  }
  wake();
  return fds;
}

void Worker::removePod(uint64_t cookie) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    commands_.push_back(Command{cookie, nullptr});
  }
  wake();
}

void Worker::setSnapshot(model::SnapshotPtr snapshot) {
  auto authorizer = snapshot ? std::make_shared<const policy::Authorizer>(snapshot) : nullptr;
  setSnapshot(std::move(snapshot), std::move(authorizer));
}

void Worker::setSnapshot(model::SnapshotPtr snapshot,
                         std::shared_ptr<const policy::Authorizer> authorizer) {
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot_ = std::move(snapshot);
    authorizer_ = std::move(authorizer);
  }
  // Open connections are checked against the new policies on the worker's thread.
  policy_changed_.store(true);
  wake();
}

model::SnapshotPtr Worker::snapshot() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return snapshot_;
}

std::shared_ptr<const policy::Authorizer> Worker::authorizer() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return authorizer_;
}

TunnelStats Worker::stats() const {
  TunnelStats s;
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.accepted_outbound = get(accepted_outbound_);
  s.accepted_inbound = get(accepted_inbound_);
  s.accepted_hbone = get(accepted_hbone_);
  s.completed = get(completed_);
  s.failed_no_orig_dst = get(failed_no_orig_dst_);
  s.failed_connect = get(failed_connect_);
  s.failed_io = get(failed_io_);
  s.active = get(active_);
  s.bytes_to_dst = get(bytes_to_dst_);
  s.bytes_from_dst = get(bytes_from_dst_);
  s.tls_handshakes_client = get(tls_handshakes_client_);
  s.tls_handshakes_server = get(tls_handshakes_server_);
  s.tls_handshake_failures = get(tls_handshake_failures_);
  s.hbone_streams_opened = get(hbone_streams_opened_);
  s.hbone_streams_accepted = get(hbone_streams_accepted_);
  s.hbone_streams_rejected = get(hbone_streams_rejected_);
  s.hbone_pool_size = get(hbone_pool_size_);
  s.denied = get(denied_);
  s.closed_by_policy = get(closed_by_policy_);
  s.connect_retries = get(connect_retries_);
  s.connect_timeouts = get(connect_timeouts_);
  s.busy_poll_hits = get(busy_poll_hits_);
  s.busy_poll_misses = get(busy_poll_misses_);
  return s;
}

void Worker::stop() {
  if (!thread_.joinable()) {
    if (ring_ready_) io_uring_queue_exit(&ring_);
    ring_ready_ = false;
    return;
  }
  stopping_.store(true);
  wake();
  thread_.join();
  io_uring_queue_exit(&ring_);
  ring_ready_ = false;
}

void Worker::wake() const {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
  (void)n;  // EAGAIN means a wake-up is already pending
}

io_uring_sqe* Worker::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void Worker::armWake() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, wake_fd_.get(), &wake_buf_, sizeof(wake_buf_), 0);
  io_uring_sqe_set_data(s, &wake_tag_);
}

void Worker::armTimer() {
  io_uring_sqe* s = sqe();
  io_uring_prep_timeout(s, &timer_interval_, 0, 0);
  io_uring_sqe_set_data(s, &timer_tag_);
  timer_in_flight_ = true;
}

void Worker::armAccept(Listener* l) {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, l->fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(s, &l->tag);
  l->in_flight = true;
}

void Worker::prepConnect(int fd, const sockaddr_storage& addr, socklen_t len, OpTag* tag) {
  // The pair must go in one submission: a link does not span two.
  if (io_uring_sq_space_left(&ring_) < 2) io_uring_submit(&ring_);
  io_uring_sqe* s = sqe();
  io_uring_prep_connect(s, fd, reinterpret_cast<const sockaddr*>(&addr), len);
  io_uring_sqe_set_data(s, tag);
  s->flags |= IOSQE_IO_LINK;
  io_uring_sqe* t = sqe();
  io_uring_prep_link_timeout(t, &connect_timeout_, 0);
  io_uring_sqe_set_data(t, &ignore_tag_);
}

std::string Worker::connectFailure(int res) {
  if (res != -ECANCELED) return std::strerror(-res);
  connect_timeouts_.fetch_add(1, std::memory_order_relaxed);
  return "timed out after " + std::to_string(options_.connect_timeout.count()) + " ms";
}

void Worker::run() {
  armWake();
  armTimer();
  while (true) {
    if (options_.busy_poll.count() > 0) {
      switch (pollBeforeWait()) {
        case PollResult::kReady:
          break;
        case PollResult::kFound:
          busy_poll_hits_.fetch_add(1, std::memory_order_relaxed);
          break;
        case PollResult::kExpired:
          busy_poll_misses_.fetch_add(1, std::memory_order_relaxed);
          break;
      }
    }
    io_uring_submit_and_wait(&ring_, 1);
    io_uring_cqe* cqe;
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++count;
      handle(static_cast<OpTag*>(io_uring_cqe_get_data(cqe)), cqe->res, cqe->flags);
    }
    io_uring_cq_advance(&ring_, count);
    flushDirty();
    if (stopping_.load() && shutdownDone()) break;
  }
}

Worker::PollResult Worker::pollBeforeWait() {
  io_uring_submit(&ring_);
  auto work_waiting = [this] {
    return io_uring_cq_ready(&ring_) > 0 ||
           (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0;
  };
  if (work_waiting()) return PollResult::kReady;
  const auto until = std::chrono::steady_clock::now() + options_.busy_poll;
  do {
    if (std::chrono::steady_clock::now() >= until) return PollResult::kExpired;
    ::sched_yield();
  } while (!work_waiting());
  return PollResult::kFound;
}

void Worker::handle(OpTag* tag, int res, unsigned flags) {
  if (!tag) return;
  switch (tag->kind) {
    case OpKind::kWake:
      onWake();
      break;
    case OpKind::kTimer:
      timer_in_flight_ = false;
      onTimer();
      break;
    case OpKind::kAccept:
      onAccept(static_cast<Listener*>(tag->owner), res, flags);
      break;
    case OpKind::kAcceptBackoff: {
      auto* l = static_cast<Listener*>(tag->owner);
      l->in_flight = false;
      if (l->closing) {
        reapPods();
      } else {
        armAccept(l);
      }
      break;
    }
    case OpKind::kConnect:
      onConnect(static_cast<Conn*>(tag->owner), res);
      break;
    case OpKind::kRecv:
      onRecv(static_cast<Conn*>(tag->owner), tag->half, res, flags);
      break;
    case OpKind::kSend:
      onSend(static_cast<Conn*>(tag->owner), tag->half, res);
      break;
    case OpKind::kShutdown:
      onShutdown(static_cast<Conn*>(tag->owner), tag->half, res);
      break;
    case OpKind::kHboneConnect:
      onHboneConnect(static_cast<HboneConn*>(tag->owner), res);
      break;
    case OpKind::kHboneRecv:
      onHboneRecv(static_cast<HboneConn*>(tag->owner), res, flags);
      break;
    case OpKind::kHboneSend:
      onHboneSend(static_cast<HboneConn*>(tag->owner), res);
      break;
    case OpKind::kBridgeConnect:
      onBridgeConnect(static_cast<Bridge*>(tag->owner), res);
      break;
    case OpKind::kBridgeRecv:
      onBridgeRecv(static_cast<Bridge*>(tag->owner), res, flags);
      break;
    case OpKind::kBridgeSend:
      onBridgeSend(static_cast<Bridge*>(tag->owner), res);
      break;
    case OpKind::kBridgeShutdown:
      onBridgeShutdown(static_cast<Bridge*>(tag->owner), res);
      break;
    case OpKind::kIgnore:
      break;
  }
}

void Worker::onWake() {
  answerConnectionRequests();
  std::vector<Command> commands;
  {
    std::lock_guard<std::mutex> lock(mu_);
    commands.swap(commands_);
  }
  // In order: a pod removed and added again (same netns) must end up with the new listeners.
  for (auto& cmd : commands) {
    retirePod(cmd.cookie);
    if (cmd.pod) {
      for (auto& l : cmd.pod->listeners) armAccept(l.get());
      pods_[cmd.cookie] = std::move(cmd.pod);
    }
  }
  if (stopping_.load()) {
    std::vector<uint64_t> cookies;
    for (auto& [cookie, pod] : pods_) cookies.push_back(cookie);
    for (uint64_t cookie : cookies) retirePod(cookie);
    std::vector<Conn*> open;
    for (auto& c : conns_) open.push_back(c.get());
    for (Conn* c : open) abort(c, "agent stopping");  // may erase from conns_
    std::vector<HboneConn*> hbone;
    for (auto& c : hbone_conns_) hbone.push_back(c.get());
    for (HboneConn* c : hbone) failHbone(c, "agent stopping");
    if (timer_in_flight_) {
      io_uring_sqe* s = sqe();
      io_uring_prep_timeout_remove(s, reinterpret_cast<uint64_t>(&timer_tag_), 0);
      io_uring_sqe_set_data(s, &ignore_tag_);
    }
  }
  if (policy_changed_.exchange(false) && !stopping_.load()) revokeDenied();
  reapPods();
  if (!stopping_.load()) armWake();
}

void Worker::onTimer() {
  if (stopping_.load()) return;
  // Safety net for receivers waiting for buffers (normally re-armed as buffers come back).
  rearmStarved();
  closeIdleHbone();
  picker_.prune(Clock::now());  // endpoints of removed workloads
  armTimer();
}

// Moves a pod out of service: no more accepts; its listeners close once their accept
// operations have completed (reapPods).
void Worker::retirePod(uint64_t cookie) {
  auto it = pods_.find(cookie);
  if (it == pods_.end()) return;
  closePod(it->second.get());
  if (auto scope = ScopedNetns::enter(it->second->netns.get()); scope) {
    if (auto st = removeDeliveryRouting(options_.delivery_mark, options_.delivery_route_table);
        !st) {
      spdlog::warn("{}: removing delivery routing: {}", it->second->name, st.error().message);
    }
  }
  // Server-side HBONE connections point at the pod: detach them.
  for (auto& c : hbone_conns_) {
    if (c->server_pod == it->second.get()) c->server_pod = nullptr;
  }
  retired_.push_back(std::move(it->second));
  pods_.erase(it);
}

void Worker::closePod(Pod* pod) {
  pod->removed = true;
  for (auto& l : pod->listeners) {
    if (l->closing) continue;
    l->closing = true;
    if (l->in_flight) {
      for (OpTag* tag : {&l->tag, &l->backoff_tag}) {
        io_uring_sqe* s = sqe();
        io_uring_prep_cancel(s, tag, 0);
        io_uring_sqe_set_data(s, &ignore_tag_);
      }
    }
  }
}

void Worker::reapPods() {
  for (auto it = retired_.begin(); it != retired_.end();) {
    bool idle = true;
    for (auto& l : (*it)->listeners) idle = idle && !l->in_flight;
    it = idle ? retired_.erase(it) : std::next(it);
  }
}

bool Worker::shutdownDone() const {
  return pods_.empty() && retired_.empty() && conns_.empty() && hbone_conns_.empty() &&
         bridges_.empty() && !timer_in_flight_;
}

void Worker::onAccept(Listener* l, int res, unsigned flags) {
  bool more = flags & IORING_CQE_F_MORE;
  if (!more) l->in_flight = false;
  if (res >= 0) {
    if (l->closing) {
      ::close(res);
    } else if (l->kind == ListenerKind::kHbone) {
      acceptHbone(l, UniqueFd(res));
    } else {
      startConn(l, UniqueFd(res));
    }
  } else if (res != -ECANCELED) {
    spdlog::warn("{}: accept failed: {}", l->pod->name, std::strerror(-res));
  }
  if (more) return;
  if (l->closing) return reapPods();
  if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
    // Out of descriptors or memory: retrying at once would spin. Pending connections wait
    // in the backlog meanwhile.
    io_uring_sqe* s = sqe();
    io_uring_prep_timeout(s, &l->backoff, 0, 0);
    io_uring_sqe_set_data(s, &l->backoff_tag);
    l->in_flight = true;
    return;
  }
  armAccept(l);
}

Conn* Worker::newConn(Listener* l, UniqueFd fd) {
  return newConn(l->kind == ListenerKind::kOutbound ? Direction::kOutbound : Direction::kInbound,
                 l->pod->name, std::move(fd));
}

Conn* Worker::newConn(Direction direction, const std::string& pod, UniqueFd fd) {
  auto conn = std::make_unique<Conn>();
  Conn* c = conn.get();
  c->start = Clock::now();
  c->down = std::move(fd);
  c->record.direction = direction;
  c->record.pod = pod;
  conns_.push_back(std::move(conn));
  c->self = std::prev(conns_.end());
  active_.fetch_add(1, std::memory_order_relaxed);
  return c;
}

void Worker::dropConn(Conn* c) {
  active_.fetch_sub(1, std::memory_order_relaxed);
  conns_.erase(c->self);
}

void Worker::startConn(Listener* l, UniqueFd fd) {
  auto peer = peerAddress(fd.get());
  auto local = localAddress(fd.get());
  if (l->kind == ListenerKind::kOutbound) {
    accepted_outbound_.fetch_add(1, std::memory_order_relaxed);
    std::optional<SocketAddress> dst;
    if (peer) dst = resolver_.takeOrigDst(l->pod->cookie, *peer);
    auto snap = peer && dst ? snapshot() : nullptr;
    if (snap) {
      // A service VIP: one of its endpoints, picked by the load balancer.
      if (const model::Service* service = snap->serviceByVip(dst->ip)) {
        auto target = std::make_unique<ServiceTarget>();
        target->snapshot = snap;
        target->service = service;
        target->vip = *dst;
        target->pod_cookie = l->pod->cookie;
        return startServiceConnection(l->pod, std::move(fd), *peer, std::move(target), "");
      }
      // A destination in the mesh is reached with HBONE; anything else with plain TCP.
      const model::Workload* w = snap->workloadByIp(dst->ip);
      if (w && w->protocol == model::Protocol::Hbone && l->pod->identity) {
        return startOutboundHbone(l->pod, std::move(fd), *peer, *dst, *w);
      }
    }
    Conn* c = newConn(l, std::move(fd));
    if (!peer || !local) {
      failed_io_.fetch_add(1, std::memory_order_relaxed);
      return abort(c, "accepted socket has no address");
    }
    c->record.src = *peer;
    if (!dst) {
      failed_no_orig_dst_.fetch_add(1, std::memory_order_relaxed);
      return abort(c, "no original destination recorded for " + peer->toString() +
                          " (connected to 15001 directly?)");
    }
    c->record.dst = *dst;
    opened(c->record);
    return startTcp(c, l->pod, nullptr, false, 0, options_.outbound_mark);
  }

  accepted_inbound_.fetch_add(1, std::memory_order_relaxed);
  Conn* c = newConn(l, std::move(fd));
  if (!peer || !local) {
    failed_io_.fetch_add(1, std::memory_order_relaxed);
    return abort(c, "accepted socket has no address");
  }
  c->record.src = *peer;
  // sk_lookup steered the connection without NAT: the local address is where the client
  // wanted to go.
  c->record.dst = *local;
  opened(c->record);
  if (c->record.dst.port == options_.inbound_port || c->record.dst.port == options_.outbound_port ||
      c->record.dst.ip.isLoopback()) {
    // Delivering to the tunnel's own listener would accept the delivery again, forever.
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    return abort(c, "refusing to deliver to the tunnel's own listener " + local->toString());
  }
  // A plaintext client has no identity to show: only policies that need none can allow it.
  // A denied connection is reset before the application is even connected to.
  if (!authorize(c->record, "")) return abort(c, "denied: " + c->record.reason);
  // Deliver from inside the pod with the delivery mark (so cgroup/connect4 lets sk_lookup
  // pass it to the application), bound to the client's address (IP_TRANSPARENT) so that the
  // application sees it. Our accepted socket holds (dst, src:port): the delivery must not
  // reuse that source port, or the application's socket would have the very same 4-tuple.
  bool transparent = c->record.src.ip.isV4();  // IPv6 delivery routing: later (dual stack)
  const IpAddress* bind_ip = transparent ? &c->record.src.ip : &c->record.dst.ip;
  startTcp(c, l->pod, bind_ip, transparent, c->record.src.port, options_.delivery_mark);
}

void Worker::startTcp(Conn* c, Pod* pod, const IpAddress* bind_ip, bool transparent, uint16_t avoid,
                      uint32_t mark) {
  auto up =
      socketInNetns(pod->netns.get(), !c->record.dst.ip.isV4(), mark, bind_ip, transparent, avoid);
  if (!up) {
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    return abort(c, up.error().message);
  }
  c->up = std::move(*up);
  socklen_t len = toSockaddr(c->record.dst, &c->dst_addr);
  prepConnect(c->up.get(), c->dst_addr, len, &c->connect_tag);
  c->connecting = true;
}

void Worker::onConnect(Conn* c, int res) {
  c->connecting = false;
  if (c->aborting) return maybeFinish(c);
  if (res < 0) {
    std::string why = "connect " + c->record.dst.toString() + ": " + connectFailure(res);
    if (c->service && retryService(c->service, c->down, c->record.src, why)) return dropConn(c);
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    return abort(c, why);
  }
  if (c->service) serviceEstablished(*c->service);
  for (int i = 0; i < 2; ++i) {
    Half& h = c->half[i];
    h.recv_tag = OpTag{OpKind::kRecv, c, i};
    h.send_tag = OpTag{OpKind::kSend, c, i};
    h.shut_tag = OpTag{OpKind::kShutdown, c, i};
    h.from = i == 0 ? c->down.get() : c->up.get();
    h.to = i == 0 ? c->up.get() : c->down.get();
    h.rx.fd = h.from;
    h.rx.user_data = &h.recv_tag;
    h.rx.ring = buffers_.get();
    armRecv(h.rx);
  }
}

// ---- provided-buffer multishot receives ----

void Worker::armRecv(Receiver& rx) {
  if (rx.armed || rx.closed || rx.eof || rx.error || rx.starved) return;
  if (rx.chunks.size() >= Receiver::kMaxChunks) return;  // re-armed by consumeRecv
  io_uring_sqe* s = sqe();
  io_uring_prep_recv_multishot(s, rx.fd, nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = rx.ring->group();
  io_uring_sqe_set_data(s, rx.user_data);
  rx.armed = true;
  rx.cancelling = false;
}

void Worker::onReceive(Receiver& rx, int res, unsigned flags) {
  if (!(flags & IORING_CQE_F_MORE)) rx.armed = false;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    auto bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    rx.ring->taken();
    if (rx.closed) {
      rx.ring->recycle(bid);
      return;
    }
    rx.chunks.push_back(RecvChunk{bid, static_cast<uint32_t>(res), 0});
    if (rx.armed && !rx.cancelling && rx.chunks.size() >= Receiver::kMaxChunks) {
      // The consumer is behind: stop taking buffers until it catches up.
      io_uring_sqe* s = sqe();
      io_uring_prep_cancel(s, rx.user_data, 0);
      io_uring_sqe_set_data(s, &ignore_tag_);
      rx.cancelling = true;
    }
    return;
  }
  if (res == 0) {
    rx.eof = true;
  } else if (res == -ENOBUFS && rx.ring->available() > 0) {
    // Buffers came back between the kernel's attempt and this completion: try again now.
  } else if (res == -ENOBUFS) {
    // The worker's ring is empty: wait for buffers to come back (consumeRecv).
    if (!rx.closed && !rx.starved) {
      rx.starved = true;
      starved_.push_back(&rx);
    }
  } else if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
    rx.error = -res;
  }
  if (!rx.armed && !rx.closed) armRecv(rx);  // after a cancel or EINTR, when there is room
}

void Worker::consumeRecv(Receiver& rx, size_t n) {
  RecvChunk& c = rx.chunks.front();
  c.off += static_cast<uint32_t>(n);
  if (c.off < c.len) return;
  rx.ring->recycle(c.bid);
  rx.chunks.pop_front();
  rearmStarved();
  if (rx.chunks.size() <= Receiver::kMaxChunks / 2) armRecv(rx);
}

// Receivers stopped by ENOBUFS try again (buffers came back, or the timer's safety net).
void Worker::rearmStarved() {
  std::vector<Receiver*> waiting;
  waiting.swap(starved_);
  for (Receiver* r : waiting) {
    r->starved = false;
    armRecv(*r);
  }
}

// Gives back what the receiver holds; its owner is about to be freed (nothing in flight).
void Worker::releaseRecv(Receiver& rx) {
  rx.closed = true;
  for (const RecvChunk& c : rx.chunks) rx.ring->recycle(c.bid);
  rx.chunks.clear();
  if (rx.starved) {
    starved_.erase(std::remove(starved_.begin(), starved_.end(), &rx), starved_.end());
    rx.starved = false;
  }
}

// ---- plain TCP relay ----

// Returns false when it ended the connection (c may be gone).
bool Worker::pumpHalf(Conn* c, int i) {
  Half& h = c->half[i];
  if (c->aborting || h.send_in_flight || h.shut_in_flight || h.done) return true;
  if (h.rx.error) {
    failed_io_.fetch_add(1, std::memory_order_relaxed);
    abort(c,
          std::string(i == 0 ? "client" : "destination") + " recv: " + std::strerror(h.rx.error));
    return false;
  }
  if (!h.rx.chunks.empty()) {
    auto data = h.rx.front();
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, h.to, data.data(), data.size(), MSG_NOSIGNAL);
    io_uring_sqe_set_data(s, &h.send_tag);
    h.send_in_flight = true;
    return true;
  }
  if (h.rx.eof) {
    // EOF: pass the half-close on, keep the other direction open (RFC 9293 3.6).
    io_uring_sqe* s = sqe();
    io_uring_prep_shutdown(s, h.to, SHUT_WR);
    io_uring_sqe_set_data(s, &h.shut_tag);
    h.shut_in_flight = true;
  }
  return true;
}

void Worker::onRecv(Conn* c, int i, int res, unsigned flags) {
  onReceive(c->half[i].rx, res, flags);
  if (c->aborting) return maybeFinish(c);
  if (pumpHalf(c, i)) maybeFinish(c);
}

void Worker::onSend(Conn* c, int i, int res) {
  Half& h = c->half[i];
  h.send_in_flight = false;
  if (c->aborting) return maybeFinish(c);
  if (res > 0) {
    h.bytes += static_cast<uint64_t>(res);
    (i == 0 ? bytes_to_dst_ : bytes_from_dst_).fetch_add(res, std::memory_order_relaxed);
    consumeRecv(h.rx, static_cast<size_t>(res));
    (void)pumpHalf(c, i);
    return;
  }
  if (res == -EINTR || res == -EAGAIN) {
    (void)pumpHalf(c, i);
    return;
  }
  failed_io_.fetch_add(1, std::memory_order_relaxed);
  abort(c, std::string(i == 0 ? "destination" : "client") + " send: " + std::strerror(-res));
}

void Worker::onShutdown(Conn* c, int i, int res) {
  Half& h = c->half[i];
  h.shut_in_flight = false;
  h.done = true;
  if (res < 0 && res != -ENOTCONN && !c->aborting) {
    failed_io_.fetch_add(1, std::memory_order_relaxed);
    return abort(c, std::string("shutdown: ") + std::strerror(-res));
  }
  maybeFinish(c);
}

// Ends a connection with a reset on both sides, so each peer learns it failed.
void Worker::abort(Conn* c, const std::string& why) {
  if (c->aborting) return;
  c->aborting = true;
  if (c->record.error.empty()) c->record.error = why;
  for (Half& h : c->half) h.rx.closed = true;
  linger lin{1, 0};
  for (int fd : {c->down.get(), c->up.get()}) {
    if (fd < 0) continue;
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(s, &ignore_tag_);
  }
  maybeFinish(c);
}

void Worker::maybeFinish(Conn* c) {
  for (const Half& h : c->half) {
    if (h.rx.armed || h.send_in_flight || h.shut_in_flight) return;
  }
  if (c->connecting) return;
  if (!c->aborting && !(c->half[0].done && c->half[1].done)) return;
  if (!c->aborting) completed_.fetch_add(1, std::memory_order_relaxed);
  finish(c);
}

void Worker::finish(Conn* c) {
  for (Half& h : c->half) releaseRecv(h.rx);
  if (c->service) serviceEnded(*c->service);
  c->record.bytes_to_dst = c->half[0].bytes;
  c->record.bytes_from_dst = c->half[1].bytes;
  c->record.duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - c->start);
  if (access_log_) access_log_(c->record);
  active_.fetch_sub(1, std::memory_order_relaxed);
  conns_.erase(c->self);  // closes both sockets (RST when aborting: SO_LINGER 0)
}

// ---- authorization ----

bool Worker::authorize(ConnectionRecord& r, const std::string& peer_identity) {
  auto auth = authorizer();
  if (!auth) return true;  // no config yet: no policy
  const model::Workload* w = auth->snapshot()->workloadByIp(r.dst.ip);
  bool allowed = false;
  if (!w) {
    r.reason = "no workload in the config has the address " + r.dst.ip.toString();
  } else {
    policy::ConnectionAttributes attrs{r.src.ip, r.dst.ip, r.dst.port, std::nullopt};
    if (!peer_identity.empty()) attrs.source_identity = peer_identity;
    auto verdict = auth->check(*w, attrs);
    allowed = verdict.allowed;
    r.reason = verdict.reason();
    r.policy = std::string(verdict.policy);
    for (std::string_view unmatched : verdict.unmatched_allow) {
      if (!r.policy.empty()) r.policy += ',';
      r.policy += unmatched;
    }
    if (verdict.dry_run_allowed != verdict.allowed || !verdict.dry_run.empty()) {
      std::string matched;
      for (const auto& m : verdict.dry_run) {
        matched += fmt::format(" {}#{}", m.policy, m.rule);
      }
      spdlog::info("{}: dry-run policies for {} -> {}: would be {}; matched:{}", r.pod,
                   r.src.toString(), r.dst.toString(),
                   verdict.dry_run_allowed ? "allowed" : "denied",
                   matched.empty() ? " none" : matched);
    }
  }
  r.denied = !allowed;
  if (!allowed) denied_.fetch_add(1, std::memory_order_relaxed);
  return allowed;
}

void Worker::revokeDenied() {
  std::vector<Conn*> conns;
  for (auto& c : conns_) {
    if (c->record.direction == Direction::kInbound && !c->aborting) conns.push_back(c.get());
  }
  for (Conn* c : conns) {
    ConnectionRecord probe = c->record;
    if (authorize(probe, "")) continue;
    denied_.fetch_sub(1, std::memory_order_relaxed);  // counted as closed_by_policy instead
    closed_by_policy_.fetch_add(1, std::memory_order_relaxed);
    c->record.denied = true;
    c->record.policy = probe.policy;
    c->record.reason = probe.reason;
    abort(c, "closed by policy change: " + probe.reason);
  }
  std::vector<Bridge*> bridges;
  for (auto& b : bridges_) {
    if (b->record.direction == Direction::kInbound && !b->aborting && !b->finished) {
      bridges.push_back(b.get());
    }
  }
  for (Bridge* b : bridges) {
    ConnectionRecord probe = b->record;
    if (authorize(probe, b->record.src_identity)) continue;
    denied_.fetch_sub(1, std::memory_order_relaxed);
    closed_by_policy_.fetch_add(1, std::memory_order_relaxed);
    b->record.denied = true;
    b->record.policy = probe.policy;
    b->record.reason = probe.reason;
    abortBridge(b, "closed by policy change: " + probe.reason);
  }
}

// ---- service load balancing ----

void Worker::startServiceConnection(Pod* pod, UniqueFd app, const SocketAddress& app_addr,
                                    std::unique_ptr<ServiceTarget> target,
                                    const std::string& last_error) {
  const auto now = Clock::now();
  const model::Service& service = *target->service;
  const model::Workload* client =
      pod->ips.empty() ? nullptr : target->snapshot->workloadByIp(pod->ips[0]);
  lb::ClientLocality locality;
  if (client) {
    locality = lb::ClientLocality::of(*client, options_.node);
  } else {
    locality.node = options_.node;
  }
  auto pick =
      picker_.pick(*target->snapshot, service, target->vip.port, locality, target->tried, now);
  auto fill = [&](ConnectionRecord& r) {
    r.src = app_addr;
    r.dst_service = service.key();
    r.service_addr = target->vip;
    r.attempts = static_cast<unsigned>(target->tried.size());
  };
  if (!pick && pick.error().code == EINVAL && target->tried.empty()) {
    // Not a port of the service, or PASSTHROUGH: the original destination, as plain TCP.
    Conn* c = newConn(Direction::kOutbound, pod->name, std::move(app));
    c->record.src = app_addr;
    c->record.dst = target->vip;
    opened(c->record);
    return startTcp(c, pod, nullptr, false, 0, options_.outbound_mark);
  }
  if (!pick) {
    Conn* c = newConn(Direction::kOutbound, pod->name, std::move(app));
    fill(c->record);
    c->record.dst = target->vip;
    if (target->tried.empty()) opened(c->record);  // else counted at the first attempt
    failed_connect_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("{}: load balancing: no endpoint for {} ({}): {}", pod->name, service.key(),
                 target->vip.toString(), pick.error().message);
    return abort(c, "no endpoint for service " + service.key() + ": " + pick.error().message +
                        (last_error.empty() ? "" : "; last attempt: " + last_error));
  }
  const model::Workload& w = *pick->workload;
  const IpAddress* ip = &w.workload_ips.front();  // the picker only offers workloads with one
  for (const auto& a : w.workload_ips) {
    if (a.isV4() == target->vip.ip.isV4()) {
      ip = &a;
      break;
    }
  }
  const SocketAddress dst{*ip, pick->endpoint.port};
  target->endpoint = pick->endpoint;
  target->endpoint_name = w.namespace_name + "/" + w.name;
  target->tried.push_back(w.uid);
  target->attempt_start = now;
  target->outcome_reported = false;
  target->established = false;
  if (pick->reason.find("probe after ejection") != std::string::npos) {
    spdlog::info("{}: load balancing: probing {} ({}) again after its ejection", pod->name,
                 target->endpoint_name, dst.toString());
  }
  spdlog::debug("{}: load balancing: {} -> {}: {}", pod->name, target->vip.toString(),
                dst.toString(), pick->reason);
  picker_.connectStarted(pick->endpoint, now);
  if (w.protocol == model::Protocol::Hbone && pod->identity) {
    return startOutboundHbone(pod, std::move(app), app_addr, dst, w, std::move(target));
  }
  Conn* c = newConn(Direction::kOutbound, pod->name, std::move(app));
  fill(c->record);
  c->record.dst = dst;
  // Metrics count a service connection once, at its first attempt.
  if (target->tried.size() == 1) opened(c->record);
  c->service = std::move(target);
  startTcp(c, pod, nullptr, false, 0, options_.outbound_mark);
}

bool Worker::retryService(std::unique_ptr<ServiceTarget>& target, UniqueFd& app,
                          const SocketAddress& app_addr, const std::string& why) {
  const auto now = Clock::now();
  auto ejections = [&] {
    for (const auto& s : picker_.stats(now)) {
      if (s.endpoint == target->endpoint) return s.ejections_total;
    }
    return uint64_t{0};
  };
  const uint64_t before = ejections();
  picker_.connectFailed(target->endpoint, now);
  target->outcome_reported = true;
  for (const auto& s : picker_.stats(now)) {
    if (s.endpoint == target->endpoint && s.ejections_total > before && s.ejected_until) {
      spdlog::info(
          "load balancing: ejected {} ({}:{}) for {} ms after {} consecutive connect failure(s) "
          "(ejection {} since its last success)",
          target->endpoint_name, target->endpoint.workload_uid, target->endpoint.port,
          std::chrono::duration_cast<std::chrono::milliseconds>(*s.ejected_until - now).count(),
          s.ejection_streak > 1 ? 1 : picker_.options().eject_after_failures, s.ejection_streak);
    }
  }
  auto pod = pods_.find(target->pod_cookie);
  if (target->tried.size() >= options_.connect_attempts || pod == pods_.end()) return false;
  connect_retries_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info(
      "{}: load balancing: {} for {} failed ({}); retrying on another endpoint "
      "(attempt {} of {})",
      pod->second->name, target->endpoint_name, target->vip.toString(), why,
      target->tried.size() + 1, options_.connect_attempts);
  startServiceConnection(pod->second.get(), std::move(app), app_addr, std::move(target), why);
  return true;
}

void Worker::serviceEstablished(ServiceTarget& target) {
  const auto now = Clock::now();
  picker_.connectSucceeded(target.endpoint, now - target.attempt_start, now);
  target.outcome_reported = true;
  target.established = true;
}

void Worker::serviceEnded(ServiceTarget& target) {
  if (target.established) {
    picker_.connectionClosed(target.endpoint);
  } else if (!target.outcome_reported) {
    picker_.connectFailed(target.endpoint, Clock::now());
  }
  target.established = false;
  target.outcome_reported = true;
}

}  // namespace internal

namespace {

// Several workers, one ring and one thread each. A pod's inbound listeners (15006, 15008) exist
// once per worker in an SO_REUSEPORT group: the kernel spreads inbound connections over the
// group (after sk_lookup picked the registered member). Its outbound listener (15001) belongs to
// one worker, chosen by netns cookie: the HBONE pool is per worker, so keeping a pod's outbound
// connections on one worker keeps them on one pool (a new connection costs a stream, not a
// handshake); different pods spread over the workers.
class Workers final : public Tunnel {
 public:
  explicit Workers(std::vector<std::unique_ptr<internal::Worker>> workers)
      : workers_(std::move(workers)) {}
  ~Workers() override { stop(); }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  Result<PodListenerFds> addPod(const PodSpec& pod) override {
    const size_t owner = pod.netns_cookie % workers_.size();
    PodListenerFds result;
    for (size_t i = 0; i < workers_.size(); ++i) {
      auto fds = workers_[i]->addPod(pod, /*outbound=*/i == owner);
      if (!fds) {
        for (size_t j = 0; j < i; ++j) workers_[j]->removePod(pod.netns_cookie);
        return fds.error();
      }
      if (i == 0) result = *fds;  // the inbound groups' registered members
      if (i == owner) {
        result.outbound_v4 = fds->outbound_v4;
        result.outbound_v6 = fds->outbound_v6;
      }
    }
    return result;
  }
  void removePod(uint64_t netns_cookie) override {
    for (auto& w : workers_) w->removePod(netns_cookie);
  }
  void setSnapshot(model::SnapshotPtr snapshot) override {
    // One authorizer for all workers: built once per config version.
    auto authorizer = snapshot ? std::make_shared<const policy::Authorizer>(snapshot) : nullptr;
    for (auto& w : workers_) w->setSnapshot(snapshot, authorizer);
  }
  TunnelStats stats() const override {
    TunnelStats sum;
    for (const auto& w : workers_) sum += w->stats();
    return sum;
  }
  std::vector<ConnectionInfo> connections() const override {
    std::vector<ConnectionInfo> all;
    for (const auto& w : workers_) {
      auto some = w->connections();
      all.insert(all.end(), std::make_move_iterator(some.begin()),
                 std::make_move_iterator(some.end()));
    }
    return all;
  }
  void stop() override {
    for (auto& w : workers_) w->stop();
  }

 private:
  std::vector<std::unique_ptr<internal::Worker>> workers_;
};

}  // namespace

unsigned defaultWorkerCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

Result<std::unique_ptr<Tunnel>> startTunnel(const TunnelOptions& options, OrigDstResolver& resolver,
                                            TlsProvider* tls, const AccessLogFn& access_log) {
  return startTunnel(options, resolver, tls, access_log, {});
}

Result<std::unique_ptr<Tunnel>> startTunnel(const TunnelOptions& options, OrigDstResolver& resolver,
                                            TlsProvider* tls, const AccessLogFn& access_log,
                                            const ConnectionOpenFn& on_open) {
  TunnelOptions opts = options;
  if (opts.workers == 0) opts.workers = defaultWorkerCount();
  std::vector<std::unique_ptr<internal::Worker>> workers;
  for (unsigned i = 0; i < opts.workers; ++i) {
    auto worker = std::make_unique<internal::Worker>(opts, resolver, tls, access_log, on_open);
    if (auto st = worker->init(); !st) return st.error();
    workers.push_back(std::move(worker));
  }
  if (workers.size() == 1) return std::unique_ptr<Tunnel>(std::move(workers.front()));
  return std::unique_ptr<Tunnel>(std::make_unique<Workers>(std::move(workers)));
}

}  // namespace nodemesh::ztunnel
