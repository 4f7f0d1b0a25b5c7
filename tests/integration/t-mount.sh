#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The mounted tree and its contents: groups, namespaces, latest links,
# unfinished snapshots and stray files, byte-exact images and config blobs,
# sizes, read-only-ness, `lazyimg ls` (table and JSON), encrypted archives,
# and the --help/--version outputs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The help outputs need no FUSE: check them first.
for cmd in "mount --help" "ls --help" "umount --help" "--help" "--version"; do
    # shellcheck disable=SC2086
    out=$("$LAZYIMG" $cmd 2>&1) || fail "lazyimg $cmd exits non-zero" "$out"
    [[ -n "$out" ]] || fail "lazyimg $cmd prints nothing"
    ok "lazyimg $cmd exits 0 ($(head -1 <<<"$out"))"
done
grep -q '^lazyimg [0-9]' <<<"$("$LAZYIMG" --version)" || fail "lazyimg --version does not print 'lazyimg VERSION'"
ok "lazyimg --version prints 'lazyimg VERSION'"

require_fuse
require_cmd python3
setup_workdir
cd "$W"
S=$W/store

T1=2025-01-10T08:00:00Z
T2=2025-02-20T09:30:15Z
T3=2025-03-01T00:00:00Z # unfinished: newer than T2, must not become latest
TC=2025-01-15T12:00:00Z
TP=$T1 # same group and time as the root vm/100: namespaces must keep them apart
TE=2025-12-31T23:59:59Z # newer than all root snapshots: "latest" is per group and namespace

# --- sources --------------------------------------------------------------
make_preset a1.raw 64K 1
cp --sparse=always a1.raw a2.raw
make_image patch.raw rand:64K,text:64K 7
# change chunks 0, 5 and 20 of the second snapshot; the rest stays shared
dd if=patch.raw of=a2.raw bs=64K count=1 seek=0 conv=notrunc status=none
dd if=patch.raw of=a2.raw bs=64K skip=1 count=1 seek=5 conv=notrunc status=none
dd if=patch.raw of=a2.raw bs=64K count=1 seek=20 conv=notrunc status=none
make_image b.raw rand:100K,zero:192K,text:77K 3 # second disk of the second snapshot
make_image ct.raw text:128K,zero:64K,rand:65K 4
make_image prod.raw rand:64K,zero:128K,rand:1K 5
make_image eu.raw zero:64K,text:64K 6
cat >conf1 <<'EOF'
boot: order=scsi0
cores: 2
memory: 2048
name: web1
scsi0: local-lvm:vm-100-disk-0,size=1529173
EOF
sed 's/memory: 2048/memory: 4096/; $ a scsi1: local-lvm:vm-100-disk-1,size=376832' conf1 >conf2
printf 'arch: amd64\nhostname: ct200\n' >ctconf

# --- datastore --------------------------------------------------------------
# a full datastore layout (.chunks/0000..ffff, made by mkpbs); the other tests
# use new_store (lib.sh) to save time
mkpbs --chunk-size 64K --time $T1 "$S" drive-scsi0.img=a1.raw qemu-server.conf=conf1 >/dev/null
sum=$(mkpbs --chunk-size 64K --time $T2 "$S" drive-scsi0.img=a2.raw drive-scsi1.img=b.raw \
    qemu-server.conf=conf2)
n_chunks=$(summary_field "$sum" chunks)
n_new=$(summary_field "$sum" new)
# a2 changes 3 chunks; b.raw has 6 chunks
((n_new <= 3 + 6 && n_new < n_chunks / 2)) ||
    fail "second vm/100 snapshot should share most chunks with the first" "$sum"
ok "second snapshot shares chunks with the first ($sum)"
mkpbs --chunk-size 64K --time $T3 "$S" drive-scsi0.img=a1.raw >/dev/null
rm "$S/vm/100/$T3/index.json.blob" # unfinished backup: no manifest yet
head -c 1000 /dev/urandom >"$S/vm/100/$T1/x.img.tmp_fidx"
mkpbs --chunk-size 64K --type ct --id 200 --time $TC "$S" root.img=ct.raw pct.conf=ctconf >/dev/null
mkpbs --chunk-size 64K --ns prod --id 100 --time $TP "$S" drive-scsi0.img=prod.raw >/dev/null
mkpbs --chunk-size 64K --ns prod/eu --id 100 --time $TE "$S" drive-virtio0.img=eu.raw >/dev/null

