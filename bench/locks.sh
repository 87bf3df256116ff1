#!/usr/bin/env bash
# NLM v4 lock + unlock round trips, vnas against NFS-Ganesha, in one run on
# this machine. Not a test: it prints figures and ratios.
#
#   bench/locks.sh [--calls 5000] [--runs 3] [--servers "vnas vnas-etcd ganesha"]
#
# One client, our tools/nlmtool.c (libnfs's NLM v4 calls, built here), makes
# --calls LOCK (write, whole file) + UNLOCK pairs, one call at a time, and
# reports the median and p99 time of a pair and the pairs per second:
#   - "warm": the same client host holds another lock (on another file) all
#     along, as a client with files open usually does;
#   - "cold": the client holds no other lock. NFS-Ganesha then asks rpc.statd
#     to monitor the client (SM_MON, which writes and syncs a file) at each
#     LOCK and to stop (SM_UNMON) at each UNLOCK; vnas keeps no statd.
# Runs alternate between the servers; the median of each figure over the
# runs is reported, with every run's figure.
#
# vnas: a node and a vserver on loopback (127.4.0.1, NFS port 2049, where
# vnas also serves NLM and NSM), as bench/transfer.sh starts them, on the
# directory store; vnas-etcd: the same on an etcd store (one member, on
# this machine's disk), vserver at 127.4.0.2. vnas records every change of
# its lock table in the store before it answers (so a next owner restores
# it and no client reclaims anything): the difference between the two is
# what that record costs on each store, and vnas's own mean time per record
# (`vnas vserver locks --json`: record_us_mean) is printed too.
# NFS-Ganesha (VFS backend, NLM on, no grace period) runs with its own
# rpcbind and rpc.statd in a network namespace of its own (vnas-bench-locks,
# loopback only, plus a veth pair whose two ends both stay inside: Ganesha
# does not start in a namespace with no interface but lo), with a private
# /run, so that nothing registers with the host's rpcbind.
# --servers ganesha measures NFS-Ganesha alone (no cargo build).
# Needs root (ip netns). Every wait is bounded; everything it starts is
# stopped by PID on exit and the namespace removed. Logs: target/bench-locks.
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=$(realpath "$0")

# ---------------------------------------------------------------------------
# Internal entry point: Ganesha's side, run as
#   ip netns exec vnas-bench-locks unshare -m --propagation private bash SELF __ganesha DIR
# rpcbind, rpc.statd and Ganesha with a private /run (rpcbind's socket,
# statd's pid file), statd's state in DIR/statd. PIDs in DIR/pid.*.
if [ "${1:-}" = __ganesha ]; then
  d=$2
  mount -t tmpfs -o mode=0755 bench-locks-run /run || exit 1
  install -d -m 0755 -o _rpc -g root /run/rpcbind 2>/dev/null || install -d -m 0755 /run/rpcbind
  rpcbind -f >"$d/rpcbind.log" 2>&1 &
  echo $! >"$d/pid.rpcbind"
  for _ in $(seq 50); do [ -S /run/rpcbind.sock ] && break; sleep 0.1; done
  mkdir -p "$d/statd/sm" "$d/statd/sm.bak"
  # -L: no SM_NOTIFY to earlier peers at start; -P: not /var/lib/nfs.
  rpc.statd -F -d -L -P "$d/statd" -p 32765 >"$d/statd.log" 2>&1 &
  echo $! >"$d/pid.statd"
  for _ in $(seq 50); do rpcinfo -T tcp 127.0.0.1 100024 1 >/dev/null 2>&1 && break; sleep 0.1; done
  ganesha.nfsd -F -f "$d/ganesha.conf" -L "$d/ganesha.log" -p "$d/ganesha.pid" -N NIV_EVENT >"$d/ganesha.out" 2>&1 &
  echo $! >"$d/pid.ganesha"
  wait
  exit 0
fi

calls=5000 runs=3 servers="vnas vnas-etcd ganesha"
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    *) echo "usage: bench/locks.sh [--calls N] [--runs N] [--servers \"vnas vnas-etcd ganesha\"]" >&2; exit 2 ;;
  esac
