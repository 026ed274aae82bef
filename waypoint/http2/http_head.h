#pragma once

// The protocol-neutral request and response heads the waypoint routes on, and their conversion
// to and from HTTP/2 header fields (RFC 9113 §8.2, §8.3). The HTTP/2 codec delivers and takes
// these types; the proxy uses the same helpers to turn an HTTP/1.1 head into an HTTP/2 one
// (lowercase names, no connection-specific fields, Host folded into :authority).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nodemesh::waypoint::http2 {

struct HeaderField {
  std::string name;
  std::string value;

  bool operator==(const HeaderField&) const = default;
};
using HeaderList = std::vector<HeaderField>;

struct RequestHead {
  std::string method;     // "GET", "POST", ...
  std::string scheme;     // "http" or "https"
  std::string authority;  // host[:port] (from Host when :authority is absent)
  std::string path;       // origin-form with query, or "*" for OPTIONS
  HeaderList headers;     // regular fields only, in arrival order

  bool operator==(const RequestHead&) const = default;
};

struct ResponseHead {
  int status = 0;
  HeaderList headers;  // regular fields only

  bool operator==(const ResponseHead&) const = default;
};

// RFC 9113 §6.5.2: name + value + 32 octets per field.
inline constexpr size_t kHeaderFieldOverhead = 32;
size_t headerListSize(const HeaderList& fields);

// The first value of `name` (lowercase), or empty.
std::string_view findHeader(const HeaderList& fields, std::string_view name);

// RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2. `te` is allowed only
// as "trailers". Names are compared case-insensitively (an HTTP/1.1 head may carry any case).
bool isConnectionSpecificHeader(std::string_view name, std::string_view value);

// Lowercases names and removes connection-specific fields, the fields that Connection names
// (RFC 9110 §7.6.1) and Host (the caller moves it to :authority). A `te` listing "trailers"
// among other codings becomes "te: trailers".
void stripConnectionSpecificHeaders(HeaderList& headers);

// Neutral head -> HTTP/2 fields, pseudo-header fields first (RFC 9113 §8.3). Strips what
// stripConnectionSpecificHeaders() strips; an empty authority is taken from Host. Fails on an
// empty method, scheme or path (CONNECT is not an ordinary request), and on names or values
// that are not valid HTTP/2 (RFC 9113 §8.2.1).
Result<HeaderList> toH2RequestFields(const RequestHead& head);
// The same for a response (:status first; 101 does not exist in HTTP/2, RFC 9113 §8.6).
Result<HeaderList> toH2ResponseFields(const ResponseHead& head);
// Trailers: regular fields only, validated and stripped the same way.
Result<HeaderList> toH2TrailerFields(const HeaderList& trailers);

// HTTP/2 request fields (already checked by nghttp2 for pseudo-header rules) -> neutral head.
// :authority wins; without it Host is used (RFC 9113 §8.3.1). A Host that differs from
// :authority makes the request malformed (RFC 9113 §8.3.1 SHOULD), as does a missing
// authority altogether.
Result<RequestHead> fromH2RequestFields(const HeaderList& fields);

}  // namespace nodemesh::waypoint::http2
