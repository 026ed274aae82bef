#include "xds/istio_ca_client.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>
#include <utility>

#include <fmt/format.h>

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "istio/v1/auth/ca.grpc.pb.h"

namespace nodemesh::xds {
namespace {

using identity::EvpPkeyPtr;
using identity::opensslError;
using identity::X509Ptr;

// istiod may stamp notBefore a little ahead of our clock; tolerate that much skew.
constexpr std::chrono::minutes kNotBeforeSkew(5);
constexpr size_t kMaxRootFileBytes = 1 << 20;

struct X509StackDeleter {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct ExtensionStackDeleter {
  void operator()(STACK_OF(X509_EXTENSION) * s) const {
    sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
  }
};
struct X509ReqDeleter {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};

// A PKCS#10 request signed by `key` whose only content is the critical URI SAN `uri` (no
// subject: like ztunnel, the SAN is the identity).
Result<std::string> makeCsr(EVP_PKEY* key, const std::string& uri) {
  std::unique_ptr<X509_REQ, X509ReqDeleter> req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_pubkey(req.get(), key) != 1) {
    return opensslError("building the CSR");
  }
  auto names = identity::uriGeneralNames(uri);
  if (!names) return names.error();
  std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionStackDeleter> extensions(
      sk_X509_EXTENSION_new_null());
  X509_EXTENSION* san = X509V3_EXT_i2d(NID_subject_alt_name, /*crit=*/1, names->get());
  if (!extensions || san == nullptr || sk_X509_EXTENSION_push(extensions.get(), san) <= 0) {
    X509_EXTENSION_free(san);
    return opensslError("building the CSR's extensions");
  }
  if (X509_REQ_add_extensions(req.get(), extensions.get()) != 1 ||
      X509_REQ_sign(req.get(), key, EVP_sha256()) <= 0) {
    return opensslError("signing the CSR");
  }
  identity::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return opensslError("encoding the CSR");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// Every PEM certificate in `pem`, at least one. Text outside PEM blocks is ignored, a broken
// block is an error.
Result<std::vector<X509Ptr>> parseCertificates(const std::string& pem, const std::string& what) {
  if (pem.size() > static_cast<size_t>(INT32_MAX)) return Error::invalid(what + ": too large");
  identity::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return opensslError(what);
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert) {
      certs.push_back(std::move(cert));
      continue;
    }
    const unsigned long err = ERR_peek_last_error();
    if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
      ERR_clear_error();  // the end: no further PEM block
      break;
    }
    return opensslError(what + ": not a valid PEM certificate", EINVAL);
  }
  if (certs.empty()) return Error::invalid(what + ": no PEM certificate in it");
  return certs;
}

// Verifies leaf -> intermediates -> one of `roots` at time `at`. Returns the OpenSSL reason.
Result<bool> verifiesAt(X509* leaf, const std::vector<X509Ptr>& intermediates,
                        const std::vector<X509Ptr>& roots, std::chrono::system_clock::time_point at,
                        int* error) {
  identity::X509StorePtr store(X509_STORE_new());
  if (!store) return opensslError("building the trust store");
  for (const auto& root : roots) {
    if (X509_STORE_add_cert(store.get(), root.get()) != 1) {
      return opensslError("adding a root to the trust store");
    }
  }
  std::unique_ptr<STACK_OF(X509), X509StackDeleter> untrusted(sk_X509_new_null());
  if (!untrusted) return opensslError("building the chain");
  for (const auto& cert : intermediates) {
    X509Ptr shared = identity::shareX509(cert.get());
    if (!shared || sk_X509_push(untrusted.get(), shared.get()) <= 0) {
      return opensslError("building the chain");
    }
    static_cast<void>(shared.release());  // the stack owns it now
  }
  identity::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return opensslError("building the verification context");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, std::chrono::system_clock::to_time_t(at));
  const int ok = X509_verify_cert(ctx.get());
  *error = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  return ok == 1;
}

