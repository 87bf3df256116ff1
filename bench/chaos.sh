#!/usr/bin/env bash
# An hour of seeded faults on the test bed (scripts/bed.sh), with clients
# that verify their data all along: three nodes in linux network mode, three
# vservers c1..c3 (198.18.1.61-63), one on each node at the start, and
#
#   libnfs  tools/nfsprobe.c on client host c1, one probe per vserver for
#           the whole run: every 10 ms write 4 KiB, COMMIT, read back,
#           compare; each gap over 200 ms as it ends.
#   kernel  the Linux kernel client (scripts/guest.sh: QEMU guest, hard
#           mount of c1, write+fsync+read+compare every 20 ms).
#
# Faults, one every --every-ms (uniform), kind and node drawn from a PRNG
# seeded with --seed (printed at the start: the same seed replays the same
# schedule): kill (SIGKILL the node, restart it 2 s later), freeze (SIGSTOP
# for 1.5 s, then SIGCONT), link (the node's bridge port down for 3 s). A
# node still down from a fault is not faulted again (the next node up is).
# Each fault goes to faults.log as at_ms=T fault=KIND node=NODE, T in ms
# since the probes were launched, the clock every gap is put on. At the end:
# each gap over 200 ms with the fault before it, then per client and overall
# the worst gap, the gaps over 2 s (target: none), client errors (target:
# none) and mismatches. Exit status 1 if any data read back was wrong.
#
#   bench/chaos.sh [--minutes 60] [--seed S] [--every-ms 3000-5000] [--faults kill,freeze,link] [--no-guest] [--no-build]
#
# Needs root (namespaces), and installs nothing the test command does not.
# Everything stops by itself after --minutes plus a minute. Not a test:
# figures go to the README with the command that made them.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: bench/chaos.sh [--minutes N] [--seed S] [--every-ms A-B] [--faults kill,freeze,link] [--no-guest] [--no-build]"
minutes=60 seed="" every=3000-5000 faults=kill,freeze,link guest=1 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --every-ms) every=$2; shift 2 ;;
    --faults) faults=$2; shift 2 ;;
    --no-guest) guest=0; shift ;;
    --no-build) build=0; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
[[ $minutes =~ ^[1-9][0-9]*$ && $every =~ ^([0-9]+)-([0-9]+)$ ]] || { echo "$usage" >&2; exit 2; }
every_min=${BASH_REMATCH[1]} every_max=${BASH_REMATCH[2]}
[ "$every_min" -ge 100 ] && [ "$every_min" -le "$every_max" ] || { echo "--every-ms: A-B with 100 <= A <= B" >&2; exit 2; }
IFS=, read -r -a kinds <<<"$faults"
for k in "${kinds[@]}"; do
  case "$k" in kill | freeze | link) ;; *) echo "--faults: kill, freeze or link, not '$k'" >&2; exit 2 ;; esac
