#pragma once

// IP addresses and CIDRs as the data model and the BPF maps use them: always 16 bytes,
// IPv4 held as v4-mapped IPv6 (::ffff:a.b.c.d), network byte order.

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nodemesh {

class IpAddress {
 public:
  IpAddress() = default;  // :: (unspecified)
  static IpAddress fromV4(in_addr a);
  static IpAddress fromV4HostOrder(uint32_t host_order);
  static IpAddress fromV6(const in6_addr& a);
  static IpAddress fromBytes(const std::array<uint8_t, 16>& bytes);
  // Accepts "10.0.0.1", "fd00::1", "::ffff:10.0.0.1".
  static Result<IpAddress> parse(std::string_view text);

  bool isV4() const;  // v4-mapped
  bool isLoopback() const;
  bool isUnspecified() const;
  // Only valid when isV4(): the address in network byte order.
  in_addr v4() const;
  in6_addr v6() const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  std::string toString() const;  // dotted quad for v4, RFC 5952 for v6

  // clang-tidy before 18 takes the 0 that a defaulted <=> compares std::array's result with
  // for a null pointer constant (llvm/llvm-project#53961).
  // NOLINTNEXTLINE(modernize-use-nullptr)
  auto operator<=>(const IpAddress&) const = default;

 private:
  std::array<uint8_t, 16> bytes_{};
};

struct SocketAddress {
  IpAddress ip;
  uint16_t port = 0;  // host byte order

  std::string toString() const;  // "10.0.0.1:80", "[fd00::1]:80"
  // Parses "ip:port" / "[v6]:port".
  static Result<SocketAddress> parse(std::string_view text);
  auto operator<=>(const SocketAddress&) const = default;
};

class Cidr {
 public:
  Cidr() = default;
  Cidr(IpAddress base, int prefix_len);  // prefix_len counts on the 128-bit (mapped) form
  // Accepts "10.0.0.0/8", "fd00::/8", or a bare address (host route).
  static Result<Cidr> parse(std::string_view text);

  bool contains(const IpAddress& ip) const;
  const IpAddress& base() const { return base_; }
  int prefixLen() const { return prefix_len_; }  // 0..128, v4 CIDRs are 96..128
  std::string toString() const;
  auto operator<=>(const Cidr&) const = default;

 private:
  IpAddress base_;
  int prefix_len_ = 0;
};

}  // namespace nodemesh