std::string grpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return fmt::format("code {}", static_cast<int>(code));
  }
}

Result<std::string> readRootFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::fromErrno(fmt::format("reading istiod root certificate {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Error::fromErrno(fmt::format("reading istiod root certificate {}", path));
  if (text.str().size() > kMaxRootFileBytes) {
    return Error::invalid(fmt::format("istiod root certificate {}: larger than 1 MiB", path));
  }
  return text.str();
}

}  // namespace

Result<std::shared_ptr<const TrustBundle>> trustBundleFromPem(const std::string& pem,
                                                              const std::string& what) {
  auto certs = parseCertificates(pem, what);
  if (!certs) return certs.error();
  auto bundle = std::make_shared<TrustBundle>();
  for (auto& cert : *certs) {
    auto text = identity::certificateToPem(cert.get());
    if (!text) return text.error();
    bundle->pem += *text;
    bundle->roots.push_back(std::move(cert));
  }
  return std::shared_ptr<const TrustBundle>(std::move(bundle));
}

Result<CheckedChain> checkCertificateChain(const identity::SpiffeId& id, EvpPkeyPtr key,
                                           const std::vector<std::string>& cert_chain,
                                           std::chrono::system_clock::time_point now) {
  const std::string asked = id.toString();
  if (cert_chain.empty()) {
    return Error::invalid(fmt::format("Istio CA answered no certificate for {}", asked));
  }
  // ztunnel does the same: the last element is the root (possibly several roots in one PEM
  // text), everything between the leaf and it is an intermediate.
  if (cert_chain.size() < 2) {
    return Error::invalid(
        fmt::format("Istio CA answer for {} has a leaf but no root certificate", asked));
  }
  auto leaves = parseCertificates(cert_chain.front(), "Istio CA answer: leaf certificate");
  if (!leaves) return leaves.error();
  if (leaves->size() != 1) {
    return Error::invalid(fmt::format(
        "Istio CA answer for {}: first element holds {} certificates, expected the leaf only",
        asked, leaves->size()));
  }
  X509Ptr leaf = std::move(leaves->front());
  std::vector<X509Ptr> intermediates;
  for (size_t i = 1; i + 1 < cert_chain.size(); ++i) {
    auto certs =
        parseCertificates(cert_chain[i], fmt::format("Istio CA answer: chain element {}", i));
    if (!certs) return certs.error();
    for (auto& cert : *certs) intermediates.push_back(std::move(cert));
  }
  auto bundle = trustBundleFromPem(cert_chain.back(), "Istio CA answer: root certificate");
  if (!bundle) return bundle.error();

  auto got = identity::spiffeIdFromCertificate(leaf.get());
  if (!got) {
    return Error::invalid(
        fmt::format("Istio CA answer for {}: leaf certificate: {}", asked, got.error().message));
  }
  if (*got != id) {
    return Error::invalid(
        fmt::format("Istio CA signed a certificate for {}, not for {} as asked: refused",
                    got->toString(), asked));
  }
  int verify_error = 0;
  auto verified = verifiesAt(leaf.get(), intermediates, (*bundle)->roots, now, &verify_error);
  if (!verified) return verified.error();
  if (!*verified && verify_error == X509_V_ERR_CERT_NOT_YET_VALID) {
    verified = verifiesAt(leaf.get(), intermediates, (*bundle)->roots, now + kNotBeforeSkew,
                          &verify_error);
    if (!verified) return verified.error();
  }
  if (!*verified) {
    return Error::invalid(
        fmt::format("Istio CA answer for {}: the chain does not verify to its root ({}): refused",
                    asked, X509_verify_cert_error_string(verify_error)));
  }
  std::vector<X509Ptr> chain = std::move(intermediates);
  auto cert =
      identity::WorkloadCertificate::create(std::move(key), std::move(leaf), std::move(chain));
  if (!cert) {
    // The leaf's key is not the CSR's (or the leaf is otherwise unusable).
    return Error::invalid(
        fmt::format("Istio CA answer for {}: {}: refused", asked, cert.error().message));
  }
  return CheckedChain{std::move(cert).value(), std::move(bundle).value()};
}

