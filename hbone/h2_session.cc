#include "hbone/h2_session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <limits>
#include <utility>

namespace nodemesh::hbone {

namespace {

constexpr std::string_view kConnectMethod = "CONNECT";
constexpr uint32_t kMaxWindow = std::numeric_limits<int32_t>::max();  // RFC 9113 §6.9.1
constexpr uint32_t kDefaultWindow = 65535;
constexpr size_t kHeaderFieldOverhead = 32;  // RFC 9113 §6.5.2 / RFC 7541 §4.1

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* cbs) const { nghttp2_session_callbacks_del(cbs); }
};
struct OptionDeleter {
  void operator()(nghttp2_option* option) const { nghttp2_option_del(option); }
};

std::string_view view(const uint8_t* data, size_t len) {
  return {reinterpret_cast<const char*>(data), len};
}

const uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

nghttp2_nv makeNv(std::string_view name, std::string_view value) {
  // nghttp2 copies names and values on submit, so views of temporaries are fine.
  return nghttp2_nv{const_cast<uint8_t*>(bytes(name)), const_cast<uint8_t*>(bytes(value)),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

size_t fieldSize(std::string_view name, std::string_view value) {
  return name.size() + value.size() + kHeaderFieldOverhead;
}

// Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2).
bool isConnectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade" || name == "te";
}

void appendJoined(std::string& field, std::string_view value, std::string_view separator) {
  if (!field.empty()) {
    field += separator;
  }
  field += value;
}

std::string streamMessage(StreamId id, std::string_view what) {
  return "stream " + std::to_string(id) + ": " + std::string(what);
}

}  // namespace

std::string_view h2ErrorName(uint32_t code) {
  return nghttp2_http2_strerror(code);
}

struct H2Session::Stream {
  explicit Stream(StreamId stream_id) : id(stream_id) {}

  StreamId id;
  bool visible = false;   // the owner knows it (client: opened; server: given to onRequest)
  bool rejected = false;  // answered with a non-200: no tunnel, no more bytes either way
  bool responded = false;
  bool can_send = false;  // tunnel up: the data provider may produce DATA
  bool deferred = false;  // the data provider returned NGHTTP2_ERR_DEFERRED
  bool end_requested = false;
  bool remote_ended = false;
  bool reset_requested = false;
  bool write_blocked = false;  // send() came up short: onWritable owed
  uint32_t reset_code = kH2NoError;
  uint64_t unconsumed = 0;
  ByteQueue queue;

  // The header block being received (request on the server, response on the client).
  size_t header_bytes = 0;
  bool headers_too_large = false;
  int status = 0;
  std::string method;
  bool has_protocol = false;
  bool has_authority = false;
  ConnectRequest request;
};

// nghttp2 calls these with the session as user_data; they translate to H2Handler events.
struct H2Session::Callbacks {
  static H2Session& self(void* user_data) { return *static_cast<H2Session*>(user_data); }

  static int onBeginHeaders(nghttp2_session* /*session*/, const nghttp2_frame* frame,
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

  static int onHeader(nghttp2_session* /*session*/, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t /*flags*/,
                      void* user_data) {
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

  static int onFrameRecv(nghttp2_session* /*session*/, const nghttp2_frame* frame,
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
        return 0;
      case NGHTTP2_GOAWAY:
        s.handler_.onGoaway(frame->goaway.last_stream_id, frame->goaway.error_code);
        return 0;
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
          uint64_t opaque = 0;
          for (uint8_t b : frame->ping.opaque_data) {
            opaque = (opaque << 8) | b;
          }
          ++s.stats_.pings_acked;
          s.handler_.onPingAck(opaque);
        }
        return 0;
      default:
        return 0;
    }
  }

