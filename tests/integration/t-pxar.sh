#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# pxar file archives as directory trees: a v1 archive (root.pxar.didx) and a
# v2 pair (root.mpxar.didx + root.ppxar.didx), written by the tests' own
# encoder (pxar_tool.py) into a datastore, browsed through the mount,
# locally and over nginx: the tree compared with its source byte for byte
# and attribute for attribute (modes, owners, times, symlinks, hardlinks as
# one inode, a FIFO and a device shown as such, xattrs); a file read fetches
# only its chunks; `lazyimg find` reads metadata only (the v2 metadata stream,
# the v1 archive's catalog); a corrupt payload chunk is EIO for the files in it, the
# rest reads on; a malformed archive is EIO for the archive, with a log line.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 diff
. "$(dirname "$0")/lib_remote.sh"
PXAR_TOOL=$T_DIR/pxar_tool.py
T=2025-05-01T08:00:00Z

# --- the source tree
SRC=$W/src
mkdir -p "$SRC/etc/app" "$SRC/var/empty" "$SRC/data"
printf 'hello pxar\n' >"$SRC/etc/app/hello.txt"
printf 'x=1\n' >"$SRC/etc/app/conf"
head -c 3000000 /dev/urandom >"$SRC/data/big.bin"
head -c 70000 /dev/urandom >"$SRC/data/mid.bin"
: >"$SRC/data/empty"
ln "$SRC/data/mid.bin" "$SRC/data/mid.link"
ln -s ../etc/app/hello.txt "$SRC/data/to-hello"
mkfifo "$SRC/var/fifo"
mknod "$SRC/var/null" c 1 3
for i in $(seq 1 300); do printf '%s\n' "$i" >"$SRC/data/n$i"; done
# a name that is not UTF-8 (Latin-1 "café")
printf 'latin-1\n' >"$SRC/data/caf"$'\xe9'
chmod 0640 "$SRC/etc/app/conf"
chown 1234:5678 "$SRC/etc/app/conf"
touch -d '2021-02-03 04:05:06.789' "$SRC/etc/app/hello.txt"
XATTRS=0
# user xattrs and ACLs need a filesystem that keeps them (ext4 does; old tmpfs
# does not): an access ACL with a named user and group, and a default ACL
if python3 - "$SRC" <<'EOF' 2>/dev/null; then
import os, struct, sys
src = sys.argv[1]
os.setxattr(os.path.join(src, "etc/app/hello.txt"), "user.lazyimg", b"shown")
def acl(*entries):
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)
N = 0xffffffff
os.setxattr(os.path.join(src, "etc/app/conf"), "system.posix_acl_access",
            acl((1, 6, N), (2, 4, 4321), (4, 4, N), (8, 6, 777), (0x10, 6, N), (0x20, 0, N)))
os.setxattr(os.path.join(src, "etc/app"), "system.posix_acl_default",
            acl((1, 7, N), (2, 5, 4321), (4, 5, N), (0x10, 5, N), (0x20, 0, N)))
# file capabilities (VFS_CAP_REVISION_2: cap_net_bind_service, effective)
os.setxattr(os.path.join(src, "data/mid.bin"), "security.capability",
            struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0))
EOF
    XATTRS=1
fi

# the root's own metadata: what guards the tree (see the --allow-other check)
chmod 0750 "$SRC"
chown 4321:8765 "$SRC"
((XATTRS)) && python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.rootattr", b"rootval")' "$SRC"
touch -d '2022-03-04 05:06:07.5' "$SRC"

make_image disk.raw rand:64K 1
mkpbs --chunk-size 64K --time $T "$S" drive-scsi0.img=disk.raw >/dev/null
python3 "$PXAR_TOOL" add "$S" "ct/200/$T" "$SRC" --chunk-size 65536 >/dev/null
python3 "$PXAR_TOOL" add "$S" "host/web/$T" "$SRC" --v2 --chunk-size 65536 >/dev/null
# the older ENTRY layout (mtime as u64 nanoseconds), without a catalog
python3 "$PXAR_TOOL" add "$S" "ct/201/$T" "$SRC" --entry-v1 --no-catalog >/dev/null