class IstioCaClient::Stub {
 public:
  explicit Stub(const std::shared_ptr<grpc::Channel>& channel)
      : stub(istio::v1::auth::IstioCertificateService::NewStub(channel)) {}
  std::unique_ptr<istio::v1::auth::IstioCertificateService::Stub> stub;
};

Result<std::unique_ptr<IstioCaClient>> IstioCaClient::create(
    const std::shared_ptr<grpc::Channel>& channel, IstiodConnection connection,
    const identity::Clock& clock, IstioCaOptions options) {
  if (!channel) return Error::invalid("Istio CA client: no channel to istiod");
  if (options.timeout <= std::chrono::milliseconds(0)) {
    return Error::invalid("Istio CA client: the call timeout must be positive");
  }
  auto pem = readRootFile(connection.root_cert_file);
  if (!pem) return pem.error();
  auto bundle = trustBundleFromPem(
      *pem, fmt::format("istiod root certificate {}", connection.root_cert_file));
  if (!bundle) return bundle.error();
  return std::make_unique<IstioCaClient>(channel, std::move(connection), clock, options,
                                         std::move(bundle).value());
}

IstioCaClient::IstioCaClient(const std::shared_ptr<grpc::Channel>& channel,
                             IstiodConnection connection, const identity::Clock& clock,
                             IstioCaOptions options,
                             std::shared_ptr<const TrustBundle> initial_bundle)
    : stub_(std::make_unique<Stub>(channel)),
      connection_(std::move(connection)),
      clock_(clock),
      options_(options),
      bundle_(std::move(initial_bundle)) {}

IstioCaClient::~IstioCaClient() = default;

Result<std::shared_ptr<const identity::WorkloadCertificate>> IstioCaClient::issue(
    const identity::SpiffeId& id, std::chrono::seconds validity) {
  if (validity <= std::chrono::seconds(0)) {
    return Error::invalid("certificate validity must be positive");
  }
  const std::string uri = id.toString();
  auto key = identity::generateP256Key();
  if (!key) return key.error();
  auto csr = makeCsr(key->get(), uri);
  if (!csr) return csr.error();

  istio::v1::auth::IstioCertificateRequest request;
  request.set_csr(std::move(csr).value());
  request.set_validity_duration(validity.count());
  if (options_.impersonate) {
    (*request.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(uri);
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options_.timeout);
  if (auto st = addIstiodCallHeaders(context, connection_); !st) {
    return Error{st.error().code,
                 fmt::format("Istio CA request for {}: {}", uri, st.error().message)};
  }
  istio::v1::auth::IstioCertificateResponse response;
  const grpc::Status status = stub_->stub->CreateCertificate(&context, request, &response);
  if (!status.ok()) {
    return Error{status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? ETIMEDOUT : EIO,
                 fmt::format("Istio CA at {} refused or failed CreateCertificate for {}: {}: {}",
                             connection_.address, uri, grpcCodeName(status.error_code()),
                             status.error_message())};
  }
  std::vector<std::string> chain(response.cert_chain().begin(), response.cert_chain().end());
  auto checked = checkCertificateChain(id, std::move(key).value(), chain, clock_.now());
  if (!checked) return checked.error();
  {
    std::lock_guard lock(mutex_);
    if (!bundle_ || bundle_->pem != checked->trust_bundle->pem) bundle_ = checked->trust_bundle;
  }
  return checked->certificate;
}

std::shared_ptr<const TrustBundle> IstioCaClient::trustBundle() const {
  std::lock_guard lock(mutex_);
  return bundle_;
}

}  // namespace nodemesh::xds
