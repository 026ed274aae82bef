#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "identity/cert_manager.h"
#include "identity/local_ca.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_dir.h"

// CertificateManager when the issuer fails: the current certificate stays, retries back off
// 1 s, 2 s, 4 s ... capped at 150 s, and the counters say what happened. Time is a fake clock.
namespace nodemesh::identity {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using testing::FakeClock;
using testing::TempDir;

// A real LocalCa that can be switched off; counts calls.
class SwitchableIssuer final : public CertificateIssuer {
 public:
  explicit SwitchableIssuer(CertificateIssuer& inner) : inner_(inner) {}
  Result<std::shared_ptr<const WorkloadCertificate>> issue(const SpiffeId& id,
                                                           std::chrono::seconds validity) override {
    ++calls;
    if (fail) return Error::invalid("istiod unreachable");
    return inner_.issue(id, validity);
  }
  std::atomic<int> calls{0};
  std::atomic<bool> fail{false};

 private:
  CertificateIssuer& inner_;
};

class CertificateBackoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = LocalCa::loadOrCreate(tmp_.path(), "cluster.local", clock_);
    ASSERT_TRUE(ca.ok()) << ca.error().message;
    ca_ = std::move(ca).value();
    issuer_ = std::make_unique<SwitchableIssuer>(*ca_);
    manager_ = std::make_unique<CertificateManager>(*issuer_, clock_, hours(24));
  }

  // Advances the clock to just before `delay` after now and checks rotateDue() does not call
  // the issuer, then to `delay` and checks it does (once).
  void expectRetryAfter(seconds delay) {
    const int calls = issuer_->calls;
    clock_.advance(delay - seconds(1));
    EXPECT_EQ(manager_->rotateDue(), 0U);
    EXPECT_EQ(issuer_->calls, calls) << "retried before " << delay.count() << " s";
    clock_.advance(seconds(1));
    manager_->rotateDue();
    EXPECT_EQ(issuer_->calls, calls + 1) << "no retry at " << delay.count() << " s";
  }

  static SpiffeId id(const char* sa) { return SpiffeId::create("cluster.local", "ns", sa).value(); }

  TempDir tmp_;
  FakeClock clock_{std::chrono::system_clock::from_time_t(1893456000)};
  std::unique_ptr<LocalCa> ca_;
  std::unique_ptr<SwitchableIssuer> issuer_;
  std::unique_ptr<CertificateManager> manager_;
};

TEST_F(CertificateBackoffTest, FailedRotationKeepsTheCertificateAndBacksOffUpTo150s) {
  auto before = manager_->get(id("a"));
  ASSERT_TRUE(before.ok()) << before.error().message;
  clock_.advance(hours(12));  // past half-life
  issuer_->fail = true;
  EXPECT_EQ(manager_->rotateDue(), 0U);
  EXPECT_EQ(issuer_->calls, 2);
  // Called again right away: no new attempt.
  EXPECT_EQ(manager_->rotateDue(), 0U);
  EXPECT_EQ(issuer_->calls, 2);
  for (int s : {1, 2, 4, 8, 16, 32, 64, 128, 150, 150, 150}) {
    expectRetryAfter(seconds(s));
    // Throughout, callers keep getting the certificate they had.
    auto now = manager_->get(id("a"));
    ASSERT_TRUE(now.ok()) << now.error().message;
    EXPECT_EQ(now->get(), before->get());
  }
  EXPECT_EQ(manager_->nextRotation(), clock_.now() + seconds(150));
  auto status = manager_->status();
  ASSERT_EQ(status.size(), 1U);
  EXPECT_EQ(status[0].consecutive_failures, 12U);
  EXPECT_EQ(status[0].last_error, "istiod unreachable");
  EXPECT_EQ(status[0].certificate.get(), before->get());
}

TEST_F(CertificateBackoffTest, SuccessResetsTheBackoff) {
  ASSERT_TRUE(manager_->get(id("a")).ok());
  clock_.advance(hours(12));
  issuer_->fail = true;
  manager_->rotateDue();
  expectRetryAfter(seconds(1));
  expectRetryAfter(seconds(2));
  issuer_->fail = false;
  clock_.advance(seconds(4));
  EXPECT_EQ(manager_->rotateDue(), 1U);
  EXPECT_EQ(manager_->status()[0].consecutive_failures, 0U);
  // The next failure (at the new certificate's half-life) starts again at 1 s.
  clock_.advance(hours(12));
  issuer_->fail = true;
  manager_->rotateDue();
  expectRetryAfter(seconds(1));
}

TEST_F(CertificateBackoffTest, RetriesAFailingCertificateAtItsExpiryAtTheLatest) {
  auto before = manager_->get(id("a"));
  ASSERT_TRUE(before.ok());
  // 1 minute before expiry the backoff (say 150 s) would outlive the certificate.
  clock_.set((*before)->notAfter() - seconds(60));
  issuer_->fail = true;
  for (int i = 0; i < 9; ++i) manager_->rotateDue(), clock_.advance(seconds(1));
  EXPECT_LE(manager_->nextRotation(), (*before)->notAfter());
}

TEST_F(CertificateBackoffTest, AFailedFirstIssueBacksOffGetAndIsRetriedInTheBackground) {
  issuer_->fail = true;
  auto first = manager_->get(id("a"));
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(issuer_->calls, 1);
  // A burst of connections during the backoff does not reach the CA.
  for (int i = 0; i < 5; ++i) {
    auto again = manager_->get(id("a"));
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code, EAGAIN);
    EXPECT_NE(again.error().message.find("istiod unreachable"), std::string::npos);
  }
  EXPECT_EQ(issuer_->calls, 1);
  EXPECT_EQ(manager_->size(), 0U);
  EXPECT_TRUE(manager_->certificates().empty());
  issuer_->fail = false;
  clock_.advance(seconds(1));
  EXPECT_EQ(manager_->rotateDue(), 1U);  // the background retry issues it
  auto cert = manager_->get(id("a"));
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  EXPECT_EQ(issuer_->calls, 2);
}

TEST_F(CertificateBackoffTest, CountsRequestsFailuresRotationsAndTimeToExpiry) {
  auto a = manager_->get(id("a"));
  ASSERT_TRUE(a.ok());
  clock_.advance(hours(12));
  issuer_->fail = true;
  manager_->rotateDue();
  issuer_->fail = false;
  clock_.advance(seconds(1));
  manager_->rotateDue();
  const auto stats = manager_->stats();
  EXPECT_EQ(stats.issue_requests, 3U);
  EXPECT_EQ(stats.issue_failures, 1U);
  EXPECT_EQ(stats.rotations, 1U);
  EXPECT_EQ(stats.rotation_failures, 1U);
  EXPECT_EQ(manager_->rotationFailures(), 1U);
  auto status = manager_->status();
  ASSERT_EQ(status.size(), 1U);
  ASSERT_TRUE(status[0].certificate);
  EXPECT_EQ(status[0].time_to_expiry, status[0].certificate->notAfter() - clock_.now());
  EXPECT_GT(status[0].time_to_expiry, hours(23));
}

TEST_F(CertificateBackoffTest, ForgetDropsTheBackoffToo) {
  issuer_->fail = true;
  ASSERT_FALSE(manager_->get(id("a")).ok());
  manager_->forget(id("a"));
  EXPECT_TRUE(manager_->status().empty());
  EXPECT_EQ(manager_->nextRotation(), std::chrono::system_clock::time_point::max());
  issuer_->fail = false;
  EXPECT_TRUE(manager_->get(id("a")).ok());  // no backoff left: asks at once
}

}  // namespace
}  // namespace nodemesh::identity
