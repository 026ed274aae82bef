// Frames out of nghttp2 and bytes into its data provider, for both nghttp2 codecs.

#include "hbone/nghttp2_output.h"

#include <array>

namespace nodemesh::hbone::h2_common {

int pullFrames(nghttp2_session* session, OutputQueue& out, const OutputBatching& batching,
               bool for_receive, const bool& last_frame_was_data) {
  while (true) {
    if (out.size() >= batching.batch_bytes &&
        (!for_receive || last_frame_was_data || out.size() >= batching.max_pending_bytes)) {
      return 0;
    }
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n < 0) {
      return static_cast<int>(n);
    }
    if (n == 0) {
      return 0;
    }
    out.append({data, static_cast<size_t>(n)});
  }
}

void appendGoaway(OutputQueue& out, int32_t last_stream, uint32_t error_code) {
  constexpr uint8_t kGoawayFrameType = 0x7;
  const auto last = static_cast<uint32_t>(last_stream) & 0x7fffffffU;
  const auto byte = [](uint32_t v, int shift) { return static_cast<uint8_t>(v >> shift); };
  // Length 8, type, no flags, stream 0; then the last stream id and the error code.
  const std::array<uint8_t, 17> frame = {0,
                                         0,
                                         8,
                                         kGoawayFrameType,
                                         0,
                                         0,
                                         0,
                                         0,
                                         0,
                                         byte(last, 24),
                                         byte(last, 16),
                                         byte(last, 8),
                                         byte(last, 0),
                                         byte(error_code, 24),
                                         byte(error_code, 16),
                                         byte(error_code, 8),
                                         byte(error_code, 0)};
  out.append(frame);
}

size_t readSendQueue(StreamBase& stream, std::span<uint8_t> buf, uint32_t* data_flags,
                     size_t max_queue_bytes, std::vector<int32_t>& writable) {
  const size_t n = stream.queue.read(buf);
  if (stream.queue.empty() && stream.end_requested) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  if (stream.write_blocked && stream.queue.size() <= max_queue_bytes / 2) {
    stream.write_blocked = false;
    writable.push_back(stream.id);
  }
  return n;
}

}  // namespace nodemesh::hbone::h2_common
