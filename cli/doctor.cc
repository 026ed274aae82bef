#include "cli/doctor.h"

#include <bpf/libbpf.h>
#include <dirent.h>
#include <liburing.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/cgroup.h"
#include "common/fd.h"

namespace nodemesh::cli {

namespace {

namespace fs = std::filesystem;

// The agent needs 6.0: multishot recv with provided buffer rings (IORING_RECV_MULTISHOT).
// Everything else is older: sk_lookup 5.9, cgroup getpeername hooks 5.8, SO_NETNS_COOKIE 5.14,
// provided buffer rings 5.19.
constexpr std::pair<int, int> kMinKernel = {6, 0};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class RealFs final : public FsProbe {
 public:
  bool exists(const std::string& path) const override {
    std::error_code ec;
    return fs::exists(path, ec);
  }
  bool isBpffs(const std::string& path) const override {
    struct statfs st {};
    return ::statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
  }
  std::string fsName(const std::string& path) const override {
    struct statfs st {};
    if (::statfs(path.c_str(), &st) != 0) return "unknown";
    switch (static_cast<uint64_t>(st.f_type)) {
      case BPF_FS_MAGIC:
        return "bpf";
      case TMPFS_MAGIC:
        return "tmpfs";
      case EXT4_SUPER_MAGIC:
        return "ext4";
      case SYSFS_MAGIC:
        return "sysfs";
      case OVERLAYFS_SUPER_MAGIC:
        return "overlay";
      case BTRFS_SUPER_MAGIC:
        return "btrfs";
      case XFS_SUPER_MAGIC:
        return "xfs";
      default:
        return fmt::format("type {:#x}", static_cast<uint64_t>(st.f_type));
    }
  }
};

Check checkKernel() {
  utsname u{};
  ::uname(&u);
  auto v = parseKernelVersion(u.release);
  if (!v) return {"kernel", CheckStatus::kWarn, std::string("cannot parse ") + u.release};
  if (*v < kMinKernel) {
    return {"kernel", CheckStatus::kFail,
            fmt::format("{}: the tunnel needs Linux {}.{} or later (io_uring multishot recv "
                        "with provided buffer rings)",
                        u.release, kMinKernel.first, kMinKernel.second)};
  }
  return {"kernel", CheckStatus::kOk, u.release};
}

Check checkBtf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return {"btf", CheckStatus::kFail,
            path + ": " + std::strerror(errno) +
                " (kernel built without CONFIG_DEBUG_INFO_BTF: the programs are CO-RE)"};
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return {"btf", CheckStatus::kFail, path + ": not readable (" + std::strerror(errno) + ")"};
  }
  return {"btf", CheckStatus::kOk, fmt::format("{} ({} KiB)", path, st.st_size / 1024)};
}

Check checkCgroup2() {
  auto root = findCgroup2Root();
  if (!root) {
    return {"cgroup2", CheckStatus::kFail,
            root.error().message + " (the capture programs attach to a cgroup2 directory)"};
  }
  return {"cgroup2", CheckStatus::kOk, "mounted at " + *root};
}

Check checkBpffsSupport() {
  std::string filesystems = readFile("/proc/filesystems");
  if (filesystems.find("\tbpf\n") == std::string::npos) {
    return {"bpffs support", CheckStatus::kFail,
            "the kernel has no bpf filesystem (/proc/filesystems): pins are impossible"};
  }
  return {"bpffs support", CheckStatus::kOk, "bpf in /proc/filesystems"};
}