# --- lazyimg ls -----------------------------------------------------------
sort >expect.ls <<EOF
ct/200/$TC pct.conf
ct/200/$TC root.img
ns/prod/ns/eu/vm/100/$TE drive-virtio0.img
ns/prod/vm/100/$TP drive-scsi0.img
vm/100/$T1 drive-scsi0.img
vm/100/$T1 qemu-server.conf
vm/100/$T2 drive-scsi0.img
vm/100/$T2 drive-scsi1.img
vm/100/$T2 qemu-server.conf
EOF
"$LAZYIMG" ls "$S" >ls.out 2>ls.err || fail "lazyimg ls $S failed" "$(cat ls.err)"
head -1 ls.out | grep -q '^SNAPSHOT  *ARCHIVE' || fail "lazyimg ls: no table header" "$(head -1 ls.out)"
tail -n +2 ls.out | awk '{print $1, $2}' | sort >ls.pairs
expect_same_file "lazyimg ls lists exactly the finished snapshots and their archives" expect.ls ls.pairs
awk 'NR > 1 && $5 != "none" {bad = 1} END {exit bad}' ls.out ||
    fail "lazyimg ls: crypt column should be 'none' for every archive" "$(cat ls.out)"
ok "lazyimg ls: crypt is 'none' for every archive"

"$LAZYIMG" ls --json "$S" >ls.json 2>ls.err || fail "lazyimg ls --json $S failed" "$(cat ls.err)"
python3 - ls.json >ls.jpairs <<'EOF' || fail "lazyimg ls --json: not the expected JSON" "$(head -40 ls.json)"
import json, sys
snaps = json.load(open(sys.argv[1]))
assert isinstance(snaps, list), "not an array"
for s in snaps:
    for f in s["files"]:
        assert f["crypt-mode"] == "none", f
        print(s["path"], f["name"])
EOF
sort -o ls.jpairs ls.jpairs
expect_same_file "lazyimg ls --json lists exactly the finished snapshots and their archives" expect.ls ls.jpairs
python3 - ls.json "$(stat -c %s a1.raw)" "$(stat -c %s a2.raw)" "$(stat -c %s b.raw)" <<EOF ||
import json, sys
snaps = {s["path"]: s for s in json.load(open(sys.argv[1]))}
s1, s2 = snaps["vm/100/$T1"], snaps["vm/100/$T2"]
assert s2["backup-type"] == "vm" and s2["backup-id"] == "100" and s2["time"] == "$T2", s2
assert s2["backup-time"] == $(date -ud $T2 +%s), s2
assert snaps["ns/prod/vm/100/$TP"]["ns"] == "prod", snaps["ns/prod/vm/100/$TP"]
assert snaps["ns/prod/ns/eu/vm/100/$TE"]["ns"] == "prod/eu", snaps["ns/prod/ns/eu/vm/100/$TE"]
img = {f["name"]: f for f in s2["files"]}
assert img["drive-scsi0.img"]["size"] == int(sys.argv[3]), img
assert img["drive-scsi1.img"]["size"] == int(sys.argv[4]), img
assert img["drive-scsi0.img"]["kind"] == "image" and img["qemu-server.conf"]["kind"] == "blob", img
assert {f["name"]: f for f in s1["files"]}["drive-scsi0.img"]["size"] == int(sys.argv[2]), s1
EOF
    fail "lazyimg ls --json: wrong fields (type, id, time, ns, size, kind)" "$(cat ls.json)"
ok "lazyimg ls --json: type, id, time, ns, kind and image sizes are right"

# --- mount: tree ----------------------------------------------------------
M=$W/mnt
lazyimg_mount "$S" "$M"
ok "lazyimg mount returns with $M mounted"

