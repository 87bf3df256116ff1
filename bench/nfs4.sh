#!/usr/bin/env bash
# NFSv4.1 as the Linux kernel client sees it: vnas's v4.1 against its own
# v3 and against NFS-Ganesha's v4.1 and v3 (VFS backend), in one run, the
# same guest mounting all four. Not a test: it prints figures and ratios.
#
#   bench/nfs4.sh [--mib 64] [--files 200] [--runs 3]
#
# The client is the kernel in a QEMU guest (scripts/guest.sh locks on the
# user-mode network: TCG emulation, no KVM here), so absolute figures are
# bound by the emulated CPU; the ratios between servers, measured by the
# same client in the same run, are what to read. Per mount and run:
#   - write: dd of --mib MiB in 1 MiB blocks with fsync; read: the same
#     file after the guest's caches are dropped; MB/s seen by the guest;
#   - metadata: --files files created (touch), listed with their
#     attributes (ls -l after dropping caches), removed; ops/s;
#   - the server's CPU time (user + system, /proc/PID/stat) per GiB written
#     and read, and per 1,000 metadata operations.
# Runs rotate which mount goes first; the median of each figure is shown
# with every run's figure.
set -euo pipefail
cd "$(dirname "$0")/.."

mib=64 files=200 runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) mib=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: bench/nfs4.sh [--mib N] [--files N] [--runs N]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench/nfs4.sh: needs root (the guest kit, Ganesha)" >&2; exit 1; }

need=()
for pkg in nfs-ganesha nfs-ganesha-vfs rpcbind; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -q -p vnas
kit=$(realpath target)/tmp/guestkit
bash scripts/guest.sh build "$kit" >&2

work=$(realpath target)/bench-nfs4
rm -rf "$work"
mkdir -p "$work/vnas" "$work/ganesha"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

vnas_port=20490 ganesha_port=20491 ganesha_mnt=20492
# The same trust for both: root not squashed, any port (the guest's
# user-mode network connects from unreserved host ports).
target/release/vnas serve --nfs4 --listen 127.0.0.1:$vnas_port \
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
    Protocols = 3, 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
}
NFSV4 { Graceless = true; Minor_Versions = 1, 2; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
    Export_Id = 1;
    Path = $work/ganesha;
    Pseudo = /bench;
    Protocols = 3, 4;
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
sleep 2

# The guest: vnas's v4.1 at /mnt by the script itself, then the others.
coproc GUEST { MOUNT_OPTS="vers=4.1,port=$vnas_port" exec bash scripts/guest.sh locks "$kit" user 10.0.2.2 /bench 7200; }
pids+=("$GUEST_PID")
# guest_line PREFIX: the next console line starting with PREFIX.
guest_line() {
  local line
  while IFS= read -r -t 600 line <&"${GUEST[0]}"; do
    [[ $line == "$1"* ]] && { printf '%s\n' "$line"; return 0; }
  done
  echo "bench/nfs4.sh: the guest said no '$1'" >&2
  exit 1
}
# gsh CMD: run CMD in the guest; its output lines (without the prefix).
gsh() {
  printf 'sh %s\n' "$1" >&"${GUEST[1]}"
  local line
  while IFS= read -r -t 900 line <&"${GUEST[0]}"; do
    case $line in
      "guest: sh done status=0") return 0 ;;
      "guest: sh done status="*) echo "bench/nfs4.sh: guest: $1 failed" >&2; exit 1 ;;
      "guest: sh: "*) printf '%s\n' "${line#guest: sh: }" ;;
    esac
  done
  echo "bench/nfs4.sh: no answer from the guest to: $1" >&2
  exit 1
}
guest_line "guest: ready" >/dev/null
gsh "mknod /dev/zero c 1 5; mkdir -p /v3 /g41 /g3"
gsh "mount -i -t nfs -o vers=3,nolock,port=$vnas_port,mountport=$vnas_port,mountproto=tcp,addr=10.0.2.2 10.0.2.2:/bench /v3"
gsh "mount -i -t nfs -o vers=4.1,port=$ganesha_port,addr=10.0.2.2 10.0.2.2:/bench /g41"
gsh "mount -i -t nfs -o vers=3,nolock,port=$ganesha_port,mountport=$ganesha_mnt,mountproto=tcp,addr=10.0.2.2 10.0.2.2:$work/ganesha /g3"
gsh "grep -E ' /(mnt|v3|g41|g3) ' /proc/mounts" >&2

results="$work/results.txt"
: >"$results"
put() { echo "$1 $2 $3" >>"$results"; } # mount figure value
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
cpu() { awk -v a="$1" -v b="$(ticks "$2")" -v hz="$hz" -v per="$3" 'BEGIN { print (b - a) / hz / per }'; }

# Timings come from the guest's clock ($EPOCHREALTIME, microseconds).
t_us='t=$EPOCHREALTIME; echo ${t%.*}${t#*.}'

