// nm-send-zc-micro: does io_uring's zero-copy send (IORING_OP_SEND_ZC) pay for the agent's
// ciphertext on the paths it takes here? One TCP connection carries a bulk stream: a sender
// thread submits fixed-size chunks through its own io_uring, one send in flight at a time as the
// agent's workers do, with a plain SEND or with SEND_ZC (asking the kernel to report whether it
// copied the pages after all, IORING_SEND_ZC_REPORT_USAGE); a receiver thread reads and drops
// the bytes. The figures are the throughput and the process's CPU time per KiB (both threads and
// the softirq work the kernel ran in them).
//
// The connection runs over a loopback interface of a network namespace the tool makes for itself
// (unshare(CLONE_NEWNET), so root): every path between two pods of the benchmark's simulated
// nodes (veth, a bridge, another namespace) is a local delivery like it, and the kernel copies a
// zero-copy send's pages when it delivers them to a local socket (Documentation/networking/
// msg_zerocopy.rst, "Loopback"; veth orphans the fragments the same way). Written by hand: no
// benchmark tool here measures SEND_ZC (iperf3's --zerocopy is sendfile).
//
//   nm-send-zc-micro [--mode copy|zc|both] [--chunk BYTES] [--seconds S] [--repeats R]
//
// Defaults: both modes, 65536-byte chunks (the size of the agent's larger TLS writes), 2 s a
// run, 3 runs of each mode, interleaved. Prints one JSON line per mode: {"mode": ...,
// "gbit_per_s": median, "cpu_ns_per_kib": median, "runs": [...], "zc_copied_notifications": N,
// "zc_notifications": M}.

#include <arpa/inet.h>
#include <liburing.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

// liburing 2.3's copy of the kernel header predates these (Linux 6.2).
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

namespace nodemesh::bench::micro {
namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "nm-send-zc-micro: %s\n", why.c_str());
  std::exit(1);
}

[[noreturn]] void dieErrno(const std::string& what) {
  die(what + ": " + std::strerror(errno));
}

double seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double processCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto to_seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
  };
  return to_seconds(usage.ru_utime) + to_seconds(usage.ru_stime);
}

// A namespace of our own, so the host's loopback and settings are never touched.
void enterOwnNetworkNamespace() {
  if (unshare(CLONE_NEWNET) != 0) dieErrno("unshare(CLONE_NEWNET) (run as root)");
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) dieErrno("socket");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) dieErrno("SIOCGIFFLAGS lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (ioctl(fd, SIOCSIFFLAGS, &request) != 0) dieErrno("SIOCSIFFLAGS lo up");
  close(fd);
}

struct Connection {
  int sender = -1;
  int receiver = -1;
};

