#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Read profiles (issue 17): a mount records what is read first from an image
# (in first-touch order, for --profile-window seconds after its first open,
# saved when the window ends or at unmount); a later mount replays it ahead
# of the reader when an image of the same name is opened: after the cache was
# cleared, the recorded chunks are fetched at the open, before any read (the
# store's copies can then go); for the next snapshot, the changed chunks are
# fetched and the unchanged ones found in the cache. status shows it,
# `lazyimg profile ls|show|clear` manage profiles, --no-boot-profile and
# --no-cache record nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3
C=$W/cache
T1=2026-01-01T00:00:00Z
T2=2026-01-02T00:00:00Z
MB=1048576

# 4 MiB chunks: 16 of them, 4 and 5 all-zero
make_image disk.raw rand:16M,zero:8M,rand:40M 5
mkpbs --id 100 --time $T1 "$S" drive-scsi0.img=disk.raw >/dev/null
IMG=vm/100/$T1/drive-scsi0.img
FIDX1=$S/$IMG.fidx

# status_profile MNT IMAGE FIELD: a field of the image's "profile" in status --json
status_profile() {
    "$LAZYIMG" status --json "$1" | python3 -c '
import json, sys
img = [i for i in json.load(sys.stdin)["images"] if i["path"] == sys.argv[1]]
p = img[0].get("profile") if img else None
print("none" if p is None else p.get(sys.argv[2], ""))' "$2" "$3"
}
# wait_profile MNT IMAGE FIELD VALUE: until the field has the value (10 s)
wait_profile() {
    local i v
    for ((i = 0; i < 100; i++)); do
        v=$(status_profile "$1" "$2" "$3")
        [[ $v == "$4" ]] && return 0
        sleep 0.1
    done
    fail "status: profile $3 of $2 stays '$v', expected '$4'"
}
# loads MNT: chunks the mount has loaded from the store
loads() { "$LAZYIMG" status --json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["cache"]["loads"])'; }
# rd MNT-IMAGE MIB [COUNT-64K]: reads at MIB (64 KiB blocks, default 4)
rd() { dd if="$1" of=/dev/null bs=64k skip=$(($2 * 16)) count="${3:-4}" status=none; }

# --- recording: first-touch order, saved when the window ends ----------------
lazyimg_mount "$S" "$M" --cache-dir "$C" --profile-window 3 --readahead 0
rd "$M/$IMG" 40
rd "$M/$IMG" 1
rd "$M/$IMG" 41 # the same chunk as 40: recorded once
rd "$M/$IMG" 18 # a hole: not recorded
rd "$M/$IMG" 60
expect_eq "recording: state while the window runs" recording "$(status_profile "$M" "$IMG" state)"
expect_eq "recording: extents recorded so far (a repeated chunk and a hole not counted)" 3 \
    "$(status_profile "$M" "$IMG" recorded)"
wait_profile "$M" "$IMG" state recorded
rd "$M/$IMG" 8 # after the window: not recorded
lazyimg_umount "$M"
out=$("$LAZYIMG" profile show --cache-dir "$C" vm/100/drive-scsi0.img) || fail "profile show failed" "$out"
expect_eq "profile show: the offsets in the order first read" "40 0 60" \
    "$(grep -v '^#' <<<"$out" | awk '{printf "%s%d", (NR > 1 ? " " : ""), $1 / 1048576}')"
