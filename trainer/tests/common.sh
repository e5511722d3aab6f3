# Shared by the trainer's shell tests. Source after setting BUILD (the build directory).
#   TRAINER_TEST_LAUNCHER  how to start N ranks: "$LAUNCHER N prog args" (default: rdx-run -n)
#   TRAINER_TEST_BIN       the trainer binary (default: $BUILD/bin/rdx-train)
#   TRAINER_TEST_DATA      Fashion-MNIST directory (default: the Debian package's)
# (not RDX_*: the library warns about RDX_ variables it does not know)
set -euo pipefail
LAUNCHER=${TRAINER_TEST_LAUNCHER:-"$BUILD/bin/rdx-run -n"}
TRAIN=${TRAINER_TEST_BIN:-$BUILD/bin/rdx-train}
CMP=$BUILD/tests/weights_cmp
DATA=${TRAINER_TEST_DATA:-/usr/share/datasets/fashion-mnist}
TMP=$(mktemp -d /tmp/rdx-train-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export RDX_TIMEOUT_MS=${RDX_TIMEOUT_MS:-60000}

if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -e "$DATA/train-images-idx3-ubyte" ]; then
    echo "SKIP: no Fashion-MNIST in $DATA (install dataset-fashion-mnist)"
    exit 77
fi

fail() { echo "FAIL: $*" >&2; exit 1; }

# train N LOG args...: runs N ranks, output in LOG; fails the test if the run fails.
train() {
    local n=$1 log=$2
    shift 2
    if ! timeout 240 $LAUNCHER "$n" "$TRAIN" --data "$DATA" "$@" >"$log" 2>&1; then
        cat "$log" >&2
        fail "rdx-train -n $n $* exited with an error"
    fi
}

# train_fails N LOG args...: the run must fail (non-zero exit, within the timeout).
train_fails() {
    local n=$1 log=$2 rc=0
    shift 2
    timeout 240 $LAUNCHER "$n" "$TRAIN" --data "$DATA" "$@" >"$log" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] || { cat "$log" >&2; fail "rdx-train -n $n $* should have failed"; }
    [ "$rc" -ne 124 ] || { cat "$log" >&2; fail "rdx-train -n $n $* hung (timeout)"; }
}

# Fields of rank 0's final line: "rdx-train: done: S steps, test_acc A% test_loss L, ..."
final_acc() { sed -n 's/.*done: .* test_acc \([0-9.]*\)%.*/\1/p' "$1" | tail -n 1; }
final_hash() { sed -n 's/.*done: .* weights \(0x[0-9a-f]*\).*/\1/p' "$1" | tail -n 1; }

# ge A B: A >= B for decimals.
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
