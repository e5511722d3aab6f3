#!/bin/bash
# compare_ompi.sh - rdx allreduce against Open MPI's MPI_Allreduce, same sitting, interleaved.
#
# Usage: perf/compare_ompi.sh [-r REPEATS] [-n NP] [-B BUILD_DIR] [-o OUT_DIR] [-m MAXBYTES]
#   -r  repeats of each system, interleaved (default 3)
#   -n  ranks (default 2)
#   -B  rdx build directory holding bin/rdx-run and bin/rdx-perf (default: <repo>/build)
#   -o  where raw outputs go (default: a new directory under /tmp)
#   -m  largest size (default 256M)
# Environment: OMPI_BASELINE_DIR (default <repo>/../shared/baselines, holding mpi_bench.sh).
#
# Runs R times, alternating which system goes first:
#   rdx-run -n NP rdx-perf -b 4 -e 256M -f 4 -d float32 [--bind] --json FILE
#   OMPI_BASELINE_DIR/mpi_bench.sh ompi-default NP
# --bind pins rank r to CPU r like mpi_bench.sh's --bind-to core; both bind only when
# NP <= 2 (mpi_bench.sh oversubscribes without binding above that).
# Prints medians over the runs (min-max in parentheses): 4 B latency, busbw at 1 MiB,
# 16 MiB and 256 MiB, and the ratio rdx / ompi. A benchmark, not a test: it asserts
# nothing except that both programs ran and checked their results.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
REPEATS=3
NP=2
BUILD=$REPO/build
OUT=""
MAXB=256M
while getopts "r:n:B:o:m:h" opt; do
    case $opt in
        r) REPEATS=$OPTARG ;;
        n) NP=$OPTARG ;;
        B) BUILD=$OPTARG ;;
        o) OUT=$OPTARG ;;
        m) MAXB=$OPTARG ;;
        *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/compare_ompi.XXXXXX)
mkdir -p "$OUT"

RDX_RUN=$BUILD/bin/rdx-run
RDX_PERF=$BUILD/bin/rdx-perf
for f in "$RDX_RUN" "$RDX_PERF"; do
    [ -x "$f" ] || { echo "compare_ompi: $f missing: build rdx first (-B BUILD_DIR)" >&2; exit 2; }
done
BIND=()
[ "$NP" -le 2 ] && BIND=(--bind)

# ---- the Open MPI baseline: the shared script and its binary, or a private build of them --
BASE=${OMPI_BASELINE_DIR:-$REPO/../shared/baselines}
MPI_BENCH=""
if [ -x "$BASE/mpi_bench.sh" ] && [ -x "$BASE/allreduce_bench.openmpi" ]; then
    MPI_BENCH=$BASE/mpi_bench.sh
    echo "compare_ompi: Open MPI baseline: $MPI_BENCH (prebuilt binary)"
elif [ -f "$BASE/mpi_bench.sh" ] && [ -f "$BASE/allreduce_bench.c" ] &&
     command -v mpicc.openmpi >/dev/null && command -v mpirun.openmpi >/dev/null; then
    # The shared directory is read-only and its binary is not built: build the same source
    # with the same command as its build.sh, next to a copy of the same script.
    mkdir -p "$OUT/ompi-baseline"
    cp "$BASE/mpi_bench.sh" "$BASE/allreduce_bench.c" "$OUT/ompi-baseline/"
    if mpicc.openmpi -O2 -Wall -o "$OUT/ompi-baseline/allreduce_bench.openmpi" \
           "$OUT/ompi-baseline/allreduce_bench.c"; then
        chmod +x "$OUT/ompi-baseline/mpi_bench.sh"
        MPI_BENCH=$OUT/ompi-baseline/mpi_bench.sh
        echo "compare_ompi: $BASE/allreduce_bench.openmpi is not built; built the same source" \
             "into $OUT/ompi-baseline and run a copy of mpi_bench.sh from there"
    fi
fi
if [ -z "$MPI_BENCH" ]; then
    echo "compare_ompi: Open MPI baseline unavailable (need $BASE/mpi_bench.sh with" \
         "allreduce_bench.openmpi, or allreduce_bench.c and mpicc.openmpi): rdx only"
fi

echo "compare_ompi: np=$NP, $REPEATS runs each, interleaved; raw outputs in $OUT"

run_rdx() {
    local r=$1
    echo "# cmd: $RDX_RUN -n $NP $RDX_PERF -b 4 -e $MAXB -f 4 -d float32 ${BIND[*]}" \
         "--json $OUT/rdx.$r.json" >"$OUT/rdx.$r.txt"
    timeout -k 10 900 "$RDX_RUN" -n "$NP" "$RDX_PERF" -b 4 -e "$MAXB" -f 4 -d float32 \
        "${BIND[@]}" --json "$OUT/rdx.$r.json" >>"$OUT/rdx.$r.txt" 2>&1
    local rc=$?
    echo "compare_ompi: run $r: rdx-perf exit $rc$([ $rc -ne 0 ] && echo ' (see rdx.'$r'.txt)')"
}

