#!/usr/bin/env bash
# The Linux kernel NFS client in a small QEMU guest on the test bed.
#
#   scripts/guest.sh build DIR
#       Prepare a kernel and an initramfs in DIR (a cache: work already done
#       is skipped). LINUX_IMAGE=linux-image-VERSION-cloud-amd64 picks the
#       kernel package (default: the newest cloud-amd64 one apt knows).
#   scripts/guest.sh run DIR BED VIP EXPORT SECONDS [INTERVAL_MS]
#       Boot the guest on the tap g1 of bed BED (see scripts/bed.sh), mount
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
#
# Options (environment): GUEST_IP (default 198.18.0.201/16), GAP_MS (gap
# report threshold, default 100), KMSG=1 (show kernel notices such as "nfs:
# server ... not responding"), CONSOLE_LOG=FILE (also keep the console there).
#
# Why a guest: the machines here run a kernel without an NFS client, and KVM
# does not work (its emulator stops stock guest kernels), so this is TCG emulation:
# boot takes a few seconds, each round trip some milliseconds. Needs root.
set -euo pipefail
shopt -s extglob

usage() {
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

log() { echo "guest.sh: $*" >&2; }

# Install what is missing, quietly; nothing if all is there.
ensure_packages() {
    local missing=() pkg
    for pkg in qemu-system-x86 busybox-static cpio kmod xz-utils zstd; do
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
# gap_ms, kmsg.
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

# A text mount(2) with no port options: the kernel asks rpcbind on the VIP
# for the NFS and MOUNT ports and does the MOUNT call itself. (This busybox
# has no NFS support of its own, so its mount passes -o through as text; -i:
# no mount helper.) The vserver may still be starting: retry a little.
opts="vers=3,proto=tcp,nolock,hard,addr=$vip"
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

build() {
    local dir=$1
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

    # 2. The initramfs: busybox, the modules in load order, /init. Rebuilt
    # when this script (which holds /init) is newer.
    local initrd=$dir/initrd-$version.gz
    if [ ! -f "$initrd" ] || [ "$0" -nt "$initrd" ]; then
        log "making $initrd"
        local stage=$dir/stage
        rm -rf "$stage"
        mkdir -p "$stage/bin" "$stage/dev" "$stage/lib/modules"
        cp /bin/busybox "$stage/bin/busybox"
        # Without /dev/console, /init's output goes nowhere.
        mknod -m 600 "$stage/dev/console" c 5 1
        mknod -m 666 "$stage/dev/null" c 1 3
        local i=0 path name
        : >"$stage/modules.order"
        # Lines are "insmod /path/mod.ko[.xz|.zst] [params]" or "builtin mod".
        while read -r kind path _; do
            [ "$kind" = insmod ] || continue
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
        done < <(modprobe -d "$root" -S "$version" -a --show-depends virtio_pci virtio_net nfsv3)
        grep -q -- '-nfsv3\.ko$' "$stage/modules.order" ||
            { log "nfsv3 missing from the module list"; exit 1; }
        write_init "$stage/init"
        (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -6) >"$initrd.tmp"
        mv "$initrd.tmp" "$initrd"
        rm -rf "$stage"
        log "$i modules"
    fi
    cp -f "$root/boot/vmlinuz-$version" "$dir/vmlinuz-$version.tmp" && mv "$dir/vmlinuz-$version.tmp" "$dir/vmlinuz-$version"
    echo "$image" >"$dir/image"
    log "ready: $dir/vmlinuz-$version $initrd"
}

run() {
    local dir=$1 bed=$2 vip=$3 export=$4 seconds=$5 interval=${6:-20}
    [[ $seconds =~ ^[0-9]+$ && $interval =~ ^[0-9]+$ ]] || usage
    [ -s "$dir/image" ] || { log "$dir: run '$0 build $dir' first"; exit 1; }
    local version
    version=$(cat "$dir/image"); version=${version#linux-image-}
    local kernel=$dir/vmlinuz-$version initrd=$dir/initrd-$version.gz
    [ -f "$kernel" ] && [ -f "$initrd" ] || { log "$dir incomplete: run build"; exit 1; }
    # Kernel-command-line values end at a space: keep them simple.
    [[ "$vip$export" =~ ^[^[:space:]\"]+$ ]] || { log "VIP and EXPORT must not contain spaces or quotes"; exit 2; }
    ip netns list | grep -q "^vnas-$bed-bed\b" || { log "no bed $bed: scripts/bed.sh up $bed"; exit 1; }

    local append="console=ttyS0 quiet panic=-1"
    append+=" guest_ip=${GUEST_IP:-198.18.0.201/16} vip=$vip export=$export"
    append+=" seconds=$seconds interval_ms=$interval gap_ms=${GAP_MS:-100} kmsg=${KMSG:-0}"

    local console
    console=${CONSOLE_LOG:-$(mktemp)}
    [ -n "${CONSOLE_LOG:-}" ] || trap "rm -f '$console'" EXIT
    : >"$console"
    local status=0
    # Boot, mount and the loop all inside the timeout; -monitor none so the
    # serial port alone has stdio; stdin /dev/null: this is non-interactive;
    # romfile= (none): no iPXE boot ROM to wait for.
    timeout -k 5 $((seconds + 60)) \
        ip netns exec "vnas-$bed-bed" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp 2 -m 512 \
        -nographic -serial stdio -monitor none -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        -netdev tap,id=n0,ifname=g1,script=no,downscript=no \
        -device virtio-net-pci,netdev=n0,romfile= \
        -append "$append" </dev/null |
        # Line by line as it comes, so a caller can wait for "guest: mounted".
        while IFS= read -r line; do
            # No CR, no terminal escapes (the firmware clears the screen).
            line=${line%$'\r'}
            line=${line//$'\e'[\[]*([0-9;?])[a-zA-Z]/}
            line=${line//$'\e'c/}
            printf '%s\n' "$line"
            printf '%s\n' "$line" >>"$console"
        done || status=$?
    local result
    result=$(grep -a '^guest: round_trips=' "$console" | tail -n 1 || true)
    if [ -z "$result" ]; then
        log "no result line from the guest (qemu/timeout status $status)"
        exit 1
    fi
    [[ $result =~ errors=0( |$) ]] || exit 1
}

case ${1:-} in
    build) [ $# -eq 2 ] || usage; build "$2" ;;
    run) [ $# -eq 6 ] || [ $# -eq 7 ] || usage; shift; run "$@" ;;
    *) usage ;;
esac
