#pragma once

// The output side both nghttp2 codecs share (hbone::H2Session, the waypoint's H2Codec): frames
// pulled from nghttp2 into the OutputQueue in batches, and the send queue read by the data
// provider.

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "hbone/byte_queue.h"
#include "hbone/nghttp2_util.h"

namespace nodemesh::hbone::h2_common {

struct OutputBatching {
  size_t batch_bytes = 0;  // stop pulling once out holds this much ...
  // ... except after a receive: then keep going to the next DATA frame (a connection-error
  // GOAWAY queued by the last receive() is seen at once), but not past this.
  size_t max_pending_bytes = std::numeric_limits<size_t>::max();
};

// Moves frames from nghttp2 into `out`. `last_frame_was_data` is the codec's flag that its
// on_frame_send callback sets during nghttp2_session_mem_send(). Returns 0, or nghttp2's
// (fatal) error code.
int pullFrames(nghttp2_session* session, OutputQueue& out, const OutputBatching& batching,
               bool for_receive, const bool& last_frame_was_data);

// Appends a GOAWAY frame (RFC 9113 6.8), written by hand: after a fatal error nghttp2 can no
// longer produce frames, but the peer should still learn why the connection ends and which
// streams were processed.
void appendGoaway(OutputQueue& out, int32_t last_stream, uint32_t error_code);

// The data provider's copy: up to buf.size() bytes off stream.queue, with EOF once the queue is
// drained after end_requested. A stream whose send came up short gets onWritable (its id goes
// to `writable`) once the queue is down to half of max_queue_bytes. Returns the bytes copied.
size_t readSendQueue(StreamBase& stream, std::span<uint8_t> buf, uint32_t* data_flags,
                     size_t max_queue_bytes, std::vector<int32_t>& writable);

}  // namespace nodemesh::hbone::h2_common
