#pragma once

// HTTP/2 error codes (RFC 9113 §7) as carried by RST_STREAM and GOAWAY, shared by HBONE's
// CONNECT session and the waypoint's L7 HTTP/2 codec.

#include <cstdint>
#include <string_view>

namespace nodemesh::hbone {

inline constexpr uint32_t kH2NoError = 0x0;
inline constexpr uint32_t kH2ProtocolError = 0x1;
inline constexpr uint32_t kH2InternalError = 0x2;
inline constexpr uint32_t kH2FlowControlError = 0x3;
inline constexpr uint32_t kH2StreamClosed = 0x5;
inline constexpr uint32_t kH2RefusedStream = 0x7;
inline constexpr uint32_t kH2Cancel = 0x8;
// The TCP connection a CONNECT stream stands for was reset or failed (RFC 9113 §8.5).
inline constexpr uint32_t kH2ConnectError = 0xa;
// The peer behaves in a way that may be abuse, e.g. a flood (RFC 9113 §7).
inline constexpr uint32_t kH2EnhanceYourCalm = 0xb;

// "PROTOCOL_ERROR", "CANCEL", ... ("unknown" for codes RFC 9113 does not define).
std::string_view h2ErrorName(uint32_t code);

}  // namespace nodemesh::hbone
