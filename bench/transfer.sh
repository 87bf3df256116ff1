#!/usr/bin/env bash
# Transfer pauses as a client sees them (tools/nfsprobe.c: the longest gap
# between two successful write+read round trips), for planned moves and for
# failover after SIGKILL of the owner; and the time to drain 100 vservers
# off a node. Two nodes on loopback, default settings. Not a test.
#
#   bench/transfer.sh [--moves 10] [--failovers 5] [--drain 100]
#   bench/transfer.sh --bed [...]   linux mode on the test bed, kernel client,
#                                   keepalived+Ganesha side by side (transfer-bed.sh)
#   bench/transfer.sh --nfs4 [...]  NFSv4.1 with a lock held, kernel client, next to
#                                   NFS-Ganesha 4.1 (transfer-nfs4.sh; root)
#   bench/transfer.sh --units [...] a vserver on an ext4 and an XFS unit next to
#                                   one on a directory (transfer-units.sh; root)
set -euo pipefail
cd "$(dirname "$0")/.."

# --bed: the same with real address moves between hosts (bench/transfer-bed.sh).
if [ "${1:-}" = --bed ]; then
  shift
  exec bench/transfer-bed.sh "$@"
fi
if [ "${1:-}" = --nfs4 ]; then
  shift
  exec bench/transfer-nfs4.sh "$@"
fi
if [ "${1:-}" = --units ]; then
  shift
  exec bench/transfer-units.sh "$@"
fi

moves=10 failovers=5 drain=100
while [ $# -gt 0 ]; do
  case "$1" in
    --moves) moves=$2; shift 2 ;;
    --failovers) failovers=$2; shift 2 ;;
    --drain) drain=$2; shift 2 ;;
    *) echo "usage: bench/transfer.sh [--moves N] [--failovers N] [--drain N]" >&2; exit 2 ;;
  esac
done

cargo build --release -q -p vnas
mkdir -p target/tools
cc -O2 -o target/tools/nfsprobe tools/nfsprobe.c -lnfs
vnas=$(realpath target/release/vnas)
probe=$(realpath target/tools/nfsprobe)
work=$(realpath target)/bench-transfer
rm -rf "$work"
mkdir -p "$work/volumes/bench" "$work/store"
# The nodes make the admin token here at their first start; the CLI and curl read it.
export VNAS_TOKEN_FILE=$work/admin.token
token() { awk '!/^#/ { print $NF; exit }' "$VNAS_TOKEN_FILE" 2>/dev/null; }
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_node() { # name port
  VNAS_LOG=warn "$vnas" node run --name "$1" --store "$work/store" --api "127.0.0.1:$2" >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
  until curl -sf -H "authorization: Bearer $(token)" "http://127.0.0.1:$2/api/status" >/dev/null; do sleep 0.05; done
}
export VNAS_API=http://127.0.0.1:17601
start_node n1 17601
start_node n2 17602
"$vnas" vserver create bench --ip 127.2.0.1 --volume "/data=$work/volumes/bench" \
  --export /data:rw:no_root_squash --node n1 >/dev/null
url="nfs://127.2.0.1/data?nfsport=2049&mountport=2049"
owner() { "$vnas" vserver show bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])'; }
last_pause() { "$vnas" vserver history bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["pause_ms"])'; }
gap() { sed -n 's/.*failed_ops=\([0-9]*\) mismatches=\([0-9]*\) max_gap_ms=\([0-9]*\).*/\3 \1 \2/p'; }
stats() { sort -n | awk '{ v[NR] = $1 } END { printf "median %d ms, worst %d ms (%d runs)", v[int((NR + 1) / 2)], v[NR], NR }'; }

echo "planned moves: $moves" >&2
: >"$work/moves"
for i in $(seq "$moves"); do
  "$probe" probe "$url" 2 5 >"$work/probe.out" &
  probe_pid=$!
  sleep 0.8
  "$vnas" vserver move bench >/dev/null
  wait "$probe_pid" || { echo "probe failed during move $i" >&2; cat "$work/probe.out" >&2; exit 1; }
  read -r g failed mismatched < <(gap <"$work/probe.out")
  echo "$g $(last_pause)" >>"$work/moves"
done

echo "failovers after SIGKILL: $failovers" >&2
: >"$work/failovers"
for i in $(seq "$failovers"); do
  victim=$(owner)
  # Ask the node that survives.
  if [ "$victim" = n1 ]; then export VNAS_API=http://127.0.0.1:17602; else export VNAS_API=http://127.0.0.1:17601; fi
  "$probe" probe "$url" 4 5 >"$work/probe.out" &
  probe_pid=$!
  sleep 1
  kill -9 "${pid[$victim]}"
  wait "$probe_pid" || { echo "probe failed during failover $i" >&2; cat "$work/probe.out" >&2; exit 1; }
  read -r g failed mismatched < <(gap <"$work/probe.out")
  echo "$g $(last_pause)" >>"$work/failovers"
  port=17601; [ "$victim" = n2 ] && port=17602
  start_node "$victim" "$port"
done
export VNAS_API=http://127.0.0.1:17601

echo "drain: $drain vservers" >&2
for i in $(seq "$drain"); do
  mkdir -p "$work/volumes/d$i"
  printf '{"name":"d%d","addresses":["127.2.%d.%d"],"volumes":[{"mount":"/data","path":"%s"}],"node":"n1"}\n' \
    "$i" $((1 + i / 250)) $((i % 250 + 1)) "$work/volumes/d$i"
done | xargs -P 16 -d '\n' -I{} curl -sf -H "authorization: Bearer $(token)" -o /dev/null -X POST -H 'content-type: application/json' -d '{}' "$VNAS_API/api/vservers"
t0=$(date +%s.%N)
"$vnas" node drain n1 >/dev/null 2>&1
t1=$(date +%s.%N)

echo
echo "planned move, client-visible gap:   $(cut -d' ' -f1 "$work/moves" | stats)   (target: median <= 100 ms, worst <= 300 ms)"
echo "planned move, pause the target saw: $(cut -d' ' -f2 "$work/moves" | stats)"
echo "failover after SIGKILL, client gap: $(cut -d' ' -f1 "$work/failovers" | stats)   (target: <= 2 s)"
echo "failover, pause the new owner saw:  $(cut -d' ' -f2 "$work/failovers" | stats)"
awk -v a="$t0" -v b="$t1" -v n="$drain" 'BEGIN { printf "drain of %d vservers:               %.2f s   (target: <= 5 s)\n", n, b - a }'
echo "(the probe writes and reads back a 4 KiB record every 5 ms; its gap includes that interval)"
