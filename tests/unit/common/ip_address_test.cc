#include "common/ip_address.h"

#include <arpa/inet.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace nodemesh {
namespace {

IpAddress ip(std::string_view text) {
  auto parsed = IpAddress::parse(text);
  EXPECT_TRUE(parsed.ok()) << text;
  return parsed.ok() ? *parsed : IpAddress();
}

IpAddress v4(uint32_t host_order) {
  return IpAddress::fromV4HostOrder(host_order);
}

// ---- IpAddress ----

TEST(IpAddressTest, ParsesV4AsV4Mapped) {
  auto parsed = IpAddress::parse("10.1.2.3");
  ASSERT_TRUE(parsed.ok());
  const std::array<uint8_t, 16> want = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
  EXPECT_EQ(parsed->bytes(), want);
  EXPECT_TRUE(parsed->isV4());
  EXPECT_EQ(parsed->v4().s_addr, inet_addr("10.1.2.3"));  // network byte order
  EXPECT_EQ(parsed->toString(), "10.1.2.3");
  EXPECT_EQ(*parsed, IpAddress::fromV4HostOrder(0x0a010203));
  in_addr a{};
  a.s_addr = htonl(0x0a010203);
  EXPECT_EQ(*parsed, IpAddress::fromV4(a));
  EXPECT_EQ(*parsed, IpAddress::fromBytes(want));
}

TEST(IpAddressTest, WritesEveryV4OctetWidthAsInetNtopDoes) {
  // Every octet value in every position, against the C library's inet_ntop.
  for (uint32_t v = 0; v < 256; ++v) {
    for (uint32_t addr :
         {v << 24 | 1, 0x0a000000 | v << 16 | 0x0102, 0xc0a80000 | v << 8 | 7, 0xff00ff00 | v}) {
      in_addr a{};
      a.s_addr = htonl(addr);
      char want[INET_ADDRSTRLEN] = {};
      ASSERT_NE(inet_ntop(AF_INET, &a, want, sizeof(want)), nullptr);
      EXPECT_EQ(IpAddress::fromV4HostOrder(addr).toString(), want);
    }
  }
  EXPECT_EQ(IpAddress::fromV4HostOrder(0).toString(), "0.0.0.0");
  EXPECT_EQ(IpAddress::fromV4HostOrder(0xffffffff).toString(), "255.255.255.255");
}

TEST(IpAddressTest, ParsesV6) {
  auto parsed = IpAddress::parse("fd00::1");
  ASSERT_TRUE(parsed.ok());
  const std::array<uint8_t, 16> want = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(parsed->bytes(), want);
  EXPECT_FALSE(parsed->isV4());
  EXPECT_EQ(parsed->toString(), "fd00::1");
  in6_addr a = parsed->v6();
  EXPECT_EQ(IpAddress::fromV6(a), *parsed);
}

TEST(IpAddressTest, ParsesV4MappedTextAsTheV4Address) {
  for (std::string_view text :
       {"::ffff:10.1.2.3", "::FFFF:10.1.2.3", "::ffff:a01:203", "0:0:0:0:0:ffff:0a01:0203"}) {
    SCOPED_TRACE(text);
    auto parsed = IpAddress::parse(text);
    ASSERT_TRUE(parsed.ok());
    EXPECT_TRUE(parsed->isV4());
    EXPECT_EQ(*parsed, ip("10.1.2.3"));
    EXPECT_EQ(parsed->toString(), "10.1.2.3");
  }
  // Neither the deprecated v4-compatible form nor the 64:ff9b::/96 NAT64 prefix is v4-mapped.
  EXPECT_FALSE(ip("::10.1.2.3").isV4());
  EXPECT_FALSE(ip("64:ff9b::10.1.2.3").isV4());
  EXPECT_FALSE(ip("::fffe:10.1.2.3").isV4());
}

TEST(IpAddressTest, RejectsInvalidText) {
  for (std::string_view text : {
           "",
           " ",
           "10.0.0",             // inet_aton shorthand is not an address here
           "10.0.0.256",         // octet out of range
           "10.0.0.1.2",         // too many octets
           "010.0.0.1",          // leading zero (octal under inet_aton)
           "0x0a.0.0.1",         // hex
           "10.0.0.-1",          // sign
           " 10.0.0.1",          // surrounding whitespace
           "10.0.0.1 ",          //
           "10.0.0.1/32",        // a CIDR is not an address
           "10.0.0.1:80",        // nor a socket address
           "fd00::1::2",         // two "::"
           "fd00:::1",           //
           "1:2:3:4:5:6:7:8:9",  // nine groups
           "1:2:3:4:5:6:7",      // seven groups, no "::"
           "12345::1",           // group of five hex digits
           "gggg::1",            // not hex
           "fe80::1%eth0",       // zone index
           "[fd00::1]",          // brackets belong to socket addresses
           "localhost",          // names are not resolved
       }) {
    SCOPED_TRACE(text);
    auto parsed = IpAddress::parse(text);
    EXPECT_FALSE(parsed.ok());
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.error().code, EINVAL);
      EXPECT_NE(parsed.error().message.find(std::string(text)), std::string::npos)
          << "the message names the input: " << parsed.error().message;
    }
  }
}