done
# A seed anyone can type again.
[ -n "$seed" ] || seed=$(($(od -An -N4 -tu4 /dev/urandom) % 1000000))
[[ $seed =~ ^[0-9]+$ ]] || { echo "--seed: a number" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/chaos.sh needs root (network namespaces)" >&2; exit 1; }
command="bench/chaos.sh --minutes $minutes --seed $seed --every-ms $every --faults $faults$([ "$guest" = 1 ] || echo ' --no-guest')"
echo "chaos: seed $seed (replay: $command)" >&2

[ "$build" = 0 ] || cargo build --release -q -p vnas
[ -x target/release/vnas ] || { echo "no target/release/vnas (run without --no-build)" >&2; exit 1; }
mkdir -p target/tools
cc -O2 -o target/tools/nfsprobe tools/nfsprobe.c -lnfs
vnas=$(realpath target/release/vnas)
probe=$(realpath target/tools/nfsprobe)
work=$(realpath target)/bench-chaos
rm -rf "$work"
mkdir -p "$work/volumes" "$work/store"
bed=chaos
export VNAS_TOKEN_FILE=$work/admin.token
seconds=$((minutes * 60))

# Every process this script started, by name (n1..n3, probes, guest,
# watchdog): the cleanup ends these and no other.
declare -A pid
cleanup() {
  # A frozen node first: a stopped process does not act on SIGTERM.
  for p in "${pid[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  # Three seconds to end by themselves; the bed's own cleanup kills the rest.
  for _ in $(seq 30); do
    alive=0
    for p in "${pid[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  scripts/bed.sh down "$bed" || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT
scripts/bed.sh up "$bed"
on() { local host=$1; shift; ip netns exec "vnas-$bed-$host" "$@"; }

# One certificate for the cluster's API, naming every node's address.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=vnas-chaos \
  -addext "subjectAltName=IP:198.18.0.1,IP:198.18.0.2,IP:198.18.0.3" -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
export VNAS_CA_FILE=$work/cert.pem VNAS_API=https://198.18.0.1:7400

# Start a node and wait (30 s at most) until its API answers.
start_node() { # name
  local i=${1#n} tries=0
  ip netns exec "vnas-$bed-$1" env VNAS_LOG=warn "$vnas" node run --name "$1" --store "$work/store" --api "198.18.0.$i:7400" \
    --network linux --interface eth0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
  until on c1 env VNAS_API="https://198.18.0.$i:7400" timeout 5 "$vnas" node list >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || return 1
    sleep 0.1
  done
}
for n in n1 n2 n3; do start_node "$n" || { echo "node $n did not start" >&2; exit 1; }; done
# The CLI on client host c1, against the first node that answers.
cli() {
  local i
  for i in 1 2 3; do on c1 env VNAS_API="https://198.18.0.$i:7400" timeout 20 "$vnas" "$@" && return 0; done
  return 1
}
state() { cli vserver show "$1" --json | python3 -c 'import json,sys; v = json.load(sys.stdin); print(v["state"], v["node"])'; }
for i in 1 2 3; do
  mkdir -p "$work/volumes/c$i"
  cli vserver create "c$i" --ip "198.18.1.6$i/16" --volume "/data=$work/volumes/c$i" \
    --export /data:rw:no_root_squash --node "n$i" >/dev/null
done
for i in 1 2 3; do
  for _ in $(seq 300); do [ "$(state "c$i")" = "running n$i" ] && break; sleep 0.1; done
  [ "$(state "c$i")" = "running n$i" ] || { echo "vserver c$i not running on n$i: $(state "c$i")" >&2; exit 1; }
done

# --- The kernel client first: it boots (seconds, emulated) before the clock starts.
guest_note=""
if [ "$guest" = 0 ]; then
  guest_note="not run (--no-guest)"
elif ! scripts/guest.sh build target/guestkit >/dev/null; then
  guest_note="not run (scripts/guest.sh build failed)"
else
  console=$work/guest.console
  : >"$console"
  # Each console line with the time the host read it: the guest's own
  # clock is not the probes'.
  (GAP_MS=200 scripts/guest.sh run target/guestkit "$bed" 198.18.1.61 /data "$((seconds + 5))" 20 2>&1 |
    while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done >"$console") &
  pid[guest]=$!
  for _ in $(seq 1200); do grep -q 'guest: mounted' "$console" && break; sleep 0.1; done
  grep -q 'guest: mounted' "$console" || guest_note="did not mount in 120 s (see $console)"
  echo "chaos: kernel client ${guest_note:-mounted 198.18.1.61:/data}" >&2
fi

# --- The clock: ms since the probes started (faults.log, gaps) -------------
# A probe's at_ms counts from its own start, some tens of ms after it was
# launched (ip netns exec): its lines carry the time the host read them too,
# as the guest's do, and that time is the one compared with the faults.
t0=${EPOCHREALTIME/./}
clock() { now=$(((${EPOCHREALTIME/./} - t0) / 1000)); }
stamp() { while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done; }
for i in 1 2 3; do
  # (ip netns exec and env exec: $! is the probe itself.)
  ip netns exec "vnas-$bed-c1" env NFSPROBE_GAP_MS=200 "$probe" probe "nfs://198.18.1.6$i/data" "$seconds" 10 \
    > >(stamp >"$work/probe-c$i.out") 2>"$work/probe-c$i.err" &
  pid[probe-c$i]=$!
done
# Bounded: past the run and a minute, the watchdog ends this script (and
# the trap everything it started).
(trap 'kill $s 2>/dev/null; exit 0' TERM; sleep $((seconds + 60)) & s=$!; wait $s
  echo "chaos: over time, stopping" >&2; kill -TERM $$) &
pid[watchdog]=$!
echo "chaos: t0 $t0 us since the epoch" >"$work/events.log"
: >"$work/faults.log"

# --- The seeded schedule -----------------------------------------------------
# An LCG of our own (bash's $RANDOM changed between versions): 30 bits per
# draw, two steps of 15 high bits each; no product overflows 63 bits.
rng=$((seed % 2147483648))
draw() { # N: r in [0, N)
  rng=$(((rng * 1103515245 + 12345) % 2147483648)); r=$((rng >> 16 & 32767))
  rng=$(((rng * 1103515245 + 12345) % 2147483648)); r=$(((r << 15 | rng >> 16 & 32767) % $1))
}
# The next fault: three draws each, whatever happens, so a seed always
# gives the same sequence of intended faults.
next_fault() {
  draw $((every_max - every_min + 1)); next_at=$((now + every_min + r))
  draw ${#kinds[@]}; next_kind=${kinds[$r]}
  draw 3; next_node=n$((r + 1))
}
# A node down from a fault: its kind and when it comes back.
declare -A down_kind down_until
event() { echo "at_ms=$now $*" >>"$work/events.log"; }
fault() { # kind node
  local kind=$1 node=$2
  echo "at_ms=$now fault=$kind node=$node" >>"$work/faults.log"
  event "fault=$kind node=$node"
  case "$kind" in
    kill) kill -9 "${pid[$node]}"; wait "${pid[$node]}" 2>/dev/null || true; unset "pid[$node]"; down_until[$node]=$((now + 2000)) ;;
    freeze) kill -STOP "${pid[$node]}"; down_until[$node]=$((now + 1500)) ;;
    link) ip -n "vnas-$bed-bed" link set "$node" down; down_until[$node]=$((now + 3000)) ;;
  esac
  down_kind[$node]=$kind
}
recover() { # node
  local node=$1
  case "${down_kind[$node]}" in
    kill) start_node "$node" || event "restart of $node: no API answer in 30 s" ;;
    freeze) kill -CONT "${pid[$node]}" ;;
    link) ip -n "vnas-$bed-bed" link set "$node" up ;;
  esac
  clock
  event "recovered=${down_kind[$node]} node=$node"
  unset "down_kind[$node]" "down_until[$node]"
}

