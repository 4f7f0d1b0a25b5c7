#!/bin/bash
# Checks that every C source follows the repository's .clang-format (the
# suite runs it as the test "format"); with --fix, formats them in place.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "SKIP: clang-format is not installed"; exit 77; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.c' '*.h')
else
  mapfile -t files < <(find cache contrib fetch fs tests -name '*.[ch]' | sort)
fi
if [[ ${1:-} == --fix ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  printf 'not formatted as .clang-format says: %s\n' "${bad[@]}"
  echo "(contrib/check-format.sh --fix formats them)"
  exit 1
fi
echo "ok - all ${#files[@]} C files follow .clang-format ($(clang-format --version))"
