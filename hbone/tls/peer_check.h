#pragma once

// Internal to tls/: the per-connection state that OpenSSL callbacks (certificate verification,
// ALPN, ClientHello) reach through SSL ex_data, and the callbacks themselves.

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "identity/spiffe_id.h"

namespace nodemesh::tls::internal {

struct PeerCheck {
  // Client side: the server must present one of these identities. Never empty for a client.
  std::vector<identity::SpiffeId> expected_peers;
  // Why our callbacks refused the peer (first reason only); empty while all is well.
  std::string failure;
};

// Attaches `check` (owned by the caller, must outlive `ssl`'s handshake) to `ssl`.
bool attachPeerCheck(SSL* ssl, PeerCheck* check);

// "spiffe://a, spiffe://b" for messages.
std::string describeIdentities(const std::vector<identity::SpiffeId>& ids);

// SSL_CTX_set_verify/SSL_set_verify callback: on top of OpenSSL's chain verification, the leaf
// must carry exactly one valid SPIFFE ID, and on the client side it must be an expected one.
// Fails closed: a client SSL without an attached PeerCheck is refused.
int verifyPeerCallback(int preverify_ok, X509_STORE_CTX* store_ctx);

// Server side: select "h2" or fail the handshake with no_application_protocol.
int selectAlpnCallback(SSL* ssl, const unsigned char** out, unsigned char* out_len,
                       const unsigned char* in, unsigned int in_len, void* arg);
// Server side: refuse a ClientHello without the ALPN extension (the ALPN select callback is
// not called at all in that case, so OpenSSL would otherwise proceed without ALPN).
int clientHelloCallback(SSL* ssl, int* alert, void* arg);

}  // namespace nodemesh::tls::internal