# sizes first, on a fresh mount (nothing read yet)
for f in "vm/100/$T1/drive-scsi0.img a1.raw" "vm/100/$T2/drive-scsi0.img a2.raw" \
    "vm/100/$T2/drive-scsi1.img b.raw" "ct/200/$TC/root.img ct.raw" \
    "ns/prod/vm/100/$TP/drive-scsi0.img prod.raw" "ns/prod/ns/eu/vm/100/$TE/drive-virtio0.img eu.raw" \
    "vm/100/$T1/qemu-server.conf conf1" "vm/100/$T2/qemu-server.conf conf2" "ct/200/$TC/pct.conf ctconf"; do
    read -r path src <<<"$f"
    expect_eq "st_size of $path (before any read)" "$(stat -c %s "$src")" "$(stat -c %s "$M/$path")"
done

# (each image has its <image>.parts directory: empty, these disks have no table)
sort >expect.tree <<EOF
.
./ct
./ct/200
./ct/200/$TC
./ct/200/$TC/pct.conf
./ct/200/$TC/root.img
./ct/200/$TC/root.img.parts
./ct/200/latest
./ns
./ns/prod
./ns/prod/ns
./ns/prod/ns/eu
./ns/prod/ns/eu/vm
./ns/prod/ns/eu/vm/100
./ns/prod/ns/eu/vm/100/$TE
./ns/prod/ns/eu/vm/100/$TE/drive-virtio0.img
./ns/prod/ns/eu/vm/100/$TE/drive-virtio0.img.parts
./ns/prod/ns/eu/vm/100/latest
./ns/prod/vm
./ns/prod/vm/100
./ns/prod/vm/100/$TP
./ns/prod/vm/100/$TP/drive-scsi0.img
./ns/prod/vm/100/$TP/drive-scsi0.img.parts
./ns/prod/vm/100/latest
./vm
./vm/100
./vm/100/$T1
./vm/100/$T1/drive-scsi0.img
./vm/100/$T1/drive-scsi0.img.parts
./vm/100/$T1/qemu-server.conf
./vm/100/$T2
./vm/100/$T2/drive-scsi0.img
./vm/100/$T2/drive-scsi0.img.parts
./vm/100/$T2/drive-scsi1.img
./vm/100/$T2/drive-scsi1.img.parts
./vm/100/$T2/qemu-server.conf
./vm/100/latest
EOF
(cd "$M" && find . | sort) >tree.out
expect_same_file "mounted tree: groups, namespaces, latest; no unfinished snapshot, no stray files" \
    expect.tree tree.out
(cd "$M" && find . -printf '%y %m %p\n' | sort) >types.out
awk '($1 == "d" && $2 != "555") || ($1 == "f" && $2 != "444") || ($1 != "d" && $1 != "f" && $1 != "l") {print; bad = 1} END {exit bad}' \
    types.out || fail "modes: directories should be 555, files 444" "$(cat types.out)"
ok "directories are r-x (555), files r-- (444)"
ls "$M/vm/100/$T1" >ls1.out
printf 'drive-scsi0.img\ndrive-scsi0.img.parts\nqemu-server.conf\n' >ls1.exp
expect_same_file "ls of a snapshot dir shows the archives without .fidx/.blob suffix" ls1.exp ls1.out

for g in vm/100:$T2 ct/200:$TC ns/prod/vm/100:$TP ns/prod/ns/eu/vm/100:$TE; do
    [[ -L "$M/${g%%:*}/latest" ]] || fail "$M/${g%%:*}/latest is not a symlink"
    expect_eq "${g%%:*}/latest -> newest finished snapshot" "${g#*:}" "$(readlink "$M/${g%%:*}/latest")"
done
cmp "$M/vm/100/latest/drive-scsi0.img" a2.raw || fail "vm/100/latest/drive-scsi0.img (through the link) differs from a2.raw"
ok "latest/ resolves to the newest snapshot's files"
expect_eq "snapshot dir mtime is the backup time" "$(date -ud $T2 +%s)" "$(stat -c %Y "$M/vm/100/$T2")"

