#pragma once

// Child processes for end-to-end tests: long-running ones (agent, servers) with output in log
// files, and short commands with captured output. Either can be started inside a network
// namespace and a cgroup: the child joins them between fork() and exec(), so it never runs a
// single instruction of the target program outside them.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"

namespace nodemesh::sim {

// Setup failures in the harness throw HarnessError. gtest reports an exception escaping a test
// body as a failure with its message, which keeps test bodies free of status plumbing; this is
// test-only code, never the data path. Teardown paths never throw.
class HarnessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ProcessSpec {
  std::string netns_path;         // empty: the caller's network namespace
  std::string cgroup_path;        // cgroup2 directory to run in; empty: the caller's cgroup
  std::vector<std::string> argv;  // argv[0] without '/' is looked up in PATH (+ /usr/sbin)
  std::vector<std::string> env;   // "KEY=VALUE" added to (or replacing in) the inherited env
  std::string stdout_path;        // required by Process::spawn
  std::string stderr_path;        // empty or equal to stdout_path: both go to one file
};

// A running child. Destruction kills it (SIGKILL) and reaps it. The child also gets
// PR_SET_PDEATHSIG=SIGKILL, so it dies with the test process even when destructors do not
// run (crash, ctest timeout); the thread that spawns must outlive the child for that reason.
class Process {
 public:
  static std::unique_ptr<Process> spawn(const ProcessSpec& spec);  // throws HarnessError
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }  // basename of argv[0]
  const ProcessSpec& spec() const { return spec_; }

  // Sends sig; false when the process has already been reaped.
  bool signal(int sig);
  // Waits until the process exits; nullopt on timeout. The value is the exit status, or
  // 128 + signal number when a signal killed it (shell convention).
  std::optional<int> waitExit(std::chrono::milliseconds timeout);
  bool isRunning();
  // SIGKILL and reap; idempotent. Returns like waitExit (nullopt if it would not die).
  std::optional<int> kill();
  // The exit value once reaped (see waitExit).
  std::optional<int> exitCode() const { return exit_code_; }

  std::string output() const;       // everything written to stdout so far
  std::string errorOutput() const;  // stderr (the same as output() when they share a file)
  // Polls stdout for `needle`; false on timeout or when the process exits without it.
  bool waitForOutput(std::string_view needle, std::chrono::milliseconds timeout);

 private:
  Process(ProcessSpec spec, pid_t pid, UniqueFd pidfd);
  void reap(int status);

  ProcessSpec spec_;
  std::string name_;
  pid_t pid_;
  UniqueFd pidfd_;
  std::optional<int> exit_code_;
};

struct CommandResult {
  std::string command;  // the argv joined by spaces
  int exit_code = -1;   // exit status, 128 + signal when killed by one
  bool timed_out = false;
  std::string out;
  std::string err;

  bool ok() const { return exit_code == 0 && !timed_out; }
  // "`ip -n x link` exited 1: <stderr>" for failure messages.
  std::string describe() const;
};

struct CommandSpec {
  std::string netns_path;   // empty: the caller's network namespace
  std::string cgroup_path;  // empty: the caller's cgroup
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE" added to the inherited environment
  std::string stdin_data;        // at most 64 KiB (written before the child starts)
  std::chrono::milliseconds timeout{10000};
};

// Runs a command to completion, capturing stdout and stderr; the child is killed when the
// timeout expires. Throws HarnessError only when the command cannot be started at all.
CommandResult runCommand(const CommandSpec& spec);

// runCommand in the caller's own network namespace and cgroup, e.g.
//   runLocal({agentPath(), "--config", path, "--validate"}).
// (A partially initialized CommandSpec{...} trips -Wmissing-field-initializers under -Werror.)
CommandResult runLocal(const std::vector<std::string>& argv,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));

// runCommand in a network namespace (a path such as /var/run/netns/NAME or /proc/PID/ns/net).
CommandResult runInNetns(const std::string& netns_path, const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Polls predicate every `interval` until it returns true (-> true) or timeout (-> false).
bool waitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval = std::chrono::milliseconds(20));

// The absolute path of an executable: name itself when it contains '/', else the first match
// in PATH, then /usr/sbin, /sbin, /usr/bin, /bin. nullopt when none is executable.
std::optional<std::string> findExecutable(const std::string& name);

// Reads a whole file; empty when it does not exist.
std::string readFile(const std::string& path);

}  // namespace nodemesh::sim
