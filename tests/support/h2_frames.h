#pragma once

// Hand-built HTTP/2 frames (RFC 9113 4.1) and HPACK blocks (RFC 7541), for tests that play a
// peer nghttp2 would not be: floods, resets, malformed sequences.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nodemesh::testing {

inline constexpr std::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

inline std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string out;
  const auto len = static_cast<uint32_t>(payload.size());
  for (const uint32_t b : {len >> 16, len >> 8, len}) {
    out += static_cast<char>(b & 0xff);
  }
  out += static_cast<char>(type);
  out += static_cast<char>(flags);
  for (const uint32_t b : {stream >> 24, stream >> 16, stream >> 8, stream}) {
    out += static_cast<char>(b & 0xff);
  }
  out.append(payload);
  return out;
}

inline constexpr uint8_t kData = 0x0;
inline constexpr uint8_t kHeaders = 0x1;
inline constexpr uint8_t kRstStream = 0x3;
inline constexpr uint8_t kSettings = 0x4;
inline constexpr uint8_t kPing = 0x6;
inline constexpr uint8_t kContinuation = 0x9;
inline constexpr uint8_t kEndStream = 0x1;
inline constexpr uint8_t kEndHeaders = 0x4;

// HPACK (RFC 7541 Appendix A): GET, http, "/" from the static table; :authority as a literal
// without indexing, so every block is the same bytes.
inline std::string getRequestBlock() {
  std::string block = "\x82\x86\x84";
  block += '\x01';
  block += static_cast<char>(std::string_view("example.test").size());
  block += "example.test";
  return block;
}

// RFC 7541 §5.1 integer with an n-bit prefix (first byte's high bits in `flags`).
inline std::string hpackInt(uint8_t flags, int prefix_bits, size_t value) {
  const size_t max_prefix = (size_t{1} << prefix_bits) - 1;
  std::string out;
  if (value < max_prefix) {
    out += static_cast<char>(flags | value);
    return out;
  }
  out += static_cast<char>(flags | max_prefix);
  value -= max_prefix;
  while (value >= 128) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
  return out;
}

// RFC 7541 §6.2.2: literal field without indexing, new name (names are sent as given).
inline std::string hpackLiteral(std::string_view name, std::string_view value) {
  std::string out(1, '\0');
  out += hpackInt(0, 7, name.size());
  out += name;
  out += hpackInt(0, 7, value.size());
  out += value;
  return out;
}

inline std::string rstPayload(uint32_t code) {
  return {static_cast<char>(code >> 24), static_cast<char>(code >> 16),
          static_cast<char>(code >> 8), static_cast<char>(code)};
}

// Our server, fed raw bytes; what it writes back is decoded by a RawClient-free scan for the
// GOAWAY error code.
inline std::optional<uint32_t> goawayCode(std::string_view bytes) {
  std::optional<uint32_t> code;
  while (bytes.size() >= 9) {
    const size_t len = (static_cast<uint8_t>(bytes[0]) << 16) |
                       (static_cast<uint8_t>(bytes[1]) << 8) | static_cast<uint8_t>(bytes[2]);
    if (bytes.size() < 9 + len) {
      break;
    }
    if (bytes[3] == 0x7 && len >= 8) {
      uint32_t c = 0;
      for (size_t i = 13; i < 17; ++i) {
        c = (c << 8) | static_cast<uint8_t>(bytes[i]);
      }
      code = c;
    }
    bytes.remove_prefix(9 + len);
  }
  return code;
}

}  // namespace nodemesh::testing
