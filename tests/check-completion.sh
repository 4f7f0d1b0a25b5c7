#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Tests contrib/bash-completion/lazyimg: sources it, sets COMP_WORDS and
# COMP_CWORD as bash does on TAB, calls the function and checks COMPREPLY.
# usage: check-completion.sh LAZYIMG COMPLETION
set -uo pipefail
lazyimg=$1 completion=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# a mountinfo with one lazyimg mount (a space in its path) and another FUSE mount
printf '%s\n' \
  '36 25 0:32 / /mnt/my\040backups rw,nosuid,nodev,relatime shared:1 - fuse.lazyimg lazyimg:/srv/ds ro,user_id=0,group_id=0' \
  '37 25 0:33 / /mnt/other rw,relatime shared:2 - fuse.sshfs host: rw,user_id=0,group_id=0' \
  '38 25 0:34 / /srv/b rw,relatime shared:3 - fuse.lazyimg lazyimg:http://h/ds ro,user_id=0,group_id=0' \
  >"$tmp/mountinfo"
_lazyimg_mountinfo=$tmp/mountinfo
# shellcheck source=/dev/null
source "$completion" || { echo "FAIL: cannot source $completion"; exit 1; }

mkdir -p "$tmp/dir/sub" && touch "$tmp/dir/file.img"

# complete WORD...: COMP_WORDS = the words, the cursor on the last one
complete_words() {
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMPREPLY=()
  _lazyimg
}

# expect DESCRIPTION has|lacks|is WORD... -- LINE...
expect() {
  local what=$1 how=$2 want=() got
  shift 2
  while [ "$1" != -- ]; do want+=("$1"); shift; done
  shift
  complete_words "$@"
  got=$(printf '%s\n' "${COMPREPLY[@]}" | sort)
  local ok=1
  case $how in
    is) [ "$got" = "$(printf '%s\n' "${want[@]}" | sort)" ] || ok=0 ;;
    has) for w in "${want[@]}"; do grep -qxF -- "$w" <<<"$got" || ok=0; done ;;
    lacks) for w in "${want[@]}"; do grep -qxF -- "$w" <<<"$got" && ok=0; done ;;
  esac
  if [ $ok = 1 ]; then
    echo "ok   $what"
  else
    echo "FAIL $what: '$*' completes to: $(tr '\n' ' ' <<<"$got")(want: $how ${want[*]})"
    fail=1
  fi
}

L=$lazyimg
expect "lazyimg mo<TAB> -> mount" is mount -- "$L" mo
expect "lazyimg <TAB>: every command" has mount ls find umount cache profile overlay status hydrate -- "$L" ""
expect "lazyimg -<TAB>: global options" has --help --version -V -h -- "$L" -
expect "lazyimg mount --no-<TAB>" has --no-cache --no-boot-profile -- "$L" mount --no-
expect "lazyimg mount --no-<TAB> (nothing else)" lacks --json --offline -- "$L" mount --no-
expect "lazyimg mount -<TAB>: short options" has -f -d --foreground --s3-region --keyfile -- "$L" mount -
expect "lazyimg umount -<TAB>" is -h -z --help --lazy --timeout -- "$L" umount -
expect "lazyimg cache <TAB>: sub-commands" is stats verify gc clear -- "$L" cache ""
expect "lazyimg cache --cache-dir D g<TAB>" is gc -- "$L" cache --cache-dir /tmp g
# bash splits "--opt=VALUE" at "=": COMP_WORDS holds "--opt" "=" "VALUE"
expect "lazyimg cache --cache-dir=D s<TAB>" is stats -- "$L" cache --cache-dir = /tmp s
expect "lazyimg mount --keyfile=F<TAB>: files" has "$tmp/dir/file.img" -- "$L" mount --keyfile = "$tmp/dir/f"
expect "lazyimg cache gc --<TAB>" has --size --cache-dir --json -- "$L" cache gc --
expect "lazyimg profile s<TAB>" is show -- "$L" profile s
expect "lazyimg umount <TAB>: lazyimg mounts only" is "/mnt/my backups" /srv/b -- "$L" umount ""
expect "lazyimg unmount /s<TAB>" is /srv/b -- "$L" unmount /s
expect "lazyimg status --json <TAB>" is "/mnt/my backups" /srv/b -- "$L" status --json ""
expect "lazyimg hydrate <TAB>: files" has "$tmp/dir/file.img" -- "$L" hydrate "$tmp/dir/f"
expect "lazyimg hydrate /s<TAB>: mounts" has /srv/b -- "$L" hydrate /s
expect "lazyimg mount --cache-dir <TAB>: directories" is "$tmp/dir/sub" -- "$L" mount --cache-dir "$tmp/dir/"
expect "lazyimg mount --keyfile <TAB>: files" has "$tmp/dir/file.img" -- "$L" mount --keyfile "$tmp/dir/f"
expect "lazyimg mount --threads <TAB>: nothing" is -- "$L" mount --threads ""
expect "lazyimg mount STORE <TAB>: directories" is "$tmp/dir/sub" -- "$L" mount /srv/ds "$tmp/dir/"
expect "lazyimg overlay <TAB>: files" has "$tmp/dir/file.img" -- "$L" overlay "$tmp/dir/f"
expect "lazyimg find STORE PATTERN: no files" is -- "$L" find "$tmp" "$tmp/dir/f"
_lazyimg_mountinfo=$tmp/none
expect "lazyimg umount <TAB> without mounts: directories" is "$tmp/dir/sub" -- "$L" umount "$tmp/dir/"
expect "no such program: nothing" is -- /nonexistent/lazyimg mo
exit $fail
