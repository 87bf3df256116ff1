#!/usr/bin/env bash
# Failover at scale: 8 node processes, 1,000 vservers, 250 of them on n1;
# n1 is killed (SIGKILL) and the time until all 250 run on other nodes is
# measured, on the directory store and on a real three-member etcd (started
# here, loopback ports). Not a test.
#
#   bench/failover-scale.sh [--nodes 8] [--vservers 1000] [--victim 250] [--stores "dir etcd"]
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=8 vservers=1000 victim=250 stores="dir etcd"
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --vservers) vservers=$2; shift 2 ;;
    --victim) victim=$2; shift 2 ;;
    --stores) stores=$2; shift 2 ;;
    *) echo "usage: bench/failover-scale.sh [--nodes N] [--vservers N] [--victim N] [--stores \"dir etcd\"]" >&2; exit 2 ;;
  esac
done

need=()
for pkg in etcd-server protobuf-compiler curl python3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p vnas --features etcd
vnas=$(realpath target/release/vnas)
work=$(realpath target)/bench-failover-scale
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

address() { echo "127.4.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }
token() { awk '!/^#/ { print $NF; exit }' "$VNAS_TOKEN_FILE" 2>/dev/null; }
api() { curl -sf -H "authorization: Bearer $(token)" "$@"; }

start_etcd() { # dir; sets $endpoints
  local dir=$1 initial=""
  for i in 1 2 3; do
    initial+="m$i=http://127.0.0.1:$((23791 + i * 2)),"
  done
  for i in 1 2 3; do
    local client=$((23790 + i * 2)) peer=$((23791 + i * 2))
    etcd --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "${initial%,}" --initial-cluster-token "bench-$$" --initial-cluster-state new \
      --heartbeat-interval 50 --election-timeout 500 >"$dir/m$i.log" 2>&1 &
    pids+=($!)
  done
  endpoints="127.0.0.1:23792,127.0.0.1:23794,127.0.0.1:23796"
}

run() { # store kind
  local kind=$1 dir="$work/$1" store
  rm -rf "$dir"
  mkdir -p "$dir/volumes"
  export VNAS_TOKEN_FILE=$dir/admin.token
  if [ "$kind" = etcd ]; then
    start_etcd "$dir"
    store="etcd://$endpoints/bench"
    sleep 2
  else
    store=$dir/store
    mkdir -p "$store"
  fi
  local node_pid=()
  for n in $(seq 1 "$nodes"); do
    VNAS_LOG=warn "$vnas" node run --name "n$n" --store "$store" --api "127.0.0.1:$((17700 + n))" \
      >>"$dir/n$n.log" 2>&1 &
    node_pid[n]=$!
    pids+=($!)
  done
  for n in $(seq 1 "$nodes"); do
    until api "http://127.0.0.1:$((17700 + n))/api/status" >/dev/null; do sleep 0.1; done
  done
  echo "$kind: creating $vservers vservers, $victim of them on n1..." >&2
  for i in $(seq 0 $((vservers - 1))); do
    mkdir -p "$dir/volumes/v$i"
    if [ "$i" -lt "$victim" ]; then node=n1; else node="n$(( 2 + i % (nodes - 1) ))"; fi
    printf '{"name":"v%d","addresses":["%s"],"volumes":[{"mount":"/data","path":"%s"}],"node":"%s"}\n' \
      "$i" "$(address "$i")" "$dir/volumes/v$i" "$node"
  done | xargs -P 16 -d '\n' -I{} curl -sf -H "authorization: Bearer $(token)" -o /dev/null -X POST \
    -H 'content-type: application/json' -d '{}' "http://127.0.0.1:17702/api/vservers"
  local count='import json,sys; v=json.load(sys.stdin); print(sum(1 for x in v if x["state"]=="running" and x["node"]!="n1" and int(x["name"][1:])<'"$victim"'), sum(1 for x in v if x["state"]=="running"))'
  until [ "$(api http://127.0.0.1:17702/api/vservers | python3 -c "$count" | awk '{print $2}')" -eq "$vservers" ]; do sleep 0.5; done
  sleep 2
  echo "$kind: killing n1" >&2
  kill -9 "${node_pid[1]}"
  local t0 moved
  t0=$(date +%s.%N)
  while true; do
    moved=$(api http://127.0.0.1:17702/api/vservers | python3 -c "$count" | awk '{print $1}')
    [ "$moved" -eq "$victim" ] && break
    sleep 0.05
  done
  awk -v k="$kind" -v t0="$t0" -v t1="$(date +%s.%N)" -v n="$victim" -v v="$vservers" -v m="$nodes" \
    'BEGIN { printf "%-5s store: %d nodes, %d vservers; all %d of the killed node served elsewhere %.2f s after SIGKILL (target: 5 s)\n", k, m, v, n, t1 - t0 }'
  for n in $(seq 2 "$nodes"); do kill -TERM "${node_pid[n]}" 2>/dev/null || true; done
  for n in $(seq 2 "$nodes"); do wait "${node_pid[n]}" 2>/dev/null || true; done
  cleanup
  pids=()
}

for kind in $stores; do run "$kind"; done
