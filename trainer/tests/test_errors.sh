#!/usr/bin/env bash
# Failures are errors that say what and where: diverged weights name the rank, ranks
# started with different options refuse to train, a resume with another rank count or a
# missing data set is refused with the reason.
# usage: test_errors.sh BUILD_DIR
BUILD=$1
. "$(dirname "$0")/common.sh"
small=(--layers 784,16,10 --epochs 1 --batch 32 --train-limit 640 --test-limit 200 --quiet)

TRAINER_INJECT_DIVERGENCE=1:3 train_fails 2 "$TMP/div.log" "${small[@]}" --check-every 5
grep -q "weights after step 5: ranks disagree: rank 0 has 0x[0-9a-f]*, different on rank 1" \
    "$TMP/div.log" || { cat "$TMP/div.log"; fail "divergence not reported with the rank"; }

# Rank 1 gets another learning rate (the wrapper reads the rank from the launcher's env).
cat >"$TMP/skew.sh" <<WRAP
#!/bin/sh
r=\${RDX_RANK:-\${OMPI_COMM_WORLD_RANK:-0}}
if [ "\$r" = 1 ]; then exec "$TRAIN" "\$@" --lr 0.2; else exec "$TRAIN" "\$@"; fi
WRAP
chmod +x "$TMP/skew.sh"
TRAIN=$TMP/skew.sh train_fails 2 "$TMP/skew.log" "${small[@]}"
grep -q "options (compare the rdx-train command lines): ranks disagree: .* different on rank 1" \
    "$TMP/skew.log" || { cat "$TMP/skew.log"; fail "option mismatch not reported"; }

train 2 "$TMP/ck.log" "${small[@]}" --checkpoint-dir "$TMP/ck"
train_fails 1 "$TMP/res.log" "${small[@]}" --checkpoint-dir "$TMP/ck" --resume
grep -q "none of rank 0\|same rank count\|options differ" "$TMP/res.log" ||
    { cat "$TMP/res.log"; fail "resume with another rank count not refused with a reason"; }

train_fails 1 "$TMP/nodata.log" "${small[@]}" --data /nonexistent
grep -q "rank 0: loading data: /nonexistent/train-images-idx3-ubyte.gz: cannot open" \
    "$TMP/nodata.log" || { cat "$TMP/nodata.log"; fail "missing data not reported"; }

train_fails 4 "$TMP/batch.log" "${small[@]}" --batch 3
grep -q -- "--batch 3 is smaller than the 4 ranks" "$TMP/batch.log" ||
    { cat "$TMP/batch.log"; fail "batch smaller than ranks not reported"; }
echo "ok: divergence, option mismatch, resume mismatch, missing data, tiny batch"
