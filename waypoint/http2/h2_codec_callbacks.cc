// The nghttp2 callbacks of H2Codec: nghttp2 events translated to H2CodecHandler events, and the
// per-frame flood accounting (empty DATA frames, premature resets).

#include <nghttp2/nghttp2.h>

#include <charconv>
#include <string>
#include <utility>

#include "hbone/nghttp2_output.h"
#include "hbone/nghttp2_util.h"
#include "waypoint/http2/h2_codec.h"
#include "waypoint/http2/h2_codec_internal.h"

namespace nodemesh::waypoint::http2 {

namespace {

using h2_internal::view;
using hbone::h2ErrorName;
using hbone::kH2EnhanceYourCalm;
using hbone::kH2NoError;

}  // namespace

int H2Codec::Callbacks::onBeginHeaders(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                       void* user_data) {
  H2Codec& c = self(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) {
    return 0;
  }
  if (c.role_ == Role::kServer && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    c.streams_.emplace(frame->hd.stream_id, std::make_unique<Stream>(frame->hd.stream_id));
  } else if (Stream* stream = c.findStream(frame->hd.stream_id)) {
    // The limit applies per header block (response, trailers).
    stream->fields.clear();
    stream->header_bytes = 0;
    stream->headers_too_large = false;
  }
  return 0;
}

int H2Codec::Callbacks::onHeader(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                 const uint8_t* name, size_t namelen, const uint8_t* value,
                                 size_t valuelen, uint8_t /*flags*/, void* user_data) {
  H2Codec& c = self(user_data);
  Stream* stream = c.findStream(frame->hd.stream_id);
  if (frame->hd.type != NGHTTP2_HEADERS || stream == nullptr) {
    return 0;
  }
  stream->header_bytes += namelen + valuelen + kHeaderFieldOverhead;
  if (stream->header_bytes > c.options_.max_header_list_bytes) {
    if (c.role_ == Role::kClient || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      // A response or trailers we will not hold (RFC 9113 §10.5.1): nghttp2 keeps decoding
      // the block, so HPACK stays in sync, and resets the stream with INTERNAL_ERROR.
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    stream->headers_too_large = true;  // a request: answered 431 once the block is complete
    stream->fields.clear();
  }
  if (!stream->headers_too_large) {
    stream->fields.push_back(
        HeaderField{std::string(view(name, namelen)), std::string(view(value, valuelen))});
  }
  return 0;
}

int H2Codec::Callbacks::onFrameRecv(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                    void* user_data) {
  H2Codec& c = self(user_data);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS: {
      if (frame->hd.type == NGHTTP2_DATA && frame->hd.length <= frame->data.padlen && !end_stream) {
        // CVE-2019-9518: frames that carry nothing cost us work and the peer next to nothing.
        if (++c.consecutive_empty_frames_ > c.options_.max_consecutive_empty_frames) {
          c.terminate(kH2EnhanceYourCalm,
                      "more than " + std::to_string(c.options_.max_consecutive_empty_frames) +
                          " consecutive empty DATA frames");
          return 0;
        }
      } else {
        c.consecutive_empty_frames_ = 0;
      }
      Stream* stream = c.findStream(frame->hd.stream_id);
      if (stream == nullptr) {
        return 0;
      }
      if (frame->hd.type == NGHTTP2_HEADERS) {
        c.finishHeaderBlock(*stream, frame->headers.cat == NGHTTP2_HCAT_REQUEST, end_stream);
      }
      if (end_stream && !stream->remote_ended) {
        stream->remote_ended = true;
        if (stream->visible) {
          c.handler_.onEndStream(stream->id);
        }
      }
      return 0;
    }
    case NGHTTP2_RST_STREAM:
      ++c.stats_.resets_received;
      if (Stream* stream = c.findStream(frame->hd.stream_id)) {
        stream->peer_reset = true;
      }
      return 0;
    case NGHTTP2_GOAWAY:
      if (c.role_ == Role::kClient) {
        c.goaway_last_stream_ = frame->goaway.last_stream_id;
      }
      c.handler_.onGoaway(frame->goaway.last_stream_id, frame->goaway.error_code);
      return 0;
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
        ++c.stats_.pings_acked;
        c.handler_.onPingAck(hbone::h2_common::pingOpaque(frame->ping));
      }
      return 0;
    default:
      return 0;
  }
}

void H2Codec::finishHeaderBlock(Stream& stream, bool request, bool end_stream) {
  HeaderList fields = std::move(stream.fields);
  stream.fields.clear();
  if (role_ == Role::kServer) {
    if (request) {
      finishRequest(stream, fields, end_stream);
    } else if (stream.visible) {
      handler_.onTrailers(stream.id, fields);  // nghttp2 checked: no pseudo, END_STREAM
    }
    return;
  }
  if (stream.final_received) {
    handler_.onTrailers(stream.id, fields);
    return;
  }
  ResponseHead head;
  for (HeaderField& field : fields) {
    if (field.name == ":status") {
      std::from_chars(field.value.data(), field.value.data() + field.value.size(), head.status);
    } else {
      head.headers.push_back(std::move(field));
    }
  }
  if (head.status >= 100 && head.status < 200) {
    handler_.onInformational(stream.id, head);  // RFC 9113 §8.1: the final response follows
    return;
  }
  stream.final_received = true;
  handler_.onResponseHeaders(stream.id, head, end_stream);
}

