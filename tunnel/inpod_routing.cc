// Hand-written rtnetlink (two messages): no library among the project's dependencies speaks
// netlink, and shelling out to `ip` from the data plane would fork per pod.
#include "tunnel/inpod_routing.h"

#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/fd.h"

namespace nodemesh::tunnel {
namespace {

constexpr uint32_t kRulePriority = 100;  // before the main table (32766)

struct Request {
  nlmsghdr header;
  union {
    fib_rule_hdr rule;
    rtmsg route;
  };
  char attrs[128];
};

void addAttr(Request& req, uint16_t type, const void* data, uint16_t len) {
  auto* rta =
      reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(req.header.nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
  std::memcpy(RTA_DATA(rta), data, len);
  req.header.nlmsg_len = NLMSG_ALIGN(req.header.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

// Sends one request and waits for its ACK. `tolerated` is an errno that counts as success
// (EEXIST when adding, ENOENT/ESRCH when removing); returns 0 or that errno.
Result<int> talk(Request& req, int tolerated, const char* what) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd.valid()) return Error::fromErrno("netlink socket");
  req.header.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  req.header.nlmsg_seq = 1;
  if (::send(fd.get(), &req, req.header.nlmsg_len, 0) < 0) {
    return Error::fromErrno(std::string("netlink send (") + what + ")");
  }
  char buf[4096];
  ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
  if (n < 0) return Error::fromErrno(std::string("netlink recv (") + what + ")");
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, static_cast<unsigned>(n)) || h->nlmsg_type != NLMSG_ERROR) {
    return Error{EPROTO, std::string("unexpected netlink answer (") + what + ")"};
  }
  int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
  if (err == 0 || err == tolerated) return err;
  return Error::fromErrno(what, err);
}

Result<int> rule(bool add, uint8_t family, uint32_t mark, uint32_t table) {
  Request req{};
  req.header.nlmsg_len = NLMSG_LENGTH(sizeof(fib_rule_hdr));
  req.header.nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
  req.header.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
  req.rule.family = family;
  req.rule.action = FR_ACT_TO_TBL;
  req.rule.table = RT_TABLE_UNSPEC;
  addAttr(req, FRA_FWMARK, &mark, sizeof(mark));
  uint32_t mask = 0xffffffff;
  addAttr(req, FRA_FWMASK, &mask, sizeof(mask));
  addAttr(req, FRA_TABLE, &table, sizeof(table));
  if (add) {
    // An explicit priority makes a second add (a restarted agent) an exact duplicate, which
    // NLM_F_EXCL refuses; without one the kernel picks a new priority and adds another rule.
    // A delete without one matches the rule at any priority.
    uint32_t priority = kRulePriority;
    addAttr(req, FRA_PRIORITY, &priority, sizeof(priority));
  }
  const bool v6 = family == AF_INET6;
  return talk(req, add ? EEXIST : ENOENT,
              add ? (v6 ? "ip -6 rule add fwmark" : "ip rule add fwmark")
                  : (v6 ? "ip -6 rule del fwmark" : "ip rule del fwmark"));
}

Result<int> route(bool add, uint8_t family, uint32_t table) {
  Request req{};
  req.header.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  req.header.nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
  req.header.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
  req.route.rtm_family = family;
  req.route.rtm_dst_len = 0;
  req.route.rtm_table = RT_TABLE_UNSPEC;
  req.route.rtm_protocol = RTPROT_BOOT;
  req.route.rtm_scope = RT_SCOPE_HOST;
  req.route.rtm_type = RTN_LOCAL;
  addAttr(req, RTA_TABLE, &table, sizeof(table));
  uint32_t lo = if_nametoindex("lo");
  if (lo == 0) return Error::fromErrno("if_nametoindex lo");
  addAttr(req, RTA_OIF, &lo, sizeof(lo));
  const bool v6 = family == AF_INET6;
  return talk(
      req, add ? EEXIST : ESRCH,
      add ? (v6 ? "ip -6 route add local ::/0 dev lo" : "ip route add local 0.0.0.0/0 dev lo")
          : (v6 ? "ip -6 route del local ::/0" : "ip route del local 0.0.0.0/0"));
}

Status writeSysctl(const char* path, const char* value) {
  // /proc/sys/net resolves to the network namespace of the thread that opens it.
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::fromErrno(std::string("open ") + path);
  if (::write(fd.get(), value, std::strlen(value)) < 0) {
    return Error::fromErrno(std::string("write ") + path);
  }
  return okStatus();
}

}  // namespace

Status installDeliveryRouting(uint32_t delivery_mark, uint32_t table) {
  // One switch for both families: the child socket's mark is set in the common TCP code.
  if (auto st = writeSysctl("/proc/sys/net/ipv4/tcp_fwmark_accept", "1"); !st) return st;
  // The kernel's own answers to a delivery (the RST when the application has no listener)
  // carry the delivery's mark too, so they come back to the delivery socket through the same
  // rule. Without it the RST is routed to the real client address and the delivery waits for
  // its connect timeout instead of failing at once.
  if (auto st = writeSysctl("/proc/sys/net/ipv4/fwmark_reflect", "1"); !st) return st;
  if (auto r = route(true, AF_INET, table); !r) return r.error();
  if (auto r = rule(true, AF_INET, delivery_mark, table); !r) return r.error();
  return okStatus();
}

Status installDeliveryRoutingV6(uint32_t delivery_mark, uint32_t table) {
  if (auto st = writeSysctl("/proc/sys/net/ipv6/fwmark_reflect", "1"); !st) return st;
  if (auto r = route(true, AF_INET6, table); !r) return r.error();
  if (auto r = rule(true, AF_INET6, delivery_mark, table); !r) return r.error();
  return okStatus();
}

Status removeDeliveryRouting(uint32_t delivery_mark, uint32_t table) {
  Status result;
  auto keep = [&result](const Status& st) {
    if (!st && result) result = st;
  };
  for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    // Until the kernel has none left: also duplicates that an older agent may have added.
    for (int i = 0; i < 16; ++i) {
      auto r = rule(false, family, delivery_mark, table);
      // A pod without IPv6 (disabled in its namespace) has no IPv6 rules to remove.
      if (!r && family == AF_INET6 && r.error().code == EAFNOSUPPORT) break;
      if (!r) {
        keep(r.error());
        break;
      }
      if (*r == ENOENT) break;
    }
    if (auto r = route(false, family, table); !r) {
      if (!(family == AF_INET6 && r.error().code == EAFNOSUPPORT)) keep(r.error());
    }
  }
  // The kernel default; pods do not rely on it otherwise.
  for (const char* path :
       {"/proc/sys/net/ipv4/tcp_fwmark_accept", "/proc/sys/net/ipv4/fwmark_reflect",
        "/proc/sys/net/ipv6/fwmark_reflect"}) {
    if (auto st = writeSysctl(path, "0"); !st) {
      // No /proc/sys/net/ipv6 where IPv6 is disabled.
      if (std::strstr(path, "ipv6") == nullptr || st.error().code != ENOENT) keep(st);
    }
  }
  return result;
}

}  // namespace nodemesh::tunnel
