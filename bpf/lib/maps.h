/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps shared by the capture objects. Every map is pinned by name under the agent's bpffs
 * directory (libbpf pin_root_path), so cgroup_sock.bpf.o and sk_lookup.bpf.o share one
 * instance and a restarted agent reuses them. The layout of keys and values is in
 * capture_abi.h.
 */
#ifndef NODEMESH_BPF_LIB_MAPS_H
#define NODEMESH_BPF_LIB_MAPS_H

#include "lib/common.h"

/* netns cookie -> enrolled pod */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NM_MAX_PODS);
  __type(key, __u64);
  __type(value, struct nm_pod_info);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_pods SEC(".maps");

/* pod address -> netns cookie of the enrolled pod */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NM_MAX_PODS * 4);
  __type(key, struct nm_ip);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_pod_addrs SEC(".maps");

/* in-pod listening sockets that sk_lookup steers to */
struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, NM_MAX_PODS * 4);
  __type(key, struct nm_listener_key);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_listeners SEC(".maps");

/* captured socket -> its original destination; freed with the socket */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct nm_orig_dst);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_sk_orig SEC(".maps");

/* (netns cookie, app local address) -> original destination, for the 15001 listener.
 * LRU: entries of connections the tunnel never accepted age out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, NM_MAX_TRACKED_CONNS);
  __type(key, struct nm_orig_dst_key);
  __type(value, struct nm_orig_dst);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_orig_dst SEC(".maps");

/* 4-tuples of the tunnel's delivery connections, let through by sk_lookup */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, NM_MAX_TRACKED_CONNS);
  __type(key, struct nm_tuple);
  __type(value, __u8);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_delivery SEC(".maps");

/* excluded ports -> enum nm_exclude_dir bits */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u16);
  __type(value, __u8);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_excl_ports SEC(".maps");

/* excluded CIDRs -> enum nm_exclude_dir bits */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 1024);
  __type(key, struct nm_lpm_key);
  __type(value, struct nm_excl_cidr);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_excl_cidrs SEC(".maps");

/* per-pod counters (netns cookie -> counters); entries created by the agent at enrollment */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, NM_MAX_PODS);
  __type(key, __u64);
  __type(value, struct nm_counters);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_pod_stats SEC(".maps");

/* node-wide counters, one slot */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct nm_counters);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nm_node_stats SEC(".maps");

/* Bumps one reason, node-wide and (when the pod is known) for the pod. Per-CPU: no atomics. */
static __always_inline void nm_count(struct nm_counters *pod, enum nm_reason reason) {
  __u32 zero = 0;
  struct nm_counters *node = bpf_map_lookup_elem(&nm_node_stats, &zero);
  if (reason >= NM_REASON_MAX) return;
  if (node) node->count[reason]++;
  if (pod) pod->count[reason]++;
}

/* The exclusion bits of the longest excluded CIDR holding ip (see struct nm_excl_cidr). */
static __always_inline __u8 nm_excluded_cidr(const __u8 ip[16]) {
  struct nm_lpm_key key = {.prefixlen = 128};
  __builtin_memcpy(key.addr, ip, 16);
  struct nm_excl_cidr *c = bpf_map_lookup_elem(&nm_excl_cidrs, &key);
  if (!c) return 0;
  if (c->prefixlen < 96 && nm_ip_is_v4_mapped(ip)) return 0;
  return c->dirs;
}

/* The exclusion bits for a port and an address. */
static __always_inline __u8 nm_excluded(__u16 port, const __u8 ip[16]) {
  __u8 bits = 0;
  __u8 *p = bpf_map_lookup_elem(&nm_excl_ports, &port);
  if (p) bits |= *p;
  bits |= nm_excluded_cidr(ip);
  return bits;
}

#endif /* NODEMESH_BPF_LIB_MAPS_H */
