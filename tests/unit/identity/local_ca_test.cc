#include "identity/local_ca.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <barrier>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "identity/openssl_ptr.h"
#include "identity/workload_certificate.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::identity {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using testing::FakeClock;
using testing::TempDir;

constexpr char kTrustDomain[] = "cluster.local";

std::chrono::system_clock::time_point start2030() {
  return std::chrono::system_clock::from_time_t(1893456000);  // 2030-01-01T00:00:00Z
}

mode_t modeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

void writeFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

SpiffeId id(const char* ns, const char* sa) {
  return SpiffeId::create(kTrustDomain, ns, sa).value();
}

// Verifies `leaf` up to `root` at time `at`, as a TLS peer would.
int verifyChain(X509* root, X509* leaf, std::chrono::system_clock::time_point at) {
  X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), root);
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
  X509_STORE_CTX_set_time(ctx.get(), 0, std::chrono::system_clock::to_time_t(at));
  X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_X509_STRICT);
  const int ok = X509_verify_cert(ctx.get());
  return ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
}

class LocalCaTest : public ::testing::Test {
 protected:
  std::string dir() const { return tmp_.path() + "/state"; }
  std::string keyPath() const { return dir() + "/" + LocalCa::kKeyFile; }
  std::string certPath() const { return dir() + "/" + LocalCa::kCertFile; }

  std::unique_ptr<LocalCa> create() {
    auto ca = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
    EXPECT_TRUE(ca.ok()) << ca.error().message;
    return ca.ok() ? std::move(ca).value() : nullptr;
  }

  TempDir tmp_;
  FakeClock clock_{start2030()};
};

TEST_F(LocalCaTest, CreatesRootWithPrivatePermissions) {
  ASSERT_FALSE(tmp_.path().empty());
  auto ca = create();
  ASSERT_NE(ca, nullptr);
  EXPECT_EQ(modeOf(dir()), 0700U);
  EXPECT_EQ(modeOf(keyPath()), 0600U);
  EXPECT_EQ(modeOf(certPath()), 0600U);
  EXPECT_EQ(readFile(certPath()), ca->rootCertificatePem());

  X509* root = ca->rootCertificate();
  EXPECT_EQ(X509_check_ca(root), 1);
  EXPECT_NE(X509_get_key_usage(root) & KU_KEY_CERT_SIGN, 0U);
  EXPECT_EQ(X509_check_issued(root, root), X509_V_OK);  // self-signed
  std::array<char, 256> subject{};
  X509_NAME_oneline(X509_get_subject_name(root), subject.data(), subject.size());
  EXPECT_STREQ(subject.data(), "/O=nodemesh/CN=nodemesh local CA cluster.local");
  auto not_after = asn1TimeToTimePoint(X509_get0_notAfter(root));
  ASSERT_TRUE(not_after.ok());
  EXPECT_EQ(*not_after, start2030() + LocalCa::kRootValidity);
  EXPECT_EQ(EVP_PKEY_get_bits(X509_get0_pubkey(root)), 256);
  EXPECT_TRUE(EVP_PKEY_is_a(X509_get0_pubkey(root), "EC"));
}

TEST_F(LocalCaTest, LoadsTheSameRootAgain) {
  auto first = create();
  ASSERT_NE(first, nullptr);
  const std::string key_before = readFile(keyPath());
  auto second = create();
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->rootCertificatePem(), first->rootCertificatePem());
  EXPECT_EQ(X509_cmp(second->rootCertificate(), first->rootCertificate()), 0);
  EXPECT_EQ(readFile(keyPath()), key_before);
  // A certificate issued by the reloaded CA chains to the original root.
  auto cert = second->issue(id("default", "sleep"));
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  EXPECT_EQ(verifyChain(first->rootCertificate(), (*cert)->certificate(), clock_.now()), X509_V_OK);
}

TEST_F(LocalCaTest, ConcurrentStartsShareOneRoot) {
  constexpr int kThreads = 4;
  for (int round = 0; round < 5; ++round) {
    TempDir tmp;
    const std::string state = tmp.path() + "/shared";
    std::vector<std::string> roots(kThreads);
    std::vector<std::string> errors(kThreads);
    std::barrier start(kThreads);
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        auto ca = LocalCa::loadOrCreate(state, kTrustDomain, clock_);
        if (ca.ok()) {
          roots[i] = (*ca)->rootCertificatePem();
        } else {
          errors[i] = ca.error().message;
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      EXPECT_EQ(errors[i], "");
      EXPECT_FALSE(roots[i].empty());
      EXPECT_EQ(roots[i], roots[0]) << "thread " << i << " got a different root";
    }
    EXPECT_EQ(roots[0], readFile(state + "/" + LocalCa::kCertFile));
  }
}

