#!/usr/bin/env bash
# Installs everything rdx needs to build, test and benchmark on Debian 12 (run as root).
# Idempotent: packages already present are skipped by apt.
set -euo pipefail

PKGS=(
  # build
  build-essential cmake pkg-config
  # transports: rdma-core (libibverbs, librdmacm, rxe provider) and UCX
  libibverbs-dev librdmacm-dev ibverbs-providers ibverbs-utils rdmacm-utils perftest
  libucx-dev ucx-utils
  # trainer: BLAS, gzip'd IDX files, the data set
  libopenblas-dev zlib1g-dev dataset-fashion-mnist
  # tests: unit tests, sanitizers (clang runtime), valgrind, fuzzers
  libcriterion-dev valgrind clang libclang-rt-14-dev
  # soft-RoCE guest for the verbs tests (tests/softroce/run-in-vm.sh)
  qemu-system-x86 busybox-static iproute2 xz-utils
  # benchmarks: Open MPI for the comparison, gnuplot for plots
  openmpi-bin libopenmpi-dev gnuplot-nox python3
)

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: all packages present"
fi
