// Table-driven BPF_PROG_TEST_RUN tests of the inbound steering program nm_sk_lookup
// (bpf/sk_lookup.bpf.c): for one socket lookup context, which in-pod listener it selects (the
// selected socket's cookie that the kernel reports in ctx_out) and which counter it bumps.
//
// The agent's loader installs the capture programs and pins their maps below a bpffs directory
// of the test's own SimCluster; a second instance of the sk_lookup object is loaded against the
// same pins, which gives the test a program fd to run without attaching to any namespace. Maps
// are populated through their pins, as the agent's enrollment would: pod addresses, listening
// sockets (real TCP listeners on loopback, which SOCKHASH accepts), a delivery tuple and
// exclusions.
//
// test_run for sk_lookup needs Linux 5.13 (net/bpf/test_run.c, bpf_prog_test_run_sk_lookup):
// ctx_in is a struct bpf_sk_lookup whose `sk`/`cookie` and the fields after local_port
// (ingress_ifindex) must be zero, family must be AF_INET or AF_INET6, and data_in/out are
// refused. The program runs once, like an attached program with a single link; the selection
// comes back as ctx_out.cookie (0 when nothing was selected). When the selected socket has
// SO_REUSEPORT and the program did not pass BPF_SK_LOOKUP_F_NO_REUSEPORT, test_run fails with
// EOPNOTSUPP (it cannot run the reuseport group selection that a real lookup would): the in-pod
// listeners do not set SO_REUSEPORT, and neither do the test's.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "agent/bpf/capture_programs.h"
#include "capture_abi.h"
#include "common/fd.h"
#include "common/ip_address.h"
#include "sim/sim_cluster.h"
#include "sk_lookup.skel.h"
#include "tests/e2e/privileged_gate.h"

