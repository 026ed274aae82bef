// Fuzz target: the server side of an HBONE connection as the socket delivers it (port 15008):
// bytes into hbone::HboneTransport over a server tls::TlsSession (ClientHello, alerts, records,
// garbage), chunked, with the ciphertext output drained between chunks, then EOF. The TLS 1.3
// handshake cannot complete with fuzzed bytes (the client's Finished and CertificateVerify need
// its keys), so this covers record and handshake message parsing, ALPN and the refusal paths,
// and the transport's handling of a failed or half-done handshake.
// The server's certificate (a SPIFFE identity under a CA made here) is generated in memory at
// start-up: no file is written. OpenSSL draws randomness for the ServerHello, which does not
// change how the server parses the client's bytes.

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/h2_fuzz_handler.h"
#include "hbone/hbone_transport.h"
#include "hbone/tls/tls_context.h"
#include "hbone/tls/tls_session.h"
#include "identity/openssl_ptr.h"
#include "identity/workload_certificate.h"

namespace {

using nodemesh::fuzz::check;
using nodemesh::identity::EvpPkeyPtr;
using nodemesh::identity::X509Ptr;

void addExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr && X509_add_ext(cert, ext, -1) == 1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key`, signed by `issuer_key` (self-signed when `issuer` is null).
X509Ptr makeCertificate(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, long serial,
                        const char* common_name, bool ca) {
  X509Ptr cert(X509_new());
  check(cert != nullptr);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("cluster.local"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (ca) {
    addExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    addExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    addExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    addExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature");
    addExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
    addExtension(cert.get(), signer, NID_subject_alt_name,
                 "URI:spiffe://cluster.local/ns/default/sa/server");
  }
  check(X509_sign(cert.get(), issuer_key, EVP_sha256()) > 0);
  return cert;
}

struct Server {
  X509Ptr root;
  std::unique_ptr<nodemesh::tls::TlsContextFactory> factory;
  nodemesh::identity::SslCtxPtr context;
};

Server* server = nullptr;

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  static Server the_server;
  EvpPkeyPtr root_key(EVP_EC_gen("P-256"));
  EvpPkeyPtr leaf_key(EVP_EC_gen("P-256"));
  check(root_key != nullptr && leaf_key != nullptr);
  the_server.root = makeCertificate(root_key.get(), nullptr, root_key.get(), 1, "root", true);
  X509Ptr leaf =
      makeCertificate(leaf_key.get(), the_server.root.get(), root_key.get(), 2, "server", false);
  auto cert =
      nodemesh::identity::WorkloadCertificate::create(std::move(leaf_key), std::move(leaf), {});
  check(cert.ok());
  auto factory = nodemesh::tls::TlsContextFactory::create(the_server.root.get());
  check(factory.ok());
  the_server.factory =
      std::make_unique<nodemesh::tls::TlsContextFactory>(std::move(factory).value());
  auto context = the_server.factory->serverContext(**cert);
  check(context.ok());
  the_server.context = std::move(context).value();
  server = &the_server;
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tls = nodemesh::tls::TlsSession::server(server->context.get());
  check(tls.ok());
  nodemesh::fuzz::H2FuzzHandler handler;
  auto created = nodemesh::hbone::HboneTransport::create(std::move(tls).value(),
                                                         nodemesh::hbone::H2Role::kServer, handler);
  check(created.ok());
  nodemesh::hbone::HboneTransport& transport = **created;
  handler.session = &transport.h2();

  auto drain = [&transport] {
    for (int i = 0; i < 10000; ++i) {
      std::span<const uint8_t> out = transport.socketOutput();
      if (out.empty()) return;
      transport.consumeSocketOutput(out.size());
    }
    check(false);
  };
  std::span<const uint8_t> input(data, size);
  constexpr size_t kChunk = 1024;
  while (!input.empty() && !transport.failed()) {
    auto taken = transport.onSocketData(input.first(std::min(kChunk, input.size())));
    drain();
    if (!taken.ok()) break;
    // TLS input is bounded: nothing taken means it waits for output that never comes here.
    if (*taken == 0) break;
    input = input.subspan(*taken);
  }
  if (transport.failed()) {
    (void)transport.finalOutput();
  } else {
    transport.onSocketEof();
    drain();
  }
  handler.giveBackAll();
  return 0;
}
