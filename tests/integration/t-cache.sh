#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The persistent chunk cache: second reads never touch the store, a new
# snapshot fetches only its new chunks, the budget holds, kill -9 never leaves
# wrong bytes and the next daemon removes what it left, a full cache
# filesystem never fails reads, two daemons share one cache, bad cache
# entries are dropped and fetched again, and the CLI.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 strace
C=$W/cache
T1=2025-08-01T00:00:00Z
T2=2025-08-02T00:00:00Z

# a 24 MiB image of 1 MiB chunks (random, some zero), and a second version of
# it with 2 of its 20 data chunks changed (90% shared)
make_image a.raw rand:12M,zero:4M,rand:8M 1
cp a.raw b.raw
dd if=/dev/urandom of=b.raw bs=1M seek=3 count=1 conv=notrunc status=none
dd if=/dev/urandom of=b.raw bs=1M seek=20 count=1 conv=notrunc status=none
mkpbs --chunk-size 1M --time $T1 "$S" drive-scsi0.img=a.raw >/dev/null
mkpbs --chunk-size 1M --time $T2 "$S" drive-scsi0.img=b.raw >/dev/null
IMG1=$M/vm/100/$T1/drive-scsi0.img
IMG2=$M/vm/100/$T2/drive-scsi0.img

# store_loads LOG: "chunks loaded from the store N" from a foreground daemon's log
store_loads() {
    sed -n 's/.*chunks loaded from the store \([0-9]*\).*/\1/p' "$1" | tail -1
}

# --- first read fills the cache; the second never opens the store -----------
lazyimg_mount "$S" "$M" --cache-dir "$C"
cmp "$IMG1" a.raw || fail "first read through the cache differs from the source"
ok "first (cold) read equals the source"
lazyimg_umount "$M"
[[ -f $C/index.sqlite ]] || fail "no cache index at $C/index.sqlite"
n=$(find "$C/data" -type f | wc -l)
expect_eq "the cache holds the 20 data chunks of snapshot 1 (no zero chunk)" 20 "$n"

mv "$S/.chunks" "$S/.chunks.away"
mkdir "$S/.chunks"
lazyimg_mount "$S" "$M" --cache-dir "$C"
cmp "$IMG1" a.raw || fail "second read with the store's chunks gone differs (not served from the cache?)"
ok "second read with every store chunk moved away equals the source: served from the cache"
lazyimg_umount "$M"
rmdir "$S/.chunks"
mv "$S/.chunks.away" "$S/.chunks"

# --- the next day's snapshot fetches only its new chunks ---------------------
lazyimg_mount_fg "$S" "$M" snap2.log -- --cache-dir "$C"
cmp "$IMG2" b.raw || fail "snapshot 2 through the cache differs from its source"
lazyimg_umount "$M"
expect_eq "snapshot 2 (90% shared) loaded only its 2 new chunks from the store" 2 "$(store_loads snap2.log)"

# --- a damaged cache entry is dropped and fetched again, never served --------
f=$(find "$C/data" -type f | head -1)
printf '\x5a' | dd of="$f" bs=1 seek=1000 conv=notrunc status=none
lazyimg_mount_fg "$S" "$M" bad.log -- --cache-dir "$C"
cmp "$IMG1" a.raw || fail "a damaged cache entry was served"
cmp "$IMG2" b.raw || fail "snapshot 2 wrong after the damaged cache entry"
lazyimg_umount "$M"
grep -q "bad 1" bad.log || fail "the daemon did not count the bad cache entry" "$(cat bad.log)"
expect_eq "the damaged entry was fetched again from the store (one load)" 1 "$(store_loads bad.log)"

# --- lazyimg cache verify / stats / gc / clear -------------------------------
out=$("$LAZYIMG" cache verify --cache-dir "$C") || fail "cache verify failed on a good cache" "$out"
grep -q "checked 22 entries, 0 bad" <<<"$out" || fail "cache verify: unexpected report" "$out"
ok "cache verify: $out"
f=$(find "$C/data" -type f | head -1)
printf '\xa5' | dd of="$f" bs=1 seek=5 conv=notrunc status=none
rc=0
out=$("$LAZYIMG" cache verify --cache-dir "$C") || rc=$?
((rc == 1)) || fail "cache verify of a damaged entry: exit $rc, expected 1" "$out"
grep -q "bad entry $(basename "$f" | cut -d. -f1)" <<<"$out" || fail "cache verify did not name the bad entry" "$out"
grep -q "checked 22 entries, 1 bad" <<<"$out" || fail "cache verify: unexpected summary" "$out"
[[ ! -e $f ]] || fail "cache verify left the bad entry's file"
ok "cache verify finds, reports and drops a damaged entry (exit 1)"

