#!/usr/bin/env bash
# Transfers with a real address move (`bench/transfer.sh --bed`): three
# nodes in linux network mode on the test bed (scripts/bed.sh), the vserver's
# address moving between hosts, as two clients see it, side by side with
# the usual open-source HA pair measured the same way:
#
#   A  libnfs (tools/nfsprobe.c on client host c1), calls back to back (one
#      always in flight): MOVES planned moves; per move the longest gap the
#      client saw; a hang is a probe that does not end when told to.
#   B  libnfs: KILLS failovers after SIGKILL of the owning node.
#   C  the Linux kernel client (scripts/guest.sh: QEMU guest, hard mount,
#      write+fsync+read every 20 ms): GUEST_MOVES moves and GUEST_KILLS
#      SIGKILLs; its gaps include its own round trip (tens of ms, emulated).
#   D  keepalived + NFS-Ganesha (../shared/tools/peer-failover.sh, when it is
#      there): its failover and switchover, libnfs.
#   E  NFSv4.1 with a lock held, the kernel client (bench/transfer-nfs4.sh,
#      after the rest, GUEST_MOVES and GUEST_KILLS), and its NFS-Ganesha
#      v4.1 part unless --no-peer.
#
#   bench/transfer-bed.sh [--moves 1000] [--kills 5] [--guest-moves 10] [--guest-kills 3] [--no-peer]
#
# Needs root (namespaces), and installs nothing the test command does not.
# Not a test: figures go to the README with the command that made them.
set -euo pipefail
cd "$(dirname "$0")/.."

moves=1000 kills=5 guest_moves=10 guest_kills=3 peer=1
while [ $# -gt 0 ]; do
  case "$1" in
    --moves) moves=$2; shift 2 ;;
    --kills) kills=$2; shift 2 ;;
    --guest-moves) guest_moves=$2; shift 2 ;;
    --guest-kills) guest_kills=$2; shift 2 ;;
    --no-peer) peer=0; shift ;;
    *) echo "usage: bench/transfer-bed.sh [--moves N] [--kills N] [--guest-moves N] [--guest-kills N] [--no-peer]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/transfer-bed.sh needs root (network namespaces)" >&2; exit 1; }

cargo build --release -q -p vnas
mkdir -p target/tools
cc -O2 -o target/tools/nfsprobe tools/nfsprobe.c -lnfs
vnas=$(realpath target/release/vnas)
probe=$(realpath target/tools/nfsprobe)
work=$(realpath target)/bench-transfer-bed
rm -rf "$work"
mkdir -p "$work/volumes/bench" "$work/store"
bed=bench
export VNAS_TOKEN_FILE=$work/admin.token

declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/bed.sh down "$bed" || true
}
trap cleanup EXIT
scripts/bed.sh up "$bed"
on() { local host=$1; shift; ip netns exec "vnas-$bed-$host" "$@"; }

# One certificate for the cluster's API, naming every node's address.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=vnas-bench \
  -addext "subjectAltName=IP:198.18.0.1,IP:198.18.0.2,IP:198.18.0.3" -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
export VNAS_CA_FILE=$work/cert.pem VNAS_API=https://198.18.0.1:7400

start_node() { # name
  local i=${1#n}
  ip netns exec "vnas-$bed-$1" env VNAS_LOG=warn "$vnas" node run --name "$1" --store "$work/store" --api "198.18.0.$i:7400" \
    --network linux --interface eth0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
  until on c1 env VNAS_API="https://198.18.0.$i:7400" "$vnas" node list >/dev/null 2>&1; do sleep 0.05; done
}
for n in n1 n2 n3; do start_node "$n"; done
# The CLI on client host c1, against the first node that answers.
cli() {
  local i
  for i in 1 2 3; do on c1 env VNAS_API="https://198.18.0.$i:7400" "$vnas" "$@" && return 0; done
  return 1
}
cli vserver create bench --ip 198.18.1.10/16 --volume "/data=$work/volumes/bench" \
  --export /data:rw:no_root_squash --node n1 >/dev/null
owner() { cli vserver show bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])'; }
stats() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "no runs"; exit } printf "median %d ms, p99 %d ms, worst %d ms (%d)", v[int((NR + 1) / 2)], v[int(NR * 0.99 + 0.999)], v[NR], NR }'; }
# The longest gap in a probe's gap lines after line $2 (0: none over the threshold).
gaps_since() { tail -n +"$(($2 + 1))" "$1" | sed -n 's/^gap_ms=\([0-9]*\).*/\1/p' | sort -n | tail -1; }
lines() { wc -l <"$1"; }

# --- A: libnfs, planned moves, a call always in flight ---------------------
echo "A: $moves planned moves, libnfs client, calls back to back" >&2
out=$work/probe-moves.out
# (ip netns exec and env exec: $! is the probe itself, for the SIGTERM.)
ip netns exec "vnas-$bed-c1" env NFSPROBE_GAP_MS=10 "$probe" probe nfs://198.18.1.10/data 36000 0 \
  >"$out" 2>"$work/probe-moves.err" &
probe_pid=$!
sleep 1
: >"$work/move-gaps"
for i in $(seq "$moves"); do
  before=$(lines "$out")
  cli vserver move bench >/dev/null
  sleep 0.05
  g=$(gaps_since "$out" "$before")
  echo "${g:-0}" >>"$work/move-gaps"
  [ $((i % 100)) = 0 ] && echo "  $i/$moves moves" >&2
