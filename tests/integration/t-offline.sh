#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A mount that survives the store being down. A datastore over nginx is
# mounted once (listings, manifests, indexes and blobs go to the metadata
# cache; one chunk is read), then nginx is stopped and it is mounted again:
# one warning, the same tree, the cached chunk and the config blob read back,
# an uncached range fails with EIO within the deadline, `lazyimg status`
# says offline; nginx started again, the same range reads. --offline never
# contacts the store. A store that is down with nothing cached fails with a
# clear error; a 404 is never mistaken for "down". Then the same for a casync
# repository (.caibx indexes, chunks in default.castr).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 curl casync
. "$T_DIR/lib_remote.sh"
C=$W/cache
T1=2025-03-01T10:00:00Z
T2=2025-03-02T10:00:00Z
make_image a.raw rand:1M,zero:512K,rand:1M 1
make_image ct.raw text:256K,rand:256K 2
printf 'cores: 2\nmemory: 2048\n' >conf
mkpbs --chunk-size 64K --time $T1 "$S" drive-scsi0.img=a.raw qemu-server.conf=conf >/dev/null
mkpbs --chunk-size 64K --type ct --id 200 --time $T2 "$S" root.img=ct.raw >/dev/null
IMG=vm/100/$T1/drive-scsi0.img
SIZE=$(stat -c %s a.raw)
LAST=$((SIZE - 65536)) # the last chunk: never read before the store goes down
# short deadlines: a refused connection fails fast anyway, a lost one must not hang
FAST=(--retries 1 --connect-timeout 2 --fetch-timeout 4 --readahead 0)

tree_of() { (cd "$1" && find . -printf '%y %s %p\n' | sort -k3); }

# mount_capture STORE MNT OPTIONS...: mounts, keeps the command's output in OUT
OUT=""
mount_capture() {
    local store=$1 mnt=$2
    shift 2
    mkdir -p "$mnt"
    T_MOUNTS+=("$mnt")
    OUT=$("$LAZYIMG" mount "$@" "$store" "$mnt" 2>&1) || fail "lazyimg mount $* $store failed" "$OUT"
    mountpoint -q "$mnt" || fail "lazyimg mount returned before $mnt was mounted"
    T_PIDS+=("$(daemon_pid "$mnt")")
}

# timed_read FILE OFF LEN OUT: reads with O_DIRECT; sets RC and MS (elapsed)
timed_read() {
    local t0 t1
    t0=$(date +%s%N)
    RC=0
    dd if="$1" of="$4" iflag=skip_bytes,count_bytes,direct skip="$2" count="$3" bs=64K \
        status=none 2>"$4.err" || RC=$?
    t1=$(date +%s%N)
    MS=$(((t1 - t0) / 1000000))
}

# --- 1. online: the first mount fills the caches ---------------------------------
start_nginx --autoindex json "$S"
URL=$NGINX_URL
lazyimg_mount "$URL" "$M" --cache-dir "$C" "${FAST[@]}"
tree_of "$M" >tree.online
cmp "$M/vm/100/$T1/qemu-server.conf" conf || fail "online: the config blob differs"
read_range "$M/$IMG" 0 65536 direct >first.got
cmp -s first.got <(head -c 65536 a.raw) || fail "online: the first chunk differs"
lazyimg_umount "$M"
[[ -d $C/meta && -n $(find "$C/meta" -type f) ]] || fail "no metadata cache below $C/meta after a mount"
if grep -rqs -- "$URL" "$C/meta"; then fail "the metadata cache holds the store URL in clear"; fi
ok "online mount: tree, config blob and the first chunk read; metadata cached in $C/meta"

# --- 2. nginx down: mount from the cached catalog --------------------------------
stop_nginx
mount_capture "$URL" "$M" --cache-dir "$C" "${FAST[@]}"
grep -q "unreachable" <<<"$OUT" && grep -q "cached catalog of 20[0-9-]* [0-9:]* (2 snapshots)" <<<"$OUT" &&
    grep -q "EIO" <<<"$OUT" || fail "store down: the mount does not warn as expected" "$OUT"
