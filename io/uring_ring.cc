#include "io/uring_ring.h"

#include <sched.h>

namespace nodemesh::io {

Result<std::unique_ptr<UringRing>> UringRing::create(unsigned entries,
                                                     std::chrono::milliseconds connect_timeout,
                                                     bool busy_poll) {
  std::unique_ptr<UringRing> self(new UringRing());
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(connect_timeout);
  self->connect_timeout_.tv_sec = ns.count() / 1000000000;
  self->connect_timeout_.tv_nsec = ns.count() % 1000000000;
  // SINGLE_ISSUER + DEFER_TASKRUN (Linux 6.1): completion work runs only when this thread waits
  // for completions, in a batch, instead of interrupting it as soon as a socket turns ready; it
  // cut the round trip of small requests through the tunnel (bench/README.md). Older kernels
  // reject the flags, and the ring is then created without them.
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  // Busy polling watches IORING_SQ_TASKRUN: with DEFER_TASKRUN a socket that turns ready
  // queues work for this thread (the receive itself) and, when the thread is not asleep in
  // the ring, only raises that flag.
  if (busy_poll) params.flags |= IORING_SETUP_TASKRUN_FLAG;
  int err = io_uring_queue_init_params(entries, &self->ring_, &params);
  if (err == -EINVAL && params.flags != 0) {
    params = io_uring_params{};
    err = io_uring_queue_init_params(entries, &self->ring_, &params);
  }
  if (err < 0) return Error::fromErrno("io_uring_queue_init", -err);
  self->ready_ = true;
  // The ring's descriptor registered for this thread (Linux 5.18): io_uring_enter then skips
  // the file table lookup, 55-65 ns of each call here, and the worker makes two per wake-up.
  // Optional: without it liburing passes the plain descriptor.
  (void)io_uring_register_ring_fd(&self->ring_);
  return self;
}

UringRing::~UringRing() {
  if (ready_) io_uring_queue_exit(&ring_);
}

Result<std::unique_ptr<BufferRing>> UringRing::createBufferRing(uint16_t group, unsigned count,
                                                                size_t buffer_size) {
  return BufferRing::create(&ring_, group, count, buffer_size);
}

unsigned UringRing::submitAndDispatch() {
  io_uring_submit_and_wait(&ring_, 1);
  io_uring_cqe* cqe;
  unsigned head;
  unsigned count = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++count;
    // Handlers may queue new operations; they never wait for completions, so the batch being
    // walked stays put until io_uring_cq_advance.
    if (auto* tag = static_cast<OpTag*>(io_uring_cqe_get_data(cqe))) {
      tag->handler->onCompletion(tag->op, cqe->res, cqe->flags);
    }
  }
  io_uring_cq_advance(&ring_, count);
  return count;
}

UringRing::PollResult UringRing::pollBeforeWait(std::chrono::microseconds budget) {
  io_uring_submit(&ring_);
  auto work_waiting = [this] {
    return io_uring_cq_ready(&ring_) > 0 ||
           (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0;
  };
  if (work_waiting()) return PollResult::kReady;
  const auto until = std::chrono::steady_clock::now() + budget;
  while (true) {
    ::sched_yield();
    const bool late = std::chrono::steady_clock::now() >= until;
    // A yield that handed the CPU to another task for longer than the budget saved nothing,
    // work or not: a miss, so that adaptive polling backs off on a CPU shared with busy tasks.
    if (late) return PollResult::kExpired;
    if (work_waiting()) return PollResult::kFound;
  }
}

io_uring_sqe* UringRing::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void UringRing::acceptMultishot(int fd, OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(s, tag);
}

void UringRing::recvMultishot(int fd, uint16_t buffer_group, OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = buffer_group;
  io_uring_sqe_set_data(s, tag);
}

void UringRing::send(int fd, std::span<const uint8_t> data, OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, fd, data.data(), data.size(), MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, tag);
}

void UringRing::sendmsg(int fd, const msghdr* msg, OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_sendmsg(s, fd, msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, tag);
}

void UringRing::shutdownWrite(int fd, OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_shutdown(s, fd, SHUT_WR);
  io_uring_sqe_set_data(s, tag);
}

void UringRing::connect(int fd, const sockaddr_storage& addr, socklen_t len, OpTag* tag) {
  // The pair must go in one submission: a link does not span two.
  if (io_uring_sq_space_left(&ring_) < 2) io_uring_submit(&ring_);
  io_uring_sqe* s = sqe();
  io_uring_prep_connect(s, fd, reinterpret_cast<const sockaddr*>(&addr), len);
  io_uring_sqe_set_data(s, tag);
  s->flags |= IOSQE_IO_LINK;
  io_uring_sqe* t = sqe();
  io_uring_prep_link_timeout(t, &connect_timeout_, 0);
  io_uring_sqe_set_data(t, nullptr);
}

void UringRing::timeout(const __kernel_timespec& after, OpTag* tag) {
  io_uring_sqe* s = sqe();
  // liburing takes a non-const pointer; the kernel only reads it.
  io_uring_prep_timeout(s, const_cast<__kernel_timespec*>(&after), 0, 0);
  io_uring_sqe_set_data(s, tag);
}

void UringRing::removeTimeout(OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_timeout_remove(s, reinterpret_cast<uint64_t>(tag), 0);
  io_uring_sqe_set_data(s, nullptr);
}

void UringRing::poll(int fd, unsigned events, OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, fd, events);
  io_uring_sqe_set_data(s, tag);
}

void UringRing::read(int fd, void* buf, size_t len, OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, fd, buf, static_cast<unsigned>(len), 0);
  io_uring_sqe_set_data(s, tag);
}

void UringRing::cancel(OpTag* tag) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel(s, tag, 0);
  io_uring_sqe_set_data(s, nullptr);
}

void UringRing::cancelFd(int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data(s, nullptr);
}

}  // namespace nodemesh::io
