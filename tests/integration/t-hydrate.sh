#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The control socket: `lazyimg status` (JSON keys, image accounting),
# `lazyimg hydrate` (whole images into the disk cache, served from there with
# the store's chunks gone; resumable; --bandwidth; progress output; errors),
# `mount --hydrate`, a hostile or stuck client, and the socket's removal.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3
C=$W/cache
T1=2025-08-01T00:00:00Z

# a: 16 MiB of data in 1 MiB chunks (4 of them repeats of the first 4: 12
#    distinct chunks) and a 4 MiB hole; b: 24 MiB of random data
make_image a.raw rand:8M,zero:4M,repeat:4M,text:4M 1
make_image b.raw rand:24M 2
printf 'memory: 512\n' >vm.conf
mkpbs --chunk-size 1M --time $T1 "$S" drive-scsi0.img=a.raw drive-scsi1.img=b.raw \
    qemu-server.conf=vm.conf >/dev/null
SNAP=$M/vm/100/$T1
IMGA=$SNAP/drive-scsi0.img
IMGB=$SNAP/drive-scsi1.img

# status_json MNT FILE: lazyimg status --json into FILE
status_json() {
    local out
    out=$("$LAZYIMG" status --json "$1") || fail "lazyimg status --json $1 failed" "$out"
    printf '%s\n' "$out" >"$2"
}

# image_field FILE PATH KEY: KEY of the image PATH (below the mount) in a status JSON
image_field() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
for im in st["images"]:
    if im["path"] == sys.argv[2]:
        v = im
        for k in sys.argv[3].split("."):
            v = v[k]
        print(json.dumps(v))
        break
else:
    print("missing")
PY
}

# --- status before and after an image is loaded ------------------------------
lazyimg_mount "$S" "$M" --cache-dir "$C"
status_json "$M" st0.json
python3 - st0.json "$S" <<'PY' || fail "status --json is not what was expected" "$(cat st0.json)"
import json, sys
st = json.load(open(sys.argv[1]))
assert set(st) >= {"stores", "fetch", "cache", "images"}, st.keys()
assert st["stores"] == [{"location": sys.argv[2], "active": True, "direct_reads": 0}], st["stores"]
f = st["fetch"]
for k in ("inflight", "decoding", "requests", "retries", "failovers", "errors", "bytes"):
    assert isinstance(f[k], int), k
assert set(f["queued"]) == {"demand", "readahead", "hydrate"}, f["queued"]
assert isinstance(f["mb_per_s"], (int, float))
assert set(f["latency_us"]) >= {"p50", "p99", "histogram"}
c = st["cache"]
for k in ("memory_hits", "disk_hits", "loads"):
    assert isinstance(c[k], int), k
assert 0 <= c["hit_rate"] <= 1
assert {"entries", "bytes", "budget"} <= set(c["disk"]), c["disk"]
assert st["images"] == [], st["images"]  # no index loaded yet
PY
ok "status --json: stores, fetch, cache and an empty images list before any image is opened"

stat "$IMGA" >/dev/null
status_json "$M" st1.json
expect_eq "a stat()ed image is listed with its size" $((20 << 20)) \
    "$(image_field st1.json vm/100/$T1/drive-scsi0.img size)"
expect_eq "... its data bytes (holes excluded)" $((16 << 20)) \
    "$(image_field st1.json vm/100/$T1/drive-scsi0.img data_bytes)"
expect_eq "... its zero bytes" $((4 << 20)) "$(image_field st1.json vm/100/$T1/drive-scsi0.img zero_bytes)"
expect_eq "... nothing cached yet" 0 "$(image_field st1.json vm/100/$T1/drive-scsi0.img cached_bytes)"
out=$("$LAZYIMG" status "$M") || fail "lazyimg status (human) failed" "$out"
grep -q "(active)" <<<"$out" && grep -q "drive-scsi0.img" <<<"$out" && grep -q "hit rate" <<<"$out" ||
    fail "lazyimg status: unexpected summary" "$out"
ok "lazyimg status prints a readable summary"

# --- hydrate: plain progress lines when stderr is not a terminal -------------
out=$("$LAZYIMG" hydrate --progress "$IMGA" 2>&1) || fail "lazyimg hydrate --progress failed" "$out"
grep -q "^hydrate: .* (100%)" <<<"$out" || fail "hydrate --progress: no final progress line" "$out"
grep -q "^hydrated 1 image: 16.0M of data cached, 12.0M fetched" <<<"$out" ||
    fail "hydrate: unexpected summary (12 distinct 1 MiB chunks expected)" "$out"
