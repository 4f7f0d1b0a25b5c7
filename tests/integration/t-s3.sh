#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# S3 stores served by s3rver (a local S3 server from npm, see
# contrib/npm-packages.txt): a datastore uploaded as a plain synced layout and
# in the PBS 4 layout (.cnt/ and .chunks/), with a group whose listing takes
# two ListObjectsV2 pages; the tree, images and `lazyimg ls` equal those of
# the local store; credentials from the environment and from a file; an
# unknown access key and missing credentials fail with clear errors.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 curl node
. "$T_DIR/lib_remote.sh"
T1=2025-06-01T00:00:00Z
T2=2025-06-02T00:00:00Z
TP=2025-06-03T00:00:00Z
make_image a1.raw rand:1M,zero:512K,text:300K 1
make_image a2.raw rand:700K,zero:256K,rand:64K 2
make_image prod.raw text:256K,zero:256K,rand:128K 3
make_image tiny.raw rand:64K 4
mkpbs --chunk-size 64K --time $T1 "$S" drive-scsi0.img=a1.raw >/dev/null
mkpbs --chunk-size 64K --time $T2 "$S" drive-scsi0.img=a1.raw drive-scsi1.img=a2.raw >/dev/null
mkpbs --chunk-size 128K --ns prod --type ct --id 300 --time $TP "$S" root.img=prod.raw >/dev/null
# vm/900: a group whose listing takes 2 ListObjectsV2 pages. s3rver returns
# every common prefix (snapshot) on the first page and pages only objects, so
# the group holds 1001 stray objects (ignored by the mount, like any stray
# file) besides its 5 snapshots: the client must follow the continuation
# token (base64 with '+', '/' and '=': percent-encoded) and merge the pages.
# (1000+ snapshots would page on a real S3 but not here, and would cost a
# manifest request each: about 45 ms per snapshot through s3rver.)
base=$(date -ud 2024-01-01T00:00:00Z +%s)
for i in $(seq 0 4); do echo $((base + i * 60)); done |
    xargs -P 4 -I{} "$MKPBS" --quiet --jobs 1 --chunk-size 64K --id 900 --time {} "$S" drive-scsi0.img=tiny.raw ||
    fail "lazyimg-mkpbs of the vm/900 snapshots failed"
for i in $(seq 1000 2000); do : >"$S/vm/900/stray-$i.log"; done

# the reference: the local store
lazyimg_mount "$S" "$M" --no-cache
(cd "$M" && find . -printf '%y %s %p\n' | sort -k3) >tree.local
lazyimg_umount "$M"
"$LAZYIMG" ls "$S" | tail -n +2 | awk '{print $1, $2, $3}' | sort >ls.local
expect_eq "the local store lists 9 archives" 9 "$(wc -l <ls.local)"

start_s3rver
s3_mkbucket lazyimg
s3_upload "$S" lazyimg plain/store
s3_upload --layout pbs4 "$S" lazyimg pbs4/store
n=$(s3_list lazyimg plain/store/ | wc -l)
((n > 1001 + 5 * 2)) || fail "only $n keys listed below plain/store/ after the upload"
ok "uploaded the datastore twice: plain ($n keys) and PBS 4 layout"
s3_list lazyimg pbs4/store/.cnt/vm/900/ / >p4.list
grep -qx "pbs4/store/.cnt/vm/900/2024-01-01T00:00:00Z/" p4.list || fail "PBS 4 layout: snapshot prefix missing" "$(head p4.list)"
[[ -n $(s3_list lazyimg pbs4/store/.chunks/ | head -1) ]] || fail "PBS 4 layout: no chunks below .chunks/"
ok "PBS 4 layout: snapshots below .cnt/, chunks below .chunks/"

# the daemon reaches s3rver through faultproxy (no faults; --keep-host keeps
# the signed Host header) so that its requests can be counted
start_proxy "$S3_ENDPOINT" --keep-host
export AWS_ACCESS_KEY_ID=$S3_AK AWS_SECRET_ACCESS_KEY=$S3_SK
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_SHARED_CREDENTIALS_FILE AWS_REGION AWS_DEFAULT_REGION
export HOME=$W/home # no ~/.aws/credentials
mkdir -p "$HOME"
S3OPTS=(--s3-endpoint "$PROXY_URL" --s3-region us-east-1 --s3-path-style)

