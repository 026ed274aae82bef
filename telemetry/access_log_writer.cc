#include "telemetry/access_log_writer.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace nodemesh::telemetry {

AccessLogWriter::AccessLogWriter(int fd, AccessLogWriterOptions options)
    : fd_(fd), options_(options) {
  if (options_.flush_interval.count() > 0) flusher_ = std::thread([this] { run(); });
}

AccessLogWriter::~AccessLogWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  if (flusher_.joinable()) flusher_.join();
  flush();
}

void AccessLogWriter::write(std::string_view line) {
  if (options_.flush_interval.count() <= 0) {
    std::string out;
    out.reserve(line.size() + 1);
    out.append(line);
    out.push_back('\n');
    std::lock_guard wlock(write_mu_);
    writeAll(out);
    return;
  }
  bool full = false;
  {
    std::lock_guard lock(mu_);
    if (pending_.size() + line.size() + 1 > options_.cap_bytes) {
      ++dropped_;
      return;
    }
    pending_.append(line);
    pending_.push_back('\n');
    full = pending_.size() >= options_.flush_bytes;
  }
  if (full) wake_.notify_one();
}

void AccessLogWriter::flush() {
  std::lock_guard wlock(write_mu_);
  uint64_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    writing_.clear();
    std::swap(writing_, pending_);
    dropped = dropped_ - dropped_reported_;
    dropped_reported_ = dropped_;
  }
  if (!writing_.empty()) writeAll(writing_);
  if (dropped > 0) {
    const std::string note = fmt::format(
        "nodemesh: access log: {} lines dropped: the log's reader is not keeping up\n", dropped);
    (void)!::write(STDERR_FILENO, note.data(), note.size());
  }
}

uint64_t AccessLogWriter::droppedLines() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void AccessLogWriter::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    wake_.wait_for(lock, options_.flush_interval,
                   [this] { return stop_ || pending_.size() >= options_.flush_bytes; });
    if (stop_) break;
    lock.unlock();
    flush();
    lock.lock();
  }
}

bool AccessLogWriter::writeAll(std::string_view data) {
  int stalled_seconds = 0;
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking descriptor (it is shared with whoever started us): wait until it drains.
      // Ten seconds without progress count as an error, so that a reader that stopped does
      // not hold the process at exit.
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, 1000) != 0 || ++stalled_seconds < 10) continue;
    }
    if (!error_reported_) {
      error_reported_ = true;
      const std::string note =
          fmt::format("nodemesh: access log: write failed ({}); lines are lost\n",
                      n < 0 ? std::error_code(errno, std::generic_category()).message()
                            : std::string("no progress"));
      (void)!::write(STDERR_FILENO, note.data(), note.size());
    }
    return false;
  }
  return true;
}

}  // namespace nodemesh::telemetry