// BUG (common/ip_address.cc, IpAddress::parse): the text is handed to inet_pton() as a C string,
// so everything after an embedded NUL is ignored and "10.0.0.1\0junk" parses as 10.0.0.1.
// Config values come from YAML, where "\0" is a valid escape. Enable once fixed.
TEST(IpAddressTest, RejectsEmbeddedNul) {
  EXPECT_FALSE(IpAddress::parse(std::string_view("10.0.0.1\0junk", 13)).ok());
  EXPECT_FALSE(IpAddress::parse(std::string_view("fd00::1\0", 8)).ok());
}

TEST(IpAddressTest, ToStringIsCanonical) {
  struct Case {
    std::string_view text;
    std::string_view canonical;  // dotted quad for v4, RFC 5952 for v6
  };
  const Case cases[] = {
      {"0.0.0.0", "0.0.0.0"},
      {"255.255.255.255", "255.255.255.255"},
      {"::", "::"},
      {"::1", "::1"},
      {"FD00::1", "fd00::1"},                                      // 4.3: lower case
      {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},  // 4.1: no leading zeros
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},               // 4.2.3: first longest run
      {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},            // 4.2.2: not for one group
      {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},                     // 4.2.3: longest run
      {"fd00:1:2:3:4:5:6::", "fd00:1:2:3:4:5:6:0"},
      {"::ffff:192.0.2.1", "192.0.2.1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    IpAddress parsed = ip(c.text);
    EXPECT_EQ(parsed.toString(), c.canonical);
    // And the canonical text parses back to the same address.
    EXPECT_EQ(ip(parsed.toString()), parsed);
  }
}

TEST(IpAddressTest, DefaultIsTheV6UnspecifiedAddress) {
  IpAddress any;
  EXPECT_EQ(any, ip("::"));
  EXPECT_FALSE(any.isV4());
  EXPECT_TRUE(any.isUnspecified());
  EXPECT_FALSE(any.isLoopback());
  EXPECT_EQ(any.toString(), "::");
}