namespace nodemesh::sim {
namespace {

// Netns cookies of three simulated pods. The programs are never attached, so any value works.
constexpr uint64_t kPodA = 0x6e6d00000000000a;  // all four listeners
constexpr uint64_t kPodB = 0x6e6d00000000000b;  // an IPv4 inbound listener only
constexpr uint64_t kPodC = 0x6e6d00000000000c;  // an IPv4 socket registered as its v6 listener

constexpr char kPodAv4[] = "10.244.7.10";
constexpr char kPodAv6[] = "fd00:7::10";
constexpr char kPodBv4[] = "10.244.7.20";
constexpr char kPodBv6[] = "fd00:7::20";
constexpr char kPodCv6[] = "fd00:7::30";
constexpr char kClientV4[] = "10.244.9.5";
constexpr char kClientV6[] = "fd00:9::5";

constexpr uint16_t kExcludedInboundPort = 8443;
constexpr uint16_t kExcludedOutboundPort = 9090;
constexpr char kExcludedCidrV4[] = "192.0.2.0/24";
constexpr char kExcludedCidrV6[] = "2001:db8::/32";

// The tunnel's delivery connection to pod A's application: 10.244.7.10:40000 -> :8080.
constexpr uint16_t kDeliverySrcPort = 40000;
constexpr uint16_t kAppPort = 8080;

constexpr int kNoReason = -1;

// Which of the test's listening sockets the program is expected to select.
enum class Selected { kNone, kAInboundV4, kAInboundV6, kAHboneV4, kAHboneV6, kBInboundV4 };

struct VerdictCase {
  const char* name;
  int family;  // AF_INET, AF_INET6
  int protocol;
  const char* remote_ip;
  uint16_t remote_port;
  const char* local_ip;
  uint16_t local_port;
  Selected selected;
  int reason;    // the counter bumped once (node-wide and for `pod`), or kNoReason: none at all
  uint64_t pod;  // whose counters change; 0 with kNoReason
};

void PrintTo(const VerdictCase& c, std::ostream* os) {
  *os << c.name;
}

constexpr int kTcp = IPPROTO_TCP;
constexpr int kUdp = IPPROTO_UDP;

const VerdictCase kCases[] = {
    // Not TCP: left to the kernel, nothing counted.
    {"udp_v4_to_pod", AF_INET, kUdp, kClientV4, 5353, kPodAv4, 53, Selected::kNone, kNoReason, 0},
    {"udp_v6_to_pod", AF_INET6, kUdp, kClientV6, 5353, kPodAv6, 53, Selected::kNone, kNoReason, 0},
    // Not an enrolled pod's address: left to the kernel, nothing counted.
    {"tcp_v4_not_a_pod", AF_INET, kTcp, kClientV4, 33000, "10.244.7.99", 80, Selected::kNone,
     kNoReason, 0},
    {"tcp_v4_loopback", AF_INET, kTcp, "127.0.0.1", 33000, "127.0.0.1", 15006, Selected::kNone,
     kNoReason, 0},
    {"tcp_v6_not_a_pod", AF_INET6, kTcp, kClientV6, 33000, "fd00:7::99", 80, Selected::kNone,
     kNoReason, 0},
    // A pod address, any port: the inbound listener of the lookup's family.
    {"tcp_v4_pod_port_80", AF_INET, kTcp, kClientV4, 33000, kPodAv4, 80, Selected::kAInboundV4,
     NM_IN_STEERED, kPodA},
    {"tcp_v4_pod_port_1", AF_INET, kTcp, kClientV4, 65535, kPodAv4, 1, Selected::kAInboundV4,
     NM_IN_STEERED, kPodA},
    {"tcp_v4_pod_port_65535", AF_INET, kTcp, kClientV4, 1, kPodAv4, 65535, Selected::kAInboundV4,
     NM_IN_STEERED, kPodA},
    {"tcp_v4_pod_port_15006", AF_INET, kTcp, kClientV4, 33000, kPodAv4, 15006,
     Selected::kAInboundV4, NM_IN_STEERED, kPodA},
    {"tcp_v6_pod_port_443", AF_INET6, kTcp, kClientV6, 33000, kPodAv6, 443, Selected::kAInboundV6,
     NM_IN_STEERED, kPodA},
    {"tcp_v4_other_pod", AF_INET, kTcp, kClientV4, 33000, kPodBv4, 80, Selected::kBInboundV4,
     NM_IN_STEERED, kPodB},
    // 15008: the HBONE listener.
    {"tcp_v4_hbone", AF_INET, kTcp, kClientV4, 33000, kPodAv4, 15008, Selected::kAHboneV4,
     NM_IN_HBONE_STEERED, kPodA},
    {"tcp_v6_hbone", AF_INET6, kTcp, kClientV6, 33000, kPodAv6, 15008, Selected::kAHboneV6,
     NM_IN_HBONE_STEERED, kPodA},
    // No listener registered for what the lookup needs: left to the kernel, counted.
    {"tcp_v4_hbone_unregistered", AF_INET, kTcp, kClientV4, 33000, kPodBv4, 15008, Selected::kNone,
     NM_IN_NO_LISTENER, kPodB},
    {"tcp_v6_inbound_unregistered", AF_INET6, kTcp, kClientV6, 33000, kPodBv6, 80, Selected::kNone,
     NM_IN_NO_LISTENER, kPodB},
    // A socket of the wrong family in the v6 slot: bpf_sk_assign refuses it (-EAFNOSUPPORT).
    {"tcp_v6_listener_wrong_family", AF_INET6, kTcp, kClientV6, 33000, kPodCv6, 80, Selected::kNone,
     NM_IN_ASSIGN_FAILED, kPodC},
    // The tunnel's own delivery connection reaches the application; a near miss does not.
    {"tcp_v4_delivery_tuple", AF_INET, kTcp, kPodAv4, kDeliverySrcPort, kPodAv4, kAppPort,
     Selected::kNone, NM_IN_DELIVERY_PASSED, kPodA},
    {"tcp_v4_delivery_other_src_port", AF_INET, kTcp, kPodAv4, kDeliverySrcPort + 1, kPodAv4,
     kAppPort, Selected::kAInboundV4, NM_IN_STEERED, kPodA},
    {"tcp_v4_delivery_other_dst_port", AF_INET, kTcp, kPodAv4, kDeliverySrcPort, kPodAv4,
     kAppPort + 1, Selected::kAInboundV4, NM_IN_STEERED, kPodA},
    // Excluded inbound port.
    {"tcp_v4_excluded_inbound_port", AF_INET, kTcp, kClientV4, 33000, kPodAv4, kExcludedInboundPort,
     Selected::kNone, NM_IN_SKIP_EXCLUDED, kPodA},
    {"tcp_v6_excluded_inbound_port", AF_INET6, kTcp, kClientV6, 33000, kPodAv6,
     kExcludedInboundPort, Selected::kNone, NM_IN_SKIP_EXCLUDED, kPodA},
    // An inbound exclusion is about the local port: the same number as a source port is not.
    {"tcp_v4_excluded_port_as_source", AF_INET, kTcp, kClientV4, kExcludedInboundPort, kPodAv4, 80,
     Selected::kAInboundV4, NM_IN_STEERED, kPodA},
    // Excluded source CIDRs, at and just past their boundaries.
    {"tcp_v4_excluded_cidr_first", AF_INET, kTcp, "192.0.2.0", 33000, kPodAv4, 80, Selected::kNone,
     NM_IN_SKIP_EXCLUDED, kPodA},
    {"tcp_v4_excluded_cidr_last", AF_INET, kTcp, "192.0.2.255", 33000, kPodAv4, 80, Selected::kNone,
     NM_IN_SKIP_EXCLUDED, kPodA},
    {"tcp_v4_below_excluded_cidr", AF_INET, kTcp, "192.0.1.255", 33000, kPodAv4, 80,
     Selected::kAInboundV4, NM_IN_STEERED, kPodA},
    {"tcp_v4_above_excluded_cidr", AF_INET, kTcp, "192.0.3.0", 33000, kPodAv4, 80,
     Selected::kAInboundV4, NM_IN_STEERED, kPodA},
    {"tcp_v6_excluded_cidr_last", AF_INET6, kTcp, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 33000,
     kPodAv6, 80, Selected::kNone, NM_IN_SKIP_EXCLUDED, kPodA},
    {"tcp_v6_above_excluded_cidr", AF_INET6, kTcp, "2001:db9::", 33000, kPodAv6, 80,
     Selected::kAInboundV6, NM_IN_STEERED, kPodA},
    // The excluded CIDR applies to the source of an inbound connection, HBONE included.
    {"tcp_v4_hbone_from_excluded_cidr", AF_INET, kTcp, "192.0.2.7", 33000, kPodAv4, 15008,
     Selected::kNone, NM_IN_SKIP_EXCLUDED, kPodA},
    // A port excluded for outbound connections only is still steered inbound.
    {"tcp_v4_outbound_only_port", AF_INET, kTcp, kClientV4, 33000, kPodAv4, kExcludedOutboundPort,
     Selected::kAInboundV4, NM_IN_STEERED, kPodA},
    {"tcp_v6_outbound_only_port", AF_INET6, kTcp, kClientV6, 33000, kPodAv6, kExcludedOutboundPort,
     Selected::kAInboundV6, NM_IN_STEERED, kPodA},
};

using agent::Counters;

// "in_steered +1, ..." for every counter that changed; empty when none did.
std::string counterDelta(const Counters& before, const Counters& after) {
  std::string out;
  for (int i = 0; i < NM_REASON_MAX; ++i) {
    if (before[i] == after[i]) continue;
    if (!out.empty()) out += ", ";
    int64_t delta = static_cast<int64_t>(after[i] - before[i]);
    out += std::string(agent::reasonName(i)) + (delta > 0 ? " +" : " ") + std::to_string(delta);
  }
  return out;
}

std::string expectedDelta(int reason) {
  return reason == kNoReason ? "" : std::string(agent::reasonName(reason)) + " +1";
}

// Holds a skeleton; destroys it (and its fds) when done.
struct SkelDeleter {
  void operator()(sk_lookup_bpf* skel) const { sk_lookup_bpf__destroy(skel); }
};

// Three enrolled pods, exclusions and a delivery tuple in the maps of a fresh installation.
class SkLookupProg : public ::testing::Test {
 protected:
  void SetUp() override {
    NODEMESH_REQUIRE_ROOT_OR_SKIP();
    ncpus_ = libbpf_num_possible_cpus();
    ASSERT_GT(ncpus_, 0);
    cluster_ = std::make_unique<SimCluster>();

    agent::CaptureOptions options;
    options.bpffs_dir = cluster_->bpffsDir() + "/progtest";
    options.cgroup_path = cluster_->createCgroup("progtest");
    auto installed = agent::CapturePrograms::install(options);
    ASSERT_TRUE(installed) << installed.error().message;
    programs_ = std::move(*installed);
    maps_dir_ = options.bpffs_dir + "/maps";

    // The loader keeps its program fds private: load the same object again, against the same
    // pins and with the same configuration, for a program fd to run.
    bpf_object_open_opts open_opts{};
    open_opts.sz = sizeof(open_opts);
    open_opts.pin_root_path = maps_dir_.c_str();
    skel_.reset(sk_lookup_bpf__open_opts(&open_opts));
    ASSERT_NE(skel_, nullptr) << "open sk_lookup object: " << std::strerror(errno);
    skel_->rodata->nm_cfg.outbound_mark = options.outbound_mark;
    skel_->rodata->nm_cfg.delivery_mark = options.delivery_mark;
    ASSERT_EQ(sk_lookup_bpf__load(skel_.get()), 0) << "load sk_lookup object";
    prog_fd_ = bpf_program__fd(skel_->progs.nm_sk_lookup);

    for (const char* name : {"nm_pod_addrs", "nm_listeners", "nm_delivery", "nm_excl_ports",
                             "nm_excl_cidrs", "nm_pod_stats", "nm_node_stats"}) {
      UniqueFd fd(bpf_obj_get((maps_dir_ + "/" + name).c_str()));
      ASSERT_TRUE(fd.valid()) << "open pin " << maps_dir_ << "/" << name << ": "
                              << std::strerror(errno);
      maps_[name] = std::move(fd);
    }
    // The program under test must share the agent's maps, not have created its own.
    ASSERT_EQ(mapId(bpf_map__fd(skel_->maps.nm_listeners)), mapId(map("nm_listeners")));

    listen(AF_INET, Selected::kAInboundV4);
    listen(AF_INET6, Selected::kAInboundV6);
    listen(AF_INET, Selected::kAHboneV4);
    listen(AF_INET6, Selected::kAHboneV6);
    listen(AF_INET, Selected::kBInboundV4);
    ASSERT_FALSE(HasFatalFailure());

    enroll(kPodA, {kPodAv4, kPodAv6});
    registerListener(kPodA, NM_LISTENER_INBOUND, 4, Selected::kAInboundV4);
    registerListener(kPodA, NM_LISTENER_INBOUND, 6, Selected::kAInboundV6);
    registerListener(kPodA, NM_LISTENER_HBONE, 4, Selected::kAHboneV4);
    registerListener(kPodA, NM_LISTENER_HBONE, 6, Selected::kAHboneV6);
    enroll(kPodB, {kPodBv4, kPodBv6});
    registerListener(kPodB, NM_LISTENER_INBOUND, 4, Selected::kBInboundV4);
    enroll(kPodC, {kPodCv6});
    registerListener(kPodC, NM_LISTENER_INBOUND, 6, Selected::kBInboundV4);
    ASSERT_FALSE(HasFatalFailure());

    excludePort(kExcludedInboundPort, NM_EXCLUDE_INBOUND);
    excludePort(kExcludedOutboundPort, NM_EXCLUDE_OUTBOUND);
    // Like the agent, a CIDR excludes both directions.
    excludeCidr(kExcludedCidrV4, NM_EXCLUDE_OUTBOUND | NM_EXCLUDE_INBOUND);
    excludeCidr(kExcludedCidrV6, NM_EXCLUDE_OUTBOUND | NM_EXCLUDE_INBOUND);
    addDelivery(kPodAv4, kDeliverySrcPort, kPodAv4, kAppPort);
  }

