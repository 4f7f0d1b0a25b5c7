#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Image indexes are let go: a find that stat()s every image of many
# snapshots leaves at most $LAZYIMG_INDEX_KEEP bytes of unused indexes in
# the daemon (status --json "indexes"), sizes and st_blocks stay right
# without them, an image whose index went loads it again when opened and
# reads its bytes, and an open image keeps its index while others come and go.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3

N=40
# 64 KiB chunks: 1024 extents, 49,200 bytes of index in memory per image
make_image src.raw rand:1M,zero:30M,text:1M,zero:31M,rand:1M 7
for i in $(seq 1 $N); do
    "$MKPBS" --jobs 2 --quiet --chunk-size 64K --id 100 --time $((1750000000 + i * 3600)) \
        "$S" drive-scsi0.img=src.raw || fail "lazyimg-mkpbs of snapshot $i failed"
done
SIZE=$(stat -c %s src.raw)
ONE=49200
KEEP=$((4 * ONE + ONE / 2)) # room for 4 unused indexes

# status_field KEY...: a field of status --json ("indexes.loaded", "images.length")
status_json() {
    "$LAZYIMG" status --json "$M" >st.json || fail "lazyimg status --json failed" "$(cat st.json)"
}
field() {
    python3 - "$1" <<'EOF'
import json, sys
o = json.load(open("st.json"))
for k in sys.argv[1].split("."):
    o = len(o) if k == "length" else o[int(k)] if isinstance(o, list) else o[k]
print(o)
EOF
}

# a bound that is not a size: the mount says so
if out=$(LAZYIMG_INDEX_KEEP=lots "$LAZYIMG" mount "$S" "$W/bad" 2>&1); then
    fail "LAZYIMG_INDEX_KEEP=lots was accepted" "$out"
fi
grep -q 'LAZYIMG_INDEX_KEEP' <<<"$out" || fail "LAZYIMG_INDEX_KEEP=lots: no message naming it" "$out"
ok "LAZYIMG_INDEX_KEEP=lots: refused ($out)"

LAZYIMG_INDEX_KEEP=$KEEP lazyimg_mount "$S" "$M"
status_json
expect_eq "before any stat: no index in memory" "$(field indexes.loaded)" 0
expect_eq "... the bound is LAZYIMG_INDEX_KEEP" "$(field indexes.unused_max_bytes)" "$KEEP"

# stat() of every image: sizes and blocks from the daemon, each index loaded once
find "$M" -name '*.img' -type f -exec stat -c '%s %b' {} + >stat.out
expect_eq "find -exec stat: $N images" "$(wc -l <stat.out)" "$N"
expect_eq "... every size is the source's" "$(sort -u stat.out | wc -l) $(cut -d' ' -f1 stat.out | sort -u)" "1 $SIZE"
blocks=$(head -1 stat.out | cut -d' ' -f2)
[[ $blocks -gt 0 && $((blocks * 512)) -lt $SIZE ]] || fail "st_blocks $blocks: not the data bytes of a sparse image"
ok "... st_blocks counts the data only ($blocks blocks)"
status_json
loaded=$(field indexes.loaded) unused=$(field indexes.unused_bytes)
expect_eq "status: every index was loaded once" "$(field indexes.loads)" "$N"
[[ $loaded -le 4 && $unused -le $KEEP ]] ||
    fail "status: $loaded indexes ($unused bytes unused) stay in memory, more than the bound $KEEP" "$(cat st.json)"
ok "status: $loaded indexes stay in memory ($unused bytes, bound $KEEP)"
expect_eq "... the others were let go" "$(field indexes.evictions)" "$((N - loaded))"
expect_eq "... none in use" "$(field indexes.in_use)" 0
expect_eq "... images[] lists those in memory" "$(field images.length)" "$loaded"

# ls -lR: sizes from the nodes, nothing loaded again
ls -lR "$M" >ls.out || fail "ls -lR failed"
expect_eq "ls -lR: every image with its size" "$(grep -c " $SIZE .*drive-scsi0.img$" ls.out)" "$N"
status_json
expect_eq "... no index loaded again for it" "$(field indexes.loads)" "$N"

# the first image's index went: an open loads it again, and it reads right
FIRST=$(find "$M" -name '*.img' -type f | sort | head -1)
LAST=$(find "$M" -name '*.img' -type f | sort | tail -1)
exec 3<"$FIRST"
status_json
expect_eq "an open of an image whose index went loads it again" "$(field indexes.loads)" "$((N + 1))"
expect_eq "... it is in use while open" "$(field indexes.in_use)" 1
# others opened and read meanwhile push the unused ones out, not the open one
for img in $(find "$M" -name '*.img' -type f | sort | sed -n "2,12p"); do
    head -c 65536 "$img" | cmp -s - <(head -c 65536 src.raw) || fail "$img: its first 64 KiB differ from the source"
done
# (the kernel sends the releases of closed files after close() returns)
in_use_within() {
    local want=$1 i
    for i in $(seq 50); do
        status_json
        [[ $(field indexes.in_use) == "$want" ]] && return 0
        sleep 0.1
    done
    return 1
}
in_use_within 1 || fail "... still in use after 11 others were opened, read and let go: expected 1 in use" "$(cat st.json)"
ok "... the only one in use after 11 others were opened, read and let go"
[[ $(field indexes.unused_bytes) -le $KEEP ]] || fail "unused indexes beyond the bound" "$(cat st.json)"
cmp - src.raw <&3 || fail "the open image's bytes differ from the source"
ok "... and reads the source's bytes"
exec 3<&-
cmp "$LAST" src.raw || fail "$LAST: its bytes differ from the source"
ok "the last image reads the source's bytes"
in_use_within 0 || fail "after the close: still in use" "$(cat st.json)"
ok "after the close: nothing in use"
[[ $(field indexes.unused_bytes) -le $KEEP ]] || fail "unused indexes beyond the bound" "$(cat st.json)"
ok "... the unused ones within the bound"
rss=$(field memory.rss_bytes)
ok "daemon resident memory after $N images: $((rss >> 20)) MiB"
lazyimg_umount "$M"

# the bound as an option, which wins over the variable; refused when not a size
if out=$("$LAZYIMG" mount --index-memory lots "$S" "$W/bad" 2>&1); then
    fail "--index-memory lots was accepted" "$out"
fi
grep -q -- '--index-memory' <<<"$out" || fail "--index-memory lots: no message naming it" "$out"
LAZYIMG_INDEX_KEEP=$KEEP lazyimg_mount "$S" "$M" --index-memory $((2 * ONE))
find "$M" -name '*.img' -type f -exec stat -c '%s' {} + >/dev/null
status_json
expect_eq "--index-memory: the bound (over \$LAZYIMG_INDEX_KEEP)" "$(field indexes.unused_max_bytes)" $((2 * ONE))
[[ $(field indexes.unused_bytes) -le $((2 * ONE)) && $(field indexes.evictions) -gt 0 ]] ||
    fail "--index-memory: unused indexes beyond it, or none let go" "$(cat st.json)"
ok "--index-memory $((2 * ONE)): the bound, unused indexes within it, $(field indexes.evictions) let go"
lazyimg_umount "$M"
