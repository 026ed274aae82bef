#include "cni/cni_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "cni/agent_client.h"
#include "cni/socket_io.h"
#include "common/fd.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::cni {
namespace {

CniRequest addRequest(const std::string& pod) {
  CniRequest r;
  r.container_id = "ctr-" + pod;
  r.netns = "/var/run/netns/" + pod;
  r.if_name = "eth0";
  r.pod_namespace = "shop";
  r.pod_name = pod;
  r.ips = {"10.199.3.4/24"};
  return r;
}

// A raw connection, to send what the plugin never would.
UniqueFd connectTo(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockaddr API
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  return fd;
}

Deadline soon() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(5);
}

class CniServerTest : public ::testing::Test {
 protected:
  void start() {
    auto s = CniServer::start(CniServerOptions{socket_, 300}, [this](const CniRequest& r) {
      std::lock_guard lock(mu_);
      seen_.push_back(r);
      if (r.pod_name == "throws") throw std::runtime_error("boom");
      return CniReply::success(r.pod_name != "outside", "handled " + r.pod_name);
    });
    ASSERT_TRUE(s.ok()) << s.error().message;
    server_ = std::move(*s);
  }

  testing::TempDir dir_;
  std::string socket_ = dir_.path() + "/run/nodemesh/cni.sock";
  std::mutex mu_;
  std::vector<CniRequest> seen_;
  std::unique_ptr<CniServer> server_;
};

TEST_F(CniServerTest, ServesThePluginsRequests) {
  start();
  auto reply = callAgent(socket_, 2000, addRequest("cart-1"));
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->ok);
  EXPECT_TRUE(reply->enrolled);
  EXPECT_EQ(reply->message, "handled cart-1");
  reply = callAgent(socket_, 2000, addRequest("outside"));
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->enrolled);
  std::lock_guard lock(mu_);
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[0], addRequest("cart-1"));
}

TEST_F(CniServerTest, SocketIsPrivateAndRemovedOnStop) {
  start();
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  server_->stop();
  server_->stop();  // idempotent
  EXPECT_NE(::stat(socket_.c_str(), &st), 0);
  auto reply = callAgent(socket_, 500, addRequest("cart-1"));
  EXPECT_FALSE(reply.ok());
}

TEST_F(CniServerTest, StaleSocketIsReplacedButALiveServerIsNot) {
  start();
  auto second = CniServer::start(CniServerOptions{socket_, 300},
                                 [](const CniRequest&) { return CniReply::success(false, ""); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, EADDRINUSE);
  // A server that died leaves its socket file behind: simulate with a bound, closed socket.
  server_.reset();
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_.c_str(), socket_.size() + 1);
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockaddr API
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  }
  start();
  EXPECT_TRUE(callAgent(socket_, 2000, addRequest("cart-1")).ok());
}

TEST_F(CniServerTest, ARegularFileAtThePathIsNotRemoved) {
  std::filesystem::create_directories(dir_.path() + "/run/nodemesh");
  std::ofstream(socket_) << "keep me";
  auto s = CniServer::start(CniServerOptions{socket_, 300},
                            [](const CniRequest&) { return CniReply::success(false, ""); });
  ASSERT_FALSE(s.ok());
  std::ifstream in(socket_);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "keep me");
}

TEST_F(CniServerTest, BadRequestsGetErrorRepliesAndTheServerKeepsGoing) {
  start();
  for (const std::string& bad :
       {std::string("not json\n"), std::string("{\"version\":9}\n"),
        std::string("{\"version\":1,\"command\":\"ADD\"}\n"), std::string(70000, 'x') + "\n"}) {
    UniqueFd fd = connectTo(socket_);
    ASSERT_TRUE(fd.valid());
    (void)writeAll(fd.get(), bad, soon());  // the oversized one may be cut off by the reply
    auto line = readLine(fd.get(), kMaxMessageBytes, soon());
    ASSERT_TRUE(line.ok()) << line.error().message;
    auto reply = decodeReply(*line);
    ASSERT_TRUE(reply.ok()) << *line;
    EXPECT_FALSE(reply->ok) << *line;
    EXPECT_FALSE(reply->error.empty());
  }
  {
    std::lock_guard lock(mu_);
    EXPECT_TRUE(seen_.empty());  // none reached the handler
  }
  EXPECT_TRUE(callAgent(socket_, 2000, addRequest("after")).ok());
}

TEST_F(CniServerTest, HandlerExceptionBecomesAnErrorReply) {
  start();
  auto reply = callAgent(socket_, 2000, addRequest("throws"));
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->ok);
  EXPECT_NE(reply->error.find("boom"), std::string::npos);
}

TEST_F(CniServerTest, SilentClientTimesOutWithoutBlockingOthersForever) {
  start();
  UniqueFd idle = connectTo(socket_);  // connects, never writes
  ASSERT_TRUE(idle.valid());
  UniqueFd half = connectTo(socket_);  // writes half a line and stops
  ASSERT_TRUE(writeAll(half.get(), "{\"version\":1", soon()).ok());
  // Served after the two stalled ones time out (300 ms each).
  auto reply = callAgent(socket_, 3000, addRequest("patient"));
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->ok);
}

TEST_F(CniServerTest, ClientTimesOutOnAServerThatNeverAnswers) {
  // A listening socket nobody accepts from: the plugin's timeout must fire.
  std::filesystem::create_directories(dir_.path() + "/run/nodemesh");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_.c_str(), socket_.size() + 1);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockaddr API
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd.get(), 4), 0);
  const auto start_time = std::chrono::steady_clock::now();
  auto reply = callAgent(socket_, 200, addRequest("x"));
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code, ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start_time, std::chrono::seconds(3));
}

}  // namespace
}  // namespace nodemesh::cni
