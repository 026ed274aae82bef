#pragma once

// The seam between the tunnel's connection logic and io_uring. The relay, the stream bridges,
// the HBONE connections and the listeners submit operations through Ring and receive each
// completion on the CompletionHandler named by the operation's OpTag. UringRing (uring_ring.h)
// is the real one; unit tests substitute a ring that records the operations and hands back
// the completions they choose, so the state machines above it run without privileges.
//
// Ownership rule: an OpTag lives inside its owner, and an owner is freed only when none of its
// operations is in flight. Completions of cancels and of connect timeouts carry no tag.

#include <linux/time_types.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace nodemesh::io {

class CompletionHandler {
 public:
  // `op` is the OpTag's; `res` and `flags` are the completion's (res < 0: -errno).
  virtual void onCompletion(uint8_t op, int res, unsigned flags) = 0;

 public:
  virtual ~CompletionHandler() = default;
};

// What an operation in flight points at: its owner, and which of the owner's operations it is.
struct OpTag {
  CompletionHandler* handler = nullptr;
  uint8_t op = 0;
};

class Ring {
 public:
  virtual ~Ring() = default;

  // Multishot: one completion per accepted connection (res = the descriptor), flag MORE while
  // the operation stays armed.
  virtual void acceptMultishot(int fd, OpTag* tag) = 0;
  // Multishot receive into a buffer of `buffer_group` (recv_ring.h): one completion per chunk,
  // the buffer id in the flags.
  virtual void recvMultishot(int fd, uint16_t buffer_group, OpTag* tag) = 0;
  // `data` must stay valid until the completion.
  virtual void send(int fd, std::span<const uint8_t> data, OpTag* tag) = 0;
  // A gathering send; `msg` and its iovecs must stay valid until the completion.
  virtual void sendmsg(int fd, const msghdr* msg, OpTag* tag) = 0;
  virtual void shutdownWrite(int fd, OpTag* tag) = 0;
  // Bounded by the tunnel's connect timeout: a connect still pending then completes with
  // -ECANCELED. `addr` must stay valid until the completion.
  virtual void connect(int fd, const sockaddr_storage& addr, socklen_t len, OpTag* tag) = 0;
  // Completes with -ETIME after `after` (which must stay valid until then).
  virtual void timeout(const __kernel_timespec& after, OpTag* tag) = 0;
  virtual void removeTimeout(OpTag* tag) = 0;
  // One-shot readiness: completes with the ready events of `events` (plus POLLERR/POLLHUP)
  // once the descriptor has any.
  virtual void poll(int fd, unsigned events, OpTag* tag) = 0;
  // `buf` must stay valid until the completion.
  virtual void read(int fd, void* buf, size_t len, OpTag* tag) = 0;
  // Cancels the operation(s) carrying `tag` / every operation on `fd`; each cancelled one
  // completes with -ECANCELED.
  virtual void cancel(OpTag* tag) = 0;
  virtual void cancelFd(int fd) = 0;
};

}  // namespace nodemesh::io
