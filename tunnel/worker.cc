#include "tunnel/worker.h"

#include <future>

#include "tunnel/pod_listeners.h"
#include "tunnel/worker_loop.h"

namespace nodemesh::tunnel {

Worker::Worker(const TunnelOptions& options, OrigDstResolver& resolver, hbone::TlsProvider* tls,
               AccessLogFn access_log, ConnectionOpenFn on_open,
               std::shared_ptr<ConnectionLimits> limits, std::shared_ptr<BufferBudget> budget)
    : options_(options),
      resolver_(resolver),
      tls_(tls),
      access_log_(std::move(access_log)),
      on_open_(std::move(on_open)),
      limits_(std::move(limits)),
      budget_(budget ? std::move(budget)
                     : std::make_shared<BufferBudget>(options.max_buffered_bytes)) {}

Worker::~Worker() {
  stop();
}

Status Worker::init() {
  auto mailbox = Mailbox::create();
  if (!mailbox) return mailbox.error();
  mailbox_ = std::move(*mailbox);
  // The loop (and its ring) is created by the thread that runs it: with
  // IORING_SETUP_SINGLE_ISSUER only the creating task may submit to the ring.
  // The thread owns the promise: set_value() may still be running when init() returns.
  std::promise<Status> ready;
  auto started = ready.get_future();
  thread_ = std::thread([this, ready = std::move(ready)]() mutable {
    const WorkerShared shared{options_,  resolver_,   tls_,     mesh_,         counters_,
                              *mailbox_, access_log_, on_open_, limits_.get(), *budget_};
    auto loop = WorkerLoop::create(shared);
    if (!loop) {
      ready.set_value(loop.error());
      return;
    }
    ready.set_value(okStatus());
    (*loop)->run();
  });
  Status st = started.get();
  if (!st.ok()) thread_.join();
  return st;
}

Result<PodListenerFds> Worker::addPod(const PodSpec& spec) {
  return addPod(spec, true);
}

Result<PodListenerFds> Worker::addPod(const PodSpec& spec, bool outbound,
                                      std::vector<InheritedListener>* inherited) {
  PodListenerFds fds;
  auto pod = createPod(spec, outbound, options_, tls_, &fds, inherited);
  if (!pod) return pod.error();
  if (limits_) (*pod)->limiter = limits_->forPod(spec.netns_cookie);
  mailbox_->postPod(spec.netns_cookie, std::move(*pod));
  return fds;
}

void Worker::removePod(uint64_t cookie) {
  mailbox_->postPod(cookie, nullptr);
}

void Worker::setSnapshot(model::SnapshotPtr snapshot) {
  auto authorizer = snapshot ? std::make_shared<const policy::Authorizer>(snapshot) : nullptr;
  setSnapshot(std::move(snapshot), std::move(authorizer));
}

void Worker::setSnapshot(model::SnapshotPtr snapshot,
                         std::shared_ptr<const policy::Authorizer> authorizer) {
  mesh_.set(std::move(snapshot), std::move(authorizer));
  // Open connections are checked against the new policies on the worker's thread.
  mailbox_->postPolicyChange();
}

std::vector<ConnectionInfo> Worker::connections() const {
  if (!thread_.joinable()) return {};
  return mailbox_->requestConnections();
}

void Worker::drain() {
  mailbox_->postDrain();
}

void Worker::restartAccepts() {
  mailbox_->postRestartAccepts();
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  mailbox_->postStop();
  thread_.join();
}

}  // namespace nodemesh::tunnel
