#include "common/ip_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace nodemesh {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

IpAddress IpAddress::fromV4(in_addr a) {
  IpAddress ip;
  std::memcpy(ip.bytes_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
  std::memcpy(ip.bytes_.data() + 12, &a.s_addr, 4);
  return ip;
}

IpAddress IpAddress::fromV4HostOrder(uint32_t host_order) {
  in_addr a{};
  a.s_addr = htonl(host_order);
  return fromV4(a);
}

IpAddress IpAddress::fromV6(const in6_addr& a) {
  IpAddress ip;
  std::memcpy(ip.bytes_.data(), a.s6_addr, 16);
  return ip;
}

IpAddress IpAddress::fromBytes(const std::array<uint8_t, 16>& bytes) {
  IpAddress ip;
  ip.bytes_ = bytes;
  return ip;
}

Result<IpAddress> IpAddress::parse(std::string_view text) {
  std::string s(text);
  // inet_pton reads a C string: an embedded NUL would hide whatever follows it.
  if (s.find('\0') != std::string::npos) return Error::invalid("invalid IP address (NUL byte)");
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) return fromV4(v4);
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) return fromV6(v6);
  return Error::invalid("invalid IP address '" + s + "'");
}

bool IpAddress::isV4() const {
  return std::memcmp(bytes_.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0;
}

bool IpAddress::isLoopback() const {
  if (isV4()) return bytes_[12] == 127;
  static constexpr std::array<uint8_t, 16> kV6Loopback = {0, 0, 0, 0, 0, 0, 0, 0,
                                                          0, 0, 0, 0, 0, 0, 0, 1};
  return bytes_ == kV6Loopback;
}

bool IpAddress::isUnspecified() const {
  if (isV4()) return bytes_[12] == 0 && bytes_[13] == 0 && bytes_[14] == 0 && bytes_[15] == 0;
  return bytes_ == std::array<uint8_t, 16>{};
}

in_addr IpAddress::v4() const {
  in_addr a{};
  std::memcpy(&a.s_addr, bytes_.data() + 12, 4);
  return a;
}

in6_addr IpAddress::v6() const {
  in6_addr a{};
  std::memcpy(a.s6_addr, bytes_.data(), 16);
  return a;
}

std::string IpAddress::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (isV4()) {
    // By hand: glibc's inet_ntop formats IPv4 through sprintf, a measurable cost where an
    // address is written per request (the waypoint's access log and metrics).
    const uint32_t host_order = ntohl(v4().s_addr);
    char* p = buf;
    for (int shift = 24; shift >= 0; shift -= 8) {
      if (shift != 24) *p++ = '.';
      const unsigned v = (host_order >> shift) & 0xffU;
      if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
      if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
      *p++ = static_cast<char>('0' + v % 10);
    }
    return std::string(buf, static_cast<size_t>(p - buf));
  }
  in6_addr a = v6();
  inet_ntop(AF_INET6, &a, buf, sizeof(buf));
  return buf;
}

// fmt rather than std::string's operator+: at -O2/-O3 GCC 12 inlines the concatenation and
// reports a false -Wrestrict inside libstdc++ (GCC PR 105329), which fails -Werror builds.
std::string SocketAddress::toString() const {
  if (ip.isV4()) return fmt::format("{}:{}", ip.toString(), port);
  return fmt::format("[{}]:{}", ip.toString(), port);
}

Result<SocketAddress> SocketAddress::parse(std::string_view text) {
  std::string_view host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string_view::npos) {
      return Error::invalid("invalid socket address '" + std::string(text) + "'");
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Error::invalid("invalid socket address '" + std::string(text) + "': expected ip:port");
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      // "fd00::1:80" is itself an IPv6 address: RFC 3986 3.2.2 requires [brackets].
      return Error::invalid("invalid socket address '" + std::string(text) +
                            "': write an IPv6 address as [ip]:port");
    }
  }
  auto ip = IpAddress::parse(host);
  if (!ip) return ip.error();
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty()) {
    return Error::invalid("invalid port '" + std::string(port_text) + "'");
  }
  return SocketAddress{*ip, static_cast<uint16_t>(port)};
}

Cidr::Cidr(IpAddress base, int prefix_len) : prefix_len_(prefix_len) {
  auto bytes = base.bytes();
  for (int i = 0; i < 16; ++i) {
    int keep = prefix_len - i * 8;
    if (keep >= 8) continue;
    bytes[i] = keep <= 0 ? 0 : static_cast<uint8_t>(bytes[i] & (0xff << (8 - keep)));
  }
  base_ = IpAddress::fromBytes(bytes);
}

Result<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto host = text.substr(0, slash);
  auto ip = IpAddress::parse(host);
  if (!ip) return Error::invalid("invalid CIDR '" + std::string(text) + "'");
  // The prefix length counts bits of the address as written: "::ffff:10.0.0.0/104" is an IPv6
  // prefix even though the address is v4-mapped.
  bool written_v4 = host.find(':') == std::string_view::npos;
  int max = written_v4 ? 32 : 128;
  int len = max;
  if (slash != std::string_view::npos) {
    auto len_text = text.substr(slash + 1);
    bool digits_only =
        !len_text.empty() &&
        std::all_of(len_text.begin(), len_text.end(), [](char c) { return c >= '0' && c <= '9'; });
    auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (!digits_only || ec != std::errc() || ptr != len_text.data() + len_text.size() ||
        len > max) {
      return Error::invalid("invalid prefix length in CIDR '" + std::string(text) + "'");
    }
  }
  return Cidr(*ip, written_v4 ? len + 96 : len);
}

bool Cidr::contains(const IpAddress& ip) const {
  // IPv4 is stored v4-mapped, but an IPv6 prefix shorter than /96 (such as ::/0) is an IPv6
  // range: it does not cover IPv4 addresses, as in Istio's and ztunnel's matching.
  if (prefix_len_ < 96 && ip.isV4()) return false;
  return Cidr(ip, prefix_len_).base_ == base_;
}

std::string Cidr::toString() const {
  int len = base_.isV4() && prefix_len_ >= 96 ? prefix_len_ - 96 : prefix_len_;
  return base_.toString() + "/" + std::to_string(len);
}

}  // namespace nodemesh
