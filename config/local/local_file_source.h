#pragma once

// ConfigSource for a local config file (ztunnel's local config format, see local_config.h),
// reloaded when it changes.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/fd.h"
#include "config/config_source.h"
#include "config/local/local_config.h"

namespace nodemesh::config {

// Watches the file's directory with inotify, not the file itself, so that every way of
// replacing the file is seen: writing in place, an editor's write-to-temp-and-rename, and the
// kubelet's ConfigMap update (the file is a symlink through `..data`, which is swapped by
// rename). Changes are debounced (a burst of events gives one reload) and a reload only happens
// when the file's content differs from the last content read.
//
// A new version that fails to load is rejected: each problem is logged at error level as
// "file:line: reason", rejectedReloads() grows, lastError() holds the problems, and the last
// good snapshot stays in force.
class LocalFileSource : public ConfigSource {
 public:
  explicit LocalFileSource(std::string path,
                           std::chrono::milliseconds debounce = std::chrono::milliseconds(100));
  ~LocalFileSource() override;
  LocalFileSource(const LocalFileSource&) = delete;
  LocalFileSource& operator=(const LocalFileSource&) = delete;

  // Fails with every problem of the first load, one "file:line: reason" per line.
  Status start(UpdateCallback on_update) override;
  void stop() override;

  const std::string& path() const { return path_; }
  // The snapshot in force (the last one delivered); null before a successful start().
  std::shared_ptr<const model::Snapshot> current() const;
  // New versions rejected since start() (for metrics).
  uint64_t rejectedReloads() const { return rejected_reloads_.load(); }
  // Accepted versions since start(), not counting the initial load.
  uint64_t acceptedReloads() const { return accepted_reloads_.load(); }
  // Changes seen whose content was the same as the last read (not delivered).
  uint64_t unchangedReads() const { return unchanged_reads_.load(); }
  // The problems of the last rejected version, one per line; empty if the latest version
  // loaded (or none was rejected yet).
  std::string lastError() const;

 private:
  void run();
  // Re-adds the directory watch (after the directory was removed or replaced).
  bool addWatch();
  // Reads the file and delivers or rejects it, unless its content is unchanged.
  void reload();
  // True when an inotify event for `name` can change what `path_` reads.
  bool relevant(std::string_view name) const;

  const std::string path_;
  const std::string dir_;
  const std::string base_;
  const std::chrono::milliseconds debounce_;

  UpdateCallback on_update_;
  UniqueFd inotify_fd_;
  UniqueFd wake_fd_;  // eventfd: stop() writes it to wake the thread
  int watch_ = -1;
  std::thread thread_;
  bool started_ = false;
  // The content last read, or the reason it could not be read; only start() and the thread
  // touch these.
  std::optional<std::string> last_content_;
  std::string last_read_error_;

  mutable std::mutex mu_;
  std::shared_ptr<const model::Snapshot> current_;  // guarded by mu_
  std::string last_error_;                          // guarded by mu_
  std::atomic<uint64_t> rejected_reloads_{0};
  std::atomic<uint64_t> accepted_reloads_{0};
  std::atomic<uint64_t> unchanged_reads_{0};
};

}  // namespace nodemesh::config
