#pragma once

// The access log's way out: lines collect in memory and reach the descriptor (stdout) in one
// write when 64 KiB have collected or when the flush interval (200 ms by default) has passed, as
// Envoy flushes its access log files (--file-flush-interval-msec, a 64 KiB buffer; its interval
// is 10 s, ours short enough that a person watching the log sees lines at once). A write per line
// cost the waypoint a fifth of its CPU at 1,000 requests/s and sat on the request's path
// (bench/README.md); spdlog's stdout sink flushes every line, and its file sinks cannot take a
// descriptor that is a pipe or a socket, hence this class.
//
// Lines are never interleaved or cut. When the descriptor does not drain (a reader that stopped)
// and more than the cap is waiting, new lines are dropped and counted rather than held without
// bound; the count is reported on stderr and by droppedLines().

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace nodemesh::telemetry {

struct AccessLogWriterOptions {
  // 0: every line is written at once, on the caller's thread.
  std::chrono::milliseconds flush_interval{200};
  size_t flush_bytes = 64 * 1024;      // a write as soon as this much is waiting
  size_t cap_bytes = 8 * 1024 * 1024;  // past this much waiting, lines are dropped
};

class AccessLogWriter {
 public:
  // `fd` stays the caller's (stdout by default); it is not closed.
  explicit AccessLogWriter(int fd, AccessLogWriterOptions options = {});
  ~AccessLogWriter();  // writes what is waiting
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  // One line, without its newline. Thread-safe; never blocks on the descriptor unless the
  // flush interval is 0.
  void write(std::string_view line);
  // Writes what is waiting now, and returns when it is written.
  void flush();

  uint64_t droppedLines() const;

 private:
  void run();
  // Writes `data` whole (retrying EINTR and short writes, waiting out EAGAIN); false on an
  // error, which is reported once.
  bool writeAll(std::string_view data);

  const int fd_;
  const AccessLogWriterOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::string pending_;
  uint64_t dropped_ = 0;
  uint64_t dropped_reported_ = 0;
  bool stop_ = false;
  std::mutex write_mu_;  // one write at a time, in order
  std::string writing_;  // the batch being written (under write_mu_)
  bool error_reported_ = false;
  std::thread flusher_;
};

}  // namespace nodemesh::telemetry