TEST(IpAddressTest, IsLoopback) {
  for (std::string_view text :
       {"127.0.0.1", "127.0.0.0", "127.255.255.255", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(ip(text).isLoopback()) << text;
  }
  for (std::string_view text :
       {"126.255.255.255", "128.0.0.0", "0.0.0.0", "10.0.0.1", "::", "::2", "1::1", "::100",
        "fe80::1", "::127.0.0.1" /* v4-compatible, not mapped */}) {
    EXPECT_FALSE(ip(text).isLoopback()) << text;
  }
}

TEST(IpAddressTest, IsUnspecified) {
  for (std::string_view text : {"0.0.0.0", "::", "::ffff:0.0.0.0"}) {
    EXPECT_TRUE(ip(text).isUnspecified()) << text;
  }
  for (std::string_view text :
       {"0.0.0.1", "1.0.0.0", "0.0.1.0", "::1", "1::", "::ffff:0.0.0.1", "::fffe:0:0"}) {
    EXPECT_FALSE(ip(text).isUnspecified()) << text;
  }
}

TEST(IpAddressTest, OrdersByBytes) {
  EXPECT_LT(ip("10.0.0.1"), ip("10.0.0.2"));
  EXPECT_LT(ip("9.255.255.255"), ip("10.0.0.0"));
  EXPECT_LT(ip("::1"), ip("10.0.0.1"));  // ::ffff:... sorts after ::1
  EXPECT_LT(ip("10.0.0.1"), ip("fd00::1"));
  EXPECT_EQ(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
}

// ---- SocketAddress ----

TEST(SocketAddressTest, ParsesAndFormats) {
  struct Case {
    std::string_view text;
    std::string_view ip;
    uint16_t port;
    std::string_view formatted;
  };
  const Case cases[] = {
      {"10.0.0.1:80", "10.0.0.1", 80, "10.0.0.1:80"},
      {"0.0.0.0:0", "0.0.0.0", 0, "0.0.0.0:0"},
      {"255.255.255.255:65535", "255.255.255.255", 65535, "255.255.255.255:65535"},
      {"[fd00::1]:443", "fd00::1", 443, "[fd00::1]:443"},
      {"[::]:15008", "::", 15008, "[::]:15008"},
      {"[::1]:1", "::1", 1, "[::1]:1"},
      {"[2001:DB8:0:0::1]:8080", "2001:db8::1", 8080, "[2001:db8::1]:8080"},
      // A v4-mapped address is the v4 address, so it formats without brackets.
      {"[::ffff:10.0.0.1]:80", "10.0.0.1", 80, "10.0.0.1:80"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto parsed = SocketAddress::parse(c.text);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(parsed->ip, ip(c.ip));
    EXPECT_EQ(parsed->port, c.port);
    EXPECT_EQ(parsed->toString(), c.formatted);
    auto again = SocketAddress::parse(parsed->toString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *parsed);
  }
}

TEST(SocketAddressTest, PortBounds) {
  for (int port : {0, 1, 1023, 1024, 15001, 32767, 32768, 65534, 65535}) {
    SCOPED_TRACE(port);
    auto parsed = SocketAddress::parse("10.0.0.1:" + std::to_string(port));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->port, port);
    auto parsed6 = SocketAddress::parse("[fd00::1]:" + std::to_string(port));
    ASSERT_TRUE(parsed6.ok());
    EXPECT_EQ(parsed6->port, port);
  }
  for (std::string_view port :
       {"65536", "65537", "70000", "99999", "4294967296", "4294967376" /* 80 + 2^32 */,
        "18446744073709551696" /* 80 + 2^64 */}) {
    SCOPED_TRACE(port);
    EXPECT_FALSE(SocketAddress::parse("10.0.0.1:" + std::string(port)).ok());
    EXPECT_FALSE(SocketAddress::parse("[fd00::1]:" + std::string(port)).ok());
  }
}

TEST(SocketAddressTest, RejectsBadPortsAndShapes) {
  for (std::string_view text : {
           "",
           ":80",                // no address
           "10.0.0.1",           // no port
           "10.0.0.1:",          // empty port
           "10.0.0.1:-1",        // sign
           "10.0.0.1:+80",       //
           "10.0.0.1: 80",       // whitespace
           "10.0.0.1:80 ",       //
           "10.0.0.1:8o",        // not a number
           "10.0.0.1:0x50",      // hex
           "10.0.0.1:http",      // service names are not looked up
           "10.0.0.1:80:90",     //
           "10.0.0.256:80",      // bad address
           "localhost:80",       //
           "[fd00::1]",          // no port
           "[fd00::1]:",         // empty port
           "[fd00::1]80",        // no colon
           "[fd00::1:80",        // unclosed bracket
           "[fd00::1]:80]:81",   //
           "[]:80",              // empty address
           "[fe80::1%eth0]:80",  // zone index
           "[fd00::1]:65536",    //
           "[fd00::1]:abc",      //
           "x[fd00::1]:80",      //
       }) {
    SCOPED_TRACE(text);
    auto parsed = SocketAddress::parse(text);
    EXPECT_FALSE(parsed.ok()) << parsed->toString();
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.error().code, EINVAL);
    }
  }
}

