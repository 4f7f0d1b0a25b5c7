#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A mount made by an unprivileged user (nobody, through the setuid
# fusermount3): it says once, at mount time, that the kernel readahead stays
# at the kernel's window (a root mount does not); root's `lazyimg status`
# reaches that user's daemon through its socket in /tmp/lazyimg-UID or
# /run/user/UID/lazyimg, and names the places it looked at when the socket
# is elsewhere. A user's daemon reads root's datastore out of the page
# cache with O_DIRECT (store_local.c cannot use mincore() for files it does
# not own). Runs in a private mount namespace; where /dev/fuse is not
# usable by other users (no udev), a 0666 node of the same device is bound
# over it there only.
set -euo pipefail
if [[ -z ${LAZYIMG_T_NS:-} ]]; then
    [[ $(id -u) == 0 ]] || { echo "SKIP - needs root"; exit 77; }
    exec unshare -m --propagation private env LAZYIMG_T_NS=1 bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd setpriv
setup_workdir
cd "$W"
chmod 755 "$W"
U=65534 # nobody
T=2025-07-10T12:00:00Z
S=$W/store
new_store "$S"
make_image a.raw rand:512K,zero:256K 1
mkpbs --chunk-size 64K --time $T "$S" drive-scsi0.img=a.raw >/dev/null
chmod -R a+rX "$S" a.raw
if [[ $(stat -c %a /dev/fuse) != 666 ]]; then
    mknod -m 666 "$W/fuse" c "$((16#$(stat -c %t /dev/fuse)))" "$((16#$(stat -c %T /dev/fuse)))"
    mount --bind "$W/fuse" /dev/fuse
fi
mkdir -p cache m1 m2 m3 run
chown $U cache m1 m2 m3
add_cleanup "rm -rf /tmp/lazyimg-$U /run/user/$U"
as_user() { setpriv --reuid $U --regid $U --clear-groups env -i PATH=/usr/bin:/bin HOME=/nonexistent LAZYIMG_CACHE_DIR=$W/cache "$@"; }

# a user's mount with --page-cache (socket in /tmp/lazyimg-UID): one line
# about the kernel readahead, which only root can raise
T_MOUNTS+=("$W/m1")
as_user "$LAZYIMG" mount --page-cache "$S" "$W/m1" >m1.log 2>&1 || fail "user mount failed" "$(cat m1.log)"
T_PIDS+=("$(daemon_pid "$W/m1")")
grep -q "user_id=$U," <(grep -F " $W/m1 " /proc/self/mountinfo) || fail "m1 is not a mount of uid $U"
n=$(grep -c "kernel readahead of $W/m1 stays at [0-9]* KiB, not the 16384 KiB of --readahead-kb: only root can change it" m1.log || true)
expect_eq "the user's mount says once that the kernel readahead stays" 1 "$n"
expect_eq "and says nothing else" 1 "$(wc -l <m1.log)"
as_user cat "$W/m1/vm/100/$T/drive-scsi0.img" | cmp - a.raw || fail "the user's mount reads wrong bytes"
"$LAZYIMG" status "$W/m1" >st1.out 2>&1 || fail "root: status of the user's mount failed" "$(cat st1.out)"
grep -qF "* $S (active)" st1.out || fail "root: status of the user's mount" "$(cat st1.out)"
grep -qF "vm/100/$T/drive-scsi0.img" st1.out || fail "root: status lists no image" "$(cat st1.out)"
ok "root's status reaches the user's daemon (/tmp/lazyimg-$U)"
"$LAZYIMG" status "$W/m1/vm/100/$T" >/dev/null 2>&1 || fail "root: status of a path inside the user's mount failed"
ok "root's status of a path inside the user's mount"

# XDG_RUNTIME_DIR=/run/user/UID
mkdir -p /run/user/$U && chown $U /run/user/$U && chmod 700 /run/user/$U
T_MOUNTS+=("$W/m2")
as_user XDG_RUNTIME_DIR=/run/user/$U "$LAZYIMG" mount "$S" "$W/m2" >m2.log 2>&1 || fail "user mount 2 failed" "$(cat m2.log)"
T_PIDS+=("$(daemon_pid "$W/m2")")
expect_eq "a user's mount without --page-cache says nothing" "" "$(cat m2.log)"
"$LAZYIMG" status "$W/m2" >st2.out 2>&1 || fail "root: status of the user's mount (XDG) failed" "$(cat st2.out)"
grep -qF "* $S (active)" st2.out || fail "root: status (XDG)" "$(cat st2.out)"
ok "root's status reaches the user's daemon (/run/user/$U/lazyimg)"
# the user's own shell without $XDG_RUNTIME_DIR (ssh, cron, su) finds the
# daemon there too
as_user "$LAZYIMG" status "$W/m2" >st2u.out 2>&1 || fail "user: status without \$XDG_RUNTIME_DIR failed" "$(cat st2u.out)"
grep -qF "* $S (active)" st2u.out || fail "user: status without \$XDG_RUNTIME_DIR" "$(cat st2u.out)"
ok "the user's status without \$XDG_RUNTIME_DIR finds the daemon in /run/user/$U/lazyimg"

