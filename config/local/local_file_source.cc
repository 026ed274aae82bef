#include "config/local/local_file_source.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

namespace nodemesh::config {
namespace {

// Everything that can change what a path in the directory resolves to or contains.
constexpr uint32_t kWatchMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |
                                IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |
                                IN_MOVE_SELF | IN_ONLYDIR;

// While the directory itself is gone, try to watch it again this often.
constexpr std::chrono::milliseconds kRewatchInterval(500);

// A steady stream of events postpones a reload by at most this many debounce periods.
constexpr int kMaxDebouncePeriods = 10;

std::string dirOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

std::string baseOf(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

void logProblems(const std::vector<ConfigProblem>& problems) {
  for (const ConfigProblem& p : problems) spdlog::error("{}", p.toString());
}

void logWarnings(const std::vector<ConfigProblem>& warnings) {
  for (const ConfigProblem& w : warnings) spdlog::warn("{}", w.toString());
}

}  // namespace

LocalFileSource::LocalFileSource(std::string path, std::chrono::milliseconds debounce)
    : path_(std::move(path)), dir_(dirOf(path_)), base_(baseOf(path_)), debounce_(debounce) {}

LocalFileSource::~LocalFileSource() {
  stop();
}

std::shared_ptr<const model::Snapshot> LocalFileSource::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

std::string LocalFileSource::lastError() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

bool LocalFileSource::addWatch() {
  watch_ = ::inotify_add_watch(inotify_fd_.get(), dir_.c_str(), kWatchMask);
  return watch_ >= 0;
}

Status LocalFileSource::start(UpdateCallback on_update) {
  if (started_) return Error{EALREADY, "local config source " + path_ + " already started"};
  if (!on_update) return Error::invalid("local config source " + path_ + ": no update callback");

  // Watch before the first read, so that a change racing with it is not lost.
  UniqueFd inotify_fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_fd.valid()) return Error::fromErrno("inotify_init1");
  UniqueFd wake_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd.valid()) return Error::fromErrno("eventfd");
  inotify_fd_ = std::move(inotify_fd);
  wake_fd_ = std::move(wake_fd);
  if (!addWatch()) {
    Error error = Error::fromErrno("watch directory " + dir_ + " of " + path_);
    inotify_fd_.reset();
    wake_fd_.reset();
    return error;
  }

  auto fail = [&](Error error) {
    inotify_fd_.reset();
    wake_fd_.reset();
    watch_ = -1;
    return error;
  };
  auto content = readLocalConfigFile(path_);
  if (!content) {
    ConfigProblem problem{path_, 0, content.error().message};
    return fail(Error{content.error().code, problem.toString()});
  }
  LoadResult result = parseLocalConfig(*content, path_);
  if (!result.ok()) return fail(Error::invalid(result.problemsText()));
  logWarnings(result.warnings);

  last_content_ = std::move(content).value();
  last_read_error_.clear();
  {
    std::lock_guard lock(mu_);
    current_ = result.snapshot;
    last_error_.clear();
  }
  rejected_reloads_ = 0;
  accepted_reloads_ = 0;
  spdlog::info("local config {}: loaded {}", path_, result.snapshot->summary());
  on_update_ = std::move(on_update);
  try {
    on_update_(result.snapshot);
  } catch (const std::exception& e) {
    on_update_ = nullptr;
    return fail(Error::invalid(std::string("update callback threw: ") + e.what()));
  } catch (...) {
    on_update_ = nullptr;
    return fail(Error::invalid("update callback threw"));
  }
  started_ = true;
  thread_ = std::thread([this] { run(); });
  return okStatus();
}

