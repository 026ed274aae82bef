#pragma once

// The values the HTTP/1.1 codec hands out and takes in: request and response heads with an
// ordered header list, and the facts the parser derived from a head (framing, keep-alive,
// upgrade). Shared by the server side (requests in, responses out) and the client side
// (requests out, responses in).

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodemesh::waypoint::http1 {

enum class Version { kHttp10, kHttp11 };

std::string_view versionString(Version version);  // "HTTP/1.0", "HTTP/1.1"

struct HeaderField {
  std::string name;   // as received (case preserved); compare with equalsIgnoreCase
  std::string value;  // without leading and trailing whitespace (RFC 9112 §5)

  bool operator==(const HeaderField&) const = default;
};

// ASCII case-insensitive comparison (field names and tokens, RFC 9110 §5.1).
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// An ordered header list: order and repetitions are kept as on the wire (RFC 9110 §5.3 allows
// combining only some fields; Set-Cookie never), lookups ignore case.
class Headers {
 public:
  Headers() = default;
  Headers(std::initializer_list<HeaderField> fields) : fields_(fields) {}

  void add(std::string_view name, std::string_view value);
  // The first value of `name`, if any.
  std::optional<std::string_view> get(std::string_view name) const;
  std::vector<std::string_view> getAll(std::string_view name) const;
  size_t count(std::string_view name) const;
  bool has(std::string_view name) const { return count(name) > 0; }
  // Whether any `name` field holds `token` in its comma-separated list (Connection: close,
  // Transfer-Encoding: chunked), case-insensitively.
  bool hasToken(std::string_view name, std::string_view token) const;
  // Removes every `name` field; returns how many.
  size_t remove(std::string_view name);

  const std::vector<HeaderField>& fields() const { return fields_; }
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  bool operator==(const Headers&) const = default;

 private:
  std::vector<HeaderField> fields_;
};

// The comma-separated elements of a list-valued field (RFC 9110 §5.6.1), trimmed, empty
// elements dropped.
std::vector<std::string_view> splitList(std::string_view value);

// Hop-by-hop fields (RFC 9110 §7.6.1) that a proxy must not forward, and must not send in
// HTTP/2 at all (RFC 9113 §8.2.2): Connection, Keep-Alive, Proxy-Connection, TE,
// Transfer-Encoding, Upgrade, and every name listed in Connection. Lowercase, no duplicates.
// (TE: trailers is allowed in HTTP/2; the HTTP/2 side adds it back if it needs it.)
std::vector<std::string> hopByHopNames(const Headers& headers);
// Removes the fields hopByHopNames() lists; returns how many were removed.
size_t stripHopByHop(Headers& headers);

struct RequestHead {
  std::string method;  // token, case-sensitive ("GET")
  std::string target;  // request-target as received ("/a?b", "http://h/a", "*")
  Version version = Version::kHttp11;
  Headers headers;
};

struct ResponseHead {
  int status = 200;
  std::string reason;  // may be empty; the writer uses the standard phrase when it is
  Version version = Version::kHttp11;
  Headers headers;
};

// How a message's body is delimited (RFC 9112 §6.3).
enum class BodyFraming {
  kNone,           // no body: no length fields, HEAD / 1xx / 204 / 304 responses, Content-Length: 0
  kContentLength,  // exactly content_length bytes
  kChunked,        // Transfer-Encoding: chunked, possibly with trailers
  kUntilClose,     // responses only: the body ends when the server closes the connection
};

// RFC 9112 §3.2.
enum class TargetForm { kOrigin, kAbsolute, kAuthority, kAsterisk };

// What the parser derived from a request head.
struct RequestInfo {
  TargetForm target_form = TargetForm::kOrigin;
  // Where the request goes: the authority of an absolute-form target, else the Host field
  // (RFC 9112 §3.2.2: a proxy ignores Host when the target is absolute). "host[:port]".
  std::string authority;
  // origin-form path and query ("/a?b"; "/" when an absolute target has none; "*" for asterisk).
  std::string path;
  std::string scheme;  // "http" / "https" for absolute-form, else empty
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;  // when framing is kContentLength
  // The client wants the connection kept open after this exchange (RFC 9112 §9.3).
  bool keep_alive = true;
  // HTTP/1.1 "Expect: 100-continue" (RFC 9110 §10.1.1); see ServerCodec::sendContinue.
  bool expect_continue = false;
  // "Connection: upgrade" with an "Upgrade" field (h2c, websocket): the codec stops here, see
  // ServerHandler::onUpgrade.
  bool upgrade = false;
};

// What the parser derived from a response head (given the request it answers).
struct ResponseInfo {
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;  // the server keeps the connection open after this response
  bool interim = false;    // 1xx other than 101: a final response follows
};

// The standard reason phrase of a status code ("Not Found"), "Unknown" for others.
std::string_view reasonPhrase(int status);

}  // namespace nodemesh::waypoint::http1