# --- contents -------------------------------------------------------------
for f in "vm/100/$T1/drive-scsi0.img a1.raw" "vm/100/$T2/drive-scsi0.img a2.raw" \
    "vm/100/$T2/drive-scsi1.img b.raw" "ct/200/$TC/root.img ct.raw" \
    "ns/prod/vm/100/$TP/drive-scsi0.img prod.raw" "ns/prod/ns/eu/vm/100/$TE/drive-virtio0.img eu.raw"; do
    read -r path src <<<"$f"
    out=$(cmp "$M/$path" "$src" 2>&1) || fail "image $path differs from its source $src" "$out"
    ok "image $path is byte-identical to $src"
done
for f in "vm/100/$T1/qemu-server.conf conf1" "vm/100/$T2/qemu-server.conf conf2" "ct/200/$TC/pct.conf ctconf"; do
    read -r path src <<<"$f"
    expect_same_file "config blob $path is shown decoded with its exact content" "$src" "$M/$path"
    expect_eq "st_size of $path (after reading)" "$(stat -c %s "$src")" "$(stat -c %s "$M/$path")"
done
# an unaligned read in the middle crosses chunk boundaries
cmp <(read_range "$M/vm/100/$T2/drive-scsi0.img" 100000 300001) <(read_range a2.raw 100000 300001) ||
    fail "unaligned read [100000, 400001) of vm/100/$T2/drive-scsi0.img differs from the source"
ok "unaligned read across chunk boundaries is right"
# reads at and past EOF
sz=$(stat -c %s a1.raw)
expect_eq "read at EOF returns 0 bytes" 0 "$(read_range "$M/vm/100/$T1/drive-scsi0.img" "$sz" 4096 | wc -c)"
expect_eq "read across EOF is short" 10 "$(read_range "$M/vm/100/$T1/drive-scsi0.img" $((sz - 10)) 4096 | wc -c)"

# mmap: images bypass the page cache by default, so MAP_PRIVATE maps them and
# MAP_SHARED is refused (ENODEV); with --page-cache (below) MAP_SHARED works
cat >mmap_check.py <<'EOF'
import errno, hashlib, mmap, sys
path, src, mode = sys.argv[1:4]
flags = mmap.MAP_SHARED if mode == "shared" else mmap.MAP_PRIVATE
want = hashlib.sha256(open(src, "rb").read()).hexdigest()
with open(path, "rb") as f:
    try:
        m = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    except OSError as e:
        print("mmap failed:", errno.errorcode.get(e.errno, e.errno))
        sys.exit(3 if e.errno == errno.ENODEV else 1)
    with m:
        got = hashlib.sha256(m).hexdigest()
sys.exit(0 if got == want else 2)
EOF
python3 mmap_check.py "$M/vm/100/$T2/drive-scsi0.img" a2.raw private ||
    fail "mmap(MAP_PRIVATE) of vm/100/$T2/drive-scsi0.img differs from the source or fails"
ok "mmap(MAP_PRIVATE) of an image reads the source bytes"
rc=0
python3 mmap_check.py "$M/vm/100/$T2/drive-scsi0.img" a2.raw shared >/dev/null || rc=$?
expect_eq "mmap(MAP_SHARED) of an image without --page-cache fails with ENODEV (exit 3)" 3 "$rc"
# statfs works on the mount
stat -f "$M" >/dev/null || fail "statfs (stat -f) on the mount failed"
ok "statfs on the mount works"

# --- read-only ------------------------------------------------------------
python3 - "$M" "vm/100/$T1" <<'EOF' || fail "mount is not read-only (see above)"
import errno, os, sys
m, snap = sys.argv[1], sys.argv[2]
img = os.path.join(m, snap, "drive-scsi0.img")
tries = {
    "open O_WRONLY": lambda: os.open(img, os.O_WRONLY),
    "open O_RDWR": lambda: os.open(img, os.O_RDWR),
    "truncate": lambda: os.truncate(img, 0),
    "create file": lambda: os.open(os.path.join(m, snap, "new"), os.O_WRONLY | os.O_CREAT, 0o644),
    "mkdir": lambda: os.mkdir(os.path.join(m, "vm", "999")),
    "unlink": lambda: os.unlink(img),
    "rename": lambda: os.rename(img, img + ".x"),
    "chmod": lambda: os.chmod(img, 0o666),
    "symlink": lambda: os.symlink("x", os.path.join(m, "vm", "lnk")),
    "setxattr": lambda: os.setxattr(img, "user.x", b"1"),
}
bad = 0
for what, fn in tries.items():
    try:
        fn()
        print(f"    {what}: succeeded on the read-only mount")
        bad = 1
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            print(f"    {what}: {errno.errorcode[e.errno]}, expected EROFS or EACCES")
            bad = 1
