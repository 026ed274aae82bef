#include "identity/cert_manager.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "identity/local_ca.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::identity {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using testing::FakeClock;
using testing::TempDir;

// Counts issue() calls and can be told to fail, around a real LocalCa.
class CountingIssuer final : public CertificateIssuer {
 public:
  explicit CountingIssuer(CertificateIssuer& inner) : inner_(inner) {}
  Result<std::shared_ptr<const WorkloadCertificate>> issue(const SpiffeId& id,
                                                           std::chrono::seconds validity) override {
    ++calls;
    if (fail) return Error::invalid("issuer down");
    return inner_.issue(id, validity);
  }
  std::atomic<int> calls{0};
  std::atomic<bool> fail{false};

 private:
  CertificateIssuer& inner_;
};

class CertificateManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = LocalCa::loadOrCreate(tmp_.path(), "cluster.local", clock_);
    ASSERT_TRUE(ca.ok()) << ca.error().message;
    ca_ = std::move(ca).value();
    issuer_ = std::make_unique<CountingIssuer>(*ca_);
    manager_ = std::make_unique<CertificateManager>(*issuer_, clock_, hours(24));
  }

  static SpiffeId id(const char* sa) { return SpiffeId::create("cluster.local", "ns", sa).value(); }

  TempDir tmp_;
  FakeClock clock_{std::chrono::system_clock::from_time_t(1893456000)};
  std::unique_ptr<LocalCa> ca_;
  std::unique_ptr<CountingIssuer> issuer_;
  std::unique_ptr<CertificateManager> manager_;
};

TEST_F(CertificateManagerTest, IssuesOnFirstUseAndCaches) {
  auto a = manager_->get(id("a"));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ((*a)->identity(), id("a"));
  auto again = manager_->get(id("a"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), a->get());
  EXPECT_EQ(issuer_->calls.load(), 1);
  ASSERT_TRUE(manager_->get(id("b")).ok());
  EXPECT_EQ(manager_->size(), 2U);
  EXPECT_EQ(manager_->nextRotation(), (*a)->refreshAt());
}

TEST_F(CertificateManagerTest, RotatesAtHalfLife) {
  auto before = manager_->get(id("a"));
  ASSERT_TRUE(before.ok());
  const std::shared_ptr<const WorkloadCertificate> old_cert = *before;
  const std::string old_pem = old_cert->pemCertificate();

  // Lifetime is 24h + 1 min (backdated notBefore): half-life is 11h59m30s after issuing.
  clock_.advance(hours(11) + minutes(59));
  EXPECT_EQ(manager_->rotateDue(), 0U);
  EXPECT_EQ(manager_->get(id("a"))->get(), old_cert.get());

  clock_.advance(minutes(1));
  EXPECT_EQ(manager_->rotateDue(), 1U);
  auto after = manager_->get(id("a"));
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->get(), old_cert.get());
  EXPECT_NE((*after)->serialHex(), old_cert->serialHex());
  EXPECT_EQ((*after)->identity(), id("a"));
  EXPECT_EQ((*after)->notBefore(), clock_.now() - minutes(1));
  // The holder of the old version still has a complete, usable certificate.
  EXPECT_EQ(old_cert->pemCertificate(), old_pem);
  EXPECT_EQ(X509_check_private_key(old_cert->certificate(), old_cert->privateKey()), 1);
  EXPECT_EQ(manager_->rotateDue(), 0U);
}

TEST_F(CertificateManagerTest, FailedRotationKeepsTheOldCertificate) {
  auto before = manager_->get(id("a"));
  ASSERT_TRUE(before.ok());
  clock_.advance(hours(13));
  issuer_->fail = true;
  EXPECT_EQ(manager_->rotateDue(), 0U);
  EXPECT_EQ(manager_->rotationFailures(), 1U);
  EXPECT_EQ(manager_->get(id("a"))->get(), before->get());
  issuer_->fail = false;
  clock_.advance(std::chrono::seconds(1));  // the first retry waits 1 s
  EXPECT_EQ(manager_->rotateDue(), 1U);
}

TEST_F(CertificateManagerTest, ReissuesAnExpiredCertificateOnGet) {
  auto before = manager_->get(id("a"));
  ASSERT_TRUE(before.ok());
  clock_.advance(hours(25));
  auto after = manager_->get(id("a"));
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->get(), before->get());
}

TEST_F(CertificateManagerTest, ForgetDropsTheEntryOnly) {
  auto a = manager_->get(id("a"));
  ASSERT_TRUE(a.ok());
  manager_->forget(id("a"));
  EXPECT_EQ(manager_->size(), 0U);
  EXPECT_EQ((*a)->identity(), id("a"));  // still valid for its holder
  clock_.advance(hours(13));
  EXPECT_EQ(manager_->rotateDue(), 0U);
  EXPECT_EQ(issuer_->calls.load(), 1);
}

TEST_F(CertificateManagerTest, ConcurrentGetsShareOneCertificate) {
  constexpr int kThreads = 8;
  std::vector<std::shared_ptr<const WorkloadCertificate>> got(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto cert = manager_->get(id("a"));
      if (cert.ok()) got[i] = *cert;
    });
  }
  for (auto& t : threads) t.join();
  auto final_cert = manager_->get(id("a"));
  ASSERT_TRUE(final_cert.ok());
  // Racing first uses may each issue, but every caller gets the one certificate stored.
  for (const auto& c : got) EXPECT_EQ(c.get(), final_cert->get());
}

}  // namespace
}  // namespace nodemesh::identity
