#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Errors: damaged chunks give EIO on their own ranges only (never wrong
# bytes) and the daemon keeps serving; a damaged index fails the image, not
# the mount; CLI errors are one clear line and exit status 1; SIGTERM
# unmounts cleanly; a datastore out of the page cache is read with O_DIRECT,
# the same bytes, a damaged chunk still EIO.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 unshare
T=2025-05-05T05:05:05Z
CS=65536

# vm/100: healthy reference; vm/101..104: one kind of chunk damage each;
# vm/105: damaged index. Different seeds: no data chunk is shared.
make_preset good.raw 64K 1
LAYOUT=rand:256K,zero:128K,rand:192K,text:100K # chunks 0-3 rand, 4-5 zero, 6-8 rand, 9-10 text
for i in 1 2 3 4 5; do
    make_image e$i.raw $LAYOUT $((10 + i))
done
mkpbs --chunk-size 64K --id 100 --time $T "$S" drive-scsi0.img=good.raw >/dev/null
for i in 1 2 3 4 5; do
    mkpbs --chunk-size 64K --id $((100 + i)) --time $T "$S" drive-scsi0.img=e$i.raw >/dev/null
done
fidx() { echo "$S/vm/$1/$T/drive-scsi0.img.fidx"; }
img() { echo "$M/vm/$1/$T/drive-scsi0.img"; }

