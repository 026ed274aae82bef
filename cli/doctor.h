#pragma once

// `nodemeshctl doctor`: can this host run the agent? Each check reads the host directly (no
// agent needed): kernel version, BTF, cgroup2, bpffs, every BPF program and map type the
// capture programs use (loaded for real by libbpf's probes), io_uring with the operations and
// provided buffer rings the tunnel uses, capabilities, and the agent's ports.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodemesh::cli {

enum class CheckStatus { kOk, kWarn, kFail };

std::string_view toString(CheckStatus status);  // "ok", "warn", "FAIL"

struct Check {
  std::string name;
  CheckStatus status = CheckStatus::kOk;
  std::string detail;
};

struct DoctorOptions {
  std::string bpffs = "/sys/fs/bpf/nodemesh";  // the agent's --bpffs
  std::string btf = "/sys/kernel/btf/vmlinux";
  uint16_t admin_port = 15000;
  uint16_t metrics_port = 15020;
  uint16_t readiness_port = 15021;
};

std::vector<Check> runDoctor(const DoctorOptions& options);

// ---- pieces, for tests ----

// "6.18.44-fc-v595" -> {6, 18}; nullopt when unparsable.
std::optional<std::pair<int, int>> parseKernelVersion(std::string_view release);

// The socket inode listening on `port` in /proc/net/tcp(6) text; nullopt when none.
std::optional<uint64_t> listeningInode(std::string_view text, uint16_t port);

// The bpffs check for a pin directory, given how to ask what filesystem a path is on
// (statfs f_type) and whether it exists.
struct FsProbe {
  virtual ~FsProbe() = default;
  virtual bool exists(const std::string& path) const = 0;
  virtual bool isBpffs(const std::string& path) const = 0;
  virtual std::string fsName(const std::string& path) const = 0;  // "tmpfs", "ext4", ...
};
Check checkBpffsDir(const std::string& dir, const FsProbe& probe);

}  // namespace nodemesh::cli
