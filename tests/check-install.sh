#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Tests `meson install`: installs the build into a temporary DESTDIR and
# checks that the program, the man page and the bash completion are where
# the prefix says, that the installed program runs, and that the installed
# man page and completion work with it.
# usage: check-install.sh MESON BUILDDIR PREFIX BINDIR MANDIR DATADIR SBINDIR
set -euo pipefail
meson=$1 build=$2 prefix=$3 bindir=$4 mandir=$5 datadir=$6 sbindir=$7
here=$(cd "$(dirname "$0")" && pwd)
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail=0

# a directory option is relative to the prefix unless absolute
under() { case $1 in /*) echo "$dest$1" ;; *) echo "$dest$prefix/$1" ;; esac; }

if ! out=$("$meson" install -C "$build" --no-rebuild --destdir "$dest" 2>&1); then
  echo "FAIL: meson install:"; echo "$out"; exit 1
fi

bin=$(under "$bindir")/lazyimg
man=$(under "$mandir")/man1/lazyimg.1
completion=$(under "$datadir")/bash-completion/completions/lazyimg
for f in "$bin" "$man" "$completion"; do
  if [ -f "$f" ]; then echo "ok   installed ${f#"$dest"}"; else echo "FAIL: not installed: ${f#"$dest"}"; fail=1; fi
done
[ $fail = 0 ] || { echo "installed files:"; (cd "$dest" && find . -type f); exit 1; }

[ -x "$bin" ] || { echo "FAIL: ${bin#"$dest"} is not executable"; exit 1; }
if version=$("$bin" --version) && [[ $version == "lazyimg "* ]]; then
  echo "ok   installed lazyimg --version: $version"
else
  echo "FAIL: installed lazyimg --version: '${version:-}'"; fail=1
fi

# the installed man page still matches the installed program
if python3 "$here/check-manpage.py" "$bin" "$man" >/dev/null; then
  echo "ok   installed man page matches the installed lazyimg --help"
else
  python3 "$here/check-manpage.py" "$bin" "$man" || true
  fail=1
fi

# the installed completion completes, through the installed program
got=$(bash -c 'source "$1"; COMP_WORDS=("$2" mount --no-c); COMP_CWORD=2; _lazyimg; echo "${COMPREPLY[*]}"' _ "$completion" "$bin")
if [ "$got" = --no-cache ]; then
  echo "ok   installed completion: lazyimg mount --no-c<TAB> -> --no-cache"
else
  echo "FAIL: installed completion: lazyimg mount --no-c<TAB> -> '$got'"; fail=1
fi

# the service unit, naming the installed program, and the mount(8) helper link
src=$(cd "$here/.." && pwd)
f=$(find "$dest" -name 'lazyimg@.service' -path '*/systemd/system/*' | head -1)
if [ -n "$f" ] && grep -q "^ExecStart=$prefix/bin/lazyimg mount --foreground" "$f"; then
  echo "ok   installed ${f#"$dest"}, ExecStart=$prefix/bin/lazyimg"
else
  echo "FAIL: lazyimg@.service not installed under systemd/system, or ExecStart does not name $prefix/bin/lazyimg"; fail=1
fi
f=$(under "$sbindir")/mount.fuse.lazyimg
if [ -L "$f" ] && [ "$(readlink "$f")" = "$prefix/bin/lazyimg" ]; then
  echo "ok   installed ${f#"$dest"} -> $prefix/bin/lazyimg"
else
  echo "FAIL: ${f#"$dest"} is not a link to $prefix/bin/lazyimg"; fail=1
fi
exit $fail
