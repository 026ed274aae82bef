#include "sim/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/close_range.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace nodemesh::sim {
namespace {

using Clock = std::chrono::steady_clock;

// Everything the child needs, built before fork(): after fork() in a multithreaded process
// only async-signal-safe calls are allowed, so no allocation happens in the child.
struct PreparedChild {
  std::string path;
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  UniqueFd netns;
  UniqueFd cgroup_procs;
  int stdin_fd = -1;  // borrowed
  int stdout_fd = -1;
  int stderr_fd = -1;
};

// What the child reports through the exec-status pipe when a step before exec() fails.
struct ChildFailure {
  int step;
  int err;
};

constexpr const char* kStepNames[] = {"?", "join cgroup", "enter netns", "set up stdio", "exec"};

std::string joinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

int statusToExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int clampMs(std::chrono::milliseconds ms) {
  if (ms.count() < 0) return 0;
  return static_cast<int>(std::min<int64_t>(ms.count(), INT_MAX));
}

PreparedChild prepare(const std::string& netns_path, const std::string& cgroup_path,
                      const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  if (argv.empty()) throw HarnessError("empty argv");
  PreparedChild c;
  auto path = findExecutable(argv[0]);
  if (!path) throw HarnessError("command not found: " + argv[0]);
  c.path = *path;
  c.argv_storage = argv;

  for (char** e = environ; e != nullptr && *e != nullptr; ++e) c.env_storage.emplace_back(*e);
  for (const auto& kv : env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw HarnessError("env entry without '=': " + kv);
    std::string key = kv.substr(0, eq + 1);
    auto it = std::find_if(c.env_storage.begin(), c.env_storage.end(),
                           [&](const std::string& e) { return e.rfind(key, 0) == 0; });
    if (it != c.env_storage.end()) {
      *it = kv;
    } else {
      c.env_storage.push_back(kv);
    }
  }
  for (auto& a : c.argv_storage) c.argv.push_back(a.data());
  c.argv.push_back(nullptr);
  for (auto& e : c.env_storage) c.envp.push_back(e.data());
  c.envp.push_back(nullptr);

  if (!netns_path.empty()) {
    c.netns.reset(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!c.netns.valid()) {
      throw HarnessError("open netns " + netns_path + ": " + std::strerror(errno));
    }
  }
  if (!cgroup_path.empty()) {
    std::string procs = cgroup_path + "/cgroup.procs";
    c.cgroup_procs.reset(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (!c.cgroup_procs.valid()) {
      throw HarnessError("open " + procs + ": " + std::strerror(errno));
    }
  }
  return c;
}

// fork + exec; returns the pid once exec() succeeded, throws with the failing step otherwise.
pid_t forkExec(PreparedChild& c) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    throw HarnessError(std::string("pipe2: ") + std::strerror(errno));
  }
  UniqueFd status_read(status_pipe[0]);
  UniqueFd status_write(status_pipe[1]);
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) throw HarnessError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    const int report = status_write.get();
    auto fail = [report](int step) {
      ChildFailure f{step, errno};
      ssize_t ignored = ::write(report, &f, sizeof(f));
      (void)ignored;
      ::_exit(127);
    };
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);

    if (c.cgroup_procs.valid() && ::write(c.cgroup_procs.get(), "0", 1) != 1) fail(1);
    if (c.netns.valid() && ::setns(c.netns.get(), CLONE_NEWNET) != 0) fail(2);
    // Move the stdio sources out of 0..2 first so that dup2 cannot clobber one another.
    int in = ::fcntl(c.stdin_fd, F_DUPFD_CLOEXEC, 3);
    int out = ::fcntl(c.stdout_fd, F_DUPFD_CLOEXEC, 3);
    int err = ::fcntl(c.stderr_fd, F_DUPFD_CLOEXEC, 3);
    if (in < 0 || out < 0 || err < 0) fail(3);
    if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) fail(3);
    // Do not leak the test process's descriptors (sockets, BPF objects) into the child.
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execve(c.path.c_str(), c.argv.data(), c.envp.data());
    fail(4);
  }

  status_write.reset();
  ChildFailure f{};
  ssize_t n;
  do {
    n = ::read(status_read.get(), &f, sizeof(f));
  } while (n < 0 && errno == EINTR);
  if (n == sizeof(f)) {
    int status;
    ::waitpid(pid, &status, 0);
    int step = f.step >= 1 && f.step <= 4 ? f.step : 0;
    throw HarnessError("starting `" + joinArgv(c.argv_storage) + "`: " + kStepNames[step] + ": " +
                       std::strerror(f.err));
  }
  return pid;
}

