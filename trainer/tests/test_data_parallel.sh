#!/usr/bin/env bash
# Data parallel on n ranks equals one process with the same global batch (tiny model).
#
# Same seed, data order and global batch: only the summation order differs (each rank sums
# its shard, the allreduce sums the ranks), so the weights agree to fp32 rounding amplified
# over the steps: measured ~1e-7 relative L2 after 19 steps. Tolerance 1e-5 relative L2;
# the control run with another seed differs by ~1 and must fail the same comparison.
# Shards are uneven on purpose (batch 62 on 4 ranks: 15, 15, 16, 16).
# usage: test_data_parallel.sh BUILD_DIR
BUILD=$1
. "$(dirname "$0")/common.sh"
TOL=1e-5
base=(--layers 784,24,10 --epochs 1 --train-limit 1200 --test-limit 500 --quiet)
common=("${base[@]}" --batch 62)

train 1 "$TMP/ref.log" "${common[@]}" --seed 3 --save-weights "$TMP/ref.bin"
for n in 2 3 4; do
    train $n "$TMP/n$n.log" "${common[@]}" --seed 3 --save-weights "$TMP/n$n.bin"
    "$CMP" "$TMP/n$n.bin" "$TMP/ref.bin" $TOL || fail "n=$n differs from one process"
done
train 2 "$TMP/noov.log" "${common[@]}" --seed 3 --no-overlap --save-weights "$TMP/noov.bin"
"$CMP" "$TMP/noov.bin" "$TMP/ref.bin" $TOL || fail "--no-overlap differs from one process"
train 2 "$TMP/small.log" "${common[@]}" --seed 3 --bucket-mb 0.004 --save-weights "$TMP/small.bin"
"$CMP" "$TMP/small.bin" "$TMP/ref.bin" $TOL || fail "many small buckets differ from one process"
# Accumulating 2 micro-batches of 31 is the same step as one batch of 62.
train 2 "$TMP/acc.log" "${base[@]}" --batch 31 --accum 2 --seed 3 --save-weights "$TMP/acc.bin"
"$CMP" "$TMP/acc.bin" "$TMP/ref.bin" $TOL || fail "--accum 2 x 31 differs from a batch of 62"
# Same rank count and seed: bit for bit the same run.
train 2 "$TMP/again.log" "${common[@]}" --seed 3 --save-weights "$TMP/again.bin"
cmp -s "$TMP/again.bin" "$TMP/n2.bin" || fail "two identical 2-rank runs differ: not deterministic"
# Progress from the training thread (the default is a helper thread) issues the same
# operations in the same order: bit for bit the same weights.
train 2 "$TMP/calls.log" "${common[@]}" --seed 3 --progress calls --save-weights "$TMP/calls.bin"
cmp -s "$TMP/calls.bin" "$TMP/n2.bin" || fail "--progress calls differs from --progress thread"
# Control: the comparison does detect a different run.
train 1 "$TMP/other.log" "${common[@]}" --seed 4 --save-weights "$TMP/other.bin"
rc=0
"$CMP" "$TMP/other.bin" "$TMP/ref.bin" $TOL || rc=$?
[ $rc -eq 1 ] || fail "control: another seed should differ (weights_cmp exit $rc)"
echo "ok: n = 2, 3, 4, no-overlap, small buckets, accum == one process within $TOL; progress calls == thread"
