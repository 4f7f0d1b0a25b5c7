#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Filling the chunk cache: after one cold sequential read of an image smaller
# than the budget every data chunk is in the cache, each fetched once, even
# when the cache disk stalls for longer than a chunk takes to load (loaders
# wait for the writer; nothing is dropped silently), and that a warm
# sequential read is read ahead from the cache into memory; a cache disk
# whose reads fail with EIO costs fetches from the store, never a read;
# `lazyimg status` looks the chunks up in one read transaction.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 strace
T1=2025-08-01T00:00:00Z

# 18 distinct data chunks of 4 MiB and 2 zero ones
make_image a.raw rand:48M,zero:8M,rand:24M 7
mkpbs --chunk-size 4M --time $T1 "$S" drive-scsi0.img=a.raw >/dev/null
IMG=$M/vm/100/$T1/drive-scsi0.img
DATA_CHUNKS=18

# json_field JSON PATH...: one number from `lazyimg status --json`
json_field() {
    python3 -c 'import json,sys
o=json.loads(sys.argv[1])
for k in sys.argv[2:]: o=o[int(k)] if isinstance(o, list) else o[k]
print(o)' "$@"
}

# strace_threads WHAT TID... -- STRACE_OPTION...: strace attached to those
# threads of the daemon (STRACE_PID), or the test fails naming WHAT
strace_threads() {
    local what=$1 last=""
    local -a ps=()
    shift
    while (($#)) && [[ $1 != -- ]]; do
        ps+=(-p "$1")
        last=$1
        shift
    done
    (($#)) && shift
    [[ -n $last ]] || fail "no $what thread in daemon $MOUNT_PID"
    strace -qq "$@" "${ps[@]}" &
    STRACE_PID=$!
    T_PIDS+=("$STRACE_PID")
    for _ in $(seq 100); do
        grep -q "^TracerPid:[[:space:]]*$STRACE_PID$" /proc/"$MOUNT_PID"/task/"$last"/status && return 0
        sleep 0.05
    done
    fail "strace could not attach to the daemon's $what (ptrace restricted?)"
}

# check_sha256 STATUS_JSON LABEL: the digests were taken by our code on the
# SHA extensions where the CPU has them (every data chunk's 64-byte blocks
# counted, alone or two at a time), by OpenSSL elsewhere
check_sha256() {
    local engine paired alone
    engine=$(json_field "$1" fetch sha256 engine)
    paired=$(json_field "$1" fetch sha256 blocks_paired)
    alone=$(json_field "$1" fetch sha256 blocks_alone)
    if grep -qw sha_ni /proc/cpuinfo; then
        expect_eq "$2: SHA-256 on the SHA extensions" sha-ni "$engine"
        [ $((paired + alone)) -ge $((DATA_CHUNKS * 65536)) ] ||
            fail "$2: $paired + $alone blocks hashed, fewer than the $DATA_CHUNKS chunks' $((DATA_CHUNKS * 65536))"
        ok "$2: $((paired + alone)) blocks hashed, $paired of them two at a time"
    else
        expect_eq "$2: SHA-256 by OpenSSL (no SHA extensions)" openssl "$engine"
    fi
}

# check_filled CACHE LABEL: after a cold read (mounted), then unmounted
check_filled() {
    local st
    st=$("$LAZYIMG" status --json "$M") || fail "$2: lazyimg status failed" "$st"
    expect_eq "$2: each data chunk was loaded from the store once" $DATA_CHUNKS \
        "$(json_field "$st" cache loads)"
    expect_eq "$2: no insert skipped by the disk cache" 0 "$(json_field "$st" cache disk insert_skipped)"
    expect_eq "$2: no chunk withheld from the disk cache" 0 "$(json_field "$st" cache disk not_handed_over)"
    check_sha256 "$st" "$2"
    lazyimg_umount "$M"
    expect_eq "$2: the cache holds every data chunk of the image" $DATA_CHUNKS \
        "$(find "$1/data" -type f | wc -l)"
}

# --- the defaults ------------------------------------------------------------
lazyimg_mount "$S" "$M" --cache-dir "$W/cache1"
cmp "$IMG" a.raw || fail "cold read with the cache filling differs from the source"
ok "cold read with the cache filling equals the source"
# the daemon's memory as status reports it: its resident set, and a chunk
# buffer for every chunk it loaded (from its slots, or the heap under ASan)
st=$("$LAZYIMG" status --json "$M") || fail "lazyimg status failed" "$st"
rss=$(json_field "$st" memory rss_bytes)
peak=$(json_field "$st" memory rss_peak_bytes)
((rss > 1048576 && peak >= rss)) || fail "status: memory.rss_bytes $rss, rss_peak_bytes $peak"
bufs=$(($(json_field "$st" memory chunk_buffers slot_allocs) + $(json_field "$st" memory chunk_buffers heap_allocs)))
((bufs >= DATA_CHUNKS)) || fail "status: $bufs chunk buffers allocated for $DATA_CHUNKS chunks loaded"
out=$("$LAZYIMG" status "$M") || fail "lazyimg status failed" "$out"
grep -Eq '^memory: +[0-9.]+[BKMGTP] resident \(peak [0-9.]+[BKMGTP]\); chunk buffers [0-9]+ in use, [0-9]+ kept \([0-9.]+[BKMGTP]\)$' <<<"$out" ||
    fail "lazyimg status has no memory line" "$out"
ok "status reports the daemon's memory: $((rss >> 20)) MiB resident (peak $((peak >> 20))), $bufs chunk buffers allocated"
check_filled "$W/cache1" "defaults"

# --- a cache disk that stalls for 2.5 s twice, with a small memory budget ----
# (4 MiB may wait for the disk writer, so loaders must wait for it)
[[ -f ${SLOWWRITE:-} ]] || fail "SLOWWRITE (the slow-write shim) is not set"
t0=$(date +%s.%N)
(
    export LD_PRELOAD=$SLOWWRITE SLOWWRITE_MATCH="$W/cache2/tmp/" SLOWWRITE_MS=2500 SLOWWRITE_COUNT=2
    # an ASan build's runtime must otherwise come first in the library list
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
    "$LAZYIMG" mount --cache-dir "$W/cache2" --mem-cache 8M "$S" "$M"
) || fail "mount with a slow cache disk failed"
T_MOUNTS+=("$M")
T_PIDS+=("$(daemon_pid "$M")")
cmp "$IMG" a.raw || fail "cold read with a stalling cache disk differs from the source"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a >= 2.5) }' ||
    fail "the read took under 2.5 s: the slow-write shim did not slow the cache disk"
ok "cold read with a stalling cache disk equals the source"
st=$("$LAZYIMG" status --json "$M") || fail "stalling cache disk: lazyimg status failed" "$st"
n=$(json_field "$st" cache disk insert_waits)
((n > 0)) || fail "stalling cache disk: status counts no insert that waited for the writer"
ok "stalling cache disk: $n inserts waited for the writer (status: cache.disk.insert_waits)"
check_filled "$W/cache2" "stalling cache disk"


# --- warm: readahead of a sequential reader comes from the disk cache --------
# (read ahead into memory on the daemon's disk-loader threads, CRC-checked;
# with O_DIRECT where the cache's filesystem takes it, and then no chunk of
# 4 MiB is hinted into the page cache: the loaders would not read it there)
odirect=0 bypass=0
if dd if=/dev/zero of="$W/direct-probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
    odirect=1
    # where O_DIRECT reads bypass the page cache (not tmpfs, whose pages are
    # always there: loads read them from it)
    [[ $(stat -f -c %T "$W") =~ ^(ext2/ext3|xfs|btrfs)$ ]] && bypass=1
fi
rm -f "$W/direct-probe"
# the cache files out of the page cache, as after a reboot
python3 - "$W/cache1/data" <<'PY'
import os, sys
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        fd = os.open(os.path.join(d, f), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
lazyimg_mount "$S" "$M" --cache-dir "$W/cache1"
# a reader that consumes 1 MiB every 10 ms (100 MB/s): the chunks it is about
# to read must already be in memory, loaded ahead from the disk cache (a
# reader that outruns the disk loaders reads the cache files itself, which
# proves nothing about readahead)
python3 - "$IMG" a.raw <<'PY' || fail "warm read from the cache differs from the source"
import sys, time
with open(sys.argv[1], "rb") as m, open(sys.argv[2], "rb") as s:
    while True:
        a, b = m.read(1 << 20), s.read(1 << 20)
        if a != b:
            sys.exit(1)
        if not a:
            break
        time.sleep(0.01)
PY
st=$("$LAZYIMG" status --json "$M") || fail "warm: lazyimg status failed" "$st"
expect_eq "warm: nothing loaded from the store" 0 "$(json_field "$st" cache loads)"
n=$(json_field "$st" cache disk_loads)
((n >= DATA_CHUNKS / 2 && n <= DATA_CHUNKS)) ||
    fail "warm: $n of $DATA_CHUNKS data chunks read ahead from the disk cache (expected at least half)"
ok "warm: $n of $DATA_CHUNKS data chunks read ahead from the disk cache into memory"
nd=$(json_field "$st" cache disk direct_reads)
if ((bypass)); then
    # (a load whose chunk another thread brought into memory meanwhile is
    # read but not counted in disk_loads)
    ((nd >= n)) || fail "warm: $nd of $n chunks loaded with O_DIRECT ($(stat -f -c %T "$W"))"
    ok "warm: every chunk loaded with O_DIRECT ($nd reads, $(stat -f -c %T "$W"))"
else
    expect_eq "warm: no chunk loaded with O_DIRECT ($(stat -f -c %T "$W"), O_DIRECT $odirect)" 0 "$nd"
fi
lazyimg_umount "$M"

# --- warm: cached chunks beyond the window are hinted to the kernel ----------
# The first 12 MiB (chunks 0-2) open a window of 8 MiB (chunks up to 4 in
# memory); cached chunks up to four windows further on, past the 2 holes,
# get a WILLNEED: 11 of them (1 + 4 + 6 over the three chunks' steps). Not
# where the loaders read chunks of 4 MiB with O_DIRECT: none then.
lazyimg_mount "$S" "$M" --cache-dir "$W/cache1"
dd if="$IMG" bs=1M count=12 status=none | cmp -n $((12 << 20)) - a.raw ||
    fail "hints: the first 12 MiB differ from the source"
st=$("$LAZYIMG" status --json "$M") || fail "hints: lazyimg status failed" "$st"
hints=$(json_field "$st" cache disk_hints)
loaded=$(json_field "$st" cache disk_loads)
if ((odirect)); then
    ((hints == 0 && loaded <= 6)) ||
        fail "hints: $hints cached chunks hinted and $loaded loaded into memory after 12 MiB (expected none hinted, O_DIRECT loads, and at most 6 loaded)"
    ok "hints: after 12 MiB, no chunk of 4 MiB hinted to the kernel (loaded with O_DIRECT), $loaded loaded into memory"
else
    ((hints >= 10 && loaded <= 6)) ||
        fail "hints: $hints cached chunks hinted and $loaded loaded into memory after 12 MiB (expected about 11, and at most 6)"
    ok "hints: after 12 MiB, $hints cached chunks hinted to the kernel beyond the $loaded loaded into memory"
fi
lazyimg_umount "$M"

# --- warm: a reader that outruns the disk loaders reads no chunk twice --------
# The loaders' reads of the cache files are held 100 ms each (strace attached
# to those threads only), so a reader reading as fast as it can passes them.
# It must wait for a chunk a loader is reading, and read a queued one itself
# in the loader's stead, so that the loaders go on ahead of it: each chunk is
# read from the cache once, by a loader or by the reader. (Before, the loaders
# went on loading the chunks the reader had passed and read itself.)
lazyimg_mount "$S" "$M" --cache-dir "$W/cache1"
mapfile -t tids < <(daemon_threads lz-diskload)
strace_threads "disk loaders (lz-diskload)" "${tids[@]}" -- \
    -e trace=pread64 -e inject=pread64:delay_enter=100000 -o /dev/null
sleep 0.2 # the other loader
dd if="$IMG" bs=1M status=none | cmp - a.raw || fail "warm read past the disk loaders differs from the source"
# the loaders finish what they were given (each read of theirs held 100 ms,
# the index's too): the count unchanged for 2 s
prev=-1 same=0
for _ in $(seq 60); do
    st=$("$LAZYIMG" status --json "$M") || fail "outrun loaders: lazyimg status failed" "$st"
    n=$(json_field "$st" cache disk_loads)
    if [[ $n == "$prev" ]]; then ((++same >= 4)) && break; else same=0; fi
    prev=$n
    sleep 0.5
done
kill "$STRACE_PID"
wait "$STRACE_PID" 2>/dev/null || true
direct=$(json_field "$st" cache disk_hits)
expect_eq "outrun loaders: nothing loaded from the store" 0 "$(json_field "$st" cache loads)"
# disk_hits counts 1 MiB requests the reader read from the cache itself: 4
# per chunk of 4 MiB
((n + (direct + 3) / 4 <= DATA_CHUNKS + 2)) ||
    fail "outrun loaders: $n chunks loaded ahead and $direct MiB read by the reader itself, for $DATA_CHUNKS data chunks: chunks were read twice"
ok "outrun loaders: $n chunks loaded ahead, $direct MiB read by the reader itself, for $DATA_CHUNKS data chunks"
lazyimg_umount "$M"

# --- a cache disk whose reads fail (EIO: a bad sector under the cache files) ---
# (the daemon said nothing and counted nothing before; the chunks came from
# the store all the same): every chunk is fetched from the store instead,
# the reads are right, the daemon says so once and counts the failures, and
# the entries stay: without the fault the same cache serves every chunk
[[ -f ${FAILREAD:-} ]] || fail "FAILREAD (the failing-read shim) is not set"
lazyimg_mount_fg "$S" "$M" failread.log env LD_PRELOAD="$FAILREAD" \
    FAILREAD_MATCH="$W/cache1/data/:$W/cache1/packs/" \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" -- --cache-dir "$W/cache1"
cmp "$IMG" a.raw || fail "a cache disk whose reads fail: the read differs from the source"
st=$("$LAZYIMG" status --json "$M") || fail "failing cache disk: lazyimg status failed" "$st"
errors=$(json_field "$st" cache disk read_errors)
loads=$(json_field "$st" cache loads)
((errors > 0)) || fail "failing cache disk: status counts no failed read (cache.disk.read_errors $errors)"
expect_eq "failing cache disk: every data chunk fetched from the store" "$DATA_CHUNKS" "$loads"
grep -q "disk cache: reading a cached chunk failed: Input/output error" failread.log ||
    fail "failing cache disk: the daemon does not say that reads of the cache fail" "$(cat failread.log)"
expect_eq "failing cache disk: the entries stay" "$DATA_CHUNKS" "$(json_field "$st" cache disk entries)"
lazyimg_umount "$M"
lazyimg_mount "$S" "$M" --cache-dir "$W/cache1"
cmp "$IMG" a.raw || fail "the cache disk healed: the read differs from the source"
st=$("$LAZYIMG" status --json "$M") || fail "healed cache disk: lazyimg status failed" "$st"
expect_eq "healed cache disk: nothing fetched from the store" 0 "$(json_field "$st" cache loads)"
ok "a cache disk whose reads fail with EIO: the image reads right, $loads chunks fetched from the store, $errors failed reads counted and said; healed, every chunk comes from the cache again"

# --- lazyimg status looks an image's chunks up in one SQLite read transaction ---
# (one transaction per chunk took a lock and released it each time: 76 ms of
# the daemon's CPU per status call of a 1 GiB casync image; fcntl() locks
# of the control thread, which answers it, counted with strace). A fresh
# mount whose image index is in memory (read): its first status counts.
lazyimg_umount "$M"
lazyimg_mount "$S" "$M" --cache-dir "$W/cache1"
cmp "$IMG" a.raw || fail "the read before status differs from the source"
# (the read's hits and last-use times are committed at the cache's next
# flush, 2 s at most: that commit changes no row, but a status reading the
# index after it takes more locks than one reading before it)
sleep 2.5
# pct JSON: the first image's hydrated_pct in a status --json file
pct() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["images"][0]["hydrated_pct"])' "$1"; }
# traced_status NAME: lazyimg status --json into NAME.json, the fcntl() locks
# the control thread took meanwhile into LOCKS
traced_status() {
    strace_threads "control thread (lz-control)" $(daemon_threads lz-control) -- \
        -e trace=fcntl -o "$1.trace"
    "$LAZYIMG" status --json "$M" >"$1.json" || fail "status under strace ($1) failed"
    sleep 0.2
    kill "$STRACE_PID"
    wait "$STRACE_PID" 2>/dev/null || true
    LOCKS=$(grep -c F_SETLK "$1.trace" || true)
}
traced_status status
locks=$LOCKS
expect_eq "status under strace: the image fully cached" 100.0 "$(pct status.json)"
((locks > 0)) || fail "lazyimg status: strace saw no fcntl() lock on the control thread (the test sees nothing)"
((locks < DATA_CHUNKS)) ||
    fail "lazyimg status took $locks fcntl() locks for an image of $DATA_CHUNKS data chunks (one read transaction per chunk)"
ok "lazyimg status of an image of $DATA_CHUNKS cached data chunks: $locks fcntl() locks (its lookups in one read transaction)"

# --- status counts an image's cached bytes again only when the cache changed ---
# (every status and metrics scrape looked every chunk up again: about 1 µs
# each, seconds for a large casync image on a mount nobody reads). Nothing
# changed since the last status: only the cache's generation is read (one
# read transaction, fewer locks than the count's two)
traced_status status2
locks2=$LOCKS
expect_eq "the second status: the image fully cached" 100.0 "$(pct status2.json)"
((locks2 > 0 && locks2 < locks)) ||
    fail "lazyimg status with the cache unchanged took $locks2 fcntl() locks, the count before it $locks: the image's chunks were looked up again"
# ... and counts again when another process changed the cache: evicted by
# `lazyimg cache gc`, then cached again by a read (the image's 72 MiB of
# chunks are more than the memory cache keeps: the read fetches them again)
"$LAZYIMG" cache gc --cache-dir "$W/cache1" --size 0 >gc.out 2>&1 || fail "lazyimg cache gc failed" "$(cat gc.out)"
"$LAZYIMG" status --json "$M" >status3.json || fail "status after cache gc failed"
expect_eq "status after another process evicted every chunk" 0.0 "$(pct status3.json)"
cmp "$IMG" a.raw || fail "the read after cache gc differs from the source"
for _ in $(seq 100); do
    "$LAZYIMG" status --json "$M" >status4.json || fail "status after the read failed"
    [[ $(pct status4.json) == 100.0 ]] && break
    sleep 0.1
done
expect_eq "status after the image was read again" 100.0 "$(pct status4.json)"
ok "lazyimg status with the cache unchanged: $locks2 fcntl() locks (the count: $locks); after cache gc by another process 0.0%, after a read 100.0%"

# --- status brings its count up to date from the rows added since ---
# (while an image was being cached every status and metrics scrape looked
# each of its chunks up again: 10-12 ms of the control thread per call for
# the benchmark's 1 GiB casync image, seconds for a large one). What this
# caller's reports cost (status --json: report, since the mount): counts
# (images counted afresh), lookups (chunks looked up), rows (rows of the
# index read). An image is counted afresh the first time and after rows
# were removed (cache gc by another process), not while the cache is
# unchanged or only gains rows (the read after it). A fresh count looks
# every data chunk up, or, where the index has at most a quarter as many
# rows as the image has chunks, reads the index's rows instead.
rep() { json_field "$(cat "$1")" report "$2"; }
expect_eq "the first status: counted" 1 "$(rep status.json counts)"
expect_eq "... every data chunk looked up" "$DATA_CHUNKS" "$(rep status.json lookups)"
expect_eq "the status with the cache unchanged: not counted again" 1 "$(rep status2.json counts)"
expect_eq "... no lookup" "$DATA_CHUNKS" "$(rep status2.json lookups)"
expect_eq "the status after cache gc: counted again" 2 "$(rep status3.json counts)"
expect_eq "... from the emptied index's rows (none)" "$DATA_CHUNKS 0" "$(rep status3.json lookups) $(rep status3.json rows)"
expect_eq "the statuses while the read cached the chunks again: not counted again" 2 "$(rep status4.json counts)"
expect_eq "... no lookup" "$DATA_CHUNKS" "$(rep status4.json lookups)"
# a fresh mount (the chunks in the first one's memory are not cached again)
# on the emptied cache: its first status counts (0.0%), then part of the
# image is read (about a third: 28 of 80 MiB, then what readahead adds),
# and the cache is left to settle
lazyimg_umount "$M"
"$LAZYIMG" cache gc --cache-dir "$W/cache1" --size 0 >gc.out 2>&1 || fail "lazyimg cache gc failed" "$(cat gc.out)"
# (no boot profile: its replay would fetch the whole image read before)
lazyimg_mount "$S" "$M" --cache-dir "$W/cache1" --no-boot-profile
stat "$IMG" >/dev/null
"$LAZYIMG" status --json "$M" >status5.json || fail "status of the emptied cache failed"
expect_eq "status of the emptied cache" 0.0 "$(pct status5.json)"
expect_eq "... counted" 1 "$(rep status5.json counts)"
dd if="$IMG" of=/dev/null bs=1M count=28 status=none || fail "the partial read failed"
# (settled: every chunk loaded is committed, twice in a row: the writer
# commits 2 s after a batch's first file at most)
prev=-1
for _ in $(seq 60); do
    sleep 0.5
    st=$("$LAZYIMG" status --json "$M") || fail "status after the partial read failed"
    n=$(json_field "$st" cache disk inserts)
    [[ $n == "$(json_field "$st" cache loads)" && $n == "$prev" ]] && break
    prev=$n
done
"$LAZYIMG" status --json "$M" >status6.json || fail "status after the partial read failed"
p6=$(pct status6.json)
[[ $p6 != 0.0 && $p6 != 100.0 ]] || fail "the partial read cached $p6% of the image (the test needs part of it)" "$(cat status6.json)"
expect_eq "the statuses after the partial read: not counted again" 1 "$(rep status6.json counts)"
expect_eq "... no lookup" 0 "$(rep status6.json lookups)"
rows6=$(rep status6.json rows)
entries6=$(json_field "$(cat status6.json)" cache disk entries)
expect_eq "... the rows added read once" "$entries6" "$rows6"
first_pid=$MOUNT_PID
lazyimg_mount "$S" "$W/m2" --cache-dir "$W/cache1"
stat "$W/m2/vm/100/$T1/drive-scsi0.img" >/dev/null
"$LAZYIMG" status --json "$W/m2" >other.json || fail "status of the second mount failed"
expect_eq "another daemon's first count of the partly cached image" "$p6" "$(pct other.json)"
expect_eq "... looked every data chunk up ($entries6 rows: more than a quarter of its chunks)" "$DATA_CHUNKS" "$(rep other.json lookups)"
lazyimg_umount "$W/m2"
# an index with at most a quarter as many rows as the image has chunks
# (cache gc down to 8 MiB: two chunks of 4 MiB): read instead of looked up,
# and the count is the bytes of those chunks (every chunk is the image's,
# none twice in it)
"$LAZYIMG" cache gc --cache-dir "$W/cache1" --size 8M >gc.out 2>&1 || fail "lazyimg cache gc --size 8M failed" "$(cat gc.out)"
lazyimg_mount "$S" "$W/m2" --cache-dir "$W/cache1"
stat "$W/m2/vm/100/$T1/drive-scsi0.img" >/dev/null
"$LAZYIMG" status --json "$W/m2" >few.json || fail "status of the third mount failed"
few=$(json_field "$(cat few.json)" cache disk entries)
((few > 0 && few * 4 <= DATA_CHUNKS + 2)) || fail "cache gc --size 8M left $few entries (the test needs a few)"
expect_eq "a count from the index's $few rows: the bytes of those chunks" "$((few << 22))" "$(json_field "$(cat few.json)" images 0 cached_bytes)"
expect_eq "... read, none looked up" "$few 0" "$(rep few.json rows) $(rep few.json lookups)"
lazyimg_umount "$W/m2"
MOUNT_PID=$first_pid
ok "lazyimg status counts afresh only the first time and after rows were removed ($DATA_CHUNKS lookups, or the index's rows where it has few); rows added (a read caching ${p6}% of the image) read from the index once, no lookup, the same figure as another daemon's count; $few rows read instead of $DATA_CHUNKS lookups"

# --- two daemons fill one cache at once, one's status polled meanwhile ---
# (each commits a batch up to 2 s after taking its first chunk, so one's rows
# are often created before the other's newest committed row: the first such
# batch makes the polled status count afresh once, then read a window of
# recent rows again; before, about every other batch did). The polled
# daemon's figure is right once both fills are done, as a fresh daemon's,
# and it counted afresh at most three times in all its calls. (At this size
# only a few batches interleave: 1 or 2 counts with the window and without
# it, so this checks the figure on that path, not that the window is used;
# unit test_added_since does.)
make_image b.raw rand:40M,zero:4M,rand:40M 11
S2=$W/store2
new_store "$S2"
mkpbs --chunk-size 4M --time $T1 "$S2" drive-scsi0.img=b.raw >/dev/null
rm -rf "$W/cache2"
lazyimg_umount "$M"
lazyimg_mount "$S" "$M" --cache-dir "$W/cache2" --no-boot-profile
first_pid=$MOUNT_PID
lazyimg_mount "$S2" "$W/m2" --cache-dir "$W/cache2" --no-boot-profile
stat "$IMG" >/dev/null
cat "$IMG" >/dev/null &
r1=$!
cat "$W/m2/vm/100/$T1/drive-scsi0.img" >/dev/null &
r2=$!
calls=0
while kill -0 "$r1" 2>/dev/null || kill -0 "$r2" 2>/dev/null; do
    "$LAZYIMG" status --json "$M" >two.json || fail "status while two daemons fill the cache failed"
    calls=$((calls + 1))
    sleep 0.05
done
wait "$r1" || fail "the read through the first daemon failed"
wait "$r2" || fail "the read through the second daemon failed"
for _ in $(seq 40); do
    "$LAZYIMG" status --json "$M" >two.json || fail "status after the two fills failed"
    calls=$((calls + 1))
    [[ $(pct two.json) == 100.0 ]] && break
    sleep 0.2
done
expect_eq "the polled daemon's figure after both fills" 100.0 "$(pct two.json)"
counts=$(rep two.json counts)
((counts <= 3)) || fail "the polled daemon counted afresh $counts times in $calls status calls while another daemon filled the cache"
lazyimg_umount "$W/m2"
lazyimg_mount "$S2" "$W/m2" --cache-dir "$W/cache2"
stat "$W/m2/vm/100/$T1/drive-scsi0.img" >/dev/null
"$LAZYIMG" status --json "$W/m2" >two-fresh.json || fail "status of a fresh daemon failed"
expect_eq "a fresh daemon's count of the other image" 100.0 "$(pct two-fresh.json)"
lazyimg_umount "$W/m2"
MOUNT_PID=$first_pid
ok "two daemons filling one cache: the polled one counted afresh $counts times in $calls status calls, its figure 100.0% as a fresh daemon's"
lazyimg_umount "$M"