std::vector<Check> checkBpfTypes() {
  std::vector<Check> out;
  struct Prog {
    bpf_prog_type type;
    const char* name;
    const char* use;
  };
  const std::array<Prog, 3> progs = {{
      {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup_sock_addr", "connect4/6, getpeername4/6"},
      {BPF_PROG_TYPE_SOCK_OPS, "sock_ops", "original destination at establishment"},
      {BPF_PROG_TYPE_SK_LOOKUP, "sk_lookup", "inbound steering to 15006/15008"},
  }};
  for (const Prog& p : progs) {
    int r = libbpf_probe_bpf_prog_type(p.type, nullptr);
    std::string name = std::string("bpf prog ") + p.name;
    if (r == 1) {
      out.push_back({name, CheckStatus::kOk, std::string("loads (") + p.use + ")"});
    } else if (r == 0) {
      out.push_back(
          {name, CheckStatus::kFail, std::string("not supported by this kernel (") + p.use + ")"});
    } else {
      out.push_back({name, CheckStatus::kFail,
                     fmt::format("cannot probe: {} (needs CAP_BPF, or root)", std::strerror(-r))});
    }
  }
  struct Map {
    bpf_map_type type;
    const char* name;
  };
  const std::array<Map, 5> maps = {{{BPF_MAP_TYPE_HASH, "hash"},
                                    {BPF_MAP_TYPE_PERCPU_ARRAY, "percpu_array"},
                                    {BPF_MAP_TYPE_LPM_TRIE, "lpm_trie"},
                                    {BPF_MAP_TYPE_SK_STORAGE, "sk_storage"},
                                    {BPF_MAP_TYPE_SOCKHASH, "sockhash"}}};
  std::string missing;
  std::string errors;
  for (const Map& m : maps) {
    int r = libbpf_probe_bpf_map_type(m.type, nullptr);
    if (r == 0) missing += std::string(missing.empty() ? "" : ", ") + m.name;
    if (r < 0) errors = std::strerror(-r);
  }
  if (!errors.empty()) {
    out.push_back(
        {"bpf maps", CheckStatus::kFail, "cannot probe: " + errors + " (needs CAP_BPF, or root)"});
  } else if (!missing.empty()) {
    out.push_back({"bpf maps", CheckStatus::kFail, "not supported: " + missing});
  } else {
    out.push_back(
        {"bpf maps", CheckStatus::kOk, "hash, percpu_array, lpm_trie, sk_storage, sockhash"});
  }
  return out;
}

Check checkIoUring() {
  const std::string disabled = readFile("/proc/sys/kernel/io_uring_disabled");
  if (!disabled.empty() && disabled[0] == '2') {
    return {"io_uring", CheckStatus::kFail, "disabled by sysctl kernel.io_uring_disabled=2"};
  }
  io_uring ring{};
  int err = io_uring_queue_init(8, &ring, 0);
  if (err < 0) {
    return {"io_uring", CheckStatus::kFail,
            fmt::format("io_uring_setup: {}{}", std::strerror(-err),
                        !disabled.empty() && disabled[0] == '1'
                            ? " (kernel.io_uring_disabled=1: only the io_uring_group may)"
                            : "")};
  }
  std::string problems;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    struct Op {
      int op;
      const char* name;
    };
    const std::array<Op, 8> ops = {{{IORING_OP_ACCEPT, "accept"},
                                    {IORING_OP_CONNECT, "connect"},
                                    {IORING_OP_SEND, "send"},
                                    {IORING_OP_RECV, "recv"},
                                    {IORING_OP_SHUTDOWN, "shutdown"},
                                    {IORING_OP_ASYNC_CANCEL, "async_cancel"},
                                    {IORING_OP_TIMEOUT, "timeout"},
                                    {IORING_OP_READ, "read"}}};
    for (const Op& o : ops) {
      if (!io_uring_opcode_supported(probe, o.op)) {
        problems += std::string(problems.empty() ? "" : ", ") + o.name;
      }
    }
    io_uring_free_probe(probe);
  }
  if (!problems.empty()) problems = "operations not supported: " + problems;
  // A provided buffer ring, as each tunnel worker registers (Linux 5.19).
  const size_t len = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem != MAP_FAILED) {
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = 8;
    reg.bgid = 0;
    int r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r < 0) {
      problems +=
          std::string(problems.empty() ? "" : "; ") + "provided buffer rings: " + std::strerror(-r);
    } else {
      (void)io_uring_unregister_buf_ring(&ring, 0);
    }
    ::munmap(mem, len);
  }
  io_uring_queue_exit(&ring);
  if (!problems.empty()) return {"io_uring", CheckStatus::kFail, problems};
  return {"io_uring", CheckStatus::kOk, "ring, operations and provided buffer rings work"};
}