UniqueFd openPidfd(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    int status;
    ::waitpid(pid, &status, 0);
    throw HarnessError(std::string("pidfd_open: ") + std::strerror(err));
  }
  return UniqueFd(fd);
}

UniqueFd openDevNull() {
  UniqueFd fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) throw HarnessError(std::string("open /dev/null: ") + std::strerror(errno));
  return fd;
}

UniqueFd openLog(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) throw HarnessError("open " + path + ": " + std::strerror(errno));
  return fd;
}

// Reads what is available; returns false once the pipe reached EOF (or failed).
bool drain(int fd, std::string& sink) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      sink.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    return false;
  }
}

}  // namespace

std::optional<std::string> findExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  std::string dirs;
  if (const char* path = std::getenv("PATH")) dirs = path;
  dirs += ":/usr/sbin:/sbin:/usr/bin:/bin";
  std::stringstream ss(dirs);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool waitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (predicate()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

// ---- Process ---------------------------------------------------------------------------

std::unique_ptr<Process> Process::spawn(const ProcessSpec& spec) {
  if (spec.stdout_path.empty()) throw HarnessError("ProcessSpec.stdout_path is required");
  PreparedChild c = prepare(spec.netns_path, spec.cgroup_path, spec.argv, spec.env);
  UniqueFd dev_null = openDevNull();
  UniqueFd out = openLog(spec.stdout_path);
  UniqueFd err;
  if (!spec.stderr_path.empty() && spec.stderr_path != spec.stdout_path) {
    err = openLog(spec.stderr_path);
  }
  c.stdin_fd = dev_null.get();
  c.stdout_fd = out.get();
  c.stderr_fd = err.valid() ? err.get() : out.get();
  pid_t pid = forkExec(c);
  UniqueFd pidfd = openPidfd(pid);
  return std::unique_ptr<Process>(new Process(spec, pid, std::move(pidfd)));
}

Process::Process(ProcessSpec spec, pid_t pid, UniqueFd pidfd)
    : spec_(std::move(spec)), pid_(pid), pidfd_(std::move(pidfd)) {
  const std::string& arg0 = spec_.argv[0];
  name_ = arg0.substr(arg0.rfind('/') == std::string::npos ? 0 : arg0.rfind('/') + 1);
}

Process::~Process() {
  kill();
}

void Process::reap(int status) {
  exit_code_ = statusToExitCode(status);
  pidfd_.reset();
}

bool Process::signal(int sig) {
  if (exit_code_) return false;
  return ::kill(pid_, sig) == 0;
}

std::optional<int> Process::waitExit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    int n = ::poll(&pfd, 1, clampMs(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    reap(r == pid_ ? status : 0);
    return exit_code_;
  }
}

bool Process::isRunning() {
  if (exit_code_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reap(status);
    return false;
  }
  return r == 0;
}

std::optional<int> Process::kill() {
  if (exit_code_) return exit_code_;
  ::kill(pid_, SIGKILL);
  return waitExit(std::chrono::seconds(10));
}

std::string Process::output() const {
  return readFile(spec_.stdout_path);
}

std::string Process::errorOutput() const {
  return spec_.stderr_path.empty() ? output() : readFile(spec_.stderr_path);
}

bool Process::waitForOutput(std::string_view needle, std::chrono::milliseconds timeout) {
  bool found = false;
  waitFor(
      [&] {
        // Check for the exit first: output written before it is then already in the file.
        bool running = isRunning();
        found = output().find(needle) != std::string::npos;
        return found || !running;
      },
      timeout);
  return found;
}

// ---- Commands --------------------------------------------------------------------------

std::string CommandResult::describe() const {
  std::string what = "`" + command + "` ";
  if (timed_out) {
    what += "timed out";
  } else {
    what += "exited " + std::to_string(exit_code);
  }
  std::string detail = err.empty() ? out : err;
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  if (!detail.empty()) what += ": " + detail;
  return what;
}

CommandResult runCommand(const CommandSpec& spec) {
  constexpr size_t kMaxStdin = 64 * 1024;
  if (spec.stdin_data.size() > kMaxStdin) throw HarnessError("stdin_data is larger than 64 KiB");
  CommandResult result;
  result.command = joinArgv(spec.argv);
  PreparedChild c = prepare(spec.netns_path, spec.cgroup_path, spec.argv, spec.env);

  // stdin: the whole input is put into the pipe before the child exists, so the parent never
  // writes to a pipe whose reader may be gone (no SIGPIPE) and never blocks.
  UniqueFd stdin_fd;
  if (spec.stdin_data.empty()) {
    stdin_fd = openDevNull();
  } else {
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      throw HarnessError(std::string("pipe2: ") + std::strerror(errno));
    }
    stdin_fd.reset(p[0]);
    UniqueFd writer(p[1]);
    ::fcntl(writer.get(), F_SETPIPE_SZ, static_cast<int>(kMaxStdin));
    ssize_t w = ::write(writer.get(), spec.stdin_data.data(), spec.stdin_data.size());
    if (w != static_cast<ssize_t>(spec.stdin_data.size())) {
      throw HarnessError("could not buffer stdin for `" + result.command + "`");
    }
  }
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw HarnessError("pipe2 failed");
  UniqueFd out_read(out_pipe[0]);
  UniqueFd out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw HarnessError("pipe2 failed");
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);

  c.stdin_fd = stdin_fd.get();
  c.stdout_fd = out_write.get();
  c.stderr_fd = err_write.get();
  pid_t pid = forkExec(c);
  UniqueFd pidfd = openPidfd(pid);
  stdin_fd.reset();
  out_write.reset();
  err_write.reset();
  ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);

  auto deadline = Clock::now() + spec.timeout;
  bool reaped = false;
  int status = 0;
  while (!reaped) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    pollfd fds[3];
    nfds_t n = 0;
    fds[n++] = {pidfd.get(), POLLIN, 0};
    if (out_read.valid()) fds[n++] = {out_read.get(), POLLIN, 0};
    if (err_read.valid()) fds[n++] = {err_read.get(), POLLIN, 0};
    int r = ::poll(fds, n, clampMs(left));
    if (r < 0 && errno != EINTR) throw HarnessError(std::string("poll: ") + std::strerror(errno));
    if (out_read.valid() && !drain(out_read.get(), result.out)) out_read.reset();
    if (err_read.valid() && !drain(err_read.get(), result.err)) err_read.reset();
    if (r > 0 && (fds[0].revents & POLLIN)) {
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      reaped = true;
    }
  }
  // Whatever the child wrote before it exited is in the pipes now. A grandchild that keeps
  // them open is not waited for.
  if (out_read.valid()) drain(out_read.get(), result.out);
  if (err_read.valid()) drain(err_read.get(), result.err);
  result.exit_code = statusToExitCode(status);
  return result;
}

CommandResult runLocal(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  CommandSpec spec;
  spec.argv = argv;
  spec.timeout = timeout;
  return runCommand(spec);
}

CommandResult runInNetns(const std::string& netns_path, const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout) {
  CommandSpec spec;
  spec.netns_path = netns_path;
  spec.argv = argv;
  spec.timeout = timeout;
  return runCommand(spec);
}

}  // namespace nodemesh::sim
