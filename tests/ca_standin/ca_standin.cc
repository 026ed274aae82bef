#include "tests/ca_standin/ca_standin.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>

#include "identity/openssl_ptr.h"
#include "identity/workload_certificate.h"

namespace nodemesh::testing {
namespace {

using identity::EvpPkeyPtr;
using identity::opensslError;
using identity::X509Ptr;

constexpr std::chrono::seconds kDefaultValidity = std::chrono::hours(24);

struct X509ReqDeleter {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
struct ExtensionStackDeleter {
  void operator()(STACK_OF(X509_EXTENSION) * s) const {
    sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
  }
};

// The value of the first `key` header, "" when absent.
std::string header(const grpc::ServerContext& context, const std::string& key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

struct ParsedCsr {
  std::unique_ptr<X509_REQ, X509ReqDeleter> req;
  std::vector<std::string> uris;
  std::string key_group;
};

Result<ParsedCsr> parseCsr(const std::string& pem) {
  identity::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  ParsedCsr out;
  if (bio) out.req.reset(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!out.req) return opensslError("CSR: not a PEM certificate request", EINVAL);
  EVP_PKEY* key = X509_REQ_get0_pubkey(out.req.get());
  if (key == nullptr || X509_REQ_verify(out.req.get(), key) != 1) {
    return opensslError("CSR: its signature does not verify", EINVAL);
  }
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    std::array<char, 64> group{};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(key, group.data(), group.size(), &len) == 1) {
      out.key_group.assign(group.data(), len);
    }
  }
  std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionStackDeleter> extensions(
      X509_REQ_get_extensions(out.req.get()));
  for (int i = 0; extensions && i < sk_X509_EXTENSION_num(extensions.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(extensions.get(), i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
    identity::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
    for (int j = 0; names && j < sk_GENERAL_NAME_num(names.get()); ++j) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), j);
      if (name->type != GEN_URI) continue;
      const ASN1_IA5STRING* s = name->d.uniformResourceIdentifier;
      out.uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                            static_cast<size_t>(ASN1_STRING_length(s)));
    }
  }
  ERR_clear_error();
  return out;
}

}  // namespace

CaStandin::CaStandin(identity::LocalCa& ca, CaStandinOptions options)
    : ca_(ca), options_(std::move(options)) {}

grpc::Status CaStandin::CreateCertificate(grpc::ServerContext* context,
                                          const istio::v1::auth::IstioCertificateRequest* request,
                                          istio::v1::auth::IstioCertificateResponse* response) {
  CaStandinCall call;
  grpc::Status status = handle(context, *request, *response, call);
  call.status = status.error_code();
  std::lock_guard lock(mutex_);
  calls_.push_back(std::move(call));
  return status;
}

grpc::Status CaStandin::handle(grpc::ServerContext* context,
                               const istio::v1::auth::IstioCertificateRequest& request,
                               istio::v1::auth::IstioCertificateResponse& response,
                               CaStandinCall& call) {
  call.authorization = header(*context, "authorization");
  call.cluster_id = header(*context, "clusterid");
  call.validity_seconds = request.validity_duration();
  if (request.has_metadata()) {
    const auto& fields = request.metadata().fields();
    auto it = fields.find("ImpersonatedIdentity");
    if (it != fields.end()) call.impersonated_identity = it->second.string_value();
  }

  bool fail = false;
  bool wrong_root = false;
  std::optional<std::string> wrong_identity;
  std::chrono::milliseconds stall{0};
  std::set<std::string> allowed;
  {
    std::lock_guard lock(mutex_);
    if (fail_next_ > 0) {
      --fail_next_;
      fail = true;
    }
    if (wrong_identity_next_ > 0) {
      --wrong_identity_next_;
      wrong_identity = wrong_identity_;
    }
    if (wrong_root_next_ > 0) {
      --wrong_root_next_;
      wrong_root = true;
    }
    if (stall_next_ > 0) {
      --stall_next_;
      stall = stall_;
    }
    allowed = options_.allowed_impersonations;
  }
  if (stall.count() > 0) std::this_thread::sleep_for(stall);
  if (fail) return {grpc::StatusCode::UNAVAILABLE, "stand-in CA told to fail"};

  if (!options_.required_token.empty() &&
      call.authorization != "Bearer " + options_.required_token) {
    return {grpc::StatusCode::UNAUTHENTICATED, "authenticate failure: bad or missing token"};
  }
  auto csr = parseCsr(request.csr());
  if (!csr) return {grpc::StatusCode::INVALID_ARGUMENT, csr.error().message};
  call.csr_uris = csr->uris;
  call.csr_key_group = csr->key_group;

  std::string subject = options_.caller_identity;
  if (call.impersonated_identity) {
    if (allowed.count(*call.impersonated_identity) == 0) {
      return {grpc::StatusCode::PERMISSION_DENIED,
              fmt::format("caller {} may not impersonate {}", options_.caller_identity,
                          *call.impersonated_identity)};
    }
    subject = *call.impersonated_identity;
  }
  if (wrong_identity) subject = *wrong_identity;
  auto id = identity::SpiffeId::parse(subject);
  if (!id) return {grpc::StatusCode::INVALID_ARGUMENT, id.error().message};

  std::chrono::seconds validity(request.validity_duration());
  if (validity.count() <= 0) validity = kDefaultValidity;
  validity = std::min(validity, options_.max_validity);
  auto leaf = ca_.signPublicKey(*id, X509_REQ_get0_pubkey(csr->req.get()), validity);
  if (!leaf) return {grpc::StatusCode::INTERNAL, leaf.error().message};
  auto leaf_pem = identity::certificateToPem(leaf->get());
  if (!leaf_pem) return {grpc::StatusCode::INTERNAL, leaf_pem.error().message};
  std::string root_pem = ca_.rootCertificatePem();
  if (wrong_root) {
    auto other = makeSelfSignedServingCertificate("wrong-root.invalid");
    if (!other) return {grpc::StatusCode::INTERNAL, other.error().message};
    root_pem = other->cert_pem;
  }
  response.add_cert_chain(std::move(leaf_pem).value());
  response.add_cert_chain(std::move(root_pem));
  call.signed_identity = id->toString();
  return grpc::Status::OK;
}

