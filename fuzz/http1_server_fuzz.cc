// Fuzz target: the waypoint's HTTP/1.1 server codec (waypoint/http1: http-parser for heads,
// our head checks, BodyDecoder for Content-Length/chunked bodies and trailers). The input is
// what a client sends in a tunnel stream: pipelined requests with bodies, in chunks, then EOF.
// The handler answers each request the ways the proxy does (known length, chunked with trailers,
// an early final response before the body is complete, 100-continue), chosen by the request's
// header count so the fuzzer reaches each. Also runs protocol detection on the first bytes.
// Invariant checked: the codec never buffers more than a head plus a chunk-size line.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "fuzz/fuzz_support.h"
#include "waypoint/http1/detect.h"
#include "waypoint/http1/message.h"
#include "waypoint/http1/options.h"
#include "waypoint/http1/server_codec.h"

namespace {

using nodemesh::fuzz::asBytes;
using nodemesh::fuzz::check;
namespace http1 = nodemesh::waypoint::http1;

class Handler : public http1::ServerHandler {
 public:
  http1::ServerCodec* codec = nullptr;

  void onRequestHead(const http1::RequestHead& head, const http1::RequestInfo& info) override {
    responded_ = false;
    style_ = head.headers.size() % 3;
    if (info.expect_continue && style_ != 2) (void)codec->sendContinue();
    if (style_ == 2) respond();  // a final response before the request is complete
  }
  void onRequestBody(std::span<const uint8_t> data) override { body_bytes_ += data.size(); }
  void onRequestTrailers(const http1::Headers& trailers) override {
    body_bytes_ += trailers.size();
  }
  void onRequestComplete() override {
    if (!responded_) respond();
  }

 private:
  void respond() {
    responded_ = true;
    http1::ResponseHead head;
    head.headers.add("content-type", "text/plain");
    if (style_ == 1) {
      // Chunked, with trailers.
      (void)codec->sendResponseHead(head, std::nullopt);
      (void)codec->sendBody(asBytes("chunked body"));
      (void)codec->sendEnd(http1::Headers{{"grpc-status", "0"}});
    } else {
      (void)codec->sendResponseHead(head, 5);
      (void)codec->sendBody(asBytes("hello"));
      (void)codec->sendEnd();
    }
  }

  bool responded_ = false;
  size_t style_ = 0;
  size_t body_bytes_ = 0;
};

void drain(http1::ServerCodec& codec) {
  for (;;) {
    std::span<const uint8_t> out = codec.pendingOutput();
    if (out.empty()) return;
    codec.consumeOutput(std::min<size_t>(out.size(), 1000));
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  (void)http1::detectProtocol(input.first(std::min<size_t>(size, 24)));

  Handler handler;
  http1::CodecOptions options;
  // Small limits, so the fuzzer reaches them with small inputs.
  options.max_header_bytes = 2048;
  options.max_request_line_bytes = 512;
  options.max_header_count = 16;
  options.max_chunk_line_bytes = 64;
  auto created = http1::ServerCodec::create(handler, options);
  check(created.ok());
  http1::ServerCodec& codec = **created;
  handler.codec = &codec;

  constexpr size_t kChunk = 512;
  bool failed = false;
  while (!input.empty()) {
    const size_t offered = std::min(kChunk, input.size());
    auto taken = codec.receive(input.first(offered));
    check(codec.bufferedBytes() <= options.max_header_bytes + options.max_chunk_line_bytes);
    drain(codec);
    if (!taken.ok()) {
      failed = true;
      break;
    }
    check(*taken <= offered);
    input = input.subspan(*taken);
    // Nothing taken: the handler answers every request at once, so the codec stopped for good
    // (an upgrade, or the connection is closing).
    if (*taken == 0) break;
  }
  if (!failed) {
    if (codec.messageInProgress()) codec.timeout();
    (void)codec.receiveEof();
  }
  drain(codec);
  return 0;
}
