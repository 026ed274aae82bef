// H2Session's core: creating the nghttp2 session, the transport side (bytes in, frames out)
// and the connection (PING, GOAWAY).

#include "hbone/h2_session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <limits>
#include <utility>

#include "hbone/h2_session_internal.h"

namespace nodemesh::hbone {

namespace {

constexpr uint32_t kMaxWindow = std::numeric_limits<int32_t>::max();  // RFC 9113 §6.9.1
constexpr uint32_t kDefaultWindow = 65535;

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* cbs) const { nghttp2_session_callbacks_del(cbs); }
};
struct OptionDeleter {
  void operator()(nghttp2_option* option) const { nghttp2_option_del(option); }
};

}  // namespace

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
