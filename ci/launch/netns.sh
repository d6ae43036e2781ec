#!/usr/bin/env bash
# Two "hosts" on this machine: network namespaces joined by a veth pair, each process started
# in one with its own UTS namespace (so `hostname` says h1 or h2), and every process of a host
# in that host's own IPC namespace.
#
# The IPC namespaces make UCX see two hosts. UCX (1.13) does not look at host names: it lets
# two processes share memory (its posix, sysv and cma transports) when they have the same
# boot id and the same IPC namespace (and, for cma, PID namespace). Network namespaces alone
# share both, so UCX would use shared memory between h1 and h2 (which works here, /dev/shm
# and the PIDs being common) instead of the veth pair. Atoll's own notion of a host is the
# host name (its shm provider refuses a job on h1 and h2).
#
# Sourced: defines netns_up / netns_down and the runners on_h1 / on_h2.
# Run:     `bash ci/launch/netns.sh` makes the hosts, checks that each sees its own name and
#          reaches the other over TCP, and removes them (a self-check).
#
# Processes enter a host with `nsenter --net=...` and mount a /sys of their own, not with `ip
# netns exec`: that remounts /sys too, but hides the cgroup mounts slurmd needs. /dev/shm stays
# shared between the hosts.
# The namespaces are atoll-<pid>-h1/h2 (the IPC ones bound under /run/atoll-<pid>-ipc), so
# concurrent runs never meet; the addresses are ATOLL_CI_SUBNET.1 and .2 (default 10.77.0).

NETNS_SUBNET="${ATOLL_CI_SUBNET:-10.77.0}"
H1_ADDR="$NETNS_SUBNET.1"
H2_ADDR="$NETNS_SUBNET.2"
# The veth device of each host: one name on both, so one UCX_NET_DEVICES or FI_TCP_IFACE serves all.
H1_DEV=atoll0
H2_DEV=atoll0

# netns_up: makes the two hosts; netns_down is queued on exit.
netns_up() {
    NETNS_PREFIX="atoll-$$"
    local a="$NETNS_PREFIX-a" b="$NETNS_PREFIX-b"
    cleanup_push netns_down
    ip netns add "$NETNS_PREFIX-h1"
    ip netns add "$NETNS_PREFIX-h2"
    # Short device names in the root namespace (15 bytes at most), renamed once moved.
    ip link add "$a" type veth peer name "$b"
    ip link set "$a" netns "$NETNS_PREFIX-h1"
    ip link set "$b" netns "$NETNS_PREFIX-h2"
    ip -n "$NETNS_PREFIX-h1" link set "$a" name "$H1_DEV"
    ip -n "$NETNS_PREFIX-h2" link set "$b" name "$H2_DEV"
    ip -n "$NETNS_PREFIX-h1" addr add "$H1_ADDR/24" dev "$H1_DEV"
    ip -n "$NETNS_PREFIX-h2" addr add "$H2_ADDR/24" dev "$H2_DEV"
    local h
    for h in h1 h2; do
        ip -n "$NETNS_PREFIX-$h" link set lo up
    done
    ip -n "$NETNS_PREFIX-h1" link set "$H1_DEV" up
    ip -n "$NETNS_PREFIX-h2" link set "$H2_DEV" up
    # One persistent IPC namespace per host, bound to a file (on a private mount, as
    # `unshare --ipc=FILE` needs), entered by every process of that host.
    NETNS_IPC_DIR="/run/$NETNS_PREFIX-ipc"
    mkdir -p "$NETNS_IPC_DIR"
    mount --bind "$NETNS_IPC_DIR" "$NETNS_IPC_DIR"
    mount --make-private "$NETNS_IPC_DIR"
    for h in h1 h2; do
        touch "$NETNS_IPC_DIR/$h"
        unshare --ipc="$NETNS_IPC_DIR/$h" true
    done
    log "hosts h1 ($H1_ADDR) and h2 ($H2_ADDR) up: namespaces $NETNS_PREFIX-h1/h2, IPC in $NETNS_IPC_DIR"
}

# netns_down: removes both namespaces (and with them the veth pair) and the IPC namespaces'
# files (a namespace lives on while processes are in it).
netns_down() {
    [ -n "${NETNS_PREFIX:-}" ] || return 0
    ip netns del "$NETNS_PREFIX-h1" 2>/dev/null || true
    ip netns del "$NETNS_PREFIX-h2" 2>/dev/null || true
    if [ -n "${NETNS_IPC_DIR:-}" ] && [ -d "$NETNS_IPC_DIR" ]; then
        umount "$NETNS_IPC_DIR/h1" "$NETNS_IPC_DIR/h2" 2>/dev/null || true
        umount "$NETNS_IPC_DIR" 2>/dev/null || true
        rm -rf "$NETNS_IPC_DIR"
    fi
    unset NETNS_PREFIX NETNS_IPC_DIR
}

# on_host NAME CMD...: runs CMD in host NAME's network and IPC namespaces, with hostname NAME
# and a /sys of its own that lists that namespace's devices (UCX finds its network devices
# there), with the machine's cgroup mounts moved into it (slurmd needs them).
on_host() {
    local host="$1"
    shift
    nsenter --net="/run/netns/$NETNS_PREFIX-$host" --ipc="$NETNS_IPC_DIR/$host" \
        unshare --uts --mount --propagation private \
        sh -c "$NETNS_ENTER"' && exec "$@"' "$host" "$@"
}
# The part of on_host that runs inside the new namespaces ($0 is the host's name).
NETNS_ENTER='hostname "$0" &&
    keep=$(mktemp -d /tmp/atoll-cgroup.XXXXXX) &&
    mount --rbind /sys/fs/cgroup "$keep" &&
    mount -t sysfs sysfs /sys &&
    mount --move "$keep" /sys/fs/cgroup &&
    rmdir "$keep"'
on_h1() { on_host h1 "$@"; }
on_h2() { on_host h2 "$@"; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    source "$(dirname "$0")/lib.sh"
    reason="$(netns_skip_reason)"
    if [ -n "$reason" ]; then
        log "skipped: $reason"
        exit 0
    fi
    netns_up
    [ "$(on_h1 hostname)" = h1 ] && [ "$(on_h2 hostname)" = h2 ]
    # Two processes of one host share its IPC namespace; the two hosts do not.
    [ "$(on_h1 readlink /proc/self/ns/ipc)" = "$(on_h1 readlink /proc/self/ns/ipc)" ]
    [ "$(on_h1 readlink /proc/self/ns/ipc)" != "$(on_h2 readlink /proc/self/ns/ipc)" ]
    # TCP from h1 to h2 through bash's /dev/tcp, answered by a listener in h2.
    on_h2 timeout -s KILL 10 nc -l -N "$H2_ADDR" 9077 >/tmp/atoll-netns-$$.out &
    listener=$!
    wait_for 5 on_h1 bash -c "echo across >/dev/tcp/$H2_ADDR/9077"
    wait "$listener"
    grep -qx across /tmp/atoll-netns-$$.out
    rm -f /tmp/atoll-netns-$$.out
    log "h1 reached h2 over TCP"
fi
