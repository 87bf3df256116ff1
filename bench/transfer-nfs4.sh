#!/usr/bin/env bash
# NFSv4.1 state across transfers, as the Linux kernel client sees it
# (`bench/transfer.sh --nfs4`), on the test bed (scripts/bed.sh), beside the
# usual open-source HA pair measured the same way in the same run:
#
#   E  vnas: three nodes (`--nfs4`) in the linux network mode. The guest
#      (scripts/guest.sh locks, vers=4.1) holds a file open with a lock
#      (locker A); per event, locker B's probe (write, fsync, read back
#      every 20 ms) gives the longest gap. MOVES planned moves, then KILLS
#      SIGKILLs of the owner. After each SIGKILL, B takes a new lock on
#      another file (how long it waits: a grace period would show here).
#   F  (unless --no-peer)
#      NFS-Ganesha (VFS backend, NFSv4.1, the fs recovery backend in a
#      directory both hosts share, its default grace and lease) on two bed
#      hosts, the address moved as keepalived moves it (gone with the dead
#      host; added with a gratuitous ARP on the survivor, where Ganesha is
#      started, as a notify script or Pacemaker does): one SIGKILL failover
#      and one planned switchover (SIGTERM), the same guest workload.
#
# For each: the gaps, what the client had to do again (its own counters in
# /proc/self/mountstats: EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE,
# LOCK), and how long a new file's open and lock wait (a grace period
# shows there: NFS4ERR_GRACE until it ends).
#
#   bench/transfer-nfs4.sh [--moves 10] [--kills 3] [--no-peer]
#
# Needs root. Installs NFS-Ganesha if missing. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."

moves=10 kills=3 peer=1
while [ $# -gt 0 ]; do
  case "$1" in
    --moves) moves=$2; shift 2 ;;
    --kills) kills=$2; shift 2 ;;
    --no-peer) peer=0; shift ;;
    *) echo "usage: bench/transfer-nfs4.sh [--moves N] [--kills N] [--no-peer]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/transfer-nfs4.sh needs root (network namespaces)" >&2; exit 1; }
if [ "$peer" = 1 ]; then
  need=()
  for pkg in nfs-ganesha nfs-ganesha-vfs iputils-arping; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

cargo build --release -q -p vnas
mkdir -p target/tools
cc -O2 -o target/tools/nlmtool tools/nlmtool.c -lnfs
vnas=$(realpath target/release/vnas)
kit=$(realpath target)/tmp/guestkit
bash scripts/guest.sh build "$kit" >&2
work=$(realpath target)/bench-transfer-nfs4
rm -rf "$work"
mkdir -p "$work/volumes/v4" "$work/ganesha/export" "$work/ganesha/recovery" "$work/store"
bed=bnfs4
export VNAS_TOKEN_FILE=$work/admin.token

declare -A pid
guest_pid=
cleanup() {
  for p in "${pid[@]}" $guest_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/bed.sh down "$bed" || true
}
trap cleanup EXIT
scripts/bed.sh up "$bed"
on() { local host=$1; shift; ip netns exec "vnas-$bed-$host" "$@"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=vnas-bench \
  -addext "subjectAltName=IP:198.18.0.1,IP:198.18.0.2,IP:198.18.0.3" -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
export VNAS_CA_FILE=$work/cert.pem
start_node() { # name
  local i=${1#n}
  # Not through on(): $! must be the node itself (ip netns exec execs).
  ip netns exec "vnas-$bed-$1" env VNAS_LOG=warn "$vnas" node run --name "$1" --store "$work/store" --api "198.18.0.$i:7400" \
    --network linux --interface eth0 --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --nfs4 \
    >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
  until on c1 env VNAS_API="https://198.18.0.$i:7400" "$vnas" node list >/dev/null 2>&1; do sleep 0.05; done
}
cli() {
  local i
  for i in 1 2 3; do on c1 env VNAS_API="https://198.18.0.$i:7400" "$vnas" "$@" 2>/dev/null && return 0; done
  return 1
}
stats() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "none"; exit } printf "median %d ms, worst %d ms (%d)", v[int((NR + 1) / 2)], v[NR], NR }'; }

