// The nghttp2 callbacks of H2Session: nghttp2 events translated to H2Handler events.

#include <nghttp2/nghttp2.h>

#include <charconv>
#include <string>
#include <utility>

#include "hbone/h2_session.h"
#include "hbone/h2_session_internal.h"
#include "hbone/nghttp2_output.h"
#include "hbone/nghttp2_util.h"

namespace nodemesh::hbone {

namespace {

using h2_common::view;
using h2_internal::kHeaderFieldOverhead;

size_t fieldSize(std::string_view name, std::string_view value) {
  return name.size() + value.size() + kHeaderFieldOverhead;
}

void appendJoined(std::string& field, std::string_view value, std::string_view separator) {
  if (!field.empty()) {
    field += separator;
  }
  field += value;
}

}  // namespace

int H2Session::Callbacks::onBeginHeaders(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                         void* user_data) {
  H2Session& s = self(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) {
    return 0;
  }
  if (s.role_ == H2Role::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    s.streams_.emplace(frame->hd.stream_id, std::make_unique<Stream>(frame->hd.stream_id));
  } else if (Stream* stream = s.findStream(frame->hd.stream_id)) {
    stream->header_bytes = 0;  // the limit applies per header block (response, trailers)
  }
  return 0;
}

int H2Session::Callbacks::onHeader(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                   const uint8_t* name, size_t namelen, const uint8_t* value,
                                   size_t valuelen, uint8_t /*flags*/, void* user_data) {
  H2Session& s = self(user_data);
  Stream* stream = s.findStream(frame->hd.stream_id);
  if (frame->hd.type != NGHTTP2_HEADERS || stream == nullptr) {
    return 0;
  }
  const std::string_view n = view(name, namelen);
  const std::string_view v = view(value, valuelen);
  stream->header_bytes += fieldSize(n, v);
  if (stream->header_bytes > s.options_.max_header_list_bytes) {
    if (s.role_ == H2Role::kClient) {
      // RFC 9113 §10.5.1: a client may discard a response it cannot process. nghttp2 keeps
      // decoding the block (HPACK state stays in sync) and resets with INTERNAL_ERROR.
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    stream->headers_too_large = true;  // answered 431 once the block is complete
  }
  if (stream->headers_too_large) {
    return 0;
  }
  if (s.role_ == H2Role::kClient) {
    if (n == ":status") {
      int status = 0;
      std::from_chars(v.data(), v.data() + v.size(), status);
      stream->status = status;
    }
    return 0;
  }
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;  // trailers: nothing in them matters to a tunnel
  }
  ConnectRequest& req = stream->request;
  if (n == ":method") {
    stream->method = v;
  } else if (n == ":authority") {
    stream->has_authority = true;
    req.authority = v;
  } else if (n == ":protocol") {
    stream->has_protocol = true;
  } else if (!n.empty() && n[0] == ':') {
    // :scheme, :path: nghttp2 already refused them on CONNECT (RFC 9113 §8.5).
  } else if (n == "forwarded") {
    appendJoined(req.forwarded, v, ", ");
  } else if (n == "baggage") {
    appendJoined(req.baggage, v, ",");
  } else if (n == "traceparent") {
    req.traceparent = v;
  } else {
    req.other_headers.push_back(Header{std::string(n), std::string(v)});
  }
  return 0;
}

int H2Session::Callbacks::onFrameRecv(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                      void* user_data) {
  H2Session& s = self(user_data);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS: {
      Stream* stream = s.findStream(frame->hd.stream_id);
      if (stream == nullptr) {
        return 0;
      }
      if (frame->hd.type == NGHTTP2_HEADERS) {
        if (s.role_ == H2Role::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          s.finishRequestHeaders(*stream);
        } else if (s.role_ == H2Role::kClient && !stream->responded &&
                   (stream->status < 100 || stream->status >= 200)) {
          // The final response (1xx interim responses are skipped).
          stream->responded = true;
          if (stream->status == kStatusOk) {
            stream->can_send = true;
            s.resumeIfDeferred(*stream);
          } else {
            stream->rejected = true;
            stream->queue.clear();
          }
          s.handler_.onResponse(stream->id, stream->status);
        }
      }
      if (end_stream && !stream->remote_ended) {
        stream->remote_ended = true;
        if (stream->visible) {
          s.handler_.onEndStream(stream->id);
        }
      }
      return 0;
    }
    case NGHTTP2_RST_STREAM:
      ++s.stats_.resets_received;
      s.onPeerReset(frame->hd.stream_id);
      return 0;
    case NGHTTP2_GOAWAY:
      s.handler_.onGoaway(frame->goaway.last_stream_id, frame->goaway.error_code);
      return 0;
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
        ++s.stats_.pings_acked;
        s.handler_.onPingAck(h2_common::pingOpaque(frame->ping));
      }
      return 0;
    default:
      return 0;
  }
}

