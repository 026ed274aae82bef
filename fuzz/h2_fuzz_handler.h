#pragma once

// The H2Handler of the hbone_server and hbone_client fuzz targets, and the loop that feeds an
// H2Session its input. The handler behaves like the tunnel's (answers requests, echoes data,
// half-closes, gives every DATA byte back), with the choice of behaviour per stream taken from
// the stream id, which the input controls, so that the fuzzer reaches every stream path.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "hbone/h2_errors.h"
#include "hbone/h2_session.h"

namespace nodemesh::fuzz {

class H2FuzzHandler : public hbone::H2Handler {
 public:
  hbone::H2Session* session = nullptr;

  // What the server side does with a request, by stream id.
  enum class Answer { kTunnel, kTunnelAndEnd, kBadRequest, kDenied, kReset, kLater };

  static Answer answerFor(hbone::StreamId stream) {
    switch ((stream >> 1) % 6) {
      case 0:
        return Answer::kTunnel;
      case 1:
        return Answer::kTunnelAndEnd;
      case 2:
        return Answer::kBadRequest;
      case 3:
        return Answer::kDenied;
      case 4:
        return Answer::kReset;
      default:
        return Answer::kLater;
    }
  }
  // Streams whose DATA is given back only when the stream closes or the input ends, as a slow
  // application would.
  static bool consumesLate(hbone::StreamId stream) { return (stream >> 2) % 2 == 1; }

  void onRequest(hbone::StreamId stream, const hbone::ConnectRequest& /*request*/) override {
    switch (answerFor(stream)) {
      case Answer::kTunnel:
        (void)session->respond(stream, hbone::kStatusOk);
        break;
      case Answer::kTunnelAndEnd:
        (void)session->respond(stream, hbone::kStatusOk);
        (void)session->send(stream, asBytes("hello"));
        (void)session->endStream(stream);
        break;
      case Answer::kBadRequest:
        (void)session->respond(stream, hbone::kStatusBadRequest);
        break;
      case Answer::kDenied:
        (void)session->respond(stream, hbone::kStatusUnauthorized);
        break;
      case Answer::kReset:
        (void)session->resetStream(stream, hbone::kH2ConnectError);
        break;
      case Answer::kLater:
        later_.push_back(stream);
        break;
    }
  }

  void onResponse(hbone::StreamId stream, int status) override {
    if (status == hbone::kStatusOk) (void)session->send(stream, asBytes("request bytes"));
  }

  void onData(hbone::StreamId stream, std::span<const uint8_t> data) override {
    // Echo what fits (the send queue is bounded), as a relay writing on would.
    (void)session->send(stream, data.first(std::min<size_t>(data.size(), 512)));
    if (consumesLate(stream)) {
      owed_[stream] += data.size();
    } else {
      check(session->consumed(stream, data.size()).ok());
    }
  }

  void onEndStream(hbone::StreamId stream) override { (void)session->endStream(stream); }

  void onStreamClosed(hbone::StreamId stream, uint32_t /*error_code*/) override {
    giveBack(stream);
  }

  // After each receive(): the answers that were postponed.
  void answerLater() {
    std::vector<hbone::StreamId> streams;
    streams.swap(later_);
    for (hbone::StreamId stream : streams) (void)session->respond(stream, hbone::kStatusOk);
  }

  // Gives back every DATA byte still held.
  void giveBackAll() {
    while (!owed_.empty()) giveBack(owed_.begin()->first);
  }

 private:
  void giveBack(hbone::StreamId stream) {
    auto it = owed_.find(stream);
    if (it == owed_.end()) return;
    const size_t n = it->second;
    owed_.erase(it);
    check(session->consumed(stream, n).ok());
  }

  std::vector<hbone::StreamId> later_;
  std::map<hbone::StreamId, size_t> owed_;
};

// Writes out the session's pending output in short writes, as a slow socket would.
inline void drainOutput(hbone::H2Session& session) {
  // Bounded: a session that kept producing output forever would be a finding (a timeout).
  for (int i = 0; i < 100000; ++i) {
    std::span<const uint8_t> out = session.pendingOutput();
    if (out.empty()) return;
    session.consumeOutput(std::min<size_t>(out.size(), 1000));
  }
  check(false);
}

// Feeds `input` in chunks of kChunk bytes, the output drained after each, until the session
// refuses input; then every DATA byte goes back and the session must hold none.
inline void runH2Session(hbone::H2Session& session, H2FuzzHandler& handler,
                         std::span<const uint8_t> input) {
  constexpr size_t kChunk = 1024;
  drainOutput(session);
  int chunks = 0;
  while (!input.empty()) {
    const size_t n = std::min(kChunk, input.size());
    const bool ok = session.receive(input.first(n)).ok();
    input = input.subspan(n);
    if (ok) handler.answerLater();
    if (ok && ++chunks == 2) (void)session.ping();
    drainOutput(session);
    if (!ok) break;
  }
  (void)session.goaway();
  drainOutput(session);
  handler.giveBackAll();
  drainOutput(session);
  check(session.unconsumedBytes() == 0);
}

}  // namespace nodemesh::fuzz
