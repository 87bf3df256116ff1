#!/usr/bin/env bash
# The test bed: hosts on one machine, each in a network namespace of its
# own, on one bridge. Addresses in 198.18.0.0/16 only, and no route off the
# machine (nothing is added to the host's own namespace).
#
#   scripts/bed.sh up [BED]          make the bed (removing an old one first)
#   scripts/bed.sh down [BED]        end its processes, remove it
#   scripts/bed.sh exec BED HOST CMD...   run CMD on HOST
#   scripts/bed.sh list [BED]        the hosts and their addresses
#
# BED (default "vnas") prefixes every namespace: vnas-BED-bed (the bridge
# br0, and the tap g1 a QEMU guest attaches to), vnas-BED-n1..n3 (nodes,
# 198.18.0.1-3), vnas-BED-c1..c2 (clients, 198.18.0.101-102). Each host
# reaches the bridge through its eth0. Vserver addresses go in
# 198.18.1.0/24 (same /16, so no router is needed). Needs root and iproute2.
set -euo pipefail

action=${1:-}
bed=${2:-vnas}
prefix="vnas-$bed"
hosts="n1 n2 n3 c1 c2"

address() {
    case $1 in
        n*) echo "198.18.0.${1#n}" ;;
        c*) echo "198.18.0.$((100 + ${1#c}))" ;;
    esac
}

namespaces() {
    ip netns list | awk '{print $1}' | grep -E "^$prefix-(bed|n[0-9]+|c[0-9]+)\$" || true
}

down() {
    for ns in $(namespaces); do
        # Only processes in the bed's own namespaces: what the bed ran.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null || true
        done
    done
    for ns in $(namespaces); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

up() {
    down
    ip netns add "$prefix-bed"
    ip -n "$prefix-bed" link set lo up
    ip -n "$prefix-bed" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$prefix-bed" link set br0 up
    ip -n "$prefix-bed" tuntap add g1 mode tap
    ip -n "$prefix-bed" link set g1 master br0 up
    for host in $hosts; do
        ns="$prefix-$host"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Both ends made in place: nothing appears in the host's namespace.
        ip -n "$prefix-bed" link add "$host" type veth peer name eth0 netns "$ns"
        ip -n "$prefix-bed" link set "$host" master br0 up
        ip -n "$ns" address add "$(address "$host")/16" dev eth0
        ip -n "$ns" link set eth0 up
    done
}

case "$action" in
    up) up ;;
    down) down ;;
    exec)
        host=${3:?host}
        shift 3
        exec ip netns exec "$prefix-$host" "$@"
        ;;
    list)
        for host in $hosts; do echo "$host $prefix-$host $(address "$host")"; done
        ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
