#include "waypoint/http2/http_head.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <string>
#include <utility>

namespace nodemesh::waypoint::http2 {

namespace {

const uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string toLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// Calls fn(token) for each comma-separated token of a list-valued field (RFC 9110 §5.6.1).
template <typename Fn>
void forEachToken(std::string_view list, Fn fn) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view token = trim(list.substr(0, comma));
    if (!token.empty()) {
      fn(token);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    list.remove_prefix(comma + 1);
  }
}

bool hasTrailersToken(std::string_view te) {
  bool found = false;
  forEachToken(te, [&found](std::string_view token) {
    // "trailers" takes no parameters, but tolerate ";q=..." from HTTP/1.1 clients.
    found = found || equalsIgnoreCase(trim(token.substr(0, token.find(';'))), "trailers");
  });
  return found;
}

Status checkField(const HeaderField& field) {
  if (field.name.empty() || field.name[0] == ':' ||
      nghttp2_check_header_name(bytes(field.name), field.name.size()) == 0) {
    return Error::invalid("invalid HTTP/2 header name '" + field.name + "'");
  }
  if (nghttp2_check_header_value_rfc9113(bytes(field.value), field.value.size()) == 0) {
    return Error::invalid("invalid value of HTTP/2 header '" + field.name + "'");
  }
  return okStatus();
}

// Appends the regular fields of `in`, stripped and validated, to `out`.
Status appendRegular(HeaderList in, HeaderList& out) {
  stripConnectionSpecificHeaders(in);
  for (HeaderField& field : in) {
    if (Status status = checkField(field); !status.ok()) {
      return status;
    }
    out.push_back(std::move(field));
  }
  return okStatus();
}

}  // namespace

size_t headerListSize(const HeaderList& fields) {
  size_t size = 0;
  for (const HeaderField& field : fields) {
    size += field.name.size() + field.value.size() + kHeaderFieldOverhead;
  }
  return size;
}

std::string_view findHeader(const HeaderList& fields, std::string_view name) {
  for (const HeaderField& field : fields) {
    if (field.name == name) {
      return field.value;
    }
  }
  return {};
}

bool isConnectionSpecificHeader(std::string_view name, std::string_view value) {
  if (equalsIgnoreCase(name, "te")) {
    return !equalsIgnoreCase(trim(value), "trailers");
  }
  return equalsIgnoreCase(name, "connection") || equalsIgnoreCase(name, "keep-alive") ||
         equalsIgnoreCase(name, "proxy-connection") ||
         equalsIgnoreCase(name, "transfer-encoding") || equalsIgnoreCase(name, "upgrade");
}

void stripConnectionSpecificHeaders(HeaderList& headers) {
  std::vector<std::string> nominated;  // fields listed by Connection, lowercased
  bool te_trailers = false;
  for (const HeaderField& field : headers) {
    if (equalsIgnoreCase(field.name, "connection")) {
      forEachToken(field.value,
                   [&](std::string_view token) { nominated.push_back(toLower(token)); });
    } else if (equalsIgnoreCase(field.name, "te")) {
      te_trailers = te_trailers || hasTrailersToken(field.value);
    }
  }
  // A te that lists "trailers" stays, as exactly "trailers", where the first te was.
  te_trailers =
      te_trailers && std::find(nominated.begin(), nominated.end(), "te") == nominated.end();
  HeaderList kept;
  kept.reserve(headers.size());
  for (HeaderField& field : headers) {
    std::string name = toLower(field.name);
    if (name == "te" && te_trailers) {
      kept.push_back(HeaderField{"te", "trailers"});
      te_trailers = false;
      continue;
    }
    if (name == "te" || name == "host" || isConnectionSpecificHeader(name, field.value) ||
        std::find(nominated.begin(), nominated.end(), name) != nominated.end()) {
      continue;
    }
    kept.push_back(HeaderField{std::move(name), std::move(field.value)});
  }
  headers = std::move(kept);
}

Result<HeaderList> toH2RequestFields(const RequestHead& head) {
  if (head.method.empty() || head.scheme.empty() || head.path.empty()) {
    return Error::invalid("HTTP/2 request needs a method, scheme and path");
  }
  if (head.method == "CONNECT") {
    return Error::invalid("CONNECT is not an ordinary HTTP/2 request");
  }
  std::string authority = head.authority;
  if (authority.empty()) {
    for (const HeaderField& field : head.headers) {
      if (equalsIgnoreCase(field.name, "host")) {
        authority = field.value;
        break;
      }
    }
  }
  if (!authority.empty() && nghttp2_check_authority(bytes(authority), authority.size()) == 0) {
    return Error::invalid("invalid authority '" + authority + "'");
  }
  if (nghttp2_check_method(bytes(head.method), head.method.size()) == 0 ||
      nghttp2_check_path(bytes(head.path), head.path.size()) == 0 ||
      nghttp2_check_header_value_rfc9113(bytes(head.scheme), head.scheme.size()) == 0) {
    return Error::invalid("invalid method, scheme or path");
  }
  HeaderList fields;
  fields.reserve(4 + head.headers.size());
  fields.push_back({":method", head.method});
  fields.push_back({":scheme", head.scheme});
  if (!authority.empty()) {
    fields.push_back({":authority", std::move(authority)});
  }
  fields.push_back({":path", head.path});
  if (Status status = appendRegular(head.headers, fields); !status.ok()) {
    return status.error();
  }
  return fields;
}

Result<HeaderList> toH2ResponseFields(const ResponseHead& head) {
  if (head.status < 100 || head.status > 999 || head.status == 101) {
    return Error::invalid("invalid HTTP/2 response status " + std::to_string(head.status));
  }
  HeaderList fields;
  fields.reserve(1 + head.headers.size());
  fields.push_back({":status", std::to_string(head.status)});
  if (Status status = appendRegular(head.headers, fields); !status.ok()) {
    return status.error();
  }
  return fields;
}

Result<HeaderList> toH2TrailerFields(const HeaderList& trailers) {
  HeaderList fields;
  if (Status status = appendRegular(trailers, fields); !status.ok()) {
    return status.error();
  }
  return fields;
}

Result<RequestHead> fromH2RequestFields(const HeaderList& fields) {
  RequestHead head;
  std::string_view host;
  bool has_host = false;
  for (const HeaderField& field : fields) {
    if (field.name == ":method") {
      head.method = field.value;
    } else if (field.name == ":scheme") {
      head.scheme = field.value;
    } else if (field.name == ":authority") {
      head.authority = field.value;
    } else if (field.name == ":path") {
      head.path = field.value;
    } else if (!field.name.empty() && field.name[0] == ':') {
      return Error::invalid("unexpected pseudo-header " + field.name);
    } else if (field.name == "host") {
      if (has_host && host != field.value) {
        return Error::invalid("conflicting host fields");
      }
      host = field.value;
      has_host = true;
    } else {
      head.headers.push_back(field);
    }
  }
  if (head.authority.empty()) {
    head.authority = host;
  } else if (has_host && !equalsIgnoreCase(host, head.authority)) {
    return Error::invalid("host '" + std::string(host) + "' differs from :authority '" +
                          head.authority + "'");
  }
  if (head.authority.empty()) {
    return Error::invalid("request without :authority or host");
  }
  return head;
}

}  // namespace nodemesh::waypoint::http2