out=$("$LAZYIMG" profile ls --cache-dir "$C") || fail "profile ls failed" "$out"
grep -q "^vm/100/drive-scsi0.img .* 3  $IMG ($S)$" <<<"$out" || fail "profile ls: unexpected listing" "$out"
ok "profile ls: the image, its 3 extents, the snapshot and store it was recorded on"
# a row whose "recorded on" holds terminal controls: printed escaped
python3 - "$C/index.sqlite" <<'PY' || fail "test setup: cannot change the profile row"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE profiles SET image = image || ?", ("\x1b]0;owned\x07\x1b[2J",))
db.commit()
PY
out=$("$LAZYIMG" profile ls --cache-dir "$C") || fail "profile ls failed" "$out"
out2=$("$LAZYIMG" profile show --cache-dir "$C" vm/100/drive-scsi0.img) || fail "profile show failed" "$out2"
if grep -q $'\x1b\|\x07' <<<"$out$out2"; then
    fail "profile ls/show print a control character from the cache" "$(od -c <<<"$out$out2" | head)"
fi
grep -qF '\x1b]0;owned\x07\x1b[2J' <<<"$out" && grep -qF '\x1b]0;owned\x07\x1b[2J' <<<"$out2" ||
    fail "profile ls/show: the name is not shown escaped" "$out$out2"
python3 - "$C/index.sqlite" <<'PY' || fail "test setup: cannot restore the profile row"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE profiles SET image = substr(image, 1, length(image) - length(?))", ("\x1b]0;owned\x07\x1b[2J",))
db.commit()
PY
ok "profile ls and show print the names of a profile escaped (\\xNN), no byte acts on the terminal"

# --- replay after the cache was cleared: fetched at the open, before any read ---
"$LAZYIMG" cache clear --cache-dir "$C" >/dev/null || fail "cache clear failed"
out=$("$LAZYIMG" profile ls --cache-dir "$C")
grep -q "^vm/100/drive-scsi0.img " <<<"$out" || fail "cache clear removed the profile" "$out"
ok "cache clear keeps the profiles"
lazyimg_mount "$S" "$M" --cache-dir "$C" --profile-window 3 --readahead 0
exec 7<"$M/$IMG" # open, read nothing
wait_profile "$M" "$IMG" replay done
expect_eq "replay: the recorded chunks fetched at the open" 3 "$(status_profile "$M" "$IMG" replayed)"
expect_eq "replay: loads before any read" 3 "$(loads "$M")"
expect_eq "replay: recorded on" "$IMG" "$(status_profile "$M" "$IMG" replay_of)"
# the reader finds them without the store: move the chunk files away
for mib in 40 0 60; do
    d=$(fidx_digest "$FIDX1" $((mib / 4)))
    mv "$(chunk_path "$S" "$d")" "$W/away-$d"
done
cmp -s <(read_range disk.raw $((40 * MB)) $((4 * MB))) <(read_range "$M/$IMG" $((40 * MB)) $((4 * MB))) ||
    fail "replay: the replayed chunk at 40M differs (or was not kept)"
cmp -s <(read_range disk.raw 0 $((4 * MB))) <(read_range "$M/$IMG" 0 $((4 * MB))) ||
    fail "replay: the replayed chunk at 0 differs"
expect_eq "replay: the reader's reads of replayed chunks load nothing" 3 "$(loads "$M")"
ok "replay: the reader reads the replayed chunks with their files gone from the store"
wait_profile "$M" "$IMG" state recorded
expect_eq "replay: hits (replayed chunks read in the window)" 2 "$(status_profile "$M" "$IMG" hits)"
expect_eq "replay: useless (replayed, not read in the window)" 1 "$(status_profile "$M" "$IMG" useless)"
exec 7<&-
lazyimg_umount "$M"
for f in "$W"/away-*; do
    d=${f#"$W"/away-}
    mv "$f" "$(chunk_path "$S" "$d")"
done

# --- the next snapshot: changed chunks fetched, unchanged ones in the cache ----
# (the newest profile of the disk is the last mount's: 40M and 0, read in
# its window, saved at its unmount)
cp disk.raw disk2.raw
"$MKIMAGE" --seed 9 chunk.raw rand:4M >/dev/null
dd if=chunk.raw of=disk2.raw bs=1M seek=40 conv=notrunc status=none # chunk 10 changes
mkpbs --id 100 --time $T2 "$S" drive-scsi0.img=disk2.raw >/dev/null
IMG2=vm/100/$T2/drive-scsi0.img
lazyimg_mount "$S" "$M" --cache-dir "$C" --profile-window 3 --readahead 0
exec 7<"$M/$IMG2"
wait_profile "$M" "$IMG2" replay done
expect_eq "next snapshot: the profile of the same disk is replayed" "$IMG" \
    "$(status_profile "$M" "$IMG2" replay_of)"
expect_eq "next snapshot: the changed chunk is fetched" 1 "$(status_profile "$M" "$IMG2" replayed)"
expect_eq "next snapshot: the unchanged one is in the cache" 1 "$(status_profile "$M" "$IMG2" skipped)"
cmp -s <(read_range disk2.raw $((40 * MB)) $((4 * MB))) <(read_range "$M/$IMG2" $((40 * MB)) $((4 * MB))) ||
    fail "next snapshot: the changed chunk reads wrong"
ok "next snapshot: the changed chunk reads byte-exact"
exec 7<&-
lazyimg_umount "$M" # the recording is saved at unmount, before its window ends
out=$("$LAZYIMG" profile ls --cache-dir "$C")
expect_eq "a recording is saved at unmount before its window ends (3 profiles of the disk)" 3 \
    "$(grep -c '^vm/100/drive-scsi0.img ' <<<"$out")"
grep -q "^vm/100/drive-scsi0.img .* 1  $IMG2 " <<<"$out" ||
    fail "profile ls: the newest profile is not the last mount's" "$out"
ok "profile ls: newest first, the last one recorded on the next snapshot"

# --- off switches and clear ------------------------------------------------------
"$LAZYIMG" profile clear --cache-dir "$C" vm/100/drive-scsi0.img >/dev/null || fail "profile clear IMAGE failed"
out=$("$LAZYIMG" profile ls --cache-dir "$C")
expect_eq "profile clear IMAGE removes them" "no read profiles in $C" "$out"
lazyimg_mount "$S" "$M" --cache-dir "$C" --no-boot-profile
rd "$M/$IMG" 0
expect_eq "--no-boot-profile: no profile state" none "$(status_profile "$M" "$IMG" state)"
lazyimg_umount "$M"
lazyimg_mount "$S" "$M" --no-cache
rd "$M/$IMG" 0
expect_eq "--no-cache: no profile state (profiles live in the cache)" none "$(status_profile "$M" "$IMG" state)"
lazyimg_umount "$M"
expect_eq "nothing recorded with either" "no read profiles in $C" "$("$LAZYIMG" profile ls --cache-dir "$C")"

# --- a daemon's reply is not trusted: JSON null where a string is expected ------
# (the socket is replaced by a listener that answers every request with it)
lazyimg_mount "$S" "$M" --no-cache
sock=$(ss -xlpn | awk -v p="pid=$MOUNT_PID," 'index($0, p) {print $5; exit}')
[[ -S $sock ]] || fail "no control socket of daemon $MOUNT_PID found" "$(ss -xlpn | tail -5)"
mv "$sock" "$sock.real"
python3 - "$sock" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(4)
s.settimeout(20)
status = b'{"stores":[],"images":[{"path":"x","profile":{"state":"recording","replay":null}}]}'
for _ in range(2):
    c, _ = s.accept()
    req = c.recv(4096)
    c.sendall(status if req.startswith(b"status") else b'{"error":null}')
    c.close()
PY
fake=$!
for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.05; done
rc=0
out=$("$LAZYIMG" status "$M" 2>&1) || rc=$?
((rc <= 1)) || fail "lazyimg status on a reply with null strings: exit $rc" "$out"
rc=0
out=$(timeout 20 "$LAZYIMG" hydrate "$M/$IMG" 2>&1) || rc=$?
((rc <= 2)) || fail "lazyimg hydrate on a reply with null strings: exit $rc" "$out"
wait "$fake" || true
rm -f "$sock"
mv "$sock.real" "$sock"
lazyimg_umount "$M"
ok "status and hydrate survive a reply with null where strings belong"
ok "unmounted"
