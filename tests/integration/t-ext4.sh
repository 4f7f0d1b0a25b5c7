#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# File-level browsing: an ext4 image built from a directory tree is backed up,
# mounted, attached read-only to a loop device and mounted; its files must
# equal the tree's. Once as a whole-disk file system, once inside a partition.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test mkfs.ext4 losetup
FS=$W/fsmnt
T=2025-06-01T12:00:00Z

# --- the tree -------------------------------------------------------------
D=$W/tree
mkdir -p "$D"/etc/app/conf.d "$D"/var/lib/data "$D"/home/user/a/b/c/d/e "$D"/empty-dir
make_image rnd1 rand:1536K 21
make_image rnd2 rand:700K 22
make_image txt text:300K 23
make_image mix rand:100K,zero:2M,text:50K 24
mv rnd1 "$D"/var/lib/data/blob1.bin
head -c $((700 * 1024 + 13)) rnd2 >"$D"/var/lib/data/blob2.bin
mv txt "$D"/home/user/notes.txt
mv mix "$D"/var/lib/data/sparse.img
printf 'srv1\n' >"$D"/etc/hostname
printf 'key = value\nlist = [1, 2, 3]\n' >"$D"/etc/app/conf.d/10-main.conf
printf 'deep\n' >"$D"/home/user/a/b/c/d/e/deep.txt
: >"$D"/home/user/empty-file
printf 'spaces\n' >"$D/home/user/name with spaces.txt"
ln -s ../../etc/hostname "$D"/home/user/hostname-link
ln -s /nonexistent/target "$D"/home/user/dangling
ln "$D"/etc/hostname "$D"/etc/hostname.hard
chmod 600 "$D"/home/user/notes.txt
chmod 750 "$D"/home/user/a
du -sk "$D" | awk '{print "# tree: " $1 "K"}'

