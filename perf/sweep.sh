#!/bin/bash
# sweep.sh - time every forced allreduce algorithm and `auto` at every size, on shared memory,
# on UCX TCP over loopback and on emulated hosts (perf/netns.sh), next to the cost model's
# predictions; draw time vs size per algorithm (PNG, gnuplot) and report the crossovers and
# how far `auto` is from the best forced algorithm.
#
#   perf/sweep.sh [-B BUILD] [-n RANKS] [-b MIN] [-e MAX] [-f FACTOR] [-r REPEATS]
#                 [-o OUTDIR] [--envs "shm tcp netns"] [--rate RATE] [--calibrate]
#                 [-C COLLECTIVE] [--algos "ring tree rd rabenseifner auto"]
#                 [-- RDX_PERF_ARGS...]
#
#   -B  build folder with bin/rdx-run, bin/rdx-perf, bin/rdx-info (default ./build)
#   -n  ranks (default 4); -b/-e/-f: sizes (default 8 .. 32M, x4); -r repeats (default 3)
#   -o  output folder (default perf/results/sweep-<date>)
#   --envs   shm: UCX shared memory; tcp: UCX TCP on loopback; netns: one rank per emulated
#            host (needs root; RATE per host link each way, default 10gbit)
#   -C       allreduce (default), or reduce_scatter, allgather, broadcast, reduce: passed to
#            rdx-perf -C and rdx-info --predict; default algos then: RDX_ALGO values that
#            select distinct algorithms for it (broadcast/reduce: ring = chain, tree)
#   --calibrate  run rdx-info --calibrate first in each environment (writes the calibration
#            file to OUTDIR/calibration and points XDG_CACHE_HOME there, so the machine's own
#            file is untouched and `auto` and the predictions use the fresh values)
#
# Every (algorithm, size) is timed REPEATS times, interleaved per size: for each size, each
# repeat runs every algorithm once (one rdx-perf process per size and algorithm: RDX_ALGO is
# read at init), in an order rotated per repeat, so that a burst of load on the shared
# machine hits all algorithms of a size alike; the median of the repeats is kept. The load
# (uptime) before and after each environment goes into the summary.
# Every run checks every element (rdx-perf -c 1); a wrong element fails the sweep.
# On a loaded host pass a fixed iteration count (-- -n 200 -w 10): rdx-perf's adaptive count
# follows a slow warm-up and was itself worth up to 20x on single runs (docs/algorithms.md).
# Outputs per collective C and environment ENV: C.ENV.dat (bytes, then time_us per
# algorithm), C.ENV.predict
# (rdx-info --predict), C.ENV.summary (per size: best forced, auto, ratio; crossovers measured
# and predicted), C.ENV.png. Exit 1 if any result was wrong or a run failed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=./build
NP=4
MINB=8
MAXB=32M
FACTOR=4
REPEATS=3
OUT=
ENVS="shm tcp"
RATE=10gbit
ALGOS=
COLL=allreduce
CALIBRATE=0
EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        -B) BUILD=$2; shift ;;
        -n) NP=$2; shift ;;
        -b) MINB=$2; shift ;;
        -e) MAXB=$2; shift ;;
        -f) FACTOR=$2; shift ;;
        -r) REPEATS=$2; shift ;;
        -o) OUT=$2; shift ;;
        --envs) ENVS=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --algos) ALGOS=$2; shift ;;
        -C) COLL=$2; shift ;;
        --calibrate) CALIBRATE=1 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
case $COLL in
    allreduce) ALGOS=${ALGOS:-ring tree rd rabenseifner auto}; CARGS=() ;;
    broadcast|reduce) ALGOS=${ALGOS:-ring tree auto}; CARGS=(-C "$COLL") ;;
    reduce_scatter|allgather) ALGOS=${ALGOS:-ring auto}; CARGS=(-C "$COLL") ;;
    *) echo "sweep.sh: unknown collective $COLL" >&2; exit 2 ;;
esac
BUILD=$(cd "$BUILD" && pwd) || exit 2
OUT=${OUT:-$HERE/results/sweep-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
for t in rdx-run rdx-perf rdx-info; do
    [ -x "$BUILD/bin/$t" ] || { echo "sweep.sh: $BUILD/bin/$t missing (build first)" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "sweep.sh: needs jq (apt-get install jq)" >&2; exit 2; }
if [ "$CALIBRATE" = 1 ]; then
    export XDG_CACHE_HOME=$OUT/cache
fi

failed=0

# Runs "$@" with NP ranks in environment $1.
launch() {
    local env=$1
    shift
    case $env in
        shm) timeout -k 10 1800 "$BUILD/bin/rdx-run" -n "$NP" -- "$@" ;;
        tcp) RDX_UCX_TLS=tcp timeout -k 10 1800 "$BUILD/bin/rdx-run" -n "$NP" -- "$@" ;;
        netns) "$HERE/netns.sh" run "$NP" -t 1800 -- "$@" ;;
        *) echo "sweep.sh: unknown environment $env" >&2; return 2 ;;
    esac
}