// BUG (common/ip_address.cc, SocketAddress::parse): without brackets the text is split at its
// last ':', so an IPv6 address is silently read as address + port: "fd00::1:80" (itself a
// complete IPv6 address) becomes [fd00::1]:80 and "::1:8080" becomes [::1]:8080. RFC 3986
// section 3.2.2 requires brackets around an IPv6 literal followed by a port; the parser should
// refuse the unbracketed form for v6. Enable once fixed.
TEST(SocketAddressTest, RejectsUnbracketedV6) {
  for (std::string_view text : {"fd00::1:80", "::1:8080", "2001:db8::1:443"}) {
    auto parsed = SocketAddress::parse(text);
    EXPECT_FALSE(parsed.ok()) << text << " -> " << parsed->toString();
  }
}

// ---- Cidr ----

TEST(CidrTest, ParsesV4EveryPrefixLength) {
  const uint32_t addr = 0xc0a88181;  // 192.168.129.129: bits set at both ends of every octet
  for (int len = 0; len <= 32; ++len) {
    SCOPED_TRACE(len);
    const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    const uint32_t first = addr & mask;
    const uint32_t last = first | ~mask;
    auto cidr = Cidr::parse(v4(addr).toString() + "/" + std::to_string(len));
    ASSERT_TRUE(cidr.ok()) << cidr.error().message;
    EXPECT_EQ(cidr->prefixLen(), 96 + len);  // on the v4-mapped 128-bit form
    EXPECT_EQ(cidr->base(), v4(first));      // host bits cleared
    EXPECT_EQ(cidr->toString(), v4(first).toString() + "/" + std::to_string(len));
    EXPECT_TRUE(cidr->contains(v4(first)));
    EXPECT_TRUE(cidr->contains(v4(last)));
    EXPECT_TRUE(cidr->contains(v4(addr)));
    if (first != 0) {
      EXPECT_FALSE(cidr->contains(v4(first - 1)));
    }
    if (last != ~uint32_t{0}) {
      EXPECT_FALSE(cidr->contains(v4(last + 1)));
    }
    auto again = Cidr::parse(cidr->toString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *cidr);
  }
}

