#!/bin/bash
# Usage: check_instrumented.sh FUZZER FUNCTION CORPUS
# Runs the libFuzzer target over its corpus once and checks that libFuzzer
# saw coverage inside FUNCTION (the parser the target is for). Without the
# instrumented fetch library only the harness has coverage counters, and
# libFuzzer mutates blind.
set -euo pipefail
fuzzer=$1 func=$2 corpus=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$fuzzer" -runs=0 -print_coverage=1 "$tmp" "$corpus" >"$tmp/out" 2>&1 || {
  cat "$tmp/out"
  echo "FAIL: $fuzzer did not run over $corpus" >&2
  exit 1
}
if ! grep -q "COVERED_FUNC: .* $func " "$tmp/out"; then
  grep -E "INITED|COVERED_FUNC" "$tmp/out" >&2 || true
  echo "FAIL: libFuzzer saw no coverage in $func (is the fetch library instrumented?)" >&2
  exit 1
fi
echo "ok: $(grep -c COVERED_FUNC "$tmp/out") functions with coverage, $func among them"
