#include "tunnel/tcp_relay.h"

#include <fcntl.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "common/sockets.h"
#include "tunnel/inpod_sockets.h"

namespace nodemesh::tunnel {

TcpConnection::TcpConnection(TcpRelay& relay, Direction direction, const std::string& pod,
                             UniqueFd down)
    : relay_(relay), down_(std::move(down)), start_(Clock::now()) {
  record.direction = direction;
  record.pod = pod;
  connect_tag_ = io::OpTag{this, kConnect};
  for (int i = 0; i < 2; ++i) {
    const auto half = static_cast<uint8_t>(i);
    half_[i].recv_tag = io::OpTag{this, static_cast<uint8_t>(kRecv + half)};
    half_[i].send_tag = io::OpTag{this, static_cast<uint8_t>(kSend + half)};
    half_[i].shut_tag = io::OpTag{this, static_cast<uint8_t>(kShutdown + half)};
    half_[i].poll_tag = io::OpTag{this, static_cast<uint8_t>(kPoll + half)};
  }
}

void TcpConnection::onCompletion(uint8_t op, int res, unsigned flags) {
  const int i = op & 1;
  switch (op & ~1) {
    case kConnect:
      return relay_.onConnect(this, res);
    case kRecv:
      return relay_.onRecv(this, i, res, flags);
    case kSend:
      return relay_.onSend(this, i, res);
    case kShutdown:
      return relay_.onShutdown(this, i, res);
    case kPoll:
      return relay_.onPoll(this, i, res);
    default:
      return;
  }
}

ConnectionInfo TcpConnection::describe(Clock::time_point now) const {
  ConnectionInfo info =
      describeRecord(record, std::chrono::duration_cast<std::chrono::milliseconds>(now - start_));
  info.bytes_to_dst = half_[0].bytes;
  info.bytes_from_dst = half_[1].bytes;
  const bool closing = state_ == State::kAborting || half_[0].state == HalfState::kDone ||
                       half_[1].state == HalfState::kDone;
  info.state = state_ == State::kConnecting ? "connecting" : closing ? "closing" : "open";
  return info;
}

std::optional<ConnectionInfo> TcpConnection::describeDelivery(Clock::time_point now) const {
  if (!delivery) return std::nullopt;
  ConnectionInfo info = describe(now);
  const ConnectionInfo inbound = describeRecord(*delivery, info.age);
  info.direction = inbound.direction;
  info.pod = inbound.pod;
  info.src = inbound.src;
  info.dst_service.clear();
  return info;
}

TcpConnection* TcpRelay::create(Direction direction, const std::string& pod, UniqueFd down) {
  auto conn = std::make_unique<TcpConnection>(*this, direction, pod, std::move(down));
  TcpConnection* c = conn.get();
  conns_.push_back(std::move(conn));
  c->self_ = std::prev(conns_.end());
  bump(ctx_.counters.active);
  return c;
}

void TcpRelay::drop(TcpConnection* c) {
  if (c->delivery) {
    // The server pod's side of a failed attempt ends here; the client's goes on elsewhere.
    if (c->delivery->error.empty()) c->delivery->error = "handed to a retry";
    c->delivery->duration =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - c->start_);
    ctx_.events.finished(*c->delivery);
  }
  subtract(ctx_.counters.active);
  conns_.erase(c->self_);
}

void TcpRelay::connect(TcpConnection* c, UniqueFd up) {
  c->up_ = std::move(up);
  socklen_t len = toSockaddr(c->record.dst, &c->dst_addr_);
  ctx_.ring.connect(c->up_.get(), c->dst_addr_, len, &c->connect_tag_);
  c->state_ = TcpConnection::State::kConnecting;
  c->connect_in_flight_ = true;
}

void TcpRelay::connectFromNetns(TcpConnection* c, int netns_fd, uint32_t mark,
                                const IpAddress* bind_ip, bool transparent, uint16_t avoid_port) {
  auto up =
      socketInNetns(netns_fd, !c->record.dst.ip.isV4(), mark, bind_ip, transparent, avoid_port);
  if (!up) {
    bump(ctx_.counters.failed_connect);
    return abort(c, up.error().message);
  }
  connect(c, std::move(*up));
}