# bad_set ID IDX...: all chunk indices of vm/ID whose digest is one of those of IDX...
# (and checks that no other index of the store uses those chunks)
bad_set() {
    local id=$1 f d j=0 set=() digs=()
    shift
    f=$(fidx "$id")
    for j in "$@"; do
        digs+=("$(fidx_digest "$f" "$j")")
    done
    j=0
    while read -r d; do
        for x in "${digs[@]}"; do
            [[ $d == "$x" ]] && set+=("$j")
        done
        j=$((j + 1))
    done < <(fidx_digests "$f")
    for x in "${digs[@]}"; do
        for g in "$S"/vm/*/"$T"/*.fidx; do
            [[ $g == "$f" ]] && continue
            ! fidx_has "$g" "$x" || fail "test setup: chunk $x of vm/$id is shared with $g"
        done
    done
    echo "${set[*]}"
}

# check_chunks DESC ID SRC "BAD..." [direct]: reads every chunk of vm/ID on
# its own; the BAD ones must fail with EIO and return no bytes, all others
# must equal SRC.
check_chunks() {
    local desc=$1 id=$2 src=$3 bad=" $4 " fl=${5:-} size n j off len nbad=0
    size=$(stat -c %s "$src")
    n=$(((size + CS - 1) / CS))
    for ((j = 0; j < n; j++)); do
        off=$((j * CS))
        len=$((size - off < CS ? size - off : CS))
        if read_range "$(img "$id")" $off $len "$fl" >chunk.bin 2>chunk.err; then
            [[ $bad != *" $j "* ]] || fail "$desc: chunk $j [$off, +$len) of vm/$id read without error" \
                "got $(stat -c %s chunk.bin) bytes, sha256 $(sha_of chunk.bin), source sha256 $(read_range "$src" $off $len | sha256sum | cut -c1-64)"
            cmp -s chunk.bin <(read_range "$src" $off $len) ||
                fail "$desc: chunk $j [$off, +$len) of vm/$id differs from the source"
        else
            [[ $bad == *" $j "* ]] || fail "$desc: chunk $j [$off, +$len) of vm/$id failed to read, but it is intact" "$(cat chunk.err)"
            grep -q "Input/output error" chunk.err || fail "$desc: chunk $j of vm/$id: expected EIO" "$(cat chunk.err)"
            [[ ! -s chunk.bin ]] || fail "$desc: chunk $j of vm/$id: failed read still returned $(stat -c %s chunk.bin) bytes"
            nbad=$((nbad + 1))
        fi
    done
    ok "$desc: chunks {${4// /,}} of vm/$id give EIO, the other $((n - nbad)) equal the source${fl:+ ($fl)}"
}

# --- damage the chunks ------------------------------------------------------
# vm/101: a byte of the payload flipped, in a random (stored) and a text
# (compressed) chunk
BAD1=$(bad_set 101 1 9)
for j in 1 9; do
    p=$(chunk_path "$S" "$(fidx_digest "$(fidx 101)" $j)")
    sz=$(stat -c %s "$p")
    off=$((12 + (sz - 12) / 2)) # after magic and CRC
    b=$(od -An -tu1 -j $off -N 1 "$p" | tr -d ' ')
    printf '%b' "$(printf '\\%03o' $((b ^ 0x55)))" | dd of="$p" bs=1 seek=$off conv=notrunc status=none
done
# vm/102: the chunk file is missing
BAD2=$(bad_set 102 2)
MISSING=$(chunk_path "$S" "$(fidx_digest "$(fidx 102)" 2)")
mv "$MISSING" missing-chunk.saved
# vm/103: the chunk file is empty
BAD3=$(bad_set 103 6)
: >"$(chunk_path "$S" "$(fidx_digest "$(fidx 103)" 6)")"
# vm/104: the chunk file is a valid blob of other data (chunk 7 over chunk 3)
BAD4=$(bad_set 104 3)
cp "$(chunk_path "$S" "$(fidx_digest "$(fidx 104)" 7)")" "$(chunk_path "$S" "$(fidx_digest "$(fidx 104)" 3)")"
# vm/105: the index's digest list modified (first two digests swapped), so
# the index checksum no longer matches; serving it would give wrong data
f=$(fidx 105)
d0=$(fidx_digest "$f" 0)
d1=$(fidx_digest "$f" 1)
[[ $d0 != "$d1" ]] || fail "test setup: first chunks of e5.raw are equal"
python3 - "$f" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096)
    a, b = f.read(32), f.read(32)
    f.seek(4096)
    f.write(b + a)
EOF
[[ $(fidx_digest "$f" 0) == "$d1" ]] || fail "test setup: digest swap in $f did not happen"

# vm/106..111: more damaged indexes (all images of one size and chunk size)
for i in 6 7 8 9 10 11; do
    make_image e$i.raw $LAYOUT $((10 + i))
    mkpbs --chunk-size 64K --id $((100 + i)) --time $T "$S" drive-scsi0.img=e$i.raw >/dev/null
done
# index of another backup of the same size (vm/110's) in place of vm/111's
cp "$(fidx 110)" "$(fidx 111)"
truncate -s -32 "$(fidx 106)"                                         # one digest short
printf 'NOTFIDX!' | dd of="$(fidx 107)" conv=notrunc status=none       # bad magic
truncate -s 4096 "$(fidx 108)"                                        # header only
python3 - "$(fidx 109)" "$(fidx 110)" <<'EOF'
import struct, sys
for path, field, f in ((sys.argv[1], 64, lambda v: v + 65536), (sys.argv[2], 72, lambda v: 131072)):
    b = bytearray(open(path, "rb").read())  # 64: image size, 72: chunk size
    struct.pack_into("<Q", b, field, f(struct.unpack_from("<Q", b, field)[0]))
    open(path, "wb").write(b)
EOF
declare -A IDXDAMAGE=([105]="digest list modified (index checksum mismatch)" [106]="index one digest short"
    [107]="index with a bad magic" [108]="index header without digests" [109]="index size field wrong"
    [110]="index chunk-size field wrong" [111]="valid index of another backup (manifest checksum mismatch)")

# config blobs: vm/120's with a flipped byte (CRC mismatch), vm/121's replaced
# by another valid blob (manifest checksum mismatch)
printf 'cores: 4\nmemory: 8192\nname: blobtest\n' >conf.a
printf 'cores: 1\nmemory: 512\nname: other-vm\n' >conf.b
mkpbs --id 120 --time $T "$S" qemu-server.conf=conf.a >/dev/null
mkpbs --id 121 --time $T "$S" qemu-server.conf=conf.a >/dev/null
mkpbs --id 122 --time $T "$S" qemu-server.conf=conf.b >/dev/null
p=$S/vm/120/$T/qemu-server.conf.blob
printf 'Z' | dd of="$p" bs=1 seek=$(($(stat -c %s "$p") - 3)) conv=notrunc status=none
cp "$S/vm/122/$T/qemu-server.conf.blob" "$S/vm/121/$T/qemu-server.conf.blob"

lazyimg_mount "$S" "$M"
PID=$MOUNT_PID

for fl in direct ""; do
    check_chunks "flipped payload byte" 101 e1.raw "$BAD1" $fl
    check_chunks "missing chunk file" 102 e2.raw "$BAD2" $fl
    check_chunks "0-byte chunk file" 103 e3.raw "$BAD3" $fl
    check_chunks "chunk file holding another valid chunk (digest mismatch)" 104 e4.raw "$BAD4" $fl
done
for id in 101 102 103 104; do
    if out=$(cat "$(img $id)" 2>&1 >/dev/null); then
        fail "cat of the whole damaged image vm/$id succeeded"
    fi
    grep -q "Input/output error" <<<"$out" || fail "cat of damaged vm/$id: expected EIO" "$out"
done
ok "cat of each whole damaged image fails with EIO"
# whole-range reads around the damaged chunk: the intact part before it reads
n=$(echo "$BAD2" | cut -d' ' -f1)
cmp <(read_range "$(img 102)" 0 $((n * CS))) <(read_range e2.raw 0 $((n * CS))) ||
    fail "the intact range before the missing chunk of vm/102 differs"
ok "a large read ending just before the missing chunk equals the source"

pid_alive "$PID" || fail "daemon died after the read errors"
mountpoint -q "$M" || fail "mount gone after the read errors"
out=$(cmp "$(img 100)" good.raw 2>&1) || fail "healthy image vm/100 differs after the read errors" "$out"
ok "daemon $PID alive and still serving (healthy image equals its source)"
# errors are not sticky beyond their chunk, and are not turned into data later
check_chunks "second pass, missing chunk file" 102 e2.raw "$BAD2" direct

# --- damaged indexes ----------------------------------------------------------
for id in 105 106 107 108 109 110 111; do
    what=${IDXDAMAGE[$id]}
    stat_rc=0
    stat_out=$(stat -c %s "$(img $id)" 2>&1) || stat_rc=$?
    open_rc=0
    head -c 1M "$(img $id)" >idx.bin 2>idx.err || open_rc=$?
    if ((stat_rc == 0 && open_rc == 0)); then
        fail "vm/$id, $what: stat and read both succeed" "stat: $stat_out; read $(stat -c %s idx.bin) bytes"
    fi
    [[ ! -s idx.bin ]] || fail "vm/$id, $what: returned $(stat -c %s idx.bin) bytes"
    ok "vm/$id, $what: fails (stat: ${stat_out##*: }; read: $(sed 's/.*: //' idx.err | head -1))"
done
out=$(cmp "$(img 100)" good.raw 2>&1) || fail "healthy image vm/100 differs next to damaged indexes" "$out"
ok "other images still work next to the damaged indexes"

# --- damaged config blobs -----------------------------------------------------
for id in 120 121; do
    f=$M/vm/$id/$T/qemu-server.conf
    if out=$(cat "$f" 2>&1 >blob.out); then
        fail "vm/$id: reading a damaged config blob succeeded" "content: $(cat blob.out)"
    fi
    [[ ! -s blob.out ]] || fail "vm/$id: a damaged config blob returned bytes" "$(cat blob.out)"
    grep -q "Input/output error" <<<"$out" || fail "vm/$id: damaged config blob: expected EIO" "$out"
done
ok "config blob with a flipped byte, and one replaced by another valid blob: EIO, no bytes"
expect_same_file "intact config blob next to them reads fine" conf.b "$M/vm/122/$T/qemu-server.conf"
pid_alive "$PID" || fail "daemon died after the index and blob errors"
ok "daemon alive after the index and blob errors"

# --- SIGTERM ----------------------------------------------------------------
kill -TERM "$PID"
wait_pid_exit "$PID" 10 || fail "daemon $PID still running 10 s after SIGTERM"
ok "daemon exits on SIGTERM"
! mountpoint -q "$M" || fail "$M still mounted after SIGTERM of the daemon"
! grep -qF " $M " /proc/self/mountinfo || fail "$M still in /proc/self/mountinfo after SIGTERM"
out=$(ls -A "$M" 2>&1) || fail "mountpoint not accessible after SIGTERM (stale mount?)" "$out"
[[ -z $out ]] || fail "mountpoint not empty after SIGTERM" "$out"
ok "SIGTERM: mount gone cleanly, mountpoint is an empty directory again"

# --- SIGINT ------------------------------------------------------------------
lazyimg_mount "$S" "$M"
kill -INT "$MOUNT_PID"
wait_pid_exit "$MOUNT_PID" 10 || fail "daemon $MOUNT_PID still running 10 s after SIGINT"
! mountpoint -q "$M" || fail "$M still mounted after SIGINT of the daemon"
out=$(ls -A "$M" 2>&1) || fail "mountpoint not accessible after SIGINT (stale mount?)" "$out"
ok "SIGINT: daemon exits, mount gone cleanly"

# --- unmount while busy -----------------------------------------------------------
lazyimg_mount "$S" "$M"
exec 7<"$(img 100)"
rc=0
"$LAZYIMG" umount "$M" >busy.out 2>busy.err || rc=$?
((rc == 1)) || fail "lazyimg umount of a busy mount: exit status $rc, expected 1" "$(cat busy.err)"
[[ $(wc -l <busy.err) == 1 ]] || fail "lazyimg umount of a busy mount: expected one line on stderr" "$(cat busy.err)"
grep -qi "busy" busy.err || fail "lazyimg umount of a busy mount: message does not say busy" "$(cat busy.err)"
mountpoint -q "$M" || fail "busy mount went away after a failed lazyimg umount"
ok "lazyimg umount of a busy mount: exit 1, '$(cat busy.err)', still mounted"
"$LAZYIMG" umount -z "$M" 2>busy.err || fail "lazyimg umount -z of a busy mount failed" "$(cat busy.err)"
! mountpoint -q "$M" || fail "$M still mounted after lazyimg umount -z"
ok "lazyimg umount -z detaches the busy mount"
pid_alive "$MOUNT_PID" || fail "daemon exited while a file of the detached mount is still open"
cmp <(cat <&7) good.raw || fail "reading the open file of a lazily unmounted mount gives wrong data"
ok "the file still open reads the source bytes after the lazy unmount"
exec 7<&-
wait_pid_exit "$MOUNT_PID" 10 || fail "daemon still running 10 s after the last file of the detached mount was closed"
ok "daemon exits once the last open file is closed"

# --- unmount while busy for a moment: tried again, then unmounted ----------------
lazyimg_mount "$S" "$M"
(exec 8<"$(img 100)"; sleep 0.4) &
holder=$!
sleep 0.1
t0=$(date +%s%N)
out=$("$LAZYIMG" umount "$M" 2>&1) || fail "lazyimg umount of a mount busy for 0.4 s failed" "$out"
took=$((($(date +%s%N) - t0) / 1000000))
wait "$holder"
! mountpoint -q "$M" || fail "$M still mounted after lazyimg umount of a mount busy for a moment"
((took >= 200)) || fail "lazyimg umount of a mount busy for 0.4 s returned in $took ms (was it busy?)"
ok "lazyimg umount of a mount busy for a moment: tried again, unmounted after $took ms"

# --- CLI errors ------------------------------------------------------------------
# cli_error DESC SUBSTRING CMD...: exit 1, nothing on stdout, one line on
# stderr that mentions SUBSTRING.
cli_error() {
    local desc=$1 sub=$2 rc=0
    shift 2
    "$@" >cli.out 2>cli.err </dev/null || rc=$?
    ((rc == 1)) || fail "$desc: exit status $rc, expected 1" "stderr: $(cat cli.err)"
    [[ ! -s cli.out ]] || fail "$desc: unexpected stdout" "$(cat cli.out)"
    [[ $(wc -l <cli.err) == 1 && -n $(tr -d '[:space:]' <cli.err) ]] ||
        fail "$desc: expected exactly one line on stderr, got $(wc -l <cli.err)" "$(cat cli.err)"
    grep -qiF -- "$sub" cli.err || fail "$desc: message does not mention '$sub'" "$(cat cli.err)"
    ok "$desc: exit 1, '$(cat cli.err)'"
}
mkdir -p m1 plain/dir full
: >full/file
cli_error "mount: store path missing" "$W/nostore" "$LAZYIMG" mount "$W/nostore" "$W/m1"
cli_error "mount: store is not a datastore (no .chunks)" "datastore" "$LAZYIMG" mount "$W/plain" "$W/m1"
cli_error "mount: mountpoint missing" "$W/nomnt" "$LAZYIMG" mount "$S" "$W/nomnt"
cli_error "mount: mountpoint not empty" "not empty" "$LAZYIMG" mount "$S" "$W/full"
cli_error "ls: store path missing" "$W/nostore" "$LAZYIMG" ls "$W/nostore"
cli_error "ls: store is not a datastore" "datastore" "$LAZYIMG" ls "$W/plain"
for m in m1 nomnt full; do
    [[ -z $(daemon_pids "$W/$m") ]] || fail "a daemon was left running after a failed mount on $W/$m"
    ! mountpoint -q "$W/$m" 2>/dev/null || fail "$W/$m got mounted by a failed mount"
done
ok "failed mounts leave no daemon and no mount"

lazyimg_mount "$S" "$M"
cli_error "mount: mountpoint already mounted" "already mounted" "$LAZYIMG" mount "$S" "$M"
[[ $(daemon_pids "$M" | wc -l) == 1 ]] || fail "second mount on $M left a second daemon"
out=$(cmp "$(img 100)" good.raw 2>&1) || fail "first mount broken by the second mount attempt" "$out"
ok "first mount still serves after the refused second mount"
lazyimg_umount "$M"
ok "unmounted"

# no /dev/fuse: a private mount namespace with an empty tmpfs over /dev
# shellcheck disable=SC2016 # "$0" "$1" "$2" are expanded by the inner sh
cli_error "mount: no /dev/fuse" "/dev/fuse" \
    unshare -m --propagation private sh -c 'mount -t tmpfs none /dev && exec "$0" mount "$1" "$2"' "$LAZYIMG" "$S" "$W/m1"
[[ -z $(daemon_pids "$W/m1") ]] || fail "a daemon was left running after the mount without /dev/fuse"
ok "no daemon left after the mount without /dev/fuse"

# --- a reader that retries a missing chunk in a loop does not flood the log -------
# (a line per read before: 1,000 reads, 1,000 lines; now at most 10 in 10 s,
# the rest counted in the next line)
lazyimg_mount_fg "$S" "$W/m1" flood.log -- --no-cache --readahead 0
first=${BAD2%% *}
for _ in $(seq 200); do
    read_range "$W/m1/vm/102/$T/drive-scsi0.img" $((first * CS)) 4096 direct >/dev/null 2>&1 && fail "a read of the missing chunk succeeded"
done
n=$(grep -c "read error at offset" flood.log || true)
((n >= 1 && n <= 10)) || fail "200 reads of a missing chunk logged $n read errors (at most 10 in 10 s expected)" "$(head -3 flood.log)"
ok "200 reads of a missing chunk within seconds: $n lines of read errors in the log"
# ... nor the store: a chunk not found is answered so again for 30 s without
# asking (a request per read before: 200 reads, 200 requests)
st=$("$LAZYIMG" status --json "$W/m1") || fail "status --json failed"
read -r requests known < <(python3 -c 'import json,sys
o=json.loads(sys.argv[1]); print(o["fetch"]["requests"], o["cache"]["missing_known"])' "$st")
((requests <= 2 && known >= 198)) ||
    fail "200 reads of a missing chunk: $requests store requests, $known answered from memory (expected <= 2, >= 198)"
ok "200 reads of a missing chunk: $requests store request(s), $known answered 'missing' without one"
# once the store is repaired, SIGHUP makes the next read ask again
mv missing-chunk.saved "$MISSING"
kill -HUP "$MOUNT_PID"
for _ in $(seq 50); do grep -q "forgetting the chunks found missing" flood.log && break; sleep 0.1; done
grep -q "forgetting the chunks found missing" flood.log || fail "no SIGHUP line in the log" "$(tail -3 flood.log)"
cmp <(read_range "$W/m1/vm/102/$T/drive-scsi0.img" $((first * CS)) 4096 direct) \
    <(read_range e2.raw $((first * CS)) 4096) || fail "the repaired chunk does not read right after SIGHUP"
ok "after the chunk came back and SIGHUP, it reads right"
lazyimg_umount "$W/m1"
mv "$MISSING" missing-chunk.saved

# --- foreground daemon: SIGTERM is a clean exit (status 0) -------------------------
"$LAZYIMG" mount -f "$S" "$W/m1" 2>fg.err &
fg_pid=$!
T_PIDS+=("$fg_pid")
T_MOUNTS+=("$W/m1")
wait_mounted "$W/m1" 20 || fail "foreground mount did not appear" "$(cat fg.err)"
kill -TERM "$fg_pid"
rc=0
wait "$fg_pid" || rc=$?
((rc == 0)) || fail "foreground daemon exited with status $rc after SIGTERM, expected 0" "$(cat fg.err)"
! grep -q "ended with an error" fg.err || fail "foreground daemon logged an error on SIGTERM" "$(cat fg.err)"
ok "foreground daemon: SIGTERM unmounts and exits with status 0"

# --- two archives of one snapshot with one visible name ---------------------------
# x.img.fidx and x.img.blob would both show as x.img: the first listed wins,
# the other is hidden with a warning, and the rest of the store still mounts.
S2=$W/store2
new_store "$S2"
printf 'not an image\n' >clash.txt
mkpbs --chunk-size 64K --id 300 --time $T "$S2" x.img=good.raw x.img.blob=clash.txt >/dev/null
mkpbs --chunk-size 64K --id 301 --time $T "$S2" drive-scsi0.img=good.raw >/dev/null
err=$("$LAZYIMG" mount "$S2" "$W/m1" 2>&1) || fail "mount of a store with a name clash failed" "$err"
T_MOUNTS+=("$W/m1")
grep -q "x.img.blob hidden" <<<"$err" || fail "no warning about the hidden archive" "$err"
expect_same_file "name clash: x.img is the image listed first" good.raw "$W/m1/vm/300/$T/x.img"
expect_same_file "name clash: the other snapshots of the store are served" good.raw "$W/m1/vm/301/$T/drive-scsi0.img"
lazyimg_umount "$W/m1"
ok "unmounted"

# --- a symbolic link inside a local store: not followed, and the log says so ---
SL=$W/symstore
mkpbs --chunk-size 64K --id 400 --time $T "$SL" drive-scsi0.img=good.raw >/dev/null
idx=$SL/vm/400/$T/drive-scsi0.img.fidx
mv "$idx" "$W/moved.fidx"
ln -s "$W/moved.fidx" "$idx"
lazyimg_mount_fg "$SL" "$W/m1" symlink.log -- --no-cache
! cat "$W/m1/vm/400/$T/drive-scsi0.img" >/dev/null 2>&1 || fail "an index that is a symbolic link was followed"
grep -q "drive-scsi0.img.fidx: a symbolic link on the way (links inside a store are not followed)" symlink.log ||
    fail "symbolic link in the store: the log does not say so" "$(cat symlink.log)"
lazyimg_umount "$W/m1"
ok "an index that is a symbolic link is not followed, and the log says why"

# --- a datastore not in the page cache: chunks of 1 MiB and more are read with
# O_DIRECT (store_local.c), the same bytes, a damaged chunk still EIO, and the
# disk cache filled from such reads (their payload is not page-aligned) right;
# chunks whose pages are cached are read through the page cache
SD=$W/directstore
mkpbs --chunk-size 1M --id 500 --time $T "$SD" drive-scsi0.img=good.raw >/dev/null
make_image dbig.raw rand:3M,zero:1M,rand:3M 21 # 6 data chunks of 1 MiB, incompressible
mkpbs --chunk-size 1M --id 501 --time $T "$SD" drive-scsi0.img=dbig.raw >/dev/null
mapfile -t dchunks < <(find "$SD/.chunks" -type f -size +1000k | sort)
((${#dchunks[@]} >= 6)) || fail "the direct-read store has ${#dchunks[@]} chunk files of 1 MiB and more, expected 6 or more"
# evict PATH...: their pages out of the page cache; prints how many stayed
evict() {
    sync
    python3 - "$@" <<'PYEOF'
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PYEOF
    fincore --bytes --noheadings --output RES "$@" | awk '{s += $1} END {print s + 0}'
}
direct_reads() { # MNT: the local store's status --json direct_reads
    "$LAZYIMG" status --json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["stores"][0]["direct_reads"])'
}
left=$(evict "${dchunks[@]}")
if ((left > 0)); then
    echo "# $W's filesystem keeps files in memory ($left bytes stayed after POSIX_FADV_DONTNEED): the O_DIRECT reads are not checked here"
else
    lazyimg_mount_fg "$SD" "$W/m1" direct.log -- --no-cache
    # the pool's two readers (lz-read) read the chunk files; the workers decode
    mapfile -t readers < <(daemon_threads lz-read)
    ((${#readers[@]} == 2)) || fail "a local store's daemon has ${#readers[@]} lz-read threads, expected 2"
    strace -qq -e trace=pread64 -o readers.trace "${readers[@]/#/-p}" &
    spid=$!
    T_PIDS+=("$spid")
    for _ in $(seq 100); do
        grep -q "^TracerPid:[[:space:]]*$spid$" /proc/"$MOUNT_PID"/task/"${readers[1]}"/status && break
        sleep 0.05
    done
    expect_same_file "store out of the page cache: the image reads byte-exact" dbig.raw "$W/m1/vm/501/$T/drive-scsi0.img"
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null || true
    n=$(direct_reads "$W/m1")
    ((n == 6)) || fail "store out of the page cache: $n chunks read with O_DIRECT, expected 6" "$(cat direct.log)"
    ok "store out of the page cache: its 6 chunks of 1 MiB were read with O_DIRECT"
    r=$(grep -c "pread64(" readers.trace || true)
    ((r >= 1)) || fail "the lz-read threads read no chunk file" "$(head -5 readers.trace)"
    ok "the pool's 2 reader threads (lz-read) read chunk files ($r pread64 calls)"
    lazyimg_umount "$W/m1"

    # the chunk files in the page cache: read through it
    cat "${dchunks[@]}" >/dev/null
    lazyimg_mount_fg "$SD" "$W/m1" direct.log -- --no-cache
    expect_same_file "store in the page cache: the image reads byte-exact" dbig.raw "$W/m1/vm/501/$T/drive-scsi0.img"
    n=$(direct_reads "$W/m1")
    ((n == 0)) || fail "store in the page cache: $n chunks read with O_DIRECT, expected none"
    ok "store in the page cache: no chunk read with O_DIRECT"
    lazyimg_umount "$W/m1"

    # cache filling from O_DIRECT reads, then the cache alone (the store moved away)
    evict "${dchunks[@]}" >/dev/null
    lazyimg_mount_fg "$SD" "$W/m1" direct.log -- --cache-dir "$W/dcache"
    expect_same_file "cache filling from O_DIRECT reads: the image reads byte-exact" dbig.raw "$W/m1/vm/501/$T/drive-scsi0.img"
    n=$(direct_reads "$W/m1")
    ((n == 6)) || fail "cache filling: $n chunks read with O_DIRECT, expected 6" "$(cat direct.log)"
    lazyimg_umount "$W/m1"
    mkdir away
    for f in "${dchunks[@]}"; do mv "$f" "away/${f##*/}"; done
    lazyimg_mount_fg "$SD" "$W/m1" direct.log -- --cache-dir "$W/dcache"
    expect_same_file "the chunks cached from O_DIRECT reads read byte-exact without the store's chunk files" dbig.raw "$W/m1/vm/501/$T/drive-scsi0.img"
    lazyimg_umount "$W/m1"
    for f in "${dchunks[@]}"; do mv "away/${f##*/}" "$f"; done

    # a damaged chunk read with O_DIRECT: EIO on its range, the rest reads
    first=$(python3 -c 'import sys; print(open(sys.argv[1], "rb").read(1 << 20).hex()[:16])' dbig.raw)
    victim=""
    for f in "${dchunks[@]}"; do # the chunk of the image's first MiB
        python3 - "$f" "$first" <<'PYEOF' && victim=$f && break