# compare_tree DIR: DIR is the source tree, as lazyimg shows it
compare_tree() {
    local got=$1
    # (FIFOs and devices: compared by the attribute check below)
    diff -r --no-dereference -x fifo -x null "$SRC" "$got" >diff.out 2>&1 || fail "$got differs from the source" "$(head -20 diff.out)"
    python3 - "$SRC" "$got" "$XATTRS" <<'EOF' || fail "$got: attributes differ from the source"
import os, stat, sys
src, got, xattrs = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
bad = []
for dirpath, dirs, files in os.walk(src):
    for name in dirs + files:
        a = os.path.join(dirpath, name)
        b = os.path.join(got, os.path.relpath(a, src))
        sa, sb = os.lstat(a), os.lstat(b)
        for f in ("st_mode", "st_uid", "st_gid", "st_size"):
            if f == "st_size" and stat.S_ISDIR(sa.st_mode):
                continue  # a directory's size is its filesystem's business
            if getattr(sa, f) != getattr(sb, f):
                bad.append("%s: %s %o != %o" % (b, f, getattr(sa, f), getattr(sb, f)))
        if not stat.S_ISLNK(sa.st_mode) and sa.st_mtime_ns != sb.st_mtime_ns:
            bad.append("%s: mtime %d != %d" % (b, sa.st_mtime_ns, sb.st_mtime_ns))
        if stat.S_ISCHR(sa.st_mode) and sa.st_rdev != sb.st_rdev:
            bad.append("%s: rdev" % b)
        if stat.S_ISLNK(sa.st_mode) and os.readlink(a) != os.readlink(b):
            bad.append("%s: link target" % b)
# the archive's root directory shows the source root's metadata
sa, sb = os.lstat(src), os.lstat(got)
for f in ("st_mode", "st_uid", "st_gid", "st_mtime_ns"):
    if getattr(sa, f) != getattr(sb, f):
        bad.append("the root: %s %o != %o" % (f, getattr(sa, f), getattr(sb, f)))
if xattrs and (os.getxattr(got, "user.rootattr") != b"rootval" or "user.rootattr" not in os.listxattr(got)):
    bad.append("the root: xattr user.rootattr")
if os.lstat(os.path.join(got, "data/mid.bin")).st_ino != os.lstat(os.path.join(got, "data/mid.link")).st_ino:
    bad.append("the hardlinks are two inodes")
if xattrs:
    p = os.path.join(got, "etc/app/hello.txt")
    if os.getxattr(p, "user.lazyimg") != b"shown" or "user.lazyimg" not in os.listxattr(p):
        bad.append("xattr user.lazyimg")
    for rel, name in (("etc/app/conf", "system.posix_acl_access"),
                      ("etc/app", "system.posix_acl_default"),
                      ("data/mid.bin", "security.capability")):
        want = os.getxattr(os.path.join(src, rel), name)
        try:
            have = os.getxattr(os.path.join(got, rel), name)
        except OSError as e:
            have = repr(e)
        if have != want:
            bad.append("%s: %s %r != %r" % (rel, name, have, want))
if bad:
    print("\n".join(bad[:20]))
    sys.exit(1)
EOF
}

lazyimg_mount "$S" "$M" --no-cache
V1=$M/ct/200/$T/root.pxar
V2=$M/host/web/$T/root.pxar
[[ -d $V1 && -d $V2 ]] || fail "the archives are not directories" "$(ls -la "$M/ct/200/$T" "$M/host/web/$T" 2>&1)"
compare_tree "$V1"
ok "v1 archive: the tree, contents and attributes equal the source (xattrs checked: $XATTRS)"
compare_tree "$V2"
ok "v2 split archive: the tree, contents and attributes equal the source"
compare_tree "$M/ct/201/$T/root.pxar"
ok "v1 archive with the older ENTRY layout: the same"
[[ -p $V2/var/fifo && -c $V2/var/null ]] || fail "the FIFO and the device are not shown as such"
expect_eq "the device's numbers" 1:3 "$(stat -c %t:%T "$V2/var/null")"
expect_eq "a lookup of a missing name" "No such file or directory" \
    "$(LC_ALL=C cat "$V2/etc/nope" 2>&1 | sed 's/.*: //' || true)"