# somewhere root cannot guess: an exact reason
mkdir -p "$W/run/x" && chown $U "$W/run/x" && chmod 700 "$W/run/x"
T_MOUNTS+=("$W/m3")
as_user XDG_RUNTIME_DIR=$W/run/x "$LAZYIMG" mount "$S" "$W/m3" >m3.log 2>&1 || fail "user mount 3 failed" "$(cat m3.log)"
T_PIDS+=("$(daemon_pid "$W/m3")")
out=$("$LAZYIMG" status "$W/m3" 2>&1) && fail "status found a socket it cannot know" "$out"
[[ $out == *"mounted by uid $U"*"/run/user/$U/lazyimg or /tmp/lazyimg-$U"* && $out != *"not a lazyimg mount"* ]] ||
    fail "status: expected the owner and the places looked at" "$out"
ok "a socket elsewhere: status names the owner and where it looked"

# root's own mount: no readahead line
mkdir -p m4
T_MOUNTS+=("$W/m4")
"$LAZYIMG" mount --cache-dir "$W/cache-root" "$S" "$W/m4" >m4.log 2>&1 || fail "root mount failed" "$(cat m4.log)"
T_PIDS+=("$(daemon_pid "$W/m4")")
! grep -q "readahead" m4.log || fail "root's mount warns about readahead" "$(cat m4.log)"
ok "root's mount raises the readahead silently"

# another user's status of root's --allow-other mount: who can ask, not
# "not a lazyimg mount"
mkdir -p m5
T_MOUNTS+=("$W/m5")
"$LAZYIMG" mount --no-cache --allow-other "$S" "$W/m5" >m5.log 2>&1 || fail "root mount --allow-other failed" "$(cat m5.log)"
T_PIDS+=("$(daemon_pid "$W/m5")")
out=$(as_user "$LAZYIMG" status "$W/m5" 2>&1) && fail "uid $U: status of root's mount succeeded" "$out"
[[ $out == *"mounted by uid 0"* && $out != *"not a lazyimg mount"* ]] || fail "uid $U: status of root's mount" "$out"
ok "another user's status names the mount's owner: $out"

# --- a user's daemon reading a datastore it does not own (root's files, mode
# 0644): mincore() would call every page cached for such files, so
# store_local.c asks with an RWF_NOWAIT read of a chunk file's last page
# instead. Out of the page cache: every chunk of 1 MiB read with O_DIRECT,
# twice in a row (the probe drops the page it read in); in it: none.
SD=$W/directstore
make_image dbig.raw rand:3M,zero:1M,rand:3M 21 # 6 data chunks of 1 MiB, incompressible
mkpbs --chunk-size 1M --id 501 --time $T "$SD" drive-scsi0.img=dbig.raw >/dev/null
chmod -R a+rX "$SD" dbig.raw
mapfile -t dchunks < <(find "$SD/.chunks" -type f -size +1000k | sort)
((${#dchunks[@]} == 6)) || fail "the store has ${#dchunks[@]} chunk files of 1 MiB and more, expected 6"
evict() { # PATH...: out of the page cache; prints the bytes that stayed
    sync
    python3 -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$@"
    fincore --bytes --noheadings --output RES "$@" | awk '{s += $1} END {print s + 0}'
}
user_read() { # TAG: a fresh --no-cache mount by the user, read whole; prints its direct_reads
    local n
    mkdir -p "$W/m6" && chown $U "$W/m6"
    as_user "$LAZYIMG" mount --no-cache "$SD" "$W/m6" >"m6-$1.log" 2>&1 || fail "user mount ($1) failed" "$(cat "m6-$1.log")"
    as_user cat "$W/m6/vm/501/$T/drive-scsi0.img" | cmp - dbig.raw || fail "the user's mount reads wrong bytes ($1)"
    n=$("$LAZYIMG" status --json "$W/m6" | python3 -c 'import json, sys; print(json.load(sys.stdin)["stores"][0]["direct_reads"])')
    lazyimg_umount "$W/m6"
    echo "$n"
}
T_MOUNTS+=("$W/m6")
left=$(evict "${dchunks[@]}")
if ((left > 0)); then
    echo "# $W's filesystem keeps files in memory ($left bytes stayed after POSIX_FADV_DONTNEED): the user's O_DIRECT reads are not checked here"
else
    n=$(user_read cold)
    ((n == 6)) || fail "the user's daemon, store out of the page cache: $n chunks read with O_DIRECT, expected 6"
    n=$(user_read again)
    ((n == 6)) || fail "the user's daemon, second read out of the page cache: $n chunks read with O_DIRECT, expected 6 ($(fincore --bytes --noheadings --output RES "${dchunks[@]}" | tr '\n' ' ')bytes of the chunk files in the page cache)"
    ok "a user's daemon reads root's datastore out of the page cache with O_DIRECT: 6 of 6 chunks, twice in a row"
    cat "${dchunks[@]}" >/dev/null
    n=$(user_read warm)
    ((n == 0)) || fail "the user's daemon, store in the page cache: $n chunks read with O_DIRECT, expected none"
    ok "and through the page cache when the chunk files are in it: 0 direct reads"
fi
