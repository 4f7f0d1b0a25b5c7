#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the partitioned disk images of t-parts, with real tools only, in the
# current directory (root: LVM needs loop devices; no device-mapper needed):
#
#   gpt.raw   GPT (sgdisk), 1 MiB-aligned: p1 "root" ext4 (40M) made from
#             tree/, p2 "data" xfs (300M, files copied in through a loop
#             mount), p3 "pv-a" and p4 "pv/b" (24M each) LVM2 physical
#             volumes of VG "vgt" (1M extents) holding "lin" (linear, two
#             segments: 8M then 4M more after "str"), "str" (16M, striped
#             over both PVs in 64K units), "ee" (an "error" segment), "zz"
#             (a "zero" segment, 3M) and "mix" (2M linear, then 2M "zero"):
#             lin and str hold ext4 file systems made from tree/, mix 2M of
#             random bytes
#   lv-lin.img, lv-str.img, lv-mix.img   the contents of those volumes
#   lvm.json  `lvs --segments` as LVM reports the layout (the oracle)
#   gpt.parts one "N START SIZE" line (bytes) per partition, from sfdisk -J
#   mbr.raw   MBR (sfdisk): primaries 1, 2, 3, an extended 4 with logicals
#             5, 6, 7; random data (mbr.parts as above)
#
# The volumes are created with activation off (`--driverloaded n`), so their
# contents are written here by striping the file systems onto the PVs as LVM
# reports the layout, which the test then compares with what lazyimg maps
# from the metadata.
set -euo pipefail
export LVM_SUPPRESS_FD_WARNINGS=1
MKIMAGE=${MKIMAGE:?}

die() {
    echo "mkpartimg: $*" >&2
    exit 1
}

# parts_of IMG: "N START SIZE" in bytes per partition
parts_of() {
    sfdisk -J "$1" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
ss = t.get("sectorsize", 512)
for p in t["partitions"]:
    n = int(p["node"][len(sys.argv[1]):])
    print(n, p["start"] * ss, p["size"] * ss)' "$1"
}

# --- the file tree -----------------------------------------------------------
rm -rf tree
mkdir -p tree/etc tree/data/deep/er
"$MKIMAGE" --seed 41 tree/data/blob1.bin rand:900K >/dev/null
"$MKIMAGE" --seed 42 tree/data/deep/er/blob2.bin rand:300K,zero:200K,rand:77K >/dev/null
"$MKIMAGE" --seed 43 tree/notes.txt text:120K >/dev/null
printf 'lazyimg-parts\n' >tree/etc/hostname
ln -s ../etc/hostname tree/data/link

# --- GPT disk ------------------------------------------------------------------
rm -f gpt.raw
truncate -s 420M gpt.raw
sgdisk -o \
    -n 1:1M:+40M -c 1:root -t 1:8300 \
    -n 2:0:+300M -c 2:data -t 2:8300 \
    -n 3:0:+24M -c 3:pv-a -t 3:8e00 \
    -n 4:0:+24M -c 4:pv/b -t 4:8e00 gpt.raw >/dev/null || die "sgdisk failed"
parts_of gpt.raw >gpt.parts
[[ $(wc -l <gpt.parts) == 4 ]] || die "expected 4 GPT partitions: $(cat gpt.parts)"
read -r _ P1 S1 < <(sed -n 1p gpt.parts)
read -r _ P2 S2 < <(sed -n 2p gpt.parts)
read -r _ P3 S3 < <(sed -n 3p gpt.parts)
read -r _ P4 S4 < <(sed -n 4p gpt.parts)

rm -f fs1.img fs2.img
mkfs.ext4 -q -F -d tree -b 4096 fs1.img $((S1 / 1024))K >/dev/null 2>&1 || die "mkfs.ext4 p1 failed"
dd if=fs1.img of=gpt.raw bs=1M seek=$((P1 / 1048576)) conv=sparse,notrunc status=none
truncate -s "$S2" fs2.img
mkfs.xfs -q -f fs2.img >mkfs.log 2>&1 || die "mkfs.xfs failed: $(cat mkfs.log)"
mkdir -p xfsmnt
mount -o loop fs2.img xfsmnt || die "loop mount of the new xfs failed"
cp -a tree/. xfsmnt/
umount xfsmnt
dd if=fs2.img of=gpt.raw bs=1M seek=$((P2 / 1048576)) conv=sparse,notrunc status=none
rm -f fs1.img fs2.img

