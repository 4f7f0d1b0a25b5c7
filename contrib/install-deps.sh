#!/bin/bash
# Installs the Debian packages lazyimg needs to build, run and test, then the
# pinned npm packages of the integration tests.
# The lists live in contrib/deps.txt and contrib/npm-packages.txt: the README
# commands and .ci/run both come through here, so there is one list of each.
# npm packages go to $LAZYIMG_NPM_PREFIX (default /opt/lazyimg-npm), where
# tests/integration/lib_remote.sh looks for them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t pkgs < <(grep -v '^\s*#' "$here/deps.txt" | grep -v '^\s*$')

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo)" >&2; exit 1; }
  as_root=(sudo)
fi

# a package counts as present when it is installed or provided by an installed
# package (e.g. "npm" by a nodejs package that bundles it)
provided=$(dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null |
  sed -n 's/^ii *|//p' | tr ',' '\n' | sed -E 's/^ *//; s/ .*//' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  grep -qxF -- "$p" <<<"$provided" && continue
  missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- npm packages (pinned NAME@VERSION, one a line) ----------------------------
npm_list=$here/npm-packages.txt
[ -f "$npm_list" ] || exit 0
prefix=${LAZYIMG_NPM_PREFIX:-/opt/lazyimg-npm}
mapfile -t npkgs < <(grep -v '^\s*#' "$npm_list" | sed 's/\s//g' | grep -v '^$')
[ ${#npkgs[@]} -gt 0 ] || exit 0
command -v npm >/dev/null || { echo "install-deps: npm not found (it is in deps.txt)" >&2; exit 1; }
nmissing=()
for spec in "${npkgs[@]}"; do
  name=${spec%@*} ver=${spec##*@}
  [ -n "$name" ] && [ "$name" != "$spec" ] || { echo "install-deps: $npm_list: '$spec' is not NAME@VERSION" >&2; exit 1; }
  have=$(sed -nE 's/^\s*"version"\s*:\s*"([^"]*)".*/\1/p' "$prefix/node_modules/$name/package.json" 2>/dev/null | head -1 || true)
  [ "$have" = "$ver" ] || nmissing+=("$spec")
done
if [ ${#nmissing[@]} -eq 0 ]; then
  echo "install-deps: all ${#npkgs[@]} npm packages present in $prefix"
  exit 0
fi
echo "install-deps: npm install --prefix $prefix ${nmissing[*]}"
"${as_root[@]}" mkdir -p "$prefix"
"${as_root[@]}" npm install --prefix "$prefix" --no-audit --no-fund --omit=dev \
  --loglevel=error "${nmissing[@]}"
