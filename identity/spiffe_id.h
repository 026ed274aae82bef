#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "common/result.h"

namespace nodemesh::identity {

// A workload identity in Istio's SPIFFE form: spiffe://<trust-domain>/ns/<namespace>/sa/<sa>.
// Always valid once constructed (only create() and parse() make one).
class SpiffeId {
 public:
  // Validates each part: the trust domain is lower-case letters, digits, '.', '-', '_' (at
  // most 255 bytes, SPIFFE ID spec section 2.1); namespace and service account are non-empty
  // path segments of letters, digits, '.', '-', '_' and neither "." nor ".." (section 2.2).
  static Result<SpiffeId> create(std::string trust_domain, std::string ns,
                                 std::string service_account);
  // Strict: exactly "spiffe://" + trust domain + "/ns/<ns>/sa/<sa>", nothing else (no port,
  // user info, query, fragment, percent-encoding, trailing slash or extra segments).
  static Result<SpiffeId> parse(std::string_view uri);

  static Status validateTrustDomain(std::string_view trust_domain);

  const std::string& trustDomain() const { return trust_domain_; }
  const std::string& ns() const { return ns_; }
  const std::string& serviceAccount() const { return service_account_; }
  std::string toString() const;

  friend bool operator==(const SpiffeId&, const SpiffeId&) = default;
  // Ordered by trust domain, namespace, service account (std::map keys). Not a defaulted <=>:
  // clang-tidy 14 misreads the synthesized comparison (modernize-use-nullptr).
  friend bool operator<(const SpiffeId& a, const SpiffeId& b) {
    return std::tie(a.trust_domain_, a.ns_, a.service_account_) <
           std::tie(b.trust_domain_, b.ns_, b.service_account_);
  }

 private:
  SpiffeId(std::string trust_domain, std::string ns, std::string service_account)
      : trust_domain_(std::move(trust_domain)),
        ns_(std::move(ns)),
        service_account_(std::move(service_account)) {}

  std::string trust_domain_;
  std::string ns_;
  std::string service_account_;
};

struct SpiffeIdHash {
  size_t operator()(const SpiffeId& id) const noexcept;
};

}  // namespace nodemesh::identity