TEST(CidrTest, V4ZeroPrefixCoversExactlyV4) {
  auto all = Cidr::parse("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->prefixLen(), 96);
  EXPECT_TRUE(all->contains(ip("0.0.0.0")));
  EXPECT_TRUE(all->contains(ip("255.255.255.255")));
  EXPECT_FALSE(all->contains(ip("::")));
  EXPECT_FALSE(all->contains(ip("::1")));
  EXPECT_FALSE(all->contains(ip("::fffe:ffff:ffff")));  // just below ::ffff:0.0.0.0
  EXPECT_FALSE(all->contains(ip("::1:0:0:0")));         // just above ::ffff:255.255.255.255
  EXPECT_FALSE(all->contains(ip("fd00::1")));
}

TEST(CidrTest, ParsesV6) {
  struct Case {
    std::string_view text;
    int prefix_len;
    std::string_view formatted;
    std::string_view first;
    std::string_view last;
    std::string_view before;  // empty: none
    std::string_view after;   // empty: none
  };
  const Case cases[] = {
      {"::/0", 0, "::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", ""},
      {"8000::/1", 1, "8000::/1", "8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
       "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""},
      {"fc00::/7", 7, "fc00::/7", "fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
       "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"},
      {"fd00::/8", 8, "fd00::/8", "fd00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
       "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"},
      {"fd80::/9", 9, "fd80::/9", "fd80::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
       "fd7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"},
      {"2001:db8::/32", 32, "2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
       "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"},
      {"2001:db8:1:2::/63", 63, "2001:db8:1:2::/63", "2001:db8:1:2::",
       "2001:db8:1:3:ffff:ffff:ffff:ffff", "2001:db8:1:1:ffff:ffff:ffff:ffff", "2001:db8:1:4::"},
      {"2001:db8:1:2::/64", 64, "2001:db8:1:2::/64", "2001:db8:1:2::",
       "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:1:ffff:ffff:ffff:ffff", "2001:db8:1:3::"},
      {"2001:db8:1:2:8000::/65", 65, "2001:db8:1:2:8000::/65", "2001:db8:1:2:8000::",
       "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:7fff:ffff:ffff:ffff", "2001:db8:1:3::"},
      {"fd00::2/127", 127, "fd00::2/127", "fd00::2", "fd00::3", "fd00::1", "fd00::4"},
      {"fd00::1/128", 128, "fd00::1/128", "fd00::1", "fd00::1", "fd00::", "fd00::2"},
      // Host bits are cleared.
      {"fd12:3456::789/16", 16, "fd12::/16", "fd12::", "fd12:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
       "fd11:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fd13::"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto cidr = Cidr::parse(c.text);
    ASSERT_TRUE(cidr.ok()) << cidr.error().message;
    EXPECT_EQ(cidr->prefixLen(), c.prefix_len);
    EXPECT_EQ(cidr->base(), ip(c.first));
    EXPECT_EQ(cidr->toString(), c.formatted);
    EXPECT_TRUE(cidr->contains(ip(c.first)));
    EXPECT_TRUE(cidr->contains(ip(c.last)));
    if (!c.before.empty()) {
      EXPECT_FALSE(cidr->contains(ip(c.before)));
    }
    if (!c.after.empty()) {
      EXPECT_FALSE(cidr->contains(ip(c.after)));
    }
    auto again = Cidr::parse(cidr->toString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *cidr);
  }
}

TEST(CidrTest, V6CidrDoesNotContainV4Addresses) {
  auto ula = Cidr::parse("fd00::/8");
  ASSERT_TRUE(ula.ok());
  EXPECT_FALSE(ula->contains(ip("10.0.0.1")));
  auto loopback = Cidr::parse("::1/128");
  ASSERT_TRUE(loopback.ok());
  EXPECT_FALSE(loopback->contains(ip("127.0.0.1")));
}

TEST(CidrTest, BareAddressIsAHostRoute) {
  auto v4_host = Cidr::parse("10.1.2.3");
  ASSERT_TRUE(v4_host.ok());
  EXPECT_EQ(v4_host->prefixLen(), 128);
  EXPECT_EQ(v4_host->base(), ip("10.1.2.3"));
  EXPECT_EQ(v4_host->toString(), "10.1.2.3/32");
  EXPECT_TRUE(v4_host->contains(ip("10.1.2.3")));
  EXPECT_FALSE(v4_host->contains(ip("10.1.2.2")));
  EXPECT_FALSE(v4_host->contains(ip("10.1.2.4")));
  EXPECT_EQ(*v4_host, *Cidr::parse("10.1.2.3/32"));

  auto v6_host = Cidr::parse("fd00::1");
  ASSERT_TRUE(v6_host.ok());
  EXPECT_EQ(v6_host->prefixLen(), 128);
  EXPECT_EQ(v6_host->toString(), "fd00::1/128");
  EXPECT_TRUE(v6_host->contains(ip("fd00::1")));
  EXPECT_FALSE(v6_host->contains(ip("fd00::")));
  EXPECT_FALSE(v6_host->contains(ip("fd00::2")));
}

TEST(CidrTest, RejectsBadInput) {
  for (std::string_view text : {
           "",
           "/8",                   // no address
           "10.0.0.0/",            // empty prefix
           "10.0.0.0/33",          // past /32
           "10.0.0.0/128",         // v6 lengths do not apply to v4 text
           "10.0.0.0/-1",          // sign
           "10.0.0.0/+8",          //
           "10.0.0.0/ 8",          // whitespace
           "10.0.0.0/8 ",          //
           "10.0.0.0/8x",          // trailing text
           "10.0.0.0/0x8",         // hex
           "10.0.0.0/8/8",         //
           "10.0.0.0//8",          //
           "10.0.0.0/4294967304",  // 8 + 2^32
           "10.0.0/8",             // bad address
           "10.0.0.256/8",         //
           "fd00::/129",           // past /128
           "fd00:::/8",            //
           "[fd00::]/8",           //
           "fe80::%eth0/64",       //
           "localhost/32",         //
       }) {
    SCOPED_TRACE(text);
    auto cidr = Cidr::parse(text);
    EXPECT_FALSE(cidr.ok()) << cidr->toString();
    if (!cidr.ok()) {
      EXPECT_EQ(cidr.error().code, EINVAL);
    }
  }
}

// BUG (common/ip_address.cc, Cidr::parse): the prefix length is read with std::from_chars into
// an int, which takes a leading '-', and only len < 0 is refused: "fd00::/-0" and "10.0.0.0/-0"
// parse as ::/0 and 0.0.0.0/0, an exclusion of everything. ("/+8" is refused.) Enable once fixed.
TEST(CidrTest, RejectsNegativeZeroPrefix) {
  EXPECT_FALSE(Cidr::parse("fd00::/-0").ok());
  EXPECT_FALSE(Cidr::parse("10.0.0.0/-0").ok());
}

// BUG (common/ip_address.cc, Cidr::parse): v4-mapped text is written in IPv6 notation, but its
// prefix length is read as an IPv4 one (max = 32 because the address isV4()): the valid IPv6
// CIDR "::ffff:0.0.0.0/96" (every v4-mapped address) is refused, "::ffff:10.0.0.0/104" is
// refused, and "::ffff:10.0.0.0/8" is accepted as 10.0.0.0/8 where IPv6 reading gives ::/8.
// Either count IPv6 notation on 128 bits, or refuse v4-mapped CIDR text. Enable once fixed.
TEST(CidrTest, V4MappedTextCountsOn128Bits) {
  auto all_v4 = Cidr::parse("::ffff:0.0.0.0/96");
  ASSERT_TRUE(all_v4.ok());
  EXPECT_EQ(*all_v4, *Cidr::parse("0.0.0.0/0"));
  auto ten = Cidr::parse("::ffff:10.0.0.0/104");
  ASSERT_TRUE(ten.ok());
  EXPECT_EQ(*ten, *Cidr::parse("10.0.0.0/8"));
  auto short_prefix = Cidr::parse("::ffff:10.0.0.0/8");
  EXPECT_TRUE(!short_prefix.ok() || short_prefix->prefixLen() == 8);
}

TEST(CidrTest, ConstructorClearsHostBits) {
  Cidr cidr(ip("10.255.255.255"), 96 + 12);
  EXPECT_EQ(cidr.base(), ip("10.240.0.0"));
  EXPECT_EQ(cidr.prefixLen(), 108);
  EXPECT_EQ(cidr.toString(), "10.240.0.0/12");
  EXPECT_TRUE(cidr.contains(ip("10.255.255.255")));
  EXPECT_FALSE(cidr.contains(ip("11.0.0.0")));

  Cidr default_cidr;
  EXPECT_EQ(default_cidr.prefixLen(), 0);
  EXPECT_EQ(default_cidr.toString(), "::/0");
}

}  // namespace
}  // namespace nodemesh

namespace nodemesh {
namespace {

TEST(CidrTest, ShortIpv6PrefixesDoNotCoverIpv4) {
  auto all_v6 = Cidr::parse("::/0");
  ASSERT_TRUE(all_v6.ok());
  EXPECT_TRUE(all_v6->contains(IpAddress::parse("fd00::1").value()));
  EXPECT_FALSE(all_v6->contains(IpAddress::parse("10.0.0.1").value()));
  auto mapped = Cidr::parse("::ffff:0:0/96");
  ASSERT_TRUE(mapped.ok());
  EXPECT_TRUE(mapped->contains(IpAddress::parse("10.0.0.1").value()));
}

}  // namespace
}  // namespace nodemesh