# --- LVM on p3 and p4 ---------------------------------------------------------
A=$(losetup -f --show -o "$P3" --sizelimit "$S3" gpt.raw)
B=$(losetup -f --show -o "$P4" --sizelimit "$S4" gpt.raw)
trap 'losetup -d "$A" "$B" 2>/dev/null || true' EXIT
C="devices { filter = [ \"a|^$A\$|\", \"a|^$B\$|\", \"r|.*|\" ] obtain_device_list_from_udev = 0 } activation { udev_sync = 0 udev_rules = 0 } global { activation = 0 }"
lvm_() { "$@" --driverloaded n --config "$C" >>lvm.log 2>&1 || die "$1 failed: $(tail -5 lvm.log)"; }
: >lvm.log
lvm_ pvcreate "$A" "$B"
lvm_ vgcreate -s 1M vgt "$A" "$B"
lvm_ lvcreate -an -Zn -L 8M -n lin vgt "$A"
lvm_ lvcreate -an -Zn -L 16M -i2 -I64k -n str vgt
lvm_ lvextend -L +4M vgt/lin "$A"
lvm_ lvcreate -an -Zn --type error -L 2M -n ee vgt
lvm_ lvcreate -an -Zn --type zero -L 3M -n zz vgt
lvm_ lvcreate -an -Zn -L 2M -n mix vgt "$B"
lvm_ lvextend --type zero -L +2M vgt/mix
lvs --driverloaded n --config "$C" --reportformat json --segments --units b --nosuffix \
    -o lv_name,seg_start,seg_size,segtype,stripes,stripe_size,seg_pe_ranges vgt >lvm.json 2>>lvm.log
pvs --driverloaded n --config "$C" --reportformat json --units b --nosuffix \
    -o pv_name,pe_start >pvs.json 2>>lvm.log
vgs --driverloaded n --config "$C" --reportformat json --units b --nosuffix \
    -o vg_extent_size vgt >vgs.json 2>>lvm.log
losetup -d "$A" "$B"
trap - EXIT

rm -f lv-lin.img lv-str.img lv-mix.img
# mix: 2 MiB of data (its linear segment), then its zero segment's 2 MiB
head -c 2M /dev/urandom >lv-mix.img
truncate -s 4M lv-mix.img
mkfs.ext4 -q -F -d tree -b 1024 lv-lin.img 12M >/dev/null 2>&1 || die "mkfs.ext4 lin failed"
mkfs.ext4 -q -F -d tree -b 4096 lv-str.img 16M >/dev/null 2>&1 || die "mkfs.ext4 str failed"
# write each LV's file system where LVM's report puts its extents
python3 - "$A" "$P3" "$B" "$P4" <<'EOF'
import json, sys
dev_base = {sys.argv[1]: int(sys.argv[2]), sys.argv[3]: int(sys.argv[4])}
pe_start = {p["pv_name"]: int(p["pe_start"]) for p in json.load(open("pvs.json"))["report"][0]["pv"]}
ext = int(json.load(open("vgs.json"))["report"][0]["vg"][0]["vg_extent_size"])
segs = json.load(open("lvm.json"))["report"][0]["seg"]
with open("gpt.raw", "r+b") as disk:
    for s in segs:
        if s["lv_name"] not in ("lin", "str", "mix") or s["segtype"] not in ("linear", "striped"):
            continue
        src = open("lv-%s.img" % s["lv_name"], "rb")
        start, size = int(s["seg_start"]), int(s["seg_size"])
        stripes = []  # (image offset of the stripe's first extent)
        for r in s["seg_pe_ranges"].split():
            dev, rng = r.rsplit(":", 1)
            first = int(rng.split("-")[0])
            stripes.append(dev_base[dev] + pe_start[dev] + first * ext)
        n = int(s["stripes"])
        unit = int(s["stripe_size"]) if n > 1 else size
        for u in range(size // unit):
            src.seek(start + u * unit)
            disk.seek(stripes[u % n] + (u // n) * unit)
            disk.write(src.read(unit))
EOF

# --- MBR disk with logical partitions -------------------------------------------
rm -f mbr.raw
truncate -s 64M mbr.raw
sfdisk -q mbr.raw >/dev/null <<'EOF' || die "sfdisk (MBR) failed"
label: dos
start=2048, size=8M, type=83
size=6M, type=83
size=4M, type=83
size=40M, type=5
size=7M, type=83
size=5M, type=83
size=20M, type=83
EOF
parts_of mbr.raw | grep -v '^4 ' >mbr.parts
[[ $(cut -d' ' -f1 mbr.parts | tr '\n' ' ') == "1 2 3 5 6 7 " ]] || die "expected MBR partitions 1 2 3 5 6 7: $(cat mbr.parts)"
while read -r n off size; do
    "$MKIMAGE" --seed $((60 + n)) part.bin "rand:$((size / 4096))K,zero:$((size / 2048))K,rand:$((size / 4096))K" >/dev/null
    dd if=part.bin of=mbr.raw bs=64K seek="$off" oflag=seek_bytes conv=sparse,notrunc status=none
done <mbr.parts
rm -f part.bin
echo "mkpartimg: gpt.raw mbr.raw lv-lin.img lv-str.img made"