[[ $out != *$'\r'* ]] || fail "hydrate --progress drew a terminal bar into a pipe" "$out"
ok "hydrate --progress (not a terminal): plain lines and a summary"
status_json "$M" st2.json
expect_eq "after hydrate, status shows cached_bytes == data_bytes" \
    "$(image_field st2.json vm/100/$T1/drive-scsi0.img data_bytes)" \
    "$(image_field st2.json vm/100/$T1/drive-scsi0.img cached_bytes)"
expect_eq "... hydrated_pct 100" 100.0 "$(image_field st2.json vm/100/$T1/drive-scsi0.img hydrated_pct)"
expect_eq "... the job finished" true "$(image_field st2.json vm/100/$T1/drive-scsi0.img hydration.finished)"
expect_eq "... without errors" 0 "$(image_field st2.json vm/100/$T1/drive-scsi0.img hydration.errors)"

# --- resumable: a rerun fetches nothing ------------------------------------
out=$("$LAZYIMG" hydrate "$IMGA" 2>&1) || fail "second lazyimg hydrate failed" "$out"
grep -q "^hydrated 1 image: 16.0M of data cached, 0B fetched" <<<"$out" ||
    fail "a rerun of hydrate fetched chunks again" "$out"
status_json "$M" st3.json
expect_eq "a rerun of hydrate fetched 0 bytes (status)" 0 \
    "$(image_field st3.json vm/100/$T1/drive-scsi0.img hydration.fetched)"

# --- --bandwidth 4M on 24 MiB takes >= 4 s; a terminal gets a bar ---------
start=$(date +%s%N)
if command -v script >/dev/null; then
    script -qefc "'$LAZYIMG' hydrate --progress --bandwidth 4M '$IMGB'" tty.log >/dev/null ||
        fail "hydrate --bandwidth 4M (on a terminal) failed" "$(cat tty.log)"
    grep -q $'\r\\[#' tty.log && grep -q "ETA" tty.log && grep -q "MB/s" tty.log ||
        fail "hydrate --progress on a terminal: no redrawn bar" "$(cat -v tty.log | tail -c 600)"
    ok "hydrate --progress on a terminal redraws one bar line with MB/s and ETA"
else
    out=$("$LAZYIMG" hydrate --bandwidth 4M "$IMGB" 2>&1) || fail "hydrate --bandwidth 4M failed" "$out"
fi
ms=$((($(date +%s%N) - start) / 1000000))
((ms >= 4000)) || fail "hydrate --bandwidth 4M of 24 MiB took only $ms ms"
((ms < 20000)) || fail "hydrate --bandwidth 4M of 24 MiB took $ms ms (cap too strict?)"
ok "hydrate --bandwidth 4M of 24 MiB took $ms ms"
status_json "$M" st4.json
expect_eq "image b fully cached" "$((24 << 20))" "$(image_field st4.json vm/100/$T1/drive-scsi1.img cached_bytes)"

# --- errors ------------------------------------------------------------------
# expect_fail DESCRIPTION EXIT PATTERN COMMAND...
expect_fail() {
    local what=$1 want=$2 pat=$3 rc=0 out
    shift 3
    out=$("$@" 2>&1) || rc=$?
    ((rc == want)) || fail "$what: exit $rc, expected $want" "$out"
    grep -q -- "$pat" <<<"$out" || fail "$what: message lacks '$pat'" "$out"
    ok "$what: $out"
}
expect_fail "hydrate of a file outside any mount" 1 "not a lazyimg mount" "$LAZYIMG" hydrate a.raw
expect_fail "hydrate of a directory in the mount" 1 "not an image" "$LAZYIMG" hydrate "$SNAP"
expect_fail "hydrate of a config blob" 1 "not an image" "$LAZYIMG" hydrate "$SNAP/qemu-server.conf"
expect_fail "hydrate of a missing path" 1 "No such file" "$LAZYIMG" hydrate "$SNAP/nope.img"
expect_fail "hydrate --bandwidth with a bad rate" 2 "invalid rate" "$LAZYIMG" hydrate --bandwidth 5X "$IMGA"
expect_fail "hydrate without a path" 2 "expected at least one PATH" "$LAZYIMG" hydrate
expect_fail "status of a directory outside any mount" 1 "not a lazyimg mount" "$LAZYIMG" status "$W"
"$LAZYIMG" hydrate --help | grep -q -- "--bandwidth RATE" || fail "hydrate --help"
"$LAZYIMG" status --help | grep -q -- "--json" || fail "status --help"
ok "status --help and hydrate --help"

