#!/usr/bin/env bash
# Builds the Debian package: target/debian/vnas_VERSION_ARCH.deb with the
# binary, the systemd unit (vnas-node.service), the node's settings file
# (/etc/vnas/node.toml, a conffile: an upgrade keeps the admin's edits) and
# the token directory (/etc/vnas, mode 700).
#
#   scripts/package.sh [--binary PATH] [--out DIR] [--compress xz|zstd|gzip|none]
#
# Without --binary it builds the release binary first. Needs dpkg-deb.
# (The tests package the debug binary, 250 MB: uncompressed, in a second.)
set -euo pipefail
cd "$(dirname "$0")/.."
binary="" out=target/debian compress=xz
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --compress) compress=$2; shift 2 ;;
    *) echo "usage: scripts/package.sh [--binary PATH] [--out DIR] [--compress xz|zstd|gzip|none]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release -q -p vnas
  binary=target/release/vnas
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 755 "$binary" "$root/usr/bin/vnas"
install -D -m 644 packaging/vnas-node.service "$root/lib/systemd/system/vnas-node.service"
install -D -m 644 packaging/node.toml "$root/etc/vnas/node.toml"
chmod 700 "$root/etc/vnas"
install -D -m 644 README.md "$root/usr/share/doc/vnas/README.md"
mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<CONTROL
Package: vnas
Version: $version
Architecture: $arch
Maintainer: vnas developers <vnas@localhost>
Depends: libc6, iproute2, nftables
Recommends: etcd-client
Section: net
Priority: optional
Description: clustered NAS of virtual NFS servers that move between machines
 A few Linux machines that share storage become one NAS hosting many
 virtual file servers (NFSv3 and NFSv4), each moving between machines on
 command, on failure or on load while its clients keep working.
CONTROL
echo /etc/vnas/node.toml >"$root/DEBIAN/conffiles"
mkdir -p "$out"
deb="$out/vnas_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z$compress" --build "$root" "$deb" >/dev/null
echo "$deb"
