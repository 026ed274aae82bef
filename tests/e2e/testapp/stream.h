#pragma once

// The wire format nm-testapp speaks, shared by the tool and by tests that want to produce or
// check the same bytes in-process.
//
// A connection carries: a 16-byte header from the client (magic, seed, byte counts for each
// direction, all big-endian u32), then `client_bytes` of PrngStream(seed), then the client's
// FIN. Only after that FIN does the server send `server_bytes` of PrngStream(seed + 1) and
// close. Both streams are deterministic, so either side detects a corrupted, truncated,
// reordered or misdirected byte.

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

namespace nodemesh::testapp {

inline constexpr uint32_t kMagic = 0x4e4d5431;  // "NMT1"
inline constexpr size_t kHeaderSize = 16;

struct StreamHeader {
  uint32_t seed = 0;
  uint32_t client_bytes = 0;  // client -> server payload after the header
  uint32_t server_bytes = 0;  // server -> client payload, sent after the client's FIN

  std::array<uint8_t, kHeaderSize> encode() const {
    std::array<uint8_t, kHeaderSize> out{};
    const uint32_t words[4] = {htonl(kMagic), htonl(seed), htonl(client_bytes),
                               htonl(server_bytes)};
    std::memcpy(out.data(), words, sizeof(words));
    return out;
  }

  // nullopt when the magic does not match (not an nm-testapp client).
  static std::optional<StreamHeader> decode(const uint8_t* in) {
    uint32_t words[4];
    std::memcpy(words, in, sizeof(words));
    if (ntohl(words[0]) != kMagic) return std::nullopt;
    return StreamHeader{ntohl(words[1]), ntohl(words[2]), ntohl(words[3])};
  }
};

// An endless byte stream of splitmix64 words (little-endian byte order on every host), so
// 64 MiB transfers cost a few milliseconds to generate and check.
class PrngStream {
 public:
  explicit PrngStream(uint64_t seed) : state_(seed) {}

  void fill(uint8_t* out, size_t n) {
    size_t take = std::min(n, kWordBytes - pending_off_);
    std::memcpy(out, pending_ + pending_off_, take);
    pending_off_ += take;
    out += take;
    n -= take;
    while (n >= kWordBytes) {
      storeLe(out, next());
      out += kWordBytes;
      n -= kWordBytes;
    }
    if (n > 0) {
      storeLe(pending_, next());
      std::memcpy(out, pending_, n);
      pending_off_ = n;
    }
  }

  // Checks the next n bytes of the stream against data; scratch must hold n bytes. Returns
  // the offset of the first differing byte within data, or nullopt when all match.
  std::optional<size_t> verify(const uint8_t* data, size_t n, uint8_t* scratch) {
    fill(scratch, n);
    if (std::memcmp(data, scratch, n) == 0) return std::nullopt;
    for (size_t i = 0; i < n; ++i) {
      if (data[i] != scratch[i]) return i;
    }
    return std::nullopt;  // unreachable
  }

 private:
  // splitmix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number generators", 2014).
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  static void storeLe(uint8_t* out, uint64_t v) {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
  }

  uint64_t state_;
  static constexpr size_t kWordBytes = 8;
  uint8_t pending_[kWordBytes] = {};
  size_t pending_off_ = kWordBytes;  // bytes of pending_ already handed out
};

}  // namespace nodemesh::testapp