  void TearDown() override {
    skel_.reset();
    maps_.clear();
    listeners_.clear();
    if (programs_) {
      auto st = programs_->uninstall();
      EXPECT_TRUE(st) << st.error().message;
      programs_.reset();
    }
    if (cluster_) {
      cluster_->teardown();
      EXPECT_EQ(SimCluster::findLeftovers(cluster_->prefix()), std::vector<std::string>{});
      cluster_.reset();
    }
  }

  int map(const std::string& name) { return maps_.at(name).get(); }

  static uint32_t mapId(int fd) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return 0;
    return info.id;
  }

  static nm_ip toNmIp(const char* text) {
    auto ip = IpAddress::parse(text);
    EXPECT_TRUE(ip) << text;
    nm_ip out{};
    if (ip) std::memcpy(out.addr, ip->bytes().data(), 16);
    return out;
  }

  // A listening TCP socket on loopback, port 0, recorded with its SO_COOKIE.
  void listen(int family, Selected which) {
    UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(fd.valid()) << "socket: " << std::strerror(errno);
    int rc;
    if (family == AF_INET) {
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    } else {
      int one = 1;
      ASSERT_EQ(::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)), 0);
      sockaddr_in6 sa{};
      sa.sin6_family = AF_INET6;
      sa.sin6_addr = in6addr_loopback;
      rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    }
    ASSERT_EQ(rc, 0) << "bind loopback (family " << family << "): " << std::strerror(errno);
    ASSERT_EQ(::listen(fd.get(), 8), 0) << std::strerror(errno);
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    ASSERT_EQ(::getsockopt(fd.get(), SOL_SOCKET, SO_COOKIE, &cookie, &len), 0)
        << std::strerror(errno);
    ASSERT_NE(cookie, 0u);
    cookies_[which] = cookie;
    listeners_[which] = std::move(fd);
  }

  // What enrollPod writes for a pod, minus the listeners: zeroed counters and its addresses.
  void enroll(uint64_t pod, const std::vector<const char*>& ips) {
    std::vector<nm_counters> zero(ncpus_);
    std::memset(zero.data(), 0, zero.size() * sizeof(nm_counters));
    ASSERT_EQ(bpf_map_update_elem(map("nm_pod_stats"), &pod, zero.data(), BPF_NOEXIST), 0)
        << std::strerror(errno);
    for (const char* ip : ips) {
      nm_ip key = toNmIp(ip);
      ASSERT_EQ(bpf_map_update_elem(map("nm_pod_addrs"), &key, &pod, BPF_NOEXIST), 0)
          << ip << ": " << std::strerror(errno);
    }
  }

  void registerListener(uint64_t pod, uint16_t kind, uint16_t family, Selected which) {
    nm_listener_key key{};
    key.netns_cookie = pod;
    key.kind = kind;
    key.family = family;
    uint64_t fd = static_cast<uint64_t>(listeners_.at(which).get());
    ASSERT_EQ(bpf_map_update_elem(map("nm_listeners"), &key, &fd, BPF_NOEXIST), 0)
        << "SOCKHASH insert of a listening socket: " << std::strerror(errno);
  }

  void excludePort(uint16_t port, uint8_t bits) {
    ASSERT_EQ(bpf_map_update_elem(map("nm_excl_ports"), &port, &bits, BPF_NOEXIST), 0)
        << std::strerror(errno);
  }

  void excludeCidr(const char* text, uint8_t bits) {
    auto cidr = Cidr::parse(text);
    ASSERT_TRUE(cidr) << text;
    nm_lpm_key key{};
    key.prefixlen = static_cast<uint32_t>(cidr->prefixLen());  // on the v4-mapped form
    std::memcpy(key.addr, cidr->base().bytes().data(), 16);
    nm_excl_cidr value{};
    value.dirs = bits;
    value.prefixlen = static_cast<uint16_t>(key.prefixlen);
    ASSERT_EQ(bpf_map_update_elem(map("nm_excl_cidrs"), &key, &value, BPF_NOEXIST), 0)
        << std::strerror(errno);
  }

  void addDelivery(const char* src, uint16_t src_port, const char* dst, uint16_t dst_port) {
    nm_tuple key{};
    nm_ip s = toNmIp(src);
    nm_ip d = toNmIp(dst);
    std::memcpy(key.src, s.addr, 16);
    std::memcpy(key.dst, d.addr, 16);
    key.src_port = src_port;
    key.dst_port = dst_port;
    uint8_t one = 1;
    ASSERT_EQ(bpf_map_update_elem(map("nm_delivery"), &key, &one, BPF_NOEXIST), 0)
        << std::strerror(errno);
  }

  // Per-CPU counters summed over every possible CPU.
  Counters readCounters(const std::string& name, const void* key) {
    std::vector<nm_counters> values(ncpus_);
    Counters sum{};
    EXPECT_EQ(bpf_map_lookup_elem(map(name), key, values.data()), 0)
        << name << ": " << std::strerror(errno);
    for (const auto& v : values) {
      for (int i = 0; i < NM_REASON_MAX; ++i) sum[i] += v.count[i];
    }
    return sum;
  }

  std::map<uint64_t, Counters> snapshot() {
    std::map<uint64_t, Counters> out;
    uint32_t zero = 0;
    out[0] = readCounters("nm_node_stats", &zero);  // key 0: node-wide
    for (uint64_t pod : {kPodA, kPodB, kPodC}) out[pod] = readCounters("nm_pod_stats", &pod);
    return out;
  }

  struct Outcome {
    int err = 0;  // of bpf_prog_test_run_opts, -errno
    uint32_t retval = 0;
    uint64_t cookie = 0;  // of the selected socket, 0 for none
  };

  Outcome run(const VerdictCase& c) {
    return run(c.family, c.protocol, c.remote_ip, c.remote_port, c.local_ip, c.local_port);
  }

  Outcome run(int family, int protocol, const char* remote_ip, uint16_t remote_port,
              const char* local_ip, uint16_t local_port) {
    bpf_sk_lookup in{};
    in.family = static_cast<uint32_t>(family);
    in.protocol = static_cast<uint32_t>(protocol);
    void* remote = family == AF_INET ? static_cast<void*>(&in.remote_ip4) : in.remote_ip6;
    void* local = family == AF_INET ? static_cast<void*>(&in.local_ip4) : in.local_ip6;
    EXPECT_EQ(inet_pton(family, remote_ip, remote), 1) << remote_ip;
    EXPECT_EQ(inet_pton(family, local_ip, local), 1) << local_ip;
    in.remote_port = htons(remote_port);  // __be16
    in.local_port = local_port;           // host order
    bpf_sk_lookup out{};
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.ctx_in = &in;
    opts.ctx_size_in = sizeof(in);
    opts.ctx_out = &out;
    opts.ctx_size_out = sizeof(out);
    Outcome outcome;
    outcome.err = bpf_prog_test_run_opts(prog_fd_, &opts);
    outcome.retval = opts.retval;
    outcome.cookie = out.cookie;
    return outcome;
  }

  int ncpus_ = 0;
  std::unique_ptr<SimCluster> cluster_;
  std::unique_ptr<agent::CapturePrograms> programs_;
  std::string maps_dir_;
  std::unique_ptr<sk_lookup_bpf, SkelDeleter> skel_;
  int prog_fd_ = -1;
  std::map<std::string, UniqueFd> maps_;
  std::map<Selected, UniqueFd> listeners_;
  std::map<Selected, uint64_t> cookies_;
};

