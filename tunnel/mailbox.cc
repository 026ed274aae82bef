#include "tunnel/mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>

#include "tunnel/pod_listeners.h"

namespace nodemesh::tunnel {

Result<std::unique_ptr<Mailbox>> Mailbox::create() {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) return Error::fromErrno("eventfd");
  return std::unique_ptr<Mailbox>(new Mailbox(std::move(fd)));
}

Mailbox::~Mailbox() = default;

void Mailbox::wake() const {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
  (void)n;  // EAGAIN means a wake-up is already pending
}

void Mailbox::postPod(uint64_t cookie, std::unique_ptr<Pod> pod) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pods_.push_back(PodCommand{cookie, std::move(pod)});
  }
  wake();
}

void Mailbox::postPolicyChange() {
  policy_changed_.store(true);
  wake();
}

void Mailbox::postStop() {
  stopping_.store(true);
  wake();
}

void Mailbox::postDrain() {
  drain_.store(true);
  wake();
}

void Mailbox::postRestartAccepts() {
  restart_accepts_.store(true);
  wake();
}

std::vector<Mailbox::PodCommand> Mailbox::takePods() {
  std::vector<PodCommand> pods;
  std::lock_guard<std::mutex> lock(mu_);
  pods.swap(pods_);
  return pods;
}

std::vector<ConnectionInfo> Mailbox::requestConnections() {
  if (stopping_.load()) return {};
  auto request = std::make_shared<ConnectionsRequest>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(request);
  }
  wake();
  std::unique_lock<std::mutex> lock(request->mu);
  request->cv.wait_for(lock, std::chrono::seconds(1), [&] { return request->done; });
  return request->done ? std::move(request->connections) : std::vector<ConnectionInfo>{};
}

void Mailbox::answerConnections(const std::function<std::vector<ConnectionInfo>()>& list) {
  std::vector<std::shared_ptr<ConnectionsRequest>> requests;
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests.swap(requests_);
  }
  if (requests.empty()) return;
  std::vector<ConnectionInfo> out = list();
  auto answer = [](ConnectionsRequest& request, std::vector<ConnectionInfo> connections) {
    std::lock_guard<std::mutex> lock(request.mu);
    request.connections = std::move(connections);
    request.done = true;
    request.cv.notify_all();
  };
  // Usually one request; every extra one gets a copy, the last the original.
  for (size_t i = 0; i + 1 < requests.size(); ++i) answer(*requests[i], out);
  answer(*requests.back(), std::move(out));
}

}  // namespace nodemesh::tunnel
