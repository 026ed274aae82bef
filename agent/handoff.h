#pragma once

// Agent upgrades without a closed port: the running agent hands its pods' listening sockets to
// the next agent process over a unix socket (SCM_RIGHTS), as Envoy's hot restart and HAProxy's
// `-x` do. Both processes then hold the same sockets: a connection queued on one is accepted by
// either, and no SYN meets a closed port. The old agent stops accepting once the new one
// accepts, serves its open connections until they end or its drain deadline passes, and exits
// without touching the capture (docs/agent.md, "Upgrades").
//
// The exchange, on an AF_UNIX SOCK_SEQPACKET socket (message boundaries kept; the messages are
// short text lines so that `strace` shows them):
//   new -> old  "nodemesh-handoff 1"
//   old -> new  "socket <netns cookie> <outbound|inbound|hbone> <4|6>", one socket attached,
//               once per listening socket (the old agent first closes its admin, metrics and
//               readiness servers, whose ports the new agent binds next)
//   old -> new  "end <sockets sent>"
//   new -> old  "ready" once it has taken its pods (its first pass), accepting on the sockets
//   old -> new  "stopped" once none of its accepts is pending any more; then it closes
// The old agent then drains. If the connection ends before "ready" (the new agent failed), the
// old agent starts its servers again and carries on as if nothing happened.
//
// Why "stopped": an io_uring accept waits on the listening socket as an exclusive waiter, and
// the kernel wakes only the first such waiter for a new connection. A connection that arrives
// while the old agent's accept is being cancelled wakes that accept, which then completes
// cancelled without taking it: the connection stays queued, and the new agent's accept, never
// woken, sleeps until the next connection arrives (an HBONE peer's next connection may be
// minutes away). Once the old agent's accepts are gone, the new agent re-arms its own
// (Tunnel::restartAccepts()), and a re-armed accept takes what is queued at once.
//
// Written by hand: no library here passes descriptors between processes.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent {

// The running agent's side: a thread that waits for the next agent.
class HandoffServer {
 public:
  struct Hooks {
    // Close what the next agent binds (the admin, metrics and readiness servers).
    std::function<void()> release_ports;
    // The listening sockets to hand over (duplicates, sent and then closed here).
    std::function<std::vector<tunnel::InheritedListener>()> export_listeners;
    // The next agent failed before taking over: serve on the ports again.
    std::function<void()> restore_ports;
    // The next agent accepts on the sockets: stop accepting and drain. Called once, with the
    // connection to send "stopped" on (reportAcceptsStopped()).
    std::function<void(UniqueFd conn)> handed_over;
  };

  // Listens at `path` (a stale socket file there is replaced; the directory is created).
  static Result<std::unique_ptr<HandoffServer>> start(const std::string& path, Hooks hooks);
  // Stops the thread; removes the socket file unless another agent has bound that path since.
  ~HandoffServer();
  HandoffServer(const HandoffServer&) = delete;
  HandoffServer& operator=(const HandoffServer&) = delete;

 private:
  HandoffServer(std::string path, UniqueFd listener, UniqueFd stop, Hooks hooks, ino_t inode);
  void serve();
  // One next agent: true when it took over.
  bool handOver(UniqueFd conn);

  std::string path_;
  UniqueFd listener_;
  UniqueFd stop_;  // eventfd: the destructor wakes the thread
  Hooks hooks_;
  ino_t inode_;
  std::thread thread_;
};

// The next agent's side: the sockets received, and the connection to confirm on.
struct Handoff {
  UniqueFd conn;
  std::vector<tunnel::InheritedListener> listeners;
};

// Asks the agent listening at `path` for its sockets. Nothing (no error) when no agent listens
// there: a first start, or the previous agent is gone. An error when one answers but the
// exchange fails or takes longer than `timeout`.
Result<std::optional<Handoff>> requestHandoff(const std::string& path,
                                              std::chrono::milliseconds timeout);
// Tells the previous agent that this one accepts on the sockets: it stops accepting and drains.
// The connection stays open for awaitAcceptsStopped().
Status confirmHandoff(Handoff& handoff);
// After confirmHandoff(): waits until the previous agent reports that it accepts no more
// ("stopped", true), closes the connection without it (false: an agent that predates the
// message, or one that died), or `timeout` passes (an error), whichever comes first; `stop_fd`
// turning readable ends the wait (ECANCELED). The connection is closed in every case.
Result<bool> awaitAcceptsStopped(Handoff& handoff, int stop_fd, std::chrono::milliseconds timeout);

// The previous agent's side, after the handover: no accept of its own is pending any more.
// Sends "stopped" and closes the connection.
Status reportAcceptsStopped(UniqueFd& conn);

}  // namespace nodemesh::agent
