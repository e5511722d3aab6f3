#!/usr/bin/env bash
# verbs-bench.sh BUILD_DIR - rdx over native verbs against perftest on the same device, in
# one run. One command, guest or native: tests/softroce/run-verbs-bench.sh BUILD_DIR.
#
#   rounds (BENCH_ROUNDS, default 5), alternating so host noise hits both alike:
#     ib_write_lat -s 8          vs  rdx-perf --pt2pt 8 B   (half round trip, median)
#     ib_write_bw -s 1M          vs  rdx-perf --pt2pt 1 MiB (MiB/s; registered buffers,
#                                    so zero-copy; and --no-reg, the copy path)
#   once: ib_send_lat (a receive completion per message, as rdx), the transport alone
#     (tests/verbs/verbs_perf, busy and --block), --pt2pt with 1 MiB slots, and rdx-perf
#     allreduce over native verbs against rdx over UCX rc_verbs (default RDX_SPIN_US, and
#     busy-polling with BENCH_SPIN_US).
# The summary gives the median of each measure over the rounds, the ratio of the medians
# and the median of the per-round ratios (each pairs two runs minutes apart at most).
# Latency: rdx busy-polls (RDX_SPIN_US=BENCH_SPIN_US, default 1000000), as ib_write_lat
# does; with the default 20 us a waiting rank sleeps on the completion channel, which on
# rxe can cost ~1 ms per wake-up (docs/verbs.md). Bandwidth: rdx's default RDX_SPIN_US
# (BENCH_BW_SPIN_US, 20): the receiving rank sleeps when it has nothing to do, as
# ib_write_bw's passive side does; a busy receiver takes the emulated CPU rxe needs (the
# busy-polling row shows it). Under TCG only the ratios mean something.
#   BENCH_LAT_ITERS (2000), BENCH_BW_MSGS (100), BENCH_ROUNDS (5), BENCH_SPIN_US (1000000),
#   BENCH_BW_SPIN_US (20)
set -u
BUILD=$(cd "${1:?usage: verbs-bench.sh BUILD_DIR}" && pwd -P)
DEV=${SOFTROCE_DEV:-$(ls /sys/class/infiniband | head -1)}
G=${SOFTROCE_GID_INDEX:-${RDX_IB_GID_INDEX:-1}}
LAT_ITERS=${BENCH_LAT_ITERS:-2000}
BW_MSGS=${BENCH_BW_MSGS:-100}
ROUNDS=${BENCH_ROUNDS:-5}
SPIN=${BENCH_SPIN_US:-1000000}
BW_SPIN=${BENCH_BW_SPIN_US:-20}
LOG=$(mktemp -d /tmp/verbs-bench.XXXXXX)
T=300
RUN=$BUILD/bin/rdx-run
PERFBIN=$BUILD/bin/rdx-perf
echo "verbs-bench: $DEV gid $G, $(nproc) CPUs, $(uname -r); $ROUNDS rounds; rdx RDX_SPIN_US=$SPIN for latency, $BW_SPIN for bandwidth"

