// MessageWriter: start lines, fields and body framing.

#include "waypoint/http1/message_writer.h"

#include <algorithm>
#include <array>
#include <charconv>

#include "waypoint/http1/head_parser.h"

namespace nodemesh::waypoint::http1 {

namespace {

constexpr size_t kCompactBytes = 64 * 1024;

bool isSafeValue(std::string_view value) {
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) {
      return false;
    }
  }
  return true;
}

bool isFramingField(std::string_view name) {
  return equalsIgnoreCase(name, "content-length") || equalsIgnoreCase(name, "transfer-encoding") ||
         equalsIgnoreCase(name, "connection") || equalsIgnoreCase(name, "keep-alive");
}

std::string decimal(uint64_t n) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), n);
  (void)ec;  // 24 digits always suffice
  return std::string(buf.data(), end);
}

std::string hex(uint64_t n) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), n, 16);
  (void)ec;
  return std::string(buf.data(), end);
}

}  // namespace

Status MessageWriter::writeFields(const Headers& headers, const OutgoingFraming& framing) {
  for (const HeaderField& field : headers.fields()) {
    if (!isToken(field.name) || !isSafeValue(field.value)) {
      return Error::invalid("invalid outgoing header field \"" + field.name + "\"");
    }
  }
  for (const HeaderField& field : headers.fields()) {
    if (isFramingField(field.name)) {
      continue;
    }
    out_.append(field.name).append(": ").append(field.value).append("\r\n");
  }
  if (framing.framing == BodyFraming::kContentLength) {
    out_.append("Content-Length: ").append(decimal(framing.content_length)).append("\r\n");
  } else if (framing.framing == BodyFraming::kChunked) {
    out_.append("Transfer-Encoding: chunked\r\n");
  } else if (framing.declare_length) {
    out_.append("Content-Length: ").append(decimal(framing.declared_length)).append("\r\n");
  }
  if (!framing.connection.empty()) {
    out_.append("Connection: ").append(framing.connection).append("\r\n");
  }
  out_.append("\r\n");
  return okStatus();
}

void MessageWriter::startBody(const OutgoingFraming& framing) {
  in_message_ = true;
  framing_ = framing.framing;
  remaining_ = framing.framing == BodyFraming::kContentLength ? framing.content_length : 0;
}

Status MessageWriter::writeRequestHead(const RequestHead& head, const OutgoingFraming& framing) {
  if (in_message_) {
    return Error::invalid("a message is already being written");
  }
  if (!isToken(head.method) || head.target.empty() ||
      head.target.find_first_of(" \t\r\n") != std::string::npos || !isSafeValue(head.target)) {
    return Error::invalid("invalid request line");
  }
  const size_t mark = out_.size();
  out_.append(head.method).append(" ").append(head.target).append(" ");
  out_.append(versionString(head.version)).append("\r\n");
  if (Status status = writeFields(head.headers, framing); !status.ok()) {
    out_.resize(mark);
    return status;
  }
  startBody(framing);
  return okStatus();
}

Status MessageWriter::writeResponseHead(const ResponseHead& head, const OutgoingFraming& framing) {
  if (in_message_) {
    return Error::invalid("a message is already being written");
  }
  if (head.status < 100 || head.status > 999 || !isSafeValue(head.reason)) {
    return Error::invalid("invalid status line");
  }
  const size_t mark = out_.size();
  // RFC 9110 §6.2: an intermediary sends its own version, HTTP/1.1, whatever the peer's.
  out_.append("HTTP/1.1 ").append(decimal(static_cast<uint64_t>(head.status))).append(" ");
  out_.append(head.reason.empty() ? reasonPhrase(head.status) : head.reason).append("\r\n");
  if (Status status = writeFields(head.headers, framing); !status.ok()) {
    out_.resize(mark);
    return status;
  }
  startBody(framing);
  return okStatus();
}

Status MessageWriter::writeInterim(int status, const Headers& headers) {
  if (in_message_ || status < 100 || status > 199 || status == 101) {
    return Error::invalid("interim response out of place");
  }
  ResponseHead head;
  head.status = status;
  head.headers = headers;
  if (Status result = writeResponseHead(head, OutgoingFraming{}); !result.ok()) {
    return result;
  }
  in_message_ = false;  // a 1xx has no body and the final response follows
  return okStatus();
}

Status MessageWriter::writeBody(std::span<const uint8_t> data) {
  if (!in_message_) {
    return Error::invalid("body outside a message");
  }
  if (data.empty()) {
    return okStatus();
  }
  const std::string_view bytes(reinterpret_cast<const char*>(data.data()), data.size());
  switch (framing_) {
    case BodyFraming::kNone:
      return Error::invalid("body bytes for a message without body");
    case BodyFraming::kContentLength:
      if (data.size() > remaining_) {
        return Error::invalid("body longer than its Content-Length");
      }
      remaining_ -= data.size();
      out_.append(bytes);
      break;
    case BodyFraming::kChunked:
      out_.append(hex(data.size())).append("\r\n").append(bytes).append("\r\n");
      break;
    case BodyFraming::kUntilClose:
      out_.append(bytes);
      break;
  }
  return okStatus();
}

Status MessageWriter::writeEnd(const Headers& trailers) {
  if (!in_message_) {
    return Error::invalid("end outside a message");
  }
  if (framing_ == BodyFraming::kContentLength && remaining_ > 0) {
    return Error::invalid("body shorter than its Content-Length");
  }
  if (framing_ == BodyFraming::kChunked) {
    for (const HeaderField& field : trailers.fields()) {
      if (!isToken(field.name) || !isSafeValue(field.value)) {
        return Error::invalid("invalid outgoing trailer field \"" + field.name + "\"");
      }
    }
    out_.append("0\r\n");
    for (const HeaderField& field : trailers.fields()) {
      out_.append(field.name).append(": ").append(field.value).append("\r\n");
    }
    out_.append("\r\n");
  }
  in_message_ = false;
  return okStatus();
}

std::span<const uint8_t> MessageWriter::pendingOutput() const {
  return {reinterpret_cast<const uint8_t*>(out_.data()) + head_, out_.size() - head_};
}

void MessageWriter::consumeOutput(size_t n) {
  head_ += std::min(n, out_.size() - head_);
  if (head_ == out_.size()) {
    out_.clear();
    head_ = 0;
  } else if (head_ > kCompactBytes && head_ > out_.size() / 2) {
    // A slow writer never drains completely: drop the written front now and then.
    out_.erase(0, head_);
    head_ = 0;
  }
}

}  // namespace nodemesh::waypoint::http1