for layout in plain pbs4; do
    LOC=s3://lazyimg/$layout/store
    : >"$W/faultproxy.log"
    lazyimg_mount "$LOC" "$M" --no-cache "${S3OPTS[@]}"
    (cd "$M" && find . -printf '%y %s %p\n' | sort -k3) >"tree.$layout"
    expect_same_file "$layout: the mounted tree equals the local-store mount's" tree.local "tree.$layout"
    for f in "vm/100/$T1/drive-scsi0.img a1.raw" "vm/100/$T2/drive-scsi0.img a1.raw" \
        "vm/100/$T2/drive-scsi1.img a2.raw" "ns/prod/ct/300/$TP/root.img prod.raw" \
        "vm/900/2024-01-01T00:00:00Z/drive-scsi0.img tiny.raw" "vm/900/latest/drive-scsi0.img tiny.raw"; do
        read -r path src <<<"$f"
        out=$(cmp "$M/$path" "$src" 2>&1) || fail "$layout: image $path differs from $src" "$out"
    done
    ok "$layout: images byte-identical to their sources"
    lazyimg_umount "$M"
    grep -q 'continuation-token=' "$W/faultproxy.log" ||
        fail "$layout: the mount never asked for a second ListObjectsV2 page" "$(grep list-type "$W/faultproxy.log" | head -5)"
    ok "$layout: the listing followed a continuation token"
    out=$("$LAZYIMG" ls "${S3OPTS[@]}" "$LOC" 2>&1) || fail "$layout: lazyimg ls $LOC failed" "$(tail -5 <<<"$out")"
    tail -n +2 <<<"$out" | awk '{print $1, $2, $3}' | sort >"ls.$layout"
    expect_same_file "$layout: lazyimg ls of the bucket equals that of the directory" ls.local "ls.$layout"
done

# --- credentials ------------------------------------------------------------------
LOC=s3://lazyimg/plain/store
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$S3_AK" "$S3_SK" >creds
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
lazyimg_mount_fg "$LOC" "$M" s3hup.log -- --no-cache --readahead 0 --snapshot "vm/100/$T2" \
    --s3-credentials-file creds "${S3OPTS[@]}"
cmp <(read_range "$M/vm/100/$T2/drive-scsi1.img" 0 4096) <(head -c 4096 a2.raw) ||
    fail "--s3-credentials-file: the first read differs"
ok "--s3-credentials-file (and --snapshot): the image reads"
# SIGHUP reads the file again: a key the server does not know makes the next
# uncached read fail, the right one back makes it work (no remount)
printf '[default]\naws_access_key_id = NOSUCHKEY\naws_secret_access_key = %s\n' "$S3_SK" >creds
kill -HUP "$MOUNT_PID"
for _ in $(seq 50); do grep -q "credentials reloaded" s3hup.log && break; sleep 0.1; done
grep -q "s3://lazyimg/plain/store: credentials reloaded" s3hup.log || fail "S3 SIGHUP: no reload line" "$(tail -3 s3hup.log)"
read_range "$M/vm/100/$T2/drive-scsi1.img" $((128 << 10)) 4096 >/dev/null 2>&1 &&
    fail "S3 SIGHUP: a read with an unknown access key succeeded"
# the chunk's GET went through the fetcher pool: its error answer explained
grep -q "S3 rejected the access key (InvalidAccessKeyId)" s3hup.log ||
    fail "S3 SIGHUP: the failed chunk read does not say why" "$(tail -5 s3hup.log)"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$S3_AK" "$S3_SK" >creds
