#!/bin/bash
# Usage: tests/fuzz/run-all.sh BUILD_DIR [SECONDS] [TARGET...]
# Runs each libFuzzer target of a -Dfuzz=true build for SECONDS (default 60)
# on its corpus (tests/fuzz/corpus/<target>, read only: new inputs go to a
# temporary directory) with its dictionary, if any. Exits non-zero on the
# first crash, leak, timeout or sanitizer report; the crashing input is kept
# in $FUZZ_ARTIFACTS (default: a temporary directory, printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run-all.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(blob fidx caibx cacnk manifest listing didx pxar catar disklabel lvm)
artifacts=${FUZZ_ARTIFACTS:-$(mktemp -d)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# clang's UBSan recovers by default: make a report a crash libFuzzer sees
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
for t in "${targets[@]}"; do
  exe=$build/tests/fuzz/fuzz_$t
  [ -x "$exe" ] || { echo "run-all: $exe missing (configure with CC=clang -Dfuzz=true)" >&2; exit 1; }
  dict=()
  [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
  mkdir -p "$work/$t" "$artifacts/$t"
  echo "== fuzz_$t for ${secs}s"
  if ! "$exe" -max_total_time="$secs" -print_final_stats=1 "${dict[@]}" \
       -artifact_prefix="$artifacts/$t/" "$work/$t" "$here/corpus/$t" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log"
    echo "run-all: fuzz_$t failed; the input is in $artifacts/$t/" >&2
    exit 1
  fi
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::new_units_added" "$work/$t.log"
done
echo "run-all: ${#targets[@]} targets, ${secs}s each, no crashes"
