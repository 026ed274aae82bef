#include "sim/interrupt.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sim/sim_cluster.h"
#include "sim/sim_cluster_internal.h"

namespace nodemesh::sim {
namespace {

constexpr const char* kSweepAfterEnv = "NODEMESH_SIM_SWEEP_AFTER";
constexpr std::array kSignals = {SIGINT, SIGTERM, SIGHUP};

int g_signal_pipe[2] = {-1, -1};

// Async-signal-safe: hands the signal's number to the watcher thread.
void onSignal(int sig) {
  const int saved = errno;
  const auto byte = static_cast<unsigned char>(sig);
  ssize_t ignored = ::write(g_signal_pipe[1], &byte, 1);
  (void)ignored;
  errno = saved;
}

// Runs on its own thread: waits for a signal, starts the sweeper, exits the program.
[[noreturn]] void watch() {
  unsigned char sig = 0;
  while (::read(g_signal_pipe[0], &sig, 1) != 1) {
  }
  // Whoever reads our output may be gone already (ctest, or a pipe to `tee`, stops on the same
  // Ctrl-C): a write must fail with EPIPE, not kill the program before the sweeper starts.
  ::signal(SIGPIPE, SIG_IGN);
  std::fprintf(stderr, "\n[sim_cluster] interrupted by %s: cleaning up in the background\n",
               ::strsignal(sig));
  // Everything the child needs is built before fork(): in a multithreaded process the child may
  // make only async-signal-safe calls until exec.
  std::vector<char> self(4096);
  const ssize_t len = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
  if (len > 0) {
    self[static_cast<size_t>(len)] = '\0';
    std::string marker = std::string(kSweepAfterEnv) + "=" + std::to_string(::getpid());
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, kSweepAfterEnv, std::strlen(kSweepAfterEnv)) != 0) envp.push_back(*e);
    }
    envp.push_back(marker.data());
    envp.push_back(nullptr);
    std::array<char*, 2> argv = {self.data(), nullptr};
    const pid_t child = ::fork();
    if (child == 0) {
      // Its own session: a second Ctrl-C at the terminal must not stop the cleanup.
      ::setsid();
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(self.data(), argv.data(), envp.data());
      ::_exit(127);
    }
    if (child < 0) std::perror("[sim_cluster] fork for the cleanup");
  } else {
    std::perror("[sim_cluster] readlink /proc/self/exe for the cleanup");
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(128 + sig);
}

}  // namespace

void cleanUpWhenInterrupted() {
  if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    std::perror("[sim_cluster] pipe for signals");
    return;
  }
  std::thread(watch).detach();
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : kSignals) {
    // A signal the program was started with ignored stays ignored: nohup's SIGHUP, and SIGINT
    // in a background job of a non-interactive shell.
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    ::sigaction(sig, &sa, nullptr);
  }
}

void runSweeperIfAsked() {
  const char* value = std::getenv(kSweepAfterEnv);
  if (value == nullptr) return;
  // Its output goes where the interrupted program's went, which may be closed by now: the
  // sweep must not die of SIGPIPE on its first log line.
  ::signal(SIGPIPE, SIG_IGN);
  const long pid = std::strtol(value, nullptr, 10);
  if (pid <= 0) {
    std::fprintf(stderr, "[sim_cluster] %s=%s is not a pid\n", kSweepAfterEnv, value);
    std::exit(2);
  }
  // The interrupted program exits right after starting this; wait for it (bounded: a pid
  // that stays alive is then someone else's, and sweepStale() leaves live runs alone anyway).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (cluster_internal::pidAlive(static_cast<pid_t>(pid)) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  SimCluster::sweepStale();
  std::fprintf(stderr, "[sim_cluster] cleaned up after pid %ld\n", pid);
  std::exit(0);
}

}  // namespace nodemesh::sim
