#!/usr/bin/env bash
# Resume equals uninterrupted, bit for bit: a run stopped at step 37 (mid-epoch, between
# periodic checkpoints) and resumed must end with exactly the weights of a run that never
# stopped. With 1 and 2 ranks, dense fp32 and top-k (whose per-rank residual must survive).
# usage: test_resume.sh BUILD_DIR
BUILD=$1
. "$(dirname "$0")/common.sh"

common=(--layers 784,32,10 --epochs 2 --batch 64 --train-limit 3000 --test-limit 1000
        --checkpoint-every 10 --seed 7 --quiet)
for n in 1 2; do
    for extra in "" "--topk 0.05"; do
        tag="n=$n ${extra:-fp32}"
        ck=$TMP/ck-$n-${extra:+topk}
        train $n "$TMP/a.log" "${common[@]}" $extra --save-weights "$TMP/a.bin"
        train $n "$TMP/b.log" "${common[@]}" $extra --checkpoint-dir "$ck" --max-steps 37 \
              --save-weights "$TMP/b.bin"
        ls "$ck"/ckpt-r0-s00000037.bin >/dev/null || fail "$tag: no checkpoint at step 37"
        [ "$(ls "$ck" | grep -c '^ckpt-r0-')" -le 2 ] || fail "$tag: old checkpoints not pruned"
        ! ls -A "$ck" | grep -q tmp || fail "$tag: temporary file left behind"
        ! cmp -s "$TMP/a.bin" "$TMP/b.bin" || fail "$tag: the stopped run already has the final weights"
        train $n "$TMP/c.log" "${common[@]}" $extra --checkpoint-dir "$ck" --resume \
              --save-weights "$TMP/c.bin"
        cmp -s "$TMP/a.bin" "$TMP/c.bin" || fail "$tag: resumed weights differ from uninterrupted"
        [ "$(final_hash "$TMP/a.log")" = "$(final_hash "$TMP/c.log")" ] || fail "$tag: hash lines differ"
        grep -q "done: 92 steps" "$TMP/c.log" || fail "$tag: resumed run did not finish at step 92"
        echo "ok: $tag: resumed at 37 == uninterrupted ($(final_hash "$TMP/c.log"))"
    done
done
