#pragma once

// Shared by the xDS client and source tests: a stand-in istiod with a token, the files a client
// reads (root certificate, token) and the options pointing at it.

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/istiod_standin/istiod_standin.h"
#include "tests/support/temp_dir.h"
#include "xds/ads_client.h"

namespace nodemesh::xds::testing {

using nodemesh::testing::IstiodStandin;

inline constexpr auto kWait = std::chrono::seconds(10);

inline void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// Polls `done` until it holds or `kWait` passes.
template <typename Predicate>
bool eventually(Predicate done) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

class IstiodFixture : public ::testing::Test {
 protected:
  // Starts the stand-in; `token` is what it requires (empty: anything).
  void startIstiod(const std::string& token = "") {
    IstiodStandin::Options options;
    options.token = token;
    auto started = IstiodStandin::start(options);
    ASSERT_TRUE(started) << started.error().message;
    istiod_ = std::move(*started);
    writeFile(rootFile(), istiod_->rootCertPem());
    writeFile(tokenFile(), "token-1\n");
  }

  std::string rootFile() const { return dir_.path() + "/root-cert.pem"; }
  std::string tokenFile() const { return dir_.path() + "/istio-token"; }

  AdsClientOptions clientOptions() const {
    AdsClientOptions options;
    options.connection.address = istiod_->address();
    options.connection.root_cert_file = rootFile();
    options.connection.token_file = tokenFile();
    options.connection.cluster_id = "cluster-a";
    options.connection.tls_server_name = IstiodStandin::kServerName;
    options.node.instance_ip = "10.199.0.5";
    options.node.pod_name = "ztunnel-abcde";
    options.node.pod_namespace = "istio-system";
    options.node.node_name = "node-a";
    options.node.cluster_id = "cluster-a";
    options.node.istio_version = "1.24.0";
    options.node.metadata["DNS_CAPTURE"] = "true";
    return options;
  }

  nodemesh::testing::TempDir dir_;
  std::unique_ptr<IstiodStandin> istiod_;
};

}  // namespace nodemesh::xds::testing
