#!/usr/bin/env bash
# The main job: setup, build, then 4-rank data-parallel training on the default transport.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/bin/rdx-run -n 4 build/bin/rdx-train --epochs 5 "$@"
