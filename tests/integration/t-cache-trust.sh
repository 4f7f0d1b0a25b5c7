#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Issue 12, defects 3 and 4.
# 3: a cache directory others can change is refused with a clear message (it
#    served an attacker's bytes: overwrite a cached file, recompute its row's
#    CRCs): one owned by another user, a 0777 one, a symlinked index.sqlite.
# 4: `lazyimg status` changes nothing in the cache: last_use and the hit
#    counters stay as they are over 10 calls, and with a status poller running
#    a read past the budget still evicts old entries and caches its chunks.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3
T1=2025-08-01T00:00:00Z

# two 12 MiB images of 1 MiB chunks, nothing shared
make_image a.raw rand:12M 11
make_image b.raw rand:12M 12
mkpbs --chunk-size 1M --id 100 --time $T1 "$S" drive-scsi0.img=a.raw >/dev/null
mkpbs --chunk-size 1M --id 101 --time $T1 "$S" drive-scsi0.img=b.raw >/dev/null
IMGA=$M/vm/100/$T1/drive-scsi0.img
IMGB=$M/vm/101/$T1/drive-scsi0.img

# sql DIR QUERY: the rows of QUERY on DIR/index.sqlite, one per line, '|' between columns
sql() {
    python3 - "$1/index.sqlite" "$2" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
for row in db.execute(sys.argv[2]):
    print("|".join(str(v) for v in row))
db.commit()
EOF
}

# mount_refused DIR EXPECTED: a mount with --cache-dir DIR fails, its message has EXPECTED
mount_refused() {
    local out rc=0
    mkdir -p "$M"
    out=$("$LAZYIMG" mount --cache-dir "$1" "$S" "$M" 2>&1) || rc=$?
    if mountpoint -q "$M"; then
        T_MOUNTS+=("$M")
        fail "lazyimg mount with cache directory $1 succeeded: it must be refused" "$out"
    fi
    ((rc != 0)) || fail "lazyimg mount with cache directory $1 exited 0 without mounting" "$out"
    grep -qF -- "$2" <<<"$out" || fail "refusal of $1 does not say: $2" "$out"
    ok "mount refused: $(head -1 <<<"$out")"
}

# fill_cache DIR: reads image a through a mount with that cache
fill_cache() {
    lazyimg_mount "$S" "$M" --cache-dir "$1"
    cmp "$IMGA" a.raw || fail "read through a fresh cache differs"
    lazyimg_umount "$M"
}

# --- 3a: the default cache directory, created by lazyimg, passes ------------
# (lib.sh points LAZYIMG_CACHE_DIR at $W/cache, which does not exist yet)
fill_cache "$LAZYIMG_CACHE_DIR"
expect_eq "the cache directory lazyimg creates is mode 0700, owned by us" "700 0" \
    "$(stat -c '%a %u' "$LAZYIMG_CACHE_DIR")"

# --- 3b: owned by another user: the attack of the issue is refused -----------
C=$W/cache-other
fill_cache "$C"
chown -R 65534:65534 "$C"
# the owner (an attacker) replaces a cached chunk and recomputes its CRCs
python3 - "$C" <<'EOF'
import glob, os, sqlite3, struct, sys, zlib
d = sys.argv[1]
db = sqlite3.connect(d + "/index.sqlite")
algo, digest, created, length = db.execute(
    "SELECT algo, digest, created, len FROM chunks ORDER BY digest LIMIT 1").fetchone()
evil = bytes([0x66]) * length
path = "%s/data/sha256/%s/%s.%d" % (d, digest.hex()[:2], digest.hex(), created)
with open(path, "wb") as f:
    f.write(evil)
crcs = b"".join(struct.pack("<I", zlib.crc32(evil[i:i + 65536])) for i in range(0, length, 65536))
db.execute("UPDATE chunks SET crcs = ? WHERE algo = ? AND digest = ?", (crcs, algo, digest))
db.commit()
EOF
chown -R 65534:65534 "$C"
mount_refused "$C" "cache directory $C is owned by uid 65534, not by this user (uid 0); refusing to use it"
out=$("$LAZYIMG" cache stats --cache-dir "$C" 2>&1) && fail "lazyimg cache stats used a cache of another user" "$out"
grep -qF "owned by uid 65534" <<<"$out" || fail "lazyimg cache stats: unclear refusal" "$out"
ok "lazyimg cache stats refuses it too"