import sys
raw = open(sys.argv[1], "rb").read()
sys.exit(0 if raw[12:20].hex() == sys.argv[2] else 1)
PYEOF
    done
    [[ -n $victim ]] || fail "no chunk file holds the image's first MiB unencrypted and uncompressed"
    cp "$victim" victim.saved
    printf '\xff' | dd of="$victim" bs=1 seek=4096 conv=notrunc status=none
    evict "${dchunks[@]}" >/dev/null
    lazyimg_mount_fg "$SD" "$W/m1" direct.log -- --no-cache
    ! read_range "$W/m1/vm/501/$T/drive-scsi0.img" 0 65536 direct >/dev/null 2>&1 ||
        fail "a damaged chunk read with O_DIRECT gave data"
    cmp <(read_range "$W/m1/vm/501/$T/drive-scsi0.img" $((1 << 20)) $((2 << 20)) direct) \
        <(read_range dbig.raw $((1 << 20)) $((2 << 20))) || fail "the chunks after a damaged one do not read right"
    n=$(direct_reads "$W/m1")
    ((n >= 2)) || fail "damaged chunk: $n chunks read with O_DIRECT, expected 2 or more"
    ok "a damaged chunk read with O_DIRECT gives EIO, the next chunks read right ($n direct reads)"
    lazyimg_umount "$W/m1"
    cp victim.saved "$victim"
fi
