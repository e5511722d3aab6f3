#!/usr/bin/env bash
# train_overlap.sh - does the gradient allreduce hide behind backward? (issue 5)
#
# Usage: perf/train_overlap.sh [-B BUILD_DIR] [-s STEPS] [-r ROUNDS] [-m MODES] [-R MBIT]
#                              [-b BATCH] [-o OUT_DIR] [-- EXTRA rdx-train ARGS]
#   -B  build directory with bin/rdx-run, bin/rdx-train, bin/rdx-perf (default <repo>/build)
#   -s  optimizer steps per run (default 200; the first 20 are not counted)
#   -r  rounds; within a round every measurement runs once, in rotating order (default 3)
#   -m  comma list of: shm (UCX shared memory, rdx-run on one host) and net (two "hosts":
#       network namespaces joined by a veth pair, UCX over TCP, each direction shaped by
#       `tc tbf` to -R Mbit/s; needs root) (default: shm,net)
#   -R  rate of the emulated link in Mbit/s (default 2000)
#   -b  global batch (default 128)
#   -o  where logs and per-rank metrics go (default: a new directory under /tmp)
#
# n = 2 ranks, rank r pinned to CPU r. Per round and transport:
#   compute alone  two independent 1-rank rdx-train runs with the per-rank batch (B/2),
#                  one per CPU, at the same time: the step with the machine equally busy
#                  and no communication at all                               (a)
#   comm alone     rdx-perf: allreduce of the gradient's size (float32 avg), same ranks
#   no overlap     rdx-train --no-overlap: backward, then one blocking allreduce  (b)
#   overlap calls  rdx-train --progress calls: buckets start inside backward, the training
#                  thread drives them between sgemm pieces
#   overlap thread rdx-train --progress thread (the default): a helper thread drives them
# Step figures are medians over steps (rank 0); "exposed" is the time the training thread
# spent in communication code. Over rounds: median (min-max).
# ratio = step / max(compute, comm) of the same round; the issue's target is <= 1.15.
# A benchmark, not a test: it asserts nothing beyond the runs succeeding.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD=$REPO/build
STEPS=200
ROUNDS=3
MODES=shm,net
RATE=2000
BATCH=128
OUT=""
while getopts "B:s:r:m:R:b:o:h" opt; do
    case $opt in
        B) BUILD=$OPTARG ;;
        s) STEPS=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        m) MODES=$OPTARG ;;
        R) RATE=$OPTARG ;;
        b) BATCH=$OPTARG ;;
        o) OUT=$OPTARG ;;
        *) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ "${1:-}" != "--" ] || shift
EXTRA=("$@")
RUN=$BUILD/bin/rdx-run
TRAIN=$BUILD/bin/rdx-train
PERF=$BUILD/bin/rdx-perf
for f in "$RUN" "$TRAIN" "$PERF"; do
    [ -x "$f" ] || { echo "train_overlap: $f missing: build first (-B BUILD_DIR)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "train_overlap: needs python3 (scripts/setup.sh)" >&2; exit 2; }
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/train_overlap.XXXXXX)
mkdir -p "$OUT"
NCPU=$(nproc)
TARGS=(--max-steps "$STEPS" --quiet --check-every 0 "${EXTRA[@]}")
# Gradient bytes of the model: what one allreduce carries (fp32).
PARAMS=$("$TRAIN" "${EXTRA[@]}" --max-steps 1 --train-limit 512 --test-limit 100 --batch 8 |
         sed -n 's/.*(\([0-9]*\) params).*/\1/p')
[ -n "$PARAMS" ] || { echo "train_overlap: cannot read the model size from rdx-train" >&2; exit 1; }
BYTES=$((PARAMS * 4))

fail_run() { cat "$OUT/$1"*.log >&2; echo "train_overlap: run $1 failed" >&2; exit 1; }

# ---- compute alone: two single-rank trainers, one per CPU, at once ---------------------
run_compute() { # NAME
    local pids=() rc=0
    for r in 0 1; do
        taskset -c $((r % NCPU)) "$TRAIN" "${TARGS[@]}" --batch $((BATCH / 2)) \
            --metrics "$OUT/$1-r$r.jsonl" >"$OUT/$1.r$r.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    [ $rc -eq 0 ] || fail_run "$1"
}

# ---- shm: rdx-run on this host ---------------------------------------------------------
run_shm() { # NAME PROGRAM ARGS...
    local name=$1
    shift
    "$RUN" -n 2 --timeout 600 -- sh -c 'exec taskset -c $((RDX_RANK % '"$NCPU"')) "$0" "$@"' \
        "$@" >"$OUT/$name.log" 2>&1 || fail_run "$name"
}

