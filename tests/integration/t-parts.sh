#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Partitions and LVM2 logical volumes as files (<image>.parts/): disks built
# by real tools (mkpartimg.sh: sgdisk GPT with ext4, xfs and two LVM PVs
# holding a two-segment linear, a striped and an "error" volume; sfdisk MBR
# with logical partitions) are backed up and mounted. Every partition and
# volume file must equal its region of the disk (or the file system written
# into the volume) byte for byte, keep the image's holes, and hold file
# systems that mount: ext4 and the volumes through loop devices, xfs with
# norecovery, and ext4 through fuse2fs as an ordinary user on that user's
# own lazyimg mount. Malformed tables and metadata give fewer entries and a
# log line, never an error for the image.
set -euo pipefail
if [[ -z ${LAZYIMG_T_NS:-} ]]; then
    [[ $(id -u) == 0 ]] || { echo "SKIP - needs root"; exit 77; }
    exec unshare -m --propagation private env LAZYIMG_T_NS=1 bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

begin_mount_test sfdisk sgdisk pvcreate mkfs.xfs mkfs.ext4 losetup fuse2fs setpriv python3
chmod 755 "$W"
T=2025-08-01T10:00:00Z
FS=$W/fsmnt

MKIMAGE="$MKIMAGE" bash "$T_DIR/mkpartimg.sh" >mkpart.log 2>&1 || fail "building the disks failed" "$(tail -20 mkpart.log)"
ok "disks built: GPT (ext4, xfs, LVM over two PVs) and MBR (logical partitions)"

# --- malformed copies ------------------------------------------------------
SIZE=$(stat -c %s gpt.raw)
# flip BYTE of FILE at OFFSET
flip() {
    python3 - "$1" "$2" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x5a]))
EOF
}
cp --sparse=always gpt.raw badgpt.raw
flip badgpt.raw $((512 + 40))          # primary header: first usable LBA (its CRC no longer matches)
flip badgpt.raw $((SIZE - 512 + 40))   # the backup header at the last sector, likewise
cp --sparse=always gpt.raw backup.raw
flip backup.raw $((512 + 40))          # the primary only: the backup serves
cp --sparse=always mbr.raw overlap.raw
python3 - overlap.raw <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(446 + 16 + 8)  # partition 2's first LBA: inside partition 1 (2048..18431)
    f.write(struct.pack("<I", 4096))
EOF
cp --sparse=always gpt.raw trunc.raw
truncate -s 200M trunc.raw             # partitions 2-4 now end past the disk
# damaged LVM metadata: the current text of both PVs (found through their
# metadata area headers at 4 KiB) changed by one byte, checksums kept
cp --sparse=always gpt.raw badlvm.raw
read -r _ P3 _ < <(sed -n 3p gpt.parts)
read -r _ P4 _ < <(sed -n 4p gpt.parts)
python3 - badlvm.raw "$P3" "$P4" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    for pv in map(int, sys.argv[2:]):
        f.seek(pv + 4096 + 40)
        off, size, csum, flags = struct.unpack("<QQII", f.read(24))
        at = pv + 4096 + off + size // 2
        f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x01]))
EOF

mkpbs --chunk-size 4M --id 300 --time $T "$S" drive-scsi0.img=gpt.raw drive-scsi1.img=mbr.raw >/dev/null
mkpbs --chunk-size 4M --id 301 --time $T "$S" drive-scsi0.img=badgpt.raw drive-scsi1.img=overlap.raw \
    drive-scsi2.img=trunc.raw drive-scsi3.img=badlvm.raw drive-scsi4.img=backup.raw >/dev/null
lazyimg_mount_fg "$S" "$M" mount.log --
G=$M/vm/300/$T/drive-scsi0.img.parts
B=$M/vm/300/$T/drive-scsi1.img.parts
X=$M/vm/301/$T

# --- listings ------------------------------------------------------------------
[[ -d $G ]] || fail "no $G"
expect_eq "GPT: the .parts directory lists the partitions, names and volumes" \
    "by-name lvm p1 p2 p3 p4" "$(ls "$G" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "GPT: by-name links for the valid names (not pv/b)" \
    "data -> ../p2 pv-a -> ../p3 root -> ../p1" \
    "$(cd "$G/by-name" && for l in *; do printf '%s -> %s ' "$l" "$(readlink "$l")"; done | sed 's/ $//')"
expect_eq "GPT: by-name/root is p1" "$(stat -L -c %i "$G/p1")" "$(stat -L -c %i "$G/by-name/root")"
expect_eq "LVM: the volume group and its visible volumes" "vgt: ee lin mix str zz" \
    "$(cd "$G/lvm" && for v in *; do printf '%s: %s' "$v" "$(ls "$v" | tr '\n' ' ' | sed 's/ $//')"; done)"
