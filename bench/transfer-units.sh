#!/usr/bin/env bash
# Move and failover pauses of a vserver on a logical unit (ext4 and XFS on
# a file, each node with its own loop device onto it, as each machine of a
# SAN has its own path to a LUN), next to the same vserver on a directory
# in the same invocation, as the libnfs probe sees them (tools/nfsprobe.c:
# the longest gap between two good write+COMMIT+read round trips). Also
# what mounting (guard check, mount with journal replay, guard write) and
# unmounting (guard release, unmount) cost, from the nodes' logs. Two nodes
# on loopback; needs root (loop devices, mounts). Not a test.
#
#   bench/transfer-units.sh [--moves 20] [--failovers 5] [--kinds "dir ext4 xfs"]
set -euo pipefail
cd "$(dirname "$0")/.."

moves=20 failovers=5 kinds="dir ext4 xfs"
while [ $# -gt 0 ]; do
  case "$1" in
    --moves) moves=$2; shift 2 ;;
    --failovers) failovers=$2; shift 2 ;;
    --kinds) kinds=$2; shift 2 ;;
    *) echo "usage: bench/transfer-units.sh [--moves N] [--failovers N] [--kinds \"dir ext4 xfs\"]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench/transfer-units.sh: needs root (loop devices and mounts)" >&2; exit 1; }

cargo build --release -q -p vnas
mkdir -p target/tools
cc -O2 -o target/tools/nfsprobe tools/nfsprobe.c -lnfs
vnas=$(realpath target/release/vnas)
probe=$(realpath target/tools/nfsprobe)
base=$(realpath target)/bench-units
declare -A pid loop
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for l in "${loop[@]}"; do losetup -d "$l" 2>/dev/null || true; done
}
trap cleanup EXIT

gap() { sed -n 's/.*failed_ops=\([0-9]*\) mismatches=\([0-9]*\) max_gap_ms=\([0-9]*\).*/\3 \1 \2/p'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }
worst() { sort -n | tail -1; }

