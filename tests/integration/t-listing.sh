#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Listings (issue 12, defects 6, 7, 9, 11, 13):
#  - an S3 endpoint that never stops paginating makes `ls` and `mount` stop
#    with a clear error at the listing bounds, with bounded memory;
#  - `lazyimg ls` of a casync repository holds one index at a time (peak RSS);
#  - over nginx (which hides .chunks in its index), `ls` and `mount` of a
#    datastore with all 65,536 chunk directories move < 64 KiB of listings;
#  - `ls`/`mount` of a datastore's parent print one line naming the datastore
#    ("did you mean …/ds?"), locally and over HTTP;
#  - `ls` prints a blob's decoded size, the size the mount shows;
#  - pxar archives are labelled and mountable (t-pxar reads them); the catalog
#    and other dynamic indexes are labelled with the reason they are not
#    shown, and the mount warns once with the count.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd python3 curl
setup_workdir
. "$(dirname "$0")/lib_remote.sh"
cd "$W"
HERE=$(cd "$(dirname "$0")" && pwd)

# peak_rss OUT CMD...: runs CMD (stdout+stderr to OUT); prints "RC MAXRSS_KIB".
peak_rss() {
    local out=$1
    shift
    python3 -c '
import resource, subprocess, sys
with open(sys.argv[1], "wb") as f:
    rc = subprocess.run(sys.argv[2:], stdout=f, stderr=subprocess.STDOUT).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$out" "$@"
}

# --- a datastore with every .chunks prefix directory, on a tmpfs of its own
# (65,536 directories take minutes to remove from a busy disk, not here)
mkdir -p shm
mount -t tmpfs -o size=256m,mode=0755 lazyimg-test shm || fail "cannot mount a tmpfs on $W/shm"
add_cleanup "umount -l $W/shm"
P=$W/shm/parent
DS=$P/ds
mkdir -p "$P"
printf 'boot: order=scsi0\ncores: 2\nmemory: 2048\nscsi0: local:vm-100-disk-0,size=1M\n' >conf
CONF_SIZE=$(stat -c %s conf)
make_image disk.raw rand:256K,zero:256K 1
# a new DIR gets the full .chunks/0000..ffff, as PBS makes it
mkpbs --chunk-size 64K --time 2025-07-10T12:00:00Z "$DS" drive-scsi0.img=disk.raw qemu-server.conf=conf >/dev/null
mkpbs --chunk-size 64K --time 2025-07-11T12:00:00Z "$DS" drive-scsi0.img=disk.raw >/dev/null
n=$(find "$DS/.chunks" -mindepth 1 -maxdepth 1 -type d | wc -l)
expect_eq "the datastore has every chunk prefix directory" 65536 "$n"

# ct/200: a container snapshot of pxar archives only (written by hand: the
# manifest is an uncompressed blob; the archives themselves are never read)
python3 - "$DS/ct/200/2025-07-12T08:00:00Z" <<'EOF'
import json, os, struct, sys, zlib
d = sys.argv[1]
os.makedirs(d)
files = [{"filename": n, "size": s, "csum": c * 64, "crypt-mode": "none"}
         for n, s, c in [("catalog.pcat1.didx", 4200, "1"), ("root.pxar.didx", 123456, "2"),
                         ("other.didx", 99, "3")]]
m = json.dumps({"backup-type": "ct", "backup-id": "200", "backup-time": 1752307200,
                "files": files, "unprotected": {}, "signature": None}).encode()
with open(os.path.join(d, "index.json.blob"), "wb") as f:
    f.write(bytes([66, 171, 56, 7, 190, 131, 112, 161]) + struct.pack("<I", zlib.crc32(m)) + m)
EOF

start_nginx "$W/shm"
URL=$NGINX_URL

# --- 7: the probe over nginx: no listing of .chunks/ (7 MB for 65,536 dirs)
: >"$NGINX_LOG"
"$LAZYIMG" ls "$URL/parent/ds" >ls.http 2>ls.http.err || fail "ls over HTTP failed" "$(cat ls.http.err)"
grep -q "vm/100/2025-07-11T12:00:00Z .*drive-scsi0" ls.http || fail "ls over HTTP lists no image" "$(cat ls.http)"
bytes=$(awk '{n += $4} END {print n + 0}' "$NGINX_LOG")
big=$(awk '$1 ~ /\/\.chunks\/?$/' "$NGINX_LOG")
[[ -z $big ]] || fail "ls over HTTP listed .chunks/" "$big"
((bytes < 65536)) || fail "ls over HTTP moved $bytes bytes (limit 64 KiB)" "$(sort -k4 -n -r "$NGINX_LOG" | head -5)"
ok "ls over nginx of a datastore with 65,536 chunk directories: $bytes bytes in $(wc -l <"$NGINX_LOG") requests"
: >"$NGINX_LOG"
lazyimg_mount "$URL/parent/ds" mnt --no-cache
cp "$NGINX_LOG" mount.log
cmp mnt/vm/100/2025-07-10T12:00:00Z/drive-scsi0.img disk.raw || fail "the image over HTTP differs"
lazyimg_umount mnt
bytes=$(awk '{n += $4} END {print n + 0}' mount.log)
((bytes < 65536)) || fail "mount over HTTP moved $bytes bytes (limit 64 KiB)" "$(sort -k4 -n -r mount.log | head -5)"
ok "mount over nginx: $bytes bytes of listings and manifests"