void TcpRelay::onConnect(TcpConnection* c, int res) {
  c->connect_in_flight_ = false;
  if (c->state_ == TcpConnection::State::kAborting) return advance(c);
  if (res < 0) {
    c->state_ = TcpConnection::State::kNew;  // nothing in flight: a retry may take the client
    std::string why = "connect " + c->record.dst.toString() + ": " + connectFailure(ctx_, res);
    if (c->delivery) c->delivery->error = why;
    if (c->service && ctx_.services.retry(c->service, c->down_, c->record.src, why)) {
      return drop(c);
    }
    bump(ctx_.counters.failed_connect);
    return abort(c, why);
  }
  c->state_ = TcpConnection::State::kRelaying;
  if (c->service) ctx_.services.established(*c->service);
  if (ctx_.pipes) {
    // splice(2) blocks on a blocking socket whatever its flags say. io_uring has no use for
    // the flag: the relay's other operations on these sockets (shutdown) are not affected.
    for (int fd : {c->down_.get(), c->up_.get()}) {
      const int fl = ::fcntl(fd, F_GETFL);
      if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        bump(ctx_.counters.failed_io);
        return abort(c, std::string("fcntl O_NONBLOCK: ") + std::strerror(errno));
      }
    }
  }
  for (int i = 0; i < 2; ++i) {
    TcpConnection::Half& h = c->half_[i];
    h.from = i == 0 ? c->down_.get() : c->up_.get();
    h.to = i == 0 ? c->up_.get() : c->down_.get();
    if (ctx_.pipes) {
      // Bytes may be waiting already: a poll of a ready socket completes at once.
      pollHalf(h, h.from, POLLIN);
      continue;
    }
    h.rx.fd = h.from;
    h.rx.tag = &h.recv_tag;
    h.rx.buffers = &ctx_.buffers;
    ctx_.receivers.arm(h.rx);
  }
}

void TcpRelay::onPoll(TcpConnection* c, int i, int res) {
  c->half_[i].polling = false;
  if (c->state_ == TcpConnection::State::kAborting) return advance(c);
  if (res < 0) {
    bump(ctx_.counters.failed_io);
    return abort(c, std::string("poll: ") + std::strerror(-res));
  }
  // Readable, writable, or failed: splice finds out which, and what the error is.
  splice(c, i);
}

