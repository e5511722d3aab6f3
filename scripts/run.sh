#!/usr/bin/env bash
# The main job: setup, build, then a 4-rank run on the default transport.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/bin/rdx-run -n 4 build/bin/rdx-perf -b 8 -e 64M -f 4 -c 1