# --- 9: the parent of a datastore: one line, naming the datastore
for store in "$P" "$URL/parent" "$URL/parent/"; do
    rc=0
    "$LAZYIMG" ls "$store" >out 2>&1 || rc=$?
    expect_eq "ls $store fails" 1 "$rc"
    expect_eq "ls $store prints one line" 1 "$(wc -l <out)"
    grep -qF "did you mean ${store%/}/ds?" out || fail "ls $store names no datastore" "$(cat out)"
done
mkdir -p mnt
rc=0
"$LAZYIMG" mount --no-cache "$P" mnt >out 2>&1 || rc=$?
expect_eq "mount of the parent fails" 1 "$rc"
expect_eq "mount of the parent prints one line" 1 "$(wc -l <out)"
grep -qF "did you mean $P/ds?" out || fail "mount of the parent names no datastore" "$(cat out)"
! mountpoint -q mnt || fail "the parent was mounted"
ok "ls/mount of a datastore's parent: $(cat out)"

# --- 11: blob sizes: ls prints what the mount shows
lazyimg_mount "$DS" mnt --no-cache
snap=vm/100/2025-07-10T12:00:00Z
shown=$(stat -c %s "mnt/$snap/qemu-server.conf")
expect_eq "the mount shows the decoded blob" "$CONF_SIZE" "$shown"
cmp "mnt/$snap/qemu-server.conf" conf || fail "the blob's bytes differ"
ls -A "mnt/ct/200/2025-07-12T08:00:00Z" >ct.ls
lazyimg_umount mnt
"$LAZYIMG" ls "$DS" >ls.local
line=$(grep -F "$snap" ls.local | grep qemu-server.conf)
expect_eq "ls prints the decoded blob size" "${CONF_SIZE}B" "$(awk '{print $4}' <<<"$line")"
"$LAZYIMG" ls --json "$DS" >ls.json
python3 - ls.json "$CONF_SIZE" <<'EOF' || fail "ls --json blob sizes" "$(cat ls.json)"
import json, os, sys
snaps = json.load(open(sys.argv[1]))
f = [f for s in snaps for f in s["files"] if f["filename"] == "qemu-server.conf.blob"][0]
assert f["size"] == int(sys.argv[2]), f
assert f["stored-size"] > f["size"], f
EOF
ok "ls shows the blob's decoded size ($CONF_SIZE B), as the mount does"

# --- 13: pxar archives, the catalog, other dynamic indexes
pline=$(grep -F "ct/200/" ls.local | grep " root.pxar ")
cline=$(grep -F "ct/200/" ls.local | grep " catalog.pcat1 ")
oline=$(grep -F "ct/200/" ls.local | grep " other ")
expect_eq "root.pxar is labelled pxar" pxar "$(awk '{print $3}' <<<"$pline")"
expect_eq "catalog.pcat1 is labelled catalog" catalog "$(awk '{print $3}' <<<"$cline")"
grep -qE " yes$" <<<"$pline" || fail "ls does not show the pxar archive as mountable" "$pline"
grep -q "no (catalog" <<<"$cline" || fail "ls gives no reason for the catalog" "$cline"
grep -q "no (dynamic index: not supported yet)" <<<"$oline" || fail "ls gives no reason for the other dynamic index" "$oline"
python3 - ls.json <<'EOF' || fail "ls --json pxar entries" "$(cat ls.json)"
import json, sys
snaps = json.load(open(sys.argv[1]))
f = {f["filename"]: f for s in snaps for f in s["files"]}
assert f["root.pxar.didx"]["kind"] == "pxar" and f["root.pxar.didx"]["mountable"], f
assert f["catalog.pcat1.didx"]["kind"] == "catalog", f
assert not f["other.didx"]["mountable"] and "not supported" in f["other.didx"]["reason"], f
EOF
expect_eq "the container snapshot shows its pxar archive" "root.pxar" "$(cat ct.ls)"
"$LAZYIMG" mount --no-cache "$DS" mnt >out 2>&1 || fail "mount failed" "$(cat out)"
T_MOUNTS+=("$W/mnt")
grep -q "1 dynamic-index archive is not shown (in 1 snapshot): only pxar file archives are; .lazyimg ls. lists them" out ||
    fail "the mount does not warn about the other dynamic index" "$(cat out)"
