#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# HTTP stores served by nginx: the mounted tree and every image equal those of
# the local-store mount, with nginx's JSON and HTML directory indexes; `lazyimg
# ls` of the URL; npm's serve (absolute links); --snapshot mounts without any
# directory index, 403 or 404 (and a clear error without --snapshot); 16
# parallel readers of one image on an empty cache fetch every chunk exactly
# once; hydrate, then a remount reads the whole image with nginx gone; HTTPS:
# certificates verified by default, --ca-cert (relative too), --insecure and
# HTTP/2.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 curl
. "$T_DIR/lib_remote.sh"
T1=2025-03-01T10:00:00Z
T2=2025-03-02T10:00:00Z
TC=2025-03-03T00:00:00Z
TP=2025-03-04T00:00:00Z
TE=2025-03-05T12:30:00Z

# --- a datastore: groups, namespaces, shared chunks, holes, a config blob -----
make_image a1.raw rand:1M,zero:512K,text:512K,rand:300K 1
cp a1.raw a2.raw
dd if=/dev/urandom of=a2.raw bs=64K seek=3 count=2 conv=notrunc status=none
make_image ct.raw text:256K,zero:256K,rand:100K 2
make_image prod.raw rand:512K,zero:1M,rand:1K 3
make_image eu.raw zero:256K,rand:256K 4
make_image big.raw rand:6M,zero:2M,rand:4M 5 # the image of the parallel readers
printf 'cores: 2\nmemory: 2048\n' >conf1
mkpbs --chunk-size 64K --time $T1 "$S" drive-scsi0.img=a1.raw qemu-server.conf=conf1 >/dev/null
mkpbs --chunk-size 64K --time $T2 "$S" drive-scsi0.img=a2.raw drive-scsi1.img=big.raw >/dev/null
mkpbs --chunk-size 128K --type ct --id 200 --time $TC "$S" root.img=ct.raw >/dev/null
mkpbs --chunk-size 64K --ns prod --id 100 --time $TP "$S" drive-scsi0.img=prod.raw >/dev/null
mkpbs --chunk-size 64K --ns prod/eu --id 101 --time $TE "$S" drive-virtio0.img=eu.raw >/dev/null
IMAGES=("vm/100/$T1/drive-scsi0.img a1.raw" "vm/100/$T2/drive-scsi0.img a2.raw"
    "vm/100/$T2/drive-scsi1.img big.raw" "ct/200/$TC/root.img ct.raw"
    "ns/prod/vm/100/$TP/drive-scsi0.img prod.raw" "ns/prod/ns/eu/vm/101/$TE/drive-virtio0.img eu.raw")

# the reference: the tree and `lazyimg ls` of the local store
lazyimg_mount "$S" "$M" --no-cache
(cd "$M" && find . -printf '%y %s %p\n' | sort -k3) >tree.local
lazyimg_umount "$M"
"$LAZYIMG" ls "$S" | tail -n +2 | awk '{print $1, $2, $3}' | sort >ls.local

# check_tree MNT LABEL: the tree equals the local one, every image its source
check_tree() {
    local mnt=$1 label=$2 f path src out
    (cd "$mnt" && find . -printf '%y %s %p\n' | sort -k3) >"tree.$label"
    expect_same_file "$label: the mounted tree (names, types, sizes) equals the local-store mount's" \
        tree.local "tree.$label"
    for f in "${IMAGES[@]}"; do
        read -r path src <<<"$f"
        out=$(cmp "$mnt/$path" "$src" 2>&1) || fail "$label: image $path differs from $src" "$out"
    done
    ok "$label: all ${#IMAGES[@]} images are byte-identical to their sources"
    cmp -s "$mnt/vm/100/$T1/qemu-server.conf" conf1 || fail "$label: config blob differs"
    ok "$label: the config blob reads back exactly"
}

# --- nginx with a JSON and with an HTML directory index -----------------------
for fmt in json html; do
    start_nginx --autoindex $fmt "$S"
    URL=$NGINX_URL
    lazyimg_mount "$URL" "$M" --no-cache
    check_tree "$M" "autoindex $fmt"
    lazyimg_umount "$M"
    out=$("$LAZYIMG" ls "$URL" 2>&1) || fail "lazyimg ls $URL (autoindex $fmt) failed" "$out"
    tail -n +2 <<<"$out" | awk '{print $1, $2, $3}' | sort >"ls.$fmt"
    expect_same_file "autoindex $fmt: lazyimg ls of the URL equals that of the directory" ls.local "ls.$fmt"
    stop_nginx
done

