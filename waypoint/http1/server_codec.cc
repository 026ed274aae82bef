// ServerCodec: the request side state machine and the response framing decisions.

#include "waypoint/http1/server_codec.h"

#include <cerrno>
#include <string>
#include <utility>

#include "waypoint/http1/head_parser.h"

namespace nodemesh::waypoint::http1 {

namespace {

Error refused(const Rejection& rejection) {
  return Error{EPROTO, std::to_string(rejection.status) + " " + rejection.reason};
}

}  // namespace

Result<std::unique_ptr<ServerCodec>> ServerCodec::create(ServerHandler& handler,
                                                         const CodecOptions& options) {
  if (Status status = validateCodecOptions(options); !status.ok()) {
    return status.error();
  }
  // Private constructor: the codec stays at one address (the head reader and body decoder
  // refer to its options).
  return std::unique_ptr<ServerCodec>(new ServerCodec(handler, options));
}

ServerCodec::ServerCodec(ServerHandler& handler, const CodecOptions& options)
    : handler_(handler),
      options_(options),
      head_reader_(HeadKind::kRequest, options_),
      body_(options_) {}

bool ServerCodec::wantsRead() const {
  return state_ == State::kHead || state_ == State::kBody;
}

bool ServerCodec::messageInProgress() const {
  return (state_ == State::kHead && head_reader_.started()) || state_ == State::kBody;
}

bool ServerCodec::isClosing() const {
  return state_ == State::kClosing || state_ == State::kFailed;
}

bool ServerCodec::shouldClose() const {
  if (state_ == State::kFailed) {
    return writer_.pendingBytes() == 0;
  }
  return state_ == State::kClosing && !writer_.inMessage() && writer_.pendingBytes() == 0;
}

std::string_view ServerCodec::upgradeBytes() const {
  return state_ == State::kUpgraded ? head_reader_.raw() : std::string_view();
}

Result<size_t> ServerCodec::receive(std::span<const uint8_t> data) {
  if (state_ == State::kFailed || state_ == State::kClosing) {
    return Error{EPIPE, "HTTP/1.1 connection is closing: input refused"};
  }
  size_t consumed = 0;
  while (consumed < data.size() && (state_ == State::kHead || state_ == State::kBody)) {
    const std::span<const uint8_t> rest = data.subspan(consumed);
    if (state_ == State::kHead) {
      const HeadReader::Step step = head_reader_.feed(rest);
      consumed += step.consumed;
      if (step.rejection) {
        fail(*step.rejection);
        return refused(*step.rejection);
      }
      if (step.complete) {
        onHead();
        if (state_ == State::kFailed) {
          return Error{EPROTO, "request refused"};
        }
      }
      continue;
    }
    const BodyDecoder::Step step = body_.feed(rest, *this);
    consumed += step.consumed;
    if (step.rejection) {
      fail(*step.rejection);
      return refused(*step.rejection);
    }
    if (step.complete && state_ == State::kBody) {
      if (!body_.trailers().empty()) {
        handler_.onRequestTrailers(body_.trailers());
      }
      request_done_ = true;
      handler_.onRequestComplete();
      advance();
    }
  }
  return consumed;
}

void ServerCodec::onHead() {
  RequestHead head;
  RequestInfo info;
  if (auto rejection = parseRequestHead(head_reader_, head, info)) {
    fail(*rejection);
    return;
  }
  if (info.upgrade) {
    state_ = State::kUpgraded;
    handler_.onUpgrade(head, info);
    return;
  }
  head_reader_.reset();  // the head is parsed: hold nothing while the body streams
  info_ = info;
  method_ = head.method;
  version_ = head.version;
  keep_alive_ = info.keep_alive;
  body_.start(info.framing, info.content_length);
  const bool has_body = body_.inProgress();
  // A request without body is complete with its head, also for a response the handler
  // finishes inside onRequestHead.
  request_done_ = !has_body;
  response_started_ = false;
  response_done_ = false;
  continue_sent_ = false;
  state_ = State::kBody;
  ++stats_.requests;
  handler_.onRequestHead(head, info);
  if (!has_body) {
    handler_.onRequestComplete();
    advance();
  }
}

void ServerCodec::onBodyBytes(std::span<const uint8_t> data) {
  if (!data.empty()) {
    handler_.onRequestBody(data);
  }
}

void ServerCodec::fail(const Rejection& rejection) {
  ++stats_.rejected;
  if (!writer_.inMessage()) {
    // No response under way: answer with the status, and close (RFC 9112 §11.2).
    ResponseHead head;
    head.status = rejection.status;
    OutgoingFraming framing;
    framing.framing = BodyFraming::kContentLength;
    framing.connection = "close";
    if (writer_.writeResponseHead(head, framing).ok()) {
      (void)writer_.writeEnd({});
    }
  }
  state_ = State::kFailed;
  handler_.onRequestError(rejection);
}

void ServerCodec::advance() {
  if (state_ == State::kFailed || state_ == State::kUpgraded) {
    return;
  }
  if (response_done_ && !request_done_) {
    if (state_ == State::kBody && !body_.inProgress()) {
      return;  // answered from the last body bytes: receive() completes the request next
    }
    // The answer came before the whole request: close after it rather than read on.
    state_ = State::kClosing;
    return;
  }
  if (request_done_ && !response_done_) {
    if (state_ != State::kClosing) {
      state_ = State::kResponding;
    }
    return;
  }
  if (request_done_ && response_done_) {
    if (!keep_alive_ || state_ == State::kClosing) {
      state_ = State::kClosing;
      return;
    }
    state_ = State::kHead;
    head_reader_.reset();
    request_done_ = false;
    response_started_ = false;
    response_done_ = false;
  }
}

void ServerCodec::timeout() {
  if (state_ == State::kFailed || state_ == State::kUpgraded) {
    return;
  }
  if (messageInProgress() && !response_started_) {
    // RFC 9110 §15.5.9: 408 tells the client the connection is going away unused.
    ++stats_.timeouts;
    ResponseHead head;
    head.status = 408;
    OutgoingFraming framing;
    framing.framing = BodyFraming::kContentLength;
    framing.connection = "close";
    if (writer_.writeResponseHead(head, framing).ok()) {
      (void)writer_.writeEnd({});
    }
    state_ = State::kFailed;
    return;
  }
  keep_alive_ = false;
  if (state_ == State::kResponding) {
    return;  // the request is complete; the response may still come, then close
  }
  // Idle between requests: close without a response (RFC 9112 §9.5). Mid-response: the owner
  // may finish it; nothing more is read.
  state_ = response_started_ && !response_done_ ? State::kClosing : State::kFailed;
}

Status ServerCodec::receiveEof() {
  switch (state_) {
    case State::kHead:
      if (head_reader_.started()) {
        fail(Rejection{400, "client closed in the middle of a request head"});
        return Error{EPROTO, "client closed in the middle of a request head"};
      }
      state_ = State::kFailed;  // nothing to answer: close
      return okStatus();
    case State::kBody:
      fail(Rejection{400, "client closed in the middle of a request body"});
      return Error{EPROTO, "client closed in the middle of a request body"};
    case State::kResponding:
      // A client that half-closes after its request still gets the response.
      keep_alive_ = false;
      return okStatus();
    case State::kUpgraded:
    case State::kClosing:
    case State::kFailed:
      return okStatus();
  }
  return okStatus();
}

bool ServerCodec::responseAllowed() const {
  return (state_ == State::kBody || state_ == State::kResponding ||
          (state_ == State::kClosing && response_started_)) &&
         !response_done_;
}

Status ServerCodec::sendContinue() {
  if (!responseAllowed() || response_started_ || !info_.expect_continue || continue_sent_) {
    return Error::invalid("100 Continue out of place");
  }
  continue_sent_ = true;
  return writer_.writeInterim(100, {});
}

Status ServerCodec::sendInterim(int status, const Headers& headers) {
  if (!responseAllowed() || response_started_ || version_ == Version::kHttp10) {
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    return Error::invalid("interim response out of place");
  }
  return writer_.writeInterim(status, headers);
}

Status ServerCodec::sendResponseHead(const ResponseHead& head,
                                     std::optional<uint64_t> body_length) {
  if (!responseAllowed() || response_started_) {
    return Error::invalid("no request to respond to");
  }
  if (head.status < 200 || head.status > 999) {
    return Error::invalid("final response status out of range");
  }
  OutgoingFraming framing;
  const bool no_body = method_ == "HEAD" || head.status == 204 || head.status == 304;
  if (no_body) {
    // RFC 9110 §8.6: HEAD and 304 may say how long the full body would be; 204 may not.
    framing.declare_length = body_length.has_value() && head.status != 204;
    framing.declared_length = body_length.value_or(0);
  } else if (body_length) {
    framing.framing = BodyFraming::kContentLength;
    framing.content_length = *body_length;
  } else if (version_ == Version::kHttp11) {
    framing.framing = BodyFraming::kChunked;
  } else {
    // RFC 9112 §7: no chunked to an HTTP/1.0 recipient; the close ends the body.
    framing.framing = BodyFraming::kUntilClose;
    keep_alive_ = false;
  }
  if (head.headers.hasToken("connection", "close") || state_ == State::kClosing) {
    keep_alive_ = false;
  }
  if (!keep_alive_) {
    framing.connection = "close";
  } else if (version_ == Version::kHttp10) {
    framing.connection = "keep-alive";  // RFC 9112 §9.3: 1.0 persistence is opt-in both ways
  }
  if (Status status = writer_.writeResponseHead(head, framing); !status.ok()) {
    return status;
  }
  response_started_ = true;
  return okStatus();
}

Status ServerCodec::sendBody(std::span<const uint8_t> data) {
  if (!response_started_ || response_done_ || state_ == State::kFailed) {
    return Error::invalid("no response body in progress");
  }
  return writer_.writeBody(data);
}

Status ServerCodec::sendEnd(const Headers& trailers) {
  if (!response_started_ || response_done_ || state_ == State::kFailed) {
    return Error::invalid("no response in progress");
  }
  if (Status status = writer_.writeEnd(trailers); !status.ok()) {
    return status;
  }
  response_done_ = true;
  ++stats_.responses;
  advance();
  return okStatus();
}

}  // namespace nodemesh::waypoint::http1
