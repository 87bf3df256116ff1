#!/usr/bin/env bash
# vnas's data path against NFS-Ganesha (VFS backend) and the raw disk, in one
# run on this machine. Not a test: it prints figures and ratios.
#
#   bench/nfs.sh [--mib 512] [--files 2000] [--runs 3]
#
# Both servers export a fresh directory on the same filesystem (under
# target/bench), listen on loopback only, and are driven by the same libnfs
# client (shared/tools/nfsbench.c): sequential write and read with 1 MiB
# blocks at queue depth 8 (the write includes the final COMMIT), and
# create/stat/remove of small files. Runs alternate between the servers,
# each after the filesystem has settled; the median of each figure is
# reported. On a shared VM disk single runs vary a lot: use --runs 5 or more.
set -euo pipefail
cd "$(dirname "$0")/.."

mib=512 files=2000 runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) mib=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: bench/nfs.sh [--mib N] [--files N] [--runs N]" >&2; exit 2 ;;
  esac
done

need=()
for pkg in nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-dev libnfs-utils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q -p vnas
shared=../shared
mkdir -p target/tools
cc -O2 -o target/tools/nfsbench "$shared/tools/nfsbench.c" -lnfs
nfsbench=target/tools/nfsbench

work=$(realpath target)/bench
rm -rf "$work"
mkdir -p "$work/vnas" "$work/ganesha" "$work/raw"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

vnas_port=20490 ganesha_port=20491 ganesha_mnt=20492
target/release/vnas serve --listen 127.0.0.1:$vnas_port --export "/bench=$work/vnas" \
  >"$work/vnas.log" 2>&1 &
pids+=($!)

if ! pgrep -x rpcbind >/dev/null; then
  rpcbind -w
  rpcbind_pid=$(pgrep -x rpcbind)
  pids+=("$rpcbind_pid")
fi
cat >"$work/ganesha.conf" <<CONF
NFS_CORE_PARAM {
    NFS_Port = $ganesha_port;
    MNT_Port = $ganesha_mnt;
    Bind_addr = 127.0.0.1;
    Protocols = 3;
    Enable_NLM = false;
    Enable_RQUOTA = false;
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
    Export_Id = 1;
    Path = $work/ganesha;
    Pseudo = $work/ganesha;
    Protocols = 3;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = VFS; }
}
LOG { Default_Log_Level = WARN; }
CONF
ganesha.nfsd -F -f "$work/ganesha.conf" -L "$work/ganesha.log" -p "$work/ganesha.pid" &
pids+=($!)

vnas_url="nfs://127.0.0.1/bench?nfsport=$vnas_port&mountport=$vnas_port"
ganesha_url="nfs://127.0.0.1$work/ganesha?nfsport=$ganesha_port&mountport=$ganesha_mnt"
for url in "$vnas_url" "$ganesha_url"; do
  for _ in $(seq 60); do
    nfs-ls "$url" >/dev/null 2>&1 && continue 2
    sleep 0.5
  done
  echo "server at $url did not answer within 30 s" >&2
  exit 1
done

# key=value lines from nfsbench -> "phase metric value" rows in a results file.
results="$work/results.txt"
: >"$results"
record() { # server
  awk -v s="$1" '{ phase=""; for (i = 1; i <= NF; i++) { split($i, kv, "=");
      if (kv[1] == "phase") phase = kv[2];
      if (kv[1] == "MBps" || kv[1] == "ops_per_s") print s, phase, kv[2] } }' >>"$results"
}

disk() {
  rm -f "$work/raw/file"
  dd if=/dev/zero of="$work/raw/file" bs=1M count="$mib" conv=fsync 2>&1 |
    awk '/copied/ { print "disk write", $(NF-1) * ($NF == "GB/s" ? 1000 : 1) }' >>"$results"
  rm -f "$work/raw/file"
}

echo "vnas vs NFS-Ganesha: $mib MiB sequential (1 MiB blocks, queue depth 8), $files files metadata, $runs runs" >&2
for run in $(seq "$runs"); do
  echo "run $run/$runs" >&2
  disk
  for server in vnas ganesha; do
    url=vnas_url; [ "$server" = ganesha ] && url=ganesha_url
    # Let the filesystem finish the previous run's writeback and discards
    # (ext4 commits every 5 s), so one server does not pay for the other.
    sync
    sleep 6
    "$nfsbench" seq "${!url}" "$mib" 1024 8 | record "$server"
    "$nfsbench" meta "${!url}" "$files" | record "$server"
  done
done

median() { # server phase
  awk -v s="$1" -v p="$2" '$1 == s && $2 == p { print $3 }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '\n%-22s %12s %12s %10s\n' "figure (median)" "vnas" "ganesha" "vnas/gan"
for phase in write read create stat remove; do
  unit="MB/s"; case $phase in create|stat|remove) unit="ops/s" ;; esac
  v=$(median vnas "$phase") g=$(median ganesha "$phase")
  printf '%-22s %12.0f %12.0f %9.2fx\n' "$phase ($unit)" "$v" "$g" "$(awk -v a="$v" -v b="$g" 'BEGIN { print a / b }')"
done
d=$(median disk write) v=$(median vnas write)
printf '%-22s %12.0f %12s %9.2fx  (vnas write / disk)\n' "disk write+fsync MB/s" "$d" "" "$(awk -v a="$v" -v b="$d" 'BEGIN { print a / b }')"
