// The io_uring TCP relay behind the in-pod listeners: 15001 (outbound, to the original
// destination, with the tunnel's mark) and 15006 (inbound, delivered to the application
// from inside the pod). This is the `protocol: TCP` path; HBONE builds on the same loop.
//
// One worker thread owns one ring. Every operation in flight carries a pointer to an OpTag
// embedded in its owner (listener or connection); an owner is freed only when none of its
// operations is in flight. Each direction of a connection has at most one operation in
// flight (recv, then send until the chunk is written, then recv again), so a connection
// never buffers more than one chunk per direction: a slow reader slows the writer.
#include <liburing.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/netns.h"
#include "ztunnel/inpod_routing.h"
#include "ztunnel/inpod_sockets.h"
#include "ztunnel/tunnel.h"

namespace nodemesh::ztunnel {
namespace {

using Clock = std::chrono::steady_clock;

enum class OpKind : uint8_t {
  kWake,
  kAccept,
  kAcceptBackoff,
  kConnect,
  kRecv,
  kSend,
  kShutdown,
  kIgnore
};

struct OpTag {
  OpKind kind;
  void* owner;
  int half;  // direction index for kRecv/kSend/kShutdown
};

struct Pod;

struct Listener {
  OpTag tag{OpKind::kAccept, this, 0};
  OpTag backoff_tag{OpKind::kAcceptBackoff, this, 0};
  __kernel_timespec backoff{0, 100 * 1000 * 1000};  // after EMFILE/ENFILE/ENOMEM
  UniqueFd fd;
  Pod* pod = nullptr;
  Direction direction = Direction::kOutbound;
  bool in_flight = false;
  bool closing = false;
};

struct Pod {
  uint64_t cookie = 0;
  std::string name;
  UniqueFd netns;
  std::vector<std::unique_ptr<Listener>> listeners;
  bool removed = false;
};

struct Half {
  OpTag tag;
  int from = -1;
  int to = -1;
  std::unique_ptr<uint8_t[]> buf;
  size_t len = 0;
  size_t off = 0;
  uint64_t bytes = 0;
  bool in_flight = false;
  bool done = false;  // EOF forwarded
};

struct Conn {
  OpTag connect_tag{OpKind::kConnect, this, 0};
  Half half[2];   // 0: client -> destination, 1: destination -> client
  UniqueFd down;  // accepted from the application or the remote client
  UniqueFd up;    // to the original destination, or the delivery socket
  bool connecting = false;
  bool aborting = false;
  ConnectionRecord record;
  sockaddr_storage dst_addr{};
  Clock::time_point start;
  std::list<std::unique_ptr<Conn>>::iterator self;
};

class TcpRelay final : public Tunnel {
 public:
  TcpRelay(const TunnelOptions& options, OrigDstResolver& resolver, AccessLogFn access_log)
      : options_(options), resolver_(resolver), access_log_(std::move(access_log)) {}

  ~TcpRelay() override { stop(); }

  Status init() {
    wake_fd_.reset(::eventfd(0, EFD_CLOEXEC));
    if (!wake_fd_.valid()) return Error::fromErrno("eventfd");
    io_uring_params params{};
    int err = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
    if (err < 0) return Error::fromErrno("io_uring_queue_init", -err);
    ring_ready_ = true;
    thread_ = std::thread([this] { run(); });
    return okStatus();
  }