# --- The faults: until 10 s before the end, so the last one's recovery is seen.
echo "chaos: $minutes min of faults ($faults, one every $every ms), libnfs on c1..c3$([ -n "$guest_note" ] || echo ', kernel client on c1')" >&2
clock
fault_end=$((seconds * 1000 - 10000))
next_fault
count=0 minute=1
while :; do
  clock
  for n in n1 n2 n3; do
    if [ -n "${down_kind[$n]:-}" ] && [ "$now" -ge "${down_until[$n]}" ]; then recover "$n"; clock; fi
  done
  if [ "$now" -ge "$fault_end" ]; then
    [ ${#down_kind[@]} = 0 ] && break
  elif [ "$now" -ge "$next_at" ]; then
    # The drawn node, or the next one up; none up: wait for one.
    i=${next_node#n} target=""
    for k in 0 1 2; do
      n=n$(((i - 1 + k) % 3 + 1))
      [ -z "${down_kind[$n]:-}" ] && { target=$n; break; }
    done
    if [ -n "$target" ]; then
      fault "$next_kind" "$target"
      count=$((count + 1))
      next_fault
    fi
  fi
  if [ "$now" -ge $((minute * 60000)) ]; then
    echo "  minute $minute/$minutes: $count faults, $(cat "$work"/probe-c?.out | grep -c ' gap_ms=') libnfs gaps over 200 ms" >&2
    minute=$((minute + 1))
  fi
  # Sleep until the next thing due (10-200 ms).
  wake=$next_at
  for n in "${!down_until[@]}"; do [ "${down_until[$n]}" -lt "$wake" ] && wake=${down_until[$n]}; done
  wake=$((wake - now)); [ "$wake" -lt 10 ] && wake=10; [ "$wake" -gt 200 ] && wake=200
  sleep "0.$(printf '%03d' "$wake")"
done
echo "chaos: $count faults; waiting for the clients" >&2

# --- The clients' ends (a probe not done 30 s after its time is a hang) ------
hung=""
for i in 1 2 3; do
  p=${pid[probe-c$i]}
  while kill -0 "$p" 2>/dev/null; do
    clock
    [ "$now" -lt $((seconds * 1000 + 30000)) ] || { hung+=" c$i"; kill -9 "$p"; break; }
    sleep 0.2
  done
  wait "$p" || true
  unset "pid[probe-c$i]"
  # Its last line through stamp.
  for _ in $(seq 20); do grep -q ' phase=probe' "$work/probe-c$i.out" && break; sleep 0.1; done
done
if [ -n "${pid[guest]:-}" ]; then
  wait "${pid[guest]}" || true
  unset "pid[guest]"
fi
for i in 1 2 3; do cli vserver history "c$i" >"$work/history-c$i.txt" 2>&1 || true; done
kill "${pid[watchdog]}" 2>/dev/null || true
wait "${pid[watchdog]}" 2>/dev/null || true
unset "pid[watchdog]"

# --- Gaps on one clock: CLIENT END_MS GAP_MS; per client: the summary --------
: >"$work/gaps"
: >"$work/clients"
for i in 1 2 3; do
  out=$work/probe-c$i.out
  awk -v c="libnfs-c$i" -v t0="$t0" '
    $2 ~ /^gap_ms=/ { split($2, g, "="); printf "%s %d %d\n", c, ($1 - t0 / 1e6) * 1000 + 0.5, g[2] }' "$out" >>"$work/gaps"
  summary=$(grep ' phase=probe' "$out" || true)
  if [ -n "$summary" ]; then
    # round_trips errors mismatches max_gap_ms note
    echo "$summary" | sed -n 's/.*round_trips=\([0-9]*\) failed_ops=\([0-9]*\) mismatches=\([0-9]*\) max_gap_ms=\([0-9]*\).*/libnfs-c'"$i"' \1 \2 \3 \4 -/p' >>"$work/clients"
  else
    note=no-summary; [[ " $hung " == *" c$i "* ]] && note=hung
    echo "libnfs-c$i 0 1 0 0 $note" >>"$work/clients"
  fi
done
if [ -n "$guest_note" ]; then
  [ "$guest_note" = "not run (--no-guest)" ] || echo "kernel-c1 0 1 0 0 not-run" >>"$work/clients"
else
  python3 - "$console" "$t0" >>"$work/gaps" <<'EOF'
import re, sys
t0 = int(sys.argv[2]) / 1e6
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(\S+) .*guest: gap_ms=(\d+)", line)
    if m:
        print("kernel-c1", round((float(m.group(1)) - t0) * 1000), m.group(2))
EOF
  result=$(grep -a -o 'guest: round_trips=.*' "$console" | tail -1 || true)
  if [ -n "$result" ]; then
    compare=$(grep -a -c 'guest: error .*op=compare' "$console" || true)
    echo "$result" | sed -n 's/.*round_trips=\([0-9]*\) errors=\([0-9]*\) max_gap_ms=\([0-9]*\).*/\1 \2 \3/p' |
      { read -r n e g; echo "kernel-c1 $n $((e - compare)) $compare $g -"; } >>"$work/clients"
  else
    echo "kernel-c1 0 1 0 0 no-result" >>"$work/clients"
  fi
fi

# --- The report ----------------------------------------------------------------
python3 - "$work/faults.log" "$work/gaps" "$work/clients" "$command" "$guest_note" <<'EOF' | tee "$work/report.txt"
import sys, datetime
faults = []
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split())
    faults.append((int(f["at_ms"]), f["fault"], f["node"]))
gaps = [(c, int(end), int(g)) for c, end, g in (l.split() for l in open(sys.argv[2]))]
clients = [l.split() for l in open(sys.argv[3])]
command, guest_note = sys.argv[4], sys.argv[5]
kinds = {k: sum(1 for f in faults if f[1] == k) for k in ("kill", "freeze", "link")}

print("Gaps over 200 ms (s since the probes started), each with the fault before it:")
for c, end, g in sorted(gaps, key=lambda x: (x[0], x[1])):
    # The last fault before the gap ended: a fault's gap begins at the last
    # good round trip, before the fault itself.
    start = end - g
    before = [f for f in faults if f[0] <= end]
    cause = "no fault before it"
    if before:
        at, kind, node = before[-1]
        when = f"{start - at} ms after it" if start >= at else f"{at - start} ms before it"
        cause = f"{kind} {node} at {at / 1000:.3f} (gap began {when})"
    print(f"  {c:10} {g:6} ms  {start / 1000:9.3f}-{end / 1000:.3f}  {cause}")
if not gaps:
    print("  none")

print()
print(f"vnas chaos on the bed, linux network mode, release build, {datetime.date.today()}: {command}")
print(f"  {len(faults)} faults ({kinds['kill']} kill, {kinds['freeze']} freeze, {kinds['link']} link); "
      f"libnfs on host c1 against c1, c2, c3 (every 10 ms); kernel client against c1 (every 20 ms){': ' + guest_note if guest_note else ''}")
print(f"  {'client':10} {'round trips':>11} {'worst gap':>10} {'gaps > 2 s':>10} {'errors':>7} {'mismatches':>10}  note")
worst, worst_c, over, errors, mismatches = 0, "-", 0, 0, 0
for c, n, e, m, g, note in clients:
    n, e, m, g = int(n), int(e), int(m), int(g)
    o = sum(1 for cc, _, gg in gaps if cc == c and gg > 2000)
    print(f"  {c:10} {n:11} {g:7} ms {o:10} {e:7} {m:10}  {'' if note == '-' else note}".rstrip())
    if g > worst:
        worst, worst_c = g, c
    over, errors, mismatches = over + o, errors + e, mismatches + m
print(f"  overall: worst gap {worst} ms ({worst_c}), gaps over 2 s: {over} (target: none), "
      f"client errors: {errors} (target: none), mismatches: {mismatches}")
EOF
echo "(faults: $work/faults.log; everything: $work)" >&2
mismatches=$(awk '{ m += $4 } END { print m + 0 }' "$work/clients")
[ "$mismatches" = 0 ] || { echo "chaos: $mismatches mismatches: data read back was wrong" >&2; exit 1; }
