#!/bin/bash
# run_matrix.sh - run coll_check under rdx-run for n = 1, 2, 3, 4; fail if any run fails.
#
# Usage: run_matrix.sh BUILD_DIR [RUN_ARG...] [-- COLL_CHECK_ARG...]
#   RUN_ARG   NAME=VALUE words are exported (e.g. RDX_UCX_TLS=tcp); anything else is passed
#             to rdx-run before the program (e.g. --transport verbs).
#   COLL_CHECK_ARG  passed to coll_check after -v (e.g. --quick, --dtype float32).
# Environment:
#   RUN_MATRIX_NPS      rank counts to run (default "1 2 3 4")
#   RUN_MATRIX_TIMEOUT  seconds per run before it counts as a hang (default 300)
#   COLL_CHECK          the checker binary (default BUILD_DIR/bin/coll_check)
# Every run has a timeout: a hang is a failure. Output of each run is printed, prefixed
# with the rank count; a summary line per run and an overall verdict end the output.
set -u

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -lt 1 ] && exit 2 || exit 0
fi
BUILD_DIR=$1
shift

RUN_ARGS=()
CHECK_ARGS=(-v)  # per-dtype timings in the log
while [ $# -gt 0 ]; do
    case $1 in
        --) shift; CHECK_ARGS+=("$@"); break ;;
        [A-Za-z_]*=*) export "${1?}" ;;
        *) RUN_ARGS+=("$1") ;;
    esac
    shift
done

RDX_RUN=$BUILD_DIR/bin/rdx-run
CHECK=${COLL_CHECK:-$BUILD_DIR/bin/coll_check}
NPS=${RUN_MATRIX_NPS:-1 2 3 4}
TIMEOUT=${RUN_MATRIX_TIMEOUT:-300}

for f in "$RDX_RUN" "$CHECK"; do
    if [ ! -x "$f" ]; then
        echo "run_matrix: $f not found or not executable (build first)" >&2
        exit 2
    fi
done

# Which transport settings this run uses, for the log (only the variables that are set).
settings=""
for v in RDX_TRANSPORT RDX_UCX_TLS RDX_CHUNK_BYTES RDX_SLOTS RDX_ALGO RDX_POOL_MB; do
    [ -n "${!v:-}" ] && settings="$settings $v=${!v}"
done
echo "run_matrix: ranks {$NPS}, timeout ${TIMEOUT}s per run, env:${settings:- (defaults)}," \
     "rdx-run args: ${RUN_ARGS[*]:-(none)}, coll_check args: ${CHECK_ARGS[*]:-(none)}"

failed=()
for np in $NPS; do
    start=$(date +%s%N)
    # -k: if rdx-run does not end its ranks on SIGTERM, SIGKILL it 10 s later.
    timeout -k 10 "$TIMEOUT" "$RDX_RUN" -n "$np" "${RUN_ARGS[@]}" -- "$CHECK" "${CHECK_ARGS[@]}" \
        2>&1 | sed "s/^/[n=$np] /"
    rc=${PIPESTATUS[0]}
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    case $rc in
        0) verdict="ok" ;;
        124|137) verdict="TIMEOUT after ${TIMEOUT}s (exit $rc)" ;;
        *) verdict="FAILED (exit $rc)" ;;
    esac
    printf 'run_matrix: n=%s: %s, %d.%03d s\n' "$np" "$verdict" $((ms / 1000)) $((ms % 1000))
    [ "$rc" -ne 0 ] && failed+=("n=$np")
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "run_matrix: FAILED: ${failed[*]}"
    exit 1
fi
echo "run_matrix: all passed (n = $NPS)"
exit 0
