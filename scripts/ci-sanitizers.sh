#!/usr/bin/env bash
# CI stage after the main and ASan suites (called by .ci/run; docs/testing.md):
#   fuzz      clang build of tests/fuzz (RDX_FUZZ=ON): replay the seed corpus, then run every
#             target for FUZZ_SECONDS (default 50). New inputs go to the build directory,
#             never into the repo; a crash or broken invariant fails CI and its reproducer
#             stays in BUILD/fuzz-artifacts/.
#   tsan      RDX_TSAN=ON build of the programs with threads: rdx-train's progress thread on
#             2 ranks (and its failure path), coll_check n=2 over UCX TCP (UCX runs an async
#             thread in every process). Any report fails the run.
#   valgrind  coll_check n=2 --quick over UCX TCP, every rank under memcheck; an error or a
#             definite leak fails the run (--error-exitcode).
# Usage: scripts/ci-sanitizers.sh [fuzz] [tsan] [valgrind]     (default: all three)
# Build directories: build-fuzzers, build-tsan, and build (the main one) for valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-50}
DATA=${TRAINER_TEST_DATA:-/usr/share/datasets/fashion-mnist}
JOBS=$(nproc)
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(fuzz tsan valgrind)

say() { echo "ci-sanitizers: $*"; }
die() { echo "ci-sanitizers: FAILED: $*" >&2; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 )); }

# UCX's memory hooks (libucm) intercept madvise/mmap. At thread exit glibc madvises the
# stack, ucm takes a lock TSan has already torn down for that thread, and the process
# crashes inside TSan. rdx registers its slabs explicitly and needs no hooks.
export UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no

stage_fuzz() {
    local B=build-fuzzers t0=$(date +%s)
    command -v clang >/dev/null || die "clang not found (scripts/setup.sh installs it)"
    cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
          -DRDX_FUZZ=ON -DRDX_BUILD_TESTS=OFF >/dev/null
    cmake --build $B -j"$JOBS" --target rdx_fuzzers >/dev/null
    say "fuzz: built in $(elapsed "$t0") s"
    # (RDX_BUILD_TESTS=OFF: the fuzz tests live in tests/fuzz's own CTest file)
    ( cd $B/tests/fuzz && ctest -L fuzz --no-tests=error --output-on-failure --timeout 120 ) ||
        die "fuzz: seed corpus replay"
    mkdir -p $B/fuzz-artifacts
    local t bin
    for bin in $B/fuzz/fuzz_*; do
        t=$(basename "$bin")
        mkdir -p "$B/fuzz-corpus/$t"
        if ! "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
                -print_final_stats=1 -artifact_prefix="$B/fuzz-artifacts/$t-" \
                "$B/fuzz-corpus/$t" "tests/fuzz/corpus/$t" >"$B/fuzz-artifacts/$t.log" 2>&1; then
            grep -E "invariant|ERROR|runtime error|SUMMARY|Test unit" "$B/fuzz-artifacts/$t.log" \
                | head -20 >&2 || true
            die "fuzz: $t found a failure (log and input in $B/fuzz-artifacts/)"
        fi
        local execs rate
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/fuzz-artifacts/$t.log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$B/fuzz-artifacts/$t.log")
        say "fuzz: $t: ${FUZZ_SECONDS} s, $execs executions ($rate/s), no failure"
    done
    say "fuzz: done in $(elapsed "$t0") s"
}

