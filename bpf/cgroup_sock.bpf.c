// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Outbound capture, attached once per agent to its cgroup:
 *   cgroup/connect4, cgroup/connect6  rewrite an enrolled pod's TCP connect to the in-pod 15001
 *                                     listener and keep the original destination in socket
 *                                     storage.
 *   sockops (TCP connect)             record the 4-tuple of the tunnel's delivery sockets so
 *                                     sk_lookup lets them through.
 *   sockops (active established)      publish the original destination under
 *                                     (netns cookie, local address) for the tunnel.
 *   cgroup/getpeername4/6             give the application back the original destination.
 * Kernel: bpf_get_netns_cookie in sock_addr (5.7) and sock_ops (5.15), sk_storage in both.
 */
#include "lib/common.h"
#include "lib/maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A delivery socket's 4-tuple, for sk_lookup to let its SYN through. Recorded by sockops at
 * TCP_CONNECT_CB, when the source port is known: HBONE delivery sockets are bound with
 * IP_BIND_ADDRESS_NO_PORT (ztunnel/inpod_sockets.cc), so connect() picks the port and at
 * cgroup/connect4 it is still 0. */
static __always_inline void nm_register_delivery(const __u8 src[16], __u16 src_port,
                                                 const __u8 dst[16], __u16 dst_port,
                                                 struct nm_counters *stats) {
  struct nm_tuple t = {};
  __builtin_memcpy(t.src, src, 16);
  __builtin_memcpy(t.dst, dst, 16);
  t.src_port = src_port;
  t.dst_port = dst_port;
  __u8 one = 1;
  if (bpf_map_update_elem(&nm_delivery, &t, &one, BPF_ANY) == 0)
    nm_count(stats, NM_DELIVERY_REGISTERED);
  else
    nm_count(stats, NM_DELIVERY_REGISTER_FAILED);
}

/* Decides whether to capture; returns 1 when the caller must rewrite the destination. */
static __always_inline int nm_should_capture(struct bpf_sock_addr *ctx, const __u8 dst[16],
                                             __u16 dst_port, __u32 need_flag) {
  if (ctx->type != NM_SOCK_STREAM || ctx->protocol != IPPROTO_TCP) return 0;
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;

  __u64 cookie = bpf_get_netns_cookie(ctx);
  struct nm_counters *stats = bpf_map_lookup_elem(&nm_pod_stats, &cookie);
  __u32 mark = sk->mark;
  if (mark == nm_cfg.delivery_mark) return 0; /* recorded by sockops (nm_register_delivery) */
  struct nm_pod_info *pod = bpf_map_lookup_elem(&nm_pods, &cookie);
  if (!pod) return 0;
  if (mark == nm_cfg.outbound_mark) {
    nm_count(stats, NM_OUT_SKIP_MARKED);
    return 0;
  }
  if (nm_ip_is_loopback(dst)) {
    nm_count(stats, NM_OUT_SKIP_LOOPBACK);
    return 0;
  }
  if (nm_excluded(dst_port, dst) & NM_EXCLUDE_OUTBOUND) {
    nm_count(stats, NM_OUT_SKIP_EXCLUDED);
    return 0;
  }
  if (!(pod->flags & need_flag)) {
    nm_count(stats, NM_OUT_NO_LISTENER);
    return 0;
  }
  struct nm_orig_dst *od = bpf_sk_storage_get(&nm_sk_orig, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!od) {
    nm_count(stats, NM_OUT_STORAGE_FAILED);
    return 0;
  }
  __builtin_memcpy(od->addr, dst, 16);
  od->port = dst_port;
  nm_count(stats, NM_OUT_CAPTURED);
  return 1;
}

SEC("cgroup/connect4")
int nm_connect4(struct bpf_sock_addr *ctx) {
  __u8 dst[16];
  nm_ip_from_v4(dst, ctx->user_ip4);
  if (nm_should_capture(ctx, dst, bpf_ntohs((__u16)ctx->user_port), NM_POD_OUTBOUND_V4)) {
    ctx->user_ip4 = bpf_htonl(0x7f000001); /* 127.0.0.1 */
    ctx->user_port = bpf_htons(nm_cfg.outbound_port);
  }
  return NM_CGROUP_ALLOW;
}

SEC("cgroup/connect6")
int nm_connect6(struct bpf_sock_addr *ctx) {
  __u8 dst[16];
  nm_ip_from_v6(dst, ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]);
  /* A v4-mapped destination is connected over IPv4 by the kernel: it needs the v4 listener. */
  int mapped = nm_ip_is_v4_mapped(dst);
  __u32 need = mapped ? NM_POD_OUTBOUND_V4 : NM_POD_OUTBOUND_V6;
  if (nm_should_capture(ctx, dst, bpf_ntohs((__u16)ctx->user_port), need)) {
    ctx->user_ip6[0] = 0;
    ctx->user_ip6[1] = 0;
    ctx->user_ip6[2] = mapped ? bpf_htonl(0x0000ffff) : 0;
    ctx->user_ip6[3] = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1); /* 127.0.0.1 / ::1 */
    ctx->user_port = bpf_htons(nm_cfg.outbound_port);
  }
  return NM_CGROUP_ALLOW;
}

