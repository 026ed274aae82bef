/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared by every nodemesh BPF object: includes, constants, address helpers. */
#ifndef NODEMESH_BPF_LIB_COMMON_H
#define NODEMESH_BPF_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "capture_abi.h"

/* From <sys/socket.h>, which is not usable for the BPF target. */
#define NM_AF_INET 2
#define NM_AF_INET6 10
#define NM_SOCK_STREAM 1

/* Verdicts of the cgroup hooks (connect4/6, getpeername4/6, sockops): the kernel lets the
 * operation proceed on 1 and fails it with EPERM on 0 (__cgroup_bpf_run_filter_*). nodemesh
 * never refuses an operation there, it only rewrites addresses: every entry returns ALLOW.
 * (sk_lookup programs return the kernel's SK_PASS / SK_DROP, from <linux/bpf.h>.) */
#define NM_CGROUP_ALLOW 1

/* Configuration, written by the agent through skel->rodata before load. */
const volatile struct nm_capture_config nm_cfg = {
    .outbound_mark = NM_MARK_OUTBOUND,
    .delivery_mark = NM_MARK_DELIVERY,
    .outbound_port = NM_PORT_OUTBOUND,
    .inbound_port = NM_PORT_INBOUND,
    .hbone_port = NM_PORT_HBONE,
};

/* Pins a value read from a context field into a register at this point. clang otherwise sinks
 * such loads into a join block through a derived ctx pointer (ctx + off), which the verifier
 * rejects ("dereference of modified ctx ptr"). */
#define nm_barrier_var(var) asm volatile("" : "+r"(var))

/* Writes the v4-mapped form of a network-order IPv4 address. */
static __always_inline void nm_ip_from_v4(__u8 out[16], __u32 ip4) {
  __u32 *w = (__u32 *)out;
  w[0] = 0;
  w[1] = 0;
  w[2] = bpf_htonl(0x0000ffff);
  w[3] = ip4;
}

static __always_inline void nm_ip_from_v6(__u8 out[16], const __u32 w0, const __u32 w1,
                                          const __u32 w2, const __u32 w3) {
  __u32 *w = (__u32 *)out;
  w[0] = w0;
  w[1] = w1;
  w[2] = w2;
  w[3] = w3;
}

static __always_inline int nm_ip_is_v4_mapped(const __u8 ip[16]) {
  const __u32 *w = (const __u32 *)ip;
  return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int nm_ip_is_loopback(const __u8 ip[16]) {
  const __u32 *w = (const __u32 *)ip;
  if (nm_ip_is_v4_mapped(ip)) return ip[12] == 127;
  return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1);
}

#endif /* NODEMESH_BPF_LIB_COMMON_H */