void LocalFileSource::stop() {
  if (!started_) return;
  uint64_t one = 1;
  while (::write(wake_fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  inotify_fd_.reset();
  wake_fd_.reset();
  watch_ = -1;
  on_update_ = nullptr;
  started_ = false;
}

bool LocalFileSource::relevant(std::string_view name) const {
  // An event on the directory itself, or on the file's own name.
  if (name.empty() || name == base_) return true;
  // When the file is a symlink, swapping an intermediate link (the kubelet renames `..data`)
  // changes what it reads without any event on its own name.
  struct stat st {};
  return ::lstat(path_.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

void LocalFileSource::run() {
  using Clock = std::chrono::steady_clock;
  bool pending = false;  // events seen, reload due at `deadline`
  Clock::time_point deadline{};
  Clock::time_point first_event{};
  alignas(inotify_event) char buf[16 * 1024];

  auto schedule = [&](Clock::time_point now) {
    if (!pending) first_event = now;
    pending = true;
    deadline = std::min(now + debounce_, first_event + kMaxDebouncePeriods * debounce_);
  };

  while (true) {
    int timeout_ms = -1;
    Clock::time_point now = Clock::now();
    if (pending) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    if (watch_ < 0) {
      int rewatch = static_cast<int>(kRewatchInterval.count());
      timeout_ms = timeout_ms < 0 ? rewatch : std::min(timeout_ms, rewatch);
    }
    pollfd fds[2] = {{inotify_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("local config {}: poll failed ({}); no longer watching for changes", path_,
                    std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;  // stop()
    now = Clock::now();

    if (fds[0].revents & POLLIN) {
      while (true) {
        ssize_t len = ::read(inotify_fd_.get(), buf, sizeof(buf));
        if (len <= 0) break;  // EAGAIN: drained
        for (char* p = buf; p < buf + len;) {
          auto* ev = reinterpret_cast<inotify_event*>(p);
          p += sizeof(inotify_event) + ev->len;
          if (ev->mask & IN_Q_OVERFLOW) {
            schedule(now);  // events were lost; the content check decides
            continue;
          }
          if (ev->wd != watch_) continue;
          if (ev->mask & (IN_IGNORED | IN_MOVE_SELF)) {
            // The directory was removed or renamed: watch the path again once it exists.
            if (ev->mask & IN_MOVE_SELF) ::inotify_rm_watch(inotify_fd_.get(), watch_);
            spdlog::warn("local config {}: directory {} went away; waiting for it to return", path_,
                         dir_);
            watch_ = -1;
            schedule(now);
            continue;
          }
          std::string_view name = ev->len > 0 ? std::string_view(ev->name) : std::string_view();
          if (relevant(name)) schedule(now);
        }
      }
    }
    if (watch_ < 0 && addWatch()) {
      spdlog::info("local config {}: watching {} again", path_, dir_);
      schedule(now);
    }
    if (pending && now >= deadline) {
      pending = false;
      reload();
    }
  }
}

void LocalFileSource::reload() {
  auto reject = [&](const std::vector<ConfigProblem>& problems, const std::string& text) {
    logProblems(problems);
    spdlog::error(
        "local config {}: rejected the new version ({} problem{}); keeping the last "
        "good config",
        path_, problems.size(), problems.size() == 1 ? "" : "s");
    {
      std::lock_guard lock(mu_);
      last_error_ = text;
    }
    ++rejected_reloads_;
  };

  auto content = readLocalConfigFile(path_);
  if (!content) {
    ConfigProblem problem{path_, 0, content.error().message};
    if (!last_content_ && last_read_error_ == problem.reason) return;  // still the same failure
    last_content_.reset();
    last_read_error_ = problem.reason;
    reject({problem}, problem.toString());
    return;
  }
  if (last_content_ && *last_content_ == *content) {  // touched, not changed
    unchanged_reads_.fetch_add(1);
    return;
  }
  last_content_ = *content;
  last_read_error_.clear();

  LoadResult result = parseLocalConfig(*content, path_);
  if (!result.ok()) {
    reject(result.problems, result.problemsText());
    return;
  }
  logWarnings(result.warnings);
  {
    std::lock_guard lock(mu_);
    current_ = result.snapshot;
    last_error_.clear();
  }
  ++accepted_reloads_;
  spdlog::info("local config {}: reloaded {}", path_, result.snapshot->summary());
  try {
    on_update_(result.snapshot);
  } catch (const std::exception& e) {
    spdlog::error("local config {}: update callback threw: {}", path_, e.what());
  } catch (...) {
    spdlog::error("local config {}: update callback threw", path_);
  }
}

}  // namespace nodemesh::config