kill -HUP "$MOUNT_PID"
for _ in $(seq 50); do (($(grep -c "credentials reloaded" s3hup.log) >= 2)) && break; sleep 0.1; done
mountpoint -q "$M" || fail "S3 SIGHUP unmounted the store"
cmp "$M/vm/100/$T2/drive-scsi1.img" a2.raw || fail "S3 SIGHUP: the image does not read with the right key again"
ok "SIGHUP: S3 credentials read again from --s3-credentials-file (a wrong key refused, the right one works; still mounted)"
lazyimg_umount "$M"
# hup_takes_unknown_key LOG WHAT: after SIGHUP the daemon (logging to LOG)
# has read its credentials again, now an access key the server does not
# know: the next uncached read fails
hup_takes_unknown_key() {
    kill -HUP "$MOUNT_PID"
    for _ in $(seq 50); do grep -q "credentials reloaded\|not reloaded\|no S3 credentials" "$1" && break; sleep 0.1; done
    grep -q "credentials reloaded" "$1" || fail "$2: SIGHUP did not read the credentials again" "$(tail -3 "$1")"
    if read_range "$M/vm/100/$T2/drive-scsi1.img" $((128 << 10)) 4096 >/dev/null 2>&1; then
        fail "$2: a read with the reloaded unknown key succeeded"
    fi
}
# the shared credentials file named relative to where the daemon started
# (it runs in /): SIGHUP reads that file again
lazyimg_mount_fg "$LOC" "$M" s3hup2.log env AWS_SHARED_CREDENTIALS_FILE=creds -- --no-cache \
    --readahead 0 --snapshot "vm/100/$T2" "${S3OPTS[@]}"
cmp <(read_range "$M/vm/100/$T2/drive-scsi1.img" 0 4096) <(head -c 4096 a2.raw) ||
    fail "relative \$AWS_SHARED_CREDENTIALS_FILE: the first read differs"
printf '[default]\naws_access_key_id = NOSUCHKEY\naws_secret_access_key = %s\n' "$S3_SK" >creds
hup_takes_unknown_key s3hup2.log "relative \$AWS_SHARED_CREDENTIALS_FILE"
ok "SIGHUP: a relative \$AWS_SHARED_CREDENTIALS_FILE is read again (from where the daemon started)"
lazyimg_umount "$M"
# rotated by swapping a symbolic link (as Kubernetes Secret volumes do): the
# old version's directory removed, SIGHUP reads the new one (it read the
# path the link pointed to at the mount, gone, and kept the old keys)
mkdir -p sec/v1 sec/v2
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$S3_AK" "$S3_SK" >sec/v1/credentials
printf '[default]\naws_access_key_id = NOSUCHKEY\naws_secret_access_key = %s\n' "$S3_SK" >sec/v2/credentials
ln -s v1 sec/current
lazyimg_mount_fg "$LOC" "$M" s3hup3.log -- --no-cache --readahead 0 --snapshot "vm/100/$T2" \
    --s3-credentials-file sec/current/credentials "${S3OPTS[@]}"
cmp <(read_range "$M/vm/100/$T2/drive-scsi1.img" 0 4096) <(head -c 4096 a2.raw) ||
    fail "credentials through a link: the first read differs"
ln -s v2 sec/next && mv -T sec/next sec/current && rm -r sec/v1
hup_takes_unknown_key s3hup3.log "credentials rotated by a link swap"
ok "SIGHUP: credentials rotated by swapping a symbolic link are read from the new target"
lazyimg_umount "$M"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$S3_AK" "$S3_SK" >creds
export AWS_ACCESS_KEY_ID=$S3_AK AWS_SECRET_ACCESS_KEY=$S3_SK

rc=0
out=$(AWS_ACCESS_KEY_ID=NOSUCHKEY "$LAZYIMG" mount "${S3OPTS[@]}" "$LOC" "$M" 2>&1) || rc=$?
! mountpoint -q "$M" || { fusermount3 -u "$M"; fail "mount with an unknown access key succeeded"; }
((rc == 1)) || fail "unknown access key: exit $rc, expected 1" "$out"
[[ $(wc -l <<<"$out") == 1 ]] || fail "unknown access key: not a one-line error" "$out"
grep -qi 'access key' <<<"$out" || fail "unknown access key: the error does not mention the access key" "$out"
ok "unknown access key: exit 1: $out"

rc=0
out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$LAZYIMG" mount "${S3OPTS[@]}" "$LOC" "$M" 2>&1) || rc=$?
! mountpoint -q "$M" || { fusermount3 -u "$M"; fail "mount without credentials succeeded"; }
((rc == 1)) || fail "missing credentials: exit $rc, expected 1" "$out"
grep -qi 'credential' <<<"$out" || fail "missing credentials: the error does not say credentials are missing" "$out"
ok "missing credentials: exit 1: $out"

