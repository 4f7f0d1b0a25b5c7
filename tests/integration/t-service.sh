#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Running lazyimg as a service: the systemd notification protocol (READY=1
# only once the mount is live, MAINPID, STOPPING=1 at unmount; read from a
# datagram socket of the test's, as systemd would), the unit file (checked by
# systemd-analyze verify where it is installed), --config files (settings,
# the command line winning, errors naming FILE:LINE, $LAZYIMG_CONFIG),
# mount(8) and fstab (type fuse.lazyimg through libfuse's mount.fuse3, and
# through a mount.fuse.lazyimg link; mount --fstab FILE -a) and --log-level.
set -euo pipefail
if [[ -z ${LAZYIMG_T_NS:-} ]]; then
    [[ $(id -u) == 0 ]] || { echo "SKIP - needs root"; exit 77; }
    exec unshare -m --propagation private env LAZYIMG_T_NS=1 bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 mount
T=2025-09-01T08:00:00Z
make_image a.raw rand:3M,zero:4M,rand:1M 7
mkpbs --chunk-size 1M --id 100 --time $T "$S" drive-scsi0.img=a.raw >/dev/null
IMG=vm/100/$T/drive-scsi0.img

# served_by MNT: the lazyimg daemon whose arguments name MNT (any command line:
# --config, mount.fuse3's or a mount.fuse.lazyimg link's)
served_by() {
    local p args exe pids=""
    exe=$(readlink -f "$LAZYIMG")
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/exe" 2>/dev/null) == "$exe" ]] || continue
        mapfile -d '' -t args <"$p/cmdline" 2>/dev/null || continue
        for a in "${args[@]}"; do
            if [[ $a == "$1" || $a == *"$(basename "$1")"* ]]; then
                pids+="${p#/proc/} "
                break
            fi
        done
    done
    [[ $(wc -w <<<"$pids") == 1 ]] || fail "expected one lazyimg daemon for $1, found: '$pids'"
    echo "${pids% }"
}

# --- sd_notify: READY=1 once the mount is live, STOPPING=1 at unmount -------
# listen SOCKET OUT: records each datagram to OUT as "<mounted?> <text>" lines
listen() {
    python3 - "$1" "$2" "$M" <<'EOF' &
import os, socket, sys
path, out, mnt = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + path[1:] if path.startswith("@") else path)
open(out + ".ready", "w").close()
with open(out, "w", buffering=1) as f:
    while True:
        msg = s.recv(4096).decode()
        f.write("%s %s\n" % (os.path.ismount(mnt), msg.replace("\n", "|")))
        if "STOPPING=1" in msg:
            break
EOF
    T_PIDS+=("$!")
    for _ in $(seq 50); do [[ -e $2.ready ]] && return 0; sleep 0.1; done
    fail "the notify listener did not start"
}
for sock in "$W/notify.sock" "@lazyimg-t-service-$$"; do
    listen "$sock" notify.out
    mkdir -p "$M"
    T_MOUNTS+=("$M")
    NOTIFY_SOCKET=$sock "$LAZYIMG" mount -f --no-cache "$S" "$M" >fg.log 2>&1 &
    pid=$!
    T_PIDS+=("$pid")
    for _ in $(seq 100); do grep -q READY=1 notify.out 2>/dev/null && break; sleep 0.1; done
    grep -q READY=1 notify.out || fail "$sock: no READY=1" "$(cat fg.log)"
    line=$(grep READY=1 notify.out)
    [[ $line == "True "* ]] || fail "$sock: READY=1 came before the mount was live" "$line"
    [[ $line == *"MAINPID=$pid"* && $line == *"STATUS=mounted $S at $M"* ]] ||
        fail "$sock: READY=1 without MAINPID=$pid and the mount's status" "$line"
    cmp "$M/$IMG" a.raw || fail "$sock: the mount reads wrong bytes"
    kill -TERM "$pid"
    wait_pid_exit "$pid" 10 || fail "$sock: the daemon did not exit on SIGTERM"
    for _ in $(seq 50); do grep -q STOPPING=1 notify.out && break; sleep 0.1; done
    grep -q "STOPPING=1" notify.out || fail "$sock: no STOPPING=1" "$(cat notify.out)"
    ! mountpoint -q "$M" || fail "$sock: still mounted after SIGTERM"
    ok "notify socket $sock: READY=1 with MAINPID once mounted, STOPPING=1 at SIGTERM"
    rm -f notify.out notify.out.ready
