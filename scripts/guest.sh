#!/usr/bin/env bash
# The Linux kernel NFS client in a small QEMU guest on the test bed.
#
#   scripts/guest.sh build DIR
#       Prepare a kernel and an initramfs in DIR (a cache: work already done
#       is skipped). LINUX_IMAGE=linux-image-VERSION-cloud-amd64 picks the
#       kernel package (default: the newest cloud-amd64 one apt knows).
#       For locks, the initramfs also holds rpcbind, rpc.statd, sm-notify
#       rpcinfo and mount.nfs from Debian's rpcbind and nfs-common packages
#       (downloaded and unpacked, not installed) with every library they
#       load, the files they read (/etc/passwd with _rpc and statd,
#       netconfig, services, hosts, an empty resolv.conf), and
#       tools/locker.c built static. The initramfs is rebuilt when this
#       script or locker.c is newer than it.
#   scripts/guest.sh run DIR BED VIP EXPORT SECONDS [INTERVAL_MS]
#       Boot the guest on the tap g1 of bed BED (see scripts/bed.sh; BED
#       "user" in locks mode: QEMU's user-mode network, where VIP 10.0.2.2
#       is the host's 127.0.0.1, and no bed is needed), mount
#       VIP:EXPORT over NFSv3/TCP (hard, nolock, no port options: the kernel
#       asks portmap on VIP:111 itself), then for SECONDS, every INTERVAL_MS
#       (default 20): write 4 KiB with fsync, read it back with O_DIRECT,
#       compare. Prints the guest's console; the guest prints
#         guest: mounted                      (once mounted, before the loop)
#         guest: gap_ms=G at=T                (each gap over GAP_MS, live)
#         guest: error seq=N op=OP at=T       (each failed round trip)
#         guest: round_trips=N errors=E max_gap_ms=G   (at the end)
#       A gap is the time between two successive successful round trips
#       (so it includes INTERVAL_MS and the round trip itself); T is seconds
#       since the loop started. Exit status 0 only if errors=0.
#   scripts/guest.sh locks DIR BED VIP EXPORT SECONDS
#       NFS locks as a distribution takes them, driven over the console.
#       Boots the guest as run does, with QEMU's stdin taken from this
#       script's stdin; starts rpcbind, then rpc.statd in it (Debian's, see
#       build); mounts VIP:EXPORT at /mnt with vers=3,proto=tcp,hard,addr=VIP
#       (no nolock: the kernel's lockd takes NLM locks and asks statd to
#       monitor the server); starts two lock owners A and B (tools/locker.c,
#       one process each, each reading its own FIFO). The guest prints
#         guest: mounted
#         guest: ready                        (send commands only after it)
#       then reads one command a line from stdin (the console does not echo):
#         A CMD | B CMD   CMD to that locker: open PATH, lock r|w START LEN,
#                         lockw r|w START LEN, unlock START LEN,
#                         test r|w START LEN, flock sh|ex|un [nb], close
#                         (tools/locker.c); it answers "guest: A granted
#                         ms=12", "guest: B denied ms=3", "guest: B waiting"
#                         then later "guest: B granted ms=T", "guest: A ok
#                         ms=T", "guest: A free", "guest: A held type=w
#                         start=0 len=0 pid=P", "guest: A error TEXT ms=T"
#         notify          the guest tells the servers it has rebooted:
#                         sm-notify -f -d moves statd's records of monitored
#                         servers (/var/lib/nfs/sm, one per server lockd
#                         locked on, named by its address) to sm.bak, raises
#                         the NSM state in /var/lib/nfs/state by 2 (it stays
#                         odd) and gives it to the kernel, then to each
#                         server sends, over UDP from a reserved port, a
#                         PMAP GETPORT to port 111 for NSM (100024 v1 UDP)
#                         and SM_NOTIFY (proc 6) with mon_name = the name
#                         lockd gave statd (the guest's hostname, GUEST_NAME)
#                         and the new state; retried (2 s, doubling to 120 s)
#                         until answered, 15 min at most. The server's lock
#                         manager should then drop every lock of this client,
#                         while lockd and the lockers here still believe they
#                         hold theirs. The records are put back afterwards, so
#                         a later notify sends again. Prints "guest: notify:
#                         LINE" (sm-notify's log) and, when done,
#                         "guest: notify done status=N"; commands go on
#                         being read meanwhile.
#         sh CMD          runs sh -c CMD (stdin /dev/null), waits for it,
#                         prints its output as "guest: sh: LINE", then
#                         "guest: sh done status=N"
#         quit            prints "guest: quit" and powers off
#       After SECONDS the guest prints "guest: timeout" and powers off.
#       Logs in the guest: /tmp/rpcbind.log, /tmp/statd.log (sh cat ...).
#       Exit status 0 only if the guest got ready and ended with quit.
#       Between A and B the guest's kernel decides first: lockd checks its
#       own lock table before asking the server, so B's "denied" never
#       reaches the server, and a waiting B wakes at A's local unlock and
#       only then sends its LOCK: mostly after A's UNLOCK, so the server
#       grants it at once; only when it overtakes the UNLOCK does the server
#       answer BLOCKED and grant it by a GRANTED callback. The callback is
#       exercised for sure when the conflict is the server's own: a lock
#       held on the server side or by another client. The guest keeps no state across boots (nothing tells the
#       server it rebooted): a server that outlived an earlier guest may
#       send its first GRANTED on a connection to that guest's lockd, where
#       it is lost, and the client then asks again only after 30 s.
#
# Options (environment): GUEST_IP (default 198.18.0.201/16), GAP_MS (gap
# report threshold, default 100), KMSG=1 (show kernel notices such as "nfs:
# server ... not responding"), CONSOLE_LOG=FILE (also keep the console there),
# GUEST_NAME (the guest's hostname in locks mode, default "guest"),
# MOUNT_OPTS (the mount's options before addr=VIP, no spaces; default
# vers=3,proto=tcp,hard plus nolock in run mode; e.g. vers=4.1 or none
# at all as "rw" for what the kernel picks itself).
#
# Why a guest: the machines here run a kernel without an NFS client, and KVM
# does not work (its emulator stops stock guest kernels), so this is TCG emulation:
# boot takes a few seconds, each round trip some milliseconds. Needs root.
set -euo pipefail
shopt -s extglob

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