static __always_inline struct nm_orig_dst *nm_restored_peer(struct bpf_sock_addr *ctx) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  struct nm_orig_dst *od = bpf_sk_storage_get(&nm_sk_orig, sk, 0, 0);
  if (!od) return 0;
  __u64 cookie = bpf_get_netns_cookie(ctx);
  nm_count(bpf_map_lookup_elem(&nm_pod_stats, &cookie), NM_OUT_PEERNAME_RESTORED);
  return od;
}

SEC("cgroup/getpeername4")
int nm_getpeername4(struct bpf_sock_addr *ctx) {
  struct nm_orig_dst *od = nm_restored_peer(ctx);
  if (od && nm_ip_is_v4_mapped(od->addr)) {
    ctx->user_ip4 = ((__u32 *)od->addr)[3];
    ctx->user_port = bpf_htons(od->port);
  }
  return NM_CGROUP_ALLOW;
}

SEC("cgroup/getpeername6")
int nm_getpeername6(struct bpf_sock_addr *ctx) {
  struct nm_orig_dst *od = nm_restored_peer(ctx);
  if (od) {
    const __u32 *w = (const __u32 *)od->addr;
    ctx->user_ip6[0] = w[0];
    ctx->user_ip6[1] = w[1];
    ctx->user_ip6[2] = w[2];
    ctx->user_ip6[3] = w[3];
    ctx->user_port = bpf_htons(od->port);
  }
  return NM_CGROUP_ALLOW;
}

SEC("sockops")
int nm_sockops(struct bpf_sock_ops *skops) {
  __u32 op = skops->op;
  if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_TCP_CONNECT_CB)
    return NM_CGROUP_ALLOW;
  struct bpf_sock *sk = skops->sk;
  if (!sk) return NM_CGROUP_ALLOW;

  /* Every context field is read once, unconditionally: the verifier rejects the derived ctx
   * pointers clang produces when the v4 and v6 branches share loads. */
  __u32 family = skops->family;
  __u32 l4 = skops->local_ip4, r4 = skops->remote_ip4;
  __u32 l6_0 = skops->local_ip6[0], l6_1 = skops->local_ip6[1], l6_2 = skops->local_ip6[2],
        l6_3 = skops->local_ip6[3];
  __u32 r6_0 = skops->remote_ip6[0], r6_1 = skops->remote_ip6[1], r6_2 = skops->remote_ip6[2],
        r6_3 = skops->remote_ip6[3];
  __u32 local_port = skops->local_port, remote_port = skops->remote_port;
  nm_barrier_var(l6_0);
  nm_barrier_var(l6_1);
  nm_barrier_var(l6_2);
  nm_barrier_var(l6_3);
  nm_barrier_var(r6_0);
  nm_barrier_var(r6_1);
  nm_barrier_var(r6_2);
  nm_barrier_var(r6_3);
  __u8 local[16];
  __u8 remote[16];
  if (family == NM_AF_INET) {
    nm_ip_from_v4(local, l4);
    nm_ip_from_v4(remote, r4);
  } else {
    nm_ip_from_v6(local, l6_0, l6_1, l6_2, l6_3);
    nm_ip_from_v6(remote, r6_0, r6_1, r6_2, r6_3);
  }

  if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
    /* The SYN is about to leave: the source port is assigned. */
    if (sk->mark != nm_cfg.delivery_mark) return NM_CGROUP_ALLOW;
    __u64 cookie = bpf_get_netns_cookie(skops);
    nm_register_delivery(local, (__u16)local_port, remote, (__u16)bpf_ntohl(remote_port),
                         bpf_map_lookup_elem(&nm_pod_stats, &cookie));
    return NM_CGROUP_ALLOW;
  }

  if (sk->mark == nm_cfg.delivery_mark) {
    /* Handshake done: sk_lookup will not see this tuple again. */
    struct nm_tuple t = {};
    __builtin_memcpy(t.src, local, 16);
    __builtin_memcpy(t.dst, remote, 16);
    t.src_port = (__u16)local_port;
    t.dst_port = (__u16)bpf_ntohl(remote_port); /* sock_ops keeps it shifted by 16 */
    bpf_map_delete_elem(&nm_delivery, &t);
    return NM_CGROUP_ALLOW;
  }

  struct nm_orig_dst *od = bpf_sk_storage_get(&nm_sk_orig, sk, 0, 0);
  if (!od) return NM_CGROUP_ALLOW;
  __u64 cookie = bpf_get_netns_cookie(skops);
  struct nm_counters *stats = bpf_map_lookup_elem(&nm_pod_stats, &cookie);
  struct nm_orig_dst_key key = {.netns_cookie = cookie, .port = (__u16)local_port};
  __builtin_memcpy(key.addr, local, 16);
  if (bpf_map_update_elem(&nm_orig_dst, &key, od, BPF_ANY) == 0)
    nm_count(stats, NM_OUT_ESTABLISHED);
  else
    nm_count(stats, NM_OUT_ORIG_DST_FAILED);
  return NM_CGROUP_ALLOW;
}
