/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between nodemesh's capture programs (cgroup_sock.bpf.c, sk_lookup.bpf.c) and the
 * agent: map keys and values in fixed-width kernel types. This is the ONLY definition; the
 * C++ side includes it and static_asserts the layout (agent/bpf/capture_abi_check.cc).
 *
 * Conventions: IP addresses are 16 bytes, IPv4 as v4-mapped IPv6 (::ffff:a.b.c.d), network
 * byte order. Ports are host byte order.
 */
#ifndef NODEMESH_BPF_CAPTURE_ABI_H
#define NODEMESH_BPF_CAPTURE_ABI_H

#include <linux/types.h>

/* Ports of the in-pod listeners (same numbers as ztunnel). */
#define NM_PORT_OUTBOUND 15001
#define NM_PORT_INBOUND 15006
#define NM_PORT_HBONE 15008

/* Default socket marks: tunnel-owned sockets (never captured) and delivery sockets (the tunnel's
 * connections to the application, let through sk_lookup). Overridable through rodata. */
#define NM_MARK_OUTBOUND 0x539
#define NM_MARK_DELIVERY 0x53a

#define NM_MAX_PODS 4096
#define NM_MAX_TRACKED_CONNS 65536

/* pods: netns cookie -> nm_pod_info. Present = enrolled. Written by the agent only. */
enum nm_pod_flags {
  NM_POD_OUTBOUND_V4 = 1 << 0, /* 127.0.0.1:15001 listens in the pod */
  NM_POD_OUTBOUND_V6 = 1 << 1, /* [::1]:15001 listens in the pod */
};

struct nm_pod_info {
  __u32 flags;
  __u32 reserved;
};

/* pod_addrs: nm_ip -> netns cookie (__u64) of the enrolled pod owning that address. */
struct nm_ip {
  __u8 addr[16];
};

/* listeners: SOCKHASH, nm_listener_key -> the in-pod listening socket to steer to. */
enum nm_listener_kind {
  NM_LISTENER_INBOUND = 1, /* 15006, plaintext inbound */
  NM_LISTENER_HBONE = 2,   /* 15008, HBONE */
};

struct nm_listener_key {
  __u64 netns_cookie;
  __u16 kind;   /* enum nm_listener_kind */
  __u16 family; /* 4 or 6 */
  __u32 reserved;
};

/* Socket-local storage of a captured socket, and the value of orig_dst. */
struct nm_orig_dst {
  __u8 addr[16];
  __u16 port;
  __u16 reserved;
  __u32 reserved2;
};

/* orig_dst: (netns cookie, app socket's local address) -> original destination. Written by the
 * sockops program when a captured connection is established; the tunnel looks it up for each
 * connection accepted on 15001 (peer address of the accepted socket) and deletes it. */
struct nm_orig_dst_key {
  __u64 netns_cookie;
  __u8 addr[16];
  __u16 port;
  __u16 reserved;
  __u32 reserved2;
};

/* delivery: 4-tuple of a delivery socket (tunnel -> app) -> 1, so sk_lookup lets it through. */
struct nm_tuple {
  __u8 src[16];
  __u8 dst[16];
  __u16 src_port;
  __u16 dst_port;
  __u32 reserved;
};

/* Exclusions, written by the agent from its flags. */
enum nm_exclude_dir {
  NM_EXCLUDE_OUTBOUND = 1 << 0, /* destination port / CIDR of an outbound connect */
  NM_EXCLUDE_INBOUND = 1 << 1,  /* local port / source CIDR of an inbound connection */
};

struct nm_lpm_key {
  __u32 prefixlen; /* on the 128-bit (v4-mapped) form */
  __u8 addr[16];
};

/* Value of nm_excl_cidrs. An IPv6 prefix shorter than /96 (::/0, 2000::/3) also spans the
 * v4-mapped range in the trie, but it is an IPv6 range: IPv4 addresses matched only by such a
 * prefix are not excluded. */
struct nm_excl_cidr {
  __u8 dirs; /* enum nm_exclude_dir bits */
  __u8 reserved;
  __u16 prefixlen; /* copy of the key's prefixlen */
};

/* Why a program did what it did; one counter per reason, per pod and node-wide. */
enum nm_reason {
  NM_OUT_CAPTURED = 0,         /* connect rewritten to the in-pod 15001 listener */
  NM_OUT_SKIP_MARKED,          /* a tunnel-owned socket (outbound mark) */
  NM_OUT_SKIP_LOOPBACK,        /* destination is loopback */
  NM_OUT_SKIP_EXCLUDED,        /* destination port or CIDR excluded */
  NM_OUT_NO_LISTENER,          /* enrolled, but no listener for this family: not captured */
  NM_OUT_STORAGE_FAILED,       /* could not record the original destination: not captured */
  NM_OUT_ESTABLISHED,          /* captured connection established, orig_dst published */
  NM_OUT_ORIG_DST_FAILED,      /* could not publish orig_dst (map full) */
  NM_OUT_PEERNAME_RESTORED,    /* getpeername() answered with the original destination */
  NM_DELIVERY_REGISTERED,      /* delivery socket's 4-tuple recorded */
  NM_DELIVERY_REGISTER_FAILED, /* delivery tuple map full */
  NM_IN_STEERED,               /* new inbound connection steered to 15006 */
  NM_IN_HBONE_STEERED,         /* new inbound connection to 15008 steered to the HBONE socket */
  NM_IN_DELIVERY_PASSED,       /* the tunnel's own delivery connection let through */
  NM_IN_SKIP_EXCLUDED,         /* inbound port or source CIDR excluded */
  NM_IN_NO_LISTENER,           /* no in-pod listener registered: left to the kernel */
  NM_IN_ASSIGN_FAILED,         /* bpf_sk_assign refused the listener */
  NM_REASON_MAX,
};

struct nm_counters {
  __u64 count[NM_REASON_MAX];
};

/* Configuration, set in .rodata before load. */
struct nm_capture_config {
  __u32 outbound_mark;
  __u32 delivery_mark;
  __u16 outbound_port;
  __u16 inbound_port;
  __u16 hbone_port;
  __u16 reserved;
};

#endif /* NODEMESH_BPF_CAPTURE_ABI_H */
