#include "tunnel/pod_listeners.h"

#include <algorithm>

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/netns.h"
#include "hbone/tls_provider.h"
#include "tunnel/inpod_routing.h"
#include "tunnel/inpod_sockets.h"

namespace nodemesh::tunnel {

Result<std::unique_ptr<Pod>> createPod(const PodSpec& spec, bool outbound,
                                       const TunnelOptions& options, hbone::TlsProvider* tls,
                                       PodListenerFds* fds,
                                       std::vector<InheritedListener>* inherited) {
  auto pod = std::make_unique<Pod>();
  pod->cookie = spec.netns_cookie;
  pod->name = spec.name;
  pod->ips = spec.ips;
  pod->identity = tls ? spec.identity : std::nullopt;
  pod->netns.reset(::dup(spec.netns_fd));
  if (!pod->netns.valid()) return Error::fromErrno("dup netns fd");
  if (pod->identity) {
    // The workload's certificate is issued at enrollment (and its TLS context built), not on
    // its first connection.
    if (auto ctx = tls->serverContext(*pod->identity); !ctx) {
      return Error{ctx.error().code, spec.name + ": certificate for " + pod->identity->toString() +
                                         ": " + ctx.error().message};
    }
  }

  auto scope = ScopedNetns::enter(spec.netns_fd);
  if (!scope) return scope.error();
  if (auto st = installDeliveryRouting(options.delivery_mark, options.delivery_route_table); !st) {
    return Error{st.error().code, spec.name + ": " + st.error().message};
  }
  auto keep = [&](UniqueFd fd, ListenerKind kind, bool ipv6, int* out) {
    auto l = std::make_unique<Listener>();
    l->fd = std::move(fd);
    l->pod = pod.get();
    l->kind = kind;
    if (*out < 0) *out = l->fd.get();
    fds->all.push_back(ListenerFd{kind, ipv6, l->fd.get()});
    pod->listeners.push_back(std::move(l));
  };
  auto add = [&](const char* ip, uint16_t port, ListenerKind kind, int* out) -> Status {
    auto addr = SocketAddress{IpAddress::parse(ip).value(), port};
    const bool ipv6 = !addr.ip.isV4();
    if (inherited) {
      // The previous agent's sockets: bound, listening, already in the capture maps.
      bool took = false;
      for (auto& in : *inherited) {
        if (in.kind != kind || in.ipv6 != ipv6 || !in.fd.valid()) continue;
        keep(std::move(in.fd), kind, ipv6, out);
        took = true;
      }
      if (took) return okStatus();
    }
    // Only inbound listeners form a group across workers (outbound has one owner).
    auto fd = listenTcp(addr, options.outbound_mark,
                        options.workers > 1 && kind != ListenerKind::kOutbound);
    if (!fd) {
      if (inherited && fd.error().code == EADDRINUSE) {
        // The previous agent's socket for this port went to another worker and its group
        // admits no other member (it ran one worker): that worker accepts for the pod.
        spdlog::debug("{}: {} listener stays with another worker", spec.name, addr.toString());
        return okStatus();
      }
      return Error{fd.error().code, spec.name + ": " + fd.error().message};
    }
    keep(std::move(*fd), kind, ipv6, out);
    return okStatus();
  };
  if (outbound) {
    if (auto st =
            add("127.0.0.1", options.outbound_port, ListenerKind::kOutbound, &fds->outbound_v4);
        !st) {
      return st.error();
    }
  }
  if (auto st = add("0.0.0.0", options.inbound_port, ListenerKind::kInbound, &fds->inbound_v4);
      !st) {
    return st.error();
  }
  if (pod->identity) {
    if (auto st = add("0.0.0.0", options.hbone_port, ListenerKind::kHbone, &fds->hbone_v4); !st) {
      return st.error();
    }
  }
  if (spec.ipv6) {
    // A pod without ::1 (IPv6 disabled) still gets IPv4 capture: not fatal.
    if (auto st = installDeliveryRoutingV6(options.delivery_mark, options.delivery_route_table);
        !st) {
      spdlog::warn(
          "{}: no IPv6 delivery routing (IPv6 clients are delivered from the pod's "
          "address): {}",
          spec.name, st.error().message);
    } else {
      pod->ipv6_delivery = true;
    }
    if (outbound) {
      if (auto st = add("::1", options.outbound_port, ListenerKind::kOutbound, &fds->outbound_v6);
          !st) {
        spdlog::warn("{}: no IPv6 outbound listener: {}", spec.name, st.error().message);
      }
    }
    if (auto st = add("::", options.inbound_port, ListenerKind::kInbound, &fds->inbound_v6); !st) {
      spdlog::warn("{}: no IPv6 inbound listener: {}", spec.name, st.error().message);
    }
    if (pod->identity) {
      if (auto st = add("::", options.hbone_port, ListenerKind::kHbone, &fds->hbone_v6); !st) {
        spdlog::warn("{}: no IPv6 HBONE listener: {}", spec.name, st.error().message);
      }
    }
  }
  return pod;
}

void Listener::onCompletion(uint8_t op, int res, unsigned flags) {
  if (op == kAccept) return owner->onAccept(this, res, flags);
  owner->onBackoff(this);
}

void PodListeners::add(std::unique_ptr<Pod> pod) {
  // In order: a pod removed and added again (same netns) must end up with the new listeners.
  retire(pod->cookie);
  for (auto& l : pod->listeners) {
    l->owner = this;
    arm(l.get());
  }
  const uint64_t cookie = pod->cookie;
  pods_[cookie] = std::move(pod);
}

Pod* PodListeners::find(uint64_t cookie) {
  auto it = pods_.find(cookie);
  return it == pods_.end() ? nullptr : it->second.get();
}

Pod* PodListeners::findByIp(const IpAddress& ip) {
  // A node holds tens of pods, each with one or two addresses: a scan per new connection costs
  // less than keeping an index in step with every add and retire.
  for (auto& [cookie, pod] : pods_) {
    if (std::find(pod->ips.begin(), pod->ips.end(), ip) != pod->ips.end()) return pod.get();
  }
  return nullptr;
}

void PodListeners::arm(Listener* l) {
  ring_.acceptMultishot(l->fd.get(), &l->accept_tag);
  l->in_flight = true;
}

void PodListeners::retire(uint64_t cookie) {
  auto it = pods_.find(cookie);
  if (it == pods_.end()) return;
  Pod* pod = it->second.get();
  handler_.onRetiring(*pod);
  for (auto& l : pod->listeners) {
    if (l->closing) continue;
    l->closing = true;
    if (l->in_flight) {
      ring_.cancel(&l->accept_tag);
      ring_.cancel(&l->backoff_tag);
    }
  }
  if (keep_routing_) {
    // Drained for an upgrade: the next agent delivers with the same routing.
  } else if (auto scope = ScopedNetns::enter(pod->netns.get()); scope) {
    if (auto st = removeDeliveryRouting(options_.delivery_mark, options_.delivery_route_table);
        !st) {
      spdlog::warn("{}: removing delivery routing: {}", pod->name, st.error().message);
    }
  }
  retired_.push_back(std::move(it->second));
  pods_.erase(it);
  reap();
}

void PodListeners::retireAll() {
  std::vector<uint64_t> cookies;
  for (auto& [cookie, pod] : pods_) cookies.push_back(cookie);
  for (uint64_t cookie : cookies) retire(cookie);
}

void PodListeners::drain() {
  keep_routing_ = true;
  for (auto& [cookie, pod] : pods_) {
    for (auto& l : pod->listeners) {
      if (l->closing || l->stopped) continue;
      l->stopped = true;
      if (l->in_flight) {
        ring_.cancel(&l->accept_tag);
        ring_.cancel(&l->backoff_tag);
      }
    }
  }
}

bool PodListeners::acceptsStopped() const {
  for (const auto& [cookie, pod] : pods_) {
    for (const auto& l : pod->listeners) {
      if (l->stopped && l->in_flight) return false;
    }
  }
  return true;
}

void PodListeners::restartAccepts() {
  for (auto& [cookie, pod] : pods_) {
    for (auto& l : pod->listeners) {
      if (l->closing || l->stopped) continue;
      // In flight: onAccept() arms it again once cancelled. Waiting out a backoff: the accept
      // that follows it takes the queue anyway (the cancel finds nothing).
      if (l->in_flight) {
        ring_.cancel(&l->accept_tag);
      } else {
        arm(l.get());
      }
    }
  }
}

void PodListeners::reap() {
  for (auto it = retired_.begin(); it != retired_.end();) {
    bool idle = true;
    for (auto& l : (*it)->listeners) idle = idle && !l->in_flight;
    it = idle ? retired_.erase(it) : std::next(it);
  }
}

void PodListeners::onAccept(Listener* l, int res, unsigned flags) {
  const bool more = flags & IORING_CQE_F_MORE;
  if (!more) l->in_flight = false;
  if (res >= 0) {
    if (l->closing) {
      ::close(res);
    } else {
      handler_.onAccepted(*l, UniqueFd(res));
    }
  } else if (res != -ECANCELED) {
    spdlog::warn("{}: accept failed: {}", l->pod->name, std::strerror(-res));
  }
  if (more) return;
  if (l->closing) return reap();
  if (l->stopped) return;
  if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
    // Out of descriptors or memory: retrying at once would spin. Pending connections wait
    // in the backlog meanwhile.
    ring_.timeout(l->backoff, &l->backoff_tag);
    l->in_flight = true;
    return;
  }
  arm(l);
}

void PodListeners::onBackoff(Listener* l) {
  l->in_flight = false;
  if (l->closing) return reap();
  if (l->stopped) return;
  arm(l);
}

}  // namespace nodemesh::tunnel
