#include "tunnel/splice_pipes.h"

#include <fcntl.h>
#include <unistd.h>

namespace nodemesh::tunnel {

Result<SplicePipe> SplicePipes::take() {
  if (!free_.empty()) {
    SplicePipe p = std::move(free_.back());
    free_.pop_back();
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return Error::fromErrno("pipe2");
  SplicePipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  if (created_) created_->fetch_add(1, std::memory_order_relaxed);
  // Best effort: a pipe keeps the default size when the system's limits refuse a larger one.
  if (pipe_bytes_ != 0) (void)::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(pipe_bytes_));
  return p;
}

void SplicePipes::give(SplicePipe pipe) {
  if (free_.size() < keep_) free_.push_back(std::move(pipe));
}

}  // namespace nodemesh::tunnel