# --- the protocol: bad requests are refused, a stuck client times out -------
dev=$(stat -c '%Hd:%Ld' "$IMGA")
SOCK=/run/lazyimg/$dev.sock
[[ -S $SOCK ]] || fail "no control socket at $SOCK"
expect_eq "the control socket is mode 0600" 600 "$(stat -c %a "$SOCK")"
python3 - "$SOCK" <<'PY' || fail "the daemon accepted a malformed request"
import json, socket, sys
def ask(raw):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(raw)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    return json.loads(data)
for raw in (b"hydrate 1\n", b"hydrate -1 0\n", b"hydrate 01 0\n", b"progress 99999999999999999999999\n",
            b"status \n", b"STATUS\n", b"progress 1 2\n", b"x" * 500 + b"\n", b"status\x00\n",
            b"hydrate 1 0\n", b"hydrate 999999 0\n", b"progress 424242\n"):
    r = ask(raw)
    assert "error" in r and "job" not in r, (raw, r)
assert "images" in ask(b"status\n")
PY
ok "malformed requests get {\"error\": ...} (length, signs, leading zeros, overflow, NUL, non-images)"
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(20)' "$SOCK" &
stuck=$!
add_cleanup "kill $stuck"
sleep 0.3
start=$(date +%s%N)
timeout 15 "$LAZYIMG" status "$M" >/dev/null || fail "status blocked by a stuck client"
ms=$((($(date +%s%N) - start) / 1000000))
kill $stuck 2>/dev/null || true
ok "a client that sends nothing delays others by at most the timeout ($ms ms)"

# the socket swapped for a symlink to another uid's socket (between the
# client's check of the path and its connect): status and umount refuse to
# talk to it, and say why
# (the system's python3: one below /root is not readable by uid 65534)
if command -v setpriv >/dev/null && [[ -x /usr/bin/python3 ]]; then
    EV=$(mktemp -d /tmp/lazyimg-evil.XXXXXX)
    add_cleanup "rm -rf $EV"
    chmod 0777 "$EV"
    setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4)
while True:
    c, _ = s.accept(); c.recv(4096); c.sendall(b"{\"images\": []}\n"); c.close()' "$EV/s.sock" &
evil=$!
    add_cleanup "kill $evil"
    for _ in $(seq 50); do [[ -S $EV/s.sock ]] && break; sleep 0.1; done
    mv "$SOCK" "$SOCK.real"
    ln -s "$EV/s.sock" "$SOCK"
    rc=0
    out=$("$LAZYIMG" status "$M" 2>&1) || rc=$?
    rm -f "$SOCK"
    mv "$SOCK.real" "$SOCK"
    kill $evil 2>/dev/null || true
    ((rc != 0)) || fail "status talked to a socket of uid 65534 in place of the daemon's" "$out"
    grep -q "answered by a process of uid 65534, not by the daemon of uid 0" <<<"$out" ||
        fail "status: no message naming the other uid" "$out"
    "$LAZYIMG" status "$M" >/dev/null || fail "status after the socket was put back failed"
    ok "a control socket swapped for another uid's: status refuses it ($out)"
fi

# --- from the cache alone ---------------------------------------------------
lazyimg_umount "$M"
[[ ! -e $SOCK ]] || fail "the control socket $SOCK is left after the unmount"
ok "the control socket is removed at unmount"
mv "$S/.chunks" "$S/.chunks.away"
mkdir "$S/.chunks"
lazyimg_mount "$S" "$M" --cache-dir "$C"
cmp "$IMGA" a.raw || fail "hydrated image a differs from its source with the store's chunks gone"
cmp "$IMGB" b.raw || fail "hydrated image b differs from its source with the store's chunks gone"
ok "both hydrated images read back from the cache alone equal their sources"
status_json "$M" st5.json
expect_eq "no chunk was loaded from the store" 0 "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cache"]["loads"])' st5.json)"
lazyimg_umount "$M"
rmdir "$S/.chunks"
mv "$S/.chunks.away" "$S/.chunks"