# --- the same bucket at another service is another store -------------------
# (a mount through the proxy caches its catalog; the same s3:// URL at a
# service that is down must not be answered with it: it was, whatever the
# endpoint; the same service typed with a trailing '/' still is)
LOC=s3://lazyimg/plain/store
lazyimg_mount "$LOC" "$M" --cache-dir "$W/cache-ep" "${S3OPTS[@]}"
cmp "$M/vm/900/latest/drive-scsi0.img" tiny.raw || fail "cache-ep: the image differs from its source"
lazyimg_umount "$M"
down=http://127.0.0.1:$(free_port)
rc=0
out=$("$LAZYIMG" mount --cache-dir "$W/cache-ep" --s3-endpoint "$down" --s3-region us-east-1 \
    --s3-path-style "$LOC" "$M" 2>&1) || rc=$?
! mountpoint -q "$M" || { fusermount3 -u "$M"; fail "another service, down: mounted from the first one's cached catalog" "$out"; }
((rc != 0)) && grep -q "no cached" <<<"$out" ||
    fail "another service, down: expected 'no cached ...' and a failure (exit $rc)" "$out"
ok "the same bucket at another service (down): not answered from the first service's cache"
lazyimg_mount "$LOC" "$M" --cache-dir "$W/cache-ep" --offline --s3-endpoint "$PROXY_URL/" \
    --s3-region us-east-1 --s3-path-style
cmp "$M/vm/900/latest/drive-scsi0.img" tiny.raw || fail "--offline, the same service: the image differs"
ok "--offline at the same service (its endpoint with a trailing '/'): from its cache, byte-identical"
lazyimg_umount "$M"

# --- the PBS 4 layout when the store was down at the mount ------------------
# (its layout was found only by the mount's reachability check: a mount made
# while the store was down looked for snapshots outside .cnt/ once it was
# back, and an image whose index was not cached stayed unreadable; and that
# check made one attempt, so one server error made a mount one from the
# cache for its whole life)
LOC=s3://lazyimg/pbs4/store
C=$W/cache-p4
lazyimg_mount "$LOC" "$M" --cache-dir "$C" "${S3OPTS[@]}"
cmp "$M/vm/100/$T1/drive-scsi0.img" a1.raw || fail "pbs4, online: the image differs"
lazyimg_umount "$M"
proxy_fault status500 times=1 match='.'
lazyimg_mount_fg "$LOC" "$M" p4a.log -- --cache-dir "$C" "${S3OPTS[@]}"
! grep -q "unreachable" p4a.log || fail "pbs4: one server error at the mount made it a mount from the cache" "$(cat p4a.log)"
cmp "$M/vm/100/$T2/drive-scsi1.img" a2.raw || fail "pbs4, one 500 at the mount: an image differs"
ok "PBS 4 layout: one server error at the mount is retried; the mount is online"
lazyimg_umount "$M"
proxy_fault status500 times=all match='.'
lazyimg_mount_fg "$LOC" "$M" p4b.log -- --cache-dir "$C" "${S3OPTS[@]}"
grep -q "unreachable" p4b.log || fail "pbs4, store down: the mount did not say so" "$(cat p4b.log)"
proxy_fault none match='/\.chunks/'
out=$(cmp "$M/vm/100/$T2/drive-scsi1.img" a2.raw 2>&1) ||
    fail "pbs4, down at the mount, back now: an image whose index was not cached does not read" "$out$(tail -3 p4b.log)"
ok "PBS 4 layout, store down at the mount and back: an image not cached before loads and reads byte-identical"
lazyimg_umount "$M"
# a chunk transfer cut off after half its bytes: the retry asks S3 for the rest
# (a Range header outside the signature, as S3 allows)
proxy_fault truncate times=1 match='/\.chunks/'
lazyimg_mount "$LOC" "$M" --no-cache "${S3OPTS[@]}"
out=$(cmp "$M/vm/100/$T2/drive-scsi1.img" a2.raw 2>&1) || fail "pbs4, chunks cut off once: the image differs" "$out"
lazyimg_umount "$M"
python3 -c 'import json, sys
st = json.loads(sys.argv[1])
cut = [p for p in st["faulted"] if "/.chunks/" in p]
assert cut and all(st["status"][p].get("206") for p in cut), st["status"]' "$(proxy_stats)" ||
    fail "pbs4, chunks cut off once: the retries did not resume (no 206 from S3)" "$(proxy_stats)"
ok "PBS 4 layout, chunks cut off once: the retries ask S3 for the rest (206), the image byte-identical"
proxy_fault none match='/\.chunks/'