pair() {  # pair OUT NAME ARGS...: perftest server and client on localhost; client output in OUT
  local out=$1 name=$2; shift 2
  timeout $T "$name" -d "$DEV" -x "$G" "$@" > "$LOG/$out.srv" 2>&1 & local spid=$!
  sleep 1.5
  timeout $T "$name" -d "$DEV" -x "$G" "$@" localhost > "$LOG/$out" 2>&1
  wait $spid
}
pt2pt() {  # pt2pt OUT SIZE ITERS [EXTRA...]: one checked rdx-perf --pt2pt row over verbs
  local out=$1 size=$2 n=$3; shift 3
  local spin=$SPIN; [ "$size" = 8 ] || spin=$BW_SPIN
  RDX_SPIN_US=${SPIN_OVERRIDE:-$spin} timeout $T "$RUN" -n 2 --transport verbs "$PERFBIN" --pt2pt -b "$size" \
    -e "$size" -n "$n" -c 1 "$@" > "$LOG/$out" 2>&1 || echo "verbs-bench: FAILED: rdx-perf --pt2pt $size $*"
}
# ib_*_lat columns: bytes iterations t_min t_max t_typical ...; ib_write_bw: bytes iterations
# BW_peak BW_average MsgRate; rdx-perf --pt2pt: [0] size lat_iters min median max bw_iters MiB/s
# (perftest sometimes prints "inf" when its clock misbehaves: only finite numbers count)
perf_lat() { awk '$1 == 8 && NF >= 6 && $5 ~ /^[0-9.]+$/ {print $5}' "$LOG/$1"; }
perf_bw() { awk '$1 == 1048576 && NF >= 4 && $4 ~ /^[0-9.]+$/ {print $4}' "$LOG/$1"; }
rdx_lat() { awk '$1 == "[0]" && $2 ~ /^[0-9]+$/ {print $5}' "$LOG/$1"; }
rdx_bw() { awk '$1 == "[0]" && $2 ~ /^[0-9]+$/ {print $8}' "$LOG/$1"; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

for r in $(seq "$ROUNDS"); do
  pair "wlat.$r" ib_write_lat -s 8 -n "$LAT_ITERS"
  pt2pt "plat.$r" 8 "$LAT_ITERS"
  pair "wbw.$r" ib_write_bw -s 1048576 -n "$BW_MSGS"
  pt2pt "pbw.$r" 1M "$BW_MSGS"
  pt2pt "pbwc.$r" 1M "$BW_MSGS" --no-reg
  printf "round %d: ib_write_lat %s us, rdx pt2pt %s us | ib_write_bw %s MiB/s, rdx pt2pt %s (zero-copy), %s (copy) MiB/s\n" \
    "$r" "$(perf_lat "wlat.$r")" "$(rdx_lat "plat.$r")" "$(perf_bw "wbw.$r")" "$(rdx_bw "pbw.$r")" \
    "$(rdx_bw "pbwc.$r")"
done
grep -hE 'FAIL|wrong: [1-9]' "$LOG"/plat.* "$LOG"/pbw* | sort | uniq -c
pair slat ib_send_lat -s 8 -n "$LAT_ITERS"

RDX_CHUNK_BYTES=1M pt2pt pbw1m 1M "$BW_MSGS"
SPIN_OVERRIDE=$SPIN pt2pt pbwd 1M "$BW_MSGS"
RDX_CHUNK_BYTES=1M timeout $T "$BUILD/tests/verbs_perf" --lat 8 --bw 1M -i "$LAT_ITERS" \
  -b "$BW_MSGS" > "$LOG/vp" 2>&1
RDX_CHUNK_BYTES=1M timeout $T "$BUILD/tests/verbs_perf" --lat 8 --bw "" -i "$LAT_ITERS" --block \
  > "$LOG/vpb" 2>&1
cat "$LOG/vp" "$LOG/vpb" | grep -E 'lat 8 B|bw 1048576'

PERF=("$PERFBIN" -b 8 -e 4M -f 8 -w 2 -n 10 -c 1)
allreduce() {  # allreduce SUFFIX SPIN_US: native verbs, then UCX rc_verbs
  RDX_SPIN_US=$2 timeout $T "$RUN" -n 2 --transport verbs "${PERF[@]}" > "$LOG/ar_verbs$1" 2>&1
  RDX_SPIN_US=$2 RDX_UCX_TLS=rc_verbs,ud_verbs UCX_NET_DEVICES=$DEV:1 timeout $T "$RUN" -n 2 \
    --transport ucx "${PERF[@]}" > "$LOG/ar_ucx$1" 2>&1
}
allreduce "" 20
allreduce _spin "$SPIN"
for v in "" _spin; do
  echo "--- rdx-perf allreduce, native verbs${v:+, RDX_SPIN_US=$SPIN}"; grep -E '^\[0\] +[0-9#]' "$LOG/ar_verbs$v"
  echo "--- rdx-perf allreduce, UCX rc_verbs${v:+, RDX_SPIN_US=$SPIN}"; grep -E '^\[0\] +[0-9#]' "$LOG/ar_ucx$v"
done

pl=$(for r in $(seq "$ROUNDS"); do perf_lat "wlat.$r"; done | median)
ql=$(for r in $(seq "$ROUNDS"); do rdx_lat "plat.$r"; done | median)
pb=$(for r in $(seq "$ROUNDS"); do perf_bw "wbw.$r"; done | median)
qb=$(for r in $(seq "$ROUNDS"); do rdx_bw "pbw.$r"; done | median)
qbc=$(for r in $(seq "$ROUNDS"); do rdx_bw "pbwc.$r"; done | median)
ratio() {  # ratio A B: A / B, or nothing
  awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0 && b > 0) printf "%.3f\n", a / b}'
}
rl=$(for r in $(seq "$ROUNDS"); do ratio "$(rdx_lat "plat.$r")" "$(perf_lat "wlat.$r")"; done | median)
rb=$(for r in $(seq "$ROUNDS"); do ratio "$(rdx_bw "pbw.$r")" "$(perf_bw "wbw.$r")"; done | median)
echo
echo "=== verbs-bench summary: $DEV, one run, 2 processes; medians over $ROUNDS rounds (ratios are what count under TCG)"
awk -v pl="${pl:-0}" -v ql="${ql:-0}" -v pb="${pb:-0}" -v qb="${qb:-0}" -v qbc="${qbc:-0}" \
    -v sl="$(perf_lat slat)" -v q1m="$(rdx_bw pbw1m)" -v qd="$(rdx_bw pbwd)" \
    -v rl="${rl:-0}" -v rb="${rb:-0}" \
    -v vl="$(awk '/lat 8 B/ {print $8}' "$LOG/vp")" -v vb="$(awk '/bw 1048576 B/ {print $5}' "$LOG/vp")" \
    -v vlb="$(awk '/lat 8 B/ {print $8}' "$LOG/vpb")" 'BEGIN {
  f = "%-52s %10s %10s %9s  %s\n"
  printf f, "measure", "perftest", "rdx", "rdx/perf", "target"
  printf f, "8 B latency, half RTT median (us): rdx-perf --pt2pt", pl, ql, (pl > 0 ? sprintf("%.2fx", ql / pl) : "?"), "<= 1.3x"
  printf f, "  median of the per-round ratios", "", "", sprintf("%.2fx", rl), ""
  printf f, "  ib_send_lat (receive completions, like rdx) (us)", sl, "", (sl > 0 && pl > 0 ? sprintf("%.2fx", sl / pl) : "?"), "(perftest vs perftest)"
  printf f, "  transport alone, verbs_perf (us)", pl, vl, (pl > 0 ? sprintf("%.2fx", vl / pl) : "?"), ""
  printf f, "  transport alone, verbs_perf --block (us)", pl, vlb, (pl > 0 ? sprintf("%.1fx", vlb / pl) : "?"), ""
  printf f, "1 MiB bandwidth (MiB/s): --pt2pt, registered (zero-copy)", pb, qb, (pb > 0 ? sprintf("%.0f%%", 100 * qb / pb) : "?"), ">= 90%"
  printf f, "  median of the per-round ratios", "", "", sprintf("%.0f%%", 100 * rb), ""
  printf f, "  --pt2pt, unregistered (staging copy)", pb, qbc, (pb > 0 ? sprintf("%.0f%%", 100 * qbc / pb) : "?"), ""
  printf f, "  --pt2pt, zero-copy, RDX_CHUNK_BYTES=1M (one run)", pb, q1m, (pb > 0 ? sprintf("%.0f%%", 100 * q1m / pb) : "?"), ""
  printf f, "  --pt2pt, zero-copy, busy-polling receiver (one run)", pb, qd, (pb > 0 ? sprintf("%.0f%%", 100 * qd / pb) : "?"), ""
  printf f, "  transport alone, verbs_perf, 1 MiB slots (one run)", pb, vb, (pb > 0 ? sprintf("%.0f%%", 100 * vb / pb) : "?"), "" }'
for v in "" _spin; do
  echo "allreduce, 2 ranks, float32 sum, RDX_SPIN_US=$([ -n "$v" ] && echo "$SPIN" || echo "20 (default)"): time (us), native verbs vs UCX rc_verbs"
  awk '$1 == "[0]" && $2 ~ /^[0-9]+$/ {print $2, $7, $10}' "$LOG/ar_verbs$v" > "$LOG/ar_v"
  awk '$1 == "[0]" && $2 ~ /^[0-9]+$/ {print $2, $7, $10}' "$LOG/ar_ucx$v" > "$LOG/ar_u"
  awk 'NR == FNR {v[$1] = $2; w[$1] = $3; next}
       ($1 in v) {printf "  %9s B  verbs %11.1f  ucx rc_verbs %11.1f  verbs/ucx %5.2f  wrong %s/%s\n",
                  $1, v[$1], $2, ($2 > 0 ? v[$1] / $2 : 0), w[$1], $3}' "$LOG/ar_v" "$LOG/ar_u"
done
rm -rf "$LOG"