  static int onDataChunkRecv(nghttp2_session* session, uint8_t /*flags*/, int32_t stream_id,
                             const uint8_t* data, size_t len, void* user_data) {
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

  static int onStreamClose(nghttp2_session* /*session*/, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    self(user_data).closeStream(stream_id, error_code);
    return 0;
  }

  static int onFrameSend(nghttp2_session* /*session*/, const nghttp2_frame* frame,
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
          std::string message = "HTTP/2 connection error, sent GOAWAY " +
                                std::string(h2ErrorName(frame->goaway.error_code));
          if (!s.last_invalid_.empty()) {
            message += ": " + s.last_invalid_;
          }
          s.fail(std::move(message));
        }
        return 0;
      default:
        return 0;
    }
  }

  static int onFrameNotSend(nghttp2_session* session, const nghttp2_frame* frame,
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

  static int onInvalidFrameRecv(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                                int lib_error_code, void* user_data) {
    self(user_data).last_invalid_ = "invalid frame (type " + std::to_string(frame->hd.type) +
                                    ", stream " + std::to_string(frame->hd.stream_id) +
                                    "): " + nghttp2_strerror(lib_error_code);
    return 0;
  }

  static int onError(nghttp2_session* /*session*/, int /*lib_error_code*/, const char* msg,
                     size_t len, void* user_data) {
    self(user_data).last_invalid_.assign(msg, len);
    return 0;
  }

  static ssize_t readData(nghttp2_session* /*session*/, int32_t /*stream_id*/, uint8_t* buf,
                          size_t length, uint32_t* data_flags, nghttp2_data_source* source,
                          void* user_data) {
    H2Session& s = self(user_data);
    auto* stream = static_cast<Stream*>(source->ptr);
    if (!stream->can_send || (stream->queue.empty() && !stream->end_requested)) {
      // Nothing to send yet: nghttp2 parks the stream until resumeIfDeferred().
      stream->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    const size_t n = stream->queue.read({buf, length});
    if (stream->queue.empty() && stream->end_requested) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    if (stream->write_blocked && stream->queue.size() <= s.options_.max_send_queue_bytes / 2) {
      stream->write_blocked = false;
      s.writable_.push_back(stream->id);
    }
    return static_cast<ssize_t>(n);
  }
};

H2Session::H2Session(H2Role role, H2Handler& handler, const H2Options& options)
    : role_(role), handler_(handler), options_(options), out_(options.output_batch_bytes) {}

H2Session::~H2Session() {
  nghttp2_session_del(session_);
}

Result<std::unique_ptr<H2Session>> H2Session::create(H2Role role, H2Handler& handler,
                                                     const H2Options& options) {
  if (options.initial_stream_window > kMaxWindow || options.connection_window > kMaxWindow ||
      options.connection_window < kDefaultWindow || options.max_send_queue_bytes == 0 ||
      options.output_batch_bytes == 0) {
    return Error::invalid("HTTP/2 options out of range");
  }
  // The constructor is private (the session must stay at one address: nghttp2 holds `this`),
  // so make_unique cannot reach it.
  std::unique_ptr<H2Session> session(new H2Session(role, handler, options));
  Status status = session->init();
  if (!status.ok()) {
    return status.error();
  }
  return session;
}

Status H2Session::init() {
  nghttp2_session_callbacks* raw_cbs = nullptr;
  if (nghttp2_session_callbacks_new(&raw_cbs) != 0) {
    return Error{ENOMEM, "nghttp2_session_callbacks_new"};
  }
  std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cbs(raw_cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs.get(), &Callbacks::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs.get(), &Callbacks::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs.get(), &Callbacks::onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs.get(), &Callbacks::onDataChunkRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs.get(), &Callbacks::onStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs.get(), &Callbacks::onFrameSend);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs.get(), &Callbacks::onFrameNotSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs.get(),
                                                               &Callbacks::onInvalidFrameRecv);
  nghttp2_session_callbacks_set_error_callback2(cbs.get(), &Callbacks::onError);

  nghttp2_option* raw_option = nullptr;
  if (nghttp2_option_new(&raw_option) != 0) {
    return Error{ENOMEM, "nghttp2_option_new"};
  }
  std::unique_ptr<nghttp2_option, OptionDeleter> option(raw_option);
  // Windows reopen only through consumed(), i.e. once the bytes were written on.
  nghttp2_option_set_no_auto_window_update(option.get(), 1);
  // Until the peer's SETTINGS arrive, assume our own limit rather than nghttp2's default.
  nghttp2_option_set_peer_max_concurrent_streams(option.get(), options_.max_concurrent_streams);
  nghttp2_option_set_max_send_header_block_length(option.get(), options_.max_header_list_bytes);

  const int rv = role_ == H2Role::kClient
                     ? nghttp2_session_client_new2(&session_, cbs.get(), this, option.get())
                     : nghttp2_session_server_new2(&session_, cbs.get(), this, option.get());
  if (rv != 0) {
    return Error{ENOMEM, std::string("nghttp2 session: ") + nghttp2_strerror(rv)};
  }

  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_list_bytes},
  };
  if (role_ == H2Role::kServer) {
    settings.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams});
  }
  if (int err =
          nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
      err != 0) {
    return Error::invalid(std::string("nghttp2_submit_settings: ") + nghttp2_strerror(err));
  }
  // SETTINGS cannot change the connection window; a WINDOW_UPDATE on stream 0 does.
  if (int err = nghttp2_session_set_local_window_size(
          session_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(options_.connection_window));
      err != 0) {
    return Error::invalid(std::string("connection window: ") + nghttp2_strerror(err));
  }
  return okStatus();
}

