#!/bin/sh
# Checks rdx-run end to end: output tagging, rank environment, first-failure handling,
# signals, timeout, usage errors. Usage: rdx_run_test.sh PATH/TO/rdx-run   (takes ~5 s)
set -u
RUN=${1:?usage: $0 PATH/TO/rdx-run}
[ -x "$RUN" ] || { echo "FAIL: $RUN is not executable"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# run NAME ARGS...: runs rdx-run, records status, duration, stdout and stderr.
run() {
    name=$1; shift
    t0=$(now_ms)
    "$RUN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    status=$?
    took=$(( $(now_ms) - t0 ))
}
expect_status() { [ "$status" -eq "$1" ] || { fail "$2: status $status, want $1"; cat "$TMP/$name.err"; return 1; }; }
expect_in() { grep -qF -- "$2" "$TMP/$name.$1" || { fail "$name: '$2' not in std$1"; sed 's/^/    /' "$TMP/$name.$1"; return 1; }; }

# 1. All ranks succeed: every line tagged on its own stream, status 0.
run ok -n 3 sh -c 'echo hi; echo oops >&2; printf "no newline"; exit 0'
expect_status 0 "3 ranks exiting 0" &&
    expect_in out "[0] hi" && expect_in out "[1] hi" && expect_in out "[2] hi" &&
    expect_in err "[2] oops" && expect_in out "[1] no newline" &&
    [ "$(grep -c '^\[[0-2]\] hi$' "$TMP/ok.out")" -eq 3 ] &&
    pass "3 ranks exit 0: status 0, 3 tagged lines per stream, partial last line flushed ($took ms)"

# 2. Rank environment: distinct ranks, one shared address and 32-hex-digit key.
run env -n 4 --transport verbs sh -c 'echo "$RDX_RANK $RDX_LOCAL_RANK $RDX_SIZE $RDX_ADDR $RDX_JOB_KEY $RDX_TRANSPORT"'
expect_status 0 "environment" &&
    [ "$(cut -d' ' -f2 "$TMP/env.out" | sort | tr '\n' ' ')" = "0 1 2 3 " ] &&
    [ "$(awk '$2 == $3 && $4 == 4' "$TMP/env.out" | wc -l)" -eq 4 ] &&
    [ "$(cut -d' ' -f5,6,7 "$TMP/env.out" | sort -u | wc -l)" -eq 1 ] &&
    grep -Eq '^\[0\] 0 0 4 127\.0\.0\.1:[0-9]+ [0-9a-f]{32} verbs$' "$TMP/env.out" &&
    pass "RDX_RANK/LOCAL_RANK/SIZE/ADDR/JOB_KEY/TRANSPORT set per rank" ||
    { fail "environment"; cat "$TMP/env.out"; }

# 3. A failing rank stops the others quickly and its code is the launcher's.
run exit3 -n 3 sh -c 'if [ $RDX_RANK = 1 ]; then exit 3; fi; sleep 30'
expect_status 3 "rank 1 exits 3" &&
    expect_in err "rdx-run: rank 1 exited with code 3" &&
    { [ "$took" -lt 5000 ] || fail "exit 3 took $took ms"; } &&
    pass "rank 1 exit 3: status 3, message, others stopped in $took ms"

# 4. A rank killed by a signal: 128+9, named by signal.
run kill9 -n 2 sh -c 'if [ $RDX_RANK = 1 ]; then kill -9 $$; fi; sleep 30'
expect_status 137 "rank 1 killed by SIGKILL" &&
    expect_in err "rdx-run: rank 1 killed by signal SIGKILL" &&
    { [ "$took" -lt 5000 ] || fail "kill -9 took $took ms"; } &&
    pass "rank 1 kill -9: status 137, message, others stopped in $took ms"

# 5. Ranks ignoring SIGTERM get SIGKILL after the 3 s grace.
run stubborn -n 2 sh -c 'trap "" TERM; if [ $RDX_RANK = 0 ]; then sleep 0.5; exit 4; fi; sleep 30'
expect_status 4 "stubborn rank" &&
    expect_in err "sending SIGKILL" &&
    { [ "$took" -ge 3400 ] && [ "$took" -lt 6500 ] || fail "stubborn took $took ms"; } &&
    pass "rank ignoring SIGTERM killed after grace ($took ms)"

# 6. --timeout kills everything and exits 124.
run timeout -n 2 --timeout 0.5 sleep 30
expect_status 124 "--timeout" && expect_in err "timeout after 0.5 s" &&
    { [ "$took" -lt 3000 ] || fail "timeout took $took ms"; } &&
    pass "--timeout 0.5: status 124 in $took ms"

# 7. Ctrl-C from a terminal hits rdx-run's whole process group; each rank must see it once,
# so each rank leads a process group of its own and rdx-run forwards the signal.
run pgrp -n 2 sh -c 'set -- $(cat /proc/$$/stat); [ "$5" = "$$" ] && echo own-group'
[ "$(grep -c 'own-group' "$TMP/pgrp.out")" -eq 2 ] &&
    pass "each rank leads its own process group" ||
    { fail "ranks share rdx-run's process group"; cat "$TMP/pgrp.out"; }
setsid "$RUN" -n 2 sh -c 'trap "echo got INT" INT; sleep 1 & wait; sleep 1 & wait; exit 7' \
    >"$TMP/int.out" 2>"$TMP/int.err" &
pid=$!
sleep 0.5
env kill -INT -- "-$pid" || fail "cannot signal process group $pid"
wait "$pid"
status=$?
name=int
[ "$(grep -c 'got INT' "$TMP/int.out")" -eq 2 ] && expect_status 7 "SIGINT" &&
    pass "SIGINT to the launcher's group: forwarded, each rank got it once, status 7" ||
    { fail "SIGINT forwarding (status $status)"; cat "$TMP/int.out" "$TMP/int.err"; }

# 8. Usage errors exit 2; a missing program exits 127.
for args in "" "-n 0 true" "-n 1025 true" "-n 2" "--bogus -n 2 true" "-n 2 --transport tcp true"; do
    # shellcheck disable=SC2086
    run usage $args
    [ "$status" -eq 2 ] || fail "rdx-run $args: status $status, want 2"
done
run notfound -n 2 no-such-program-xyz
expect_status 127 "missing program" && expect_in err "command not found" &&
    pass "usage errors exit 2, missing program exits 127"

if [ "$FAILS" -ne 0 ]; then
    echo "rdx_run_test: $FAILS check(s) failed"
    exit 1
fi
echo "rdx_run_test: all checks passed"
