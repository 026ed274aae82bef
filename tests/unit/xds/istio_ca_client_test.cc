#include "xds/istio_ca_client.h"

#include <openssl/evp.h>

#include <array>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "identity/cert_manager.h"
#include "identity/local_ca.h"
#include "tests/ca_standin/ca_standin.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::xds {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using testing::CaStandin;
using testing::CaStandinOptions;
using testing::FakeClock;
using testing::TempDir;

constexpr const char* kServerName = "istiod.istio-system.svc";
constexpr const char* kToken = "token-of-the-node-agent";
constexpr const char* kAgentIdentity = "spiffe://cluster.local/ns/istio-system/sa/ztunnel";

identity::SpiffeId workload(const char* sa) {
  return identity::SpiffeId::create("cluster.local", "default", sa).value();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string keyGroup(EVP_PKEY* key) {
  std::array<char, 64> group{};
  size_t len = 0;
  if (EVP_PKEY_get_group_name(key, group.data(), group.size(), &len) != 1) return {};
  return {group.data(), len};
}

bool isP256(const std::string& group) {
  return group == "prime256v1" || group == "P-256";
}

// A stand-in istiod CA over TLS on loopback (serving certificate for istiod.istio-system.svc),
// and an IstiodConnection to it with a token file. One fake clock for the CA, the client and
// the manager, starting at the real time (gRPC deadlines are real time).
class IstioCaClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = identity::LocalCa::loadOrCreate(tmp_.path() + "/ca", "cluster.local", clock_);
    ASSERT_TRUE(ca.ok()) << ca.error().message;
    ca_ = std::move(ca).value();
    CaStandinOptions options;
    options.required_token = kToken;
    options.caller_identity = kAgentIdentity;
    options.allowed_impersonations = {workload("a").toString(), workload("b").toString()};
    standin_ = std::make_unique<CaStandin>(*ca_, options);
    auto serving = testing::makeSelfSignedServingCertificate(kServerName);
    ASSERT_TRUE(serving.ok()) << serving.error().message;
    serving_ = *serving;
    auto server = testing::startTlsTestServer(*standin_, serving_);
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server).value();

    connection_.address = "127.0.0.1:" + std::to_string(server_.port);
    connection_.root_cert_file = tmp_.path() + "/root-cert.pem";
    connection_.token_file = tmp_.path() + "/token";
    connection_.cluster_id = "cluster-one";
    connection_.tls_server_name = kServerName;
    writeFile(connection_.root_cert_file, serving_.cert_pem);
    writeFile(connection_.token_file, std::string(kToken) + "\n");
  }

  void TearDown() override {
    if (server_.server) server_.server->Shutdown(std::chrono::system_clock::now() + seconds(1));
  }

  std::unique_ptr<IstioCaClient> makeClient(const identity::Clock& clock,
                                            IstioCaOptions options = {}) {
    auto channel = makeIstiodChannel(connection_);
    EXPECT_TRUE(channel.ok()) << channel.error().message;
    if (!channel) return nullptr;
    auto client = IstioCaClient::create(*channel, connection_, clock, options);
    EXPECT_TRUE(client.ok()) << client.error().message;
    return client ? std::move(client).value() : nullptr;
  }

  TempDir tmp_;
  FakeClock clock_{std::chrono::system_clock::now()};
  std::unique_ptr<identity::LocalCa> ca_;
  std::unique_ptr<CaStandin> standin_;
  testing::ServingCertificate serving_;
  testing::TlsTestServer server_;
  IstiodConnection connection_;
};

TEST_F(IstioCaClientTest, IssuesACertificateCarryingTheIdentity) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  EXPECT_EQ((*cert)->identity(), workload("a"));
  EXPECT_TRUE(isP256(keyGroup((*cert)->privateKey())));
  EXPECT_EQ(X509_check_private_key((*cert)->certificate(), (*cert)->privateKey()), 1);
  EXPECT_TRUE((*cert)->chain().empty());  // the stand-in's root signs leaves directly
  EXPECT_LE((*cert)->notAfter(), clock_.now() + hours(1));
  EXPECT_GT((*cert)->notAfter(), clock_.now() + std::chrono::minutes(59));
  // The trust bundle is now the root the answer ended with, which signed the leaf.
  auto bundle = client->trustBundle();
  ASSERT_TRUE(bundle);
  ASSERT_EQ(bundle->roots.size(), 1U);
  EXPECT_EQ(bundle->pem, ca_->rootCertificatePem());
  EXPECT_EQ(X509_cmp(bundle->roots[0].get(), ca_->rootCertificate()), 0);
  EXPECT_EQ(X509_verify((*cert)->certificate(), X509_get0_pubkey(bundle->roots[0].get())), 1);
}

TEST_F(IstioCaClientTest, TrustBundleBeforeTheFirstAnswerIsIstiodsRootFile) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  auto bundle = client->trustBundle();
  ASSERT_TRUE(bundle);
  ASSERT_EQ(bundle->roots.size(), 1U);
  EXPECT_EQ(bundle->pem, serving_.cert_pem);
  EXPECT_EQ(bundle->rawRoots().size(), 1U);
}

