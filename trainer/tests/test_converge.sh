#!/usr/bin/env bash
# Communication savers still train: fp16 and bf16 gradients on the wire and top-k 1% with
# error feedback, 2 ranks, one short epoch on 12000 samples, must reach a test accuracy
# within a few points of the fp32 run of the same length (and clearly above the 10% of
# chance: the floor is 78%). Figures for full runs are in docs/trainer.md.
# usage: test_converge.sh BUILD_DIR
BUILD=$1
. "$(dirname "$0")/common.sh"
common=(--layers 784,64,10 --epochs 2 --batch 64 --train-limit 12000 --test-limit 2000 --quiet)

train 2 "$TMP/fp32.log" "${common[@]}"
base=$(final_acc "$TMP/fp32.log")
ge "$base" 80 || fail "fp32 baseline reached only $base%"
echo "fp32: $base%"
for variant in "--grad-dtype fp16:1.5" "--grad-dtype bf16:1.5" "--topk 0.01:4" "--accum 4:8"; do
    args=${variant%:*} slack=${variant##*:}
    train 2 "$TMP/v.log" "${common[@]}" $args --metrics "$TMP/m.jsonl"
    acc=$(final_acc "$TMP/v.log")
    echo "$args: $acc% (fp32 $base%, allowed $slack points less)"
    ge "$acc" "$(awk -v b="$base" -v s="$slack" 'BEGIN { print b - s }')" ||
        fail "$args reached $acc%, fp32 $base%"
    grep -q '"exposed_comm_ms"' "$TMP/m.jsonl" || fail "$args: no per-step metrics"
    grep -q '"test_acc"' "$TMP/m.jsonl" || fail "$args: no per-epoch metrics"
done
