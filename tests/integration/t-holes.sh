#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Holes: all-zero chunks are holes of the mounted image, seen by
# SEEK_DATA/SEEK_HOLE, st_blocks, cp --sparse, qemu-img map/compare; and
# reading them never touches the store (strace, deleted zero chunks).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test qemu-img strace python3
T=2025-04-01T10:00:00Z

# 64 KiB chunks: the mixed preset (aligned/unaligned zero runs, partly-zero,
# repeated chunks, a short last chunk).
make_preset small.raw 64K 1
# 4 MiB chunks: a 64 MiB sparse image; zero runs aligned and not aligned to 4M.
make_image big.raw rand:3M,zero:9M,text:2M,zero:20M,rand:5M,repeat:1M,zero:8M,rand:1M,zero:15M 2
mkpbs --chunk-size 64K --id 100 --time $T "$S" drive-scsi0.img=small.raw >/dev/null
mkpbs --chunk-size 4M --id 101 --time $T "$S" drive-scsi0.img=big.raw >/dev/null
SMALL=vm/100/$T/drive-scsi0.img
BIG=vm/101/$T/drive-scsi0.img

# name  mounted-path  source  chunk-size
IMAGES=("small $SMALL small.raw 65536" "big $BIG big.raw 4194304")

# map_data_bytes MAPFILE: sum of the data extents of a seekmap listing.
map_data_bytes() {
    awk '$1 == "data" {s += $3} END {print s + 0}' "$1"
}

lazyimg_mount "$S" "$M"

for spec in "${IMAGES[@]}"; do
    read -r name img src cs <<<"$spec"
    size=$(stat -c %s "$src")
    "$SEEKMAP" --expect "$cs" "$src" >"$name.expect" || fail "seekmap --expect $cs $src failed"
    grep -q '^hole' "$name.expect" || fail "test setup: $src has no all-zero chunk"
    grep -q '^data' "$name.expect" || fail "test setup: $src has no data chunk"

    # SEEK_DATA / SEEK_HOLE
    "$SEEKMAP" "$M/$img" >"$name.map" || fail "seekmap $M/$img failed"
    expect_same_file "$name ($((cs / 1024))K chunks): SEEK_DATA/SEEK_HOLE map equals the all-zero chunks of the source" \
        "$name.expect" "$name.map"

    # SEEK_DATA/SEEK_HOLE from offsets inside extents, and at/after EOF
    python3 - "$M/$img" "$name.expect" <<'EOF' || fail "$name: lseek(SEEK_DATA/SEEK_HOLE) from inner offsets (see above)"
import errno, os, random, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
ext = [(k, int(o), int(n)) for k, o, n in (l.split() for l in open(sys.argv[2]))]
def want(off, whence):
    for k, o, n in ext:
        if o + n <= off:
            continue
        if whence == os.SEEK_DATA and k == "data":
            return max(off, o)
        if whence == os.SEEK_HOLE and k == "hole":
            return max(off, o)
    return None if whence == os.SEEK_DATA else size  # virtual hole at EOF
rnd = random.Random(1)
offs = [rnd.randrange(size) for _ in range(300)] + [0, size - 1]
offs += [o + d for _, o, _ in ext for d in (-1, 0, 1) if 0 <= o + d < size]
bad = 0
for off in offs:
    for whence, name in ((os.SEEK_DATA, "SEEK_DATA"), (os.SEEK_HOLE, "SEEK_HOLE")):
        w = want(off, whence)
        try:
            got = os.lseek(fd, off, whence)
        except OSError as e:
            got = None if e.errno == errno.ENXIO else f"errno {e.errno}"
        if got != w:
            print(f"    lseek({off}, {name}) = {got}, expected {w if w is not None else 'ENXIO'}")
            bad += 1
for off in (size, size + 1, size + (1 << 20)):
    for whence, name in ((os.SEEK_DATA, "SEEK_DATA"), (os.SEEK_HOLE, "SEEK_HOLE")):
        try:
            got = os.lseek(fd, off, whence)
            print(f"    lseek({off} >= size {size}, {name}) = {got}, expected ENXIO")
            bad += 1
        except OSError as e:
            if e.errno != errno.ENXIO:
                print(f"    lseek({off} >= size, {name}): errno {e.errno}, expected ENXIO")
                bad += 1
sys.exit(1 if bad else 0)
EOF
    ok "$name: lseek SEEK_DATA/SEEK_HOLE right from 300 random and all boundary offsets, ENXIO at/after EOF"

    # st_blocks
    data=$(map_data_bytes "$name.expect")
    expect_eq "$name: st_blocks = data chunk bytes / 512 ($data data bytes of $size)" \
        $(((data + 511) / 512)) "$(stat -c %b "$M/$img")"

    # cp --sparse=always
    cp --sparse=always "$M/$img" "$name.copy" || fail "cp --sparse=always $M/$img failed"
    out=$(cmp "$name.copy" "$src" 2>&1) || fail "$name: cp --sparse=always copy differs from the source" "$out"
    ok "$name: cp --sparse=always copy equals the source"
    du_k=$(du -k "$name.copy" | cut -f1)
    ((du_k <= (data + 1023) / 1024 + 64)) ||
        fail "$name: cp --sparse=always copy takes ${du_k}K on disk, more than the ${data}-byte data (size $size)"
    ok "$name: sparse copy takes ${du_k}K on disk (data $((data / 1024))K, size $((size / 1024))K)"

    # qemu-img map: data/zero extents
    qemu-img map -f raw --output=json "$M/$img" >"$name.qmap.json" 2>&1 ||
        fail "qemu-img map $M/$img failed" "$(cat "$name.qmap.json")"
    python3 - "$name.qmap.json" "$size" >"$name.qmap" <<'EOF' || fail "$name: cannot parse qemu-img map output" "$(cat "$name.qmap.json")"
