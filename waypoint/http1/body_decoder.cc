// BodyDecoder: Content-Length countdown, the chunked coding (RFC 9112 §7.1) and trailers.

#include "waypoint/http1/body_decoder.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "waypoint/http1/head_parser.h"

namespace nodemesh::waypoint::http1 {

namespace {

constexpr size_t kMaxChunkSizeDigits = 16;  // 64 bits

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

bool isTchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

// qdtext and the octet after a backslash (RFC 9110 §5.6.4), obs-text included.
bool isQuotedChar(char c, bool escaped) {
  const auto u = static_cast<unsigned char>(c);
  if (u == '\t' || u == ' ' || u >= 0x80) {
    return true;
  }
  if (escaped) {
    return u > 0x20 && u < 0x7f;
  }
  return u == 0x21 || (u >= 0x23 && u <= 0x5b) || (u >= 0x5d && u <= 0x7e);
}

// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), with
// chunk-ext-val = token / quoted-string (RFC 9112 §7.1.1). Nothing else may follow the size:
// a lenient parser that skips "garbage" to the CRLF reads different chunks than a strict one.
bool isValidChunkExtensions(std::string_view s) {
  size_t i = 0;
  const auto skip_bws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
      ++i;
    }
  };
  const auto token = [&] {
    const size_t begin = i;
    while (i < s.size() && isTchar(s[i])) {
      ++i;
    }
    return i > begin;
  };
  const auto quoted = [&] {
    ++i;  // the opening quote
    while (i < s.size()) {
      const char c = s[i++];
      if (c == '"') {
        return true;
      }
      if (c == '\\') {
        if (i == s.size() || !isQuotedChar(s[i], true)) {
          return false;
        }
        ++i;
      } else if (!isQuotedChar(c, false)) {
        return false;
      }
    }
    return false;
  };
  while (i < s.size()) {
    skip_bws();
    if (i == s.size() || s[i] != ';') {
      return false;
    }
    ++i;
    skip_bws();
    if (!token()) {
      return false;
    }
    const size_t after_name = i;
    skip_bws();
    if (i < s.size() && s[i] == '=') {
      ++i;
      skip_bws();
      if (i < s.size() && s[i] == '"' ? !quoted() : !token()) {
        return false;
      }
    } else {
      i = after_name;
    }
  }
  return true;
}

}  // namespace

void BodyDecoder::start(BodyFraming framing, uint64_t content_length) {
  line_.clear();
  line_cr_ = false;
  trailers_ = Headers();
  trailer_reader_.reset();
  remaining_ = content_length;
  switch (framing) {
    case BodyFraming::kNone:
      state_ = State::kDone;
      break;
    case BodyFraming::kContentLength:
      state_ = content_length == 0 ? State::kDone : State::kLength;
      break;
    case BodyFraming::kChunked:
      state_ = State::kChunkSize;
      break;
    case BodyFraming::kUntilClose:
      state_ = State::kUntilClose;
      break;
  }
}

bool BodyDecoder::endsAtClose() const {
  return state_ == State::kUntilClose || state_ == State::kDone;
}

BodyDecoder::Step BodyDecoder::feed(std::span<const uint8_t> data, BodySink& sink) {
  Step step;
  while (state_ != State::kDone && step.consumed < data.size()) {
    std::span<const uint8_t> rest = data.subspan(step.consumed);
    switch (state_) {
      case State::kUntilClose:
        step.consumed += rest.size();
        sink.onBodyBytes(rest);
        break;
      case State::kLength:
      case State::kChunkData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
        remaining_ -= n;
        step.consumed += n;
        if (remaining_ == 0) {
          state_ = state_ == State::kLength ? State::kDone : State::kChunkDataCr;
        }
        sink.onBodyBytes(rest.first(n));
        break;
      }
      case State::kChunkDataCr:
      case State::kChunkDataLf: {
        // §7.1: chunk-data CRLF, exactly.
        const char expected = state_ == State::kChunkDataCr ? '\r' : '\n';
        if (static_cast<char>(rest[0]) != expected) {
          step.rejection = Rejection{400, "chunk data not followed by CRLF"};
          return step;
        }
        ++step.consumed;
        state_ = state_ == State::kChunkDataCr ? State::kChunkDataLf : State::kChunkSize;
        break;
      }
      case State::kChunkSize: {
        const char c = static_cast<char>(rest[0]);
        ++step.consumed;
        if (line_cr_ != (c == '\n')) {
          step.rejection = Rejection{400, "chunk-size line not ended by CRLF"};
          return step;
        }
        if (c == '\n') {
          if (auto rejection = onChunkLine()) {
            step.rejection = std::move(rejection);
            return step;
          }
          break;
        }
        line_cr_ = c == '\r';
        if (!line_cr_) {
          line_.push_back(c);
          if (line_.size() > options_.max_chunk_line_bytes) {
            step.rejection = Rejection{400, "chunk-size line longer than the limit"};
            return step;
          }
        }
        break;
      }
      case State::kTrailers: {
        const HeadReader::Step head = trailer_reader_.feed(rest);
        step.consumed += head.consumed;
        if (head.rejection) {
          step.rejection = head.rejection;
          return step;
        }
        if (head.complete) {
          if (auto rejection = parseTrailers(trailer_reader_, trailers_)) {
            step.rejection = std::move(rejection);
            return step;
          }
          state_ = State::kDone;
        }
        break;
      }
      case State::kDone:
        break;
    }
  }
  step.complete = state_ == State::kDone;
  return step;
}

std::optional<Rejection> BodyDecoder::onChunkLine() {
  // chunk = chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1); chunk-size = 1*HEXDIG.
  const std::string_view line = line_;
  size_t digits = 0;
  uint64_t size = 0;
  while (digits < line.size() && hexValue(line[digits]) >= 0) {
    size = size * 16 + static_cast<uint64_t>(hexValue(line[digits]));
    ++digits;
  }
  if (digits == 0 || digits > kMaxChunkSizeDigits) {
    return Rejection{400, "invalid chunk size"};
  }
  if (!isValidChunkExtensions(line.substr(digits))) {
    return Rejection{400, "invalid chunk extension"};
  }
  line_.clear();
  line_cr_ = false;
  remaining_ = size;
  state_ = size == 0 ? State::kTrailers : State::kChunkData;
  return std::nullopt;
}

}  // namespace nodemesh::waypoint::http1