[[ $(wc -l <<<"$OUT") == 1 ]] || fail "store down: more than one line of warnings" "$OUT"
ok "store down: one warning: $OUT"
tree_of "$M" >tree.down
expect_same_file "store down: the tree (names, types, sizes) equals the online one" tree.online tree.down
cmp "$M/vm/100/$T1/qemu-server.conf" conf || fail "store down: the config blob differs"
read_range "$M/$IMG" 0 65536 direct >first.down
cmp -s first.down <(head -c 65536 a.raw) || fail "store down: the cached first chunk reads wrong"
read_range "$M/$IMG" $((1 << 20)) $((512 << 10)) direct >hole.down
cmp -s hole.down <(head -c $((512 << 10)) /dev/zero) || fail "store down: the hole reads wrong"
ok "store down: the config blob, the cached chunk and the hole read correctly"
timed_read "$M/$IMG" $LAST 65536 last.down
((RC != 0)) || fail "store down: a read of an uncached chunk succeeded"
grep -q "Input/output error" last.down.err || fail "store down: the uncached read did not fail with EIO" "$(cat last.down.err)"
((MS < 8000)) || fail "store down: the uncached read took $MS ms to fail (deadline 8 s)"
ok "store down: an uncached chunk fails with EIO after $MS ms"
"$LAZYIMG" status "$M" >st.txt 2>&1 || fail "lazyimg status failed" "$(cat st.txt)"
grep -q "^mode: *offline: the store was unreachable at mount" st.txt || fail "status does not say offline" "$(cat st.txt)"
"$LAZYIMG" status --json "$M" >st.json 2>&1 || fail "lazyimg status --json failed" "$(cat st.json)"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["offline"] is True and "unreachable" in s["offline_reason"], s' st.json ||
    fail "status --json: offline is not true" "$(cat st.json)"
ok "status says offline (text and --json)"
# the store is back: the same range reads from it
restart_nginx
before=$(nginx_count "" '/\.chunks/' 200)
read_range "$M/$IMG" $LAST 65536 direct >last.back
cmp -s last.back <(tail -c 65536 a.raw) || fail "store back: the chunk that failed before does not read right"
expect_eq "store back: the chunk was fetched from nginx" $((before + 1)) "$(nginx_count "" '/\.chunks/' 200)"
ok "store back: later reads use it"
lazyimg_umount "$M"

# --- 3. --offline: the store is never contacted ----------------------------------
before=$(wc -l <"$NGINX_LOG")
mount_capture "$URL" "$M" --cache-dir "$C" --offline "${FAST[@]}"
grep -q -- "--offline: mounting from the cached catalog" <<<"$OUT" || fail "--offline: no notice" "$OUT"
tree_of "$M" >tree.offline
expect_same_file "--offline: the tree equals the online one" tree.online tree.offline
read_range "$M/$IMG" 0 65536 direct >first.off
cmp -s first.off <(head -c 65536 a.raw) || fail "--offline: the cached chunk reads wrong"
timed_read "$M/$IMG" $((LAST - 65536)) 65536 mid.off
((RC != 0)) && grep -q "Input/output error" mid.off.err || fail "--offline: an uncached chunk did not fail with EIO" "$(cat mid.off.err)"
((MS < 2000)) || fail "--offline: the uncached read took $MS ms to fail"
ok "--offline: cached chunk reads, uncached one fails with EIO after $MS ms"
"$LAZYIMG" status "$M" | grep -q "^mode: *offline: --offline" || fail "--offline: status does not say offline"
lazyimg_umount "$M"
expect_eq "--offline: no request reached nginx" "$before" "$(wc -l <"$NGINX_LOG")"

# --- 4. an online mount is not offline; a 404 is not "down" ----------------------
lazyimg_mount "$URL" "$M" --cache-dir "$C" "${FAST[@]}"
"$LAZYIMG" status --json "$M" >st2.json
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["offline"] is False, s' st2.json ||
    fail "online mount: status --json says offline" "$(cat st2.json)"
"$LAZYIMG" status "$M" | grep -q "^mode:" && fail "online mount: status prints a mode line"
ok "online mount: status is not offline"
lazyimg_umount "$M"
rc=0
out=$("$LAZYIMG" mount --cache-dir "$C" "$URL/nonexistent" "$M" 2>&1) || rc=$?
! mountpoint -q "$M" || { fusermount3 -u "$M"; fail "a 404 store was mounted"; }
((rc == 1)) && ! grep -q "cached catalog" <<<"$out" || fail "404 store: exit $rc, expected 1 without a cache fallback" "$out"
ok "a store answering 404 fails as before: $out"

