#pragma once

// Shared by the HTTP/1.1 codec tests: handlers that record every event, and feeding helpers
// that drive a codec without sockets (whole, in pieces, a byte at a time).

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "waypoint/http1/client_codec.h"
#include "waypoint/http1/server_codec.h"

namespace nodemesh::waypoint::http1::test {

inline std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::string asString(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

struct RecordedRequest {
  RequestHead head;
  RequestInfo info;
  std::string body;
  Headers trailers;
  bool complete = false;
};

// A ServerHandler that records; hooks let a test answer from inside the callbacks.
class ServerRecorder : public ServerHandler {
 public:
  explicit ServerRecorder(const CodecOptions& options = {}) {
    auto codec = ServerCodec::create(*this, options);
    EXPECT_TRUE(codec.ok());
    codec_ = std::move(*codec);
  }
  ServerCodec* operator->() { return codec_.get(); }
  ServerCodec& codec() { return *codec_; }

  void onRequestHead(const RequestHead& head, const RequestInfo& info) override {
    requests.push_back(RecordedRequest{head, info, {}, {}, false});
    if (on_head) {
      on_head();
    }
  }
  void onRequestBody(std::span<const uint8_t> data) override {
    requests.back().body += asString(data);
  }
  void onRequestTrailers(const Headers& trailers) override { requests.back().trailers = trailers; }
  void onRequestComplete() override {
    requests.back().complete = true;
    if (on_complete) {
      on_complete();
    }
  }
  void onUpgrade(const RequestHead& head, const RequestInfo& info) override {
    upgrades.push_back(RecordedRequest{head, info, {}, {}, false});
  }
  void onRequestError(const Rejection& rejection) override { errors.push_back(rejection); }

  // Appends `input` to what the codec has not consumed yet and feeds it, `step` bytes per
  // receive() call, until the codec stops taking bytes. Returns the first error, if any.
  Status feed(std::string_view input, size_t step = SIZE_MAX) {
    backlog += input;
    while (!backlog.empty()) {
      const size_t n = std::min(step, backlog.size());
      auto consumed = codec_->receive(asBytes(std::string_view{backlog}.substr(0, n)));
      if (!consumed.ok()) {
        return consumed.error();
      }
      backlog.erase(0, *consumed);
      if (*consumed == 0) {
        break;
      }
    }
    return okStatus();
  }

  // Everything the codec wrote, taken out.
  std::string output() {
    std::string out = asString(codec_->pendingOutput());
    codec_->consumeOutput(out.size());
    return out;
  }

  // A whole response with a Content-Length body.
  void respond(int status, std::string_view body, Headers headers = {}) {
    ResponseHead head;
    head.status = status;
    head.headers = std::move(headers);
    ASSERT_TRUE(codec_->sendResponseHead(head, body.size()).ok());
    ASSERT_TRUE(codec_->sendBody(asBytes(body)).ok());
    ASSERT_TRUE(codec_->sendEnd().ok());
  }

  std::vector<RecordedRequest> requests;
  std::vector<RecordedRequest> upgrades;
  std::vector<Rejection> errors;
  std::function<void()> on_head;
  std::function<void()> on_complete;
  std::string backlog;  // bytes the codec did not consume (pipelined requests)

 private:
  std::unique_ptr<ServerCodec> codec_;
};

struct RecordedResponse {
  ResponseHead head;
  ResponseInfo info;
  std::string body;
  Headers trailers;
  bool complete = false;
};

class ClientRecorder : public ClientHandler {
 public:
  explicit ClientRecorder(const CodecOptions& options = {}) {
    auto codec = ClientCodec::create(*this, options);
    EXPECT_TRUE(codec.ok());
    codec_ = std::move(*codec);
  }
  ClientCodec* operator->() { return codec_.get(); }

  void onResponseHead(const ResponseHead& head, const ResponseInfo& info) override {
    if (info.interim) {
      interims.push_back(head.status);
      return;
    }
    responses.push_back(RecordedResponse{head, info, {}, {}, false});
  }
  void onResponseBody(std::span<const uint8_t> data) override {
    responses.back().body += asString(data);
  }
  void onResponseTrailers(const Headers& trailers) override {
    responses.back().trailers = trailers;
  }
  void onResponseComplete() override { responses.back().complete = true; }
  void onResponseError(const Rejection& rejection) override { errors.push_back(rejection); }

  Status feed(std::string_view input, size_t step = SIZE_MAX) {
    while (!input.empty()) {
      const size_t n = std::min(step, input.size());
      auto consumed = codec_->receive(asBytes(input.substr(0, n)));
      if (!consumed.ok()) {
        return consumed.error();
      }
      EXPECT_EQ(*consumed, n);
      input.remove_prefix(n);
    }
    return okStatus();
  }

  std::string output() {
    std::string out = asString(codec_->pendingOutput());
    codec_->consumeOutput(out.size());
    return out;
  }

  // Sends a bodyless request.
  void get(std::string_view method = "GET", std::string_view target = "/") {
    RequestHead head;
    head.method = std::string(method);
    head.target = std::string(target);
    head.headers.add("Host", "svc.ns:80");
    ASSERT_TRUE(codec_->sendRequestHead(head, 0).ok());
    ASSERT_TRUE(codec_->sendEnd().ok());
  }

  std::vector<RecordedResponse> responses;
  std::vector<int> interims;
  std::vector<Rejection> errors;

 private:
  std::unique_ptr<ClientCodec> codec_;
};

}  // namespace nodemesh::waypoint::http1::test
