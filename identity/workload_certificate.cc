#include "identity/workload_certificate.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace nodemesh::identity {

WorkloadCertificate::WorkloadCertificate(ConstructionTag /*tag*/, EvpPkeyPtr key, X509Ptr leaf,
                                         std::vector<X509Ptr> chain, SpiffeId id,
                                         std::chrono::system_clock::time_point not_before,
                                         std::chrono::system_clock::time_point not_after)
    : key_(std::move(key)),
      leaf_(std::move(leaf)),
      chain_(std::move(chain)),
      identity_(std::move(id)),
      not_before_(not_before),
      not_after_(not_after) {}

Result<std::shared_ptr<const WorkloadCertificate>> WorkloadCertificate::create(
    EvpPkeyPtr key, X509Ptr leaf, std::vector<X509Ptr> chain) {
  if (!key || !leaf) return Error::invalid("workload certificate: missing key or certificate");
  for (const X509Ptr& c : chain) {
    if (!c) return Error::invalid("workload certificate: null certificate in chain");
  }
  ERR_clear_error();
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    return opensslError("workload certificate does not match its private key", EINVAL);
  }
  auto id = spiffeIdFromCertificate(leaf.get());
  if (!id) return id.error();
  auto not_before = asn1TimeToTimePoint(X509_get0_notBefore(leaf.get()));
  if (!not_before) return not_before.error();
  auto not_after = asn1TimeToTimePoint(X509_get0_notAfter(leaf.get()));
  if (!not_after) return not_after.error();
  if (*not_after <= *not_before) {
    return Error::invalid("workload certificate: notAfter is not after notBefore");
  }
  return std::make_shared<const WorkloadCertificate>(
      ConstructionTag(), std::move(key), std::move(leaf), std::move(chain), std::move(id).value(),
      *not_before, *not_after);
}

std::string WorkloadCertificate::serialHex() const {
  return certificateSerialHex(leaf_.get());
}

std::string certificateSerialHex(const X509* cert) {
  if (cert == nullptr) return {};
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) return {};
  char* hex = BN_bn2hex(bn.get());
  if (hex == nullptr) return {};
  std::string out(hex);
  OPENSSL_free(hex);
  return out;
}

std::string WorkloadCertificate::pemCertificate() const {
  std::string out;
  auto leaf = certificateToPem(leaf_.get());
  if (leaf) out += *leaf;
  for (const X509Ptr& c : chain_) {
    auto pem = certificateToPem(c.get());
    if (pem) out += *pem;
  }
  return out;
}

Result<std::string> certificateToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return opensslError("encoding certificate as PEM");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) return Error::invalid("encoding certificate as PEM: empty");
  return std::string(data, static_cast<size_t>(len));
}

Result<SpiffeId> spiffeIdFromCertificate(X509* cert) {
  if (cert == nullptr) return Error::invalid("no certificate");
  int crit = 0;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, nullptr)));
  if (!names) {
    // crit == -1: absent; -2: present more than once (invalid per RFC 5280 4.2).
    return Error::invalid(crit == -2 ? "certificate has more than one subjectAltName extension"
                                     : "certificate has no subjectAltName (want a SPIFFE ID)");
  }
  std::optional<std::string_view> found;
  const int count = sk_GENERAL_NAME_num(names.get());
  for (int i = 0; i < count; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    const std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                                static_cast<size_t>(ASN1_STRING_length(uri)));
    if (!text.starts_with("spiffe://")) continue;
    if (found) return Error::invalid("certificate has more than one spiffe:// URI SAN");
    found = text;
  }
  if (!found) return Error::invalid("certificate has no spiffe:// URI SAN");
  return SpiffeId::parse(*found);
}

Result<std::chrono::system_clock::time_point> asn1TimeToTimePoint(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return opensslError("certificate has an invalid time", EINVAL);
  }
  const time_t secs = timegm(&tm);
  return std::chrono::system_clock::from_time_t(secs);
}

}  // namespace nodemesh::identity