expect_eq "the mount warns once" 1 "$(grep -c "dynamic-index" out)"
lazyimg_umount mnt
ok "pxar archives shown; the catalog and other dynamic indexes labelled and explained by ls, counted once by the mount"

# --- 6a: casync ls releases each index once printed
R=$W/repo
mkdir -p "$R/default.castr"
python3 - "$R/big.caibx" 20000 <<'EOF'
import hashlib, struct, sys
n = int(sys.argv[2])
b = bytearray(struct.pack("<6Q", 48, 0x96824D9C7B129FF9, 0x2000000000000000, 16384, 65536, 262144))
b += struct.pack("<2Q", 2**64 - 1, 0xE75B9E112F17417D)
for i in range(n):
    b += struct.pack("<Q", (i + 1) * 65536) + hashlib.sha256(b"%d" % i).digest()
b += struct.pack("<5Q", 0, 0, 48, len(b) + 40 - 48, 0x4B4F050E5549ECD1)
open(sys.argv[1], "wb").write(b)
EOF
for i in $(seq 1 59); do ln "$R/big.caibx" "$R/big$i.caibx"; done
rm -rf one && mkdir one && ln "$R/big.caibx" one/big.caibx && mkdir one/default.castr
# under AddressSanitizer freed memory waits in a quarantine (256 MiB) instead
# of being reused, which would hide what this measures: no quarantine here
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0
read -r rc one < <(peak_rss ls1.out "$LAZYIMG" ls "$W/one")
expect_eq "ls of a one-index repository" 0 "$rc"
read -r rc many < <(peak_rss ls60.out "$LAZYIMG" ls "$R")
expect_eq "ls of a 60-index repository" 0 "$rc"
expect_eq "ls lists 60 indexes" 60 "$(grep -c ' yes$' ls60.out)"
((many < one + 8192)) || fail "ls of 60 indexes peaks at $many KiB, of one at $one KiB (indexes kept loaded)"
ok "casync ls: peak RSS $many KiB for 60 indexes of 20,000 chunks, $one KiB for one"

# --- 6b: an S3 endpoint that never stops paginating
start_endless() { # KEYS: sets ENDLESS_URL
    local pf=$W/endless.$1
    python3 "$HERE/s3_endless.py" "$pf" "$1" &
    T_PIDS+=("$!")
    add_cleanup "kill_wait $!"
    for _ in $(seq 1 100); do [[ -s $pf ]] && break; sleep 0.1; done
    [[ -s $pf ]] || fail "s3_endless.py did not start"
    ENDLESS_URL=http://127.0.0.1:$(cat "$pf")
}
export AWS_ACCESS_KEY_ID=AK AWS_SECRET_ACCESS_KEY=SK
start_endless 1000
E1000=$ENDLESS_URL
# the default bounds (1,000,000 entries: a thousand pages of this server)
read -r rc rss < <(peak_rss s3.out timeout 60 "$LAZYIMG" ls --s3-endpoint "$E1000" s3://b/p)
expect_eq "ls of the endless bucket fails (not killed by the timeout)" 1 "$rc"
grep -qx "lazyimg: s3://b/p: S3 listing of s3://b/p/ exceeded 1000000 entries (set LAZYIMG_S3_LIST_MAX_ENTRIES to allow more)" s3.out ||
    fail "no clear error for the endless listing" "$(cat s3.out)"
((rss < 160 * 1024)) || fail "ls of the endless bucket peaked at $rss KiB"
ok "endless S3 listing: stops at 1,000,000 entries, peak RSS $rss KiB"
rc=0
LAZYIMG_S3_LIST_MAX_BYTES=2000000 timeout 60 "$LAZYIMG" mount --no-cache --s3-endpoint "$E1000" s3://b/p mnt >s3.out 2>&1 || rc=$?
expect_eq "mount of the endless bucket fails" 1 "$rc"
grep -q "S3 listing of s3://b/p/ exceeded 2000000 bytes" s3.out || fail "mount: no clear error" "$(cat s3.out)"
! mountpoint -q mnt || fail "the endless bucket was mounted"
start_endless 0
rc=0
# (no prefix: below one, an empty first page would already be "no objects")
LAZYIMG_S3_LIST_MAX_PAGES=300 timeout 60 "$LAZYIMG" ls --s3-endpoint "$ENDLESS_URL" s3://b >s3.out 2>&1 || rc=$?
expect_eq "ls of an endless bucket of empty pages fails" 1 "$rc"
grep -q "S3 listing of s3://b/ exceeded 300 pages" s3.out || fail "no clear error for endless empty pages" "$(cat s3.out)"
pages=$(cat "$W/endless.0.pages")
((pages <= 302)) || fail "the listing went on for $pages pages"
ok "endless S3 listing: the byte and page bounds give clear errors too"