# --- the guest, driven over its console -----------------------------------
# boot VIP: the guest mounts VIP:/data with vers=4.1 at /mnt.
boot() {
  coproc GUEST { CONSOLE_LOG="$work/console-$1.log" MOUNT_OPTS="vers=4.1" exec bash scripts/guest.sh locks "$kit" "$bed" "$1" /data 1800; }
  guest_pid=$GUEST_PID
  # Plain descriptors: a coprocess's are not seen in $(...) subshells.
  exec {gin}<&"${GUEST[0]}" {gout}>&"${GUEST[1]}"
  line "guest: ready" >/dev/null
}
# line PREFIX: the next console line starting with PREFIX.
line() {
  local l
  while IFS= read -r -t 300 l <&"$gin"; do
    [[ $l == "$1"* ]] && { printf '%s\n' "$l"; return 0; }
  done
  echo "bench/transfer-nfs4.sh: the guest said no '$1'" >&2
  exit 1
}
ask() { printf '%s\n' "$1" >&"$gout"; line "guest: ${1:0:1} "; }
gsh() {
  printf 'sh %s\n' "$1" >&"$gout"
  local l
  while IFS= read -r -t 120 l <&"$gin"; do
    case $l in
      "guest: sh done status="*) return 0 ;;
      "guest: sh: "*) printf '%s\n' "${l#guest: sh: }" ;;
    esac
  done
}
quit() {
  printf 'quit\n' >&"$gout"
  line "guest: quit" >/dev/null || true
  wait "$guest_pid" 2>/dev/null || true
  exec {gin}<&- {gout}>&-
  guest_pid=
}
# The guest's count of an NFSv4 operation on /mnt.
count() {
  gsh "awk '\$1 == \"device\" { on = (\$5 == \"/mnt\") } on && \$1 == \"$1:\" { print \$2 }' /proc/self/mountstats" | tail -1
}
counters() { echo "EXCHANGE_ID=$(count EXCHANGE_ID) CREATE_SESSION=$(count CREATE_SESSION) RECLAIM_COMPLETE=$(count RECLAIM_COMPLETE) LOCK=$(count LOCK)"; }
# grew BEFORE AFTER: what the counters grew by.
grew() { python3 -c '
import sys
b = dict(kv.split("=") for kv in sys.argv[1].split()); a = dict(kv.split("=") for kv in sys.argv[2].split())
print(" ".join(f"{k}+{int(a[k]) - int(b[k])}" for k in b))' "$1" "$2"; }
# probe_around SECONDS CMD...: runs CMD while B probes for SECONDS; the
# probe's worst gap in $probed. Not in a $(...): a server CMD starts would
# keep its pipe open, and CMD's variables would be lost.
probe_around() {
  local seconds=$1; shift
  printf 'B probe /mnt/probe %s\n' "$seconds" >&"$gout"
  sleep 1
  "$@"
  probed=$(line "guest: B probed" | sed -n 's/.*max_gap_ms=\([0-9]*\).*/\1/p')
}
new_lock_ms() { # B opens FILE (new) and locks it: how long both took
  local opened locked
  opened=$(ask "B open /mnt/$1")
  locked=$(ask "B lockw w 0 0")
  [[ $locked == *waiting* ]] && locked=$(line "guest: B ")
  ms() { sed -n 's/.*ms=\([0-9]*\).*/\1/p'; }
  echo $(($(echo "$opened" | ms) + $(echo "$locked" | ms)))
  ask "B unlock 0 0" >/dev/null
  ask "B close" >/dev/null
}

# --- E: vnas ------------------------------------------------------------------
for n in n1 n2 n3; do start_node "$n"; done
cli vserver create v4 --ip 198.18.1.40/16 --volume "/data=$work/volumes/v4" \
  --export /data:rw:no_root_squash --node n1 >/dev/null
owner() { cli vserver show v4 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])'; }
echo "E: vnas, kernel client on NFSv4.1 with a lock held: $moves moves, $kills SIGKILLs" >&2
boot 198.18.1.40
ask "A open /mnt/f" >/dev/null
ask "A lock w 0 0" >/dev/null
probe_around 3 true; quiet=$probed
before=$(counters)
: >"$work/e-moves"
move() { cli vserver move v4 >/dev/null; }
for i in $(seq "$moves"); do
  probe_around 3 move; echo "$probed" >>"$work/e-moves"