H2Session::Stream* H2Session::findStream(StreamId id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

const H2Session::Stream* H2Session::findStream(StreamId id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Session::fail(std::string message) {
  if (!failed_) {
    failed_ = true;
    error_ = std::move(message);
  }
}

Error H2Session::sessionError() const {
  return Error{EPROTO, error_.empty() ? "HTTP/2 session closed" : error_};
}

// ---- transport side ----

Status H2Session::receive(std::span<const uint8_t> data) {
  if (depth_ > 0) {
    return Error{EDEADLK, "H2Session::receive() called from a handler callback"};
  }
  if (dead_ || failed_) {
    return sessionError();
  }
  ++depth_;
  const ssize_t rv = nghttp2_session_mem_recv(session_, data.data(), data.size());
  --depth_;
  if (rv < 0) {
    // Fatal for nghttp2 (bad client preface, flood, callback failure): the session must not
    // be used any more; whatever is already in out_ may still be written.
    std::string message = std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(rv));
    if (!last_invalid_.empty()) {
      message += ": " + last_invalid_;
    }
    fail(std::move(message));
    dead_ = true;
    return sessionError();
  }
  fillOutput(/*for_receive=*/true);
  if (failed_) {
    return sessionError();
  }
  return okStatus();
}

void H2Session::fillOutput(bool for_receive) {
  if (dead_ || depth_ > 0) {
    return;
  }
  ++depth_;
  last_frame_was_data_ = false;
  while (true) {
    if (out_.size() >= options_.output_batch_bytes && (!for_receive || last_frame_was_data_)) {
      break;
    }
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(std::string("HTTP/2 send: ") + nghttp2_strerror(static_cast<int>(n)));
      dead_ = true;
      break;
    }
    if (n == 0) {
      break;
    }
    out_.append({data, static_cast<size_t>(n)});
  }
  --depth_;
  // Outside nghttp2 now, so the owner may send() from onWritable.
  std::vector<StreamId> writable;
  writable.swap(writable_);
  for (StreamId id : writable) {
    const Stream* stream = findStream(id);
    if (stream != nullptr && !stream->end_requested && !stream->reset_requested) {
      handler_.onWritable(id);
    }
  }
}

std::span<const uint8_t> H2Session::pendingOutput() {
  if (out_.size() < options_.output_batch_bytes) {
    fillOutput(/*for_receive=*/false);
  }
  return out_.front();
}

