#pragma once

// The request and response heads the routing engine reads and the filters edit: what the
// HTTP/1.1 and HTTP/2 codecs produce, without bodies. Header names are compared
// case-insensitively everywhere (RFC 9110 section 5.1); codecs hand them over lowercase, and
// repeated headers stay separate entries in arrival order.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodemesh::waypoint {

struct Header {
  std::string name;
  std::string value;

  bool operator==(const Header&) const = default;
};
using Headers = std::vector<Header>;

struct RequestHead {
  std::string method;           // "GET"
  std::string scheme = "http";  // what the client used to reach the service
  std::string authority;        // :authority or Host, possibly with a port
  std::string path;             // origin form: path plus optional "?query"
  Headers headers;              // without pseudo headers and without Host

  bool operator==(const RequestHead&) const = default;
};

struct ResponseHead {
  int status = 200;
  Headers headers;

  bool operator==(const ResponseHead&) const = default;
};

bool equalsIgnoreCase(std::string_view a, std::string_view b);

// All values of a header joined with "," (RFC 9110 section 5.3), the way Gateway API header
// matches see a repeated header; nullopt when absent.
std::optional<std::string> headerValue(const Headers& headers, std::string_view name);
// Replaces every value of `name` with one.
void setHeader(Headers& headers, std::string_view name, std::string_view value);
// Appends one more value.
void addHeader(Headers& headers, std::string_view name, std::string_view value);
// Removes every value of `name`.
void removeHeader(Headers& headers, std::string_view name);

// "/a/b?x=1" -> "/a/b" (a '#' fragment is cut too; clients should not send one).
std::string_view pathWithoutQuery(std::string_view path);
// "/a/b?x=1" -> "x=1"; empty without '?'.
std::string_view queryString(std::string_view path);
// The first value of query parameter `name` (names compare exactly), percent-decoded; the
// Gateway API recommends the first value when a parameter repeats.
std::optional<std::string> queryParam(std::string_view query, std::string_view name);
// "Shop.Example:8080" -> "shop.example"; "[fd00::1]:80" -> "fd00::1"; a trailing dot is dropped.
std::string hostWithoutPort(std::string_view authority);

}  // namespace nodemesh::waypoint
