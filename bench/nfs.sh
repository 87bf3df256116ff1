#!/usr/bin/env bash
# vnas's data path against NFS-Ganesha (VFS backend) and the raw disk, in one
# run on this machine. Not a test: it prints figures and ratios.
#
#   bench/nfs.sh [--mib 512] [--files 2000] [--calls 5000] [--clients 4] [--runs 3] [--v4]
#
# With --v4, bench/nfs4.sh follows: NFSv4.1 as the Linux kernel client in
# the QEMU guest sees it, against our v3 and NFS-Ganesha's v4.1 and v3
# (libnfs's NFSv4.0 cannot write 1 MiB blocks: its encoder refuses them).
#
# Both servers export a fresh directory on the same filesystem (under
# target/bench), listen on loopback only, and are driven by the same libnfs
# client, our tools/nfsprobe.c (built here):
#   - latency: one client waiting for each reply, --calls calls each of
#     GETATTR of an open file, stat by path (LOOKUPs + GETATTR), a 16-byte
#     READ; the median of each;
#   - sequential write (with the final COMMIT) and read of --mib MiB in
#     1 MiB calls, 8 in flight; the server's CPU time (user + system, from
#     /proc/PID/stat) per GiB moved;
#   - --clients clients at once, each writing then reading its share;
#   - create, stat and remove of --files small files; the server's CPU time
#     per 1,000 of these operations.
# Runs alternate between the servers, each after the filesystem has settled;
# the median of each figure over the runs is reported, with every run's
# figure. On a shared VM disk single runs vary a lot: use --runs 5 or more.
set -euo pipefail
cd "$(dirname "$0")/.."

mib=512 files=2000 calls=5000 clients=4 runs=3 v4=0
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) mib=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --v4) v4=1; shift ;;
    *) echo "usage: bench/nfs.sh [--mib N] [--files N] [--calls N] [--clients N] [--runs N] [--v4]" >&2; exit 2 ;;
  esac
done

need=()
for pkg in nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-dev libnfs-utils gcc; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q -p vnas
mkdir -p target/tools
cc -O2 -o target/tools/nfsprobe tools/nfsprobe.c -lnfs
probe=$(realpath target/tools/nfsprobe)

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
# The same trust as the Ganesha export below: root not squashed, any port.
target/release/vnas serve --listen 127.0.0.1:$vnas_port \
  --export "/bench=$work/vnas:no_root_squash,insecure" >"$work/vnas.log" 2>&1 &
vnas_pid=$!
pids+=("$vnas_pid")

if ! pgrep -x rpcbind >/dev/null; then
  rpcbind -w
  pids+=("$(pgrep -x rpcbind)")
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
ganesha_pid=$!
pids+=("$ganesha_pid")

vnas_url="nfs://127.0.0.1/bench?nfsport=$vnas_port&mountport=$vnas_port"
ganesha_url="nfs://127.0.0.1$work/ganesha?nfsport=$ganesha_port&mountport=$ganesha_mnt"
vnas_dir=$work/vnas ganesha_dir=$work/ganesha
for url in "$vnas_url" "$ganesha_url"; do
  for _ in $(seq 60); do
    nfs-ls "$url" >/dev/null 2>&1 && continue 2
    sleep 0.5
  done
  echo "server at $url did not answer within 30 s" >&2
  exit 1
done

results="$work/results.txt"
: >"$results"
put() { echo "$1 $2 $3" >>"$results"; } # server figure value
value() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
now() { date +%s.%N; }
settle() {
  # Let the filesystem finish the previous run's writeback and discards
  # (ext4 commits every 5 s), so one server does not pay for the other.
  sync
  sleep 6
}

# CPU seconds the server spent since $1 ticks, per GiB of $2 MiB.
per_gib() { awk -v a="$1" -v b="$(ticks "$pid")" -v hz="$hz" -v mib="$2" 'BEGIN { print (b - a) / hz / (mib / 1024) }'; }