void H2Session::consumeOutput(size_t n) {
  out_.drop(n);
}

bool H2Session::wantsWrite() const {
  return !out_.empty() || (!dead_ && nghttp2_session_want_write(session_) != 0);
}

bool H2Session::wantsRead() const {
  return !dead_ && !failed_ && nghttp2_session_want_read(session_) != 0;
}

bool H2Session::isClosed() const {
  if (!out_.empty()) {
    return false;
  }
  return dead_ ||
         (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0);
}

// ---- streams ----

Result<StreamId> H2Session::openConnect(std::string_view authority, const ConnectHeaders& headers) {
  if (role_ != H2Role::kClient) {
    return Error::invalid("openConnect() on a server session");
  }
  if (dead_ || failed_ || goaway_sent_ || nghttp2_session_check_request_allowed(session_) == 0) {
    return Error{ESHUTDOWN, "HTTP/2 connection is going away"};
  }
  if (availableStreams() == 0) {
    return Error{EAGAIN, "HTTP/2 connection has no stream left (max concurrent streams)"};
  }
  if (authority.empty() || nghttp2_check_authority(bytes(authority), authority.size()) == 0) {
    return Error::invalid("invalid CONNECT authority '" + std::string(authority) + "'");
  }

  std::string forwarded;
  if (headers.forwarded_for) {
    // RFC 7239 §6: an address with a port (and any IPv6 address) must be a quoted string.
    forwarded = "for=\"" + headers.forwarded_for->toString() + "\"";
  }
  std::vector<nghttp2_nv> nva;
  nva.reserve(5 + headers.extra.size());
  nva.push_back(makeNv(":method", kConnectMethod));
  nva.push_back(makeNv(":authority", authority));
  if (!forwarded.empty()) {
    nva.push_back(makeNv("forwarded", forwarded));
  }
  if (!headers.baggage.empty()) {
    nva.push_back(makeNv("baggage", headers.baggage));
  }
  if (!headers.traceparent.empty()) {
    nva.push_back(makeNv("traceparent", headers.traceparent));
  }
  for (const Header& h : headers.extra) {
    // nghttp2 sends what it is given; a peer would reset a stream with a bad field.
    if (h.name.empty() || h.name[0] == ':' || isConnectionSpecific(h.name) ||
        nghttp2_check_header_name(bytes(h.name), h.name.size()) == 0 ||
        nghttp2_check_header_value_rfc9113(bytes(h.value), h.value.size()) == 0) {
      return Error::invalid("invalid CONNECT header '" + h.name + "'");
    }
    nva.push_back(makeNv(h.name, h.value));
  }
  size_t list_size = 0;
  for (const nghttp2_nv& nv : nva) {
    list_size += nv.namelen + nv.valuelen + kHeaderFieldOverhead;
  }
  const size_t limit = std::min<size_t>(
      options_.max_header_list_bytes,
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE));
  if (list_size > limit) {
    return Error{EMSGSIZE, "CONNECT header list of " + std::to_string(list_size) +
                               " bytes exceeds " + std::to_string(limit)};
  }

  auto stream = std::make_unique<Stream>(0);
  nghttp2_data_provider provider{};
  provider.source.ptr = stream.get();
  provider.read_callback = &Callbacks::readData;
  const int32_t id =
      nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &provider, nullptr);
  if (id < 0) {
    return Error{EPROTO, std::string("nghttp2_submit_request: ") + nghttp2_strerror(id)};
  }
  stream->id = id;
  stream->visible = true;
  streams_.emplace(id, std::move(stream));
  ++stats_.streams_opened;
  ++stats_.streams_active;
  return id;
}