# --- a store that restarts while mounted: its reads wait for it ------------------
# (--retries 1: the attempts alone were spent 0.1 s after the refusals began,
# and a read during a 3 s restart failed; a store unavailable is now waited for
# up to --fetch-timeout, here 4 s)
lazyimg_mount "$URL" "$M" --no-cache "${FAST[@]}"
head -c 1 "$M/$IMG" >/dev/null # its index is loaded: a chunk's read waits in the fetcher pool
stop_nginx
dd if="$M/$IMG" of=restart.out iflag=skip_bytes,count_bytes,direct skip=$LAST count=65536 bs=64K \
    status=none 2>restart.err &
reader=$!
# ... and this image's index is not: its open waits in the index load
CT=ct/200/$T2/root.img
cat "$M/$CT" >restart.ct 2>restart.ct.err &
opener=$!
sleep 3
restart_nginx
rc=0
wait "$reader" || rc=$?
((rc == 0)) || fail "a chunk's read during a 3 s restart of the store failed (exit $rc)" "$(cat restart.err)"
cmp -s restart.out <(tail -c 65536 a.raw) || fail "a chunk's read during a 3 s restart of the store: wrong bytes"
rc=0
wait "$opener" || rc=$?
((rc == 0)) || fail "an image opened during a 3 s restart of the store failed (exit $rc)" "$(cat restart.ct.err)"
cmp -s restart.ct ct.raw || fail "an image opened during a 3 s restart of the store: wrong bytes"
stop_nginx
timed_read "$M/$IMG" $((LAST - 65536)) 65536 gone.out
((RC != 0)) && grep -q "Input/output error" gone.out.err || fail "a store gone for good: the read did not fail with EIO" "$(cat gone.out.err)"
((MS >= 3500 && MS < 8000)) || fail "a store gone for good: EIO after $MS ms (expected after --fetch-timeout 4 s, and within 8 s)"
first=$MS
# the wait is the store's, not each read's: the next read fails after its attempts
timed_read "$M/$IMG" $((LAST - 131072)) 65536 gone2.out
((RC != 0)) && grep -q "Input/output error" gone2.out.err || fail "a store gone for good, the next read: no EIO" "$(cat gone2.out.err)"
((MS < 2000)) || fail "a store gone for good, the next read: EIO after $MS ms (the store's wait was over)"
next=$MS
# ... and for every kind of request: a blob never read by this mount (its
# load is not the fetcher pool's) fails after its attempts too, without an
# outage wait of its own (before: --fetch-timeout again, from its own first
# refusal)
t0=$(date +%s%N)
rc=0
cat "$M/vm/100/$T1/qemu-server.conf" >gone3.out 2>gone3.err || rc=$?
MS=$((($(date +%s%N) - t0) / 1000000))
((rc != 0)) && grep -q "Input/output error" gone3.err ||
    fail "a store gone for good, a blob not read before: no EIO (exit $rc)" "$(cat gone3.err)"
((MS < 2500)) ||
    fail "a store gone for good, a blob not read before: EIO after $MS ms (a wait of its own for the outage the chunk reads had waited out)"
ok "a store that restarts for 3 s: a chunk's read and an image's open wait and succeed; one gone for good: EIO after $first ms, the next read after $next ms, a blob's load after $MS ms"
# ... until it answers again, whatever the answer: a chunk sent damaged (HTTP
# 200) ends the outage as a good one would, so that when the store goes away
# once more a read waits for it again (the fetcher pool took only a chunk
# that verified, or a 404, for an answer: the old outage stood, and the read
# failed after its attempts)
FIDX=$S/vm/100/$T1/drive-scsi0.img.fidx
bad=$(chunk_path "$S" "$(fidx_digest "$FIDX" 36)")
cp "$bad" bad.keep
printf 'damaged' | dd of="$bad" bs=1 seek=100 conv=notrunc status=none
restart_nginx
timed_read "$M/$IMG" $((36 * 65536)) 65536 damaged.out
((RC != 0)) && grep -q "Input/output error" damaged.out.err ||
    fail "a damaged chunk from the store back again: no EIO" "$(cat damaged.out.err)"