int H2Codec::Callbacks::onDataChunkRecv(nghttp2_session* session, uint8_t /*flags*/,
                                        int32_t stream_id, const uint8_t* data, size_t len,
                                        void* user_data) {
  H2Codec& c = self(user_data);
  Stream* stream = c.findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->rejected || stream->reset_requested) {
    // Nobody will write these bytes anywhere: give the window back at once.
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  stream->unconsumed += len;
  c.stats_.bytes_received += len;
  c.handler_.onData(stream_id, {data, len});
  return 0;
}

int H2Codec::Callbacks::onStreamClose(nghttp2_session* /*session*/, int32_t stream_id,
                                      uint32_t error_code, void* user_data) {
  self(user_data).closeStream(stream_id, error_code);
  return 0;
}

int H2Codec::Callbacks::onFrameSend(nghttp2_session* session, const nghttp2_frame* frame,
                                    void* user_data) {
  H2Codec& c = self(user_data);
  c.last_frame_was_data_ = frame->hd.type == NGHTTP2_DATA;
  Stream* stream = c.findStream(frame->hd.stream_id);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
      if (frame->hd.type == NGHTTP2_DATA) {
        c.stats_.bytes_sent += frame->hd.length;
      }
      if (stream == nullptr) {
        return 0;
      }
      stream->request_sent = true;
      stream->response_sent = true;
      if (c.role_ == Role::kServer && end_stream && !stream->remote_ended &&
          !stream->reset_requested) {
        // The response is complete while the request is not: tell the client to stop sending
        // without an error (RFC 9113 §8.1), which also frees the stream slot at once.
        stream->reset_requested = true;
        stream->reset_code = kH2NoError;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream->id, kH2NoError);
      }
      return 0;
    case NGHTTP2_RST_STREAM:
      ++c.stats_.resets_sent;
      if (c.role_ == Role::kServer && stream != nullptr && !stream->visible && !stream->rejected) {
        // nghttp2 refused a malformed request (RFC 9113 §8.1.1) before we saw all of it.
        stream->rejected = true;
        ++c.stats_.requests_rejected;
        c.handler_.onRequestRejected(stream->id, 0,
                                     "malformed request, reset with " +
                                         std::string(h2ErrorName(frame->rst_stream.error_code)) +
                                         (c.last_invalid_.empty() ? "" : ": " + c.last_invalid_));
      }
      return 0;
    case NGHTTP2_GOAWAY:
      if (frame->goaway.error_code != kH2NoError &&
          frame->goaway.error_code != c.owner_goaway_code_) {
        // nghttp2 found a connection error in what the peer sent.
        c.fail(hbone::h2_common::sentGoawayMessage(frame->goaway.error_code, c.last_invalid_));
      }
      return 0;
    default:
      return 0;
  }
}

int H2Codec::Callbacks::onFrameNotSend(nghttp2_session* session, const nghttp2_frame* frame,
                                       int /*lib_error_code*/, void* user_data) {
  H2Codec& c = self(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || c.role_ != Role::kClient) {
    return 0;
  }
  // A request that never went out (GOAWAY received, reset before it was sent). nghttp2 reports
  // on_stream_close only for streams it had opened.
  if (nghttp2_session_find_stream(session, frame->hd.stream_id) == nullptr) {
    const Stream* stream = c.findStream(frame->hd.stream_id);
    if (stream != nullptr) {
      c.closeStream(frame->hd.stream_id,
                    stream->reset_requested ? stream->reset_code : hbone::kH2RefusedStream);
    }
  }
  return 0;
}

int H2Codec::Callbacks::onInvalidFrameRecv(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                           int lib_error_code, void* user_data) {
  self(user_data).last_invalid_ = hbone::h2_common::invalidFrameMessage(*frame, lib_error_code);
  return 0;
}

int H2Codec::Callbacks::onError(nghttp2_session* /*session*/, int /*lib_error_code*/,
                                const char* msg, size_t len, void* user_data) {
  self(user_data).last_invalid_.assign(msg, len);
  return 0;
}

ssize_t H2Codec::Callbacks::readData(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                                     size_t length, uint32_t* data_flags,
                                     nghttp2_data_source* source, void* user_data) {
  H2Codec& c = self(user_data);
  auto* stream = static_cast<Stream*>(source->ptr);
  if (stream->queue.empty() && !stream->end_requested) {
    // Nothing to send yet: nghttp2 parks the stream until resumeIfDeferred().
    stream->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  const size_t n = hbone::h2_common::readSendQueue(*stream, {buf, length}, data_flags,
                                                   c.options_.max_send_queue_bytes, c.writable_);
  c.total_queued_ -= n;
  if (stream->queue.empty() && stream->end_requested) {
    if (stream->trailers_pending) {
      stream->trailers_pending = false;
      // The trailers carry END_STREAM instead of this DATA frame (RFC 9113 §8.1).
      const std::vector<nghttp2_nv> nva = h2_internal::toNv(stream->trailers);
      if (nghttp2_submit_trailer(session, stream_id, nva.data(), nva.size()) == 0) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      stream->trailers.clear();
    }
  }
  return static_cast<ssize_t>(n);
}

}  // namespace nodemesh::waypoint::http2
