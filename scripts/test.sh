#!/usr/bin/env bash
# The whole test suite: setup, build, then every ctest label (unit, mp, verbs, trainer).
# Usage: scripts/test.sh [ctest args, e.g. -L unit]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 1800 "$@"
