// HeadReader: line framing of a head (RFC 9112 §2.1, §2.2).

#include "waypoint/http1/head_reader.h"

namespace nodemesh::waypoint::http1 {

namespace {

constexpr char kCr = '\r';
constexpr char kLf = '\n';

Rejection reject(int status, std::string reason) {
  return Rejection{status, std::move(reason)};
}

}  // namespace

void HeadReader::reset() {
  buf_.clear();
  lines_.clear();
  line_start_ = 0;
  prev_cr_ = false;
  complete_ = false;
}

std::string_view HeadReader::startLine() const {
  if (kind_ == HeadKind::kTrailers || lines_.empty()) {
    return {};
  }
  return std::string_view{buf_}.substr(lines_[0].offset, lines_[0].size);
}

std::vector<std::string_view> HeadReader::fieldLines() const {
  std::vector<std::string_view> out;
  const size_t first = kind_ == HeadKind::kTrailers ? 0 : 1;
  for (size_t i = first; i < lines_.size(); ++i) {
    out.push_back(std::string_view{buf_}.substr(lines_[i].offset, lines_[i].size));
  }
  return out;
}

HeadReader::Step HeadReader::feed(std::span<const uint8_t> data) {
  Step step;
  const bool has_start_line = kind_ != HeadKind::kTrailers;
  while (step.consumed < data.size() && !complete_) {
    const char c = static_cast<char>(data[step.consumed++]);
    buf_.push_back(c);
    // RFC 9112 §2.2: CR only as part of CRLF; a bare LF line ending is what a lenient
    // recipient may accept, and a proxy must not (two parsers that split lines differently
    // are a smuggling shape). NUL is never valid (RFC 9110 §5.5).
    if (prev_cr_ && c != kLf) {
      step.rejection = reject(400, "CR not followed by LF in the head");
      return step;
    }
    if (c == kLf && !prev_cr_) {
      step.rejection = reject(400, "bare LF in the head");
      return step;
    }
    if (c == '\0') {
      step.rejection = reject(400, "NUL in the head");
      return step;
    }
    prev_cr_ = c == kCr;
    if (c == kLf) {
      if (auto rejection = onLineEnd()) {
        step.rejection = std::move(rejection);
        return step;
      }
      continue;
    }
    const size_t line_bytes = buf_.size() - line_start_;
    if (has_start_line && lines_.empty() && line_bytes > options_.max_request_line_bytes) {
      step.rejection = kind_ == HeadKind::kRequest
                           ? reject(414, "request line longer than the limit")
                           : reject(431, "status line longer than the limit");
      return step;
    }
    if (buf_.size() > options_.max_header_bytes) {  // leading empty lines count too
      step.rejection = reject(431, "header section larger than the limit");
      return step;
    }
  }
  step.complete = complete_;
  return step;
}

std::optional<Rejection> HeadReader::onLineEnd() {
  const size_t size = buf_.size() - line_start_ - 2;  // without CRLF
  const size_t offset = line_start_;
  line_start_ = buf_.size();
  if (size == 0) {
    if (kind_ != HeadKind::kTrailers && lines_.empty()) {
      // RFC 9112 §2.2: a server ignores at least one empty line before the request line (old
      // clients send CRLF after a POST body). They count toward max_header_bytes.
      return std::nullopt;
    }
    complete_ = true;
    return std::nullopt;
  }
  lines_.push_back(Line{offset, size});
  const size_t fields = kind_ == HeadKind::kTrailers ? lines_.size() : lines_.size() - 1;
  if (fields > options_.max_header_count) {
    return Rejection{431, "more header fields than the limit"};
  }
  return std::nullopt;
}

}  // namespace nodemesh::waypoint::http1