run_ompi() {
    local r=$1
    [ -n "$MPI_BENCH" ] || return 0
    local maxbytes
    maxbytes=$(numfmt --from=iec "$MAXB" 2>/dev/null || echo 268435456)
    "$MPI_BENCH" ompi-default "$NP" -m "$maxbytes" >"$OUT/ompi.$r.txt" 2>&1
    local rc=$?
    echo "compare_ompi: run $r: mpi_bench.sh ompi-default exit $rc"
}

for r in $(seq 1 "$REPEATS"); do
    if [ $((r % 2)) -eq 1 ]; then run_rdx "$r"; run_ompi "$r"; else run_ompi "$r"; run_rdx "$r"; fi
done

# ---- extraction: one "bytes time_us busbw" line per size ---------------------------------
rdx_rows() {  # rdx-perf JSON: one row per line
    sed -n 's/.*"bytes":\([0-9]*\).*"time_us":\([0-9.eE+-]*\).*"busbw_gbs":\([0-9.eE+-]*\).*/\1 \2 \3/p' "$1"
}
ompi_rows() {  # allreduce_bench: size count iters reps avg_us best_us algbw busbw check
    awk '!/^#/ && NF == 9 && $1 ~ /^[0-9]+$/ { print $1, $5, $8 }' "$1"
}
# value FILE-KIND BYTES FIELD(2=time_us,3=busbw) over all runs, one per line
values() {
    local kind=$1 bytes=$2 field=$3 f
    for f in "$OUT/$kind".*.txt; do
        [ -f "$f" ] || continue
        if [ "$kind" = rdx ]; then
            local j=${f%.txt}.json
            [ -f "$j" ] && rdx_rows "$j"
        else
            ompi_rows "$f"
        fi | awk -v b="$bytes" -v k="$field" '$1 == b { print $k }'
    done
}
# "median (min-max)" of stdin, or "n/a"
summary() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.3f (%.3f-%.3f)\n", m, v[1], v[NR] }'
}
median() { sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a";
                                           else printf "%.2f\n", a / b }'; }

metric_row() {  # LABEL BYTES FIELD
    local label=$1 bytes=$2 field=$3
    local rs os rm om
    rs=$(values rdx "$bytes" "$field" | summary)
    os=$(values ompi "$bytes" "$field" | summary)
    rm=$(values rdx "$bytes" "$field" | median)
    om=$(values ompi "$bytes" "$field" | median)
    printf '| %-22s | %-26s | %-26s | %-8s |\n' "$label" "$rs" "$os" "$(ratio "$rm" "$om")"
}

echo
echo "## rdx vs Open MPI (ompi-default), np=$NP, float32 sum, median (min-max) over $REPEATS runs"
echo
printf '| %-22s | %-26s | %-26s | %-8s |\n' "metric" "rdx" "ompi-default" "rdx/ompi"
printf '|%s|%s|%s|%s|\n' "------------------------" "----------------------------" \
       "----------------------------" "----------"
metric_row "latency 4 B (us)" 4 2
metric_row "busbw 1 MiB (GB/s)" 1048576 3
metric_row "busbw 16 MiB (GB/s)" 16777216 3
metric_row "busbw 256 MiB (GB/s)" 268435456 3
echo
echo "rdx/ompi: latency lower is better (< 1 = rdx faster); busbw higher is better."

# ---- checks both programs made ----------------------------------------------------------
bad=0
for f in "$OUT"/rdx.*.txt; do
    [ -f "$f" ] || continue
    grep -q "^.*# wrong: 0" "$f" || { echo "compare_ompi: $f: rdx-perf did not report 'wrong: 0'"; bad=1; }
done
rss=$(grep -ho "peak RSS: [0-9]* MiB" "$OUT"/rdx.*.txt 2>/dev/null | awk '{ print $3 }' | median)
[ -n "$rss" ] && echo "rdx-perf peak RSS (median over runs, max over ranks): $rss MiB"
if [ -n "$MPI_BENCH" ]; then
    for f in "$OUT"/ompi.*.txt; do
        [ -f "$f" ] || continue
        grep -q FAIL "$f" && { echo "compare_ompi: $f: the MPI benchmark saw a wrong result"; bad=1; }
        [ -n "$(ompi_rows "$f")" ] || { echo "compare_ompi: $f: no results"; bad=1; }
    done
fi
exit $bad
