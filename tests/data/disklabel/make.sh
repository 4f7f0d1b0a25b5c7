#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Writes the partition-table fixtures of tests/unit/test_disklabel.c with the
# real tools (util-linux sfdisk, gdisk's sgdisk), once; the outputs are
# committed. Usage: tests/data/disklabel/make.sh
#
# For each image NAME (a sparse file the tools partition):
#   NAME.sectors  the image's non-zero sectors: "LZDLSECT", the image size
#                 (le64), then records of a sector number (le64) and its 512
#                 bytes. The tools write only the tables, so these are the MBR
#                 and every EBR, or the protective MBR, both GPT headers and
#                 the used sectors of both entry arrays.
#   NAME.json     `sfdisk -J NAME`: the expected answer.
# and the fuzz seeds tests/fuzz/corpus/disklabel/seed-*: whole small images.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seeds=$here/../../fuzz/corpus/disklabel
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$seeds"

# the non-zero sectors of image $1 into $2
sectors() {
  python3 - "$1" "$2" <<'PY'
import os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
size = os.path.getsize(src)
out = [b"LZDLSECT", struct.pack("<Q", size)]
with open(src, "rb") as f:
    lba = 0
    while True:
        s = f.read(512)
        if len(s) < 512:
            break
        if any(s):
            out += [struct.pack("<Q", lba), s]
        lba += 1
with open(dst, "wb") as f:
    f.write(b"".join(out))
PY
}

# MBR: three primaries (one bootable), an extended partition with three
# logical partitions, a gap between them
mbr=$work/mbr.img
truncate -s 64M "$mbr"
sfdisk -q --no-reread --no-tell-kernel "$mbr" <<'T'
label: dos
label-id: 0x1badcafe
start=2048, size=8192, type=83, bootable
start=10240, size=16384, type=82
start=26624, size=4096, type=7
start=32768, type=5
start=34816, size=4096, type=83
start=43008, size=8192, type=8e
start=53248, size=2048, type=b
T
sectors "$mbr" "$here/mbr.sectors"
(cd "$work" && sfdisk -J mbr.img) >"$here/mbr.json"

# GPT: three named partitions (one name not ASCII), fixed GUIDs
gpt=$work/gpt.img
truncate -s 64M "$gpt"
sgdisk -o -U 5B1C7E9A-0D2F-4E3A-9B8C-7D6E5F4A3B2C \
  -n 1:2048:+8M -t 1:EF00 -c 1:"EFI system" -u 1:0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0 \
  -n 2:0:+16M -t 2:8300 -c 2:"root" -u 2:11111111-2222-3333-4444-555555555555 \
  -n 4:0:+4M -t 4:8E00 -c 4:"données ✓ 𝄞" -u 4:ABCDEF01-2345-6789-ABCD-EF0123456789 \
  "$gpt" >/dev/null
sectors "$gpt" "$here/gpt.sectors"
(cd "$work" && sfdisk -J gpt.img) >"$here/gpt.json"

# fuzz seeds: 64 KiB images, so that the whole device is the fuzz input
seed=$work/seed.img
rm -f "$seed"; truncate -s 64K "$seed"
sfdisk -q --no-reread --no-tell-kernel "$seed" <<'T'
label: dos
label-id: 0x5eed0001
start=1, size=15, type=83
start=16, size=16, type=c
T
cp "$seed" "$seeds/seed-mbr"
rm -f "$seed"; truncate -s 64K "$seed"
sfdisk -q --no-reread --no-tell-kernel "$seed" <<'T'
label: dos
label-id: 0x5eed0002
start=1, size=15, type=83
start=16, type=f
start=20, size=8, type=83
start=32, size=8, type=82
start=48, size=8, type=83
T
cp "$seed" "$seeds/seed-ebr-chain"
rm -f "$seed"; truncate -s 64K "$seed"
sgdisk -a 1 -o -U 01234567-89AB-CDEF-0123-456789ABCDEF \
  -n 1:34:+8K -c 1:"boot" -u 1:11111111-1111-1111-1111-111111111111 \
  -n 2:0:0 -t 2:8300 -c 2:"ĉu? 𝄞" -u 2:22222222-2222-2222-2222-222222222222 "$seed" >/dev/null
cp "$seed" "$seeds/seed-gpt"
ls -l "$here" "$seeds"
