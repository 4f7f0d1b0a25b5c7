#!/bin/bash
# Quick start #2: installs dependencies, builds, and runs every test
# (unit tests, then integration tests on real FUSE mounts; needs root and /dev/fuse).
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/install-deps.sh
contrib/build.sh
meson test -C build --print-errorlogs --num-processes 2 "$@"