measure() { # server
  local server=$1 url dir pid
  url=${server}_url dir=${server}_dir pid=${server}_pid
  url=${!url} dir=${!dir} pid=${!pid}
  local line t0 c0
  line=$("$probe" lat "$url" "$calls")
  for op in getattr stat_path read16; do
    put "$server" "lat_$op" "$(echo "$line" | grep "op=$op " | value median_us)"
  done

  settle
  c0=$(ticks "$pid")
  put "$server" write "$("$probe" write "$url" /seq.bin "$mib" 8 | value mb_s)"
  put "$server" write_cpu "$(per_gib "$c0" "$mib")"
  c0=$(ticks "$pid")
  put "$server" read "$("$probe" read "$url" /seq.bin "$mib" 8 | value mb_s)"
  put "$server" read_cpu "$(per_gib "$c0" "$mib")"
  rm -f "$dir/seq.bin"

  settle
  local share=$((mib / clients))
  for op in write read; do
    c0=$(ticks "$pid") t0=$(now)
    local jobs=()
    for i in $(seq "$clients"); do
      "$probe" "$op" "$url" "/client$i.bin" "$share" 8 >/dev/null &
      jobs+=($!)
    done
    for job in "${jobs[@]}"; do wait "$job"; done
    put "$server" "${op}_x$clients" "$(awk -v t0="$t0" -v t1="$(now)" -v m=$((share * clients)) 'BEGIN { print m * 1.048576 / (t1 - t0) }')"
    put "$server" "${op}_x${clients}_cpu" "$(per_gib "$c0" $((share * clients)))"
  done
  rm -f "$dir"/client*.bin

  settle
  c0=$(ticks "$pid")
  line=$("$probe" meta "$url" "$files")
  for op in create stat remove; do put "$server" "$op" "$(echo "$line" | value "${op}_ops_s")"; done
  put "$server" meta_cpu "$(awk -v a="$c0" -v b="$(ticks "$pid")" -v hz="$hz" -v n="$files" 'BEGIN { print (b - a) / hz * 1000 / (3 * n) * 1000 }')"
}

disk() {
  rm -f "$work/raw/file"
  dd if=/dev/zero of="$work/raw/file" bs=1M count="$mib" conv=fsync 2>&1 |
    awk '/copied/ { print "disk write", $(NF-1) * ($NF == "GB/s" ? 1000 : 1) }' >>"$results"
  rm -f "$work/raw/file"
}

echo "vnas vs NFS-Ganesha: latency ($calls calls), $mib MiB sequential, $clients clients, $files files; $runs runs" >&2
for run in $(seq "$runs"); do
  echo "run $run/$runs" >&2
  disk
  # Alternate which server goes first.
  if [ $((run % 2)) -eq 1 ]; then order="vnas ganesha"; else order="ganesha vnas"; fi
  for server in $order; do measure "$server"; done
done

figures() { # server figure -> every run's figure, sorted
  awk -v s="$1" -v f="$2" '$1 == s && $2 == f { print $3 }' "$results" | sort -g
}
median() {
  figures "$1" "$2" | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
all() { figures "$1" "$2" | awk '{ printf "%s%.3g", (NR > 1 ? " " : ""), $1 }'; }

printf '\n%-34s %10s %10s %9s   %s\n' "figure (median of $runs)" "vnas" "ganesha" "vnas/gan" "every run: vnas | ganesha"
row() { # figure label
  local v g
  v=$(median vnas "$1") g=$(median ganesha "$1")
  printf '%-34s %10.4g %10.4g %8.2fx   [%s] | [%s]\n' "$2" "$v" "$g" \
    "$(awk -v a="$v" -v b="$g" 'BEGIN { print (b > 0) ? a / b : 0 }')" "$(all vnas "$1")" "$(all ganesha "$1")"
}
row lat_getattr "GETATTR latency (us)"
row lat_stat_path "stat by path latency (us)"
row lat_read16 "16-byte READ latency (us)"
row write "write + COMMIT (MB/s)"
row read "read (MB/s)"
row write_cpu "server CPU per GiB written (s)"
row read_cpu "server CPU per GiB read (s)"
row "write_x$clients" "$clients clients write (MB/s)"
row "read_x$clients" "$clients clients read (MB/s)"
row "write_x${clients}_cpu" "$clients clients CPU per GiB written (s)"
row "read_x${clients}_cpu" "$clients clients CPU per GiB read (s)"
row create "create (ops/s)"
row stat "stat (ops/s)"
row remove "remove (ops/s)"
row meta_cpu "CPU per 1,000 metadata ops (ms)"
d=$(median disk write) v=$(median vnas write)
printf '%-34s %10.4g %10s %8.2fx   (vnas write / disk)\n' "disk dd + fsync (MB/s)" "$d" "" "$(awk -v a="$v" -v b="$d" 'BEGIN { print a / b }')"

if [ "$v4" = 1 ]; then
  cleanup
  trap - EXIT
  echo
  bench/nfs4.sh --runs "$runs"
fi