# --- npm's serve: HTML listings that link each entry by its absolute path -----
# ("/store/vm/"; they read as empty before: a mount with 0 snapshots, exit 0)
start_serve "$(dirname "$S")"
URL=$SERVE_URL/$(basename "$S")
curl -s "$URL/" | grep -q "href=\"&#47;$(basename "$S")&#47;vm&#47;\"" ||
    fail "test setup: serve's listing does not link vm/ by its absolute path" "$(curl -s "$URL/" | head -c 2000)"
lazyimg_mount "$URL" "$M" --no-cache
check_tree "$M" "serve (absolute links)"
lazyimg_umount "$M"
out=$("$LAZYIMG" ls "$URL" 2>&1) || fail "lazyimg ls $URL (serve) failed" "$out"
tail -n +2 <<<"$out" | awk '{print $1, $2, $3}' | sort >ls.serve
expect_same_file "serve: lazyimg ls of the URL equals that of the directory" ls.local ls.serve
kill_wait "$SERVE_PID"

# --- a server that answers 404 for directories (Caddy's file_server, CDNs) ----
# --snapshot needs no listing: refused before ("not found (HTTP 404)")
start_nginx --autoindex 404 "$S"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$NGINX_URL/") == 404 ]] || fail "test setup: nginx --autoindex 404 should answer 404 for a directory"
lazyimg_mount "$NGINX_URL" "$M" --no-cache --snapshot "vm/100/$T2"
cmp "$M/vm/100/$T2/drive-scsi1.img" big.raw || fail "directories answered 404: the --snapshot mount's image differs"
lazyimg_umount "$M"
ok "directories answered 404: a --snapshot mount reads its images"
rc=0
out=$("$LAZYIMG" mount --no-cache "$NGINX_URL" "$M" 2>&1) || rc=$?
! mountpoint -q "$M" || { fusermount3 -u "$M"; fail "directories answered 404: a mount without --snapshot succeeded"; }
((rc == 1)) && grep -q "wrong URL" <<<"$out" && grep -q -- "--snapshot" <<<"$out" ||
    fail "directories answered 404, no --snapshot: expected exit 1, naming a wrong URL and --snapshot" "$out"
ok "directories answered 404, no --snapshot: $out"
stop_nginx