done
# a socket that is named but gone: a warning, the mount goes on
NOTIFY_SOCKET=$W/nobody-listens "$LAZYIMG" mount -f --no-cache "$S" "$M" >fg.log 2>&1 &
pid=$!
T_PIDS+=("$pid")
wait_mounted "$M" 20 || fail "no mount with a dead notify socket" "$(cat fg.log)"
sleep 0.3
grep -q "cannot notify the service manager at \$NOTIFY_SOCKET" fg.log || fail "no warning for a dead notify socket" "$(cat fg.log)"
kill -TERM "$pid"
wait_pid_exit "$pid" 10 || fail "the daemon did not exit"
ok "a notify socket nobody reads: one warning, the mount works"

# --- --log-level ----------------------------------------------------------------
"$LAZYIMG" mount -f --no-cache --log-level warning "$S" "$M" >fg.log 2>&1 &
pid=$!
T_PIDS+=("$pid")
wait_mounted "$M" 20 || fail "no mount with --log-level warning" "$(cat fg.log)"
kill -TERM "$pid"
wait_pid_exit "$pid" 10 || fail "the daemon did not exit"
! grep -q "mounted $S" fg.log || fail "--log-level warning: the info line was logged" "$(cat fg.log)"
out=$("$LAZYIMG" mount --log-level loud "$S" "$M" 2>&1) && fail "--log-level loud was accepted"
[[ $out == *"--log-level: expected error, warning, info or debug, got 'loud'"* ]] || fail "--log-level loud: message" "$out"
ok "--log-level warning drops info lines; a bad level is refused"

# --- the unit file ------------------------------------------------------------------
UNIT=$T_DIR/../../contrib/systemd/lazyimg@.service
grep -q '^Type=notify$' "$UNIT" && grep -q '^ExecStart=@bindir@/lazyimg mount --foreground --config /etc/lazyimg/%i.conf$' "$UNIT" ||
    fail "the unit is not Type=notify running lazyimg mount --foreground --config"
if command -v systemd-analyze >/dev/null; then
    mkdir -p units
    sed "s|@bindir@/lazyimg|$LAZYIMG|; /^AssertPathExists/d" "$UNIT" >units/lazyimg@.service
    ln -sf lazyimg@.service units/lazyimg@t.service
    out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no units/lazyimg@t.service 2>&1) ||
        fail "systemd-analyze verify of the unit failed" "$out"
    [[ -z $out ]] || fail "systemd-analyze verify has remarks on the unit" "$out"
    ok "systemd-analyze verify accepts lazyimg@.service"
else
    echo "# systemd-analyze is not installed: the unit is not verified"
fi

# --- --config ---------------------------------------------------------------------
cat >svc.conf <<EOF
# a service's settings
store = $S
mountpoint = "$M"
cache-dir = $W/cache-conf
mem-cache = 16M

no-boot-profile
EOF
T_MOUNTS+=("$M")
out=$("$LAZYIMG" mount --config svc.conf 2>&1) || fail "mount --config svc.conf failed" "$out"
T_PIDS+=("$(served_by svc.conf)")
cmp "$M/$IMG" a.raw || fail "--config: wrong bytes"
[[ -d $W/cache-conf/data ]] || fail "--config: cache-dir from the file not used"
lazyimg_umount "$M"
ok "--config FILE: store, mountpoint and options from the file"
lazyimg_mount "$S" "$M" --config svc.conf --cache-dir "$W/cache-cli"
cmp "$M/$IMG" a.raw || fail "--config + command line: wrong bytes"
[[ -d $W/cache-cli/data ]] || fail "the command line's --cache-dir did not win over the file's"
lazyimg_umount "$M"
ok "the command line wins over the file"
printf 'store = %s\nmountpoint = %s\ncache-size = 64M\nbogus option\n' "$S" "$M" >bad.conf
out=$("$LAZYIMG" mount --config bad.conf 2>&1) && fail "a bad config line was accepted"
[[ $out == *"bad.conf:4: 'bogus option' is not a setting"* ]] || fail "bad config: the message does not name FILE:LINE" "$out"
printf 'nosuch-option = 1\n' >bad2.conf
out=$("$LAZYIMG" mount --config bad2.conf "$S" "$M" 2>&1) && fail "an unknown option in the file was accepted"
[[ $out == *"nosuch-option"* ]] || fail "unknown option in the file: no message naming it" "$out"
out=$("$LAZYIMG" mount --config "$W/missing.conf" 2>&1) && fail "a missing config file was accepted"
[[ $out == *"missing.conf: No such file or directory"* ]] || fail "missing config: message" "$out"
! mountpoint -q "$M" || fail "a refused config mounted anyway"
# a setting that needs a value, written bare, must not take the next option as its value
printf 'store = %s\nmountpoint = %s\ncache-dir\n' "$S" "$M" >bare.conf
for next in --no-boot-profile -f; do
    out=$("$LAZYIMG" mount --config bare.conf "$next" 2>&1) && fail "a bare cache-dir line was accepted (before $next)"
    [[ $out == *"bare.conf:3: cache-dir needs a value (cache-dir = VALUE)"* ]] ||
        fail "bare setting before $next: no message naming FILE:LINE" "$out"
    [[ ! -e ./$next ]] || fail "the bare setting made a directory of the next option $next"