mkfs.ext4 -q -F -d "$D" -b 4096 img.raw 64M >mkfs.log 2>&1 || fail "mkfs.ext4 -d failed" "$(cat mkfs.log)"
alloc=$(($(stat -c %b img.raw) * 512))
((alloc < 64 * 1024 * 1024 / 2)) || fail "test setup: img.raw is not sparse ($alloc bytes allocated)"
ok "ext4 image made: 64M, $((alloc / 1024))K allocated"
# A partitioned disk: an MBR with one Linux partition at 1 MiB holding the
# same file system (ext4 blocks then straddle the 4M chunks differently).
truncate -s 80M disk.raw
python3 - disk.raw <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(446)  # partition 1: type 0x83, LBA 2048, 131072 sectors
    f.write(struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", 2048, 131072))
    f.seek(510)
    f.write(b"\x55\xaa")
EOF
dd if=img.raw of=disk.raw bs=1M seek=1 conv=sparse,notrunc status=none
mkpbs --chunk-size 1M --id 100 --time $T "$S" drive-scsi0.img=img.raw >/dev/null
mkpbs --chunk-size 4M --id 101 --time $T "$S" drive-scsi0.img=disk.raw >/dev/null

lazyimg_mount "$S" "$M"
"$SEEKMAP" --expect 1048576 img.raw >expect.map
"$SEEKMAP" "$M/vm/100/$T/drive-scsi0.img" >actual.map
expect_same_file "mounted ext4 image has the holes of its empty 1M chunks" expect.map actual.map

listing() {
    (cd "$1" && find . -path ./lost+found -prune -o -type f -printf '%p: file %m links=%n size=%s\n' \
        -o -type l -printf '%p: symlink -> %l\n' -o -printf '%p: %y %m\n' | LC_ALL=C sort)
}
sums() {
    (cd "$1" && find . -path ./lost+found -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
listing "$D" >tree.list
sums "$D" >tree.sha
[[ $(wc -l <tree.sha) -ge 10 ]] || fail "test setup: checksum listing too short" "$(cat tree.sha)"

# browse LABEL DEVICE: mounts the ext4 on DEVICE read-only and compares it with the tree
browse() {
    local label=$1 dev=$2 out
    mkdir -p "$FS"
    mount -o ro,noload -t ext4 "$dev" "$FS" 2>mount.err || fail "$label: mount -o ro,noload $dev failed" "$(cat mount.err)"
    add_cleanup "mountpoint -q '$FS' && { umount '$FS' || umount -l '$FS'; }"
    ok "$label: ext4 on $dev mounted read-only"
    out=$(diff -r --no-dereference -x lost+found "$D" "$FS" 2>&1) || fail "$label: diff -r tree vs the ext4 in the backup" "$out"
    ok "$label: diff -r: same files, contents and symlinks as the tree"
    listing "$FS" >fs.list
    expect_same_file "$label: same names, types, modes, sizes, link counts and symlink targets" tree.list fs.list
    sums "$FS" >fs.sha
    expect_same_file "$label: sha256 of every file equal ($(wc -l <tree.sha) files)" tree.sha fs.sha
    expect_eq "$label: symlink through the ext4 resolves" "srv1" "$(cat "$FS"/home/user/hostname-link)"
    umount "$FS" || fail "$label: umount $FS failed"
}

# loop_hook LOOP FILE: at exit, detach LOOP if it is still backed by FILE
# (never a device someone else attached after ours was freed)
loop_hook() {
    add_cleanup "[[ \$(losetup -n -O BACK-FILE '$1' 2>/dev/null) == '$2'* ]] && losetup -d '$1'"
}

# detach LOOP: losetup -d and wait until the device is free
detach() {
    local i
    losetup -d "$1" || fail "losetup -d $1 failed"
    for i in $(seq 50); do
        losetup "$1" >/dev/null 2>&1 || return 0
        sleep 0.1
    done
    fail "$1 still attached 5 s after losetup -d"
}

# --- whole-disk file system, 1M chunks ---------------------------------------
if ! LOOP=$(losetup -r -f --show "$M/vm/100/$T/drive-scsi0.img" 2>losetup.err); then
    skip "loop devices not usable here: losetup -r -f --show failed: $(cat losetup.err)"
fi
loop_hook "$LOOP" "$M/vm/100/$T/drive-scsi0.img"
ok "whole-disk fs: attached read-only to $LOOP"
expect_eq "whole-disk fs: $LOOP is read-only" 1 "$(blockdev --getro "$LOOP")"
browse "whole-disk fs" "$LOOP"
detach "$LOOP"
ok "whole-disk fs: unmounted and loop device detached"

# --- partitioned disk, 4M chunks ------------------------------------------------
LOOP=$(losetup -r -P -f --show "$M/vm/101/$T/drive-scsi0.img" 2>losetup.err) ||
    fail "losetup -r -P -f --show failed" "$(cat losetup.err)"
loop_hook "$LOOP" "$M/vm/101/$T/drive-scsi0.img"
for i in $(seq 20); do
    [[ -b ${LOOP}p1 ]] && break
    sleep 0.1
done
if [[ -b ${LOOP}p1 ]]; then
    browse "partitioned disk (${LOOP}p1)" "${LOOP}p1"
    detach "$LOOP"
else
    # no partition scanning in this environment: map the partition by offset
    echo "# ${LOOP}p1 did not appear (no loop partition scanning here): using losetup -o 1M"
    detach "$LOOP"
    LOOP=$(losetup -r -o 1048576 --sizelimit $((64 << 20)) -f --show "$M/vm/101/$T/drive-scsi0.img" 2>losetup.err) ||
        fail "losetup -r -o 1M -f --show failed" "$(cat losetup.err)"
    loop_hook "$LOOP" "$M/vm/101/$T/drive-scsi0.img"
    browse "partitioned disk (partition at 1M via losetup -o)" "$LOOP"
    detach "$LOOP"
fi
ok "partitioned disk: unmounted and loop device detached"

pid=$MOUNT_PID
lazyimg_umount "$M"
ok "lazyimg unmounted, daemon $pid exited"
