// ClientCodec: request framing and the response side state machine.

#include "waypoint/http1/client_codec.h"

#include <cerrno>
#include <string>
#include <utility>

#include "waypoint/http1/head_parser.h"

namespace nodemesh::waypoint::http1 {

namespace {

// Methods whose requests carry no content unless a length says so: an empty body goes out
// without Content-Length (RFC 9110 §8.6: a user agent SHOULD NOT send it for them).
bool bodylessMethod(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "DELETE" || method == "OPTIONS" ||
         method == "TRACE";
}

}  // namespace

Result<std::unique_ptr<ClientCodec>> ClientCodec::create(ClientHandler& handler,
                                                         const CodecOptions& options) {
  if (Status status = validateCodecOptions(options); !status.ok()) {
    return status.error();
  }
  return std::unique_ptr<ClientCodec>(new ClientCodec(handler, options));
}

ClientCodec::ClientCodec(ClientHandler& handler, const CodecOptions& options)
    : handler_(handler),
      options_(options),
      head_reader_(HeadKind::kResponse, options_),
      body_(options_) {}

bool ClientCodec::messageInProgress() const {
  return !outstanding_.empty() && state_ != State::kFailed;
}

bool ClientCodec::isReusable() const {
  return state_ == State::kHead && outstanding_.empty() && !writer_.inMessage() && keep_alive_ &&
         !last_request_ && !head_reader_.started();
}

bool ClientCodec::shouldClose() const {
  if (state_ == State::kFailed) {
    return true;  // nothing still queued is worth writing to a broken upstream
  }
  return state_ == State::kClosing && outstanding_.empty() && writer_.pendingBytes() == 0;
}

Status ClientCodec::sendRequestHead(const RequestHead& head, std::optional<uint64_t> body_length) {
  if (state_ == State::kFailed || state_ == State::kClosing || last_request_ || !keep_alive_) {
    return Error{EPIPE, "HTTP/1.1 upstream connection is closing"};
  }
  if (writer_.inMessage()) {
    return Error::invalid("a request is still being written");
  }
  if (outstanding_.size() >= options_.max_outstanding_requests) {
    return Error{EAGAIN, "too many outstanding requests on this connection"};
  }
  if (head.method == "CONNECT" || head.headers.has("upgrade")) {
    return Error::invalid("CONNECT and Upgrade are passed through as TCP, not sent by the codec");
  }
  RequestHead out = head;
  out.version = Version::kHttp11;
  OutgoingFraming framing;
  if (!body_length) {
    framing.framing = BodyFraming::kChunked;
  } else if (*body_length > 0 || !bodylessMethod(head.method)) {
    framing.framing = BodyFraming::kContentLength;
    framing.content_length = *body_length;
  }
  const bool close = head.headers.hasToken("connection", "close");
  if (close) {
    framing.connection = "close";
  }
  if (Status status = writer_.writeRequestHead(out, framing); !status.ok()) {
    return status;
  }
  outstanding_.push_back(Outstanding{head.method, close});
  last_request_ = close;
  return okStatus();
}

Status ClientCodec::sendBody(std::span<const uint8_t> data) {
  if (state_ == State::kFailed) {
    return Error{EPIPE, "HTTP/1.1 upstream connection failed"};
  }
  return writer_.writeBody(data);
}

Status ClientCodec::sendEnd(const Headers& trailers) {
  if (state_ == State::kFailed) {
    return Error{EPIPE, "HTTP/1.1 upstream connection failed"};
  }
  return writer_.writeEnd(trailers);
}

Result<size_t> ClientCodec::receive(std::span<const uint8_t> data) {
  if (state_ == State::kFailed) {
    return Error{EPIPE, "HTTP/1.1 upstream connection failed: " + failure_.reason};
  }
  size_t consumed = 0;
  while (consumed < data.size() && state_ != State::kFailed) {
    if (state_ == State::kClosing || outstanding_.empty()) {
      // RFC 9112 §9.6: nothing may follow the last response; bytes without a request are a
      // desynchronized (or hostile) upstream.
      fail(Rejection{502, "response bytes without an outstanding request"});
      break;
    }
    const std::span<const uint8_t> rest = data.subspan(consumed);
    if (state_ == State::kHead) {
      const HeadReader::Step step = head_reader_.feed(rest);
      consumed += step.consumed;
      if (step.rejection) {
        fail(Rejection{502, step.rejection->reason});
      } else if (step.complete) {
        onHead();
      }
      continue;
    }
    const BodyDecoder::Step step = body_.feed(rest, *this);
    consumed += step.consumed;
    if (step.rejection) {
      fail(Rejection{502, step.rejection->reason});
    } else if (step.complete && state_ == State::kBody) {
      completeResponse();
    }
  }
  if (state_ == State::kFailed) {
    return Error{EPROTO, "bad response from upstream: " + failure_.reason};
  }
  return consumed;
}

void ClientCodec::onHead() {
  ResponseHead head;
  ResponseInfo info;
  if (auto rejection = parseResponseHead(head_reader_, outstanding_.front().method, head, info)) {
    fail(*rejection);
    return;
  }
  head_reader_.reset();
  if (info.interim) {
    handler_.onResponseHead(head, info);  // the final response follows in kHead
    return;
  }
  if (!info.keep_alive || outstanding_.front().close) {
    keep_alive_ = false;
  }
  body_.start(info.framing, info.content_length);
  state_ = State::kBody;
  handler_.onResponseHead(head, info);
  if (state_ == State::kBody && !body_.inProgress()) {
    completeResponse();
  }
}

void ClientCodec::onBodyBytes(std::span<const uint8_t> data) {
  if (!data.empty()) {
    handler_.onResponseBody(data);
  }
}

void ClientCodec::completeResponse() {
  if (!body_.trailers().empty()) {
    handler_.onResponseTrailers(body_.trailers());
  }
  outstanding_.pop_front();
  if (writer_.inMessage() && outstanding_.empty()) {
    // Answered before the request was fully sent (413, 401...): the server will not read the
    // rest as a request boundary we agree on, so this connection ends here.
    keep_alive_ = false;
  }
  state_ = keep_alive_ ? State::kHead : State::kClosing;
  handler_.onResponseComplete();
}

Status ClientCodec::receiveEof() {
  if (state_ == State::kFailed) {
    return okStatus();
  }
  if (state_ == State::kBody && body_.endsAtClose()) {
    // RFC 9112 §6.3 (8): the close is the end of this body.
    keep_alive_ = false;
    completeResponse();
    state_ = State::kClosing;
    if (outstanding_.empty()) {
      return okStatus();
    }
  }
  if (outstanding_.empty() && !head_reader_.started()) {
    state_ = State::kClosing;  // an idle keep-alive connection closed by the server
    return okStatus();
  }
  fail(Rejection{502, "upstream closed before the response was complete"});
  return Error{EPIPE, failure_.reason};
}

void ClientCodec::fail(const Rejection& rejection) {
  state_ = State::kFailed;
  failure_ = rejection;
  handler_.onResponseError(rejection);
}

}  // namespace nodemesh::waypoint::http1