"$LAZYIMG" cache stats --json --cache-dir "$C" >stats.json || fail "cache stats --json failed"
python3 - "$S" <<'PY' || fail "cache stats --json is not what was expected" "$(cat stats.json)"
import json, os, sys
st = json.load(open("stats.json"))
assert st["entries"] == 21, st
assert st["bytes_apparent"] == 21 * 1024 * 1024, st
assert st["bytes_allocated"] >= st["bytes_apparent"], st
stores = {s["store"]: s for s in st["stores"]}
s = stores[os.path.realpath(sys.argv[1])]
assert s["misses"] >= 22 and s["hits"] > 0 and s["inserts"] >= 22, s
PY
ok "cache stats --json: 21 entries of 1 MiB, per-store hits/misses/inserts"
"$LAZYIMG" cache stats --cache-dir "$C" | grep -q "21 entries" || fail "cache stats table"
ok "cache stats table"
out=$("$LAZYIMG" cache gc --size 5M --cache-dir "$C") || fail "cache gc failed" "$out"
n=$(find "$C/data" -type f | wc -l)
((n <= 5)) || fail "cache gc --size 5M left $n entries of 1 MiB" "$out"
ok "cache gc --size 5M: $n entries left ($out)"
RC=0
out=$("$LAZYIMG" cache gc --size ' -1' --cache-dir "$C" 2>&1) || RC=$?
expect_eq "cache gc --size ' -1' (a sign after white space) is refused as a usage error" 2 "$RC"
RC=0
out=$("$LAZYIMG" cache clear --cache-dir "$W/typo/cache" 2>&1) || RC=$?
expect_eq "cache clear --cache-dir of a directory that is no cache fails" 1 "$RC"
[[ $out == *"no cache at $W/typo/cache"* ]] || fail "cache clear of no cache: unclear message" "$out"
[[ ! -e $W/typo ]] || fail "cache clear of a mistyped --cache-dir created it"
ok "the cache commands refuse a mistyped --cache-dir (nothing created) and a size with a sign"
"$LAZYIMG" cache clear --cache-dir "$C" >/dev/null || fail "cache clear failed"
expect_eq "cache clear removes every entry" 0 "$(find "$C/data" -type f | wc -l)"