cp bad.keep "$bad"
stop_nginx
dd if="$M/$IMG" of=again.out iflag=skip_bytes,count_bytes,direct skip=$((35 * 65536)) count=65536 bs=64K \
    status=none 2>again.err &
reader=$!
sleep 1.5
restart_nginx
rc=0
wait "$reader" || rc=$?
((rc == 0)) ||
    fail "a store that answered (a damaged chunk), then went away for 1.5 s: a read meanwhile did not wait for it (exit $rc)" "$(cat again.err)"
cmp -s again.out <(head -c $((36 * 65536)) a.raw | tail -c 65536) ||
    fail "a store that answered, then went away for 1.5 s: the read meanwhile got wrong bytes"
ok "a store that answered (a damaged chunk: EIO) ends its outage: gone again for 1.5 s, a read waits for it and succeeds"
lazyimg_umount "$M"

# --- 5. down, nothing cached: a clear error --------------------------------------
stop_nginx
rc=0
out=$("$LAZYIMG" mount --cache-dir "$W/cache-empty" "${FAST[@]}" "$URL" "$M" 2>&1) || rc=$?
! mountpoint -q "$M" || { fusermount3 -u "$M"; fail "a down store with an empty cache was mounted"; }
((rc == 1)) || fail "down store, empty cache: exit $rc, expected 1" "$out"
grep -q "no cached listing of the store" <<<"$out" || fail "down store, empty cache: the error does not say nothing is cached" "$out"
ok "down store, empty cache: mount fails with: $(tail -1 <<<"$out")"
rc=0
out=$("$LAZYIMG" mount --offline --no-cache "$URL" "$M" 2>&1) || rc=$?
((rc == 2)) || fail "--offline --no-cache: exit $rc, expected 2" "$out"
ok "--offline --no-cache is refused: $out"

# --- 6. a casync repository (indexes, default.castr) ----------------------------
SRV=$W/srv
R=$SRV/repo
mkdir -p "$R/releases"
make_image c.raw rand:700K,zero:300K,rand:500K 7
out=$(casync make --store="$R/default.castr" "$R/releases/c.img.caibx" c.raw 2>&1) || fail "casync make failed" "$out"
start_nginx --autoindex json --name casync "$SRV"
CURL=$(nginx_url casync)/repo
CC=$W/cache-casync
lazyimg_mount "$CURL" "$M" --cache-dir "$CC" "${FAST[@]}"
tree_of "$M" >ctree.online
read_range "$M/releases/c.img" 0 4096 direct >c.first
lazyimg_umount "$M"
stop_nginx casync
mount_capture "$CURL" "$M" --cache-dir "$CC" "${FAST[@]}"
grep -q "unreachable.*cached catalog.*(1 indexes)" <<<"$OUT" || fail "casync, store down: no warning" "$OUT"
tree_of "$M" >ctree.down
expect_same_file "casync, store down: the tree equals the online one" ctree.online ctree.down
read_range "$M/releases/c.img" 0 4096 direct | cmp -s - <(head -c 4096 c.raw) ||
    fail "casync, store down: the cached range reads wrong"
timed_read "$M/releases/c.img" $(((1500 << 10) - 4096)) 4096 c.last
((RC != 0)) && grep -q "Input/output error" c.last.err || fail "casync, store down: an uncached range did not fail with EIO" "$(cat c.last.err)"
ok "casync, store down: tree and cached range read, uncached range EIO after $MS ms"
restart_nginx casync
read_range "$M/releases/c.img" $(((1500 << 10) - 4096)) 4096 direct | cmp -s - <(tail -c 4096 c.raw) ||
    fail "casync, store back: the range does not read right"
ok "casync, store back: the range reads"
lazyimg_umount "$M"
# --- a local store is keyed by where it is, not by how it was typed ---------
# mounted as "." from inside it, then --offline by its absolute path through a
# symlink: the same cached catalog (before, "." and the path were two stores)
CL=$W/cache-local
ln -s "$S" "$W/store-link"
mkdir -p "$W/ml"
T_MOUNTS+=("$W/ml")
out=$(cd "$S" && "$LAZYIMG" mount --cache-dir "$CL" . "$W/ml" 2>&1) || fail "mount . failed" "$out"
T_PIDS+=("$(daemon_pid "$W/ml")")
cmp -s <(head -c 65536 "$W/ml/$IMG") <(head -c 65536 a.raw) || fail "local: the first chunk reads wrong"
lazyimg_umount "$W/ml"
mount_capture "$W/store-link" "$W/ml" --cache-dir "$CL" --offline
cmp -s <(head -c 65536 "$W/ml/$IMG") <(head -c 65536 a.raw) ||
    fail "local --offline by another spelling: the cached chunk reads wrong"