done
for s in $servers; do
  case "$s" in vnas | vnas-etcd | ganesha) ;; *) echo "unknown server $s (vnas, vnas-etcd, ganesha)" >&2; exit 2 ;; esac
done
has() { [[ " $servers " == *" $1 "* ]]; }
[ "$(id -u)" = 0 ] || { echo "bench/locks.sh needs root (ip netns)" >&2; exit 1; }

need=()
for pkg in nfs-ganesha nfs-ganesha-vfs rpcbind nfs-common libnfs-dev gcc etcd-server protobuf-compiler curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if has vnas || has vnas-etcd; then cargo build --release -q -p vnas --features etcd; fi
mkdir -p target/tools
cc -O2 -Wall -o target/tools/nlmtool tools/nlmtool.c -lnfs
nlmtool=$(realpath target/tools/nlmtool)

ns=vnas-bench-locks
if [ -e "/run/netns/$ns" ]; then
  echo "namespace $ns already exists (left over from an earlier run? ip netns del $ns)" >&2
  exit 1
fi
work=$(realpath target)/bench-locks
rm -rf "$work"
mkdir -p "$work/vnas/volume" "$work/ganesha/export" "$work/ganesha/recovery"

pids=() made_ns=0 hold_pid=
in_ns() { # PID: is it a process in our namespace? (a stale PID file is never signalled)
  [ "$made_ns" = 1 ] && ip netns pids "$ns" 2>/dev/null | grep -qx "$1"
}
stop_pid() { # PID [in_ns]: SIGTERM, up to 15 s to exit, then SIGKILL
  local p=$1
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM HUP
  local p f
  [ -n "$hold_pid" ] && stop_pid "$hold_pid"
  if [ "$made_ns" = 1 ]; then
    # Ganesha first (it unregisters from rpcbind and statd; it takes a few
    # seconds to stop), then statd and rpcbind; the wrapper shell then ends.
    for f in ganesha statd rpcbind; do
      p=$(cat "$work/ganesha/pid.$f" 2>/dev/null || true)
      if [ -n "$p" ] && in_ns "$p"; then stop_pid "$p"; fi
    done
  fi
  for p in "${pids[@]}"; do stop_pid "$p"; done
  if [ "$made_ns" = 1 ]; then
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

wait_ready() { # label url [ip netns exec ...]: NLM answers (bounded: 60 s)
  local label=$1 url=$2
  shift 2
  for _ in $(seq 120); do
    "$@" "$nlmtool" test "$url" ready ready 1 r 0 0 >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "$label: no NLM answer at $url within 60 s:" >&2
  "$@" "$nlmtool" test "$url" ready ready 1 r 0 0 >&2 || true
  exit 1
}

# --- vnas: a node and a vserver (directory store; etcd) --------------------------
vnas=$(realpath target/release/vnas 2>/dev/null || true)
start_vnas() { # label store api vserver-ip; sets url_LABEL
  local label=$1 store=$2 api=$3 ip=$4 dir=$work/$1
  mkdir -p "$dir/volume"
  [[ $store == etcd://* ]] || mkdir -p "$store"
  VNAS_LOG=warn VNAS_TOKEN_FILE=$dir/admin.token "$vnas" node run --name n1 --store "$store" --api "$api" \
    >>"$dir/node.log" 2>&1 &
  pids+=($!)
  local token=
  for i in $(seq 200); do
    token=$(awk '!/^#/ { print $NF; exit }' "$dir/admin.token" 2>/dev/null || true)
    [ -n "$token" ] && curl -sf -H "authorization: Bearer $token" "http://$api/api/status" >/dev/null 2>&1 && break
    [ "$i" = 200 ] && { echo "$label: the node did not answer within 10 s: $(tail -3 "$dir/node.log")" >&2; exit 1; }
    sleep 0.05
  done
  VNAS_TOKEN_FILE=$dir/admin.token VNAS_API=http://$api "$vnas" vserver create locks --ip "$ip" \
    --volume "/data=$dir/volume" --export /data:rw:no_root_squash --node n1 >/dev/null
  printf -v "url_${label//-/_}" '%s' "nfs://$ip/data?nfsport=2049&mountport=2049"
  local url_var="url_${label//-/_}"
  wait_ready "$label" "${!url_var}"
}
record_us() { # label: vnas's own mean time to record one lock table change
  local dir=$work/$1 api=$2
  VNAS_TOKEN_FILE=$dir/admin.token VNAS_API=http://$api "$vnas" vserver locks locks --json |
    python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["record_us_mean"], v["recorded"])'
}
if has vnas; then
  start_vnas vnas "$work/vnas/store" 127.0.0.1:17651 127.4.0.1
fi
if has vnas-etcd; then
  mkdir -p "$work/vnas-etcd"
  etcd --name m1 --data-dir "$work/vnas-etcd/etcd" \
    --listen-client-urls http://127.0.0.1:23892 --advertise-client-urls http://127.0.0.1:23892 \
    --listen-peer-urls http://127.0.0.1:23893 --initial-advertise-peer-urls http://127.0.0.1:23893 \
    --initial-cluster m1=http://127.0.0.1:23893 --initial-cluster-state new \
    >"$work/vnas-etcd/etcd.log" 2>&1 &
  pids+=($!)
  for i in $(seq 100); do
    curl -sf http://127.0.0.1:23892/health >/dev/null 2>&1 && break
    [ "$i" = 100 ] && { echo "etcd did not start: $(tail -3 "$work/vnas-etcd/etcd.log")" >&2; exit 1; }
    sleep 0.1
  done
  start_vnas vnas-etcd "etcd://127.0.0.1:23892/bench-locks" 127.0.0.1:17652 127.4.0.2
fi

# --- NFS-Ganesha in its namespace ----------------------------------------------
if has ganesha; then
  ip netns add "$ns"
  made_ns=1
  ip -n "$ns" link set lo up
  # Ganesha resolves its bind address with AI_ADDRCONFIG, which fails with
  # lo alone: a veth pair inside the namespace gives it a link-local IPv6
  # address (and 198.18.0.1/30 on one end, which nothing uses).
  ip -n "$ns" link add bl0 type veth peer name bl1
  ip -n "$ns" addr add 198.18.0.1/30 dev bl0
  ip -n "$ns" link set bl0 up
  ip -n "$ns" link set bl1 up
  for _ in $(seq 50); do
    ip -n "$ns" -6 addr show dev bl0 scope link | grep -q inet6 &&
      ! ip -n "$ns" -6 addr show dev bl0 | grep -q tentative && break
    sleep 0.1
  done
  g=$work/ganesha
  cat >"$g/ganesha.conf" <<CONF
NFS_CORE_PARAM {
    Protocols = 3;
    NFS_Port = 2049;
    MNT_Port = 20048;
    NLM_Port = 32803;
    Bind_addr = 127.0.0.1;
    Enable_NLM = true;
    Enable_RQUOTA = false;
}
NFSv4 {
    # No grace period at start: non-reclaim locks are granted at once
    # (with one, NLM4_DENIED_GRACE_PERIOD for 90 s).
    Graceless = true;
    RecoveryRoot = $g/recovery;
}
EXPORT {
    Export_Id = 1;
    Path = $g/export;
    Pseudo = $g/export;
    Protocols = 3;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
CONF
  ip netns exec "$ns" unshare -m --propagation private bash "$SELF" __ganesha "$g" >"$g/wrapper.log" 2>&1 &
  pids+=($!)
  # NLM port given: the calls do not depend on portmap.
  ganesha_url="nfs://127.0.0.1$g/export?nfsport=2049&mountport=20048&nlmport=32803"
  wait_ready ganesha "$ganesha_url" ip netns exec "$ns"
fi

# --- measurements ----------------------------------------------------------------
results=$work/results.txt
: >"$results"
put() { echo "$1 $2 $3" >>"$results"; } # server figure value
value() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }

bench() { # server kind(warm|cold)
  local server=$1 kind=$2 url run=() line
  case "$server" in
    vnas) url=$url_vnas ;;
    vnas-etcd) url=$url_vnas_etcd ;;
    *) url=$ganesha_url run=(ip netns exec "$ns") ;;
  esac
  if [ "$kind" = warm ]; then
    # (ip netns exec execs: $! is nlmtool itself, for the SIGTERM.)
    "${run[@]}" "$nlmtool" hold "$url" anchor anchor 1 w 0 1 3600 >"$work/hold.out" 2>&1 &
    hold_pid=$!
    for i in $(seq 100); do
      grep -q '^op=lock status=NLM4_GRANTED' "$work/hold.out" && break
      [ "$i" = 100 ] && { echo "$server: the anchor lock was not granted: $(cat "$work/hold.out")" >&2; exit 1; }
      sleep 0.1
    done
  fi
  line=$("${run[@]}" "$nlmtool" bench "$url" "bench-$kind" "$calls") ||
    { echo "$server $kind: nlmtool bench failed: $line" >&2; exit 1; }
  echo "  $server $kind: $line" >&2
  put "$server" "${kind}_median" "$(echo "$line" | value lock_unlock_us_median)"
  put "$server" "${kind}_p99" "$(echo "$line" | value p99)"
  put "$server" "${kind}_rate" "$(echo "$line" | value locks_per_s)"
  if [ -n "$hold_pid" ]; then
    kill -TERM "$hold_pid"
    for _ in $(seq 100); do kill -0 "$hold_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$hold_pid" 2>/dev/null || true
    wait "$hold_pid" 2>/dev/null || true
    hold_pid=
  fi
}

