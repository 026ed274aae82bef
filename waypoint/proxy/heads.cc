#include "waypoint/proxy/heads.h"

#include <algorithm>
#include <cctype>

namespace nodemesh::waypoint {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Headers toRouting(const http1::Headers& headers, bool skip_host) {
  Headers out;
  out.reserve(headers.size());
  for (const auto& f : headers.fields()) {
    std::string name = lower(f.name);
    if (skip_host && name == "host") continue;
    out.push_back(Header{std::move(name), f.value});
  }
  return out;
}

}  // namespace

RequestHead toRoutingHead(const http1::RequestHead& head, const http1::RequestInfo& info) {
  RequestHead r;
  r.method = head.method;
  r.scheme = info.scheme.empty() ? "http" : info.scheme;
  r.authority = info.authority;
  r.path = info.path;
  r.headers = toRouting(head.headers, /*skip_host=*/true);
  return r;
}

http1::RequestHead toHttp1Head(const RequestHead& routed, http1::Version version) {
  http1::RequestHead h;
  h.method = routed.method;
  h.target = routed.path;
  h.version = version;
  if (!routed.authority.empty()) h.headers.add("host", routed.authority);
  for (const auto& f : routed.headers) h.headers.add(f.name, f.value);
  return h;
}

ResponseHead toRoutingHead(const http1::ResponseHead& head) {
  ResponseHead r;
  r.status = head.status;
  r.headers = toRouting(head.headers, /*skip_host=*/false);
  return r;
}

void applyToHttp1(const ResponseHead& routed, http1::ResponseHead& head) {
  if (routed.status != head.status) head.reason.clear();
  head.status = routed.status;
  http1::Headers headers;
  for (const auto& f : routed.headers) headers.add(f.name, f.value);
  head.headers = std::move(headers);
}

}  // namespace nodemesh::waypoint
