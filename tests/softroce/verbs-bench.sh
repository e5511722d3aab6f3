#!/usr/bin/env bash
# verbs-bench.sh BUILD_DIR - rdx verbs transport vs perftest on the same device, same run.
#   tests/softroce/run-in-vm.sh --no-cwd-rw -- tests/softroce/verbs-bench.sh build
# Latency: 8 B, half round trip (verbs_perf vs ib_write_lat t_typical/median; ib_send_lat
# too, and verbs_perf --block, which sleeps on the completion channel like a collective).
# Bandwidth: 1 MiB messages (verbs_perf vs ib_write_bw BW average, both MiB/s).
# Under TCG only the ratios mean something. Also runs rdx-perf over verbs and over UCX
# rc_verbs when rdx-perf and rdx-run are built.
set -u
BUILD=$(cd "${1:?usage: verbs-bench.sh BUILD_DIR}" && pwd -P)
DEV=${SOFTROCE_DEV:-$(ls /sys/class/infiniband | head -1)}
G=${SOFTROCE_GID_INDEX:-${RDX_IB_GID_INDEX:-1}}
LAT_ITERS=${BENCH_LAT_ITERS:-2000}
BW_MSGS=${BENCH_BW_MSGS:-200}
LOG=$(mktemp -d /tmp/verbs-bench.XXXXXX)
T=300

pair() {  # pair NAME ARGS...: perftest server and client on localhost
  local name=$1; shift
  timeout $T "$name" -d "$DEV" -x "$G" "$@" > "$LOG/$name.srv" 2>&1 & local spid=$!
  sleep 1.5
  timeout $T "$name" -d "$DEV" -x "$G" "$@" localhost > "$LOG/$name.cli" 2>&1
  wait $spid
}

pair ib_write_lat -s 8 -n "$LAT_ITERS"
grep -E '^ *8 +[0-9]+ ' "$LOG/ib_write_lat.cli" || tail -n 5 "$LOG/ib_write_lat.cli"
# columns: bytes iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%
read -r pl_min pl_max pl_typ <<<"$(awk '$1 == 8 && NF >= 6 {print $3, $4, $5}' "$LOG/ib_write_lat.cli")"
pair ib_send_lat -s 8 -n "$LAT_ITERS"
sl_typ=$(awk '$1 == 8 && NF >= 6 {print $5}' "$LOG/ib_send_lat.cli")
pair ib_write_bw -s 1048576 -n "$BW_MSGS"
# columns: bytes iterations BW_peak BW_average MsgRate
pb_avg=$(awk '$1 == 1048576 && NF >= 4 {print $4}' "$LOG/ib_write_bw.cli")

RDX_CHUNK_BYTES=1M timeout $T "$BUILD/tests/verbs_perf" --lat 8 --bw 1M -i "$LAT_ITERS" \
  -b "$BW_MSGS" > "$LOG/verbs_perf.out" 2>&1
cat "$LOG/verbs_perf.out"
RDX_CHUNK_BYTES=1M timeout $T "$BUILD/tests/verbs_perf" --lat 8 --bw "" -i "$LAT_ITERS" --block \
  > "$LOG/verbs_perf_block.out" 2>&1
grep 'lat 8 B' "$LOG/verbs_perf_block.out"
read -r rl_min rl_med rl_max <<<"$(awk '/lat 8 B/ {print $6, $8, $10}' "$LOG/verbs_perf.out")"
rb=$(awk '/bw 1048576 B/ {print $5}' "$LOG/verbs_perf.out")

echo "ib_write_lat 8 B: t_min ${pl_min:-?} t_typical ${pl_typ:-?} t_max ${pl_max:-?} us"
echo "ib_send_lat 8 B: t_typical ${sl_typ:-?} us (send/receive: a receive completion per message, as rdx)"
echo "ib_write_bw 1 MiB: ${pb_avg:-?} MiB/s"
awk -v rl="${rl_med:-0}" -v pl="${pl_typ:-0}" -v rb="${rb:-0}" -v pb="${pb_avg:-0}" 'BEGIN {
  if (pl > 0) printf "latency 8 B: rdx %.2f us / ib_write_lat %.2f us = %.2fx (target <= 1.3x)\n", rl, pl, rl / pl
  if (pb > 0) printf "bandwidth 1 MiB: rdx %.2f / ib_write_bw %.2f MiB/s = %.0f%% (target >= 90%%)\n", rb, pb, 100 * rb / pb }'

if [ -x "$BUILD/bin/rdx-perf" ] && [ -x "$BUILD/bin/rdx-run" ]; then
  echo "--- rdx-perf allreduce, verbs"
  PERF=("$BUILD/bin/rdx-perf" -b 8 -e 4M -f 8 -w 2 -n 10 -c 0)
  timeout $T "$BUILD/bin/rdx-run" -n 2 --transport verbs "${PERF[@]}" 2>&1 | grep -E '^\[0\] +[0-9#]'
  echo "--- rdx-perf allreduce, UCX rc_verbs"
  RDX_UCX_TLS=rc_verbs,ud_verbs UCX_NET_DEVICES=$DEV:1 timeout $T "$BUILD/bin/rdx-run" -n 2 \
    --transport ucx "${PERF[@]}" 2>&1 | grep -E '^\[0\] +[0-9#]'

fi
rm -rf "$LOG"