# --- 3c: writable by others --------------------------------------------------
C=$W/cache-0777
fill_cache "$C"
chmod 0777 "$C"
mount_refused "$C" "cache directory $C is writable by group or others (mode 0777); refusing to use it (chmod go-w $C, or choose another --cache-dir)"
chmod go-w "$C"
fill_cache "$C"
ok "after chmod go-w the cache is used again"
chmod 0777 "$C/data"
mount_refused "$C" "cache directory $C/data is writable by group or others (mode 0777)"
chmod 0700 "$C/data"

# --- 3d: a symlinked index.sqlite ---------------------------------------------
mv "$C/index.sqlite" "$W/elsewhere.sqlite"
ln -s "$W/elsewhere.sqlite" "$C/index.sqlite"
mount_refused "$C" "cache file $C/index.sqlite is a symbolic link; refusing to use it"
[[ ! -e $C/index.sqlite-wal && ! -e $W/elsewhere.sqlite-wal ]] || fail "the symlinked index was opened (a -wal file appeared)"
ok "the symlinked index was not opened"
rm "$C/index.sqlite"
mv "$W/elsewhere.sqlite" "$C/index.sqlite"

# --- 4a: status changes neither last_use nor the hit counters ------------------
C=$W/cache-status
fill_cache "$C"
lazyimg_mount "$S" "$M" --cache-dir "$C"
stat "$IMGA" >/dev/null # loads its index: status then lists it
before=$(sql "$C" "SELECT hex(digest), last_use FROM chunks ORDER BY digest"
    sql "$C" "SELECT name, hits, misses FROM stores ORDER BY name")
for i in $(seq 10); do
    out=$("$LAZYIMG" status --json "$M") || fail "lazyimg status failed" "$out"
done
cached=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["images"][0]["cached_bytes"])' <<<"$out")
expect_eq "status reports image a (12 MiB) as cached" $((12 << 20)) "$cached"
lazyimg_umount "$M" # writes every batched last_use and counter
after=$(sql "$C" "SELECT hex(digest), last_use FROM chunks ORDER BY digest"
    sql "$C" "SELECT name, hits, misses FROM stores ORDER BY name")
expect_same_file "10 status calls change no last_use and no hit/miss counter" <(echo "$before") <(echo "$after")

# --- 4b: a status poller does not keep old entries from eviction --------------
# image a's 12 chunks were last used an hour ago; the budget (16M, the
# least allowed) holds a and a quarter of b: reading b must evict a's chunks
# and cache b's
sql "$C" "UPDATE chunks SET last_use = last_use - 3600000" >/dev/null
lazyimg_mount "$S" "$M" --cache-dir "$C" --cache-size 16M
stat "$IMGA" >/dev/null
(while :; do "$LAZYIMG" status "$M" >/dev/null 2>&1 || true; sleep 0.1; done) &
POLLER=$!
add_cleanup "kill $POLLER"
sleep 3 # more than the 2 s in which batched last_use values are written
cmp "$IMGB" b.raw || fail "read of image b under a status poller differs"
sleep 1
kill "$POLLER"
wait "$POLLER" 2>/dev/null || true
lazyimg_umount "$M"
a_left=$(sql "$C" "SELECT hex(digest) FROM chunks" | grep -c -x -F -f <(fidx_digests "$S/vm/100/$T1/drive-scsi0.img.fidx" | tr a-f A-F) || true)
b_cached=$(sql "$C" "SELECT hex(digest) FROM chunks" | grep -c -x -F -f <(fidx_digests "$S/vm/101/$T1/drive-scsi0.img.fidx" | tr a-f A-F) || true)
evictions=$(sql "$C" "SELECT sum(evictions) FROM stores")
((evictions >= 8 && a_left <= 4)) || fail "under a status poller, old entries were not evicted" "evictions $evictions, chunks of a left $a_left of 12"
ok "under a status poller, $evictions old entries were evicted ($a_left of a's 12 chunks left)"
expect_eq "under a status poller, every chunk of the read of b was cached" 12 "$b_cached"