echo "NLM lock + unlock: $servers; $calls pairs, $runs runs" >&2
for run in $(seq "$runs"); do
  echo "run $run/$runs" >&2
  # Alternate which server goes first.
  if [ $((run % 2)) -eq 1 ]; then order="vnas vnas-etcd ganesha"; else order="ganesha vnas-etcd vnas"; fi
  for server in $order; do
    has "$server" || continue
    bench "$server" warm
    bench "$server" cold
  done
done

figures() { awk -v s="$1" -v f="$2" '$1 == s && $2 == f { print $3 }' "$results" | sort -g; }
median() {
  figures "$1" "$2" | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
all() { figures "$1" "$2" | awk '{ printf "%s%.4g", (NR > 1 ? " " : ""), $1 }'; }

printf '\n%-40s %10s %10s %10s %9s %9s\n' "figure (median of $runs)" "vnas" "vnas-etcd" "ganesha" "vnas/gan" "etcd/gan"
row() { # figure label
  local v=nan e=nan g=nan
  has vnas && v=$(median vnas "$1")
  has vnas-etcd && e=$(median vnas-etcd "$1")
  has ganesha && g=$(median ganesha "$1")
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b <= 0) print "-"; else printf "%.2fx", a / b }'; }
  printf '%-40s %10.4g %10.4g %10.4g %9s %9s\n' "$2" "$v" "$e" "$g" "$(ratio "$v" "$g")" "$(ratio "$e" "$g")"
  for s in vnas vnas-etcd ganesha; do has "$s" && printf '    every run, %s: [%s]\n' "$s" "$(all "$s" "$1")"; done
}
row warm_median "lock+unlock median (us), warm"
row warm_p99 "lock+unlock p99 (us), warm"
row warm_rate "lock+unlock pairs/s, warm"
row cold_median "lock+unlock median (us), cold"
row cold_p99 "lock+unlock p99 (us), cold"
row cold_rate "lock+unlock pairs/s, cold"
echo "(warm: the client holds another lock all along; cold: no other lock, so Ganesha calls its statd each time)"
has vnas && echo "vnas, directory store: mean time to record one lock table change, changes: $(record_us vnas 127.0.0.1:17651) (us, count)"
has vnas-etcd && echo "vnas, etcd store: mean time to record one lock table change, changes: $(record_us vnas-etcd 127.0.0.1:17652) (us, count)"
