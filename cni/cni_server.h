#pragma once

// The agent's end of the CNI plugin's socket (protocol.h): a unix stream socket on which the
// plugin reports each pod's ADD, DEL and CHECK before it returns to the runtime.
//
// One thread accepts and serves connections one at a time: each gets one request line (at most
// kMaxMessageBytes, read within io_timeout_ms), the handler's reply, and is closed. Requests
// that do not decode get {"ok":false,"error":...} without reaching the handler. Serving one at a
// time keeps the handler simple (never called concurrently) and is fast enough: a runtime creates
// a node's pods a few per second, and the plugin waits up to its timeoutMs for its turn.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "cni/protocol.h"
#include "common/fd.h"
#include "common/result.h"

namespace nodemesh::cni {

// Decides about one pod; called on the server's thread, never concurrently. An exception it
// throws becomes an error reply.
using CniHandler = std::function<CniReply(const CniRequest&)>;

struct CniServerOptions {
  std::string socket_path = "/var/run/nodemesh/cni.sock";
  int io_timeout_ms = 2000;  // to read a request and write its reply
};

class CniServer {
 public:
  // Creates the socket's directory (0755) when missing, removes a stale socket (one that no
  // server answers on; a path that is not a socket, or a live server, is an error), binds, sets
  // the socket's mode to 0600 and starts the thread.
  static Result<std::unique_ptr<CniServer>> start(CniServerOptions options, CniHandler handler);

  ~CniServer();
  CniServer(const CniServer&) = delete;
  CniServer& operator=(const CniServer&) = delete;
  CniServer(CniServer&&) = delete;
  CniServer& operator=(CniServer&&) = delete;

  // Stops accepting, waits for the request in progress, joins the thread and removes the
  // socket. Idempotent; the destructor calls it.
  void stop();

  const std::string& socketPath() const { return options_.socket_path; }
  // Requests served (including refused ones), for metrics and tests.
  uint64_t served() const { return served_.load(std::memory_order_relaxed); }

 private:
  CniServer(CniServerOptions options, CniHandler handler, UniqueFd listen_fd, UniqueFd wake_fd);
  void run();
  void serve(int fd);

  CniServerOptions options_;
  CniHandler handler_;
  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // an eventfd stop() signals
  std::atomic<uint64_t> served_{0};
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace nodemesh::cni
