#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Mirrors: two nginx servers with the same datastore; the mount uses the first
# and --mirror the second. The first server is stopped in the middle of a
# read: the read completes with the right bytes from the mirror, and
# `lazyimg status --json` shows the failover and the mirror active. Then
# both servers refuse connections for 0.4 s: the mirror, tried last, is
# retried with backoff until it answers again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 curl timeout
. "$T_DIR/lib_remote.sh"
T1=2025-05-01T00:00:00Z
make_image a.raw rand:24M,zero:4M,rand:4M 1
mkpbs --chunk-size 1M --time $T1 "$S" drive-scsi0.img=a.raw >/dev/null
IMG=$M/vm/100/$T1/drive-scsi0.img

start_nginx --name primary "$S"
start_nginx --name mirror "$S"
# the primary is slowed down (200 ms per answer) so that the read is still
# going when it stops
start_proxy "$(nginx_url primary)" --mode delay --ms 200
PRIMARY=$PROXY_URL
MIRROR=$(nginx_url mirror)

lazyimg_mount "$PRIMARY" "$M" --mirror "$MIRROR" --no-cache --fetch-concurrency 2 --readahead 2 \
    --retries 1 --fetch-timeout 5 --connect-timeout 2
"$LAZYIMG" status --json "$M" >st0.json || fail "lazyimg status --json failed"
python3 - st0.json "$PRIMARY" "$MIRROR" <<'PY' || fail "status --json before the read: stores not as given" "$(cat st0.json)"
import json, sys
st = json.load(open(sys.argv[1]))
loc = [s["location"].rstrip("/") for s in st["stores"]]
assert loc == [sys.argv[2], sys.argv[3]], loc
assert [s["active"] for s in st["stores"]] == [True, False], st["stores"]
assert st["fetch"]["failovers"] == 0, st["fetch"]
PY
ok "status --json: the store first, then the mirror; the store active"

timeout 60 cat "$IMG" >got &
reader=$!
# stop the primary once the read is under way (some chunks already served)
for ((i = 0; i < 100; i++)); do
    (($(nginx_count primary '/\.chunks/[^/]+/' 200) >= 3)) && break
    sleep 0.1
done
((i < 100)) || fail "the read did not get under way within 10 s"
stop_nginx primary
kill_wait "$PROXY_PID" # the primary is gone entirely: connections refused
ok "primary stopped after $(nginx_count primary '/\.chunks/[^/]+/' 200) chunks"
rc=0
wait "$reader" || rc=$?
((rc == 0)) || fail "the read across the failover failed (exit $rc)"
cmp got a.raw || fail "the read across the failover returned wrong bytes"
ok "the read across the failover completed, byte-identical"
n=$(nginx_count mirror '/\.chunks/[^/]+/' 200)
((n > 0)) || fail "no chunk came from the mirror"
ok "$n chunks came from the mirror"

"$LAZYIMG" status --json "$M" >st1.json || fail "lazyimg status --json failed"
python3 - st1.json <<'PY' || fail "status --json after the failover" "$(cat st1.json)"
import json, sys
st = json.load(open(sys.argv[1]))
assert st["fetch"]["failovers"] >= 1, st["fetch"]
assert [s["active"] for s in st["stores"]] == [False, True], st["stores"]
PY
ok "status --json: failovers >= 1 and the mirror active"
cmp "$IMG" a.raw || fail "a second read (mirror only) differs"
ok "a second read, from the mirror only, is byte-identical"
lazyimg_umount "$M"

# --- both stores refusing connections for a moment: the last one tried is
# retried with backoff (as a single store is), not failed at once
restart_nginx primary
lazyimg_mount "$(nginx_url primary)" "$M" --mirror "$MIRROR" --no-cache --readahead 0 \
    --connect-timeout 2
head -c 1 "$IMG" >/dev/null || fail "the image's first byte"
stop_nginx primary
stop_nginx mirror
timeout 60 dd if="$IMG" of=blip.out bs=1M skip=8 count=2 status=none &
reader=$!
sleep 0.4
restart_nginx mirror
rc=0
wait "$reader" || rc=$?
((rc == 0)) || fail "a read while both stores refused connections for 0.4 s failed (exit $rc)"
dd if=a.raw of=blip.want bs=1M skip=8 count=2 status=none
cmp blip.out blip.want || fail "the read across the refusals returned wrong bytes"
ok "both stores refused connections for 0.4 s: the mirror, tried last, was retried until it answered"
lazyimg_umount "$M"

# --- a store that answers 500 while a mirror is left: the mirror answers now --
# (a store unavailable is waited for up to --fetch-timeout only when it is the
# last one to try: here 15 s, which the failover must not take)
restart_nginx primary
start_proxy "$(nginx_url primary)" --mode status500 --match '\.fidx$|/\.chunks/[0-9a-f]{4}/[0-9a-f]{64}$'
PRIMARY=$PROXY_URL
lazyimg_mount "$PRIMARY" "$M" --mirror "$MIRROR" --no-cache --readahead 0 --retries 1 \
    --fetch-timeout 15 --connect-timeout 2
t0=$(date +%s%N)
out=$(timeout 60 dd if="$IMG" of=fo.out bs=1M skip=4 count=1 status=none 2>&1) ||
    fail "a store answering 500, a mirror left: the read failed" "$out"
ms=$((($(date +%s%N) - t0) / 1000000))
dd if=a.raw of=fo.want bs=1M skip=4 count=1 status=none
cmp fo.out fo.want || fail "a store answering 500, a mirror left: wrong bytes"
((ms < 10000)) || fail "a store answering 500, a mirror left: the read took $ms ms (the outage wait of 15 s was spent on the store)"
ok "a store answering 500 for indexes and chunks, a mirror left: the index and the chunk came from the mirror in $ms ms"
lazyimg_umount "$M"
