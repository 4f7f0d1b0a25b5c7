# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared helpers of the integration tests (sourced by t-*.sh; bash only).
#
# Environment (set by tests/integration/meson.build):
#   LAZYIMG  the lazyimg program        MKPBS    contrib/lazyimg-mkpbs
#   MKIMAGE  contrib/lazyimg-mkimage    SEEKMAP  tests/helpers/seekmap
#
# Every check prints one "ok - DESCRIPTION" line; the first failing check
# prints "FAIL - DESCRIPTION" (with details) and exits 1. The EXIT trap
# unmounts every mount the test made, kills the daemons it started, runs the
# test's own cleanup hooks (newest first) and removes the work directory.

set -euo pipefail
exec 2>&1 # one stream: "ok -" lines and errors in order
export LC_ALL=C # byte-order sorting; English error texts ("Input/output error")

: "${LAZYIMG:?LAZYIMG must point to the lazyimg program}"
: "${MKPBS:?MKPBS must point to lazyimg-mkpbs}"
: "${MKIMAGE:?MKIMAGE must point to lazyimg-mkimage}"
: "${SEEKMAP:?SEEKMAP must point to the seekmap helper}"

T_NAME=$(basename "$0" .sh)
# this directory (absolute: tests change theirs): lib_remote.sh, helpers
T_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T_CHECKS=0
W=""            # work directory (absolute)
T_MOUNTS=()     # FUSE mountpoints to detach on exit
T_PIDS=()       # daemons (and strace wrappers) to kill on exit
T_HOOKS=()      # extra cleanup commands (eval'd newest first)

ok() {
    T_CHECKS=$((T_CHECKS + 1))
    echo "ok - $*"
}

# fail MESSAGE [DETAIL...]: prints a clear failure and exits 1.
fail() {
    # stderr (which is stdout): also seen from inside $(...)
    echo "FAIL - $T_NAME: $1" >&2
    shift
    local d
    for d in "$@"; do
        printf '    %s\n' "$d" >&2
    done
    exit 1
}

skip() {
    echo "SKIP - $T_NAME: $*"
    exit 77
}

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
    if [[ "$2" == "$3" ]]; then
        ok "$1"
    else
        fail "$1" "expected: $2" "actual:   $3"
    fi
}

# expect_same_file DESCRIPTION EXPECTED_FILE ACTUAL_FILE: text files equal (shows a diff).
expect_same_file() {
    local out
    if out=$(diff -u "$2" "$3" 2>&1); then
        ok "$1"
    else
        local IFS=$'\n'
        # shellcheck disable=SC2206
        local lines=($out)
        fail "$1" "diff -u expected actual:" "${lines[@]:0:60}"
    fi
}

# The FUSE tests need root and /dev/fuse; nothing else is a reason to skip.
require_fuse() {
    [[ $(id -u) == 0 ]] || skip "needs root"
    [[ -c /dev/fuse ]] || skip "needs /dev/fuse"
    command -v fusermount3 >/dev/null || fail "fusermount3 not found (install fuse3)"
}

require_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || fail "required program '$c' not found"
    done
}