Check checkCapabilities() {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  std::array<__user_cap_data_struct, 2> data{};
  if (::syscall(SYS_capget, &header, data.data()) != 0) {
    return {"capabilities", CheckStatus::kWarn, std::string("capget: ") + std::strerror(errno)};
  }
  auto has = [&](int cap) { return (data[cap / 32].effective & (1u << (cap % 32))) != 0; };
  std::string missing;
  struct Cap {
    int cap;
    const char* name;
  };
  for (const Cap& c : {Cap{CAP_BPF, "CAP_BPF"}, Cap{CAP_NET_ADMIN, "CAP_NET_ADMIN"},
                       Cap{CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}}) {
    if (!has(c.cap)) missing += std::string(missing.empty() ? "" : ", ") + c.name;
  }
  if (!missing.empty()) {
    return {"capabilities", CheckStatus::kFail,
            "missing " + missing +
                " (the agent loads BPF programs, enters pod netns, binds "
                "transparently)"};
  }
  return {"capabilities", CheckStatus::kOk, "CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN"};
}

// Who listens on a port in this network namespace: "comm (pid N)", or "".
std::string portOwner(uint16_t port) {
  std::optional<uint64_t> inode = listeningInode(readFile("/proc/net/tcp"), port);
  if (!inode) inode = listeningInode(readFile("/proc/net/tcp6"), port);
  if (!inode) return "";
  const std::string target = "socket:[" + std::to_string(*inode) + "]";
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string pid = it->path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code fd_ec;
    for (fs::directory_iterator fd(it->path() / "fd", fd_ec), fd_end; !fd_ec && fd != fd_end;
         fd.increment(fd_ec)) {
      std::error_code link_ec;
      if (fs::read_symlink(fd->path(), link_ec).string() == target) {
        std::string comm = readFile(it->path().string() + "/comm");
        while (!comm.empty() && comm.back() == '\n') comm.pop_back();
        return comm + " (pid " + pid + ")";
      }
    }
  }
  return "another process";
}

Check checkPort(uint16_t port, const char* address, const char* what, bool node_port) {
  const std::string name = fmt::format("port {}", port);
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int yes = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = std::strcmp(address, "127.0.0.1") == 0 ? htonl(INADDR_LOOPBACK) : 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
    return {name, CheckStatus::kOk, fmt::format("free ({} on {})", what, address)};
  }
  if (errno != EADDRINUSE) {
    return {name, CheckStatus::kWarn,
            fmt::format("cannot test: bind: {} ({})", std::strerror(errno), what)};
  }
  std::string owner = portOwner(port);
  if (owner.rfind("nodemesh-agent", 0) == 0) {
    return {name, CheckStatus::kOk, fmt::format("held by {} ({})", owner, what)};
  }
  if (!node_port) {
    return {name, CheckStatus::kWarn,
            fmt::format("in use here by {}; the agent listens on it inside each pod's netns, so "
                        "only a host-network pod would conflict ({})",
                        owner, what)};
  }
  return {name, CheckStatus::kFail,
          fmt::format("in use by {}: the agent cannot serve {} (pick another with its flag)", owner,
                      what)};
}

}  // namespace

std::string_view toString(CheckStatus status) {
  switch (status) {
    case CheckStatus::kOk:
      return "ok";
    case CheckStatus::kWarn:
      return "warn";
    case CheckStatus::kFail:
      return "FAIL";
  }
  return "?";
}

