#!/usr/bin/env bash
# run-verbs-bench.sh BUILD_DIR - the verbs benchmarks in one command (docs/verbs.md,
# Benchmarks): rdx point-to-point vs ib_write_lat/ib_write_bw, the transport alone, and rdx
# allreduce over native verbs vs over UCX rc_verbs, all on the same device in one run, then
# a summary table. Natively when this host has an ACTIVE RDMA port, otherwise inside one
# soft-RoCE guest (tests/softroce/run-in-vm.sh). Not part of ctest: it prints figures.
#   RDX_VERBS_BENCH_MODE=auto|native|vm, RDX_VERBS_BENCH_TIMEOUT=S (default 900), and the
#   BENCH_* variables of verbs-bench.sh are passed through.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
BUILD=$(cd "${1:?usage: run-verbs-bench.sh BUILD_DIR}" && pwd -P)
MODE=${RDX_VERBS_BENCH_MODE:-auto}
. "$HERE/native-rdma.sh"
if [ "$MODE" = native ] || { [ "$MODE" = auto ] && native_rdma; }; then
  exec "$HERE/verbs-bench.sh" "$BUILD"
fi
ENV_ARGS=()
for v in BENCH_LAT_ITERS BENCH_BW_MSGS BENCH_ROUNDS BENCH_SPIN_US BENCH_BW_SPIN_US RDX_LOG; do
  [ -n "${!v:-}" ] && ENV_ARGS+=(--env "$v")
done
exec "$HERE/run-in-vm.sh" --no-cwd-rw --smp 2 --timeout "${RDX_VERBS_BENCH_TIMEOUT:-900}" \
  ${ENV_ARGS[@]+"${ENV_ARGS[@]}"} -- "$HERE/verbs-bench.sh" "$BUILD"
