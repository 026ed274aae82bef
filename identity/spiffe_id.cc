#include "identity/spiffe_id.h"

#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace nodemesh::identity {
namespace {

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxTrustDomainLength = 255;  // SPIFFE ID spec 2.1
constexpr size_t kMaxUriLength = 2048;         // SPIFFE ID spec 2.3

bool isTrustDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool isPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

Status validateSegment(std::string_view what, std::string_view segment) {
  if (segment.empty()) return Error::invalid("SPIFFE ID: empty " + std::string(what));
  if (segment == "." || segment == "..") {
    return Error::invalid("SPIFFE ID: " + std::string(what) + " must not be '.' or '..'");
  }
  for (char c : segment) {
    if (!isPathChar(c)) {
      return Error::invalid("SPIFFE ID: invalid character in " + std::string(what) + " '" +
                            std::string(segment) + "'");
    }
  }
  return okStatus();
}

// Splits off the next "/<segment>" of `rest`; false when `rest` does not start with '/'.
bool nextSegment(std::string_view& rest, std::string_view& segment) {
  if (rest.empty() || rest.front() != '/') return false;
  rest.remove_prefix(1);
  const size_t end = rest.find('/');
  segment = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  return true;
}

}  // namespace

Status SpiffeId::validateTrustDomain(std::string_view trust_domain) {
  if (trust_domain.empty()) return Error::invalid("SPIFFE ID: empty trust domain");
  if (trust_domain.size() > kMaxTrustDomainLength) {
    return Error::invalid("SPIFFE ID: trust domain longer than 255 bytes");
  }
  for (char c : trust_domain) {
    if (!isTrustDomainChar(c)) {
      return Error::invalid("SPIFFE ID: invalid character in trust domain '" +
                            std::string(trust_domain) +
                            "' (allowed: lower-case letters, digits, '.', '-', '_')");
    }
  }
  return okStatus();
}

Result<SpiffeId> SpiffeId::create(std::string trust_domain, std::string ns,
                                  std::string service_account) {
  if (auto st = validateTrustDomain(trust_domain); !st) return st.error();
  if (auto st = validateSegment("namespace", ns); !st) return st.error();
  if (auto st = validateSegment("service account", service_account); !st) return st.error();
  return SpiffeId(std::move(trust_domain), std::move(ns), std::move(service_account));
}

Result<SpiffeId> SpiffeId::parse(std::string_view uri) {
  if (uri.size() > kMaxUriLength) return Error::invalid("SPIFFE ID longer than 2048 bytes");
  if (!uri.starts_with(kScheme)) {
    return Error::invalid("not a SPIFFE ID (want spiffe://<td>/ns/<ns>/sa/<sa>): '" +
                          std::string(uri) + "'");
  }
  std::string_view rest = uri.substr(kScheme.size());
  const size_t slash = rest.find('/');
  const std::string_view trust_domain = rest.substr(0, slash);
  rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash);

  std::string_view ns_key;
  std::string_view ns;
  std::string_view sa_key;
  std::string_view sa;
  if (!nextSegment(rest, ns_key) || ns_key != "ns" || !nextSegment(rest, ns) ||
      !nextSegment(rest, sa_key) || sa_key != "sa" || !nextSegment(rest, sa) || !rest.empty()) {
    return Error::invalid("SPIFFE ID '" + std::string(uri) +
                          "' does not have the form spiffe://<td>/ns/<ns>/sa/<sa>");
  }
  auto id = create(std::string(trust_domain), std::string(ns), std::string(sa));
  if (!id) return Error::invalid(id.error().message + " in '" + std::string(uri) + "'");
  return id;
}

std::string SpiffeId::toString() const {
  std::string out;
  out.reserve(kScheme.size() + trust_domain_.size() + ns_.size() + service_account_.size() + 8);
  out.append(kScheme)
      .append(trust_domain_)
      .append("/ns/")
      .append(ns_)
      .append("/sa/")
      .append(service_account_);
  return out;
}

size_t SpiffeIdHash::operator()(const SpiffeId& id) const noexcept {
  const std::hash<std::string> h;
  size_t seed = h(id.trustDomain());
  for (const std::string* part : {&id.ns(), &id.serviceAccount()}) {
    seed ^= h(*part) + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2);
  }
  return seed;
}

}  // namespace nodemesh::identity