void CaStandin::failNext(int n) {
  std::lock_guard lock(mutex_);
  fail_next_ = n;
}

void CaStandin::signWrongIdentityNext(int n, std::string identity) {
  std::lock_guard lock(mutex_);
  wrong_identity_next_ = n;
  wrong_identity_ = std::move(identity);
}

void CaStandin::returnWrongRootNext(int n) {
  std::lock_guard lock(mutex_);
  wrong_root_next_ = n;
}

void CaStandin::stallNext(int n, std::chrono::milliseconds delay) {
  std::lock_guard lock(mutex_);
  stall_next_ = n;
  stall_ = delay;
}

void CaStandin::allowImpersonation(const std::string& identity) {
  std::lock_guard lock(mutex_);
  options_.allowed_impersonations.insert(identity);
}

std::vector<CaStandinCall> CaStandin::calls() const {
  std::lock_guard lock(mutex_);
  return calls_;
}

Result<ServingCertificate> makeSelfSignedServingCertificate(const std::string& dns_name) {
  auto key = identity::generateP256Key();
  if (!key) return key.error();
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return opensslError("creating the serving certificate");
  }
  std::array<unsigned char, 16> serial{};
  if (RAND_bytes(serial.data(), serial.size()) != 1) return opensslError("RAND_bytes");
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x01);
  identity::BignumPtr bn(BN_bin2bn(serial.data(), serial.size(), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return opensslError("setting the serving certificate serial");
  }
  const time_t now = std::time(nullptr);
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), now - 3600) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), now + 30L * 24 * 3600) == nullptr) {
    return opensslError("setting the serving certificate validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(dns_name.data()),
                                 static_cast<int>(dns_name.size()), -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1 || X509_set_pubkey(cert.get(), key->get()) != 1) {
    return opensslError("creating the serving certificate");
  }
  X509V3_CTX ctx{};
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  const std::string san = fmt::format("DNS:{}", dns_name);
  for (const auto& [nid, value] :
       {std::pair{NID_basic_constraints, std::string("CA:TRUE")},
        std::pair{NID_key_usage, std::string("digitalSignature,keyCertSign")},
        std::pair{NID_ext_key_usage, std::string("serverAuth")},
        std::pair{NID_subject_alt_name, san}}) {
    identity::X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) {
      return opensslError(fmt::format("adding serving certificate extension {}", value));
    }
  }
  if (X509_sign(cert.get(), key->get(), EVP_sha256()) <= 0) {
    return opensslError("signing the serving certificate");
  }
  ServingCertificate out;
  auto cert_pem = identity::certificateToPem(cert.get());
  if (!cert_pem) return cert_pem.error();
  out.cert_pem = std::move(cert_pem).value();
  identity::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key->get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return opensslError("encoding the serving key");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  out.key_pem.assign(data, static_cast<size_t>(len));
  return out;
}

Result<TlsTestServer> startTlsTestServer(grpc::Service& service,
                                         const ServingCertificate& serving) {
  grpc::SslServerCredentialsOptions tls;
  tls.pem_key_cert_pairs.push_back({serving.key_pem, serving.cert_pem});
  TlsTestServer out;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(tls), &out.port);
  builder.RegisterService(&service);
  out.server = builder.BuildAndStart();
  if (!out.server || out.port == 0) {
    return Error::invalid("stand-in istiod: the gRPC server did not start on 127.0.0.1");
  }
  return out;
}

}  // namespace nodemesh::testing
