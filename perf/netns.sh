#!/bin/bash
# netns.sh - emulated hosts on one machine: network namespaces joined by a bridge, each with
# a rate-limited link (tc tbf, both directions), for running one rdx rank per "host" over
# UCX TCP with addresses that exist only inside those namespaces.
#
#   perf/netns.sh up N [RATE]        create hosts rdxh0..rdxh(N-1) (default RATE 10gbit)
#   perf/netns.sh run N [-t SECS] [--] PROGRAM ARGS...
#                                    run rank r of PROGRAM in rdxh<r>; output prefixed "[r] ";
#                                    exit status: 0 if every rank exited 0, else the first
#                                    failing rank's (124 on timeout, default 600 s)
#   perf/netns.sh down [N]           remove the hosts and the switch
#   perf/netns.sh status             show the hosts, addresses and qdiscs
#
# Layout: namespace rdxsw holds bridge br0; host r is namespace rdxh<r> with interface eth0
# (10.77.0.<r+1>/24) whose peer sw<r> is a port of br0. tbf shapes eth0's egress (what the
# host sends) and sw<r>'s egress (what it receives), like a full-duplex NIC of RATE. The
# kernel here has no netem, so there is no added delay: latency is the kernel's TCP path.
# Needs root (ip netns, tc). Rank 0 runs the rendezvous at 10.77.0.1; ranks get
# RDX_RANK/RDX_SIZE/RDX_ADDR/RDX_JOB_KEY, RDX_UCX_TLS=tcp, UCX_NET_DEVICES=eth0 and
# RDX_IFNAME=eth0 (every other RDX_*/UCX_* variable of the caller passes through).
set -u

SUBNET=10.77.0
die() { echo "netns.sh: $*" >&2; exit 2; }
need_root() { [ "$(id -u)" = 0 ] || die "needs root (ip netns, tc)"; }

# tbf burst: at least one 64 KiB TSO segment plus 1 ms at the rate (a smaller burst starves
# the link of whole segments and the rate is never reached).
burst_for() {
    local rate=$1 bits
    bits=$(echo "$rate" | awk '{r=$1; m=1; if (r ~ /[gG]bit$/) m=1e9; else if (r ~ /[mM]bit$/) m=1e6;
           else if (r ~ /[kK]bit$/) m=1e3; sub(/[a-zA-Z]+$/, "", r); print r*m}')
    awk -v b="$bits" 'BEGIN { x = b / 8 / 1000; if (x < 131072) x = 131072; printf "%d", x }'
}

up() {
    local n=$1 rate=${2:-10gbit} burst
    need_root
    [ "$n" -ge 1 ] 2>/dev/null || die "up: N must be a positive number"
    down_all >/dev/null 2>&1
    burst=$(burst_for "$rate")
    ip netns add rdxsw || die "cannot create namespace rdxsw"
    ip -n rdxsw link add br0 type bridge
    ip -n rdxsw link set br0 up
    for ((r = 0; r < n; r++)); do
        ip netns add "rdxh$r"
        ip link add "rdxe$r" type veth peer name "rdxs$r"
        ip link set "rdxe$r" netns "rdxh$r"
        ip link set "rdxs$r" netns rdxsw
        ip -n "rdxh$r" link set "rdxe$r" name eth0
        ip -n rdxsw link set "rdxs$r" name "sw$r"
        ip -n rdxsw link set "sw$r" master br0
        ip -n rdxsw link set "sw$r" up
        ip -n "rdxh$r" addr add "$SUBNET.$((r + 1))/24" dev eth0
        ip -n "rdxh$r" link set eth0 up
        ip -n "rdxh$r" link set lo up
        ip netns exec "rdxh$r" tc qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 20ms
        ip netns exec rdxsw tc qdisc add dev "sw$r" root tbf rate "$rate" burst "$burst" latency 20ms
    done
    echo "netns.sh: $n hosts rdxh0..rdxh$((n - 1)) on $SUBNET.0/24, $rate each way (tbf burst $burst B)"
}

down_all() {
    for ns in $(ip netns list | awk '{print $1}' | grep -E '^rdx(h[0-9]+|sw)$'); do
        ip netns del "$ns"
    done
}

status() {
    for ns in $(ip netns list | awk '{print $1}' | grep -E '^rdx(h[0-9]+|sw)$' | sort -V); do
        echo "== $ns"
        ip -n "$ns" -brief addr | grep -v '^lo'
        ip netns exec "$ns" tc qdisc show | grep tbf
    done
}

run() {
    local n=$1 timeout_s=600
    shift
    need_root
    [ "${1:-}" = "-t" ] && { timeout_s=$2; shift 2; }
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || die "run: no program"
    for ((r = 0; r < n; r++)); do
        ip netns list | grep -q "^rdxh$r\b" || die "host rdxh$r missing: run 'netns.sh up $n' first"
    done
    local port=$((20000 + RANDOM % 20000)) key
    key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    local pids=() dir
    dir=$(mktemp -d /tmp/rdx-netns.XXXXXX)
    for ((r = 0; r < n; r++)); do
        (
            exec ip netns exec "rdxh$r" env RDX_RANK=$r RDX_SIZE=$n RDX_ADDR=$SUBNET.1:$port \
                RDX_JOB_KEY="$key" RDX_UCX_TLS=tcp UCX_NET_DEVICES=eth0 RDX_IFNAME=eth0 \
                timeout -k 5 "$timeout_s" "$@" 2>&1 | sed -u "s/^/[$r] /"
            exit "${PIPESTATUS[0]}"
        ) &
        pids+=($!)
    done
    local rc=0 first=""
    for ((r = 0; r < n; r++)); do
        wait "${pids[$r]}"
        local st=$?
        if [ $st -ne 0 ] && [ -z "$first" ]; then
            first=$r
            rc=$st
        fi
    done
    rm -rf "$dir"
    [ -n "$first" ] && echo "netns.sh: rank $first failed first with status $rc" >&2
    return $rc
}

case ${1:-} in
    up) shift; up "${1:-4}" "${2:-10gbit}" ;;
    down) need_root; down_all; echo "netns.sh: hosts removed" ;;
    status) status ;;
    run) shift; n=${1:?run N}; shift; run "$n" "$@" ;;
    *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] && exit 2 || exit 0 ;;
esac