int H2Session::Callbacks::onDataChunkRecv(nghttp2_session* session, uint8_t /*flags*/,
                                          int32_t stream_id, const uint8_t* data, size_t len,
                                          void* user_data) {
  H2Session& s = self(user_data);
  Stream* stream = s.findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->rejected || stream->reset_requested) {
    // Nobody will write these bytes anywhere: give the window back at once.
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  stream->unconsumed += len;
  s.stats_.bytes_received += len;
  s.handler_.onData(stream_id, {data, len});
  return 0;
}

int H2Session::Callbacks::onStreamClose(nghttp2_session* /*session*/, int32_t stream_id,
                                        uint32_t error_code, void* user_data) {
  self(user_data).closeStream(stream_id, error_code);
  return 0;
}

int H2Session::Callbacks::onFrameSend(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                      void* user_data) {
  H2Session& s = self(user_data);
  s.last_frame_was_data_ = frame->hd.type == NGHTTP2_DATA;
  switch (frame->hd.type) {
    case NGHTTP2_DATA:
      s.stats_.bytes_sent += frame->hd.length;
      return 0;
    case NGHTTP2_HEADERS: {
      Stream* stream = s.findStream(frame->hd.stream_id);
      if (s.role_ == H2Role::kServer && stream != nullptr && stream->rejected &&
          !stream->remote_ended && !stream->reset_requested) {
        // The error response is complete; tell the client to stop sending without an error
        // (RFC 9113 §8.1), which also frees the stream slot at once.
        stream->reset_requested = true;
        nghttp2_submit_rst_stream(s.session_, NGHTTP2_FLAG_NONE, stream->id, kH2NoError);
      }
      return 0;
    }
    case NGHTTP2_RST_STREAM:
      ++s.stats_.resets_sent;
      return 0;
    case NGHTTP2_GOAWAY:
      if (frame->goaway.error_code != kH2NoError &&
          frame->goaway.error_code != s.owner_goaway_code_) {
        // nghttp2 found a connection error in what the peer sent.
        s.fail(h2_common::sentGoawayMessage(frame->goaway.error_code, s.last_invalid_));
      }
      return 0;
    default:
      return 0;
  }
}

int H2Session::Callbacks::onFrameNotSend(nghttp2_session* session, const nghttp2_frame* frame,
                                         int /*lib_error_code*/, void* user_data) {
  H2Session& s = self(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || s.role_ != H2Role::kClient) {
    return 0;
  }
  // A request that never went out (GOAWAY received, session closing, reset before it was
  // sent). nghttp2 reports on_stream_close only for streams it had opened.
  if (nghttp2_session_find_stream(session, frame->hd.stream_id) == nullptr) {
    const Stream* stream = s.findStream(frame->hd.stream_id);
    if (stream != nullptr) {
      s.closeStream(frame->hd.stream_id,
                    stream->reset_requested ? stream->reset_code : kH2RefusedStream);
    }
  }
  return 0;
}

int H2Session::Callbacks::onInvalidFrameRecv(nghttp2_session* /*session*/,
                                             const nghttp2_frame* frame, int lib_error_code,
                                             void* user_data) {
  self(user_data).last_invalid_ = h2_common::invalidFrameMessage(*frame, lib_error_code);
  return 0;
}

int H2Session::Callbacks::onError(nghttp2_session* /*session*/, int /*lib_error_code*/,
                                  const char* msg, size_t len, void* user_data) {
  self(user_data).last_invalid_.assign(msg, len);
  return 0;
}

ssize_t H2Session::Callbacks::readData(nghttp2_session* /*session*/, int32_t /*stream_id*/,
                                       uint8_t* buf, size_t length, uint32_t* data_flags,
                                       nghttp2_data_source* source, void* user_data) {
  H2Session& s = self(user_data);
  auto* stream = static_cast<Stream*>(source->ptr);
  if (!stream->can_send || (stream->queue.empty() && !stream->end_requested)) {
    // Nothing to send yet: nghttp2 parks the stream until resumeIfDeferred().
    stream->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(h2_common::readSendQueue(
      *stream, {buf, length}, data_flags, s.options_.max_send_queue_bytes, s.writable_));
}

}  // namespace nodemesh::hbone
