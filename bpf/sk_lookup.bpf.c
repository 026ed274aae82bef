// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Inbound capture, one link per enrolled pod network namespace (BPF_SK_LOOKUP, Linux 5.9):
 * a new TCP connection to one of the pod's addresses, on any port, is handed to the in-pod
 * 15006 listener (15008 to the HBONE listener). No NAT: the accepted socket's local address
 * stays the original destination. The tunnel's own delivery connections (their 4-tuple
 * recorded by cgroup/connect4) are let through to the application. ingress_ifindex cannot tell
 * those apart: for traffic a pod sends to its own address it names the pod's interface.
 */
#include "lib/common.h"
#include "lib/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_lookup")
int nm_sk_lookup(struct bpf_sk_lookup *ctx) {
  if (ctx->protocol != IPPROTO_TCP) return SK_PASS;

  struct nm_tuple t = {};
  __u16 family;
  if (ctx->family == NM_AF_INET) {
    nm_ip_from_v4(t.dst, ctx->local_ip4);
    nm_ip_from_v4(t.src, ctx->remote_ip4);
    family = 4;
  } else {
    nm_ip_from_v6(t.dst, ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2],
                  ctx->local_ip6[3]);
    nm_ip_from_v6(t.src, ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2],
                  ctx->remote_ip6[3]);
    family = 6;
  }
  t.src_port = bpf_ntohs(ctx->remote_port);
  t.dst_port = (__u16)ctx->local_port;

  struct nm_ip local = {};
  __builtin_memcpy(local.addr, t.dst, 16);
  __u64 *owner = bpf_map_lookup_elem(&nm_pod_addrs, &local);
  if (!owner) return SK_PASS; /* not one of an enrolled pod's addresses (e.g. 127.0.0.1) */
  __u64 cookie = *owner;
  struct nm_counters *stats = bpf_map_lookup_elem(&nm_pod_stats, &cookie);

  if (bpf_map_lookup_elem(&nm_delivery, &t)) {
    nm_count(stats, NM_IN_DELIVERY_PASSED);
    return SK_PASS;
  }
  __u8 excl = 0;
  __u8 *p = bpf_map_lookup_elem(&nm_excl_ports, &t.dst_port);
  if (p) excl |= *p;
  excl |= nm_excluded_cidr(t.src);
  if (excl & NM_EXCLUDE_INBOUND) {
    nm_count(stats, NM_IN_SKIP_EXCLUDED);
    return SK_PASS;
  }

  int hbone = t.dst_port == nm_cfg.hbone_port;
  struct nm_listener_key key = {
      .netns_cookie = cookie,
      .kind = hbone ? NM_LISTENER_HBONE : NM_LISTENER_INBOUND,
      .family = family,
  };
  struct bpf_sock *sk = bpf_map_lookup_elem(&nm_listeners, &key);
  if (!sk) {
    nm_count(stats, NM_IN_NO_LISTENER);
    return SK_PASS;
  }
  long err = bpf_sk_assign(ctx, sk, 0);
  bpf_sk_release(sk);
  if (err)
    nm_count(stats, NM_IN_ASSIGN_FAILED);
  else
    nm_count(stats, hbone ? NM_IN_HBONE_STEERED : NM_IN_STEERED);
  return SK_PASS;
}
