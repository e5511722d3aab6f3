#!/usr/bin/env bash
# verbs-suite.sh BUILD_DIR - every verbs test, run where an RDMA device is: inside the
# soft-RoCE guest (run-verbs-suite.sh boots it) or natively. Each test runs under its own
# timeout; output of a failed test is shown. Ends with "N passed, N failed, N skipped".
#
#   VERBS_TEST_TIMEOUT=S        per-test limit (default 180)
#   VERBS_COLL_TIMEOUT=S        per coll_check run (default 300)
#   RDX_VERBS_SUITE_ONLY=REGEX  run only matching tests
set -u
BUILD=$(cd "${1:?usage: verbs-suite.sh BUILD_DIR}" && pwd -P)
T=${VERBS_TEST_TIMEOUT:-180}
CT=${VERBS_COLL_TIMEOUT:-300}  # per collective-suite run
ONLY=${RDX_VERBS_SUITE_ONLY:-.}
LOG=$(mktemp -d /tmp/verbs-suite.XXXXXX)
TB=$BUILD/tests BIN=$BUILD/bin
pass=0 fail=0 skip=0
T_SUITE=$(date +%s.%N)

el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# t NAME CMD... : runs CMD with a timeout, PASS iff exit status 0
t() {
  local name=$1; shift
  [[ $name =~ $ONLY ]] || return 0
  local t0 rc; t0=$(date +%s.%N)
  timeout -k 10 "$T" "$@" > "$LOG/$name.log" 2>&1; rc=$?
  if [ $rc = 0 ]; then
    pass=$((pass + 1)); echo "PASS $name ($(el "$t0") s)"
    grep -E '^(rank [0-9]+: OK: got|verbs_perf: )|coll_check: [0-9]+ cases passed|^(fault_inject|mismatch): .*passed' "$LOG/$name.log" |
      head -4 |
      sed 's/^/    /'
  else
    local why="exit $rc"; [ $rc = 124 ] && why="timed out after $T s"
    fail=$((fail + 1)); echo "FAIL $name ($(el "$t0") s, $why)"
    echo "    command: $*"; tail -n 25 "$LOG/$name.log" | sed 's/^/    /'
  fi
}
skipped() { [[ $1 =~ $ONLY ]] || return 0; skip=$((skip + 1)); echo "SKIP $1 ($2)"; }

echo "verbs-suite: $(uname -r), $(nproc) CPUs, devices: $(ls /sys/class/infiniband 2>/dev/null | tr '\n' ' ')"

# ---- transport level: real processes, real bootstrap, the verbs transport alone
t gid            "$TB/verbs_gid"
# 64 KiB slots keep the emulated guest quick; one run keeps the default slot size.
t ring2          env RDX_CHUNK_BYTES=64K "$TB/verbs_stream" -n 2 -m 1000
t ring3          env RDX_CHUNK_BYTES=64K "$TB/verbs_stream" -n 3 -m 600
t all4           env RDX_CHUNK_BYTES=64K "$TB/verbs_stream" -n 4 -m 150 --all
t ring2_default_slot "$TB/verbs_stream" -n 2 -m 60
t slots2_sig1    env RDX_CHUNK_BYTES=4K RDX_SLOTS=2 "$TB/verbs_stream" -n 3 -m 500 --all
t slow_receiver  env RDX_CHUNK_BYTES=64K "$TB/verbs_stream" -n 3 -m 120 --slow 1:3000
t peer_exits     env RDX_CHUNK_BYTES=64K "$TB/verbs_stream" -n 3 -m 1000000 --die 2:40 --deadline 60
if [ "$(id -u)" = 0 ] && ! command -v setpriv >/dev/null; then
  skipped memlock "root needs setpriv to drop CAP_IPC_LOCK"
else
  # root ignores RLIMIT_MEMLOCK while it holds CAP_IPC_LOCK: drop it, like an unprivileged job
  DROP=(); [ "$(id -u)" = 0 ] && DROP=(setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock --)
  t memlock bash -c 'ulimit -l 64 && exec "$@"' memlock ${DROP[@]+"${DROP[@]}"} \
      env RDX_CHUNK_BYTES=64K "$TB/verbs_stream" -n 2 --expect-memlock --deadline 30
fi

# ---- the collective correctness suite (tests/mp/run_matrix.sh: rdx-run + coll_check) over
# verbs, n = 1..8, every dtype and op, in place and not, nonblocking rounds. --quick drops the
# 1M-element count: the guest CPU is emulated.
SRC=$(cd "$(dirname "$0")/../.." && pwd -P)
if [ -x "$BIN/rdx-run" ] && [ -x "$BIN/coll_check" ] && [ -x "$SRC/tests/mp/run_matrix.sh" ]; then
  # Up to 8 ranks on 2 vCPUs: a run takes 2-110 s depending on n and host load.
  # RDX_TIMEOUT_MS below the run's limit turns a real hang into an rdx error with a dump.
  for n in 1 2 3 4 5 6 7 8; do
    T=$CT t "coll_check_n$n" env RUN_MATRIX_NPS=$n RUN_MATRIX_TIMEOUT=$((CT - 10)) \
        RDX_TIMEOUT_MS=$(( (CT - 60) * 1000 )) \
        "$SRC/tests/mp/run_matrix.sh" "$BUILD" --transport verbs -- --quick
  done