done
moved=$(counters)
: >"$work/e-kills" && : >"$work/e-newlock"
for i in $(seq "$kills"); do
  victim=$(owner)
  kill_owner() { kill -9 "${pid[$victim]}"; wait "${pid[$victim]}" 2>/dev/null || true; }
  probe_around 5 kill_owner; echo "$probed" >>"$work/e-kills"
  new_lock_ms "g$i" >>"$work/e-newlock"
  start_node "$victim"
done
killed=$(counters)
held=$(on c1 target/tools/nlmtool lock nfs://198.18.1.40/data f c1 1 w 0 1 | grep -o 'status=[A-Z0-9_]*')
quit
e_line="vnas 4.1: moves $(stats <"$work/e-moves") (guest alone: ${quiet} ms); SIGKILL $(stats <"$work/e-kills"); \
new file's open and lock after a SIGKILL $(stats <"$work/e-newlock"); client counters over the moves: $(grew "$before" "$moved"), \
over the SIGKILLs: $(grew "$moved" "$killed"); A's lock afterwards, asked by another client: $held"
echo "  $e_line" >&2
for n in "${!pid[@]}"; do kill "${pid[$n]}" 2>/dev/null || true; wait "${pid[$n]}" 2>/dev/null || true; done
pid=()

# --- F: NFS-Ganesha, its address moved as keepalived moves it ----------------
f_line="peer (ganesha 4.1): not run (--no-peer)"
if [ "$peer" = 1 ]; then
  echo "F: NFS-Ganesha on two hosts, kernel client on NFSv4.1 with a lock held" >&2
  cat >"$work/ganesha/ganesha.conf" <<CONF
NFS_CORE_PARAM { NFS_Port = 2049; Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Minor_Versions = 1, 2; RecoveryBackend = fs; RecoveryRoot = $work/ganesha/recovery; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
    Export_Id = 1; Path = $work/ganesha/export; Pseudo = /data; Protocols = 4; Transports = TCP;
    Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
CONF
  vip=198.18.1.41
  ganesha_on() { # host: Ganesha in the host's namespace, its own /run
    ip netns exec "vnas-$bed-$1" unshare -m --propagation private bash -c \
      "mount -t tmpfs none /run && exec ganesha.nfsd -F -f $work/ganesha/ganesha.conf -L $work/ganesha/$1.log -p /run/ganesha.pid" >>"$work/ganesha/$1.out" 2>&1 &
    pid[g$1]=$!
    until on "$1" bash -c "exec 3<>/dev/tcp/127.0.0.1/2049" 2>/dev/null; do sleep 0.1; done
  }
  address_to() { # host: the address goes there and is announced
    on "$1" ip addr add "$vip/16" dev eth0
    on "$1" arping -q -U -c 2 -w 1 -I eth0 "$vip" || true
  }
  ganesha_on n1
  address_to n1
  boot "$vip"
  ask "A open /mnt/f" >/dev/null
  ask "A lock w 0 0" >/dev/null
  probe_around 3 true; quiet=$probed
  before=$(counters)
  # SIGKILL failover: the host dies (its Ganesha and its address), the
  # survivor takes the address and starts Ganesha, which reads the shared
  # recovery directory and enters its grace period.
  fail_over() {
    kill -9 "${pid[gn1]}"; wait "${pid[gn1]}" 2>/dev/null || true
    on n1 ip addr del "$vip/16" dev eth0
    ganesha_on n2
    address_to n2
  }
  probe_around 8 fail_over; gap=$probed
  newlock=$(new_lock_ms g1)
  failed=$(counters)
  # Planned switchover back: SIGTERM, then the same on n1.
  switch_over() {
    kill -TERM "${pid[gn2]}"; wait "${pid[gn2]}" 2>/dev/null || true
    on n2 ip addr del "$vip/16" dev eth0
    ganesha_on n1
    address_to n1
  }
  probe_around 8 switch_over; sgap=$probed
  snewlock=$(new_lock_ms g2)
  switched=$(counters)
  quit
  f_line="ganesha 4.1: SIGKILL failover gap $gap ms (guest alone: $quiet ms), new file's open and lock after it $newlock ms, \
client counters $(grew "$before" "$failed"); switchover gap $sgap ms, new file's open and lock after it $snewlock ms, \
client counters $(grew "$failed" "$switched")"
  echo "  $f_line" >&2
fi

echo
echo "NFSv4.1 with a lock held, kernel client, the bed, release build, $(date -u +%F):"
echo "  $e_line"
echo "  $f_line"
