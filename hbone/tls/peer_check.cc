#include "hbone/tls/peer_check.h"

#include <openssl/crypto.h>
#include <openssl/tls1.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <string>
#include <string_view>

#include "hbone/tls/tls_context.h"
#include "identity/workload_certificate.h"

namespace nodemesh::tls::internal {
namespace {

int peerCheckIndex() {
  static const int kIndex =
      CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, nullptr, nullptr, nullptr, nullptr);
  return kIndex;
}

PeerCheck* peerCheckOf(const SSL* ssl) {
  if (ssl == nullptr) return nullptr;
  return static_cast<PeerCheck*>(SSL_get_ex_data(ssl, peerCheckIndex()));
}

void recordFailure(const SSL* ssl, std::string why) {
  PeerCheck* check = peerCheckOf(ssl);
  if (check != nullptr && check->failure.empty()) check->failure = std::move(why);
}

// ALPN protocol-name-list (RFC 7301 3.1): 1-byte lengths, each followed by the name.
std::string describeAlpnList(const unsigned char* in, unsigned int in_len) {
  std::string out;
  for (unsigned int i = 0; i < in_len;) {
    const unsigned int len = in[i];
    if (len == 0 || i + 1 + len > in_len) break;
    if (!out.empty()) out += ", ";
    out.append(reinterpret_cast<const char*>(in + i + 1), len);
    i += 1 + len;
  }
  return out.empty() ? "nothing" : out;
}

}  // namespace

bool attachPeerCheck(SSL* ssl, PeerCheck* check) {
  return peerCheckIndex() >= 0 && SSL_set_ex_data(ssl, peerCheckIndex(), check) == 1;
}

std::string describeIdentities(const std::vector<identity::SpiffeId>& ids) {
  std::string out;
  for (const identity::SpiffeId& id : ids) {
    if (!out.empty()) out += ", ";
    out += id.toString();
  }
  return out;
}

int verifyPeerCallback(int preverify_ok, X509_STORE_CTX* store_ctx) {
  // OpenSSL calls this for every certificate of the chain, root first, the leaf last at
  // depth 0; chain errors arrive with preverify_ok == 0 and stay fatal.
  if (preverify_ok != 1) return 0;
  if (X509_STORE_CTX_get_error_depth(store_ctx) != 0) return 1;
  const auto* ssl = static_cast<const SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto reject = [&](std::string why) {
    recordFailure(ssl, std::move(why));
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  };
  const bool server = ssl != nullptr && SSL_is_server(ssl) == 1;
  auto id = identity::spiffeIdFromCertificate(X509_STORE_CTX_get_current_cert(store_ctx));
  if (!id)
    return reject((server ? "client" : "server") + std::string(" certificate: ") +
                  id.error().message);
  if (server) return 1;  // any identity under the root; policy decides what it may do
  const PeerCheck* check = peerCheckOf(ssl);
  if (check == nullptr || check->expected_peers.empty()) {
    return reject("no expected server identity configured for this connection (refusing " +
                  id->toString() + ")");
  }
  if (std::find(check->expected_peers.begin(), check->expected_peers.end(), *id) ==
      check->expected_peers.end()) {
    return reject("server identity " + id->toString() + " is not the expected " +
                  describeIdentities(check->expected_peers));
  }
  return 1;
}

int selectAlpnCallback(SSL* ssl, const unsigned char** out, unsigned char* out_len,
                       const unsigned char* in, unsigned int in_len, void* /*arg*/) {
  for (unsigned int i = 0; i < in_len;) {
    const unsigned int len = in[i];
    if (len == 0 || i + 1 + len > in_len) break;  // malformed list
    const std::string_view proto(reinterpret_cast<const char*>(in + i + 1), len);
    if (proto == kAlpnH2) {
      *out = in + i + 1;
      *out_len = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  recordFailure(ssl,
                "client did not offer ALPN h2 (offered: " + describeAlpnList(in, in_len) + ")");
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int clientHelloCallback(SSL* ssl, int* alert, void* /*arg*/) {
  const unsigned char* data = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &data,
                                &len) != 1) {
    recordFailure(ssl, "client did not offer ALPN (h2 required)");
    *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
    return SSL_CLIENT_HELLO_ERROR;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

}  // namespace nodemesh::tls::internal