uint32_t H2Session::availableStreams() const {
  if (role_ != H2Role::kClient || dead_ || failed_ || goaway_sent_ ||
      nghttp2_session_check_request_allowed(session_) == 0) {
    return 0;
  }
  const uint32_t limit = std::min(
      options_.max_concurrent_streams,
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  return limit > streams_.size() ? limit - static_cast<uint32_t>(streams_.size()) : 0;
}

void H2Session::finishRequestHeaders(Stream& stream) {
  if (stream.headers_too_large) {
    ++stats_.requests_rejected;
    submitResponse(stream, kStatusHeaderFieldsTooLarge);
    handler_.onRequestRejected(stream.id, kStatusHeaderFieldsTooLarge,
                               "header block over the limit");
    return;
  }
  // Only classic CONNECT to an ip:port (RFC 9113 §8.5); extended CONNECT (:protocol) and
  // every other method get 400, as ztunnel answers them.
  if (stream.method != kConnectMethod || stream.has_protocol || !stream.has_authority) {
    ++stats_.requests_rejected;
    submitResponse(stream, kStatusBadRequest);
    handler_.onRequestRejected(stream.id, kStatusBadRequest,
                               "not a CONNECT (method '" + stream.method + "')");
    return;
  }
  auto target = SocketAddress::parse(stream.request.authority);
  if (!target.ok()) {
    ++stats_.requests_rejected;
    submitResponse(stream, kStatusBadRequest);
    handler_.onRequestRejected(stream.id, kStatusBadRequest,
                               "authority '" + stream.request.authority + "' is not ip:port");
    return;
  }
  stream.request.target = *target;
  stream.visible = true;
  ++stats_.streams_opened;
  ++stats_.streams_active;
  handler_.onRequest(stream.id, stream.request);
}

void H2Session::submitResponse(Stream& stream, int status) {
  const std::string status_text = std::to_string(status);
  const nghttp2_nv nv = makeNv(":status", status_text);
  stream.responded = true;
  int rv = 0;
  if (status == kStatusOk) {
    stream.can_send = true;
    nghttp2_data_provider provider{};
    provider.source.ptr = &stream;
    provider.read_callback = &Callbacks::readData;
    rv = nghttp2_submit_response(session_, stream.id, &nv, 1, &provider);
  } else {
    // No data provider: the HEADERS frame carries END_STREAM.
    stream.rejected = true;
    stream.queue.clear();
    rv = nghttp2_submit_response(session_, stream.id, &nv, 1, nullptr);
  }
  if (rv != 0) {
    // Only fails when the stream is already gone or closing; a reset tells the peer instead.
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, kH2InternalError);
  }
}

Status H2Session::respond(StreamId stream_id, int status) {
  if (role_ != H2Role::kServer) {
    return Error::invalid("respond() on a client session");
  }
  if (status < 200 || status > 599) {
    return Error::invalid("respond(): not a final status: " + std::to_string(status));
  }
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->reset_requested) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->responded) {
    return Error::invalid(streamMessage(stream_id, "already answered"));
  }
  submitResponse(*stream, status);
  return okStatus();
}

void H2Session::resumeIfDeferred(Stream& stream) {
  if (stream.deferred && stream.can_send && !dead_) {
    stream.deferred = false;
    // INVALID_ARGUMENT only means nghttp2 had already taken the stream back; nothing to do.
    nghttp2_session_resume_data(session_, stream.id);
  }
}

Result<size_t> H2Session::send(StreamId stream_id, std::span<const uint8_t> data) {
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->reset_requested || stream->rejected) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->end_requested) {
    return Error{EPIPE, streamMessage(stream_id, "already ended")};
  }
  const size_t room = options_.max_send_queue_bytes - stream->queue.size();
  const size_t n = std::min(room, data.size());
  if (n < data.size()) {
    stream->write_blocked = true;
  }
  if (n > 0) {
    stream->queue.append(data.first(n));
    resumeIfDeferred(*stream);
  }
  return n;
}

