// Fuzz target: the server side of the waypoint's L7 HTTP/2 codec (waypoint/http2: H2Codec,
// Role::kServer), gRPC included. The input is what a client sends inside an HBONE stream with
// prior knowledge: preface, SETTINGS, HEADERS/CONTINUATION, DATA, trailers, RST_STREAM, PING,
// PRIORITY, GOAWAY... fed in chunks with the output drained (in short writes) between them.
// The handler answers by stream id the ways the proxy does: a response with a body and trailers
// (gRPC), a trailers-only response, 100-continue then 200, an answer while the request is still
// streaming, a reset. The clock is a counter, so the flood limits that count per time window are
// deterministic. Invariant checked: every DATA byte given back leaves unconsumedBytes() at 0.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>

#include "fuzz/fuzz_support.h"
#include "hbone/h2_errors.h"
#include "waypoint/http2/h2_codec.h"
#include "waypoint/http2/http_head.h"

namespace {

using nodemesh::fuzz::asBytes;
using nodemesh::fuzz::check;
namespace http2 = nodemesh::waypoint::http2;

class Handler : public http2::H2CodecHandler {
 public:
  http2::H2Codec* codec = nullptr;

  void onRequestHeaders(http2::StreamId stream, const http2::RequestHead& /*head*/,
                        bool /*end_stream*/) override {
    switch ((stream >> 1) % 5) {
      case 0:  // answered when the request ends
        break;
      case 1:  // a gRPC trailers-only response, at once
        (void)codec->respond(stream, {200, {{"grpc-status", "14"}}}, true);
        break;
      case 2:  // 100 Continue, then the final response when the request ends
        (void)codec->respond(stream, {100, {}}, false);
        break;
      case 3:  // the final response while the request may still be streaming
        respond(stream);
        break;
      default:
        (void)codec->resetStream(stream, nodemesh::hbone::kH2Cancel);
        break;
    }
  }
  void onData(http2::StreamId stream, std::span<const uint8_t> data) override {
    if ((stream >> 3) % 2 == 1) {
      owed_[stream] += data.size();  // a slow upstream gives the bytes back later
    } else {
      check(codec->consumed(stream, data.size()).ok());
    }
  }
  void onEndStream(http2::StreamId stream) override {
    const int kind = (stream >> 1) % 5;
    if (kind == 0 || kind == 2) respond(stream);
  }
  void onStreamClosed(http2::StreamId stream, const http2::StreamClose& /*close*/) override {
    giveBack(stream);
  }

  void giveBackAll() {
    while (!owed_.empty()) giveBack(owed_.begin()->first);
  }

 private:
  void respond(http2::StreamId stream) {
    if (!codec->respond(stream, {200, {{"content-type", "application/grpc"}}}, false).ok()) {
      return;
    }
    (void)codec->sendData(stream, asBytes("response body"));
    (void)codec->sendTrailers(stream, {{"grpc-status", "0"}});
  }
  void giveBack(http2::StreamId stream) {
    auto it = owed_.find(stream);
    if (it == owed_.end()) return;
    const size_t n = it->second;
    owed_.erase(it);
    check(codec->consumed(stream, n).ok());
  }

  std::map<http2::StreamId, size_t> owed_;
};

void drain(http2::H2Codec& codec) {
  for (int i = 0; i < 100000; ++i) {
    std::span<const uint8_t> out = codec.pendingOutput();
    if (out.empty()) return;
    codec.consumeOutput(std::min<size_t>(out.size(), 1000));
  }
  check(false);  // output that never ends
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Handler handler;
  http2::H2CodecOptions options;
  // Small limits, so the fuzzer reaches them with small inputs.
  options.max_concurrent_streams = 8;
  options.max_header_list_bytes = 4096;
  options.max_continuations = 2;
  options.premature_reset_limit = 4;
  options.max_consecutive_empty_frames = 4;
  options.max_outbound_ack = 16;
  http2::Clock::time_point now{};
  options.now = [&now] { return now += std::chrono::milliseconds(1); };
  auto created = http2::H2Codec::create(http2::Role::kServer, handler, options);
  check(created.ok());
  http2::H2Codec& codec = **created;
  handler.codec = &codec;

  std::span<const uint8_t> input(data, size);
  constexpr size_t kChunk = 1024;
  drain(codec);
  while (!input.empty()) {
    const size_t n = std::min(kChunk, input.size());
    const bool ok = codec.receive(input.first(n)).ok();
    input = input.subspan(n);
    drain(codec);
    if (!ok) break;
  }
  (void)codec.goaway();
  drain(codec);
  handler.giveBackAll();
  drain(codec);
  check(codec.unconsumedBytes() == 0);
  return 0;
}
