// What the admin API asks a worker: its open connections, and the open hook for metrics.
//
// Publishing open connections without slowing the data path: the worker keeps nothing extra per
// connection for it. connections() posts a request to the worker's loop (a queue and the
// worker's eventfd, like pod commands) and waits; the worker answers from onWake(), between
// two batches of completions, by walking its own connection lists and copying what the
// connections already hold (the access log record and the byte counts kept for it). The data
// path pays one list walk per request, O(open connections) on that one worker, and no lock,
// atomic or allocation per byte or per connection. A request that the worker does not answer
// within a second (it is stopping) is abandoned; the shared request object keeps that safe.
#include <chrono>

#include "ztunnel/worker.h"

namespace nodemesh::ztunnel::internal {

namespace {

// What every connection's access log record already says about it.
ConnectionInfo describe(const ConnectionRecord& r, std::chrono::milliseconds age) {
  ConnectionInfo info;
  info.direction = r.direction;
  info.pod = r.pod;
  info.src = r.src;
  info.dst = r.dst;
  info.dst_service = r.dst_service;
  info.transport = r.transport;
  info.src_identity = r.src_identity;  // empty for plain TCP
  info.dst_identity = r.dst_identity;
  info.age = age;
  return info;
}

}  // namespace

void Worker::opened(const ConnectionRecord& record) {
  if (on_open_) on_open_(record);
}

std::vector<ConnectionInfo> Worker::connections() const {
  if (!thread_.joinable() || stopping_.load()) return {};
  auto request = std::make_shared<ConnectionsRequest>();
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    requests_.push_back(request);
  }
  wake();
  std::unique_lock<std::mutex> lock(request->mu);
  request->cv.wait_for(lock, std::chrono::seconds(1), [&] { return request->done; });
  return request->done ? std::move(request->connections) : std::vector<ConnectionInfo>{};
}

void Worker::answerConnectionRequests() {
  std::vector<std::shared_ptr<ConnectionsRequest>> requests;
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    requests.swap(requests_);
  }
  if (requests.empty()) return;
  const auto now = Clock::now();
  auto age = [&](Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now - start);
  };
  std::vector<ConnectionInfo> out;
  out.reserve(conns_.size() + bridges_.size());
  for (const auto& c : conns_) {
    ConnectionInfo info = describe(c->record, age(c->start));
    info.bytes_to_dst = c->half[0].bytes;
    info.bytes_from_dst = c->half[1].bytes;
    info.state = c->connecting                                       ? "connecting"
                 : c->aborting || c->half[0].done || c->half[1].done ? "closing"
                                                                     : "open";
    out.push_back(std::move(info));
  }
  for (const auto& b : bridges_) {
    ConnectionInfo info = describe(b->record, age(b->start));
    info.bytes_to_dst = b->record.bytes_to_dst;
    info.bytes_from_dst = b->record.bytes_from_dst;
    info.state = b->connecting || !b->streaming                              ? "connecting"
                 : b->aborting || b->tcp_eof || b->peer_ended || b->finished ? "closing"
                                                                             : "open";
    out.push_back(std::move(info));
  }
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

}  // namespace nodemesh::ztunnel::internal