done
# an abbreviation of --config (which getopt would take) is refused, not ignored
out=$("$LAZYIMG" mount --conf svc.conf 2>&1) && fail "--conf FILE was accepted"
[[ $out == *"--config: write the option in full"* ]] || fail "--conf: no message" "$out"
! mountpoint -q "$M" || fail "a refused config mounted anyway"
ok "config errors: FILE:LINE for a bad line, the option for an unknown one, a missing file, a bare setting that needs a value, --config abbreviated; no mount"
printf 'cache-dir = %s\n' "$W/cache-env" >env.conf
LAZYIMG_CONFIG=$W/env.conf lazyimg_mount "$S" "$M"
cmp "$M/$IMG" a.raw || fail "\$LAZYIMG_CONFIG: wrong bytes"
[[ -d $W/cache-env/data ]] || fail "\$LAZYIMG_CONFIG: its cache-dir was not used"
lazyimg_umount "$M"
RC=0
out=$(LAZYIMG_CONFIG=$W/no-such.conf "$LAZYIMG" mount "$S" "$M" 2>&1) || RC=$?
((RC != 0)) || fail "\$LAZYIMG_CONFIG naming a missing file: mounted without it"
[[ $out == *"no-such.conf: No such file or directory"* ]] || fail "\$LAZYIMG_CONFIG missing: message" "$out"
! mountpoint -q "$M" || fail "\$LAZYIMG_CONFIG missing: mounted"
# a bad \$LAZYIMG_FETCH_CONCURRENCY: --help still works, --fetch-concurrency wins
LAZYIMG_FETCH_CONCURRENCY=0 "$LAZYIMG" mount --help >/dev/null || fail "a bad \$LAZYIMG_FETCH_CONCURRENCY broke mount --help"
LAZYIMG_FETCH_CONCURRENCY=abc lazyimg_mount "$S" "$M" --fetch-concurrency 4
lazyimg_umount "$M"
ok "\$LAZYIMG_CONFIG names the default file, and must exist; \$LAZYIMG_FETCH_CONCURRENCY yields to --fetch-concurrency"
# size and count errors say which rule a value broke
for bad in "--mem-cache 1.5G:not a size" "--mem-cache 1M:less than the least, 4M" \
    "--mem-cache 99999999999999T:too large" "--readahead-kb 1M:expected 0 to 1048576"; do
    RC=0
    out=$("$LAZYIMG" mount ${bad%%:*} "$S" "$M" 2>&1) || RC=$?
    expect_eq "mount ${bad%%:*}: a usage error" 2 "$RC"
    [[ $out == *"${bad#*:}"* ]] || fail "mount ${bad%%:*}: the message does not say '${bad#*:}'" "$out"
done
# a mountpoint where another filesystem is mounted: not lazyimg's to unmount
mkdir -p tmpfs-mnt
mount -t tmpfs none tmpfs-mnt
RC=0
out=$("$LAZYIMG" mount "$S" tmpfs-mnt 2>&1) || RC=$?
umount tmpfs-mnt
((RC != 0)) || fail "mount over a tmpfs succeeded"
[[ $out == *"a tmpfs is mounted there (unmount it first)"* ]] || fail "mount over a tmpfs: message" "$out"
ok "size errors say not a size / too small / too large; a count takes no suffix; another filesystem on the mountpoint is named"
# mount.fuse3's drop_privileges hands over /dev/fd/N as the mountpoint
RC=0
out=$("$LAZYIMG" mount "$S" /dev/fd/3 2>&1 3</dev/null) || RC=$?
((RC != 0)) || fail "a /dev/fd/N mountpoint was accepted"
[[ $out == *"mount.fuse3's drop_privileges option), which lazyimg does not take"* ]] ||
    fail "/dev/fd/N mountpoint: the message does not name drop_privileges" "$out"
ok "a /dev/fd/N mountpoint (drop_privileges) is refused, naming the option"