run_kind() { # dir|ext4|xfs
  local kind=$1 work=$base/$1
  rm -rf "$work"
  mkdir -p "$work/pids" "$work/data" "$work/store"
  export VNAS_TOKEN_FILE=$work/admin.token
  export VNAS_API=http://127.0.0.1:17701
  local volume="/data=$work/data"
  if [ "$kind" != dir ]; then
    truncate -s 1G "$work/unit.img"
    if [ "$kind" = xfs ]; then mkfs.xfs -q -f "$work/unit.img"; else mkfs.ext4 -q -F "$work/unit.img"; fi
    : >"$work/unit.dev"
    volume="/data=block:$work/unit.dev:$kind"
  fi
  # The test bed's fence powers the node off: SIGKILL, then wait until the
  # process is gone (its kernel has let go of its mounts by then).
  local fence="pid=\$(cat $work/pids/\$VNAS_FENCE_NODE) || exit 1; kill -KILL \$pid 2>/dev/null;
    for i in \$(seq 1 500); do s=\$(sed 's/.*) //' /proc/\$pid/stat 2>/dev/null | cut -c1);
    [ -z \"\$s\" ] || [ \"\$s\" = Z ] && exit 0; sleep 0.01; done; exit 1"
  start_node() { # name port
    local logs="warn,vnas_vserver::units=info"
    if [ "$kind" = dir ]; then
      VNAS_LOG=$logs "$vnas" node run --name "$1" --store "$work/store" --api "127.0.0.1:$2" >>"$work/$1.log" 2>&1 &
    else
      [ -n "${loop[$1]:-}" ] && losetup -d "${loop[$1]}" 2>/dev/null || true
      loop[$1]=$(losetup -f --show "$work/unit.img")
      VNAS_LOG=$logs unshare --mount --propagation private sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' \
        sh "${loop[$1]}" "$work/unit.dev" "$vnas" node run --name "$1" --store "$work/store" \
        --api "127.0.0.1:$2" --fence-command "$fence" >>"$work/$1.log" 2>&1 &
    fi
    pid[$1]=$!
    echo "${pid[$1]}" >"$work/pids/$1"
    until curl -sf -H "authorization: Bearer $(awk '!/^#/ { print $NF; exit }' "$VNAS_TOKEN_FILE" 2>/dev/null)" \
      "http://127.0.0.1:$2/api/status" >/dev/null; do sleep 0.05; done
  }
  start_node n1 17701
  start_node n2 17702
  "$vnas" vserver create bench --ip 127.2.1.1 --volume "$volume" --export /data:rw:no_root_squash:insecure \
    --node n1 >/dev/null
  local url="nfs://127.2.1.1/data?nfsport=2049&mountport=2049"
  owner() { "$vnas" vserver show bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])'; }

  echo "$kind: $moves planned moves" >&2
  : >"$work/moves"
  for i in $(seq "$moves"); do
    "$probe" probe "$url" 2 5 >"$work/probe.out" &
    local probe_pid=$!
    sleep 0.8
    "$vnas" vserver move bench >/dev/null
    wait "$probe_pid" || { echo "probe failed during move $i" >&2; cat "$work/probe.out" >&2; exit 1; }
    gap <"$work/probe.out" | cut -d' ' -f1 >>"$work/moves"
  done

  echo "$kind: $failovers failovers after SIGKILL" >&2
  : >"$work/failovers"
  for i in $(seq "$failovers"); do
    local victim port
    victim=$(owner)
    if [ "$victim" = n1 ]; then export VNAS_API=http://127.0.0.1:17702; else export VNAS_API=http://127.0.0.1:17701; fi
    "$probe" probe "$url" 4 5 >"$work/probe.out" &
    probe_pid=$!
    sleep 1
    kill -9 "${pid[$victim]}"
    wait "$probe_pid" || { echo "probe failed during failover $i" >&2; cat "$work/probe.out" >&2; exit 1; }
    gap <"$work/probe.out" | cut -d' ' -f1 >>"$work/failovers"
    port=17701; [ "$victim" = n2 ] && port=17702
    wait "${pid[$victim]}" 2>/dev/null || true
    start_node "$victim" "$port"
  done
  export VNAS_API=http://127.0.0.1:17701
  "$vnas" vserver stop bench >/dev/null
  for n in n1 n2; do kill -TERM "${pid[$n]}" 2>/dev/null || true; done
  for n in n1 n2; do wait "${pid[$n]}" 2>/dev/null || true; done
  pid=()
  local clean="-"
  if [ "$kind" = ext4 ]; then e2fsck -fn "$work/unit.img" >/dev/null 2>&1 && clean=clean || clean=NOT-CLEAN; fi
  if [ "$kind" = xfs ]; then xfs_repair -n -f "$work/unit.img" >/dev/null 2>&1 && clean=clean || clean=NOT-CLEAN; fi
  local mount_ms unmount_ms
  mount_ms=$({ grep -h "unit mounted" "$work"/n*.log || true; } | sed -n 's/.* ms=\([0-9]*\).*/\1/p' | median)
  unmount_ms=$({ grep -h "unit unmounted" "$work"/n*.log || true; } | sed -n 's/.* ms=\([0-9]*\).*/\1/p' | median)
  printf '%s %s %s %s %s %s %s\n' "$kind" "$(median <"$work/moves")" "$(worst <"$work/moves")" \
    "$(median <"$work/failovers")" "$(worst <"$work/failovers")" "$mount_ms $unmount_ms" "$clean" >>"$base/results"
}

mkdir -p "$base"
: >"$base/results"
for kind in $kinds; do run_kind "$kind"; done

echo
printf '%-5s %-24s %-24s %-18s %-10s %s\n' kind "move gap median/worst" "failover gap median/worst" \
  "mount/unmount" "fsck" "ratio to dir (move, failover)"
dir_move=$(awk '$1 == "dir" { print $2 }' "$base/results")
dir_fail=$(awk '$1 == "dir" { print $4 }' "$base/results")
while read -r kind mm mw fm fw mount unmount clean; do
  ratio="-"
  if [ -n "$dir_move" ] && [ "$kind" != dir ]; then
    ratio=$(awk -v a="$mm" -v b="$dir_move" -v c="$fm" -v d="$dir_fail" 'BEGIN { printf "%.2fx, %.2fx", a / b, c / d }')
  fi
  [ "$kind" = dir ] && mount="-" unmount="-"
  printf '%-5s %-24s %-24s %-18s %-10s %s\n' "$kind" "$mm / $mw ms" "$fm / $fw ms" "$mount / $unmount ms" "$clean" "$ratio"
done <"$base/results"
echo "(probe: a 4 KiB write+COMMIT+read every 5 ms; the gap includes that interval)"