sweep_env() {
    local env=$1 rep algo
    echo "sweep.sh: $env: $NP ranks, sizes $MINB..$MAXB x$FACTOR, algos: $ALGOS, $REPEATS repeats"
    # runs of an earlier sweep into the same folder would join the medians
    rm -f "$OUT/$COLL.$env".*.json "$OUT/$COLL.$env".*.log
    if [ "$env" = netns ]; then
        "$HERE/netns.sh" up "$NP" "$RATE" || return 1
    fi
    if [ "$CALIBRATE" = 1 ]; then
        launch "$env" "$BUILD/bin/rdx-info" --calibrate 2>&1 | sed 's/^\[[0-9]*\] //' \
            > "$OUT/$COLL.$env.calibration" || { echo "sweep.sh: $env: calibration failed" >&2; failed=1; }
        cat "$OUT/$COLL.$env.calibration"
    fi
    launch "$env" "$BUILD/bin/rdx-info" --predict --collective "$COLL" 2>&1 | grep -v '^\[[1-9]' |
        sed 's/^\[0\] //' > "$OUT/$COLL.$env.predict"
    echo "# load before: $(uptime)" > "$OUT/$COLL.$env.load"
    local sizes size k=0
    sizes=$(size_list)
    for size in $sizes; do
        for ((rep = 1; rep <= REPEATS; rep++)); do
            for algo in $(rotate $((k + rep)) $ALGOS); do
                run_one "$env" "$algo" "$size" "$rep" || failed=1
            done
        done
        k=$((k + 1))
    done
    echo "# load after:  $(uptime)" >> "$OUT/$COLL.$env.load"
    [ "$env" = netns ] && "$HERE/netns.sh" down > /dev/null
    tabulate "$env"
    summarize "$env" | tee "$OUT/$COLL.$env.summary"
    plot "$env"
}

# The sizes MINB, MINB*FACTOR, ... <= MAXB, in bytes (K/M/G suffixes as rdx-perf reads them).
size_list() {
    local lo hi
    lo=$(to_bytes "$MINB") hi=$(to_bytes "$MAXB")
    awk -v lo="$lo" -v hi="$hi" -v f="$FACTOR" 'BEGIN { for (s = lo; s <= hi; s *= f) print s }'
}

to_bytes() {
    echo "$1" | awk '{ v = $1; m = 1; if (v ~ /[kK]$/) m = 1024; else if (v ~ /[mM]$/) m = 1048576;
                       else if (v ~ /[gG]$/) m = 1073741824; sub(/[kKmMgG]$/, "", v); print v * m }'
}

# The words after the first, rotated left by $1.
rotate() {
    local k=$1
    shift
    local a=("$@") n=$# i
    for ((i = 0; i < n; i++)); do printf '%s ' "${a[$(((i + k) % n))]}"; done
}