# ---- net: two network namespaces, a shaped veth pair, UCX over TCP ---------------------
NS=(rdxov0 rdxov1)
IP=(10.77.0.1 10.77.0.2)
net_down() {
    for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
net_up() {
    net_down
    trap net_down EXIT
    ip netns add "${NS[0]}" && ip netns add "${NS[1]}"
    ip link add rdxov0 netns "${NS[0]}" type veth peer name rdxov1 netns "${NS[1]}"
    local burst=$((RATE * 125 > 65536 ? RATE * 125 : 65536)) # ~1 ms of traffic
    for i in 0 1; do
        ip -n "${NS[$i]}" link set lo up
        ip -n "${NS[$i]}" addr add "${IP[$i]}/24" dev "rdxov$i"
        ip -n "${NS[$i]}" link set "rdxov$i" up
        ip netns exec "${NS[$i]}" tc qdisc add dev "rdxov$i" root tbf rate "${RATE}mbit" \
            burst "$burst" latency 20ms
    done
    # UCX lists only running interfaces: wait for both ends (carrier takes a moment)
    for i in 0 1; do
        for _ in $(seq 50); do
            [ "$(ip netns exec "${NS[$i]}" cat "/sys/class/net/rdxov$i/operstate")" = up ] && break
            sleep 0.1
        done
    done
}
run_net() { # NAME PROGRAM ARGS...
    local name=$1 port=$((20000 + RANDOM % 20000)) key pids=() rc=0
    shift
    key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    for r in 0 1; do
        ip netns exec "${NS[$r]}" env RDX_RANK=$r RDX_SIZE=2 RDX_ADDR="${IP[0]}:$port" \
            RDX_JOB_KEY="$key" RDX_TRANSPORT=ucx RDX_UCX_TLS=tcp UCX_NET_DEVICES="rdxov$r" \
            taskset -c $((r % NCPU)) "$@" >"$OUT/$name.r$r.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    [ $rc -eq 0 ] || fail_run "$name"
}

measure() { # MODE WHAT ROUND
    local name=$1-$2-$3
    case $2 in
        compute) run_compute "$name" ;;
        comm) "run_$1" "$name" "$PERF" -b "$BYTES" -e "$BYTES" -d float32 -o avg -c 0 \
                  --json "$OUT/$name.json" ;;
        noov) "run_$1" "$name" "$TRAIN" "${TARGS[@]}" --batch "$BATCH" --no-overlap \
                  --metrics "$OUT/$name-r%r.jsonl" ;;
        calls|thread) "run_$1" "$name" "$TRAIN" "${TARGS[@]}" --batch "$BATCH" --progress "$2" \
                  --metrics "$OUT/$name-r%r.jsonl" ;;
    esac
}

ORDER=(compute comm noov calls thread)
IFS=, read -r -a modes <<<"$MODES"
for mode in "${modes[@]}"; do
    case $mode in
        shm) ;;
        net) [ "$(id -u)" = 0 ] || { echo "train_overlap: net mode needs root" >&2; exit 2; }
             net_up ;;
        *) echo "train_overlap: unknown mode $mode (shm, net)" >&2; exit 2 ;;
    esac
    for round in $(seq 1 "$ROUNDS"); do
        for i in "${!ORDER[@]}"; do # rotate so that no measurement always runs first
            measure "$mode" "${ORDER[$(((i + round) % ${#ORDER[@]}))]}" "$round"
        done
        echo "train_overlap: $mode round $round/$ROUNDS done" >&2
    done
    [ "$mode" != net ] || { net_down; trap - EXIT; }
done

python3 - "$OUT" "$STEPS" "$RATE" "$MODES" "$ROUNDS" "$BYTES" "$BATCH" <<'PY'
import json, statistics as st, sys
out, steps, rate, modes, rounds, nbytes, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    sys.argv[4].split(','), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
WARM = min(20, steps // 4)

def rows(name, rank):
    with open(f"{out}/{name}-r{rank}.jsonl") as f:
        return [json.loads(l) for l in f if '"step_ms"' in l][WARM:]

def train_figures(name):
    r0 = rows(name, 0)
    return st.median(r["step_ms"] for r in r0), st.median(r["exposed_comm_ms"] for r in r0)

def compute_ms(name):  # the slower of the two simultaneous single-rank runs
    return max(st.median(r["step_ms"] for r in rows(name, k)) for k in (0, 1))

def comm_ms(name):
    with open(f"{out}/{name}.json") as f:
        return json.load(f)["rows"][0]["time_us"] / 1e3

def agg(vals):
    return f"{st.median(vals):7.2f} ({min(vals):6.2f}-{max(vals):6.2f})"

label = {"shm": "UCX shared memory", "net": f"UCX TCP between 2 netns, tbf {rate} Mbit/s"}
what = {"noov": "(b) no overlap", "calls": "overlap, progress calls", "thread": "overlap, progress thread"}
print(f"\nrdx-train overlap benchmark: n=2, global batch {batch}, gradient {nbytes / 1e6:.2f} MB, "
      f"{steps} steps per run ({WARM} warm-up), {rounds} rounds: median (min-max) over rounds")
for mode in modes:
    R = range(1, rounds + 1)
    comp = [compute_ms(f"{mode}-compute-{r}") for r in R]
    comm = [comm_ms(f"{mode}-comm-{r}") for r in R]
    print(f"\n{label[mode]}")
    print(f"  (a) compute alone              {agg(comp)} ms")
    print(f"      allreduce alone (rdx-perf) {agg(comm)} ms")
    print(f"  {'':30s} {'step ms':>22s} {'exposed ms':>11s} {'exposed':>8s}  step / max(compute, comm)")
    for c, title in what.items():
        figs = [train_figures(f"{mode}-{c}-{r}") for r in R]
        steps_ = [f[0] for f in figs]
        exp = st.median(f[1] for f in figs)
        ratio = [s / max(a, b) for s, a, b in zip(steps_, comp, comm)]
        print(f"  {title:30s} {agg(steps_)} {exp:11.2f} {100 * exp / st.median(steps_):7.1f}%  "
              f"{agg(ratio)}")
print(f"\nraw logs and metrics: {out}")
PY