expect_eq "MBR: primaries and logicals, not the extended container" "p1 p2 p3 p5 p6 p7" \
    "$(ls "$B" | tr '\n' ' ' | sed 's/ $//')"
[[ $(stat -c %F "$G") == directory && $(stat -c %a "$G") == 555 ]] || fail "$G: not a 0555 directory"
[[ $(stat -c %a "$G/p1") == 444 ]] || fail "$G/p1 is not mode 0444"
ok "modes: directories 0555, files 0444"
out=$(python3 "$T_DIR/nlink_check.py" "$M") || fail "directories whose link count is neither 1 nor 2 + subdirectories" "$out"
ok "link counts of directories (snapshots with .parts): 1 or 2 + subdirectories ($out)"

# --- every partition and volume byte for byte ------------------------------------
# check_region LABEL FILE IMAGE OFFSET SIZE
check_region() {
    local size
    size=$(stat -c %s "$2")
    expect_eq "$1: size" "$5" "$size"
    cmp "$2" <(read_range "$3" "$4" "$5") || fail "$1: bytes differ from the image's region at $4"
}
while read -r n off size; do
    check_region "GPT p$n" "$G/p$n" gpt.raw "$off" "$size"
done <gpt.parts
ok "GPT: p1-p4 equal their regions of the disk"
while read -r n off size; do
    check_region "MBR p$n" "$B/p$n" mbr.raw "$off" "$size"
done <mbr.parts
ok "MBR: p1-p3 and logicals p5-p7 equal their regions"
cmp "$G/lvm/vgt/lin" lv-lin.img || fail "LV lin (linear, two segments) differs from what was written into it"
ok "LV lin (linear, 2 segments) equals its file system byte for byte"
cmp "$G/lvm/vgt/str" lv-str.img || fail "LV str (striped over two PVs, 64K) differs from what was written into it"
ok "LV str (striped over 2 PVs in 64K units) equals its file system byte for byte"
# reads that cross stripe units and segment boundaries at odd offsets
for spec in "lin 8388000 9000" "lin 1 12582910" "str 65000 200000" "str 16711680 65536"; do
    read -r lv off len <<<"$spec"
    cmp <(read_range "$G/lvm/vgt/$lv" "$off" "$len") <(read_range "lv-$lv.img" "$off" "$len") ||
        fail "LV $lv: read of $len bytes at $off differs"
done
ok "unaligned reads across segment and stripe boundaries"

# --- holes ------------------------------------------------------------------------
# expect_holes LABEL FILE IMAGE OFFSET SIZE: the file's data/hole map is the
# image's 4M zero chunks (mkpbs --chunk-size 4M) cut to the region
expect_holes() {
    python3 - "$3" "$4" "$5" >expect.map <<'EOF'
import sys
img, off, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
C = 4 << 20
out = []
with open(img, "rb") as f:
    c = off // C
    while c * C < off + size:
        f.seek(c * C); hole = not any(f.read(C))
        a, b = max(off, c * C) - off, min(off + size, (c + 1) * C) - off
        if out and out[-1][0] == hole:
            out[-1][2] += b - a
        else:
            out.append([hole, a, b - a])
        c += 1
for hole, a, n in out:
    print("%s %d %d" % ("hole" if hole else "data", a, n))
EOF
    "$SEEKMAP" "$2" >actual.map
    expect_same_file "$1: SEEK_DATA/SEEK_HOLE map is the image's zero chunks" expect.map actual.map
    grep -q '^hole' expect.map || fail "test setup: $1 has no hole"
}
read -r _ P2 S2 < <(sed -n 2p gpt.parts)
expect_holes "GPT p2 (xfs, 300M)" "$G/p2" gpt.raw "$P2" "$S2"
read -r _ P7 S7 < <(sed -n 6p mbr.parts)
data=$(awk '$1 == "data" {s += $3} END {print s + 0}' expect.map)
expect_holes "MBR p7" "$B/p7" mbr.raw "$P7" "$S7"
data=$(awk '$1 == "data" {s += $3} END {print s + 0}' expect.map)
expect_eq "MBR p7: st_blocks counts its data only" "$((data / 512))" "$(stat -c %b "$B/p7")"
cp --sparse=always "$G/p2" p2.copy
cmp p2.copy <(read_range gpt.raw "$P2" "$S2") || fail "cp --sparse=always of p2 differs"
((($(stat -c %b p2.copy) * 512) < S2 / 2)) || fail "cp --sparse=always of p2 is not sparse"
ok "cp --sparse=always of p2 is byte-exact and sparse"