std::optional<std::pair<int, int>> parseKernelVersion(std::string_view release) {
  int major = 0;
  int minor = 0;
  size_t i = 0;
  auto number = [&](int* out) {
    size_t start = i;
    while (i < release.size() && release[i] >= '0' && release[i] <= '9') {
      *out = *out * 10 + (release[i] - '0');
      ++i;
    }
    return i > start;
  };
  if (!number(&major) || i >= release.size() || release[i] != '.') return std::nullopt;
  ++i;
  if (!number(&minor)) return std::nullopt;
  return std::make_pair(major, minor);
}

std::optional<uint64_t> listeningInode(std::string_view text, uint16_t port) {
  std::istringstream in{std::string(text)};
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot;
    std::string local;
    std::string remote;
    std::string state;
    fields >> slot >> local >> remote >> state;
    if (state != "0A") continue;  // TCP_LISTEN
    auto colon = local.rfind(':');
    if (colon == std::string::npos) continue;
    unsigned long local_port = std::strtoul(local.c_str() + colon + 1, nullptr, 16);
    if (local_port != port) continue;
    // tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    std::string skip;
    uint64_t inode = 0;
    for (int k = 0; k < 5; ++k) fields >> skip;
    fields >> inode;
    if (inode != 0) return inode;
  }
  return std::nullopt;
}

Check checkBpffsDir(const std::string& dir, const FsProbe& probe) {
  const std::string name = "bpffs";
  if (probe.exists(dir)) {
    if (probe.isBpffs(dir)) return {name, CheckStatus::kOk, dir + " is on a bpffs"};
    return {name, CheckStatus::kFail,
            fmt::format("{} exists but is on {}, not a bpffs: pins cannot live there. Mount one "
                        "(mount -t bpf bpf /sys/fs/bpf) or point --bpffs at a directory on bpffs",
                        dir, probe.fsName(dir))};
  }
  // The nearest existing ancestor decides where the agent would create it.
  fs::path p(dir);
  while (p.has_parent_path() && p != p.parent_path() && !probe.exists(p.string())) {
    p = p.parent_path();
  }
  const std::string ancestor = p.empty() ? "/" : p.string();
  if (probe.isBpffs(ancestor)) {
    return {name, CheckStatus::kOk,
            fmt::format("{} will be created on the bpffs at {}", dir, ancestor)};
  }
  const std::string kRoot = "/sys/fs/bpf";
  if (dir.rfind(kRoot + "/", 0) == 0 && probe.exists(kRoot)) {
    return {name, CheckStatus::kWarn,
            fmt::format("{} is not mounted (it is {}): the agent mounts a bpffs there at start; "
                        "mount it at boot so pins outlive the agent",
                        kRoot, probe.fsName(kRoot))};
  }
  return {name, CheckStatus::kFail,
          fmt::format("no bpffs for {}: the nearest existing directory, {}, is on {}. Pins must "
                      "live on a mounted bpffs to outlive the agent: mount -t bpf bpf "
                      "/sys/fs/bpf, or point --bpffs at a directory on one",
                      dir, ancestor, probe.fsName(ancestor))};
}

std::vector<Check> runDoctor(const DoctorOptions& options) {
  std::vector<Check> out;
  out.push_back(checkKernel());
  out.push_back(checkBtf(options.btf));
  out.push_back(checkCgroup2());
  out.push_back(checkBpffsSupport());
  out.push_back(checkBpffsDir(options.bpffs, RealFs()));
  for (auto& c : checkBpfTypes()) out.push_back(std::move(c));
  out.push_back(checkIoUring());
  out.push_back(checkCapabilities());
  out.push_back(checkPort(options.admin_port, "127.0.0.1", "admin API", true));
  out.push_back(checkPort(15001, "127.0.0.1", "outbound capture, in pods", false));
  out.push_back(checkPort(15006, "0.0.0.0", "inbound plaintext, in pods", false));
  out.push_back(checkPort(15008, "0.0.0.0", "inbound HBONE, in pods", false));
  out.push_back(checkPort(options.metrics_port, "0.0.0.0", "metrics", true));
  out.push_back(checkPort(options.readiness_port, "0.0.0.0", "readiness", true));
  return out;
}

}  // namespace nodemesh::cli
