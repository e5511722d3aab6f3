#!/usr/bin/env bash
# run-verbs-suite.sh BUILD_DIR - the verbs test suite (ctest -L verbs).
#
# On a machine with an ACTIVE RDMA port (a real HCA, or rxe the user set up) the suite runs
# natively. Otherwise it boots ONE soft-RoCE guest (tests/softroce/run-in-vm.sh: a stock
# Debian kernel under qemu with rdma_rxe on a dummy netdev) and runs the whole suite inside
# it, with the host's build directory seen read-only over 9p.
#
#   RDX_VERBS_SUITE_MODE=auto|native|vm   force one way (default auto)
#   RDX_VERBS_SUITE_TIMEOUT=S             wall-clock limit of the guest run (default 1800)
#   RDX_VERBS_SUITE_ONLY=REGEX            run only the tests whose name matches
# Exit status: that of the suite; 77 (ctest SKIP_RETURN_CODE) when neither an RDMA device
# nor the means to boot a guest exist and CI is unset; 124/125 from the VM runner.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
BUILD=$(cd "${1:?usage: run-verbs-suite.sh BUILD_DIR}" && pwd -P)
MODE=${RDX_VERBS_SUITE_MODE:-auto}

. "$HERE/native-rdma.sh"

if [ "$MODE" = native ] || { [ "$MODE" = auto ] && native_rdma; }; then
  echo "run-verbs-suite: active RDMA port on this host: running natively" >&2
  exec "$HERE/verbs-suite.sh" "$BUILD"
fi

if ! command -v qemu-system-x86_64 >/dev/null && [ "$(id -u)" != 0 ] && [ -z "${CI:-}" ]; then
  echo "run-verbs-suite: no RDMA device and no qemu (run scripts/setup.sh as root): skipped" >&2
  exit 77
fi

ENV_ARGS=()
for v in RDX_LOG RDX_VERBS_SUITE_ONLY VERBS_TEST_TIMEOUT VERBS_COLL_TIMEOUT; do
  [ -n "${!v:-}" ] && ENV_ARGS+=(--env "$v")
done
echo "run-verbs-suite: no RDMA device here: booting a soft-RoCE guest" >&2
exec "$HERE/run-in-vm.sh" --no-cwd-rw --smp 2 --timeout "${RDX_VERBS_SUITE_TIMEOUT:-1800}" \
  ${ENV_ARGS[@]+"${ENV_ARGS[@]}"} -- "$HERE/verbs-suite.sh" "$BUILD"