# --- file systems inside ------------------------------------------------------------
# browse LABEL FILE TYPE OPTIONS: loop-mounts FILE read-only and compares it with tree/
browse() {
    mkdir -p "$FS"
    mount -o "ro,loop,$4" -t "$3" "$2" "$FS" 2>mount.err || fail "$1: mount -o ro,loop,$4 -t $3 failed" "$(cat mount.err)"
    add_cleanup "mountpoint -q '$FS' && umount -l '$FS'"
    out=$(diff -r --no-dereference -x lost+found tree "$FS" 2>&1) || fail "$1: files differ from the tree" "$out"
    umount "$FS" || fail "$1: umount failed"
    ok "$1: mounted read-only from the file, same files as the tree"
}
browse "GPT p1 ext4" "$G/p1" ext4 noload
browse "GPT p2 xfs" "$G/p2" xfs norecovery
browse "LV lin ext4" "$G/lvm/vgt/lin" ext4 noload
browse "LV str ext4" "$G/lvm/vgt/str" ext4 noload

# --- an unsupported segment -------------------------------------------------------------
expect_eq "LV ee (an \"error\" segment) has its size" 2097152 "$(stat -c %s "$G/lvm/vgt/ee")"
if out=$(head -c 4096 "$G/lvm/vgt/ee" 2>&1 >/dev/null); then
    fail "LV ee: a read of an unsupported segment succeeded"
fi
[[ $out == *"Input/output error"* ]] || fail "LV ee: expected EIO" "$out"
grep -q "$T/drive-scsi0.img.parts/lvm/vgt/ee: offset 0 cannot be read: segment 1 is of type \"error\"" mount.log ||
    fail "LV ee: no log line naming the segment type" "$(tail -5 mount.log)"
ok "LV ee: EIO with a log line naming the segment type \"error\""
# a "zero" segment reads as zeros (it failed with EIO as unsupported): a
# hole, no data, no log line
ZZ=$G/lvm/vgt/zz
expect_eq "LV zz (a \"zero\" segment) has its size" 3145728 "$(stat -c %s "$ZZ")"
cmp "$ZZ" <(head -c 3145728 /dev/zero) || fail "LV zz: does not read as zeros"
cmp <(read_range "$ZZ" 1000 200000 direct) <(head -c 200000 /dev/zero) ||
    fail "LV zz: an unaligned direct read is not zeros"
expect_eq "LV zz: no data blocks" 0 "$(stat -c %b "$ZZ")"
expect_eq "LV zz: SEEK_DATA/SEEK_HOLE walk: one hole" "hole 0 3145728" "$("$SEEKMAP" "$ZZ")"
! grep -q "vgt/zz" mount.log || fail "LV zz: a log line about it" "$(grep vgt/zz mount.log)"
ok "LV zz (a \"zero\" segment): 3 MiB of zeros, a hole, no data blocks"
# a linear segment, then a zero one: reads across the two, each part right.
# First on a mount of its own without a cache, before anything else is
# read: the 64 KiB requests across the boundary wait for the linear part's
# chunk to be fetched (one request: 32 KiB of each); then on this mount
lazyimg_mount "$S" "$W/m2" --no-cache
cmp <(read_range "$W/m2/vm/300/$T/drive-scsi0.img.parts/lvm/vgt/mix" 2064384 65536 direct) \
    <(read_range lv-mix.img 2064384 65536) || fail "LV mix: a first read across its segments differs"
lazyimg_umount "$W/m2"
for r in "2000000 200000" "0 4194304" "2097152 65536" "1048576 2097152"; do
    read -r off len <<<"$r"
    cmp <(read_range "$G/lvm/vgt/mix" "$off" "$len" direct) <(read_range lv-mix.img "$off" "$len") ||
        fail "LV mix: $len bytes at $off (direct) differ"
done
cmp "$G/lvm/vgt/mix" lv-mix.img || fail "LV mix (linear, then zero) differs from its contents"
expect_eq "LV mix: SEEK_DATA/SEEK_HOLE walk: its data, then the zero segment's hole" \
    "data 0 2097152 hole 2097152 2097152" "$("$SEEKMAP" "$G/lvm/vgt/mix" | tr '\n' ' ' | sed 's/ $//')"
ok "LV mix (2 MiB linear, then 2 MiB \"zero\"): reads across both segments right, the zero one a hole"

# --- malformed tables and metadata ------------------------------------------------------
for i in 0 1 2; do
    cmp "$X/drive-scsi$i.img" <(case $i in 0) cat badgpt.raw ;; 1) cat overlap.raw ;; 2) cat trunc.raw ;; esac) ||
        fail "malformed table $i: the image itself no longer reads right"
