#!/bin/sh
# rdx-info --calibrate end to end on 2 ranks over shared memory: the probe and the per-algorithm
# fit run, the calibration line carries both and is what the next communicator reads
# (rdx-info --predict names it), --dry-run writes nothing, --no-fit writes no fit.
# Usage: rdx_info_calibrate_test.sh BUILD_DIR   (takes ~5 s)
set -u
BIN=${1:?usage: $0 BUILD_DIR}/bin
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "PASS: $*"; }
export RDX_TIMEOUT_MS=60000

# 1. calibrate with the fit: a ucx:shm line with fit_ranks=2 and six factors per algorithm
if timeout 120 "$BIN/rdx-run" -n 2 "$BIN/rdx-info" --calibrate --file "$TMP/cal" > "$TMP/out" 2>&1; then
    line=$(grep '^ucx:shm ' "$TMP/cal")
    ok=1
    for a in ring tree rd rabenseifner; do
        v=$(printf '%s\n' "$line" | sed -n "s/.* $a=\([0-9.,]*\).*/\1/p")
        [ "$(printf '%s' "$v" | tr ',' '\n' | grep -c '^[0-9][0-9.]*$')" -eq 6 ] ||
            { fail "calibrate: $a has no six factors in: $line"; ok=0; }
    done
    case "$line" in *" fit_ranks=2 "*) ;; *) fail "calibrate: no fit_ranks=2 in: $line"; ok=0 ;; esac
    grep -q "fit (measured / formula" "$TMP/out" || { fail "calibrate: no fit report"; ok=0; }
    [ $ok = 1 ] && pass "calibrate writes the probe and the fit"
else
    fail "calibrate exited non-zero"; sed 's/^/    /' "$TMP/out"
fi

# 2. the next communicator of 2 ranks reads it
if timeout 60 "$BIN/rdx-run" -n 2 "$BIN/rdx-info" --predict --file "$TMP/cal" > "$TMP/pred" 2>&1 &&
    grep -q "model (calibration $TMP/cal)" "$TMP/pred"; then
    pass "predict reads the calibration"
else
    fail "predict did not use $TMP/cal"; sed 's/^/    /' "$TMP/pred"
fi

# 3. --dry-run writes nothing; --no-fit writes a line without a fit
if timeout 60 "$BIN/rdx-run" -n 2 "$BIN/rdx-info" --calibrate --dry-run --file "$TMP/dry" > "$TMP/dryout" 2>&1 &&
    [ ! -e "$TMP/dry" ]; then
    pass "--dry-run writes nothing"
else
    fail "--dry-run"; sed 's/^/    /' "$TMP/dryout"
fi
if timeout 60 "$BIN/rdx-run" -n 2 "$BIN/rdx-info" --calibrate --no-fit --file "$TMP/nofit" > "$TMP/nofitout" 2>&1 &&
    grep -q '^ucx:shm alpha_us=' "$TMP/nofit" && ! grep -q fit_ranks "$TMP/nofit"; then
    pass "--no-fit writes the probe only"
else
    fail "--no-fit"; sed 's/^/    /' "$TMP/nofitout"; cat "$TMP/nofit" 2>/dev/null
fi

[ $FAILS = 0 ] && echo "rdx_info_calibrate_test: all passed" && exit 0
echo "rdx_info_calibrate_test: $FAILS failed"; exit 1