# --- no directory index: --snapshot, and a clear error without it --------------
start_nginx --autoindex off "$S"
URL=$NGINX_URL
[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/vm/100/") == 403 ]] || fail "nginx with autoindex off should answer 403 for a directory"
rc=0
out=$("$LAZYIMG" mount "$URL" "$M" 2>&1) || rc=$?
if mountpoint -q "$M"; then
    fusermount3 -u "$M"
    fail "mount of $URL without a directory index and without --snapshot succeeded"
fi
((rc == 1)) || fail "mount without a directory index: exit $rc, expected 1" "$out"
[[ $(wc -l <<<"$out") == 1 ]] || fail "mount without a directory index: not a one-line error" "$out"
grep -qiE 'index|list|--snapshot' <<<"$out" || fail "mount without a directory index: the error does not say listing is impossible" "$out"
ok "mount without a directory index fails (exit 1): $out"

# (one given twice, as a --config file and the command line may: no
# "hidden" warnings, one snapshot)
out=$("$LAZYIMG" mount --no-cache --snapshot "vm/100/$T2" --snapshot "ns/prod/vm/100/$TP" \
    --snapshot "vm/100/$T2" "$URL" "$M" 2>&1) || fail "--snapshot mount failed" "$out"
T_MOUNTS+=("$M")
MOUNT_PID=$(daemon_pid "$M")
T_PIDS+=("$MOUNT_PID")
! grep -q "hidden" <<<"$out" || fail "--snapshot given twice: spurious warnings" "$out"
(cd "$M" && find . -name '*.img' | sort) >snap.tree
printf '%s\n' "./ns/prod/vm/100/$TP/drive-scsi0.img" "./vm/100/$T2/drive-scsi0.img" "./vm/100/$T2/drive-scsi1.img" >snap.expect
expect_same_file "--snapshot (x2, one in a namespace): exactly those snapshots' images, without a listing" snap.expect snap.tree
cmp "$M/vm/100/$T2/drive-scsi0.img" a2.raw || fail "--snapshot mount: vm/100/$T2/drive-scsi0.img differs"
cmp "$M/ns/prod/vm/100/$TP/drive-scsi0.img" prod.raw || fail "--snapshot mount: ns/prod/vm/100/$TP/drive-scsi0.img differs"
ok "--snapshot mount: images byte-identical"
lazyimg_umount "$M"
expect_eq "no directory listing was answered 200 to the --snapshot mount" 0 \
    "$(awk '$1 ~ /\/$/ && $2 == 200' "$NGINX_LOG" | wc -l)"
stop_nginx

# --- 16 parallel readers, empty cache: each chunk fetched exactly once --------
start_nginx --autoindex json "$S"
URL=$NGINX_URL
lazyimg_mount "$URL" "$M" --cache-dir "$W/cache-par"
IMG=$M/vm/100/$T2/drive-scsi1.img
sz=$(stat -c %s big.raw)
for i in $(seq 0 15); do
    if ((i % 2 == 0)); then
        cat "$IMG" >"par.$i" &
    else
        off=$(((i * 737 * 1024) % sz))
        dd if="$IMG" of="par.$i" iflag=skip_bytes,count_bytes skip=$off count=$((3 << 20)) bs=256K status=none &
    fi
done
wait
for i in $(seq 0 15); do
    if ((i % 2 == 0)); then
        cmp -s "par.$i" big.raw || fail "parallel reader $i (cat) got wrong bytes"
    else
        off=$(((i * 737 * 1024) % sz))
        cmp -s "par.$i" <(read_range big.raw $off $((3 << 20))) || fail "parallel reader $i (dd at $off) got wrong bytes"
    fi
done
ok "16 parallel readers (8 cat, 8 dd at different offsets) read the right bytes"
fidx=$S/vm/100/$T2/drive-scsi1.img.fidx
zd=$(zero_digest $((64 << 10)))
fidx_digests "$fidx" | grep -vx "$zd" | sort -u >chunks.expect
nginx_chunk_gets >gets
awk '$1 != 1' gets >gets.dup
[[ ! -s gets.dup ]] || fail "chunks fetched more than once by the parallel readers" "$(head -20 gets.dup)"
ok "no chunk was fetched twice by 16 parallel readers"
awk '{n = split($2, p, "/"); print p[n]}' gets | sort >chunks.got
expect_same_file "exactly the image's distinct non-zero chunks were fetched (no zero chunk)" chunks.expect chunks.got
lazyimg_umount "$M"

# --- one chunk at a time: no fetch waits for the fetcher's poll timeout -------
# (a transfer thread sleeps in curl_multi_poll for up to 1 s and is woken only
# when it sleeps; a job submitted without a wake-up it needed waits out that
# second: scattered 4 KiB reads, each a fetch of its own, show it)
lazyimg_mount "$URL" "$M" --no-cache
python3 - "$IMG" big.raw <<'PY' || fail "scattered single-chunk reads were slow or wrong"
import os, random, sys, time
img, src = sys.argv[1], sys.argv[2]
size = os.path.getsize(src)
offs = [o for o in range(0, size, 64 << 10)]
random.Random(7).shuffle(offs)
slow = []
with open(img, "rb", buffering=0) as m, open(src, "rb") as s:
    for o in offs[:40]:
        t = time.monotonic()
        m.seek(o)
        got = m.read(4096)
        dt = time.monotonic() - t
        s.seek(o)
        if got != s.read(4096):
            sys.exit("wrong bytes at %d" % o)
        if dt > 0.5:
            slow.append((o, round(dt, 3)))
if len(slow) > 2:
    sys.exit("%d of 40 reads took over 0.5 s: %s" % (len(slow), slow[:8]))
PY
ok "40 scattered single-chunk reads: right bytes, none waited out the fetcher's poll timeout"
lazyimg_umount "$M"

# --- root's mount stays on the directory it checked -----------------------------
# Opening a slow store takes seconds; a directory on the mountpoint's path
# replaced meanwhile by a symlink to another place must not move the mount
# there (root mounts over whatever the path names at mount(2) time otherwise).
mkdir -p race/a/mnt victim/mnt
echo keep >victim/mnt/important
start_proxy "$URL"
proxy_fault delay ms=300
"$LAZYIMG" mount --no-cache "$PROXY_URL/" "$W/race/a/mnt" >race.out 2>&1 &
mp=$!
sleep 0.4
mv race/a race/a.old
ln -s "$W/victim" race/a
rc=0
wait "$mp" || rc=$?
proxy_fault none
if mountpoint -q victim/mnt; then
    umount -l victim/mnt
    fail "root's mount followed a replaced directory onto victim/mnt" "$(cat race.out)"
fi
if ((rc == 0)); then
    mountpoint -q race/a.old/mnt || fail "mount succeeded, but not on the checked directory" "$(cat race.out)"
    lazyimg_umount "$W/race/a.old/mnt"
else
    grep -q "no longer the directory that was checked" race.out ||
        fail "mount refused without saying why" "$(cat race.out)"
fi
[[ $(cat victim/mnt/important) == keep ]] || fail "victim/mnt no longer shows its file"
ok "a mountpoint path changed while the store opened: $(tail -1 race.out)"
kill_wait "$PROXY_PID"

# --- hydrate, then the image reads fully with nginx gone ----------------------
C=$W/cache-hyd
lazyimg_mount "$URL" "$M" --cache-dir "$C"
REL=vm/100/$T1/drive-scsi0.img
out=$("$LAZYIMG" hydrate "$M/$REL" 2>&1) || fail "lazyimg hydrate $REL failed" "$out"
ok "lazyimg hydrate $REL exits 0"
"$LAZYIMG" status --json "$M" >st.json 2>&1 || fail "lazyimg status --json failed" "$(cat st.json)"
python3 - st.json "$REL" "$(stat -c %s a1.raw)" <<'PY' || fail "status --json after hydrate: image not fully cached" "$(cat st.json)"
import json, sys
st = json.load(open(sys.argv[1]))
img = {i["path"]: i for i in st["images"]}[sys.argv[2]]
size = int(sys.argv[3])
assert img["size"] == size, img
assert img["cached_bytes"] + img["zero_bytes"] == size, img
assert img["cached_bytes"] > 0 and img["zero_bytes"] > 0, img
assert st["stores"][0]["location"].startswith("http://127.0.0.1:"), st["stores"]
PY
ok "status --json: cached_bytes + zero_bytes == size of the hydrated image"
lazyimg_umount "$M"
before=$(nginx_count "" '/\.chunks/')
lazyimg_mount "$URL" "$M" --cache-dir "$C" --snapshot "vm/100/$T1"
stat "$M/$REL" >/dev/null # the index is loaded now; chunks are not
stop_nginx
out=$(cmp "$M/$REL" a1.raw 2>&1) || fail "remount after hydrate, nginx stopped: the image is not fully readable from the cache" "$out"
ok "remount after hydrate, nginx stopped: the whole image reads from the cache, byte-identical"
expect_eq "no chunk request reached nginx after the hydrate" "$before" "$(nginx_count "" '/\.chunks/')"
lazyimg_umount "$M"

# --- HTTPS: certificates are verified by default; --ca-cert, also relative ----
start_nginx --tls --name tls --autoindex json "$S"
TLS_URL=$NGINX_URL
rc=0
out=$("$LAZYIMG" mount --no-cache "$TLS_URL/" "$M" 2>&1) || rc=$?
! mountpoint -q "$M" || { fusermount3 -u "$M"; fail "HTTPS: a self-signed server was accepted without --ca-cert"; }
((rc != 0)) && grep -qi "certificate" <<<"$out" || fail "HTTPS without --ca-cert: expected a certificate error" "$out"
ok "HTTPS: a server whose certificate nobody vouches for is refused at mount: $(head -1 <<<"$out")"
# relative: the daemon changes to / once it runs, and each transfer opens the file
mkdir -p tlsdir
cp "$NGINX_CERT" tlsdir/ca.pem
pushd tlsdir >/dev/null
lazyimg_mount "$TLS_URL" "$M" --no-cache --ca-cert ca.pem
popd >/dev/null
out=$(cmp "$M/vm/100/$T2/drive-scsi1.img" big.raw 2>&1) || fail "HTTPS with a relative --ca-cert: the image does not read" "$out"
ok "HTTPS with a relative --ca-cert (the daemon in /): every chunk fetched, the image byte-identical"
lazyimg_umount "$M"
out=$("$LAZYIMG" ls --insecure "$TLS_URL" 2>&1) || fail "HTTPS --insecure: lazyimg ls failed" "$out"
grep -q "drive-scsi1.img" <<<"$out" || fail "HTTPS --insecure: lazyimg ls lists no image" "$out"
ok "HTTPS --insecure: lazyimg ls of the same server lists the images"

# HTTP/2 (ALPN): concurrent chunk GETs share one connection. libcurl 7.88
# keeps a handle's receive buffer while its connection serves other streams,
# and refused the next transfer's buffer size on that handle: reads failed
# with EIO ("a libcurl function was given a bad argument").
start_nginx --tls --http2 --name h2 --autoindex json "$S"
cp "$NGINX_CERT" h2.pem
lazyimg_mount "$NGINX_URL" "$M" --no-cache --ca-cert "$W/h2.pem"
out=$(cmp "$M/vm/100/$T2/drive-scsi1.img" big.raw 2>&1) || fail "HTTPS over HTTP/2: the image does not read" "$out"
lazyimg_umount "$M"
n2=$(awk '$1 ~ /\/\.chunks\// && $2 == 200 && $5 == "HTTP/2.0"' "$NGINX_LOG" | wc -l)
n1=$(awk '$1 ~ /\/\.chunks\// && $5 != "HTTP/2.0"' "$NGINX_LOG" | wc -l)
((n2 >= 100 && n1 == 0)) || fail "HTTPS over HTTP/2: expected every chunk GET over HTTP/2 ($n2 over HTTP/2, $n1 not)" "$(head -5 "$NGINX_LOG")"
ok "HTTPS over HTTP/2: $n2 chunk GETs on shared connections, the image byte-identical"