Connection connectOverLoopback() {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) dieErrno("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) dieErrno("bind");
  if (listen(listener, 1) != 0) dieErrno("listen");
  socklen_t length = sizeof(address);
  if (getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    dieErrno("getsockname");
  }
  Connection connection;
  connection.sender = socket(AF_INET, SOCK_STREAM, 0);
  if (connection.sender < 0) dieErrno("socket");
  if (connect(connection.sender, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    dieErrno("connect");
  }
  connection.receiver = accept(listener, nullptr, nullptr);
  if (connection.receiver < 0) dieErrno("accept");
  close(listener);
  const int one = 1;
  setsockopt(connection.sender, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return connection;
}

struct Run {
  double gbit_per_s = 0;
  double cpu_ns_per_kib = 0;
  uint64_t notifications = 0;
  uint64_t copied_notifications = 0;
};

// Sends for `duration` seconds, one send in flight; with zero-copy, a chunk's buffer is written
// again only after its notification (kBuffers rotate, so the next send need not wait for it).
Run runOnce(bool zero_copy, size_t chunk, double duration) {
  const Connection connection = connectOverLoopback();
  // Reads until the sender's shutdown (EOF) at the end of the run.
  std::thread receiver([&] {
    std::vector<char> sink(256 * 1024);
    while (recv(connection.receiver, sink.data(), sink.size(), 0) > 0) {
    }
  });

  io_uring ring{};
  if (const int rc = io_uring_queue_init(64, &ring, 0); rc < 0) {
    die(std::string("io_uring_queue_init: ") + std::strerror(-rc));
  }
  constexpr size_t kBuffers = 8;
  std::vector<std::vector<char>> buffers(kBuffers, std::vector<char>(chunk, 'x'));
  std::vector<bool> buffer_busy(kBuffers, false);  // waiting for its notification

  Run run;
  uint64_t bytes = 0;
  size_t next = 0;
  size_t offset = 0;  // of the current chunk, after a short send
  bool send_in_flight = false;
  const double cpu_start = processCpuSeconds();
  const double start = seconds(CLOCK_MONOTONIC);
  const double end = start + duration;
  uint64_t pending_notifications = 0;
  while (true) {
    const bool sending = seconds(CLOCK_MONOTONIC) < end;
    if (!sending && !send_in_flight && pending_notifications == 0) break;
    if (sending && !send_in_flight && !buffer_busy[next]) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      const char* data = buffers[next].data() + offset;
      const size_t length = chunk - offset;
      if (zero_copy) {
        io_uring_prep_send_zc(sqe, connection.sender, data, length, 0, IORING_SEND_ZC_REPORT_USAGE);
      } else {
        io_uring_prep_send(sqe, connection.sender, data, length, 0);
      }
      io_uring_sqe_set_data64(sqe, next);
      send_in_flight = true;
    }
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR) die(std::string("io_uring_submit_and_wait: ") + std::strerror(-rc));
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      const auto index = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
      if ((cqe->flags & IORING_CQE_F_NOTIF) != 0) {
        buffer_busy[index] = false;
        --pending_notifications;
        ++run.notifications;
        if ((static_cast<uint32_t>(cqe->res) & IORING_NOTIF_USAGE_ZC_COPIED) != 0) {
          ++run.copied_notifications;
        }
        continue;
      }
      send_in_flight = false;
      if (cqe->res < 0) die(std::string("send: ") + std::strerror(-cqe->res));
      if ((cqe->flags & IORING_CQE_F_MORE) != 0) {
        buffer_busy[index] = true;
        ++pending_notifications;
      }
      bytes += static_cast<uint64_t>(cqe->res);
      offset += static_cast<size_t>(cqe->res);
      if (offset == chunk) {
        offset = 0;
        next = (next + 1) % kBuffers;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
  const double elapsed = seconds(CLOCK_MONOTONIC) - start;
  shutdown(connection.sender, SHUT_WR);
  receiver.join();
  const double cpu = processCpuSeconds() - cpu_start;
  io_uring_queue_exit(&ring);
  close(connection.sender);
  close(connection.receiver);

  run.gbit_per_s = static_cast<double>(bytes) * 8 / elapsed / 1e9;
  run.cpu_ns_per_kib = cpu * 1e9 / (static_cast<double>(bytes) / 1024);
  return run;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

void report(const char* mode, const std::vector<Run>& runs) {
  std::vector<double> rates;
  std::vector<double> costs;
  nlohmann::json listed = nlohmann::json::array();
  uint64_t notifications = 0;
  uint64_t copied = 0;
  for (const Run& run : runs) {
    rates.push_back(run.gbit_per_s);
    costs.push_back(run.cpu_ns_per_kib);
    notifications += run.notifications;
    copied += run.copied_notifications;
    listed.push_back({{"gbit_per_s", run.gbit_per_s}, {"cpu_ns_per_kib", run.cpu_ns_per_kib}});
  }
  nlohmann::json line = {{"mode", mode},
                         {"gbit_per_s", median(rates)},
                         {"cpu_ns_per_kib", median(costs)},
                         {"runs", listed}};
  if (notifications > 0) {
    line["zc_notifications"] = notifications;
    line["zc_copied_notifications"] = copied;
  }
  std::printf("%s\n", line.dump().c_str());
}

int run(int argc, char** argv) {
  std::string mode = "both";
  size_t chunk = 65536;
  double duration = 2;
  int repeats = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) die("missing the value of " + flag);
    const std::string value = argv[++i];
    char* rest = nullptr;
    if (flag == "--mode") {
      mode = value;
    } else if (flag == "--chunk") {
      chunk = std::strtoul(value.c_str(), &rest, 10);
      if (*rest != '\0' || chunk == 0 || chunk > (16U << 20)) die("--chunk: 1..16777216 bytes");
    } else if (flag == "--seconds") {
      duration = std::strtod(value.c_str(), &rest);
      if (*rest != '\0' || duration <= 0 || duration > 600) die("--seconds: above 0, at most 600");
    } else if (flag == "--repeats") {
      repeats = static_cast<int>(std::strtol(value.c_str(), &rest, 10));
      if (*rest != '\0' || repeats < 1 || repeats > 100) die("--repeats: 1..100");
    } else {
      die("unknown flag " + flag);
    }
  }
  if (mode != "copy" && mode != "zc" && mode != "both") die("--mode: copy, zc or both");
  enterOwnNetworkNamespace();
  std::vector<Run> copies;
  std::vector<Run> zero_copies;
  for (int i = 0; i < repeats; ++i) {
    if (mode != "zc") copies.push_back(runOnce(false, chunk, duration));
    if (mode != "copy") zero_copies.push_back(runOnce(true, chunk, duration));
  }
  if (!copies.empty()) report("copy", copies);
  if (!zero_copies.empty()) report("zc", zero_copies);
  return 0;
}

}  // namespace
}  // namespace nodemesh::bench::micro

int main(int argc, char** argv) {
  try {
    return nodemesh::bench::micro::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nm-send-zc-micro: %s\n", e.what());
    return 1;
  }
}