# --- the budget holds under a read larger than it ----------------------------
make_image big.raw rand:48M 7
mkpbs --chunk-size 1M --id 200 --time $T1 "$S" drive-scsi0.img=big.raw >/dev/null
C2=$W/cache-small
lazyimg_mount_fg "$S" "$M" budget.log -- --cache-dir "$C2" --cache-size 16M
cmp "$M/vm/200/$T1/drive-scsi0.img" big.raw || fail "read larger than the cache budget differs"
lazyimg_umount "$M"
# the exit line says why chunks were not cached: the budget, not the filesystem
line=$(grep "not inserted" budget.log) || fail "no disk cache line at exit" "$(cat budget.log)"
[[ $line =~ \(0\ for\ lack\ of\ space\ on\ its\ filesystem,\ ([0-9]+)\ for\ lack\ of\ room\ within\ --cache-size ]] &&
    ((BASH_REMATCH[1] >= 30)) || fail "the exit line does not put the chunks left out on the budget" "$line"
ok "the exit line puts ${BASH_REMATCH[1]} chunks left out on --cache-size"
# allocated bytes of the data files themselves (du would add the fan-out directories)
kb=$(find "$C2/data" -type f -printf '%b\n' | awk '{s += $1} END {print int(s / 2)}')
((kb <= 16 * 1024 && kb > 0)) || fail "cache of budget 16M takes ${kb} KiB of files after a 48 MiB read"
ok "a 48 MiB read with a 16M budget leaves ${kb} KiB of cache files (<= 16384)"

# --- ENOSPC: a full cache filesystem never fails reads -----------------------
C3=$W/cache-tiny
mkdir -p "$C3"
# mode 0700: a tmpfs root is 1777 by default, and a cache others may write is refused
mount -t tmpfs -o size=6M,mode=0700 lazyimg-test "$C3"
add_cleanup "umount -l '$C3'"
lazyimg_mount_fg "$S" "$M" enospc.log -- --cache-dir "$C3" --cache-size 1G
cmp "$M/vm/200/$T1/drive-scsi0.img" big.raw || fail "reads failed or differ with a full cache filesystem"
cmp "$IMG1" a.raw || fail "second image wrong with a full cache filesystem"
lazyimg_umount "$M"
grep -qi "no space" enospc.log || fail "the daemon did not report the full cache filesystem" "$(cat enospc.log)"
ok "cache filesystem full (6M tmpfs): every read correct, reported: $(grep -i -m1 'no space' enospc.log)"
umount "$C3"

# --- two daemons on one cache directory --------------------------------------
S2=$W/store2
new_store "$S2"
mkpbs --chunk-size 1M --id 300 --time $T1 "$S2" drive-scsi0.img=a.raw >/dev/null
C4=$W/cache-shared
lazyimg_mount "$S" "$M" --cache-dir "$C4"
lazyimg_mount "$S2" "$W/mnt2" --cache-dir "$C4"
pids=()
cat "$IMG1" >r1.out & pids+=($!)
cat "$M/vm/200/$T1/drive-scsi0.img" >r2.out & pids+=($!)
cat "$W/mnt2/vm/300/$T1/drive-scsi0.img" >r3.out & pids+=($!)
cat "$IMG2" >r4.out & pids+=($!)
for p in "${pids[@]}"; do wait "$p" || fail "a reader failed while two daemons shared the cache"; done
cmp r1.out a.raw && cmp r2.out big.raw && cmp r3.out a.raw && cmp r4.out b.raw ||
    fail "wrong bytes while two daemons shared the cache"
ok "two daemons reading at once through one cache directory: all bytes right"
lazyimg_umount "$W/mnt2"
lazyimg_umount "$M"
out=$("$LAZYIMG" cache verify --cache-dir "$C4") || fail "cache verify after two daemons" "$out"
# a.raw's 20 chunks are stored once for both stores; + 48 of big.raw + 2 new of b.raw
grep -q "checked 70 entries, 0 bad" <<<"$out" || fail "shared cache: expected 70 distinct entries" "$out"
ok "shared cache: chunks common to both stores stored once ($out)"

# --- two daemons filling one small cache: the budget holds once they commit ---
# Each daemon holds the budget against what is committed, so two cold reads
# at once commit about a budget each; the excess goes at the next commit,
# although every entry is younger than the minute that protects a burst.
C7=$W/cache-shared-small
lazyimg_mount "$S" "$M" --cache-dir "$C7" --cache-size 16M
lazyimg_mount "$S2" "$W/mnt2" --cache-dir "$C7" --cache-size 16M
cat "$M/vm/200/$T1/drive-scsi0.img" >r1.out &
p1=$!
cat "$W/mnt2/vm/300/$T1/drive-scsi0.img" >r2.out &
p2=$!
wait "$p1" && wait "$p2" || fail "a reader failed while two daemons filled one small cache"
cmp r1.out big.raw && cmp r2.out a.raw || fail "wrong bytes while two daemons filled one small cache"
lazyimg_umount "$W/mnt2"
lazyimg_umount "$M"
kb=$(find "$C7/data" "$C7/packs" -type f -printf '%b\n' 2>/dev/null | awk '{s += $1} END {print int(s / 2)}')
((kb <= 16 * 1024 && kb >= 8 * 1024)) ||
    fail "two daemons sharing --cache-size 16M left ${kb} KiB of cache files (expected 8-16 MiB)"
ok "two daemons filling one 16M cache at once left ${kb} KiB of cache files (<= 16384)"

# --- kill -9 during cold reads: never wrong bytes after a restart -------------
# (LAZYIMG_KILL_ROUNDS=N for a longer soak; CI runs 6)
C5=$W/cache-kill
ROUNDS=${LAZYIMG_KILL_ROUNDS:-6}
for ((i = 0; i < ROUNDS; i++)); do
    # keep about half of what the crashes left, so each read is partly cold
    ((i == 0)) || "$LAZYIMG" cache gc --size 24M --cache-dir "$C5" >/dev/null ||
        fail "cache gc after a crash failed"
    lazyimg_mount "$S" "$M" --cache-dir "$C5"
    pid=$MOUNT_PID
    cat "$M/vm/200/$T1/drive-scsi0.img" >/dev/null 2>&1 &
    reader=$!
    sleep "0.0$((RANDOM % 9 + 1))"
    kill -KILL "$pid"
    wait "$reader" 2>/dev/null || true
    fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M"
    wait_pid_exit "$pid" 5 || fail "killed daemon still there"
done
ok "killed the daemon with SIGKILL during $ROUNDS cold reads"
lazyimg_mount "$S" "$M" --cache-dir "$C5"
cmp "$M/vm/200/$T1/drive-scsi0.img" big.raw || fail "wrong bytes after kill -9 restarts"
lazyimg_umount "$M"
out=$("$LAZYIMG" cache verify --cache-dir "$C5") || fail "cache verify after kill -9 found bad entries" "$out"
grep -q " 0 bad" <<<"$out" || fail "cache verify after kill -9" "$out"
ok "after $ROUNDS kill -9: the image reads right and cache verify says: $out"

# --- what a killed daemon left, the next daemon removes ------------------------
# A cold read, then kill -9 before its batch is committed (2 s): the written
# chunks stay under tmp/, counted by no budget. The next daemon removes them
# once they are a minute old (a younger one may be a live writer's in another
# PID namespace): their age is set back here instead of waiting, half of
# them to two minutes (removed at start), the others to 55 s (kept at start,
# removed when a minute old: the daemon tidies again then, not 10 minutes
# later; on a small cache filesystem they kept it full that long).
C6=$W/cache-tidy
lazyimg_mount "$S" "$M" --cache-dir "$C6"
pid=$MOUNT_PID
cat "$M/vm/200/$T1/drive-scsi0.img" >/dev/null
kill -KILL "$pid"
fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M"
wait_pid_exit "$pid" 5 || fail "killed daemon still there"
left=$(find "$C6/tmp" -type f | wc -l)
kb=$(du -sk "$C6" | cut -f1)
((left > 1)) || fail "fewer than 2 temp files after kill -9 during a cold read (the test needs some)"
mapfile -t tmps < <(find "$C6/tmp" -type f | sort)
old=$((left / 2))
touch -d '2 minutes ago' "${tmps[@]:0:old}"
touch -d '55 seconds ago' "${tmps[@]:old}"
t0=$EPOCHREALTIME
lazyimg_mount_fg "$S" "$M" tidy.log -- --cache-dir "$C6"
for ((i = 0; i < 300; i++)); do
    [[ -z $(find "$C6/tmp" -type f) ]] && break
    sleep 0.05
done
took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
[[ -z $(find "$C6/tmp" -type f) ]] || fail "the next daemon left the killed one's temp files" "$(ls "$C6/tmp")"
removed=$(sed -n 's/.*disk cache: removed \([0-9]*\) file(s).*/\1/p' tidy.log | tr '\n' ' ')
[[ $removed == "$old $((left - old)) " ]] ||
    fail "the daemon did not say it removed $old files at start and $((left - old)) later (said: $removed)" \
        "$(cat tidy.log)"
awk -v t="$took" 'BEGIN {exit !(t >= 3)}' || fail "temp files less than a minute old were removed (after $took s)"
kb2=$(du -sk "$C6" | cut -f1)
((kb2 < kb / 2)) || fail "cache directory still ${kb2} KiB after the tidy (${kb} KiB before)"
cmp "$M/vm/200/$T1/drive-scsi0.img" big.raw || fail "wrong bytes after the tidy"
lazyimg_umount "$M"
out=$("$LAZYIMG" cache verify --cache-dir "$C6") || fail "cache verify after the tidy" "$out"
grep -q " 0 bad" <<<"$out" || fail "cache verify after the tidy" "$out"
ok "kill -9 left $left temp files (${kb} KiB in the cache); the next daemon removed them, $old at start and $((left - old)) when a minute old ($took s later; ${kb2} KiB left)"

# --- a mount whose daemon was killed: mounting there again clears it ---------
# (what systemd's Restart=on-failure does after a crash)
lazyimg_mount "$S" "$M" --cache-dir "$C6"
pid=$MOUNT_PID
kill -KILL "$pid"
wait_pid_exit "$pid" 5 || fail "killed daemon still there"
! stat "$M" >/dev/null 2>&1 || fail "test setup: the killed daemon's mount still answers"
out=$("$LAZYIMG" mount --cache-dir "$C6" "$S" "$M" 2>&1) ||
    fail "mount on the dead mount of a killed daemon failed" "$out"
grep -q "the mount there does not answer (its daemon is gone): unmounting it first" <<<"$out" ||
    fail "mount on a dead mount: no warning saying so" "$out"
MOUNT_PID=$(daemon_pid "$M")
T_PIDS+=("$MOUNT_PID")
cmp "$M/vm/200/$T1/drive-scsi0.img" big.raw || fail "wrong bytes after mounting over a dead mount"
[[ $(grep -c " $M fuse.lazyimg " /proc/self/mounts) == 1 ]] ||
    fail "mounting over a dead mount left it underneath" "$(grep " $M " /proc/self/mounts)"
lazyimg_umount "$M"
ok "a killed daemon's dead mount: mounting there again removes it first, then reads right"

# --- a damaged index is replaced, not fatal ------------------------------------
# (the index cut in half, as a crash of a filesystem that lost its tail
# leaves it: every mount, and cache clear, refused the cache until someone
# removed it by hand)
C7=$W/cache-damaged
lazyimg_mount "$S" "$M" --cache-dir "$C7"
cmp "$IMG1" a.raw || fail "damaged index: the first read differs"
lazyimg_umount "$M"
size=$(stat -c %s "$C7/index.sqlite")
truncate -s $((size / 2 + 100)) "$C7/index.sqlite"
lazyimg_mount_fg "$S" "$M" damaged.log -- --cache-dir "$C7"
grep -q "moved aside to $C7/index.sqlite.damaged-[0-9]*-[0-9]* and a new, empty index started" damaged.log ||
    fail "damaged index: the mount does not say it replaced it" "$(cat damaged.log)"
cmp "$IMG1" a.raw || fail "damaged index: the image read after the replacement differs"
lazyimg_umount "$M"
out=$("$LAZYIMG" cache verify --cache-dir "$C7") || fail "damaged index: cache verify after the replacement" "$out"
grep -q " 0 bad" <<<"$out" || fail "damaged index: cache verify after the replacement" "$out"
ok "a damaged index: the mount moves it aside, starts an empty one and reads right; verify: $out"
printf 'not an SQLite database, not at all' >"$C7/index.sqlite"
rm -f "$C7/index.sqlite-wal" "$C7/index.sqlite-shm"
out=$("$LAZYIMG" cache clear --cache-dir "$C7" 2>&1) || fail "cache clear of a cache with a damaged index failed" "$out"
grep -q "moved aside" <<<"$out" || fail "cache clear of a damaged index: not said" "$out"
[[ -z $(find "$C7/data" "$C7/packs" -type f) ]] || fail "cache clear of a damaged index left chunk files"
ok "cache clear of a cache whose index is not a database: $(tail -1 <<<"$out")"

# --- inserts that fail for another reason than space are said --------------
# (an immutable tmp/, where every chunk file starts: the log said nothing
# until the unmount's counts). Under /var/tmp: $W may be a tmpfs, which has
# no immutable attribute.
C8=$(mktemp -d /var/tmp/lazyimg-t-cache-failing.XXXXXX)
add_cleanup "rm -rf '$C8'"
lazyimg_mount "$S" "$M" --cache-dir "$C8"
lazyimg_umount "$M"
if chattr +i "$C8/tmp" 2>/dev/null; then
    add_cleanup "chattr -i '$C8/tmp' 2>/dev/null || true"
    lazyimg_mount_fg "$S" "$M" failing.log -- --cache-dir "$C8"
    cmp "$IMG1" a.raw || fail "failing inserts: the image differs"
    status=$("$LAZYIMG" status --json "$M") || fail "status --json failed" "$status"
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])["cache"]["disk"]
assert d["insert_errors"] > 0 and d["last_insert_error"] == "Operation not permitted", d
' "$status" || fail "failing inserts: status --json does not show them" "$status"
    lazyimg_umount "$M"
    chattr -i "$C8/tmp"
    grep -q "disk cache: chunks are not being cached: Operation not permitted" failing.log ||
        fail "failing inserts: no warning" "$(cat failing.log)"
    grep -q "failed: Operation not permitted)" failing.log ||
        fail "failing inserts: the unmount's counts do not name the error" "$(cat failing.log)"
    ok "inserts failing (immutable tmp/): warned, in status --json, in the unmount's counts; the image reads right"
else
    fail "chattr +i on $C8/tmp failed: the test needs a /var/tmp with the immutable attribute"
fi