else
  skipped coll_check "no $BIN/rdx-run, $BIN/coll_check or tests/mp/run_matrix.sh"
fi

# ---- rdx-perf over verbs with every size checked (exit 1 if any element is wrong)
if [ -x "$BIN/rdx-run" ] && [ -x "$BIN/rdx-perf" ]; then
  t rdx_perf_check_n2 env RDX_TIMEOUT_MS=120000 "$BIN/rdx-run" -n 2 --transport verbs \
      "$BIN/rdx-perf" -c 1 -e 4M -w 1 -n 3
else
  skipped rdx_perf_check_n2 "no $BIN/rdx-perf"
fi

# ---- point-to-point over verbs (collectives/p2p.c) and the zero-copy send path
# verbs_zcopy: p2p sends over the verbs transport from registered and unregistered memory,
# both directions at once, buffer reuse right after completion; the transport's zero-copy
# counter must move exactly for registered chunks of >= 4 KiB.
t zcopy "$TB/verbs_zcopy" --deadline 120
if [ -x "$BIN/rdx-run" ] && [ -x "$BIN/p2p_check" ] && [ -x "$SRC/tests/mp/run_p2p.sh" ]; then
  # the public API (rdx_send/recv/isend/irecv) over verbs, n = 2 and 3, and a count mismatch
  t p2p_check env RUN_P2P_NPS="2 3" RUN_P2P_TIMEOUT=150 "$SRC/tests/mp/run_p2p.sh" "$BUILD" \
      --transport verbs
else
  skipped p2p_check "no $BIN/p2p_check"
fi
if [ -x "$BIN/rdx-run" ] && [ -x "$BIN/rdx-perf" ]; then
  # rdx-perf --pt2pt checked at every size; RDX_LOG=debug prints the zero-copy count at
  # destroy, which must be non-zero on the sending rank (registered buffers, >= 4 KiB)
  t rdx_perf_pt2pt_n2 env RDX_LOG=debug bash -c '"$1" -n 2 --transport verbs "$2" --pt2pt -b 16 -e 1M -f 4 \
      -n 30 -c 1 > "$3" 2>&1; rc=$?; grep -E "^\[0\] +[0-9#]|wrong" "$3";
      grep -E "zero-copy: [1-9][0-9]* messages" "$3" | sed "s/.*DEBUG [^ ]* //";
      [ $rc = 0 ] && grep -q "# wrong: 0" "$3" && grep -qE "zero-copy: [1-9]" "$3"' \
      pt2pt "$BIN/rdx-run" "$BIN/rdx-perf" "$LOG/pt2pt.out"
else
  skipped rdx_perf_pt2pt_n2 "no $BIN/rdx-perf"
fi

# ---- every collective under every forced algorithm and auto over verbs, n = 1..8
# (tests/mp/coll_check_more.c: allreduce ring/tree/rd/rabenseifner, reduce_scatter,
# allgather, broadcast and reduce chain/tree, barrier, nonblocking mixes, rdx_comm_split);
# --quick (its dtypes: int32 uint8 float32 bfloat16 float64; counts to 65537): 1-, 2-, 4- and
# 8-byte elements move through the verbs slots, every algorithm, every collective.
if [ -x "$BIN/rdx-run" ] && [ -x "$BIN/coll_check_more" ] && [ -x "$SRC/tests/mp/run_matrix.sh" ]; then
  for n in 1 2 3 4 5 6 7 8; do
    T=$CT t "coll_check_more_n$n" env COLL_CHECK="$BIN/coll_check_more" RUN_MATRIX_NPS=$n \
        RUN_MATRIX_TIMEOUT=$((CT - 10)) RDX_TIMEOUT_MS=$(( (CT - 60) * 1000 )) \
        "$SRC/tests/mp/run_matrix.sh" "$BUILD" --transport verbs -- --quick
  done
else
  skipped coll_check_more "no $BIN/coll_check_more"
fi

# ---- failure handling (tests/fault/fault_inject.c): SIGKILL a random rank of 4 at a random
# step of mixed collectives; every survivor must return RDX_ERR_PEER_LOST naming it (~3.3 s a
# trial in the TCG guest: 50 trials ~165 s)
T=300 t fault_inject env RDX_TRANSPORT=verbs "$TB/fault_inject" --trials 50 --max-step 40 --max-bytes 65536
# Ranks calling different collectives, counts, dtypes, ops or roots: RDX_ERR_MISMATCH on every
# rank, from the fingerprints or (different reduce roots) the stall reports at the timeout.
T=300 t fault_mismatch env RDX_TRANSPORT=verbs "$TB/fault_mismatch" --ranks 3

rm -rf "$LOG"
echo "verbs-suite: $pass passed, $fail failed, $skip skipped in $(el "$T_SUITE") s"
[ $fail = 0 ]