ok "FIFO and character device shown as such; missing names are ENOENT"
out=$(python3 "$T_DIR/nlink_check.py" "$M") || fail "directories whose link count is neither 1 nor 2 + subdirectories" "$out"
ok "link counts of directories: 1 or 2 + subdirectories ($out)"
lazyimg_umount "$M"

# --- with --allow-other, the archive root's mode and owner guard its tree
# (the mount checks permissions in the kernel from the attributes it shows:
# hello.txt is 0644, but the root is 0750 of uid 4321)
lazyimg_mount "$S" "$M" --no-cache --allow-other
for v in "$V1" "$V2"; do
    if out=$(setpriv --reuid=65534 --regid=65534 --clear-groups cat "$v/etc/app/hello.txt" 2>&1); then
        fail "uid 65534 read a file under an archive root of mode 0750 (uid 4321)" "$(stat "$v")"
    fi
    grep -q "Permission denied" <<<"$out" || fail "uid 65534: expected EACCES" "$out"
done
expect_eq "root still reads it" "hello pxar" "$(cat "$V1/etc/app/hello.txt")"
ok "--allow-other: another user is refused under an archive root of mode 0750 ($(stat -c '%A %u' "$V1"))"
lazyimg_umount "$M"

# --- over HTTP: a file read fetches only its chunks, not the whole payload
start_nginx "$W"
URL=$NGINX_URL/store
lazyimg_mount "$URL" "$M" --no-cache
: >"$NGINX_LOG"
expect_eq "hello.txt over HTTP" "hello pxar" "$(cat "$M/host/web/$T/root.pxar/etc/app/hello.txt")"
chunks=$(grep -c '/\.chunks/' "$NGINX_LOG" || true)
payload_chunks=$(python3 -c "import os,sys; print(os.path.getsize(sys.argv[1]))" "$S/host/web/$T/root.ppxar.didx")
payload_chunks=$(((payload_chunks - 4096) / 40))
((chunks < payload_chunks / 4)) || fail "reading one small file fetched $chunks chunks (the payload has $payload_chunks)" "$(tail -20 "$NGINX_LOG")"
ok "over nginx: one small file read with $chunks chunk requests (payload stream: $payload_chunks chunks)"
cmp "$M/host/web/$T/root.pxar/data/big.bin" "$SRC/data/big.bin" || fail "big.bin over HTTP differs"
ok "over nginx: a 3 MB file read sequentially, byte-identical"
lazyimg_umount "$M"

# --- lazyimg find: names across snapshots, from the metadata alone
: >"$NGINX_LOG"
"$LAZYIMG" find --snapshot ct/200 --snapshot host/web "$URL" 'hello.txt' >find.out 2>find.err ||
    fail "find failed" "$(cat find.err)"
expect_eq "find: one match per archive" 2 "$(wc -l <find.out)"
grep -q "^host/web/$T  root.pxar/etc/app/hello.txt  11  2021-02-03T04:05:06Z$" find.out ||
    fail "find: the v2 match is not as expected" "$(cat find.out)"
