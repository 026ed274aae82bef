#pragma once

// Collects the bytes of one head (start line and header fields, or a chunked trailer section) up
// to its empty line, checking line endings and sizes as bytes arrive, so that no more than
// CodecOptions::max_header_bytes is ever buffered. The lines are then validated and parsed by
// head_parser.h.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "waypoint/http1/options.h"

namespace nodemesh::waypoint::http1 {

enum class HeadKind { kRequest, kResponse, kTrailers };

class HeadReader {
 public:
  HeadReader(HeadKind kind, const CodecOptions& options) : kind_(kind), options_(options) {}

  struct Step {
    size_t consumed = 0;    // bytes of the input taken (all of them unless complete/rejected)
    bool complete = false;  // the empty line ending the head was read
    std::optional<Rejection> rejection;
  };
  Step feed(std::span<const uint8_t> data);

  // After complete: the start line (empty for trailers) and the field lines, without CRLF.
  std::string_view startLine() const;
  std::vector<std::string_view> fieldLines() const;
  // Every byte consumed since reset(), leading empty lines included (the raw head an owner
  // passes through when it falls back to TCP).
  std::string_view raw() const { return buf_; }
  bool started() const { return !buf_.empty(); }
  void reset();

 private:
  struct Line {
    size_t offset;
    size_t size;
  };
  std::optional<Rejection> onLineEnd();

  HeadKind kind_;
  const CodecOptions& options_;
  std::string buf_;
  std::vector<Line> lines_;
  size_t line_start_ = 0;
  bool prev_cr_ = false;
  bool complete_ = false;
};

}  // namespace nodemesh::waypoint::http1