# Detaches all mounts, kills our daemons, runs hooks, removes the work dir.
t_cleanup() {
    local rc=$? i m p
    trap - ERR
    set +eE
    for ((i = ${#T_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${T_HOOKS[i]}" >/dev/null 2>&1
    done
    for ((i = ${#T_MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${T_MOUNTS[i]}
        if mountpoint -q "$m" 2>/dev/null; then
            fusermount3 -u -z "$m" >/dev/null 2>&1 || umount -l "$m" >/dev/null 2>&1
        fi
    done
    for p in "${T_PIDS[@]}"; do
        pid_alive "$p" && kill -TERM "$p" 2>/dev/null
    done
    for p in "${T_PIDS[@]}"; do
        wait_pid_exit "$p" 5 || kill -KILL "$p" 2>/dev/null
    done
    if [[ -n "$W" && -d "$W" ]]; then
        # Never recurse into something still mounted below the work dir.
        m=$(findmnt -rn -o TARGET)
        if grep -q -F -- "$W/" <<<"$m"; then
            echo "warning: mounts left below $W; not removing it" >&2
        else
            rm -rf -- "$W"
        fi
    fi
    if [[ $rc == 0 ]]; then
        echo "# $T_NAME: $T_CHECKS checks passed"
    fi
    exit "$rc"
}

# setup_workdir: creates $W and installs the cleanup trap.
setup_workdir() {
    W=$(mktemp -d "${TMPDIR:-/tmp}/lazyimg-$T_NAME.XXXXXX")
    W=$(realpath "$W")
    # every mount of the test shares a cache of its own, never the system's
    export LAZYIMG_CACHE_DIR=$W/cache
    trap t_cleanup EXIT
    # an unexpected failing command (set -e) says where it was
    set -E
    trap 'echo "FAIL - $T_NAME: line $LINENO: unexpected failure of: $BASH_COMMAND" >&2' ERR
    trap 'exit 130' INT TERM
}

# add_cleanup 'COMMAND': eval'd at exit, before the FUSE mounts go (newest first).
add_cleanup() {
    T_HOOKS+=("$1")
}

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
    local st
    [[ -r /proc/$1/stat ]] || return 1
    st=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# wait_pid_exit PID SECONDS: waits until PID is gone (or a zombie).
wait_pid_exit() {
    local i n=$(($2 * 20))
    for ((i = 0; i < n; i++)); do
        pid_alive "$1" || return 0
        sleep 0.05
    done
    return 1
}

# daemon_pids MNT: pids of lazyimg daemons whose last argument is MNT.
daemon_pids() {
    local p args
    for p in /proc/[0-9]*; do
        args=()
        mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
        # a daemon that hid a URL password in its arguments leaves NULs at the end
        while ((${#args[@]})) && [[ -z ${args[-1]} ]]; do unset 'args[-1]'; done
        ((${#args[@]} >= 3)) || continue
        [[ "${args[0]}" == "$LAZYIMG" && "${args[1]}" == mount && "${args[-1]}" == "$1" ]] || continue
        pid_alive "${p#/proc/}" && echo "${p#/proc/}"
    done
    return 0
}

# daemon_pid MNT: the one daemon serving MNT (fails otherwise).
daemon_pid() {
    local pids
    pids=$(daemon_pids "$1")
    [[ -n "$pids" && $(wc -l <<<"$pids") == 1 ]] || fail "expected one lazyimg daemon for $1, found: '${pids//$'\n'/ }'"
    echo "$pids"
}

# wait_mounted MNT SECONDS
wait_mounted() {
    local i n=$(($2 * 20))
    for ((i = 0; i < n; i++)); do
        mountpoint -q "$1" && return 0
        sleep 0.05
    done
    return 1
}

# lazyimg_mount STORE MNT [OPTIONS...]: mounts (daemonized) and checks that the
# mount is in place when the command returns. Sets MOUNT_PID.
MOUNT_PID=""
lazyimg_mount() {
    local store=$1 mnt=$2 err
    shift 2
    mkdir -p "$mnt"
    T_MOUNTS+=("$mnt")
    if ! err=$("$LAZYIMG" mount "$@" "$store" "$mnt" 2>&1); then
        fail "lazyimg mount $* $store $mnt failed" "$err"
    fi
    mountpoint -q "$mnt" || fail "lazyimg mount returned before $mnt was mounted"
    MOUNT_PID=$(daemon_pid "$mnt")
    T_PIDS+=("$MOUNT_PID")
}

# lazyimg_mount_fg STORE MNT LOG [WRAPPER...] -- [OPTIONS...]: runs the daemon
# in the foreground (optionally under WRAPPER, e.g. strace) in the background of
# this shell and waits for the mount. Sets MOUNT_PID (the daemon itself).
lazyimg_mount_fg() {
    local store=$1 mnt=$2 log=$3 wrap=() opts=()
    shift 3
    while (($#)) && [[ $1 != -- ]]; do
        wrap+=("$1")
        shift
    done
    (($#)) && shift
    opts=("$@")
    mkdir -p "$mnt"
    T_MOUNTS+=("$mnt")
    "${wrap[@]}" "$LAZYIMG" mount -f "${opts[@]}" "$store" "$mnt" >"$log" 2>&1 &
    T_PIDS+=("$!")
    wait_mounted "$mnt" 20 || fail "foreground daemon did not mount $mnt within 20 s" "$(cat "$log")"
    MOUNT_PID=$(daemon_pid "$mnt")
    T_PIDS+=("$MOUNT_PID")
}

# lazyimg_umount MNT: lazyimg umount, then the daemon must exit and the mount be gone.
lazyimg_umount() {
    local mnt=$1 pids err p
    pids=$(daemon_pids "$mnt")
    err=$("$LAZYIMG" umount "$mnt" 2>&1) || fail "lazyimg umount $mnt failed" "$err"
    ! mountpoint -q "$mnt" || fail "$mnt still mounted after lazyimg umount"
    for p in $pids; do
        wait_pid_exit "$p" 10 || fail "daemon $p did not exit within 10 s of the unmount of $mnt"
    done
}

# make_image OUT LAYOUT [SEED]  /  make_preset OUT CHUNK [SEED]
make_image() {
    "$MKIMAGE" --seed "${3:-1}" "$1" "$2" >/dev/null || fail "lazyimg-mkimage $1 $2 failed"
}
make_preset() {
    "$MKIMAGE" --seed "${3:-1}" --preset "mixed:$2" "$1" >/dev/null || fail "lazyimg-mkimage --preset mixed:$2 $1 failed"
}

# mkpbs ARGS...: writes a snapshot; prints the summary line
# (SNAPSHOT_DIR chunks=N new=N zero=N bytes=N stored=N).
mkpbs() {
    local out
    out=$("$MKPBS" --jobs 2 "$@" 2>&1) || fail "lazyimg-mkpbs $* failed" "$out"
    echo "$out"
}

# new_store DIR: a datastore with an empty .chunks. lazyimg-mkpbs then
# creates only the .chunks/XXXX prefix directories it uses; a full
# .chunks/0000..ffff (what mkpbs makes for a new DIR) costs ~10 s to create
# and ~7 s to remove on a slow disk, so only t-mount uses one.
new_store() {
    mkdir -p "$1/.chunks"
    : >"$1/.lock"
}

# begin_mount_test [PROGRAM...]: how a test that mounts a datastore starts:
# root and /dev/fuse (else it is skipped), the PROGRAMs it needs, its work
# directory (the current directory from now on), an empty datastore in
# S=$W/store and the mountpoint path M=$W/mnt.
begin_mount_test() {
    require_fuse
    require_cmd "$@"
    setup_workdir
    cd "$W"
    S=$W/store
    M=$W/mnt
    new_store "$S"
}

# summary_field LINE NAME: NAME=N from an mkpbs summary line.
summary_field() {
    sed -nE "s/.* $2=([0-9]+).*/\1/p" <<<"$1"
}

# Fixed index (.fidx) helpers: a 4096-byte header (magic 8, uuid 16,
# ctime 8, index checksum 32, image size 8 at 64, chunk size 8 at 72, ...),
# then one 32-byte SHA-256 digest per chunk.
# fidx_digest FIDX N: digest of chunk N, in hex.
fidx_digest() {
    od -An -v -tx1 -j $((4096 + 32 * $2)) -N 32 "$1" | tr -d ' \n'
}
# fidx_digests FIDX: all digests, one per line (index order).
fidx_digests() {
    od -An -v -tx1 -w32 -j 4096 "$1" | tr -d ' '
}
# fidx_has FIDX DIGEST: the index uses the chunk DIGEST (no pipe: grep -q
# exiting early would make pipefail see od's SIGPIPE)
fidx_has() {
    local d
    d=$(fidx_digests "$1")
    grep -qx "$2" <<<"$d"
}
# chunk_path STORE DIGEST: the chunk file of DIGEST.
chunk_path() {
    echo "$1/.chunks/${2:0:4}/$2"
}

# sha_of FILE: its SHA-256 in hex.
sha_of() {
    sha256sum "$1" | cut -d' ' -f1
}
# read_range FILE OFF LEN [dd iflags]: the bytes of [OFF, OFF+LEN) on stdout.
read_range() {
    local fl=skip_bytes,count_bytes
    [[ -n "${4:-}" ]] && fl=$fl,$4
    dd if="$1" iflag="$fl" skip="$2" count="$3" bs=64K status=none
}

# daemon_threads NAME: the ids of the mounted daemon's (MOUNT_PID) threads named NAME
daemon_threads() {
    local t
    for t in /proc/"$MOUNT_PID"/task/*; do
        [[ $(cat "$t/comm") == "$1" ]] && echo "${t##*/}"
    done
    return 0
}

# zero_digest SIZE: sha256 of SIZE zero bytes.
zero_digest() {
    head -c "$1" /dev/zero | sha256sum | cut -d' ' -f1
}