# --- mount(8), fstab -------------------------------------------------------------------
# mount.fuse3 runs "lazyimg STORE MOUNTPOINT -o OPTIONS" from mount(8)'s own
# PATH: in this test's mount namespace /usr/local/bin is a directory with
# lazyimg in it
mkdir -p bin
ln -sf "$LAZYIMG" bin/lazyimg
ln -sf "$LAZYIMG" bin/mount.fuse.lazyimg
if command -v mount.fuse3 >/dev/null || [[ -x /sbin/mount.fuse3 ]]; then
    mount --bind "$W/bin" /usr/local/bin || fail "cannot bind the test's bin over /usr/local/bin"
    add_cleanup "umount /usr/local/bin"
    T_MOUNTS+=("$M")
    out=$(mount -t fuse.lazyimg "$S" "$M" -o "cache-dir=$W/cache-m8,mem_cache=16M,ro,noatime" 2>&1) ||
        fail "mount -t fuse.lazyimg failed" "$out"
    mountpoint -q "$M" || fail "mount -t fuse.lazyimg: not mounted"
    [[ $(findmnt -n -o FSTYPE "$M") == fuse.lazyimg ]] || fail "mount -t: not of type fuse.lazyimg"
    T_PIDS+=("$(served_by "$M")")
    cmp "$M/$IMG" a.raw || fail "mount -t fuse.lazyimg: wrong bytes"
    [[ -d $W/cache-m8/data ]] || fail "mount -t: -o cache-dir not used"
    lazyimg_umount "$M"
    ok "mount -t fuse.lazyimg STORE MNT -o cache-dir=...,mem_cache=16M,ro,noatime (mount.fuse3)"
    mkdir -p "$W/m2"
    printf '# test fstab\n%s %s fuse.lazyimg cache-dir=%s,no-boot-profile,nofail,_netdev 0 0\n' \
        "$S" "$W/m2" "$W/cache-fstab" >fstab
    T_MOUNTS+=("$W/m2")
    out=$(mount --fstab "$W/fstab" -a 2>&1) || fail "mount --fstab FILE -a failed" "$out"
    mountpoint -q "$W/m2" || fail "mount -a: not mounted" "$out"
    T_PIDS+=("$(served_by "$W/m2")")
    cmp "$W/m2/$IMG" a.raw || fail "fstab mount: wrong bytes"
    [[ -d $W/cache-fstab/data ]] || fail "fstab: cache-dir not used"
    lazyimg_umount "$W/m2"
    ok "an fstab line (mount --fstab FILE -a) mounts with its options"
else
    echo "# no mount.fuse3 here: mount -t fuse.lazyimg through it not tried"
fi
T_MOUNTS+=("$M")
out=$(bin/mount.fuse.lazyimg "$S" "$M" -n -o "rw,nosuid,nodev,cache-dir=$W/cache-helper,x-systemd.automount" 2>&1) ||
    fail "mount.fuse.lazyimg failed" "$out"
T_PIDS+=("$(served_by "$M")")
cmp "$M/$IMG" a.raw || fail "mount.fuse.lazyimg: wrong bytes"
[[ -d $W/cache-helper/data ]] || fail "mount.fuse.lazyimg: -o cache-dir not used"
[[ $(findmnt -n -o OPTIONS "$M") == ro,* ]] || fail "mount.fuse.lazyimg -o rw: the mount is not read-only"
lazyimg_umount "$M"
out=$(bin/mount.fuse.lazyimg "$S" "$M" -o no-such-thing 2>&1) && fail "mount.fuse.lazyimg accepted -o no-such-thing"
[[ $out == *"no-such-thing"* ]] || fail "unknown -o option: no message naming it" "$out"
# a bare valued setting as the last option of an -o list, which the mountpoint follows
out=$(bin/mount.fuse.lazyimg "$S" "$M" -o "ro,cache-dir" 2>&1) && fail "mount.fuse.lazyimg -o ro,cache-dir was accepted"
[[ $out == *"-o cache-dir needs a value (cache-dir=VALUE)"* ]] || fail "-o ro,cache-dir: no message naming it" "$out"
for o in help he version; do
    rc=0
    out=$(bin/mount.fuse.lazyimg "$S" "$M" -o "ro,$o" 2>&1) || rc=$?
    ((rc != 0)) || fail "mount.fuse.lazyimg -o ro,$o exited 0 without mounting" "$out"
    ! mountpoint -q "$M" || fail "mount.fuse.lazyimg -o ro,$o mounted"
done
ok "mount.fuse.lazyimg: generic options ignored (still read-only), lazyimg's mapped, unknown ones refused"