grep -q "^ct/200/$T  root.pxar/etc/app/hello.txt  11 " find.out || fail "find: no v1 match" "$(cat find.out)"
python3 - "$S/host/web/$T/root.ppxar.didx" "$S/ct/200/$T/root.pxar.didx" "$NGINX_LOG" <<'EOF' || fail "find fetched file contents" "$(cat find.err)"
import sys
def digests(path):
    b = open(path, "rb").read()
    return {b[4096 + 40 * i + 8: 4096 + 40 * i + 40].hex() for i in range((len(b) - 4096) // 40)}
log = open(sys.argv[3]).read()
# the v2 payload stream, and the v1 archive (searched through the snapshot's catalog)
hit = [d for d in digests(sys.argv[1]) | digests(sys.argv[2]) if d in log]
sys.exit(1 if hit else 0)
EOF
grep -q "in 2 archives; fetched .*, of file contents none" find.err || fail "find: no summary of what it fetched" "$(cat find.err)"
# a catalog's hardlink names its target, not its size or time: "-", not 0 and 1970
"$LAZYIMG" find --snapshot ct/200 "$URL" 'mid.link' >findh.out 2>findh.err || fail "find mid.link failed" "$(cat findh.err)"
grep -q "^ct/200/$T  root.pxar/data/mid.link  -  -$" findh.out || fail "find: a catalog's hardlink" "$(cat findh.out)"
ok "find through a catalog: a hardlink's size and time shown as unknown ($(cat findh.out))"
"$LAZYIMG" find --json --snapshot host/web "$URL" 'data/n1*' >find.json 2>/dev/null || fail "find --json failed"
python3 - find.json <<'EOF' || fail "find --json: unexpected output" "$(cat find.json)"
import json, sys
m = json.load(open(sys.argv[1]))
paths = sorted(x["path"] for x in m)
assert len(m) == 111, len(m)  # n1, n10..n19, n100..n199
assert all(x["snapshot"].startswith("host/web/") and x["type"] == "file" for x in m), m[:3]
assert "root.pxar/data/n1" in paths and "root.pxar/data/n199" in paths, paths[:5]
EOF
# a name that is not UTF-8: valid UTF-8 JSON all the same, the byte escaped
# as \udce9 (Python's surrogateescape gives it back)
"$LAZYIMG" find --json --snapshot host/web "$URL" 'caf*' >find-latin1.json 2>find-latin1.err || fail "find --json of a Latin-1 name failed" "$(cat find-latin1.err)"
python3 - find-latin1.json <<'EOF' || fail "find --json of a Latin-1 name: unexpected output" "$(od -c find-latin1.json | head -20)"
import json, sys
raw = open(sys.argv[1], "rb").read()
raw.decode("utf-8")  # strict: raises on a byte that is not UTF-8
assert b"caf\\udce9" in raw, raw
m = json.loads(raw)
assert [x["path"].encode("utf-8", "surrogateescape") for x in m] == [b"root.pxar/data/caf\xe9"], m
EOF
ok "find --json: a Latin-1 file name as valid UTF-8 JSON, its byte given back by surrogateescape"
# an archive without a catalog is walked, and find says so
"$LAZYIMG" find --snapshot ct/201 "$URL" 'hello.txt' >find1.out 2>find1.err || fail "find (no catalog) failed" "$(cat find1.err)"
grep -q "^ct/201/$T  root.pxar/etc/app/hello.txt  11 " find1.out || fail "find (no catalog): no match" "$(cat find1.out)"
grep -q "without a catalog: walked" find1.err || fail "find does not say it walked the archive" "$(cat find1.err)"
RC=0
"$LAZYIMG" find "$URL" 'no-such-file' >/dev/null 2>&1 || RC=$?
expect_eq "find without a match exits 1" 1 "$RC"
RC=0
"$LAZYIMG" find --snapshot ct/999 "$URL" 'hello.txt' >/dev/null 2>find2.err || RC=$?
expect_eq "find --snapshot naming nothing in the store exits 4" 4 "$RC"
grep -q "find: --snapshot ct/999: no snapshot or group of that name" find2.err ||
    fail "find --snapshot ct/999: no message naming it" "$(cat find2.err)"
RC=0
"$LAZYIMG" find "$W/no-such-store" 'hello.txt' >/dev/null 2>&1 || RC=$?
expect_eq "find in a store that cannot be read exits 4 (not 1, no match)" 4 "$RC"
ok "find: matches in both archives with size and mtime (v1 through its catalog), no chunk of file contents fetched, --json and --snapshot"

# --- a corrupt payload chunk: EIO for the file in it, the rest reads on
python3 - "$S" "$S/host/web/$T/root.ppxar.didx" <<'EOF'
import os, struct, sys
ds, didx = sys.argv[1], sys.argv[2]
b = open(didx, "rb").read()
# the chunk in the middle of the payload stream (inside big.bin)
n = (len(b) - 4096) // 40
d = b[4096 + 40 * (n // 2) + 8: 4096 + 40 * (n // 2) + 40].hex()
p = os.path.join(ds, ".chunks", d[:4], d)
c = bytearray(open(p, "rb").read())
c[-1] ^= 0xff
open(p, "wb").write(c)
EOF
lazyimg_mount "$S" "$M" --no-cache
if cat "$M/host/web/$T/root.pxar/data/big.bin" >/dev/null 2>big.err; then
    fail "a file over a corrupt chunk read without an error"
fi
grep -q "Input/output error" big.err || fail "the corrupt chunk was not EIO" "$(cat big.err)"
expect_eq "another file reads on" "hello pxar" "$(cat "$M/host/web/$T/root.pxar/etc/app/hello.txt")"
cmp "$M/ct/200/$T/root.pxar/data/big.bin" "$SRC/data/big.bin" || fail "the v1 archive is affected"
ok "a corrupt payload chunk: EIO for its file; other files and archives read on"
lazyimg_umount "$M"

# --- a malformed archive: EIO on the archive, logged, the mount goes on
python3 - "$S" "$S/ct/200/$T/root.pxar.didx" <<'EOF'
import hashlib, os, struct, sys, zlib
ds, didx = sys.argv[1], sys.argv[2]
b = open(didx, "rb").read()
n = (len(b) - 4096) // 40
# the last chunk holds the root's goodbye tail: rewrite it with a bad marker
d = b[4096 + 40 * (n - 1) + 8: 4096 + 40 * n].hex()
p = os.path.join(ds, ".chunks", d[:4], d)
raw = open(p, "rb").read()
data = bytearray(raw[12:])
data[-24] ^= 0x55
new = hashlib.sha256(data).digest()
q = os.path.join(ds, ".chunks", new.hex()[:4])
os.makedirs(q, exist_ok=True)
open(os.path.join(q, new.hex()), "wb").write(raw[:8] + struct.pack("<I", zlib.crc32(data)) + bytes(data))
body = bytearray(b[4096:])
body[40 * (n - 1) + 8: 40 * n] = new
head = bytearray(b[:4096])
head[32:64] = hashlib.sha256(body).digest()
open(didx, "wb").write(bytes(head) + bytes(body))
# the manifest's checksum of the index follows
import json
mp = os.path.join(os.path.dirname(didx), "index.json.blob")
m = json.loads(open(mp, "rb").read()[12:])
for f in m["files"]:
    if f["filename"] == "root.pxar.didx":
        f["csum"] = hashlib.sha256(body).hexdigest()
mb = json.dumps(m).encode()
open(mp, "wb").write(bytes([66, 171, 56, 7, 190, 131, 112, 161]) + struct.pack("<I", zlib.crc32(mb)) + mb)
EOF
lazyimg_mount_fg "$S" "$M" "$W/daemon.log" -- --no-cache
if ls "$M/ct/200/$T/root.pxar/" >ls.out 2>ls.err; then
    fail "a malformed archive listed without an error" "$(cat ls.out)"
fi
grep -q "Input/output error" ls.err || fail "the malformed archive was not EIO" "$(cat ls.err)"
for i in 1 2 3; do
    ! stat "$M/ct/200/$T/root.pxar/etc" >/dev/null 2>&1 || fail "a lookup in a malformed archive succeeded"
done
expect_eq "the other archive reads on" "hello pxar" "$(cat "$M/host/web/$T/root.pxar/etc/app/hello.txt")"
lazyimg_umount "$M"
expect_eq "the malformed archive is logged once, naming the rule" 1 "$(grep -c "goodbye tail" "$W/daemon.log")"
ok "a malformed archive: EIO, logged once with the rule it breaks; the rest of the mount reads on"

# --- two children of one name in a directory: EIO, not a name listed twice
# (one of which no lookup could reach)
mkdir -p dupsrc/d
echo first >dupsrc/d/dup1
echo second >dupsrc/d/dup2
python3 - "$S" "ct/202/$T" dupsrc "$T_DIR" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[4])
import pxar_tool
real = os.fsencode
pxar_tool.os.fsencode = lambda n: b"dup" if n in ("dup1", "dup2") else real(n)
sys.argv = ["pxar_tool.py", "add"] + sys.argv[1:4]
pxar_tool.main()
EOF
lazyimg_mount_fg "$S" "$M" "$W/dup.log" -- --no-cache
if ls "$M/ct/202/$T/root.pxar/d" >ls.out 2>ls.err; then
    fail "a directory with two children named dup listed without an error" "$(cat ls.out)"
fi
grep -q "Input/output error" ls.err || fail "two children of one name: not EIO" "$(cat ls.err)"
lazyimg_umount "$M"
grep -q 'two children named "dup"' "$W/dup.log" || fail "two children of one name: not logged" "$(cat "$W/dup.log")"
ok "two children of one name in a directory: EIO, logged: $(grep -m1 -o 'directory at.*' "$W/dup.log")"
