#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Teardown: unmounting or SIGTERM while `mount --hydrate` fetches a local
# datastore of many small chunks, with `lazyimg status` asking all the while,
# at a random moment: every time the daemon exits within 5 s, the mount is
# gone and no process is left (the daemon once stopped its fetcher pool before
# hydration, whose next chunk then waited forever for a worker that had left,
# with the mountpoint still mounted and nobody serving it). The same against
# an HTTP store whose server stalls every chunk transfer, and one whose
# server stalls the image index that hydration loads first, or that a stat
# of the image is waiting for (the load is cancelled). `lazyimg umount`
# returns only once the daemon has exited (it flushes the disk cache after
# the mount is gone), says so in --help, gives up after --timeout with a
# message, and says "not mounted" for a path that is not mounted.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 curl timeout
. "$T_DIR/lib_remote.sh"
T1=2025-09-01T00:00:00Z
ROUNDS=${TEARDOWN_ROUNDS:-30}
LIMIT_MS=5000 # how long the daemon may take to exit
# 1536 distinct 64 KiB chunks: hydration keeps submitting for a second or more
make_image a.raw rand:96M 1
mkpbs --chunk-size 64K --time $T1 "$S" drive-scsi0.img=a.raw >/dev/null
IMG=vm/100/$T1/drive-scsi0.img
mkdir -p "$M"
T_MOUNTS+=("$M")
# The disk cache on tmpfs: 5 s is the daemon's own teardown, not the time the
# disk takes to flush what the cache had queued (that comes after the mount
# is gone, and `lazyimg umount` waits for it: tested below on disk).
C=$(mktemp -d /dev/shm/lazyimg-teardown.XXXXXX 2>/dev/null) || C=$W/cache-tmp
add_cleanup "rm -rf '$C'"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# mounted MNT: MNT is in our mount table (no stat of MNT: it could hang)
mounted() {
    local m
    m=$(awk '{print $5}' /proc/self/mountinfo)
    grep -qxF -- "$1" <<<"$m"
}

# wait_gone PID MS: waits until PID has exited (or is a zombie); prints the ms taken
wait_gone() {
    local t0 t
    t0=$(now_ms)
    while pid_alive "$1"; do
        t=$(($(now_ms) - t0))
        if ((t > $2)); then
            echo "$t"
            return 1
        fi
        sleep 0.02
    done
    echo $(($(now_ms) - t0))
}

# the daemon of $M (lib.sh's scan of /proc complains of processes that go
# away meanwhile, and the status loops make many)
quiet_daemon_pid() {
    local p
    p=$(daemon_pid "$M" 2>/dev/null) || fail "expected one lazyimg daemon for $M" "$(daemon_pids "$M" 2>/dev/null)"
    echo "$p"
}

STATUS_PID=""
start_status_loop() {
    (while :; do
        timeout 10 "$LAZYIMG" status "$M" >/dev/null 2>&1 || true
        sleep 0.01
    done) &
    STATUS_PID=$!
    T_PIDS+=("$STATUS_PID")
}
stop_status_loop() {
    kill -TERM "$STATUS_PID" 2>/dev/null || true
    wait "$STATUS_PID" 2>/dev/null || true
}

# bg_mount LOG STORE [OPTIONS...]: a foreground daemon (pid in DPID) in the
# background of this shell, hydrating into a fresh cache; waits for the mount
wait_mount_ms() {
    local i
    for ((i = 0; i < 400; i++)); do
        mounted "$M" && return 0
        pid_alive "$DPID" || fail "the daemon exited before mounting" "$(cat "$1")"
        sleep 0.02
    done
    fail "the daemon did not mount $M within 8 s" "$(cat "$1")"
}
DPID=""
bg_mount() {
    local log=$1 store=$2
    shift 2
    "$LAZYIMG" mount -f --hydrate --cache-dir "$C" "$@" "$store" "$M" >"$log" 2>&1 &
    DPID=$!
    T_PIDS+=("$DPID")
    wait_mount_ms "$log"
}