class SkLookupProgTest : public SkLookupProg, public ::testing::WithParamInterface<VerdictCase> {};

TEST_P(SkLookupProgTest, Verdict) {
  const VerdictCase& c = GetParam();
  auto before = snapshot();

  Outcome outcome = run(c);
  ASSERT_EQ(outcome.err, 0) << "BPF_PROG_TEST_RUN: " << std::strerror(-outcome.err);
  // The program never drops: a lookup it does not steer is left to the kernel.
  EXPECT_EQ(outcome.retval, static_cast<uint32_t>(SK_PASS));
  uint64_t want = c.selected == Selected::kNone ? 0 : cookies_.at(c.selected);
  EXPECT_EQ(outcome.cookie, want) << "selected socket cookie (0 = none); listeners: A in4 "
                                  << cookies_[Selected::kAInboundV4] << ", A in6 "
                                  << cookies_[Selected::kAInboundV6] << ", A hbone4 "
                                  << cookies_[Selected::kAHboneV4] << ", A hbone6 "
                                  << cookies_[Selected::kAHboneV6] << ", B in4 "
                                  << cookies_[Selected::kBInboundV4];

  auto after = snapshot();
  EXPECT_EQ(counterDelta(before[0], after[0]), expectedDelta(c.reason)) << "node counters";
  for (uint64_t pod : {kPodA, kPodB, kPodC}) {
    EXPECT_EQ(counterDelta(before[pod], after[pod]), pod == c.pod ? expectedDelta(c.reason) : "")
        << "counters of pod " << std::hex << pod;
  }
}