import json, sys
size = int(sys.argv[2])
out = []
for e in json.load(open(sys.argv[1])):
    start, end = e["start"], min(e["start"] + e["length"], size)
    if end <= start:
        continue  # qemu rounds the raw size up to 512
    kind = "data" if e["data"] else "hole"
    if not e["data"] and not e["zero"]:
        kind = "unallocated-nonzero"
    if out and out[-1][0] == kind and out[-1][1] + out[-1][2] == start:
        out[-1][2] += end - start
    else:
        out.append([kind, start, end - start])
for k, s, n in out:
    print(k, s, n)
EOF
    expect_same_file "$name: qemu-img map data/zero extents agree with the expected map" "$name.expect" "$name.qmap"

    # qemu-img compare
    out=$(qemu-img compare -f raw -F raw "$M/$img" "$src" 2>&1) || fail "$name: qemu-img compare mounted image vs source" "$out"
    grep -q "Images are identical" <<<"$out" || fail "$name: qemu-img compare did not say identical" "$out"
    ok "$name: qemu-img compare: $out"
done
lazyimg_umount "$M"
ok "unmounted"

# --- reading holes never opens a chunk (strace the daemon) ------------------
# a cache of its own: the reads above filled the test's shared one, and a cached
# chunk never reaches the store
lazyimg_mount_fg "$S" "$M" daemon.log strace -f -qq -e trace=openat,openat2 -o "$W/strace.log" -- --cache-dir "$W/cache-strace" --readahead 0
chunk_opens() {
    { grep -E 'openat2?\(.*\.chunks/[0-9a-f]{4}/[0-9a-f]{64}' strace.log || true; } | sed -E 's#.*\.chunks/[0-9a-f]{4}/([0-9a-f]{64}).*#\1#' | sort -u
}
for spec in "${IMAGES[@]}"; do
    read -r name img src cs <<<"$spec"
    n=0
    while read -r kind off len; do
        [[ $kind == hole ]] || continue
        # O_DIRECT: the request is exactly the hole (no kernel readahead into data)
        read_range "$M/$img" "$off" "$len" direct >hole.bin || fail "$name: reading hole [$off, +$len) failed"
        expect_eq "$name: hole [$off, +$len) reads as $len zero bytes" "$(zero_digest "$len")" "$(sha_of hole.bin)" >/dev/null
        n=$((n + 1))
    done <"$name.expect"
    ok "$name: $n hole extents read back as zeros"
done
# strace writes each line as it happens: the log is complete here
opens=$(chunk_opens)
[[ -z "$opens" ]] || fail "reading only holes opened chunk files of the store" "$opens"
ok "reading only hole ranges opened no .chunks/ file (strace openat)"

# the same check sees a data read: read the first chunk of the small image
read -r kind off len <"small.expect"
[[ $kind == data ]] || fail "test setup: small.raw should start with data"
d0=$(fidx_digest "$S/vm/100/$T/drive-scsi0.img.fidx" 0)
cmp <(read_range "$M/$SMALL" 0 65536 direct) <(read_range small.raw 0 65536) ||
    fail "small: first chunk differs from the source"
expect_eq "reading the first data chunk opens exactly its chunk file" "$d0" "$(chunk_opens)"
lazyimg_umount "$M"
ok "unmounted the strace'd daemon"

# --- holes need no zero chunk in the store --------------------------------
for spec in "${IMAGES[@]}"; do
    read -r name img src cs <<<"$spec"
    fidx=$S/${img}.fidx
    size=$(stat -c %s "$src")
    last=$((size - (size - 1) / cs * cs))
    deleted=0
    for z in $(zero_digest "$cs") $(zero_digest "$last"); do
        fidx_has "$fidx" "$z" || continue
        if [[ -e $(chunk_path "$S" "$z") ]]; then
            rm -f "$(chunk_path "$S" "$z")"
            deleted=$((deleted + 1))
        fi
    done
    ((deleted > 0)) || fail "test setup: $name: no zero chunk referenced by $fidx found in the store"
    ok "$name: deleted $deleted zero chunk file(s) from .chunks"
done
lazyimg_mount "$S" "$M"
for spec in "${IMAGES[@]}"; do
    read -r name img src cs <<<"$spec"
    out=$(cmp "$M/$img" "$src" 2>&1) || fail "$name: image without its zero chunk file differs from the source" "$out"
    ok "$name: whole image (buffered read) still equals the source without the zero chunk file"
done
lazyimg_umount "$M"
ok "unmounted"