# sigterm_rounds NAME N STORE [OPTIONS...]: N rounds of mount --hydrate,
# status loop, SIGTERM after MIN_MS + 0..500 ms
MIN_MS=0
sigterm_rounds() {
    local name=$1 n=$2 store=$3 i ms took rc slowest=0 log
    shift 3
    for ((i = 0; i < n; i++)); do
        rm -rf "${C:?}"/*
        log=$W/$name.$i.log
        bg_mount "$log" "$store" "$@"
        start_status_loop
        ms=$((MIN_MS + RANDOM % 500))
        sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
        kill -TERM "$DPID"
        took=$(wait_gone "$DPID" $LIMIT_MS) ||
            fail "$name round $i: the daemon (SIGTERM $ms ms after mounting) did not exit within $LIMIT_MS ms" \
                "$(cat "$log"; mounted "$M" && echo "$M still mounted")"
        rc=0
        wait "$DPID" || rc=$?
        stop_status_loop
        ((rc == 0)) || fail "$name round $i: the daemon exited with status $rc" "$(cat "$log")"
        ! mounted "$M" || fail "$name round $i: $M is still mounted after the daemon exited"
        ((took > slowest)) && slowest=$took
    done
    ok "$name: $n rounds of SIGTERM at a random moment of hydration: the daemon exited every time, in at most $slowest ms, the mount gone"
}

# --- local datastore: SIGTERM ---------------------------------------------------
sigterm_rounds local-sigterm "$ROUNDS" "$S"

# --- local datastore: lazyimg umount ----------------------------------------------
slowest=0
for ((i = 0; i < ROUNDS; i++)); do
    rm -rf "${C:?}"/*
    out=$("$LAZYIMG" mount --hydrate --cache-dir "$C" "$S" "$M" 2>&1) || fail "mount --hydrate failed" "$out"
    DPID=$(quiet_daemon_pid)
    T_PIDS+=("$DPID")
    start_status_loop
    ms=$((RANDOM % 500))
    sleep "$(printf '0.%03d' "$ms")"
    t0=$(now_ms)
    out=$(timeout 60 "$LAZYIMG" umount "$M" 2>&1) || fail "umount round $i: lazyimg umount failed" "$out"
    took=$(($(now_ms) - t0))
    ! pid_alive "$DPID" || fail "umount round $i: lazyimg umount returned with the daemon (pid $DPID) still running"
    stop_status_loop
    ((took <= LIMIT_MS)) || fail "umount round $i: lazyimg umount took $took ms (daemon exit included)"
    ! mounted "$M" || fail "umount round $i: $M is still mounted"
    ((took > slowest)) && slowest=$took
done
ok "umount: $ROUNDS rounds at a random moment of hydration: lazyimg umount returned once the daemon had exited, in at most $slowest ms"

# --- lazyimg umount waits for the daemon's disk cache flush (cache on disk) -------
D=$W/cache-disk
out=$("$LAZYIMG" mount --hydrate --cache-dir "$D" "$S" "$M" 2>&1) || fail "mount --hydrate failed" "$out"
DPID=$(quiet_daemon_pid)
T_PIDS+=("$DPID")
sleep 1
out=$(timeout 60 "$LAZYIMG" umount "$M" 2>&1) || fail "lazyimg umount failed" "$out"
! pid_alive "$DPID" || fail "lazyimg umount returned while the daemon (pid $DPID) was still running"
out=$(rm -rf "$D" 2>&1) || fail "rm -rf CACHE right after lazyimg umount failed" "$out"
ok "lazyimg umount M; rm -rf CACHE: the daemon had exited, the cache directory was free"

# --- right after lazyimg mount returns, the daemon is ready: its control socket
# is there, so lazyimg umount at once finds it and waits for it (the parent
# used to return as soon as the daemon had detached, before it made the
# socket; a review saw no socket in 4 of 20 mounts) -------------------------------
for ((i = 0; i < 10; i++)); do
    rm -rf "$D"
    out=$("$LAZYIMG" mount --cache-dir "$D" "$S" "$M" 2>&1) || fail "mount round $i failed" "$out"
    out=$(timeout 60 "$LAZYIMG" umount "$M" 2>&1) || fail "umount right after mount, round $i: failed" "$out"
    ! grep -q "cannot find its daemon" <<<"$out" ||
        fail "umount right after mount, round $i: the daemon had no control socket yet" "$out"
    pids=$(daemon_pids "$M")
    [[ -z $pids ]] || fail "umount right after mount, round $i: returned with the daemon ($pids) still running"
done
ok "umount right after mount (10 rounds): the daemon was found and had exited when umount returned"
# the same with the daemon's socket() calls held 0.7 s by strace (detached,
# -D: the mount command returns to this shell when its parent process exits),
# so that a parent that does not wait for the daemon is seen every time
if command -v strace >/dev/null; then
    rm -rf "$D"
    # (to a file: the detached tracer keeps the output open until the daemon exits)
    strace -D -f -qq -o /dev/null -e trace=socket -e inject=socket:delay_enter=700000 \
        "$LAZYIMG" mount --cache-dir "$D" "$S" "$M" >"$W/strace-mount.out" 2>&1 ||
        fail "mount under strace failed" "$(cat "$W/strace-mount.out")"
    dev=$(stat -c '%Hd:%Ld' "$M")
    [[ -S /run/lazyimg/$dev.sock ]] ||
        fail "lazyimg mount returned before the daemon had made its control socket (socket() held 0.7 s)"
    out=$(timeout 60 "$LAZYIMG" umount "$M" 2>&1) || fail "umount of the mount under strace failed" "$out"
    ok "a daemon slow to make its control socket (0.7 s): lazyimg mount returned after it was there"
fi

# --- lazyimg umount: help, not mounted, a daemon that does not exit ---------------
"$LAZYIMG" umount --help | grep -q "waits until its daemon has exited" ||
    fail "lazyimg umount --help does not say that it waits for the daemon"
mkdir -p "$W/plain"
rc=0
out=$("$LAZYIMG" umount "$W/plain" 2>&1) || rc=$?
((rc != 0)) || fail "lazyimg umount of a directory that is not mounted succeeded"
grep -q "$W/plain: not mounted" <<<"$out" || fail "lazyimg umount of a plain directory: expected 'not mounted'" "$out"
! grep -qiE "mtab|fusermount" <<<"$out" || fail "lazyimg umount of a plain directory shows fusermount3's message" "$out"
ok "lazyimg umount of a plain directory: '$out'"

out=$("$LAZYIMG" mount --cache-dir "$C" "$S" "$M" 2>&1) || fail "mount failed" "$out"
DPID=$(quiet_daemon_pid)
T_PIDS+=("$DPID")
kill -STOP "$DPID"
add_cleanup "kill -CONT $DPID"
rc=0
t0=$(now_ms)
out=$(timeout 30 "$LAZYIMG" umount --timeout 1 "$M" 2>&1) || rc=$?
took=$(($(now_ms) - t0))
kill -CONT "$DPID"
((rc == 1)) || fail "lazyimg umount --timeout 1 of a stopped daemon: expected status 1, got $rc" "$out"
grep -q "still running after 1 s" <<<"$out" || fail "lazyimg umount --timeout 1: no message about the daemon" "$out"
((took < 5000)) || fail "lazyimg umount --timeout 1 took $took ms"
! mounted "$M" || fail "$M is still mounted after lazyimg umount --timeout 1"
took=$(wait_gone "$DPID" $LIMIT_MS) || fail "the daemon did not exit once continued"
ok "lazyimg umount --timeout 1 of a stopped daemon: unmounted, status 1 and '$out'"

# --- HTTP store behind a stalled server -------------------------------------------
start_nginx "$S"
start_proxy "$NGINX_URL"
REMOTE_ROUNDS=${TEARDOWN_REMOTE_ROUNDS:-4}
# every chunk transfer stalls (headers, then nothing for 60 s)
proxy_fault stall seconds=60 "match=/\\.chunks/"
sigterm_rounds http-stalled-chunks "$REMOTE_ROUNDS" "$PROXY_URL" --snapshot "vm/100/$T1"
# the image index stalls: hydration is inside a blocking store request
proxy_fault stall seconds=60 "match=\\.fidx\$"
MIN_MS=300 # hydration is inside the load by then
sigterm_rounds http-stalled-index 2 "$PROXY_URL" --snapshot "vm/100/$T1"
# the index load is cancelled with the session: hydration stops in time
! grep -q "hydration did not stop within" "$W"/http-stalled-index.*.log ||
    fail "stalled index: hydration was left behind inside its index load" "$(cat "$W"/http-stalled-index.*.log)"
ok "stalled index: hydration's index load was cancelled, nothing left behind"

# a FUSE thread inside a blocking index load (a stat of the image, no
# hydration): the FUSE loop joins its threads before it returns, so the load
# must be cancelled as soon as the session ends, not run to its deadline
for ((i = 0; i < 2; i++)); do
    rm -rf "${C:?}"/*
    log=$W/http-stalled-stat.$i.log
    "$LAZYIMG" mount -f --cache-dir "$C" --fetch-timeout 60 --snapshot "vm/100/$T1" \
        "$PROXY_URL" "$M" >"$log" 2>&1 &
    DPID=$!
    T_PIDS+=("$DPID")
    wait_mount_ms "$log"
    stat "$M/vm/100/$T1/drive-scsi0.img" >/dev/null 2>&1 &
    STAT_PID=$!
    T_PIDS+=("$STAT_PID")
    sleep 0.5
    pid_alive "$STAT_PID" || fail "the stat of the image did not wait for the stalled index"
    kill -TERM "$DPID"
    took=$(wait_gone "$DPID" $LIMIT_MS) ||
        fail "stalled stat round $i: the daemon did not exit within $LIMIT_MS ms" \
            "$(cat "$log"; mounted "$M" && echo "$M still mounted")"
    wait "$STAT_PID" 2>/dev/null && fail "the stat of a stalled image succeeded"
    ! mounted "$M" || fail "stalled stat round $i: $M is still mounted"
done
ok "a stat inside a stalled index load: SIGTERM, the daemon exited in $took ms, the mount gone"