done
kill -TERM "$probe_pid"
hung=0
for _ in $(seq 100); do kill -0 "$probe_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$probe_pid" 2>/dev/null; then hung=1; kill -9 "$probe_pid"; fi
wait "$probe_pid" || true
summary=$(grep '^phase=probe' "$out" || echo "no summary")
a_line="libnfs, $moves moves: client gap $(stats <"$work/move-gaps"); $(echo "$summary" | grep -o 'failed_ops=[0-9]*' || echo 'no summary:') hangs=$hung"
echo "  $a_line" >&2

# --- B: libnfs, SIGKILL of the owner --------------------------------------
echo "B: $kills failovers after SIGKILL, libnfs" >&2
: >"$work/kill-gaps"
for i in $(seq "$kills"); do
  out=$work/probe-kill-$i.out
  on c1 env NFSPROBE_GAP_MS=10 "$probe" probe nfs://198.18.1.10/data 6 20 >"$out" 2>&1 &
  probe_pid=$!
  sleep 1.5
  victim=$(owner)
  kill -9 "${pid[$victim]}"
  wait "${pid[$victim]}" 2>/dev/null || true
  wait "$probe_pid" || { echo "probe failed in failover $i" >&2; cat "$out" >&2; exit 1; }
  sed -n 's/.*max_gap_ms=\([0-9]*\).*/\1/p' "$out" >>"$work/kill-gaps"
  start_node "$victim"
  sleep 1
done
b_line="libnfs, $kills SIGKILL failovers: client gap $(stats <"$work/kill-gaps")"
echo "  $b_line" >&2

# --- C: the kernel client ----------------------------------------------------
c_line="kernel client: not measured"
guest_seconds=$((guest_moves * 2 + guest_kills * 5 + 8))
if scripts/guest.sh build target/guestkit >/dev/null; then
  echo "C: kernel client: $guest_moves moves, $guest_kills SIGKILLs" >&2
  console=$work/guest.console
  : >"$console"
  # Each console line with the time the host read it.
  (GAP_MS=60 scripts/guest.sh run target/guestkit "$bed" 198.18.1.10 /data "$guest_seconds" 2>&1 |
    while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done >"$console") &
  guest_pid=$!
  for _ in $(seq 900); do grep -q 'guest: mounted' "$console" && break; sleep 0.1; done
  sleep 2
  : >"$work/guest-events"
  for i in $(seq "$guest_moves"); do
    echo "$EPOCHREALTIME move" >>"$work/guest-events"
    cli vserver move bench >/dev/null
    sleep 1.5
  done
  for i in $(seq "$guest_kills"); do
    victim=$(owner)
    echo "$EPOCHREALTIME kill" >>"$work/guest-events"
    kill -9 "${pid[$victim]}"
    wait "${pid[$victim]}" 2>/dev/null || true
    sleep 2
    start_node "$victim"
    sleep 1
  done
  wait "$guest_pid" || true
  result=$(grep -o 'guest: round_trips=.*' "$console" | tail -1)
  round_trips=$(echo "$result" | sed -n 's/.*round_trips=\([0-9]*\).*/\1/p')
  # Per event: the longest gap the guest reported within 2 s after it.
  python3 - "$work/guest-events" "$console" >"$work/guest-gaps" <<'EOF'
import re, sys
events = [l.split() for l in open(sys.argv[1])]
gaps = []
for line in open(sys.argv[2]):
    m = re.match(r"(\S+) .*guest: gap_ms=(\d+)", line)
    if m:
        gaps.append((float(m.group(1)), int(m.group(2))))
for at, what in events:
    at = float(at)
    print(what, max([g for t, g in gaps if at <= t <= at + 2.0], default=0))
EOF
  c_line="kernel client ($result; one round trip $((guest_seconds * 1000 / ${round_trips:-1})) ms): moves $(awk '$1 == "move" { print $2 }' "$work/guest-gaps" | stats); SIGKILL $(awk '$1 == "kill" { print $2 }' "$work/guest-gaps" | stats)"
  echo "  $c_line" >&2
fi

# --- D: keepalived + NFS-Ganesha ----------------------------------------------
d_line="peer (keepalived+ganesha): ../shared/tools/peer-failover.sh not found"
if [ "$peer" = 0 ]; then
  d_line="peer (keepalived+ganesha): not run (--no-peer)"
elif [ -f ../shared/tools/peer-failover.sh ]; then
  echo "D: keepalived + NFS-Ganesha (../shared/tools/peer-failover.sh)" >&2
  d_line=$(bash ../shared/tools/peer-failover.sh 2>"$work/peer.err" | tail -1 || true)
fi

# --- E, F: NFSv4.1 (its own bed) -----------------------------------------
cleanup
trap - EXIT
nfs4_peer=()
[ "$peer" = 0 ] && nfs4_peer=(--no-peer)
nfs4_lines=$(bench/transfer-nfs4.sh --moves "$guest_moves" --kills "$guest_kills" "${nfs4_peer[@]}" | tail -2)

echo
echo "vnas linux mode on the bed, release build, $(date -u +%F):"
echo "  $a_line"
echo "  $b_line"
echo "  $c_line"
echo "  $d_line"
echo "$nfs4_lines"