# --- mount --hydrate --------------------------------------------------------
lazyimg_mount "$S" "$M" --cache-dir "$W/cache2" --hydrate
for ((i = 0; i < 200; i++)); do
    status_json "$M" st6.json
    done_both=$(python3 - st6.json <<'PY'
import json, sys
ims = json.load(open(sys.argv[1]))["images"]
print(int(len(ims) == 2 and all(i.get("hydration", {}).get("finished") and
                                i["cached_bytes"] == i["data_bytes"] for i in ims)))
PY
)
    [[ $done_both == 1 ]] && break
    sleep 0.1
done
[[ $done_both == 1 ]] || fail "mount --hydrate did not hydrate both images within 20 s" "$(cat st6.json)"
ok "mount --hydrate fetched every image into the cache"
lazyimg_umount "$M"

# --- Ctrl-C stops the daemon's job; an unmount during a job ends it ---------
lazyimg_mount "$S" "$M" --cache-dir "$W/cache3"
"$LAZYIMG" hydrate --bandwidth 4M "$IMGB" >int.log 2>&1 &
hyd=$!
sleep 1.5
kill -INT $hyd
rc=0
wait $hyd || rc=$?
expect_eq "an interrupted hydrate exits 130" 130 "$rc"
status_json "$M" st7.json
expect_eq "... and the daemon's job is cancelled" true "$(image_field st7.json vm/100/$T1/drive-scsi1.img hydration.cancelled)"
expect_eq "... and finished" true "$(image_field st7.json vm/100/$T1/drive-scsi1.img hydration.finished)"
"$LAZYIMG" hydrate --progress --bandwidth 4M "$IMGB" >unmount.log 2>&1 &
hyd=$!
sleep 1.5
lazyimg_umount "$M" # fails unless the daemon exits within 10 s
rc=0
wait $hyd || rc=$?
((rc == 1)) || fail "hydrate of an image unmounted under it: exit $rc, expected 1" "$(cat unmount.log)"
grep -q "lost the daemon" unmount.log || fail "hydrate did not say why it failed" "$(cat unmount.log)"
ok "an unmount during hydration stops it; the CLI exits 1: $(grep "lost the daemon" unmount.log)"

# --- without a disk cache ---------------------------------------------------
lazyimg_mount "$S" "$M" --no-cache
expect_fail "hydrate on a --no-cache mount" 1 "needs the disk cache" "$LAZYIMG" hydrate "$IMGA"
lazyimg_umount "$M"

# --- a cache too small for the image: the summary counts what is cached -----
# (16 MiB, the least budget, for 24 MiB of distinct chunks none of which may
# be evicted yet: some stay out, and the summary said all were cached)
lazyimg_mount "$S" "$M" --cache-dir "$W/cache-small" --cache-size 16M
rc=0
out=$("$LAZYIMG" hydrate "$IMGB" 2>&1) || rc=$?
((rc == 1)) || fail "hydrate into a cache too small: exit $rc, expected 1" "$out"
grep -q "chunks ([0-9]* bytes) are not in the disk cache (a budget too small" <<<"$out" ||
    fail "hydrate into a cache too small: no line on what is not cached" "$out"
uncached=$(sed -n 's/.* chunks (\([0-9]*\) bytes) are not in the disk cache.*/\1/p' <<<"$out")
((uncached > 0 && uncached < (24 << 20))) || fail "hydrate: $uncached bytes not cached" "$out"
status_json "$M" st9.json
cached=$(image_field st9.json vm/100/$T1/drive-scsi1.img cached_bytes)
expect_eq "hydrate into a cache too small: cached + not cached = the image's data" $((24 << 20)) \
    $((cached + uncached))
want=$(python3 -c "
import sys
n = $cached
for u in ('B', 'K', 'M', 'G'):
    if n < 1024 or u == 'G':
        print(('%dB' % n) if u == 'B' else ('%.1f%s' % (n, u)))
        break
    n /= 1024")
grep -q "^hydrate incomplete: 1 image: $want of data cached" <<<"$out" ||
    fail "hydrate into a cache too small: the summary does not say $want cached" "$out"
ok "hydrate into a cache too small: $(tail -1 <<<"$out")"
lazyimg_umount "$M"