done
ok "images with malformed tables read as before"
expect_eq "GPT with both headers damaged: empty .parts" "" "$(ls "$X/drive-scsi0.img.parts")"
grep -q "drive-scsi0.img: partition table refused: .*GPT" mount.log || fail "no log line for the damaged GPT" "$(tail mount.log)"
expect_eq "MBR with overlapping partitions: empty .parts" "" "$(ls "$X/drive-scsi1.img.parts")"
grep -q "drive-scsi1.img: partition table refused: .*overlap" mount.log || fail "no log line for the overlap" "$(tail mount.log)"
expect_eq "GPT whose partitions pass the disk's end: empty .parts" "" "$(ls "$X/drive-scsi2.img.parts")"
grep -q "drive-scsi2.img: partition table refused: " mount.log || fail "no log line for the truncated disk" "$(tail mount.log)"
ok "malformed tables: empty directories, each with a log line"
expect_eq "damaged LVM metadata: the partitions stay, no lvm" "by-name p1 p2 p3 p4" \
    "$(ls "$X/drive-scsi3.img.parts" | tr '\n' ' ' | sed 's/ $//')"
grep -qi "drive-scsi3.img: .*LVM.*" mount.log || fail "no log line for the damaged LVM metadata" "$(tail mount.log)"
ok "damaged LVM metadata: refused with a log line, partitions still there"
expect_eq "GPT with a damaged primary header: the backup serves" "by-name lvm p1 p2 p3 p4" \
    "$(ls "$X/drive-scsi4.img.parts" | tr '\n' ' ' | sed 's/ $//')"
cmp "$X/drive-scsi4.img.parts/lvm/vgt/str" lv-str.img || fail "backup GPT: LV str differs"
grep -q "drive-scsi4.img: the GPT's primary header or table is damaged: its backup is used" mount.log ||
    fail "no log line for the backup GPT" "$(tail mount.log)"
ok "GPT with a damaged primary header: the backup is used (and said)"
# hydration takes images: a partition file gets a message that says what to do
RC=0
out=$("$LAZYIMG" hydrate "$G/p1" 2>&1) || RC=$?
((RC != 0)) || fail "lazyimg hydrate of a partition file succeeded" "$out"
grep -q "a partition or volume file: hydrate its image" <<<"$out" ||
    fail "lazyimg hydrate of a partition file: unclear message" "$out"
ok "lazyimg hydrate of a partition file: refused, naming the image to hydrate"
lazyimg_umount "$M"
# --no-parts: none of the directories
lazyimg_mount "$S" "$M" --no-parts
[[ -z $(find "$M" -name '*.parts') ]] || fail "--no-parts: .parts directories shown" "$(find "$M" -name '*.parts' | head -3)"
cmp "$M/vm/300/$T/drive-scsi0.img" gpt.raw || fail "--no-parts: the image reads wrong"
lazyimg_umount "$M"
ok "--no-parts: no .parts directories, the images as before"

# --- an ordinary user: fuse2fs on p1 of the user's own mount --------------------------
U=65534 # nobody
if [[ $(stat -c %a /dev/fuse) != 666 ]]; then
    mknod -m 666 "$W/fuse" c "$((16#$(stat -c %t /dev/fuse)))" "$((16#$(stat -c %T /dev/fuse)))"
    mount --bind "$W/fuse" /dev/fuse
fi
chmod -R a+rX "$S" tree
mkdir -p ucache um ufs
chown $U ucache um ufs
as_user() { setpriv --reuid $U --regid $U --clear-groups env -i PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/nonexistent LAZYIMG_CACHE_DIR=$W/ucache "$@"; }
T_MOUNTS+=("$W/um" "$W/ufs")
as_user "$LAZYIMG" mount "$S" "$W/um" >um.log 2>&1 || fail "user mount failed" "$(cat um.log)"
T_PIDS+=("$(daemon_pid "$W/um")")
as_user fuse2fs -o ro,fakeroot "$W/um/vm/300/$T/drive-scsi0.img.parts/p1" "$W/ufs" >fuse2fs.log 2>&1 ||
    fail "fuse2fs -o ro as uid $U failed" "$(cat fuse2fs.log)"
grep -q "user_id=$U," <(grep -F " $W/ufs " /proc/self/mountinfo) || fail "ufs is not a mount of uid $U"
out=$(as_user diff -r --no-dereference -x lost+found "$W/tree" "$W/ufs" 2>&1) || fail "fuse2fs as uid $U: files differ" "$out"
ok "uid $U: fuse2fs -o ro on p1 of its own lazyimg mount, same files as the tree"
fusermount3 -u "$W/ufs" || umount "$W/ufs"
lazyimg_umount "$W/um"
