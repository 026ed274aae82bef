#include "xds/xds_source.h"

#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "model/snapshot.h"
#include "tests/unit/xds/xds_test_util.h"

namespace nodemesh::xds {
namespace {

using testing::eventually;
using testing::IstiodFixture;

constexpr const char* kCartUid = "cluster1//Pod/shop/cart-1";
constexpr const char* kCartService = "shop/cart.shop.svc.cluster.local";

std::string v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return std::string{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                     static_cast<char>(d)};
}

istio::workload::Address workload(const std::string& uid, const std::string& name,
                                  const std::string& address) {
  istio::workload::Address out;
  auto* w = out.mutable_workload();
  w->set_uid(uid);
  w->set_name(name);
  w->set_namespace_("shop");
  w->add_addresses(address);
  return out;
}

istio::workload::Address service() {
  istio::workload::Address out;
  auto* s = out.mutable_service();
  s->set_name("cart");
  s->set_namespace_("shop");
  s->set_hostname("cart.shop.svc.cluster.local");
  auto* vip = s->add_addresses();
  vip->set_address(v4(10, 199, 96, 20));
  return out;
}

istio::security::Authorization policy(const std::string& name) {
  istio::security::Authorization out;
  out.set_name(name);
  out.set_namespace_("shop");
  return out;
}

class XdsSourceTest : public IstiodFixture {
 protected:
  Status startSource(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    XdsSourceOptions options;
    options.client = clientOptions();
    options.initial_timeout = timeout;
    auto created = XdsSource::create(std::move(options));
    if (!created) return created.error();
    source_ = std::move(*created);
    return source_->start([this](std::shared_ptr<const model::Snapshot> snapshot) {
      const std::lock_guard lock(mutex_);
      snapshots_.push_back(std::move(snapshot));
    });
  }

  size_t count() const {
    const std::lock_guard lock(mutex_);
    return snapshots_.size();
  }
  std::shared_ptr<const model::Snapshot> last() const {
    const std::lock_guard lock(mutex_);
    return snapshots_.empty() ? nullptr : snapshots_.back();
  }

  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const model::Snapshot>> snapshots_;
  std::unique_ptr<XdsSource> source_;
};

TEST_F(XdsSourceTest, DeliversTheInitialSnapshotBeforeStartReturns) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, kCartUid, workload(kCartUid, "cart-1", v4(10, 199, 0, 5)));
  istiod_->setResource(kAddressTypeUrl, kCartService, service());
  istiod_->setResource(kAuthorizationTypeUrl, "shop/allow-frontend", policy("allow-frontend"));
  const Status started = startSource();
  ASSERT_TRUE(started) << started.error().message;

  ASSERT_EQ(count(), 1U);
  const auto snapshot = last();
  ASSERT_NE(snapshot->workloadByUid(kCartUid), nullptr);
  EXPECT_EQ(snapshot->workloadByUid(kCartUid)->name, "cart-1");
  EXPECT_EQ(snapshot->workloadByIp(IpAddress::parse("10.199.0.5").value()),
            snapshot->workloadByUid(kCartUid));
  ASSERT_NE(snapshot->serviceByKey(kCartService), nullptr);
  EXPECT_NE(snapshot->serviceByVip(IpAddress::parse("10.199.96.20").value()), nullptr);
  EXPECT_NE(snapshot->policy("shop/allow-frontend"), nullptr);
  EXPECT_TRUE(source_->status().connected);
}

TEST_F(XdsSourceTest, AnEmptyMeshIsAnInitialSnapshotToo) {
  startIstiod();
  ASSERT_TRUE(startSource());
  ASSERT_EQ(count(), 1U);
  EXPECT_TRUE(last()->empty());
}

TEST_F(XdsSourceTest, PublishesUpdatesAndRemovals) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, kCartUid, workload(kCartUid, "cart-1", v4(10, 199, 0, 5)));
  istiod_->setResource(kAddressTypeUrl, kCartService, service());
  ASSERT_TRUE(startSource());

  const std::string other = "cluster1//Pod/shop/cart-2";
  istiod_->setResource(kAddressTypeUrl, other, workload(other, "cart-2", v4(10, 199, 0, 6)));
  ASSERT_TRUE(eventually([&] { return last()->workloadByUid(other) != nullptr; }));
  EXPECT_EQ(last()->workloads().size(), 2U);

  istiod_->removeResource(kAddressTypeUrl, kCartService);
  ASSERT_TRUE(eventually([&] { return last()->serviceByKey(kCartService) == nullptr; }));
  istiod_->removeResource(kAddressTypeUrl, kCartUid);
  ASSERT_TRUE(eventually([&] { return last()->workloadByUid(kCartUid) == nullptr; }));
  istiod_->setResource(kAuthorizationTypeUrl, "shop/deny-all", policy("deny-all"));
  ASSERT_TRUE(eventually([&] { return last()->policy("shop/deny-all") != nullptr; }));
  EXPECT_EQ(last()->workloads().size(), 1U);
  EXPECT_EQ(count(), 5U);  // the first and one per change
}