void TcpRelay::splice(TcpConnection* c, int i) {
  using HalfState = TcpConnection::HalfState;
  TcpConnection::Half& h = c->half_[i];
  const char* source = i == 0 ? "client" : "destination";
  const char* sink = i == 0 ? "destination" : "client";
  const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
  // A read shorter than the pipe took what the socket had: the poll, not another splice that
  // would fail with EAGAIN, finds out when more comes (a syscall less per message).
  bool dry = false;
  auto wait_readable = [&] {
    if (h.pipe.valid()) ctx_.pipes->give(std::move(h.pipe));
    pollHalf(h, h.from, POLLIN);
  };
  // A few pipes' worth per readiness event, so that one busy connection does not hold the
  // worker from the others; then the poll comes back at once if there is more.
  for (int round = 0; round < 4; ++round) {
    if (h.in_pipe > 0) {
      // SIGPIPE, for a destination that reset, is ignored by the agent (agent/main.cc).
      const ssize_t n = ::splice(h.pipe.read.get(), nullptr, h.to, nullptr, h.in_pipe, flags);
      if (n > 0) {
        const auto moved = static_cast<uint64_t>(n);
        h.in_pipe -= static_cast<size_t>(n);
        h.bytes += moved;
        bump(i == 0 ? ctx_.counters.bytes_to_dst : ctx_.counters.bytes_from_dst, moved);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        h.state = HalfState::kSending;
        return pollHalf(h, h.to, POLLOUT);
      }
      bump(ctx_.counters.failed_io);
      return abort(c, std::string(sink) + " send: " + std::strerror(n < 0 ? errno : EPIPE));
    }
    h.state = HalfState::kIdle;
    if (h.eof) {
      // EOF: pass the half-close on, keep the other direction open (RFC 9293 3.6).
      if (h.pipe.valid()) ctx_.pipes->give(std::move(h.pipe));
      ctx_.ring.shutdownWrite(h.to, &h.shut_tag);
      h.state = HalfState::kShuttingDown;
      return;
    }
    if (dry) return wait_readable();
    if (!h.pipe.valid()) {
      auto pipe = ctx_.pipes->take();
      if (!pipe) {
        bump(ctx_.counters.failed_io);
        return abort(c, "splice: " + pipe.error().message);
      }
      h.pipe = std::move(*pipe);
    }
    const size_t room = ctx_.pipes->pipeBytes();
    const ssize_t n = ::splice(h.from, nullptr, h.pipe.write.get(), nullptr, room, flags);
    if (n > 0) {
      h.in_pipe = static_cast<size_t>(n);
      dry = h.in_pipe < room;
      continue;
    }
    if (n == 0) {
      h.eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return wait_readable();
    bump(ctx_.counters.failed_io);
    return abort(c, std::string(source) + " recv: " + std::strerror(errno));
  }
  if (h.in_pipe == 0) return pollHalf(h, h.from, POLLIN);
  h.state = HalfState::kSending;
  pollHalf(h, h.to, POLLOUT);
}

void TcpRelay::pollHalf(TcpConnection::Half& h, int fd, unsigned events) {
  ctx_.ring.poll(fd, events, &h.poll_tag);
  h.polling = true;
}

bool TcpRelay::pump(TcpConnection* c, int i) {
  TcpConnection::Half& h = c->half_[i];
  if (c->state_ == TcpConnection::State::kAborting || h.state != TcpConnection::HalfState::kIdle) {
    return true;
  }
  if (h.rx.error) {
    bump(ctx_.counters.failed_io);
    abort(c,
          std::string(i == 0 ? "client" : "destination") + " recv: " + std::strerror(h.rx.error));
    return false;
  }
  if (!h.rx.chunks.empty()) {
    ctx_.ring.send(h.to, h.rx.front(), &h.send_tag);
    h.state = TcpConnection::HalfState::kSending;
    return true;
  }
  if (h.rx.eof) {
    // EOF: pass the half-close on, keep the other direction open (RFC 9293 3.6).
    ctx_.ring.shutdownWrite(h.to, &h.shut_tag);
    h.state = TcpConnection::HalfState::kShuttingDown;
  }
  return true;
}

void TcpRelay::onRecv(TcpConnection* c, int i, int res, unsigned flags) {
  ctx_.receivers.onCompletion(c->half_[i].rx, res, flags);
  if (c->state_ == TcpConnection::State::kAborting) return advance(c);
  if (pump(c, i)) advance(c);
}

void TcpRelay::onSend(TcpConnection* c, int i, int res) {
  TcpConnection::Half& h = c->half_[i];
  h.state = TcpConnection::HalfState::kIdle;
  if (c->state_ == TcpConnection::State::kAborting) return advance(c);
  if (res > 0) {
    h.bytes += static_cast<uint64_t>(res);
    bump(i == 0 ? ctx_.counters.bytes_to_dst : ctx_.counters.bytes_from_dst,
         static_cast<uint64_t>(res));
    ctx_.receivers.consume(h.rx, static_cast<size_t>(res));
    (void)pump(c, i);
    return;
  }
  if (res == -EINTR || res == -EAGAIN) {
    (void)pump(c, i);
    return;
  }
  bump(ctx_.counters.failed_io);
  abort(c, std::string(i == 0 ? "destination" : "client") + " send: " + std::strerror(-res));
}

void TcpRelay::onShutdown(TcpConnection* c, int i, int res) {
  c->half_[i].state = TcpConnection::HalfState::kDone;
  if (res < 0 && res != -ENOTCONN && c->state_ != TcpConnection::State::kAborting) {
    bump(ctx_.counters.failed_io);
    return abort(c, std::string("shutdown: ") + std::strerror(-res));
  }
  advance(c);
}

void TcpRelay::abort(TcpConnection* c, const std::string& why) {
  if (c->state_ == TcpConnection::State::kAborting) return;
  c->state_ = TcpConnection::State::kAborting;
  if (c->record.error.empty()) c->record.error = why;
  for (auto& h : c->half_) h.rx.closed = true;
  for (int fd : {c->down_.get(), c->up_.get()}) {
    if (fd < 0) continue;
    resetOnClose(fd);
    ctx_.ring.cancelFd(fd);
  }
  advance(c);
}

void TcpRelay::advance(TcpConnection* c) {
  using HalfState = TcpConnection::HalfState;
  for (const auto& h : c->half_) {
    if (h.rx.armed || h.polling || h.state == HalfState::kShuttingDown ||
        (h.state == HalfState::kSending && !ctx_.pipes)) {
      return;
    }
  }
  switch (c->state_) {
    case TcpConnection::State::kNew:
    case TcpConnection::State::kConnecting:
      return;
    case TcpConnection::State::kRelaying:
      if (c->half_[0].state != HalfState::kDone || c->half_[1].state != HalfState::kDone) return;
      bump(ctx_.counters.completed);
      return finish(c);
    case TcpConnection::State::kAborting:
      if (c->connect_in_flight_) return;
      return finish(c);
  }
}

void TcpRelay::finish(TcpConnection* c) {
  for (auto& h : c->half_) ctx_.receivers.release(h.rx);
  if (c->service) ctx_.services.ended(*c->service);
  c->record.bytes_to_dst = c->half_[0].bytes;
  c->record.bytes_from_dst = c->half_[1].bytes;
  c->record.duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - c->start_);
  ctx_.events.finished(c->record);
  if (c->delivery) {
    ConnectionRecord& d = *c->delivery;
    d.bytes_to_dst = c->record.bytes_to_dst;
    d.bytes_from_dst = c->record.bytes_from_dst;
    d.duration = c->record.duration;
    if (d.error.empty()) d.error = c->record.error;
    ctx_.events.finished(d);
  }
  subtract(ctx_.counters.active);
  conns_.erase(c->self_);  // closes both sockets (RST when aborting: SO_LINGER 0)
}

void TcpRelay::abortAll(const std::string& why) {
  std::vector<TcpConnection*> open;
  for (auto& c : conns_) open.push_back(c.get());
  for (TcpConnection* c : open) abort(c, why);  // may erase from conns_
}

std::vector<TcpConnection*> TcpRelay::openInbound() const {
  std::vector<TcpConnection*> out;
  for (const auto& c : conns_) {
    if ((c->record.direction == Direction::kInbound || c->delivery) &&
        c->state_ != TcpConnection::State::kAborting) {
      out.push_back(c.get());
    }
  }
  return out;
}

void TcpRelay::describe(std::vector<ConnectionInfo>& out, Clock::time_point now) const {
  for (const auto& c : conns_) {
    out.push_back(c->describe(now));
    if (auto delivery = c->describeDelivery(now)) out.push_back(std::move(*delivery));
  }
}

}  // namespace nodemesh::tunnel