TEST_F(LocalCaTest, RefusesKeyReadableByOthers) {
  ASSERT_NE(create(), nullptr);
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    ASSERT_EQ(::chmod(keyPath().c_str(), mode), 0);
    auto ca = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
    ASSERT_FALSE(ca.ok()) << std::oct << mode;
    EXPECT_EQ(ca.error().code, EACCES);
    EXPECT_NE(ca.error().message.find("group or others"), std::string::npos) << ca.error().message;
  }
  ASSERT_EQ(::chmod(keyPath().c_str(), 0400), 0);
  EXPECT_NE(create(), nullptr);
}

TEST_F(LocalCaTest, RefusesCorruptKey) {
  ASSERT_NE(create(), nullptr);
  writeFile(keyPath(),
            "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n");
  ::chmod(keyPath().c_str(), 0600);
  auto ca = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find("ca-key.pem: not a valid"), std::string::npos)
      << ca.error().message;
}

TEST_F(LocalCaTest, RefusesCorruptCertificate) {
  ASSERT_NE(create(), nullptr);
  std::string pem = readFile(certPath());
  pem[pem.size() / 2] = pem[pem.size() / 2] == 'A' ? 'B' : 'A';  // flip one base64 character
  writeFile(certPath(), pem);
  auto ca = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find("ca-cert.pem"), std::string::npos) << ca.error().message;

  writeFile(certPath(), "garbage");
  ca = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find("not a valid PEM certificate"), std::string::npos)
      << ca.error().message;
}

TEST_F(LocalCaTest, RefusesCertificateNotMatchingKey) {
  ASSERT_NE(create(), nullptr);
  TempDir other;
  auto other_ca = LocalCa::loadOrCreate(other.path(), kTrustDomain, clock_);
  ASSERT_TRUE(other_ca.ok());
  writeFile(certPath(), (*other_ca)->rootCertificatePem());
  auto ca = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find("does not match"), std::string::npos) << ca.error().message;
}

TEST_F(LocalCaTest, RefusesOtherTrustDomainAndExpiredRoot) {
  ASSERT_NE(create(), nullptr);
  auto other_td = LocalCa::loadOrCreate(dir(), "example.org", clock_);
  ASSERT_FALSE(other_td.ok());
  EXPECT_NE(other_td.error().message.find("example.org"), std::string::npos);

  clock_.advance(LocalCa::kRootValidity + hours(1));
  auto expired = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
  ASSERT_FALSE(expired.ok());
  EXPECT_NE(expired.error().message.find("expired"), std::string::npos);
}

TEST_F(LocalCaTest, RefusesCertificateWithoutKey) {
  ASSERT_NE(create(), nullptr);
  ASSERT_EQ(::unlink(keyPath().c_str()), 0);
  auto ca = LocalCa::loadOrCreate(dir(), kTrustDomain, clock_);
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find("missing"), std::string::npos) << ca.error().message;
}

TEST_F(LocalCaTest, RedoesAnUnfinishedCreation) {
  // A crash between writing the key and the certificate leaves a key alone.
  auto first = create();
  ASSERT_NE(first, nullptr);
  ASSERT_EQ(::unlink(certPath().c_str()), 0);
  auto second = create();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second->rootCertificatePem(), first->rootCertificatePem());
}

TEST_F(LocalCaTest, RefusesBadTrustDomain) {
  auto ca = LocalCa::loadOrCreate(dir(), "Bad Domain", clock_);
  EXPECT_FALSE(ca.ok());
}

TEST_F(LocalCaTest, LongTrustDomainFitsTheCommonName) {
  const std::string td = std::string(60, 'a') + ".example";
  auto ca = LocalCa::loadOrCreate(dir(), td, clock_);
  ASSERT_TRUE(ca.ok()) << ca.error().message;
  auto cert = (*ca)->issue(SpiffeId::create(td, "ns", "sa").value());
  ASSERT_TRUE(cert.ok()) << cert.error().message;
}

// ---- issued certificates ----