  Result<PodListenerFds> addPod(const PodSpec& spec) override {
    auto pod = std::make_unique<Pod>();
    pod->cookie = spec.netns_cookie;
    pod->name = spec.name;
    pod->netns.reset(::dup(spec.netns_fd));
    if (!pod->netns.valid()) return Error::fromErrno("dup netns fd");

    PodListenerFds fds;
    {
      auto scope = ScopedNetns::enter(spec.netns_fd);
      if (!scope) return scope.error();
      if (auto st = installDeliveryRouting(options_.delivery_mark, options_.delivery_route_table);
          !st) {
        return Error{st.error().code, spec.name + ": " + st.error().message};
      }
      auto add = [&](const char* ip, uint16_t port, Direction dir, int* out) -> Status {
        auto addr = SocketAddress{IpAddress::parse(ip).value(), port};
        auto fd = listenTcp(addr, options_.outbound_mark);
        if (!fd) return Error{fd.error().code, spec.name + ": " + fd.error().message};
        auto l = std::make_unique<Listener>();
        l->fd = std::move(*fd);
        l->pod = pod.get();
        l->direction = dir;
        *out = l->fd.get();
        pod->listeners.push_back(std::move(l));
        return okStatus();
      };
      if (auto st =
              add("127.0.0.1", options_.outbound_port, Direction::kOutbound, &fds.outbound_v4);
          !st) {
        return st.error();
      }
      if (auto st = add("0.0.0.0", options_.inbound_port, Direction::kInbound, &fds.inbound_v4);
          !st) {
        return st.error();
      }
      if (spec.ipv6) {
        // A pod without ::1 (IPv6 disabled) still gets IPv4 capture: not fatal.
        if (auto st = add("::1", options_.outbound_port, Direction::kOutbound, &fds.outbound_v6);
            !st) {
          spdlog::warn("{}: no IPv6 outbound listener: {}", spec.name, st.error().message);
        }
        if (auto st = add("::", options_.inbound_port, Direction::kInbound, &fds.inbound_v6); !st) {
          spdlog::warn("{}: no IPv6 inbound listener: {}", spec.name, st.error().message);
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

  void removePod(uint64_t cookie) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      commands_.push_back(Command{cookie, nullptr});
    }
    wake();
  }

  TunnelStats stats() const override {
    TunnelStats s;
    s.accepted_outbound = accepted_outbound_.load(std::memory_order_relaxed);
    s.accepted_inbound = accepted_inbound_.load(std::memory_order_relaxed);
    s.completed = completed_.load(std::memory_order_relaxed);
    s.failed_no_orig_dst = failed_no_orig_dst_.load(std::memory_order_relaxed);
    s.failed_connect = failed_connect_.load(std::memory_order_relaxed);
    s.failed_io = failed_io_.load(std::memory_order_relaxed);
    s.active = active_.load(std::memory_order_relaxed);
    s.bytes_to_dst = bytes_to_dst_.load(std::memory_order_relaxed);
    s.bytes_from_dst = bytes_from_dst_.load(std::memory_order_relaxed);
    return s;
  }

  void stop() override {
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

 private:
  void wake() {
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
    (void)n;  // EAGAIN means a wake-up is already pending
  }

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    while (!s) {
      io_uring_submit(&ring_);
      s = io_uring_get_sqe(&ring_);
    }
    return s;
  }

  void armWake() {
    io_uring_sqe* s = sqe();
    io_uring_prep_read(s, wake_fd_.get(), &wake_buf_, sizeof(wake_buf_), 0);
    io_uring_sqe_set_data(s, &wake_tag_);
  }

  void armAccept(Listener* l) {
    io_uring_sqe* s = sqe();
    io_uring_prep_multishot_accept(s, l->fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data(s, &l->tag);
    l->in_flight = true;
  }

  void run() {
    armWake();
    while (true) {
      io_uring_submit_and_wait(&ring_, 1);
      io_uring_cqe* cqe;
      unsigned head;
      unsigned count = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++count;
        handle(static_cast<OpTag*>(io_uring_cqe_get_data(cqe)), cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&ring_, count);
      if (stopping_.load() && shutdownDone()) break;
    }
  }

  void handle(OpTag* tag, int res, unsigned flags) {
    if (!tag) return;
    switch (tag->kind) {
      case OpKind::kWake:
        onWake();
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
        onRecv(static_cast<Conn*>(tag->owner), tag->half, res);
        break;
      case OpKind::kSend:
        onSend(static_cast<Conn*>(tag->owner), tag->half, res);
        break;
      case OpKind::kShutdown:
        onShutdown(static_cast<Conn*>(tag->owner), tag->half, res);
        break;
      case OpKind::kIgnore:
        break;
    }
  }

  void onWake() {
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
    }
    reapPods();
    if (!stopping_.load()) armWake();
  }

  // Moves a pod out of service: no more accepts; its listeners close once their accept
  // operations have completed (reapPods).
  void retirePod(uint64_t cookie) {
    auto it = pods_.find(cookie);
    if (it == pods_.end()) return;
    closePod(it->second.get());
    if (auto scope = ScopedNetns::enter(it->second->netns.get()); scope) {
      if (auto st = removeDeliveryRouting(options_.delivery_mark, options_.delivery_route_table);
          !st) {
        spdlog::warn("{}: removing delivery routing: {}", it->second->name, st.error().message);
      }
    }
    retired_.push_back(std::move(it->second));
    pods_.erase(it);
  }

  void closePod(Pod* pod) {
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

  void reapPods() {
    for (auto it = retired_.begin(); it != retired_.end();) {
      bool idle = true;
      for (auto& l : (*it)->listeners) idle = idle && !l->in_flight;
      it = idle ? retired_.erase(it) : std::next(it);
    }
  }

  bool shutdownDone() const { return pods_.empty() && retired_.empty() && conns_.empty(); }

  void onAccept(Listener* l, int res, unsigned flags) {
    bool more = flags & IORING_CQE_F_MORE;
    if (!more) l->in_flight = false;
    if (res >= 0) {
      if (l->closing) {
        ::close(res);
      } else {
        startConn(l, UniqueFd(res));
      }
    } else if (res != -ECANCELED) {
      spdlog::warn("{}: accept on {} failed: {}", l->pod->name,
                   l->direction == Direction::kOutbound ? "15001" : "15006", std::strerror(-res));
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

  void startConn(Listener* l, UniqueFd fd) {
    auto conn = std::make_unique<Conn>();
    Conn* c = conn.get();
    c->start = Clock::now();
    c->down = std::move(fd);
    c->record.direction = l->direction;
    c->record.pod = l->pod->name;
    conns_.push_back(std::move(conn));
    c->self = std::prev(conns_.end());
    active_.fetch_add(1, std::memory_order_relaxed);

    auto peer = peerAddress(c->down.get());
    auto local = localAddress(c->down.get());
    if (!peer || !local) {
      failed_io_.fetch_add(1, std::memory_order_relaxed);
      abort(c, "accepted socket has no address");
      return;
    }
    c->record.src = *peer;
    const IpAddress* bind_ip = nullptr;
    bool transparent = false;
    uint16_t avoid_port = 0;
    uint32_t mark = options_.outbound_mark;
    if (l->direction == Direction::kOutbound) {
      accepted_outbound_.fetch_add(1, std::memory_order_relaxed);
      auto dst = resolver_.takeOrigDst(l->pod->cookie, *peer);
      if (!dst) {
        failed_no_orig_dst_.fetch_add(1, std::memory_order_relaxed);
        abort(c, "no original destination recorded for " + peer->toString() +
                     " (connected to 15001 directly?)");
        return;
      }
      c->record.dst = *dst;
    } else {
      accepted_inbound_.fetch_add(1, std::memory_order_relaxed);
      // sk_lookup steered the connection without NAT: the local address is where the client
      // wanted to go. Deliver from inside the pod, bound to that address, with the delivery
      // mark so that cgroup/connect4 lets sk_lookup pass it to the application.
      c->record.dst = *local;
      if (c->record.dst.port == options_.inbound_port ||
          c->record.dst.port == options_.outbound_port || c->record.dst.ip.isLoopback()) {
        // Delivering to the tunnel's own listener would accept the delivery again, forever.
        failed_connect_.fetch_add(1, std::memory_order_relaxed);
        abort(c, "refusing to deliver to the tunnel's own listener " + local->toString());
        return;
      }
      // The application sees the client's address: bind to it (IP_TRANSPARENT). Our own
      // accepted socket holds (dst, src:port); the delivery must not reuse that source port,
      // or the application's socket would have the very same 4-tuple.
      bind_ip = &c->record.src.ip;
      mark = options_.delivery_mark;
      transparent = c->record.src.ip.isV4();  // IPv6 delivery routing: later (dual stack)
      if (!transparent) bind_ip = &c->record.dst.ip;
      avoid_port = c->record.src.port;
    }
    auto up = socketInNetns(l->pod->netns.get(), !c->record.dst.ip.isV4(), mark, bind_ip,
                            transparent, avoid_port);
    if (!up) {
      failed_connect_.fetch_add(1, std::memory_order_relaxed);
      abort(c, up.error().message);
      return;
    }
    c->up = std::move(*up);
    socklen_t len = toSockaddr(c->record.dst, &c->dst_addr);
    io_uring_sqe* s = sqe();
    io_uring_prep_connect(s, c->up.get(), reinterpret_cast<sockaddr*>(&c->dst_addr), len);
    io_uring_sqe_set_data(s, &c->connect_tag);
    c->connecting = true;
  }

  void onConnect(Conn* c, int res) {
    c->connecting = false;
    if (c->aborting) return maybeFinish(c);
    if (res < 0) {
      failed_connect_.fetch_add(1, std::memory_order_relaxed);
      return abort(c, "connect " + c->record.dst.toString() + ": " + std::strerror(-res));
    }
    for (int i = 0; i < 2; ++i) {
      Half& h = c->half[i];
      h.tag = OpTag{OpKind::kRecv, c, i};
      h.from = i == 0 ? c->down.get() : c->up.get();
      h.to = i == 0 ? c->up.get() : c->down.get();
      h.buf = std::make_unique<uint8_t[]>(options_.relay_buffer_bytes);
      submitRecv(c, i);
    }
  }

  void submitRecv(Conn* c, int i) {
    Half& h = c->half[i];
    h.tag.kind = OpKind::kRecv;
    io_uring_sqe* s = sqe();
    io_uring_prep_recv(s, h.from, h.buf.get(), options_.relay_buffer_bytes, 0);
    io_uring_sqe_set_data(s, &h.tag);
    h.in_flight = true;
  }

  void submitSend(Conn* c, int i) {
    Half& h = c->half[i];
    h.tag.kind = OpKind::kSend;
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, h.to, h.buf.get() + h.off, h.len - h.off, MSG_NOSIGNAL);
    io_uring_sqe_set_data(s, &h.tag);
    h.in_flight = true;
  }

  void onRecv(Conn* c, int i, int res) {
    Half& h = c->half[i];
    h.in_flight = false;
    if (c->aborting) return maybeFinish(c);
    if (res > 0) {
      h.len = static_cast<size_t>(res);
      h.off = 0;
      return submitSend(c, i);
    }
    if (res == 0) {
      // EOF: pass the half-close on, keep the other direction open (RFC 9293 3.6).
      h.tag.kind = OpKind::kShutdown;
      io_uring_sqe* s = sqe();
      io_uring_prep_shutdown(s, h.to, SHUT_WR);
      io_uring_sqe_set_data(s, &h.tag);
      h.in_flight = true;
      return;
    }
    if (res == -EINTR || res == -EAGAIN) return submitRecv(c, i);
    failed_io_.fetch_add(1, std::memory_order_relaxed);
    abort(c, std::string(i == 0 ? "client" : "destination") + " recv: " + std::strerror(-res));
  }

  void onSend(Conn* c, int i, int res) {
    Half& h = c->half[i];
    h.in_flight = false;
    if (c->aborting) return maybeFinish(c);
    if (res > 0) {
      h.off += static_cast<size_t>(res);
      h.bytes += static_cast<uint64_t>(res);
      (i == 0 ? bytes_to_dst_ : bytes_from_dst_).fetch_add(res, std::memory_order_relaxed);
      return h.off < h.len ? submitSend(c, i) : submitRecv(c, i);
    }
    if (res == -EINTR || res == -EAGAIN) return submitSend(c, i);
    failed_io_.fetch_add(1, std::memory_order_relaxed);
    abort(c, std::string(i == 0 ? "destination" : "client") + " send: " + std::strerror(-res));
  }

  void onShutdown(Conn* c, int i, int res) {
    Half& h = c->half[i];
    h.in_flight = false;
    h.done = true;
    if (res < 0 && res != -ENOTCONN && !c->aborting) {
      failed_io_.fetch_add(1, std::memory_order_relaxed);
      return abort(c, std::string("shutdown: ") + std::strerror(-res));
    }
    if (c->half[0].done && c->half[1].done) {
      completed_.fetch_add(1, std::memory_order_relaxed);
      finish(c);
      return;
    }
    maybeFinish(c);
  }

  // Ends a connection with a reset on both sides, so each peer learns it failed.
  void abort(Conn* c, const std::string& why) {
    if (c->aborting) return;
    c->aborting = true;
    if (c->record.error.empty()) c->record.error = why;
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

  void maybeFinish(Conn* c) {
    if (!c->aborting) return;
    if (c->connecting || c->half[0].in_flight || c->half[1].in_flight) return;
    finish(c);
  }

  void finish(Conn* c) {
    c->record.bytes_to_dst = c->half[0].bytes;
    c->record.bytes_from_dst = c->half[1].bytes;
    c->record.duration =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - c->start);
    if (access_log_) access_log_(c->record);
    active_.fetch_sub(1, std::memory_order_relaxed);
    conns_.erase(c->self);  // closes both sockets (RST when aborting: SO_LINGER 0)
  }

  TunnelOptions options_;
  OrigDstResolver& resolver_;
  AccessLogFn access_log_;

  io_uring ring_{};
  bool ring_ready_ = false;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  UniqueFd wake_fd_;
  uint64_t wake_buf_ = 0;
  OpTag wake_tag_{OpKind::kWake, nullptr, 0};
  OpTag ignore_tag_{OpKind::kIgnore, nullptr, 0};

  // A pod to add (pod set) or to remove (pod null), queued by the agent's thread.
  struct Command {
    uint64_t cookie;
    std::unique_ptr<Pod> pod;
  };
  std::mutex mu_;
  std::vector<Command> commands_;

  std::unordered_map<uint64_t, std::unique_ptr<Pod>> pods_;
  std::list<std::unique_ptr<Pod>> retired_;
  std::list<std::unique_ptr<Conn>> conns_;

  std::atomic<uint64_t> accepted_outbound_{0};
  std::atomic<uint64_t> accepted_inbound_{0};
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> failed_no_orig_dst_{0};
  std::atomic<uint64_t> failed_connect_{0};
  std::atomic<uint64_t> failed_io_{0};
  std::atomic<uint64_t> active_{0};
  std::atomic<uint64_t> bytes_to_dst_{0};
  std::atomic<uint64_t> bytes_from_dst_{0};
};

}  // namespace

Result<std::unique_ptr<Tunnel>> startTunnel(const TunnelOptions& options, OrigDstResolver& resolver,
                                            AccessLogFn access_log) {
  auto relay = std::make_unique<TcpRelay>(options, resolver, std::move(access_log));
  if (auto st = relay->init(); !st) return st.error();
  return std::unique_ptr<Tunnel>(std::move(relay));
}

}  // namespace nodemesh::ztunnel
