#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Makes the LVM2 fixtures of tests/unit/test_lvm.c with the real LVM tools
# (lvm2, run as root, loop devices; no device-mapper needed: nothing is
# activated). Run once; the outputs are committed:
#   vgt-pv1.img.zst, vgt-pv2.img.zst  the first MiB of each PV (label and
#                                      metadata area, all before pe_start)
#   expected.json                      {"pvs": pvs report, "lvs": lvs report}
#                                      with the loop device names replaced by
#                                      "pv1"/"pv2"
# Usage: tests/data/lvm/make.sh [OUTDIR]   (default: this script's directory)
set -euo pipefail

out=$(realpath "${1:-$(dirname "$0")}")
work=$(mktemp -d)
A= B=
cleanup() {
    [ -n "$A" ] && losetup -d "$A" || true
    [ -n "$B" ] && losetup -d "$B" || true
    rm -rf "$work"
}
trap cleanup EXIT

export LVM_SUPPRESS_FD_WARNINGS=1
img=$work/img
truncate -s 64M "$img"
sfdisk -q "$img" <<'P'
label: gpt
size=20M, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=pv1
size=20M, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=pv2
P
A=$(losetup -f --show -o $((2048 * 512)) --sizelimit $((20 * 1024 * 1024)) "$img")
B=$(losetup -f --show -o $((43008 * 512)) --sizelimit $((20 * 1024 * 1024)) "$img")
C="devices { filter = [ \"a|^$A\$|\", \"a|^$B\$|\", \"r|.*|\" ] obtain_device_list_from_udev = 0 }
   activation { udev_sync = 0 udev_rules = 0 } global { activation = 0 }"
lvm() { command "$@" --config "$C"; }
lvx() { command "$@" --driverloaded n --config "$C"; }

lvm pvcreate -q "$A" "$B"
lvm vgcreate -q -s 1M vgt "$A" "$B"
# linear, on the first PV
lvx lvcreate -q -an -Zn -L 8M -n lin vgt "$A"
# striped over both PVs, 64 KiB stripes
lvx lvcreate -q -an -Zn -L 8M -i2 -I64k -n str vgt
# a linear LV in two segments: extended after another LV took the next extents
lvx lvcreate -q -an -Zn -L 2M -n ext vgt "$B"
lvx lvcreate -q -an -Zn -L 2M -n mid vgt "$B"
lvx lvextend -q -L +2M vgt/ext "$B"
# Snapshots and thin pools cannot be made without device-mapper (lvcreate
# refuses them with activation disabled): the test makes its unsupported
# segment types by editing a copy of the metadata text.
rep=(--units b --nosuffix --reportformat json)
{
    printf '{"pvs": '
    lvm pvs "${rep[@]}" -o pv_name,pv_uuid,pe_start,pv_size,dev_size,pv_pe_count,vg_name,vg_uuid,vg_extent_size,vg_seqno
    printf ', "lvs": '
    lvm lvs -a "${rep[@]}" -o lv_name,lv_attr,lv_size,segtype,seg_start,seg_size,seg_pe_ranges,stripes,stripe_size vgt
    printf '}\n'
} | sed -e "s|$A|pv1|g" -e "s|$B|pv2|g" >"$out/expected.json"

for d in "$A:pv1" "$B:pv2"; do
    head -c 1M "${d%%:*}" | zstd -q -19 -f -o "$out/vgt-${d##*:}.img.zst"
done
ls -l "$out"
