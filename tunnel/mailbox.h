#pragma once

// What other threads hand one worker's loop: pods to add or remove, the news of a policy change,
// requests for the open connections, and the order to stop. Every post writes the worker's
// eventfd; the loop reads it (a ring operation) and takes what was posted, between two batches
// of completions, so the data path itself takes no lock.
//
// Open connections without slowing the data path: the loop keeps nothing extra per connection
// for it. requestConnections() posts a request and waits; the loop answers by walking its own
// connection lists and copying what the connections already hold (the access log record and
// the byte counts kept for it). A request the loop does not answer within a second (it is
// stopping) is abandoned; the shared request object keeps that safe.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "tunnel/pod_listeners.h"
#include "tunnel/tunnel.h"

namespace nodemesh::tunnel {

class Mailbox {
 public:
  static Result<std::unique_ptr<Mailbox>> create();
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // ---- any thread ----
  // `pod` null: remove the pod with this cookie.
  void postPod(uint64_t cookie, std::unique_ptr<Pod> pod);
  void postPolicyChange();
  void postStop();
  void postDrain();
  void postRestartAccepts();
  bool stopping() const { return stopping_.load(); }
  // After postDrain(): the loop has no accept pending any more.
  bool acceptsStopped() const { return accepts_stopped_.load(); }
  // Waits at most a second for the loop's answer (empty then).
  std::vector<ConnectionInfo> requestConnections();

  // ---- the loop ----
  int wakeFd() const { return wake_fd_.get(); }
  struct PodCommand {
    uint64_t cookie;
    std::unique_ptr<Pod> pod;
  };
  // In the order posted: a pod removed and added again ends up with the new listeners.
  std::vector<PodCommand> takePods();
  bool takePolicyChange() { return policy_changed_.exchange(false); }
  bool takeDrain() { return drain_.exchange(false); }
  bool takeRestartAccepts() { return restart_accepts_.exchange(false); }
  void setAcceptsStopped() { accepts_stopped_.store(true); }
  // Answers the pending requests with what `list` returns (called once, if any is pending).
  void answerConnections(const std::function<std::vector<ConnectionInfo>()>& list);

 private:
  explicit Mailbox(UniqueFd wake_fd) : wake_fd_(std::move(wake_fd)) {}
  void wake() const;

  struct ConnectionsRequest {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::vector<ConnectionInfo> connections;
  };

  UniqueFd wake_fd_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> policy_changed_{false};
  std::atomic<bool> drain_{false};
  std::atomic<bool> restart_accepts_{false};
  std::atomic<bool> accepts_stopped_{false};
  std::mutex mu_;
  std::vector<PodCommand> pods_;
  std::vector<std::shared_ptr<ConnectionsRequest>> requests_;
};

}  // namespace nodemesh::tunnel
