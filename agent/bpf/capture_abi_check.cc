// Compile-time checks that the C++ view of capture_abi.h matches what the BPF programs use:
// the same header is compiled by clang for the BPF target and by g++ here, so a padding
// difference between the two would silently corrupt map keys.
#include <cstddef>

#include "capture_abi.h"

static_assert(sizeof(nm_pod_info) == 8);
static_assert(sizeof(nm_ip) == 16);
static_assert(sizeof(nm_listener_key) == 16);
static_assert(offsetof(nm_listener_key, kind) == 8);
static_assert(offsetof(nm_listener_key, family) == 10);
static_assert(sizeof(nm_orig_dst) == 24);
static_assert(offsetof(nm_orig_dst, port) == 16);
static_assert(sizeof(nm_orig_dst_key) == 32);
static_assert(offsetof(nm_orig_dst_key, addr) == 8);
static_assert(offsetof(nm_orig_dst_key, port) == 24);
static_assert(sizeof(nm_tuple) == 40);
static_assert(offsetof(nm_tuple, src_port) == 32);
static_assert(offsetof(nm_tuple, dst_port) == 34);
static_assert(sizeof(nm_lpm_key) == 20);
static_assert(sizeof(nm_excl_cidr) == 4);
static_assert(sizeof(nm_counters) == 8 * NM_REASON_MAX);
static_assert(sizeof(nm_capture_config) == 16);