stage_tsan() {
    local B=build-tsan t0=$(date +%s)
    [ -e "$DATA/train-images-idx3-ubyte.gz" ] || [ -e "$DATA/train-images-idx3-ubyte" ] ||
        die "tsan: no Fashion-MNIST in $DATA (scripts/setup.sh installs dataset-fashion-mnist)"
    # Verbs cannot run on a host without RDMA (and GCC's TSan does not model its fence).
    cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRDX_TSAN=ON -DRDX_WITH_VERBS=OFF \
          >/dev/null
    cmake --build $B -j"$JOBS" --target rdx-run rdx-train coll_check >/dev/null
    say "tsan: built in $(elapsed "$t0") s"
    local supp=""
    [ -f tests/tsan.supp ] && supp=" suppressions=$ROOT/tests/tsan.supp"
    export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1$supp"
    local log=$B/tsan-logs
    mkdir -p $log
    local small=(--data "$DATA" --layers 784,24,10 --epochs 1 --train-limit 600
                 --test-limit 200 --batch 62 --seed 3 --quiet)
    # tsan_run NAME ENV... -- ARGS...: rdx-train on 2 ranks must succeed without a report.
    tsan_run() {
        local name=$1 envs=()
        shift
        while [ "$1" != "--" ]; do envs+=("$1"); shift; done
        shift
        local t=$(date +%s) rc=0
        env "${envs[@]}" timeout -k 10 600 $B/bin/rdx-run -n 2 $B/bin/rdx-train "${small[@]}" \
            "$@" >"$log/$name.log" 2>&1 || rc=$?
        if [ $rc -ne 0 ] || grep -q "ThreadSanitizer" "$log/$name.log"; then
            cat "$log/$name.log" >&2
            die "tsan: rdx-train $name (exit $rc)"
        fi
        say "tsan: rdx-train $name: clean, $(elapsed "$t") s"
    }
    # Progress thread (the default) with many buckets: a handoff per bucket.
    tsan_run shm-thread-buckets RDX_TRANSPORT=ucx -- --bucket-mb 0.004 --grad-dtype bf16
    # Failure path: rank 1's weights diverge at step 3, checked at step 5; the run must stop
    # with the divergence named while the progress threads are up, and without a report.
    local t=$(date +%s) rc=0
    TRAINER_INJECT_DIVERGENCE=1:3 timeout -k 10 600 $B/bin/rdx-run -n 2 $B/bin/rdx-train \
        "${small[@]}" --check-every 5 >"$log/diverge.log" 2>&1 || rc=$?
    if [ $rc -eq 0 ] || [ $rc -eq 124 ] || grep -q "ThreadSanitizer" "$log/diverge.log" ||
       ! grep -q "ranks disagree" "$log/diverge.log"; then
        cat "$log/diverge.log" >&2
        die "tsan: rdx-train divergence run (exit $rc; expected a reported divergence)"
    fi
    say "tsan: rdx-train diverge (expected failure path): clean, $(elapsed "$t") s"
    t=$(date +%s)
    RUN_MATRIX_NPS=2 tests/mp/run_matrix.sh $B RDX_UCX_TLS=tcp -- --quick >"$log/coll_tcp.log" 2>&1 ||
        { cat "$log/coll_tcp.log" >&2; die "tsan: coll_check n=2 over TCP"; }
    ! grep -q "ThreadSanitizer" "$log/coll_tcp.log" || { cat "$log/coll_tcp.log" >&2; die "tsan: report"; }
    say "tsan: coll_check n=2 --quick over TCP: clean, $(elapsed "$t") s"
    say "tsan: done in $(elapsed "$t0") s"
}

stage_valgrind() {
    local B=${BUILD_DIR:-build} t0=$(date +%s)
    command -v valgrind >/dev/null || die "valgrind not found (scripts/setup.sh installs it)"
    [ -x $B/bin/coll_check ] && [ -x $B/bin/rdx-run ] || BUILD_DIR=$B scripts/build.sh
    B=$(cd "$B" && pwd)
    # rdx-run starts this wrapper as each rank: memcheck on the real program. Every error,
    # and every definite leak, makes the rank exit 99, which fails rdx-run and the matrix.
    local wrap=$B/valgrind-coll_check.sh
    cat >"$wrap" <<EOF
#!/bin/sh
exec valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \\
    --show-leak-kinds=definite --num-callers=30 --gen-suppressions=all \\
    --suppressions=$ROOT/tests/valgrind.supp $B/bin/coll_check "\$@"
EOF
    chmod +x "$wrap"
    # Memcheck is ~20x slower: the collectives' deadline is raised so slowness is not a hang.
    RDX_TIMEOUT_MS=300000 RUN_MATRIX_NPS=2 RUN_MATRIX_TIMEOUT=600 COLL_CHECK=$wrap \
        tests/mp/run_matrix.sh $B RDX_UCX_TLS=tcp -- --quick || die "valgrind: coll_check n=2 over TCP"
    say "valgrind: coll_check n=2 --quick over UCX TCP: clean, $(elapsed "$t0") s"
}

start=$(date +%s)
for s in "${stages[@]}"; do
    case $s in
        fuzz) stage_fuzz ;;
        tsan) stage_tsan ;;
        valgrind) stage_valgrind ;;
        *) die "unknown stage '$s' (fuzz, tsan, valgrind)" ;;
    esac
done
say "all stages passed (${stages[*]}) in $(elapsed "$start") s"