TEST_F(LocalCaTest, IssuesWorkloadCertificate) {
  auto ca = create();
  ASSERT_NE(ca, nullptr);
  const SpiffeId sleep = id("default", "sleep");
  auto issued = ca->issue(sleep, hours(24));
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  const WorkloadCertificate& cert = **issued;
  X509* leaf = cert.certificate();

  EXPECT_EQ(cert.identity(), sleep);
  auto san = spiffeIdFromCertificate(leaf);
  ASSERT_TRUE(san.ok()) << san.error().message;
  EXPECT_EQ(*san, sleep);

  EXPECT_EQ(cert.notBefore(), start2030() - minutes(1));
  EXPECT_EQ(cert.notAfter(), start2030() + hours(24));
  EXPECT_EQ(cert.refreshAt(), cert.notBefore() + seconds(hours(24) + minutes(1)) / 2);

  EXPECT_EQ(X509_check_ca(leaf), 0);
  const uint32_t ku = X509_get_key_usage(leaf);
  EXPECT_EQ(ku, static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  const uint32_t eku = X509_get_extended_key_usage(leaf);
  EXPECT_EQ(eku, static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_TRUE(EVP_PKEY_is_a(cert.privateKey(), "EC"));
  EXPECT_EQ(EVP_PKEY_get_bits(cert.privateKey()), 256);
  EXPECT_TRUE(cert.chain().empty());

  // Chains to the root, within its validity only.
  EXPECT_EQ(verifyChain(ca->rootCertificate(), leaf, clock_.now()), X509_V_OK);
  EXPECT_EQ(verifyChain(ca->rootCertificate(), leaf, clock_.now() + hours(25)),
            X509_V_ERR_CERT_HAS_EXPIRED);
  EXPECT_EQ(verifyChain(ca->rootCertificate(), leaf, clock_.now() - minutes(2)),
            X509_V_ERR_CERT_NOT_YET_VALID);
  for (int purpose : {X509_PURPOSE_SSL_SERVER, X509_PURPOSE_SSL_CLIENT}) {
    EXPECT_EQ(X509_check_purpose(leaf, purpose, 0), 1);
  }

  // Public material only.
  const std::string pem = cert.pemCertificate();
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----", 0), 0U);
  EXPECT_EQ(pem.find("PRIVATE KEY"), std::string::npos);
  EXPECT_GE(cert.serialHex().size(), 30U);
}

TEST_F(LocalCaTest, SerialsAndKeysAreFresh) {
  auto ca = create();
  ASSERT_NE(ca, nullptr);
  auto a = ca->issue(id("default", "sleep"));
  auto b = ca->issue(id("default", "sleep"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->serialHex(), (*b)->serialHex());
  EXPECT_NE(EVP_PKEY_eq((*a)->privateKey(), (*b)->privateKey()), 1);
}

TEST_F(LocalCaTest, ValidityIsCappedAtTheRoot) {
  auto ca = create();
  ASSERT_NE(ca, nullptr);
  clock_.advance(LocalCa::kRootValidity - hours(1));
  auto cert = ca->issue(id("default", "sleep"), hours(24));
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  EXPECT_EQ((*cert)->notAfter(), start2030() + LocalCa::kRootValidity);
}

TEST_F(LocalCaTest, RefusesForeignTrustDomainAndBadValidity) {
  auto ca = create();
  ASSERT_NE(ca, nullptr);
  EXPECT_FALSE(ca->issue(SpiffeId::create("example.org", "ns", "sa").value()).ok());
  EXPECT_FALSE(ca->issue(id("default", "sleep"), seconds(0)).ok());
}

TEST(WorkloadCertificateTest, RefusesMismatchedKey) {
  TempDir tmp;
  FakeClock clock(start2030());
  auto ca = LocalCa::loadOrCreate(tmp.path(), kTrustDomain, clock);
  ASSERT_TRUE(ca.ok());
  auto a = (*ca)->issue(id("default", "a"));
  auto b = (*ca)->issue(id("default", "b"));
  ASSERT_TRUE(a.ok() && b.ok());
  EVP_PKEY* key_b = (*b)->privateKey();
  ASSERT_EQ(EVP_PKEY_up_ref(key_b), 1);
  auto mixed = WorkloadCertificate::create(EvpPkeyPtr(key_b), shareX509((*a)->certificate()), {});
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.error().message.find("does not match"), std::string::npos);
}

}  // namespace
}  // namespace nodemesh::identity