measure() { # mount point, name, server pid
  local m=$1 name=$2 pid=$3 c0 out
  sync; sleep 2
  c0=$(ticks "$pid")
  out=$(gsh "a=\$($t_us); dd if=/dev/zero of=$m/seq.bin bs=1048576 count=$mib conv=fsync 2>/dev/null; b=\$($t_us); echo \$((b - a))")
  put "$name" write "$(awk -v us="$out" -v m="$mib" 'BEGIN { print m * 1.048576 / (us / 1e6) }')"
  put "$name" write_cpu "$(cpu "$c0" "$pid" "$(awk -v m="$mib" 'BEGIN { print m / 1024 }')")"
  c0=$(ticks "$pid")
  out=$(gsh "echo 3 > /proc/sys/vm/drop_caches; a=\$($t_us); dd if=$m/seq.bin of=/dev/null bs=1048576 2>/dev/null; b=\$($t_us); echo \$((b - a))")
  put "$name" read "$(awk -v us="$out" -v m="$mib" 'BEGIN { print m * 1.048576 / (us / 1e6) }')"
  put "$name" read_cpu "$(cpu "$c0" "$pid" "$(awk -v m="$mib" 'BEGIN { print m / 1024 }')")"
  gsh "rm -f $m/seq.bin" >/dev/null
  sync; sleep 2
  c0=$(ticks "$pid")
  out=$(gsh "mkdir $m/meta && cd $m/meta && a=\$($t_us) && i=0 && while [ \$i -lt $files ]; do touch f\$i; i=\$((i+1)); done && b=\$($t_us) && echo 3 > /proc/sys/vm/drop_caches && ls -l >/dev/null && c=\$($t_us) && rm -f f* && d=\$($t_us) && cd / && rmdir $m/meta && echo \$((b - a)) \$((c - b)) \$((d - c))")
  read -r create list remove <<<"$out"
  put "$name" create "$(awk -v us="$create" -v n="$files" 'BEGIN { print n / (us / 1e6) }')"
  put "$name" list "$(awk -v us="$list" -v n="$files" 'BEGIN { print n / (us / 1e6) }')"
  put "$name" remove "$(awk -v us="$remove" -v n="$files" 'BEGIN { print n / (us / 1e6) }')"
  put "$name" meta_cpu "$(cpu "$c0" "$pid" "$(awk -v n="$files" 'BEGIN { print 3 * n / 1000 }')")"
}

mounts=("/mnt vnas41 $vnas_pid" "/v3 vnas3 $vnas_pid" "/g41 ganesha41 $ganesha_pid" "/g3 ganesha3 $ganesha_pid")
echo "kernel client (TCG guest): $mib MiB, $files files; $runs runs" >&2
for run in $(seq "$runs"); do
  echo "run $run/$runs" >&2
  for i in 0 1 2 3; do
    # shellcheck disable=SC2086
    measure ${mounts[$(((i + run) % 4))]}
  done
done
gsh "umount /v3 /g41 /g3" >/dev/null
printf 'quit\n' >&"${GUEST[1]}"

figures() { awk -v s="$1" -v f="$2" '$1 == s && $2 == f { print $3 }' "$results" | sort -g; }
median() {
  figures "$1" "$2" | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
all() { figures "$1" "$2" | awk '{ printf "%s%.3g", (NR > 1 ? " " : ""), $1 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > 0) ? a / b : 0 }'; }

printf '\n%-30s %9s %9s %9s %9s %8s %8s\n' "figure (median of $runs)" "vnas 4.1" "vnas v3" "gan. 4.1" "gan. v3" "4.1/v3" "4.1/gan"
row() { # figure label
  local a b c d
  a=$(median vnas41 "$1") b=$(median vnas3 "$1") c=$(median ganesha41 "$1") d=$(median ganesha3 "$1")
  printf '%-30s %9.4g %9.4g %9.4g %9.4g %7.2fx %7.2fx\n' "$2" "$a" "$b" "$c" "$d" "$(ratio "$a" "$b")" "$(ratio "$a" "$c")"
  printf '%-30s   every run: vnas 4.1 [%s] v3 [%s] | ganesha 4.1 [%s] v3 [%s]\n' "" \
    "$(all vnas41 "$1")" "$(all vnas3 "$1")" "$(all ganesha41 "$1")" "$(all ganesha3 "$1")"
}
row write "write + fsync (MB/s)"
row read "read, caches dropped (MB/s)"
row write_cpu "server CPU per GiB written (s)"
row read_cpu "server CPU per GiB read (s)"
row create "create (files/s)"
row list "ls -l (files/s)"
row remove "remove (files/s)"
row meta_cpu "CPU per 1,000 metadata ops (s)"
echo "(higher is better for MB/s and ops/s; lower for CPU. Ratios: vnas 4.1 against its own v3 and against Ganesha's 4.1.)"