sys.exit(bad)
EOF
ok "writes, creates, mkdir, unlink, rename, chmod, symlink, setxattr fail with EROFS/EACCES"
cmp "$M/vm/100/$T1/drive-scsi0.img" a1.raw || fail "image changed after the write attempts"
ok "image unchanged after the write attempts"

# --- unmount ---------------------------------------------------------------
pid=$MOUNT_PID
lazyimg_umount "$M"
ok "lazyimg umount: mount gone and daemon $pid exited"
[[ -z "$(ls -A "$M")" ]] || fail "mountpoint not empty after unmount"
ok "mountpoint is an empty directory again"

# --- every chunk size and blob encoding ---------------------------------------
F=$W/fstore
new_store "$F"
make_image f.raw rand:700K,zero:2M,text:1M,rand:3K,zero:1536K,repeat:500K,text:333K 8
sizes=(64K 128K 256K 512K 1M 2M 4M)
for i in "${!sizes[@]}"; do
    mkpbs --chunk-size "${sizes[i]}" --id $((400 + i)) --time $T1 "$F" drive-scsi0.img=f.raw >/dev/null
done
mkpbs --chunk-size 64K --no-compress --id 410 --time $T1 "$F" drive-scsi0.img=a1.raw qemu-server.conf=conf1 >/dev/null
mkpbs --chunk-size 256K --zstd-no-content-size --id 411 --time $T1 "$F" drive-scsi0.img=a1.raw \
    qemu-server.conf=conf1 >/dev/null
lazyimg_mount "$F" "$M"
for i in "${!sizes[@]}"; do
    out=$(cmp "$M/vm/$((400 + i))/$T1/drive-scsi0.img" f.raw 2>&1) || fail "chunk size ${sizes[i]}: image differs from the source" "$out"
done
ok "chunk sizes ${sizes[*]}: images byte-identical to the source"
for id in 410:--no-compress 411:--zstd-no-content-size; do
    out=$(cmp "$M/vm/${id%%:*}/$T1/drive-scsi0.img" a1.raw 2>&1) || fail "${id#*:}: image differs from the source" "$out"
    cmp -s "$M/vm/${id%%:*}/$T1/qemu-server.conf" conf1 || fail "${id#*:}: config blob differs from the source"
    ok "mkpbs ${id#*:}: image and config blob read back exactly"
done
lazyimg_umount "$M"
# --page-cache: the same images through the kernel's page cache, and
# mmap(MAP_SHARED), which the default refuses, works; as root, the kernel
# readahead of the mount (its own bdi) is raised to --readahead-kb, and that
# of the filesystem under the mountpoint is left alone
under=$(stat -c '%Hd:%Ld' "$M")
under_ra=/sys/class/bdi/$under/read_ahead_kb
under_was=$(cat "$under_ra" 2>/dev/null || true)
lazyimg_mount "$F" "$M" --page-cache --readahead-kb 4096
if ((EUID == 0)); then
    ra=/sys/class/bdi/$(mountpoint -d "$M")/read_ahead_kb
    for _ in $(seq 50); do
        [[ $(cat "$ra") == 4096 ]] && break
        sleep 0.1
    done
    now=$(cat "$under_ra" 2>/dev/null || true)
    if [[ $now != "$under_was" ]]; then
        echo "$under_was" >"$under_ra"
        fail "--readahead-kb 4096 changed the readahead of the filesystem under the mountpoint ($under: $under_was -> $now KiB)"
    fi
    expect_eq "--page-cache --readahead-kb 4096, as root: the mount's own readahead (KiB)" 4096 "$(cat "$ra")"
fi
for i in 0 6; do
    out=$(cmp "$M/vm/$((400 + i))/$T1/drive-scsi0.img" f.raw 2>&1) ||
        fail "--page-cache, chunk size ${sizes[i]}: image differs from the source" "$out"