lazyimg_umount "$W/ml"
ok "a local store mounted as '.' is found again --offline through a symlink to it"
# --- lazyimg cache stats and clear count and remove the metadata too --------
out=$("$LAZYIMG" cache stats --cache-dir "$CL") || fail "cache stats failed" "$out"
grep -q "^metadata (.*): [1-9][0-9]* entries of 1 stores, .* on disk (outside --cache-size)" <<<"$out" ||
    fail "cache stats: no metadata line" "$out"
n=$("$LAZYIMG" cache stats --json --cache-dir "$CL" | python3 -c 'import json, sys; print(json.load(sys.stdin)["meta"]["entries"])')
((n > 0)) || fail "cache stats --json: meta.entries is $n"
out=$("$LAZYIMG" cache clear --cache-dir "$CL") || fail "cache clear failed" "$out"
grep -q "cleared .* (and $n metadata entries)" <<<"$out" || fail "cache clear: expected $n metadata entries" "$out"
[[ -z $(find "$CL/meta" -type f) ]] || fail "cache clear left files in meta/" "$(find "$CL/meta" | head)"
RC=0
out=$("$LAZYIMG" mount --cache-dir "$CL" --offline "$S" "$W/ml" 2>&1) || RC=$?
! mountpoint -q "$W/ml" || { fusermount3 -u "$W/ml"; fail "--offline after cache clear: mounted"; }
((RC != 0)) && grep -q "no cached listing of the store" <<<"$out" || fail "--offline after cache clear: expected 'no cached listing of the store'" "$out"
# said once, the location once (the cache's miss repeated it, in a line of its own)
[[ $(wc -l <<<"$out") == 1 && $(grep -o -F "$S" <<<"$out" | wc -l) == 1 ]] ||
    fail "--offline after cache clear: the error is not one line naming the store once" "$out"
ok "cache stats counts the metadata ($n entries), cache clear removes it (--offline then has nothing)"
# a clear while a daemon runs leaves its store's directory, which it goes on
# writing to (it wrote into a removed one for the rest of its mount)
mount_capture "$S" "$W/ml" --cache-dir "$CL"
"$LAZYIMG" cache clear --cache-dir "$CL" >/dev/null || fail "cache clear with a daemon running failed"
cmp -s "$W/ml/vm/100/$T1/qemu-server.conf" conf || fail "after a clear: the config blob reads wrong"
[[ -n $(find "$CL/meta" -type f) ]] || fail "after a clear with a daemon running: it cached no metadata since"
lazyimg_umount "$W/ml"
ok "cache clear while a daemon runs: it goes on caching metadata"
# --- a store that accepts and never answers: known after one deadline -------
# (the mount's look at the store retries a server's error answer, not a
# missing answer: three deadlines of a hung server before the mount failed
# or came from the cache)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept())' >hung.port &
T_PIDS+=($!)
for _ in $(seq 50); do [[ -s hung.port ]] && break; sleep 0.1; done
t0=$(date +%s%N)
RC=0
out=$("$LAZYIMG" mount --no-cache "${FAST[@]}" "http://127.0.0.1:$(cat hung.port)/store" "$W/ml" 2>&1) || RC=$?
ms=$((($(date +%s%N) - t0) / 1000000))
! mountpoint -q "$W/ml" || { fusermount3 -u "$W/ml"; fail "a hung store: mounted" "$out"; }
((RC != 0)) || fail "a hung store: the mount succeeded" "$out"
((ms < 4000 * 3 / 2 + 2000)) || fail "a hung store (--fetch-timeout 4): the mount failed after $ms ms, not after one deadline" "$out"
ok "a store that never answers: the mount fails after one deadline ($ms ms): $out"
echo "# $T_CHECKS checks passed"