# One rdx-perf run: one size, one algorithm; checks its wrong column.
run_one() {
    local env=$1 algo=$2 size=$3 rep=$4
    local json=$OUT/$COLL.$env.$algo.$size.$rep.json log=$OUT/$COLL.$env.$algo.$size.$rep.log
    if ! launch "$env" "$BUILD/bin/rdx-perf" -b "$size" -e "$size" -c 1 -a "$algo" --json "$json" \
            ${CARGS[@]+"${CARGS[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} > "$log" 2>&1; then
        echo "sweep.sh: $env: rdx-perf -a $algo at $size B (repeat $rep) failed: see $log" >&2
        return 1
    fi
    local wrong
    wrong=$(jq '[.rows[].wrong] | add' "$json")
    [ "$wrong" = 0 ] || { echo "sweep.sh: $env $algo $size B: $wrong wrong elements" >&2; return 1; }
}

# ENV.dat: bytes, then the median time_us over repeats of each algorithm ("-" if missing).
tabulate() {
    local env=$1 algo
    {
        printf '# bytes'
        for algo in $ALGOS; do printf ' %s' "$algo"; done
        printf '\n'
        for algo in $ALGOS; do
            for f in "$OUT/$COLL.$env.$algo".*.json; do
                [ -s "$f" ] && jq -r --arg a "$algo" '.rows[] | "\(.bytes) \($a) \(.time_us)"' "$f"
            done
        done | awk -v algos="$ALGOS" '
            { k = $1 SUBSEP $2; nv[k]++; v[k, nv[k]] = $3; sizes[$1] = 1 }
            END {
                for (k in nv) {  # median: sort the few values of k
                    m = nv[k]
                    for (i = 1; i <= m; i++) w[i] = v[k, i]
                    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
                        if (w[j] < w[i]) { t = w[i]; w[i] = w[j]; w[j] = t }
                    best[k] = (m % 2) ? w[(m + 1) / 2] : (w[m / 2] + w[m / 2 + 1]) / 2
                }
                n = split(algos, a, " ")
                m = 0; for (s in sizes) list[++m] = s + 0
                for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
                    if (list[j] < list[i]) { t = list[i]; list[i] = list[j]; list[j] = t }
                for (i = 1; i <= m; i++) {
                    line = list[i]
                    for (j = 1; j <= n; j++) {
                        k = list[i] SUBSEP a[j]
                        line = line " " ((k in best) ? best[k] : "-")
                    }
                    print line
                }
            }'
    } > "$OUT/$COLL.$env.dat"
}

# Per size: the best forced algorithm, auto, ratio; then crossovers measured and predicted.
summarize() {
    local env=$1
    echo "== $COLL, $env: $NP ranks ($(head -1 "$OUT/$COLL.$env.predict" | sed 's/^# predict [a-z_]*: //'))"
    cat "$OUT/$COLL.$env.load"
    echo "median of $REPEATS interleaved repeats per size and algorithm"
    awk -v algos="$ALGOS" -v predict="$OUT/$COLL.$env.predict" '
        BEGIN {
            n = split(algos, a, " ")
            while ((getline line < predict) > 0) {
                if (line ~ /^#/) continue
                split(line, f, " "); sub(/\/.*/, "", f[length(f)]); pick[f[1]] = f[length(f)]
                if (pick[f[1]] == "chain") pick[f[1]] = "ring"  # RDX_ALGO=ring runs the chain
            }
            printf "%12s %-13s %10s %10s %9s %-13s %10s %11s\n", "bytes", "best forced", "time_us",
                   "auto_us", "auto/best", "model picks", "pick_us", "pick/best"
            bad = 0; rows = 0; badpick = 0
        }
        /^#/ { next }
        {
            best = ""; bt = 0; at = -1
            for (j = 1; j <= n; j++) {
                v = $(j + 1); if (v == "-") continue
                if (a[j] == "auto") { at = v; continue }
                if (best == "" || v + 0 < bt) { best = a[j]; bt = v + 0 }
            }
            ratio = (at > 0 && bt > 0) ? at / bt : 0
            # the forced run of the algorithm auto picks: its ratio is the cost of the choice,
            # auto/best also holds run-to-run noise (the same algorithm timed twice)
            pt = -1
            for (j = 1; j <= n; j++) if (($1 in pick) && a[j] == pick[$1] && $(j + 1) != "-") pt = $(j + 1)
            pratio = (pt > 0 && bt > 0) ? pt / bt : 0
            flag = ratio > 1.10 ? "  auto > 10%" : ""
            if (pratio > 1.10) { badpick++; flag = flag "  pick > 10%" }
            if (ratio > 1.10) bad++
            rows++
            printf "%12d %-13s %10.2f %10.2f %9.2f %-13s %10.2f %11.2f%s\n", $1, best, bt, at, ratio,
                   ($1 in pick) ? pick[$1] : "?", pt, pratio, flag
            if (best != prevbest && prevbest != "") measured = measured sprintf(" %s->%s at %d B;", prevbest, best, $1)
            if (($1 in pick) && pick[$1] != prevpick && prevpick != "") predicted = predicted sprintf(" %s->%s at %d B;", prevpick, pick[$1], $1)
            prevbest = best; if ($1 in pick) prevpick = pick[$1]
        }
        END {
            printf "crossovers measured (best forced):%s\n", measured == "" ? " none" : measured
            printf "crossovers predicted (model):     %s\n", predicted == "" ? " none" : predicted
            printf "auto more than 10%% slower than the best forced algorithm at %d of %d sizes\n", bad, rows
            printf "the model'"'"'s pick (its forced run) more than 10%% slower than the best at %d of %d sizes\n", badpick, rows
        }' "$OUT/$COLL.$env.dat"
}

plot() {
    local env=$1
    command -v gnuplot >/dev/null || { echo "sweep.sh: gnuplot missing: no PNG" >&2; return; }
    gnuplot -e "dat='$OUT/$COLL.$env.dat'; pred='$OUT/$COLL.$env.predict'; out='$OUT/$COLL.$env.png'; \
                title='$COLL, $NP ranks, $env'; nalgo=$(echo $ALGOS | wc -w); \
                algos='$ALGOS'; palgos='$(sed -n 2p "$OUT/$COLL.$env.predict" | \
                sed 's/^# bytes //; s/ auto$//')'" "$HERE/sweep.gp" || echo "sweep.sh: gnuplot failed" >&2
}

for env in $ENVS; do
    sweep_env "$env"
done
echo "sweep.sh: results in $OUT"
exit $failed
