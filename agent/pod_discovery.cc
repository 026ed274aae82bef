#include "agent/pod_discovery.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <filesystem>
#include <set>

#include "common/netns.h"

namespace nodemesh::agent {

namespace fs = std::filesystem;

namespace {

// "net:[4026532297]" -> 4026532297
uint64_t inodeFromLink(const std::string& link) {
  auto open = link.find('[');
  if (link.rfind("net:", 0) != 0 || open == std::string::npos) return 0;
  return std::strtoull(link.c_str() + open + 1, nullptr, 10);
}

uint64_t ownInode() {
  struct stat st {};
  return ::stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}

}  // namespace

std::vector<NetnsCandidate> listNetns(const std::string& netns_dir, const std::string& proc_dir,
                                      bool include_processes, std::string_view name_prefix) {
  std::vector<NetnsCandidate> out;
  std::set<uint64_t> seen;
  seen.insert(ownInode());
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(netns_dir, ec)) {
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0) continue;  // gone meanwhile, or not mounted
    const bool ours = entry.path().filename().string().starts_with(name_prefix);
    if (seen.insert(st.st_ino).second && ours) {
      out.push_back({st.st_ino, entry.path().string(), true});
    }
  }
  if (!include_processes) return out;
  for (const auto& entry : fs::directory_iterator(proc_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::string path = entry.path().string() + "/ns/net";
    char buf[64];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
    if (n <= 0) continue;  // the process exited, or a kernel thread
    buf[n] = '\0';
    uint64_t ino = inodeFromLink(buf);
    if (ino != 0 && seen.insert(ino).second) out.push_back({ino, path, false});
  }
  return out;
}

Result<std::vector<IpAddress>> netnsAddresses(int netns_fd) {
  auto scope = ScopedNetns::enter(netns_fd);
  if (!scope) return scope.error();
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return Error::fromErrno("getifaddrs");
  std::vector<IpAddress> out;
  for (ifaddrs* it = list; it; it = it->ifa_next) {
    if (!it->ifa_addr) continue;
    if (it->ifa_addr->sa_family == AF_INET) {
      out.push_back(IpAddress::fromV4(reinterpret_cast<sockaddr_in*>(it->ifa_addr)->sin_addr));
    } else if (it->ifa_addr->sa_family == AF_INET6) {
      out.push_back(IpAddress::fromV6(reinterpret_cast<sockaddr_in6*>(it->ifa_addr)->sin6_addr));
    }
  }
  ::freeifaddrs(list);
  return out;
}

bool NetnsDirWatch::changed() {
  if (!fd_.valid()) {
    fd_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd_.valid()) return true;
  }
  if (wd_ < 0) {
    wd_ = ::inotify_add_watch(fd_.get(), dir_.c_str(),
                              IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |
                                  IN_MOVE_SELF | IN_ONLYDIR);
    return true;
  }
  bool changed = false;
  alignas(inotify_event) char buf[4096];
  while (true) {
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      drop();  // an error on an inotify descriptor: start over with a new one
      return true;
    }
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      // The directory itself went away or moved, or events were lost: watch it afresh.
      if ((ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW)) != 0) {
        drop();
        return true;
      }
      // ev->name is NUL-padded to ev->len.
      if (ev->len > 0 && !std::string_view(ev->name).starts_with(prefix_)) continue;
      changed = true;
    }
  }
  return changed;
}

void NetnsDirWatch::drop() {
  fd_.reset();
  wd_ = -1;
}

}  // namespace nodemesh::agent
