#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# A test that cannot run fails with the reason, unless the person running
# the tests opted out (VNAS_ALLOW_SKIPS=1): then it says SKIPPED and the
# closing line counts it. Without root, a third of the tests cannot run.
if [ "$(id -u)" -ne 0 ] && [ "${VNAS_ALLOW_SKIPS:-}" != 1 ]; then
  echo "scripts/test.sh: run it as root (the tests of squashing, network namespaces, logical units" >&2
  echo "and the kernel client need it), or with VNAS_ALLOW_SKIPS=1 to skip those, saying so" >&2
  exit 2
fi

# libnfs's tools are the independent NFS client in the integration tests;
# libnfs-dev and gcc build our libnfs probe (tools/nfsprobe.c) the tests
# use; e2fsprogs makes the ext4 filesystem of the 2-million-file test;
# etcd-server is the real etcd the etcd store is tested against (the tests
# start their own members on loopback ports), and protobuf-compiler builds
# the etcd client. The linux network mode and the test bed need iproute2
# and nftables; the kernel NFS client's guest (scripts/guest.sh) needs QEMU,
# busybox, cpio, kmod and the decompressors of the kernel's modules. The
# logical-unit tests make ext4 and XFS (xfsprogs) on files with a loop
# device per node, bound into the nodes' mount namespaces (util-linux).
# tcpdump watches what a frozen node sends on the test bed. libc6-dev: the
# guest's lock owner (tools/locker.c) is linked statically; the guest's
# rpcbind and rpc.statd come from Debian's packages, downloaded (not
# installed) by scripts/guest.sh. prometheus scrapes two nodes and answers
# every query of the Grafana dashboard (tests/it/dashboard.rs; the tests
# start it on a loopback port of their own). chromium and chromium-driver:
# the console is tested in headless Chromium over WebDriver; curl signs in
# to it over HTTPS on the test bed. systemd: `systemd-analyze verify` checks
# the package's unit (the package is built with dpkg-deb, which dpkg has).
packages=(libnfs-utils libnfs-dev gcc libc6-dev e2fsprogs etcd-server protobuf-compiler
          iproute2 nftables qemu-system-x86 busybox-static cpio kmod xz-utils zstd
          util-linux xfsprogs tcpdump prometheus
          chromium chromium-driver curl systemd)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
log=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT
status=0
VNAS_SKIP_LOG=$skips cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for all test binaries together; a test that skipped
# whole is not counted as passed.
if [ -s "$skips" ]; then
  echo "skipped (VNAS_ALLOW_SKIPS=1):"
  sed 's/^/  /' "$skips"
fi
awk -v skipped="$(grep -c . "$skips")" -v whole="$(grep -c '^test ' "$skips")" '
     /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p - whole, f, skipped }' "$log"
exit "$status"
