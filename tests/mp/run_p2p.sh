#!/bin/bash
# run_p2p.sh BUILD_DIR [RUN_ARG...] - tests/mp/p2p_check under rdx-run: n = 1, 2, 3, 4 (every
# check), the deliberate count mismatch and the deliberate send/send deadlock on 2 ranks. RUN_ARG: NAME=VALUE words are
# exported (RDX_UCX_TLS=tcp), anything else goes to rdx-run (--transport verbs).
# Every run has a timeout (RUN_P2P_TIMEOUT, default 120 s): a hang is a failure.
set -u
BUILD_DIR=${1:?usage: run_p2p.sh BUILD_DIR [RUN_ARG...]}
shift
RUN_ARGS=()
for a in "$@"; do
    case $a in
        [A-Za-z_]*=*) export "${a?}" ;;
        *) RUN_ARGS+=("$a") ;;
    esac
done
RDX_RUN=$BUILD_DIR/bin/rdx-run
CHECK=$BUILD_DIR/bin/p2p_check
T=${RUN_P2P_TIMEOUT:-120}
# RDX_TIMEOUT_MS below the run's limit: a real hang becomes an rdx error with a state dump.
export RDX_TIMEOUT_MS=${RDX_TIMEOUT_MS:-$(( (T - 20) * 1000 ))}
failed=()
for np in ${RUN_P2P_NPS:-1 2 3 4}; do
    t0=$(date +%s.%N)
    timeout -k 10 "$T" "$RDX_RUN" -n "$np" ${RUN_ARGS[@]+"${RUN_ARGS[@]}"} -- "$CHECK" 2>&1 |
        sed "s/^/[n=$np] /" | grep -v ': rdx_\(send\|recv\): ' # the deliberate bad-peer calls
    rc=${PIPESTATUS[0]}
    echo "run_p2p: n=$np exit $rc ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
    [ "$rc" = 0 ] || failed+=("n=$np")
done
out=$(timeout -k 10 "$T" "$RDX_RUN" -n 2 ${RUN_ARGS[@]+"${RUN_ARGS[@]}"} -- "$CHECK" --mismatch 2>&1)
rc=$?
echo "$out" | sed 's/^/[mismatch] /'
if [ "$rc" != 0 ] || ! grep -q 'rank 1: OK: receive of 101' <<<"$out"; then
    failed+=(mismatch)
fi
# The unsafe order (both ranks rdx_send more than the FIFO first) must end in an error with
# a state dump, not a hang: RDX_TIMEOUT_MS=3000.
out=$(RDX_TIMEOUT_MS=3000 timeout -k 10 "$T" "$RDX_RUN" -n 2 ${RUN_ARGS[@]+"${RUN_ARGS[@]}"} -- \
      "$CHECK" --deadlock 2>&1)
rc=$?
echo "$out" | grep -E 'OK|FAIL' | sed 's/^/[deadlock] /'
if [ "$rc" != 0 ] || ! grep -q 'waiting for credit' <<<"$out"; then
    failed+=(deadlock)
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "run_p2p: FAILED: ${failed[*]}"
    exit 1
fi
echo "run_p2p: all runs passed"