INSTANTIATE_TEST_SUITE_P(SkLookup, SkLookupProgTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<VerdictCase>& case_info) {
                           return std::string(case_info.param.name);
                         });

// A listener that closes (the tunnel stopped serving the pod) leaves the SOCKHASH by itself:
// lookups go back to the kernel instead of to a dead socket.
TEST_F(SkLookupProg, ClosedListenerIsNoLongerSelected) {
  Outcome before = run(AF_INET, IPPROTO_TCP, kClientV4, 33000, kPodAv4, 80);
  ASSERT_EQ(before.err, 0) << std::strerror(-before.err);
  EXPECT_EQ(before.cookie, cookies_.at(Selected::kAInboundV4));

  listeners_.erase(Selected::kAInboundV4);
  auto counters = snapshot();
  Outcome after = run(AF_INET, IPPROTO_TCP, kClientV4, 33000, kPodAv4, 80);
  ASSERT_EQ(after.err, 0) << std::strerror(-after.err);
  EXPECT_EQ(after.retval, static_cast<uint32_t>(SK_PASS));
  EXPECT_EQ(after.cookie, 0u);
  EXPECT_EQ(counterDelta(counters[kPodA], snapshot()[kPodA]), "in_no_listener +1");
}

}  // namespace
}  // namespace nodemesh::sim

namespace nodemesh::sim {
namespace {

// An IPv6 prefix shorter than /96 (here ::/0) spans the v4-mapped range in the trie, but it is
// an IPv6 range: IPv4 sources stay steered, IPv6 sources are excluded.
TEST_F(SkLookupProg, ShortIpv6PrefixExcludesOnlyIpv6) {
  excludeCidr("::/0", NM_EXCLUDE_INBOUND);
  ASSERT_FALSE(HasFatalFailure());
  Outcome v4 = run(AF_INET, IPPROTO_TCP, kClientV4, 33000, kPodAv4, 80);
  ASSERT_EQ(v4.err, 0) << std::strerror(-v4.err);
  EXPECT_EQ(v4.cookie, cookies_.at(Selected::kAInboundV4));
  Outcome v6 = run(AF_INET6, IPPROTO_TCP, kClientV6, 33000, kPodAv6, 80);
  ASSERT_EQ(v6.err, 0) << std::strerror(-v6.err);
  EXPECT_EQ(v6.cookie, 0u);
}

}  // namespace
}  // namespace nodemesh::sim
