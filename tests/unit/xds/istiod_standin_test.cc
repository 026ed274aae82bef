// The stand-in istiod itself: what the tests of the xDS client rely on beyond the protocol.

#include "tests/istiod_standin/istiod_standin.h"

#include <gtest/gtest.h>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>

#include "istio/v1/auth/ca.grpc.pb.h"
#include "tests/unit/xds/xds_test_util.h"
#include "xds/istiod_connection.h"

namespace nodemesh::xds {
namespace {

using testing::IstiodFixture;
using testing::IstiodStandin;

// Answers every CSR with a fixed chain: enough to see the call arrive on the shared port.
class FixedCa final : public istio::v1::auth::IstioCertificateService::Service {
 public:
  grpc::Status CreateCertificate(grpc::ServerContext* /*context*/,
                                 const istio::v1::auth::IstioCertificateRequest* request,
                                 istio::v1::auth::IstioCertificateResponse* response) override {
    response->add_cert_chain("chain-for:" + request->csr());
    return grpc::Status::OK;
  }
};

class IstiodStandinTest : public IstiodFixture {};

TEST_F(IstiodStandinTest, ServesExtraServicesOnTheSamePortOverTls) {
  FixedCa ca;
  IstiodStandin::Options options;
  options.extra.push_back(&ca);
  auto started = IstiodStandin::start(options);
  ASSERT_TRUE(started) << started.error().message;
  istiod_ = std::move(*started);
  testing::writeFile(rootFile(), istiod_->rootCertPem());

  IstiodConnection connection;
  connection.address = istiod_->address();
  connection.root_cert_file = rootFile();
  connection.tls_server_name = IstiodStandin::kServerName;
  auto channel = makeIstiodChannel(connection);
  ASSERT_TRUE(channel) << channel.error().message;
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(*channel);
  grpc::ClientContext context;
  istio::v1::auth::IstioCertificateRequest request;
  request.set_csr("csr-1");
  istio::v1::auth::IstioCertificateResponse response;
  const grpc::Status status = stub->CreateCertificate(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.cert_chain_size(), 1);
  EXPECT_EQ(response.cert_chain(0), "chain-for:csr-1");

  // Another name than istiod's is refused by the TLS check.
  connection.tls_server_name = "other.example";
  auto wrong = makeIstiodChannel(connection);
  ASSERT_TRUE(wrong);
  auto wrong_stub = istio::v1::auth::IstioCertificateService::NewStub(*wrong);
  grpc::ClientContext wrong_context;
  EXPECT_FALSE(wrong_stub->CreateCertificate(&wrong_context, request, &response).ok());
}

TEST_F(IstiodStandinTest, RefusesABadAddress) {
  IstiodStandin::Options options;
  options.address = "127.0.0.1:http";
  EXPECT_FALSE(IstiodStandin::start(options));
  options.address = "127.0.0.1";
  EXPECT_FALSE(IstiodStandin::start(options));
}

}  // namespace
}  // namespace nodemesh::xds
