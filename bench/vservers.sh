#!/usr/bin/env bash
# Many vservers on one node: memory per idle vserver, and the time a node
# takes to bring them all up (until every one answers an NFS NULL call).
# Not a test.
#
#   bench/vservers.sh [--count 1000]
#
# Vservers get addresses 127.1.X.Y and a volume directory each; they are
# created through the API, then the node is restarted and timed.
set -euo pipefail
cd "$(dirname "$0")/.."

count=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    *) echo "usage: bench/vservers.sh [--count N]" >&2; exit 2 ;;
  esac
done

cargo build --release -q -p vnas
vnas=$(realpath target/release/vnas)
work=$(realpath target)/bench-vservers
rm -rf "$work"
mkdir -p "$work/volumes" "$work/store"
# The node makes the admin token here at its first start; curl reads it.
export VNAS_TOKEN_FILE=$work/admin.token
token() { awk '!/^#/ { print $NF; exit }' "$VNAS_TOKEN_FILE" 2>/dev/null; }
api=127.0.0.1:17500
node_pid=
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

start_node() {
  VNAS_LOG=warn "$vnas" node run --name n1 --store "$work/store" --api "$api" >>"$work/node.log" 2>&1 &
  node_pid=$!
  until curl -sf -H "authorization: Bearer $(token)" "http://$api/api/status" >/dev/null; do sleep 0.05; done
}
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$node_pid/status"; }
running() { curl -sf -H "authorization: Bearer $(token)" "http://$api/api/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["vservers_by_state"].get("running", 0))'; }
address() { echo "127.1.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }

# Answers NFS NULL on every address; prints how many did.
cat >"$work/ping.py" <<'PY'
import socket, struct, sys
ok = 0
for addr in sys.argv[1:]:
    try:
        s = socket.create_connection((addr, 2049), timeout=2)
        body = struct.pack(">10I", 1, 0, 2, 100003, 3, 0, 0, 0, 0, 0)
        s.sendall(struct.pack(">I", len(body) | 0x80000000) + body)
        reply = s.recv(28, socket.MSG_WAITALL)
        ok += len(reply) == 28 and reply[24:28] == b"\0\0\0\0"
        s.close()
    except OSError:
        pass
print(ok)
PY
addresses=()
for i in $(seq 0 $((count - 1))); do
  addresses+=("$(address "$i")")
  mkdir -p "$work/volumes/v$i"
done

start_node
sleep 1
rss_empty=$(rss_kib)
echo "creating $count vservers through the API..." >&2
for i in $(seq 0 $((count - 1))); do
  printf '{"name":"v%d","addresses":["%s"],"volumes":[{"mount":"/data","path":"%s"}],"node":"n1"}\n' \
    "$i" "$(address "$i")" "$work/volumes/v$i"
done | xargs -P 32 -d '\n' -I{} curl -sf -H "authorization: Bearer $(token)" -o /dev/null -X POST -H 'content-type: application/json' -d '{}' "http://$api/api/vservers"
until [ "$(running)" -eq "$count" ]; do sleep 0.2; done
sleep 3
rss_full=$(rss_kib)

echo "restarting the node..." >&2
kill -TERM "$node_pid"; wait "$node_pid" || true
t0=$(date +%s.%N)
start_node
until [ "$(running)" -eq "$count" ]; do sleep 0.05; done
t_running=$(date +%s.%N)
answered=$(python3 "$work/ping.py" "${addresses[@]}")
t_serving=$(date +%s.%N)
# Steady state: all serving, monitors running, nothing else going on.
sleep 15
rss_idle=$(rss_kib)

awk -v n="$count" -v e="$rss_empty" -v f="$rss_full" -v i="$rss_idle" -v t0="$t0" -v tr="$t_running" -v ts="$t_serving" -v a="$answered" 'BEGIN {
  printf "vservers:                     %d\n", n
  printf "node RSS, no vservers:        %.1f MiB\n", e / 1024
  printf "node RSS right after creating them through the API: %.1f MiB (%.1f KiB per vserver)\n", f / 1024, (f - e) / n
  printf "node RSS, restarted, %d idle vservers: %.1f MiB\n", n, i / 1024
  printf "memory per idle vserver:      %.1f KiB  (target <= 64 KiB)\n", (i - e) / n
  printf "restart to all running:       %.2f s\n", tr - t0
  printf "restart to all answering:     %.2f s  (%d of %d answered NULL; target: all within 5 s)\n", ts - t0, a, n
}'