TEST_F(IstioCaClientTest, SendsTokenClusterIdImpersonatedIdentityAndValidity) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->issue(workload("b"), seconds(7200)).ok());
  auto calls = standin_->calls();
  ASSERT_EQ(calls.size(), 1U);
  EXPECT_EQ(calls[0].authorization, std::string("Bearer ") + kToken);
  EXPECT_EQ(calls[0].cluster_id, "cluster-one");
  ASSERT_TRUE(calls[0].impersonated_identity.has_value());
  EXPECT_EQ(*calls[0].impersonated_identity, workload("b").toString());
  EXPECT_EQ(calls[0].validity_seconds, 7200);
  // The CSR: a P-256 key, the SPIFFE URI as its only URI SAN.
  EXPECT_TRUE(isP256(calls[0].csr_key_group)) << calls[0].csr_key_group;
  EXPECT_EQ(calls[0].csr_uris, std::vector<std::string>{workload("b").toString()});
  EXPECT_EQ(calls[0].signed_identity, workload("b").toString());
}

TEST_F(IstioCaClientTest, ReadsTheTokenAgainOnEveryCall) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->issue(workload("a"), hours(1)).ok());
  writeFile(connection_.token_file, "rotated-by-the-kubelet");
  auto refused = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("UNAUTHENTICATED"), std::string::npos)
      << refused.error().message;
  auto calls = standin_->calls();
  ASSERT_EQ(calls.size(), 2U);
  EXPECT_EQ(calls[1].authorization, "Bearer rotated-by-the-kubelet");
}

TEST_F(IstioCaClientTest, RefusesALeafForAnotherIdentity) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  standin_->signWrongIdentityNext(1, workload("intruder").toString());
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find(workload("intruder").toString()), std::string::npos)
      << cert.error().message;
  EXPECT_NE(cert.error().message.find("not for " + workload("a").toString()), std::string::npos)
      << cert.error().message;
  EXPECT_TRUE(client->issue(workload("a"), hours(1)).ok());
}

TEST_F(IstioCaClientTest, RefusesAChainThatDoesNotVerifyToItsRoot) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  standin_->returnWrongRootNext(1);
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find("does not verify"), std::string::npos)
      << cert.error().message;
  // The refused answer's root did not become the trust bundle.
  EXPECT_EQ(client->trustBundle()->pem, serving_.cert_pem);
}

TEST_F(IstioCaClientTest, RefusesAnExpiredChain) {
  FakeClock late(clock_.now() + hours(48));  // our clock is two days ahead of the CA's
  auto client = makeClient(late);
  ASSERT_TRUE(client);
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find("expired"), std::string::npos) << cert.error().message;
}

TEST_F(IstioCaClientTest, ServerFailureIsAnErrorWithTheStatus) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  standin_->failNext(1);
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find("UNAVAILABLE"), std::string::npos) << cert.error().message;
  EXPECT_NE(cert.error().message.find("stand-in CA told to fail"), std::string::npos);
}

TEST_F(IstioCaClientTest, ImpersonatingAPodOfAnotherNodeIsRefused) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  auto cert = client->issue(workload("elsewhere"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find("PERMISSION_DENIED"), std::string::npos)
      << cert.error().message;
}

TEST_F(IstioCaClientTest, WithoutImpersonationTheCallerIdentityIsSignedAndRefused) {
  // istiod then signs the caller's own identity: not the workload's, so the client refuses it.
  IstioCaOptions options;
  options.impersonate = false;
  auto client = makeClient(clock_, options);
  ASSERT_TRUE(client);
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find(kAgentIdentity), std::string::npos) << cert.error().message;
  auto calls = standin_->calls();
  ASSERT_EQ(calls.size(), 1U);
  EXPECT_FALSE(calls[0].impersonated_identity.has_value());
}

TEST_F(IstioCaClientTest, AStalledServerEndsAtTheDeadline) {
  IstioCaOptions options;
  options.timeout = std::chrono::milliseconds(300);
  auto client = makeClient(clock_, options);
  ASSERT_TRUE(client);
  standin_->stallNext(1, std::chrono::milliseconds(1500));
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_EQ(cert.error().code, ETIMEDOUT);
  EXPECT_NE(cert.error().message.find("DEADLINE_EXCEEDED"), std::string::npos)
      << cert.error().message;
}

TEST_F(IstioCaClientTest, AnUnreadableTokenFileIsAnError) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  std::remove(connection_.token_file.c_str());
  auto cert = client->issue(workload("a"), hours(1));
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.error().message.find("service account token"), std::string::npos)
      << cert.error().message;
  EXPECT_TRUE(standin_->calls().empty());
}