TEST_F(XdsSourceTest, AnInvalidResourceIsNackedAndTheLastGoodOneStays) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, kCartUid, workload(kCartUid, "cart-1", v4(10, 199, 0, 5)));
  ASSERT_TRUE(startSource());

  // Five address bytes: refused; the good version stays, nothing new is published.
  istiod_->setResource(kAddressTypeUrl, kCartUid,
                       workload(kCartUid, "cart-1", std::string("\x0a\xc7\x00\x05\x01", 5)));
  ASSERT_TRUE(eventually([&] { return source_->status().nacks == 1; }));
  const auto nack = source_->status().last_nack;
  ASSERT_TRUE(nack);
  EXPECT_NE(nack->reason.find(kCartUid), std::string::npos) << nack->reason;
  EXPECT_NE(nack->reason.find("5 bytes"), std::string::npos) << nack->reason;
  EXPECT_EQ(count(), 1U);
  EXPECT_NE(last()->workloadByIp(IpAddress::parse("10.199.0.5").value()), nullptr);

  // A resource named otherwise than its uid is refused (removals name the uid).
  istiod_->setResource(kAddressTypeUrl, "wrong-name",
                       workload("cluster1//Pod/shop/x", "x", v4(10, 199, 0, 7)));
  ASSERT_TRUE(eventually([&] { return source_->status().nacks == 2; }));
  EXPECT_NE(source_->status().last_nack->reason.find("is not its uid"), std::string::npos);
  // Not an Address at all.
  istiod_->setResource(kAddressTypeUrl, "shop/p", policy("p"));
  ASSERT_TRUE(eventually([&] { return source_->status().nacks == 3; }));
  EXPECT_NE(
      source_->status().last_nack->reason.find("want type.googleapis.com/istio.workload.Address"),
      std::string::npos)
      << source_->status().last_nack->reason;

  // The model's own checks apply as to a file: an address listed twice is refused.
  auto twice = workload(kCartUid, "cart-1", v4(10, 199, 0, 8));
  twice.mutable_workload()->add_addresses(v4(10, 199, 0, 8));
  istiod_->setResource(kAddressTypeUrl, kCartUid, twice);
  ASSERT_TRUE(eventually([&] { return source_->status().nacks == 4; }));
  EXPECT_NE(source_->status().last_nack->reason.find("10.199.0.8"), std::string::npos)
      << source_->status().last_nack->reason;
  EXPECT_EQ(last()->workloadByIp(IpAddress::parse("10.199.0.8").value()), nullptr);

  // The source keeps taking updates after NACKs.
  const std::string other = "cluster1//Pod/shop/cart-2";
  istiod_->setResource(kAddressTypeUrl, other, workload(other, "cart-2", v4(10, 199, 0, 6)));
  ASSERT_TRUE(eventually([&] { return last()->workloadByUid(other) != nullptr; }));
  EXPECT_EQ(count(), 2U);
}

TEST_F(XdsSourceTest, AnInvalidResourceInTheFirstResponseDoesNotHoldUpStart) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, kCartUid, workload(kCartUid, "cart-1", v4(10, 199, 0, 5)));
  const std::string broken = "cluster1//Pod/shop/broken";
  istiod_->setResource(kAddressTypeUrl, broken, workload(broken, "broken", "\x01\x02"));
  ASSERT_TRUE(startSource());
  ASSERT_EQ(count(), 1U);
  EXPECT_NE(last()->workloadByUid(kCartUid), nullptr);
  EXPECT_EQ(last()->workloadByUid(broken), nullptr);
  EXPECT_EQ(source_->status().nacks, 1U);
}

TEST_F(XdsSourceTest, StartFailsClearlyWithoutAnAnswer) {
  startIstiod("another-token");  // every stream is refused
  const Status started = startSource(std::chrono::milliseconds(1000));
  ASSERT_FALSE(started);
  EXPECT_EQ(
      started.error().message.rfind(
          "no response from istiod at " + istiod_->address() + " within 1s: gRPC status 16", 0),
      0U)
      << started.error().message;
  EXPECT_EQ(count(), 0U);
  source_->stop();
}

}  // namespace
}  // namespace nodemesh::xds