log() { echo "guest.sh: $*" >&2; }

# Install what is missing, quietly; nothing if all is there.
ensure_packages() {
    local missing=() pkg
    for pkg in qemu-system-x86 busybox-static cpio kmod xz-utils zstd gcc libc6-dev; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The newest signed cloud kernel package apt knows (not -dbg, -unsigned or
# the meta-packages, which have no version in their name).
newest_image() {
    apt-cache search --names-only '^linux-image-[0-9].*-cloud-amd64$' |
        awk '{print $1}' | sort -V | tail -n 1
}

# The guest's /init, run by busybox sh. Parameters come from the kernel
# command line as environment: guest_ip, vip, export, seconds, interval_ms,
# gap_ms, kmsg; mode=locks (with guest_name) hands over to /locks.sh once the
# network is up.
write_init() {
    cat >"$1" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /mnt /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys

say() { echo "guest: $*"; }
halt() { sync; poweroff -f; sleep 5; }

# Modules in the order modprobe --show-depends gave at build time.
while read -r m; do
    insmod "/lib/modules/$m" || { say "insmod $m failed"; halt; }
done </modules.order
# Kernel notices (NFS "not responding"/"OK") only if asked: they share the
# console with our lines.
[ "${kmsg:-0}" = 1 ] && echo 5 >/proc/sys/kernel/printk

ip link set lo up
ip addr add "$guest_ip" dev eth0
ip link set eth0 up

# scripts/guest.sh locks: its own mount and command loop; it ends with halt.
[ "${mode:-run}" = locks ] && . /locks.sh

# A text mount(2) with no port options: the kernel asks rpcbind on the VIP
# for the NFS and MOUNT ports and does the MOUNT call itself. (This busybox
# has no NFS support of its own, so its mount passes -o through as text; -i:
# no mount helper.) The vserver may still be starting: retry a little.
opts=${mount_opts:-vers=3,proto=tcp,nolock,hard},addr=$vip
tries=0
until mount -i -t nfs -o "$opts" "$vip:$export" /mnt; do
    tries=$((tries + 1))
    if [ "$tries" -ge 10 ]; then say "mount failed"; halt; fi
    sleep 1
done
say "mounted"

# Microseconds since the epoch from $EPOCHREALTIME (busybox date has no %N);
# ash arithmetic is 64-bit.
now_us() { t=$EPOCHREALTIME; now=${t%.*}${t#*.}; }
ms3() { printf '%d.%03d' $(($1 / 1000000)) $(($1 / 1000 % 1000)); }

file=/mnt/guest-$$.dat
interval_us=$((${interval_ms:-20} * 1000))
gap_us=$((${gap_ms:-100} * 1000))
now_us; start=$now; end=$((start + seconds * 1000000)); last=$start
n=0; errors=0; max_gap=0; seq=0
while [ "$now" -lt "$end" ]; do
    seq=$((seq + 1))
    # 4 KiB depending on seq: a 16-byte unit doubled 8 times, all in shell
    # builtins (a fork costs milliseconds under TCG).
    u="<seq=$seq>"
    while [ ${#u} -lt 16 ]; do u="$u."; done
    for _ in 1 2 3 4 5 6 7 8; do u=$u$u; done
    printf '%s' "$u" >/tmp/w
    op=""
    if ! dd if=/tmp/w of="$file" bs=4096 conv=fsync 2>/dev/null; then
        op=write
    # O_DIRECT: the read goes to the server, not the page cache. count=1:
    # one READ; a second one, at end of file, is not what is measured here.
    elif ! dd if="$file" bs=4096 count=1 iflag=direct 2>/dev/null >/tmp/r; then
        op=read
    elif ! cmp -s /tmp/w /tmp/r; then
        op=compare
    fi
    now_us
    if [ -n "$op" ]; then
        errors=$((errors + 1))
        say "error seq=$seq op=$op at=$(ms3 $((now - start)))"
    else
        n=$((n + 1))
        gap=$((now - last)); last=$now
        [ "$gap" -gt "$max_gap" ] && max_gap=$gap
        [ "$gap" -gt "$gap_us" ] && say "gap_ms=$((gap / 1000)) at=$(ms3 $((now - start)))"
    fi
    usleep "$interval_us"
    now_us
done
rm -f "$file"
say "round_trips=$n errors=$errors max_gap_ms=$((max_gap / 1000))"
halt
INIT
    chmod 755 "$1"
}

# /locks.sh, sourced by /init in mode locks (network up, modules loaded,
# say and halt defined). Parameters as for /init plus guest_name.
write_locks_init() {
    cat >"$1" <<'LOCKS'
# The console is our command channel: no echo of what the caller writes.
stty -echo
# The firmware's last line may lack its end: ours begin on a line of their own.
echo
# The deadline first, whatever happens next.
( sleep "$seconds"; say "timeout"; halt ) &

# lockd gives the server this name (NLM caller_name, and my_name to statd,
# which sm-notify sends back as mon_name). statd looks names and addresses
# up: /etc/hosts answers, and the empty resolv.conf makes DNS fail at once.
name=${guest_name:-guest}
hostname "$name"
echo "${guest_ip%/*} $name" >>/etc/hosts
grep -q "^$vip[[:space:]]" /etc/hosts || echo "$vip nfs-server" >>/etc/hosts

# wait_for TENTHS CMD...: until CMD succeeds, polling every 0.1 s.
wait_for() {
    n=$1; shift
    until "$@" 2>/dev/null; do
        n=$((n - 1)); [ "$n" -gt 0 ] || return 1
        usleep 100000
    done
}
statd_registered() { rpcinfo -p 127.0.0.1 | grep -q ' 100024 '; }
# failed WHAT LOG...: say so with the daemons' logs, power off.
failed() {
    say "$1"; shift
    cat "$@" | while IFS= read -r l; do say "$l"; done
    halt
}

# As Debian starts them: rpcbind (-w: warm start; it drops to _rpc, so the
# root of the initramfs must be 0755), then statd (it drops to the owner of
# /var/lib/nfs/sm, statd, and runs sm-notify once, which finds nothing to
# send at boot).
rpcbind -f -w >/tmp/rpcbind.log 2>&1 &
wait_for 300 test -S /run/rpcbind.sock || failed "rpcbind did not start" /tmp/rpcbind.log
rpc.statd -F -d >/tmp/statd.log 2>&1 &
wait_for 300 statd_registered || failed "rpc.statd did not register" /tmp/statd.log /tmp/rpcbind.log

# No nolock: lockd starts with the mount and registers with our rpcbind.
opts=${mount_opts:-vers=3,proto=tcp,hard},addr=$vip
tries=0
until mount -i -t nfs -o "$opts" "$vip:$export" /mnt; do
    tries=$((tries + 1))
    if [ "$tries" -ge 10 ]; then say "mount failed"; halt; fi
    sleep 1
done
say "mounted"

# Two lock owners, each its own process reading its own FIFO; their lines
# go to the console prefixed like ours. The FIFOs stay open for writing in
# this shell (fds 3 and 4), so a locker sees no end of input between
# commands.
mkdir -p /tmp/locks
for l in A B; do
    mkfifo "/tmp/locks/$l"
    locker "$l" <"/tmp/locks/$l" 2>&1 | while IFS= read -r r; do say "$r"; done &
done
exec 3>/tmp/locks/A 4>/tmp/locks/B

# notify: as after a reboot of this client (see scripts/guest.sh). statd
# keeps monitoring the servers in memory, so their records go back to sm/
# once sm-notify is done: a later notify sends again.
notify() {
    rm -rf /tmp/sm.keep
    mkdir -p /tmp/sm.keep
    cp -p /var/lib/nfs/sm/* /tmp/sm.keep/ 2>/dev/null
    (
        { sm-notify -f -d 2>&1; echo "status=$?"; } | while IFS= read -r l; do
            case $l in
                status=*)
                    cp -n -p /tmp/sm.keep/* /var/lib/nfs/sm/ 2>/dev/null
                    say "notify done $l" ;;
                *) say "notify: $l" ;;
            esac
        done
    ) 3>&- 4>&- &
}

run_sh() {
    sh -c "$1" </dev/null >/tmp/sh.out 2>&1 3>&- 4>&-
    st=$?
    while IFS= read -r l; do say "sh: $l"; done </tmp/sh.out
    say "sh done status=$st"
}

say "ready"
while IFS= read -r line; do
    case $line in
        "A "*) printf '%s\n' "${line#A }" >&3 ;;
        "B "*) printf '%s\n' "${line#B }" >&4 ;;
        notify) notify ;;
        "sh "*) run_sh "${line#sh }" ;;
        quit) say "quit"; halt ;;
        "") ;;
        *) say "unknown command: $line" ;;
    esac
done
say "console closed"
halt
LOCKS
}

# The Debian package of a library the lock daemons load (Debian 12 names),
# for a host that lacks it.
lib_package() {
    case $1 in
        libtirpc.so.3) echo libtirpc3 ;;
        libwrap.so.0) echo libwrap0 ;;
        libnsl.so.2) echo libnsl2 ;;
        libgssapi_krb5.so.2) echo libgssapi-krb5-2 ;;
        libkrb5.so.3) echo libkrb5-3 ;;
        libk5crypto.so.3) echo libk5crypto3 ;;
        libkrb5support.so.0) echo libkrb5support0 ;;
        libcom_err.so.2) echo libcom-err2 ;;
        libkeyutils.so.1) echo libkeyutils1 ;;
        libcap.so.2) echo libcap2 ;;
        libsystemd.so.0) echo libsystemd0 ;;
        libgcrypt.so.20) echo libgcrypt20 ;;
        libgpg-error.so.0) echo libgpg-error0 ;;
        liblzma.so.5) echo liblzma5 ;;
        libzstd.so.1) echo libzstd1 ;;
        liblz4.so.1) echo liblz4-1 ;;
        *) return 1 ;;
    esac
}

# unpack_debs DIR ROOT PACKAGE...: each package's .deb (downloaded to
# DIR/debs unless there already) unpacked into ROOT.
unpack_debs() {
    local dir=$1 root=$2 pkg deb
    shift 2
    for pkg in "$@"; do
        deb=$(ls "$dir/debs/${pkg}_"*.deb 2>/dev/null | tail -n 1 || true)
        if [ -z "$deb" ]; then
            (cd "$dir/debs" && apt-get download -qq "$pkg" 2>/dev/null) ||
                (apt-get update -qq && cd "$dir/debs" && apt-get download -qq "$pkg")
            deb=$(ls "$dir/debs/${pkg}_"*.deb | tail -n 1)
        fi
        dpkg-deb -x "$deb" "$root"
    done
}

# stage_lock_daemons DIR STAGE: rpcbind, rpc.statd, sm-notify and rpcinfo
# from Debian's packages (downloaded to DIR/debs and unpacked in
# DIR/lockpkgs, never installed) into the initramfs tree STAGE, with the
# libraries they load and the files they read. Libraries resolve with ldd
# against the unpacked packages first, then the host's /lib and /usr/lib;
# one found in neither is fetched from its package (lib_package) and the
# lookup repeated.
stage_lock_daemons() {
    local dir=$1 stage=$2
    local pkgroot=$dir/lockpkgs multiarch=x86_64-linux-gnu
    local libpath=$pkgroot/lib/$multiarch:$pkgroot/usr/lib/$multiarch
    local bins=(sbin/rpcbind sbin/rpc.statd sbin/sm-notify usr/bin/rpcinfo sbin/mount.nfs)
    [ -n "$dir" ] && [ -n "$stage" ] || { log "stage_lock_daemons: no directory"; exit 1; }
    rm -rf "$pkgroot"
    mkdir -p "$pkgroot" "$dir/debs"
    unpack_debs "$dir" "$pkgroot" rpcbind nfs-common libtirpc3 libtirpc-common
    local b missing lib pkg pkgs round
    for round in 1 2 3 4; do
        missing=$(for b in "${bins[@]}"; do LD_LIBRARY_PATH=$libpath ldd "$pkgroot/$b"; done |
            awk '$2 == "=>" && $3 == "not" {print $1}' | sort -u)
        [ -n "$missing" ] || break
        [ "$round" -lt 4 ] || { log "libraries not found: $missing"; exit 1; }
        pkgs=()
        for lib in $missing; do
            pkg=$(lib_package "$lib") || { log "no package known for $lib"; exit 1; }
            pkgs+=("$pkg")
        done
        unpack_debs "$dir" "$pkgroot" "${pkgs[@]}"
    done

    mkdir -p "$stage/sbin" "$stage/usr/bin" "$stage/lib/$multiarch" "$stage/etc"
    local arrow path
    for b in "${bins[@]}"; do
        cp "$pkgroot/$b" "$stage/$b"
        # "libfoo.so.1 => /path (0x...)", "/lib64/ld-linux-x86-64.so.2
        # (0x...)", "linux-vdso.so.1 (0x...)"
        while read -r lib arrow path _; do
            if [ "$arrow" = "=>" ]; then
                cp -L "$path" "$stage/lib/$multiarch/$lib"
            elif [[ $lib == /* ]]; then
                mkdir -p "$stage${lib%/*}"
                cp -L "$lib" "$stage$lib"
            fi
        done < <(LD_LIBRARY_PATH=$libpath ldd "$pkgroot/$b")
    done

    # Users the daemons switch to (rpcbind: _rpc; statd and sm-notify: the
    # owner of /var/lib/nfs/sm) and what they look up; glibc has its files
    # and dns lookups built in.
    printf '%s\n' 'root:x:0:0:root:/:/bin/sh' \
        '_rpc:x:101:65534::/run/rpcbind:/bin/false' \
        'statd:x:102:65534::/var/lib/nfs:/bin/false' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$stage/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$stage/etc/group"
    printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' \
        'protocols: files' 'services: files' 'rpc: files' >"$stage/etc/nsswitch.conf"
    # The bed's hosts; the guest's own name and the VIP are added at boot.
    printf '%s\n' '127.0.0.1 localhost' '198.18.0.1 n1' '198.18.0.2 n2' '198.18.0.3 n3' \
        '198.18.0.101 c1' '198.18.0.102 c2' >"$stage/etc/hosts"
    : >"$stage/etc/resolv.conf"
    printf '%s\n' 'ip 0 IP' 'icmp 1 ICMP' 'tcp 6 TCP' 'udp 17 UDP' 'ipv6 41 IPv6' >"$stage/etc/protocols"
    # rpcbind finds its own port as the service "sunrpc": without it, it
    # listens on /run/rpcbind.sock only, and the server's GRANTED callback
    # and statd's lookups find no portmapper on port 111.
    printf '%s\n' 'sunrpc 111/tcp portmapper' 'sunrpc 111/udp portmapper' \
        'nfs 2049/tcp' 'nfs 2049/udp' >"$stage/etc/services"
    printf '%s\n' 'portmapper 100000 portmap sunrpc rpcbind' 'nfs 100003 nfsprog' \
        'mountd 100005 mount showmount' 'status 100024' 'nlockmgr 100021' \
        'nfs_acl 100227' >"$stage/etc/rpc"
    cp "$pkgroot/etc/netconfig" "$stage/etc/netconfig"
    mkdir -p "$stage/run/rpcbind" "$stage/var/lib/nfs/sm" "$stage/var/lib/nfs/sm.bak"
    chown 101:0 "$stage/run/rpcbind"
    chown 102:65534 "$stage/var/lib/nfs/sm" "$stage/var/lib/nfs/sm.bak"
    # The kernel reaches rpcbind at /var/run/rpcbind.sock.
    ln -s ../run "$stage/var/run"
    rm -rf "$pkgroot"
}

build() {
    local dir=$1
    umask 022
    ensure_packages
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local image=${LINUX_IMAGE:-}
    if [ -z "$image" ]; then
        if [ -s "$dir/image" ]; then
            image=$(cat "$dir/image") # keep the cache's kernel
        else
            image=$(newest_image)
            # A fresh machine's apt may not have read its lists yet.
            [ -n "$image" ] || { apt-get update -qq && image=$(newest_image); }
        fi
    fi
    [ -n "$image" ] || { log "no linux-image-*-cloud-amd64 package known to apt"; exit 1; }
    local version=${image#linux-image-}
    local root=$dir/root-$version

    # 1. The kernel package, downloaded and unpacked (not installed).
    if [ ! -f "$root/.unpacked" ]; then
        log "downloading $image"
        mkdir -p "$dir/debs"
        (cd "$dir/debs" && apt-get download -qq "$image" 2>/dev/null) ||
            (apt-get update -qq && cd "$dir/debs" && apt-get download -qq "$image")
        rm -rf "$root"
        dpkg-deb -x "$(ls "$dir/debs/${image}_"*.deb | tail -n 1)" "$root"
        # The .deb ships no modules.dep.
        depmod -b "$root" "$version"
        touch "$root/.unpacked"
    fi

    # 2. The initramfs: busybox, the modules in load order, /init, and for
    # locks the daemons and the locker. Rebuilt when this script (which
    # holds /init) or locker.c is newer.
    local initrd=$dir/initrd-$version.gz
    local locker_src
    locker_src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/locker.c
    if [ ! -f "$initrd" ] || [ "$0" -nt "$initrd" ] || [ "$locker_src" -nt "$initrd" ]; then
        log "making $initrd"
        local stage=$dir/stage
        rm -rf "$stage"
        # Mode 0755 from the root down: rpcbind runs as _rpc, and with a
        # 0700 root the mount fails (EACCES, "RPC: Authentication error").
        mkdir -p "$stage"
        chmod 0755 "$stage"
        mkdir -p "$stage/bin" "$stage/dev" "$stage/lib/modules"
        cp /bin/busybox "$stage/bin/busybox"
        # Without /dev/console, /init's output goes nowhere.
        mknod -m 600 "$stage/dev/console" c 5 1
        mknod -m 666 "$stage/dev/null" c 1 3
        local i=0 path name
        : >"$stage/modules.order"
        # Lines are "insmod /path/mod.ko[.xz|.zst] [params]" or "builtin mod".
        local seen=" "
        while read -r kind path _; do
            [ "$kind" = insmod ] || continue
            # nfsv3 and nfsv4 share sunrpc, nfs and the rest: load each once.
            [[ $seen == *" $path "* ]] && continue
            seen+="$path "
            i=$((i + 1))
            name=$(printf '%02d-%s' "$i" "$(basename "$path")")
            # busybox insmod takes plain .ko only: decompress here.
            case $path in
                *.xz) name=${name%.xz}; xz -dc "$path" >"$stage/lib/modules/$name" ;;
                *.zst) name=${name%.zst}; zstd -qdc "$path" >"$stage/lib/modules/$name" ;;
                *.gz) name=${name%.gz}; gzip -dc "$path" >"$stage/lib/modules/$name" ;;
                *) cp "$path" "$stage/lib/modules/$name" ;;
            esac
            echo "$name" >>"$stage/modules.order"
        done < <(modprobe -d "$root" -S "$version" -a --show-depends virtio_pci virtio_net nfsv3 nfsv4)
        grep -q -- '-nfsv3\.ko$' "$stage/modules.order" ||
            { log "nfsv3 missing from the module list"; exit 1; }
        write_init "$stage/init"
        write_locks_init "$stage/locks.sh"
        stage_lock_daemons "$dir" "$stage"
        gcc -static -O2 -o "$stage/bin/locker" "$locker_src"
        (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -6) >"$initrd.tmp"
        mv "$initrd.tmp" "$initrd"
        rm -rf "$stage"
        log "$i modules"
    fi
    cp -f "$root/boot/vmlinuz-$version" "$dir/vmlinuz-$version.tmp" && mv "$dir/vmlinuz-$version.tmp" "$dir/vmlinuz-$version"
    echo "$image" >"$dir/image"
    log "ready: $dir/vmlinuz-$version $initrd"
}

# boot DIR BED VIP EXPORT SECONDS CONSOLE APPEND [TIMEOUT_OPTION]: QEMU with
# the kernel and initramfs of DIR on the tap g1 of bed BED, kernel command
# line APPEND, ended after SECONDS at the latest. The console, line by line
# as it comes, without CR or terminal escapes, goes to stdout and to the
# file CONSOLE. QEMU's stdin is this function's. Returns QEMU's or
# timeout's status.
boot() {
    local dir=$1 bed=$2 vip=$3 export=$4 seconds=$5 console=$6 append=$7
    local timeout_opts=(-k 5)
    [ -z "${8:-}" ] || timeout_opts+=("$8")
    [ -s "$dir/image" ] || { log "$dir: run '$0 build $dir' first"; exit 1; }
    local version
    version=$(cat "$dir/image"); version=${version#linux-image-}
    local kernel=$dir/vmlinuz-$version initrd=$dir/initrd-$version.gz
    [ -f "$kernel" ] && [ -f "$initrd" ] || { log "$dir incomplete: run build"; exit 1; }
    # Kernel-command-line values end at a space: keep them simple.
    [[ "$vip$export" =~ ^[^[:space:]\"]+$ ]] || { log "VIP and EXPORT must not contain spaces or quotes"; exit 2; }
    # BED "user": QEMU's user-mode network, no bed; the host's 127.0.0.1
    # is 10.0.2.2 to the guest.
    local net=(-netdev tap,id=n0,ifname=g1,script=no,downscript=no) inbed=(ip netns exec "vnas-$bed-bed")
    if [ "$bed" = user ]; then
        net=(-netdev user,id=n0)
        inbed=()
    else
        ip netns list | grep -q "^vnas-$bed-bed\b" || { log "no bed $bed: scripts/bed.sh up $bed"; exit 1; }
    fi
    : >"$console"
    local status=0
    # -monitor none so the serial port alone has stdio; romfile= (none): no
    # iPXE boot ROM to wait for.
    timeout "${timeout_opts[@]}" "$seconds" \
        "${inbed[@]}" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp 2 -m 512 \
        -nographic -serial stdio -monitor none -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        "${net[@]}" \
        -device virtio-net-pci,netdev=n0,romfile= \
        -append "$append" |
        # Line by line as it comes, so a caller can wait for "guest: mounted".
        while IFS= read -r line; do
            # No CR, no terminal escapes (the firmware clears the screen).
            line=${line%$'\r'}
            line=${line//$'\e'[\[]*([0-9;?])[a-zA-Z]/}
            line=${line//$'\e'c/}
            printf '%s\n' "$line"
            printf '%s\n' "$line" >>"$console"
        done || status=$?
    return "$status"
}

run() {
    local dir=$1 bed=$2 vip=$3 export=$4 seconds=$5 interval=${6:-20}
    [[ $seconds =~ ^[0-9]+$ && $interval =~ ^[0-9]+$ ]] || usage

    local append="console=ttyS0 quiet panic=-1"
    append+=" guest_ip=${GUEST_IP:-198.18.0.201/16} vip=$vip export=$export"
    append+=" seconds=$seconds interval_ms=$interval gap_ms=${GAP_MS:-100} kmsg=${KMSG:-0}"
    [ -z "${MOUNT_OPTS:-}" ] || append+=" mount_opts=$MOUNT_OPTS"

    local console
    console=${CONSOLE_LOG:-$(mktemp)}
    [ -n "${CONSOLE_LOG:-}" ] || trap "rm -f '$console'" EXIT
    local status=0
    # Boot, mount and the loop all inside the timeout; stdin /dev/null: this
    # is non-interactive.
    boot "$dir" "$bed" "$vip" "$export" $((seconds + 60)) "$console" "$append" </dev/null || status=$?
    local result
    result=$(grep -a '^guest: round_trips=' "$console" | tail -n 1 || true)
    if [ -z "$result" ]; then
        log "no result line from the guest (qemu/timeout status $status)"
        exit 1
    fi
    [[ $result =~ errors=0( |$) ]] || exit 1
}

locks() {
    local dir=$1 bed=$2 vip=$3 export=$4 seconds=$5
    [[ $seconds =~ ^[0-9]+$ ]] || usage
    local name=${GUEST_NAME:-guest}
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] || { log "GUEST_NAME must be a host name"; exit 2; }

    local append="console=ttyS0 quiet panic=-1 mode=locks"
    local ip=198.18.0.201/16
    [ "$bed" != user ] || ip=10.0.2.15/24
    append+=" guest_ip=${GUEST_IP:-$ip} guest_name=$name vip=$vip export=$export"
    append+=" seconds=$seconds kmsg=${KMSG:-0}"
    [ -z "${MOUNT_OPTS:-}" ] || append+=" mount_opts=$MOUNT_OPTS"

    local console
    console=${CONSOLE_LOG:-$(mktemp)}
    [ -n "${CONSOLE_LOG:-}" ] || trap "rm -f '$console'" EXIT
    local status=0
    # The caller's commands reach the console through QEMU's stdin, ours.
    # --foreground: QEMU may read a terminal as well as a pipe.
    boot "$dir" "$bed" "$vip" "$export" $((seconds + 60)) "$console" "$append" --foreground || status=$?
    if ! grep -aq '^guest: ready$' "$console"; then
        log "the guest never got ready (qemu/timeout status $status)"
        exit 1
    fi
    grep -aq '^guest: quit$' "$console" || exit 1
}

case ${1:-} in
    build) [ $# -eq 2 ] || usage; build "$2" ;;
    run) [ $# -eq 6 ] || [ $# -eq 7 ] || usage; shift; run "$@" ;;
    locks) [ $# -eq 6 ] || usage; shift; locks "$@" ;;
    *) usage ;;
esac