Status H2Session::endStream(StreamId stream_id) {
  Stream* stream = findStream(stream_id);
  if (stream == nullptr || !stream->visible || stream->reset_requested || stream->rejected) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (!stream->end_requested) {
    stream->end_requested = true;
    resumeIfDeferred(*stream);
  }
  return okStatus();
}

Status H2Session::consumed(StreamId stream_id, size_t n) {
  if (n == 0) {
    return okStatus();
  }
  // Never give back more than was delivered: an oversized WINDOW_UPDATE would let the peer
  // overrun the bound (or be a FLOW_CONTROL_ERROR).
  uint64_t* unconsumed = nullptr;
  auto closed = closed_unconsumed_.find(stream_id);
  if (Stream* stream = findStream(stream_id)) {
    unconsumed = &stream->unconsumed;
  } else if (closed != closed_unconsumed_.end()) {
    unconsumed = &closed->second;
  }
  if (unconsumed == nullptr || n > *unconsumed) {
    return Error::invalid(streamMessage(stream_id, "consumed() more than was delivered"));
  }
  *unconsumed -= n;
  if (closed != closed_unconsumed_.end() && closed->second == 0) {
    closed_unconsumed_.erase(closed);
  }
  if (dead_) {
    return okStatus();
  }
  // Also valid for closed streams: nghttp2 then reopens only the connection window.
  if (int rv = nghttp2_session_consume(session_, stream_id, n); rv != 0) {
    return Error{EPROTO, std::string("nghttp2_session_consume: ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

Status H2Session::resetStream(StreamId stream_id, uint32_t error_code) {
  Stream* stream = findStream(stream_id);
  if (stream == nullptr) {
    return Error{EPIPE, streamMessage(stream_id, "closed")};
  }
  if (stream->reset_requested || dead_) {
    return okStatus();
  }
  stream->reset_requested = true;
  stream->reset_code = error_code;
  stream->queue.clear();
  if (int rv = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
      rv != 0) {
    return Error{EPROTO, std::string("nghttp2_submit_rst_stream: ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

void H2Session::closeStream(StreamId id, uint32_t error_code) {
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    return;
  }
  // Detach first: the owner's callback may look the stream up (and must find it closed).
  std::unique_ptr<Stream> stream = std::move(it->second);
  streams_.erase(it);
  if (stream->unconsumed > 0) {
    closed_unconsumed_[id] = stream->unconsumed;
  }
  if (stream->visible) {
    --stats_.streams_active;
    handler_.onStreamClosed(id, error_code);
  }
}

size_t H2Session::queuedBytes(StreamId stream_id) const {
  const Stream* stream = findStream(stream_id);
  return stream == nullptr ? 0 : stream->queue.size();
}

// ---- connection ----

Result<uint64_t> H2Session::ping() {
  if (dead_ || failed_) {
    return sessionError();
  }
  const uint64_t opaque = ++next_ping_;
  std::array<uint8_t, 8> payload{};
  for (size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<uint8_t>(opaque >> (8 * (payload.size() - 1 - i)));
  }
  if (int rv = nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, payload.data()); rv != 0) {
    return Error{EPROTO, std::string("nghttp2_submit_ping: ") + nghttp2_strerror(rv)};
  }
  return opaque;
}

Status H2Session::goaway(uint32_t error_code) {
  if (dead_ || failed_) {
    return sessionError();
  }
  if (goaway_sent_) {
    return okStatus();
  }
  goaway_sent_ = true;
  owner_goaway_code_ = error_code;
  // NO_ERROR: graceful, the active streams finish. Otherwise nghttp2 stops reading once the
  // GOAWAY is out.
  const int rv = error_code == kH2NoError
                     ? nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                                             nghttp2_session_get_last_proc_stream_id(session_),
                                             error_code, nullptr, 0)
                     : nghttp2_session_terminate_session(session_, error_code);
  if (rv != 0) {
    return Error{EPROTO, std::string("GOAWAY: ") + nghttp2_strerror(rv)};
  }
  return okStatus();
}

}  // namespace nodemesh::hbone
