#pragma once

// The pipes the plain TCP relay splices through (TunnelOptions::splice). splice(2) moves a TCP
// socket's received pages into a pipe and from the pipe into the other socket's send queue by
// reference, so relayed bytes are never copied through the agent's memory. A half takes a pipe
// only while it has bytes in it (usually within one readiness event) and gives it back once
// it is drained, so an idle connection holds none; a worker keeps a few drained pipes for the
// next connection instead of making two descriptors per event.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace nodemesh::tunnel {

struct SplicePipe {
  UniqueFd read;
  UniqueFd write;
  bool valid() const { return read.valid(); }
};

class SplicePipes {
 public:
  // `pipe_bytes`: each pipe's capacity (F_SETPIPE_SZ; 0 keeps the kernel's 64 KiB), the most
  // a half moves per splice and holds while its destination is not writable. `created`, when
  // given, counts the pipes made.
  explicit SplicePipes(size_t pipe_bytes = 0, std::atomic<uint64_t>* created = nullptr,
                       size_t keep = 16)
      : pipe_bytes_(pipe_bytes), created_(created), keep_(keep) {}

  // A drained pipe (non-blocking both ends): one kept, or a new one.
  Result<SplicePipe> take();
  // `pipe` must be empty; kept for the next take() while fewer than `keep` are.
  void give(SplicePipe pipe);

  size_t pipeBytes() const { return pipe_bytes_ ? pipe_bytes_ : kDefaultPipeBytes; }
  size_t kept() const { return free_.size(); }

 private:
  static constexpr size_t kDefaultPipeBytes = 64 * 1024;
  size_t pipe_bytes_;
  std::atomic<uint64_t>* created_;
  size_t keep_;
  std::vector<SplicePipe> free_;
};

}  // namespace nodemesh::tunnel