done
python3 mmap_check.py "$M/vm/406/$T1/drive-scsi0.img" f.raw shared ||
    fail "--page-cache: mmap(MAP_SHARED) of an image fails or differs from the source"
ok "--page-cache: images read back exactly, also through mmap(MAP_SHARED)"
lazyimg_umount "$M"

# --- encrypted snapshot -------------------------------------------------------
E=$W/estore
KEY=$(printf 'ab%.0s' {1..32})
new_store "$E"
mkpbs --chunk-size 64K --id 300 --time $T1 --encrypt-key "$KEY" "$E" drive-scsi0.img=a1.raw >/dev/null
mkpbs --chunk-size 64K --id 301 --time $T1 "$E" drive-scsi0.img=b.raw >/dev/null
"$LAZYIMG" ls "$E" >els.out 2>&1 || fail "lazyimg ls of a store with an encrypted snapshot failed" "$(cat els.out)"
awk -v t="vm/300/$T1" '$1 == t && $2 == "drive-scsi0.img" && $5 == "encrypt" {f = 1} END {exit !f}' els.out ||
    fail "lazyimg ls: encrypted archive not listed with crypt 'encrypt'" "$(cat els.out)"
ok "lazyimg ls lists the encrypted archive with crypt 'encrypt'"
"$LAZYIMG" ls --json "$E" >els.json 2>&1 || fail "lazyimg ls --json failed" "$(cat els.json)"
python3 - els.json "vm/300/$T1" <<'EOF' || fail "lazyimg ls --json: crypt-mode of the encrypted archive" "$(cat els.json)"
import json, sys
s = {s["path"]: s for s in json.load(open(sys.argv[1]))}[sys.argv[2]]
f = {f["name"]: f for f in s["files"]}["drive-scsi0.img"]
assert f["crypt-mode"] == "encrypt", f
EOF
ok "lazyimg ls --json: crypt-mode 'encrypt'"
lazyimg_mount "$E" "$M"
[[ -e "$M/vm/300/$T1/drive-scsi0.img" ]] || fail "encrypted image not shown in the mount"
if out=$(cat "$M/vm/300/$T1/drive-scsi0.img" 2>&1 >/dev/null); then
    fail "cat of an encrypted image (no key) succeeded"
fi
grep -q "Required key not available" <<<"$out" || fail "cat of an encrypted image: wrong error" "$out"
ok "encrypted image refuses to open: $out"
cmp "$M/vm/301/$T1/drive-scsi0.img" b.raw || fail "plain image next to an encrypted one differs"
ok "plain image in the same store still reads fine"
lazyimg_umount "$M"
ok "unmounted"

# --- root's umount unmounts the lazyimg mount it checked, nothing else -------------
# The mount is busy (a file open in it), so umount tries again for 2 s; a
# directory on its path replaced meanwhile by a symlink to a place where
# another filesystem is mounted under the same name must not get that one
# unmounted instead.
mkdir -p race/a/mnt victim/mnt
mount -t tmpfs -o size=1M lazyimg-victim victim/mnt
add_cleanup "umount -l '$W/victim/mnt' 2>/dev/null"
lazyimg_mount "$S" "$W/race/a/mnt"
exec {held}<"$W/race/a/mnt/vm/100/$T1/drive-scsi0.img"
rc=0
"$LAZYIMG" umount --timeout 2 "$W/race/a/mnt" >race.out 2>&1 &
up=$!
sleep 0.6
mv race/a race/a.old
ln -s "$W/victim" race/a
wait "$up" || rc=$?
mountpoint -q victim/mnt || fail "root's umount unmounted the tmpfs it was redirected to" "$(cat race.out)"
mountpoint -q race/a.old/mnt || fail "the lazyimg mount went, though it was busy" "$(cat race.out)"
((rc != 0)) || fail "umount said it succeeded" "$(cat race.out)"
exec {held}<&-
lazyimg_umount "$W/race/a.old/mnt"
umount victim/mnt
ok "umount of a path changed while it waited for a busy mount: $(tail -1 race.out)"