TEST_F(IstioCaClientTest, CreateRefusesAMissingOrEmptyRootFile) {
  auto channel = makeIstiodChannel(connection_);
  ASSERT_TRUE(channel.ok());
  IstiodConnection missing = connection_;
  missing.root_cert_file = tmp_.path() + "/nope.pem";
  EXPECT_FALSE(IstioCaClient::create(*channel, missing, clock_).ok());
  IstiodConnection garbage = connection_;
  garbage.root_cert_file = tmp_.path() + "/garbage.pem";
  writeFile(garbage.root_cert_file, "not a certificate\n");
  auto client = IstioCaClient::create(*channel, garbage, clock_);
  ASSERT_FALSE(client.ok());
  EXPECT_NE(client.error().message.find("no PEM certificate"), std::string::npos)
      << client.error().message;
}

// The manager on top of the client: a failing istiod keeps the current certificate.
TEST_F(IstioCaClientTest, ManagerKeepsTheCertificateWhileIstiodFails) {
  auto client = makeClient(clock_);
  ASSERT_TRUE(client);
  identity::CertificateManager manager(*client, clock_, hours(24));
  auto before = manager.get(workload("a"));
  ASSERT_TRUE(before.ok()) << before.error().message;
  clock_.advance(hours(13));
  standin_->failNext(1);
  EXPECT_EQ(manager.rotateDue(), 0U);
  EXPECT_EQ(manager.get(workload("a"))->get(), before->get());
  clock_.advance(seconds(1));  // the first retry is 1 s later
  EXPECT_EQ(manager.rotateDue(), 1U);
  EXPECT_NE(manager.get(workload("a"))->get(), before->get());
}

// ---- checkCertificateChain on answers a server could send ----

class CheckChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = identity::LocalCa::loadOrCreate(tmp_.path(), "cluster.local", clock_);
    ASSERT_TRUE(ca.ok()) << ca.error().message;
    ca_ = std::move(ca).value();
    auto cert = ca_->issue(workload("a"), hours(1));
    ASSERT_TRUE(cert.ok());
    leaf_pem_ = identity::certificateToPem((*cert)->certificate()).value();
  }

  static identity::EvpPkeyPtr freshKey() { return identity::EvpPkeyPtr(EVP_EC_gen("P-256")); }

  TempDir tmp_;
  FakeClock clock_{std::chrono::system_clock::from_time_t(1893456000)};
  std::unique_ptr<identity::LocalCa> ca_;
  std::string leaf_pem_;
};

TEST_F(CheckChainTest, RefusesAnEmptyAnswer) {
  auto checked = checkCertificateChain(workload("a"), freshKey(), {}, clock_.now());
  ASSERT_FALSE(checked.ok());
  EXPECT_NE(checked.error().message.find("no certificate"), std::string::npos);
}

TEST_F(CheckChainTest, RefusesALeafWithoutRoot) {
  auto checked = checkCertificateChain(workload("a"), freshKey(), {leaf_pem_}, clock_.now());
  ASSERT_FALSE(checked.ok());
  EXPECT_NE(checked.error().message.find("no root"), std::string::npos);
}

TEST_F(CheckChainTest, RefusesGarbage) {
  for (const std::vector<std::string>& chain :
       {std::vector<std::string>{"garbage", ca_->rootCertificatePem()},
        std::vector<std::string>{leaf_pem_, "-----BEGIN CERTIFICATE-----\nAAAA\n"},
        std::vector<std::string>{leaf_pem_ + leaf_pem_, ca_->rootCertificatePem()},
        std::vector<std::string>{leaf_pem_, "", ca_->rootCertificatePem()}}) {
    auto checked = checkCertificateChain(workload("a"), freshKey(), chain, clock_.now());
    EXPECT_FALSE(checked.ok());
  }
}

TEST_F(CheckChainTest, RefusesALeafWhoseKeyIsNotTheCsrKey) {
  auto checked = checkCertificateChain(workload("a"), freshKey(),
                                       {leaf_pem_, ca_->rootCertificatePem()}, clock_.now());
  ASSERT_FALSE(checked.ok());
  EXPECT_NE(checked.error().message.find("refused"), std::string::npos) << checked.error().message;
}

TEST_F(CheckChainTest, AcceptsTheLeafWithItsKeyAndSeveralRoots) {
  auto key = freshKey();
  auto leaf = ca_->signPublicKey(workload("a"), key.get(), hours(1));
  ASSERT_TRUE(leaf.ok());
  auto other = testing::makeSelfSignedServingCertificate("other-root.invalid");
  ASSERT_TRUE(other.ok());
  // Istio puts every root into the last element during a root rotation.
  auto checked = checkCertificateChain(workload("a"), std::move(key),
                                       {identity::certificateToPem(leaf->get()).value(),
                                        other->cert_pem + ca_->rootCertificatePem()},
                                       clock_.now());
  ASSERT_TRUE(checked.ok()) << checked.error().message;
  EXPECT_EQ(checked->certificate->identity(), workload("a"));
  EXPECT_EQ(checked->trust_bundle->roots.size(), 2U);
}

}  // namespace
}  // namespace nodemesh::xds
