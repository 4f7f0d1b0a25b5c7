#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Booting a VM from the mount (issue 17), with a real QEMU (TCG) and a real
# guest: a Debian kernel and a busybox initramfs on an ext4 partition of a
# mostly sparse disk (tests/integration/mkbootimg.sh), whose init hashes data
# files spread over the disk and prints the hash on the serial console. Every
# boot checks that line against the hash computed on the host:
#   (a) -drive …,snapshot=on from a local mount;
#   (b) a qcow2 overlay made by `lazyimg overlay` (through `latest`): the
#       guest's write lands in the overlay, the image is unchanged;
#   (live) a live restore (contrib/live-restore.py: QMP drive-mirror) moves a
#       running guest to a local file and the mount is unmounted under it;
#       the guest finishes on the file, its write there;
#   (c) over HTTP (nginx), cache=none (O_DIRECT) and aio=io_uring (aio=native
#       where QEMU has no io_uring);
#   (d) over HTTP with the store killed mid-boot: the guest sees I/O errors and
#       powers off, nothing hangs; once the store is back the same mount boots;
#   and the read profile the first boot recorded is replayed by the next
#   mount: the boot's chunks are fetched at the open.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test qemu-system-x86_64 qemu-img python3 nginx
. "$T_DIR/lib_remote.sh"
QEMU_TIMEOUT=${LAZYIMG_BOOT_TIMEOUT:-180}
T1=2026-02-01T00:00:00Z
CACHE_DIR=${LAZYIMG_TEST_CACHE:-/var/tmp/lazyimg-test-cache}
C=$W/cache

# --- the disk: built once per machine (kept in $CACHE_DIR) ----------------------
mkdir -p "$CACHE_DIR"
BOOT=$CACHE_DIR/boot-v2.raw # (v2: the init writes sector 2047)
LIVE_RESTORE=$T_DIR/../../contrib/live-restore.py
if [[ ! -s $BOOT.sha256 ]]; then
    out=$("$T_DIR/mkbootimg.sh" "$BOOT.tmp" 2>&1) || fail "mkbootimg.sh failed" "$out"
    mv "$BOOT.tmp.sha256" "$BOOT.sha256"
    mv "$BOOT.tmp" "$BOOT"
fi
WANT=$(cat "$BOOT.sha256")
mkpbs --id 100 --time $T1 "$S" drive-scsi0.img="$BOOT" >/dev/null
IMG=vm/100/$T1/drive-scsi0.img
ok "bootable disk: $(($(stat -c %s "$BOOT") >> 20)) MiB, $(($(stat -c %b "$BOOT") * 512 >> 20)) MiB of data"

# boot NAME [QEMU -drive/-qmp options...]: boots in the background, serial
# console to NAME.log; sets QEMU_PID
boot() {
    local name=$1
    shift
    : >"$name.log"
    qemu-system-x86_64 -machine accel=tcg -m 256 -display none -monitor none -no-reboot \
        -serial "file:$W/$name.log" "$@" >"$name.qemu" 2>&1 &
    QEMU_PID=$!
    T_PIDS+=("$QEMU_PID")
}
# wait_exit NAME: QEMU must exit (the guest powers off) within the deadline
wait_exit() {
    wait_pid_exit "$QEMU_PID" "$QEMU_TIMEOUT" ||
        fail "$1: the VM did not power off within $QEMU_TIMEOUT s" "$(tail -20 "$1.log")" "$(cat "$1.qemu")"
}
# expect_boot NAME: the guest printed the data's hash
expect_boot() {
    local got
    wait_exit "$1"
    got=$(sed -n 's/.*LAZYIMG-BOOT-OK \([0-9a-f]\{64\}\).*/\1/p' "$1.log" | tail -1)
    [[ -n $got ]] || fail "$1: no LAZYIMG-BOOT-OK on the console" "$(tail -30 "$1.log")" "$(cat "$1.qemu")"
    expect_eq "$1: the guest booted and read its files (hash from the console)" "$WANT" "$got"
}
# wait_console NAME TEXT: until the console shows TEXT (deadline)
wait_console() {
    local i
    for ((i = 0; i < QEMU_TIMEOUT * 10; i++)); do
        grep -q "$2" "$1.log" 2>/dev/null && return 0
        pid_alive "$QEMU_PID" || break
        sleep 0.1
    done
    fail "$1: the console never showed $2" "$(tail -20 "$1.log")" "$(cat "$1.qemu")"
}

# --- (a) snapshot=on from a local mount ------------------------------------------
lazyimg_mount "$S" "$M" --cache-dir "$C"
boot local -drive "file=$M/$IMG,format=raw,if=virtio,snapshot=on"
expect_boot local
read -r fetched data size < <("$LAZYIMG" status --json "$M" | python3 -c 'import json, sys
s = json.load(sys.stdin)
i = [x for x in s["images"] if x["path"] == sys.argv[1]][0]
print(s["cache"]["load_bytes"], i["data_bytes"], i["size"])' "$IMG")
((fetched <= data)) || fail "the boot fetched $fetched bytes, more than the image's data chunks ($data)"
ok "the boot fetched $((fetched >> 20)) MiB: at most the $((data >> 20)) MiB of data chunks of the $((size >> 20)) MiB disk (holes never)"

# sector_2047 FILE [qemu-io format]: the text the guest wrote there, if any
# (through qemu-io, spaces and dashes read as dots: match with a regex)
sector_2047() {
    if [[ -n ${2:-} ]]; then
        qemu-io -f "$2" -r -c "read -v 1048064 96" "$1" | sed -n 's/^[0-9a-f]*: .*  //p' | tr -d '\n'
    else
        dd if="$1" bs=512 skip=2047 count=1 status=none | tr -d '\0'
    fi
}

# --- (b) a qcow2 overlay through latest ---------------------------------------------
out=$("$LAZYIMG" overlay "$M/vm/100/latest/drive-scsi0.img" "$W/ov.qcow2" 2>&1) || fail "lazyimg overlay failed" "$out"
backing=$(qemu-img info --output=json "$W/ov.qcow2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["backing-filename"])')
expect_eq "overlay: its backing file is the snapshot's time path, not latest" "$M/$IMG" "$backing"
boot overlay -drive "file=$W/ov.qcow2,format=qcow2,if=virtio"
expect_boot overlay
grep -q "LAZYIMG.WROTE.$WANT" <<<"$(sector_2047 "$W/ov.qcow2" qcow2)" ||
    fail "overlay: the guest's write is not in the overlay" "$(sector_2047 "$W/ov.qcow2" qcow2)"
[[ -z $(sector_2047 "$M/$IMG") ]] || fail "overlay: the guest's write reached the mounted image"
ok "overlay: the guest's write is in the overlay, the mounted image is unchanged"

# --- (live) boot from the mount, move to a local file, unmount under the guest -----
"$LAZYIMG" overlay "$M/$IMG" "$W/live.qcow2" >/dev/null || fail "lazyimg overlay (live) failed"
boot live -qmp "unix:$W/qmp.sock,server=on,wait=off" \
    -drive "id=disk0,file=$W/live.qcow2,format=qcow2,if=virtio"
for ((i = 0; i < 50; i++)); do [[ -S $W/qmp.sock ]] && break; sleep 0.1; done
out=$(python3 "$LIVE_RESTORE" --qmp "$W/qmp.sock" --device disk0 --target "$W/restored.raw" \
    --timeout 120 2>&1) || fail "live restore failed" "$out"
ok "live restore: the running guest was moved to a local file ($out)"
lazyimg_umount "$M"
ok "live restore: the mount is unmounted under the running guest"
expect_boot live
grep -q "LAZYIMG-WROTE $WANT" <<<"$(sector_2047 "$W/restored.raw")" ||
    fail "live restore: the guest's write is not in the restored file"
cmp -s <(head -c 1048064 "$BOOT") <(head -c 1048064 "$W/restored.raw") &&
    cmp -s <(tail -c +1048577 "$BOOT") <(tail -c +1048577 "$W/restored.raw") ||
    fail "live restore: the restored file differs from the image (beyond the guest's write)"
ok "live restore: the restored file is the image plus the guest's write"

# --- (c) HTTP, cache=none, io_uring ------------------------------------------------
start_nginx "$S"
aio=io_uring
qemu-system-x86_64 -machine none -display none -monitor none \
    -drive "file=$BOOT,format=raw,if=none,cache=none,aio=io_uring,readonly=on" -S \
    -qmp stdio </dev/null >probe.out 2>&1 & p=$!
sleep 1
kill "$p" 2>/dev/null || true
wait "$p" 2>/dev/null || true
grep -qi "io_uring" probe.out && aio=native
lazyimg_mount "$NGINX_URL" "$M" --cache-dir "$C.http"
boot http -drive "file=$M/$IMG,format=raw,if=virtio,snapshot=on,cache=none,aio=$aio"
expect_boot http
ok "HTTP boot used cache=none (O_DIRECT) and aio=$aio"
lazyimg_umount "$M"

# --- the read profile of the first boot is replayed --------------------------------
out=$("$LAZYIMG" profile ls --cache-dir "$C")
grep -q "^vm/100/drive-scsi0.img " <<<"$out" || fail "no read profile was recorded for the boot" "$out"
ok "the first boot's read profile was saved"
"$LAZYIMG" cache clear --cache-dir "$C" >/dev/null
lazyimg_mount "$S" "$M" --cache-dir "$C"
exec 7<"$M/$IMG" # open, read nothing
for ((i = 0; i < 300; i++)); do
    st=$("$LAZYIMG" status --json "$M" | python3 -c 'import json, sys
i = [x for x in json.load(sys.stdin)["images"] if x["path"] == sys.argv[1]][0]
p = i.get("profile") or {}
print(p.get("replay"), p.get("replayed", 0))' "$IMG")
    [[ $st == done* ]] && break
    sleep 0.1
done
exec 7<&-
[[ $st == done* && ${st#done } -gt 0 ]] || fail "replay of the boot profile: $st"
ok "the next open replayed the boot profile (${st#done } chunks fetched before any read)"
boot replayed -drive "file=$M/$IMG,format=raw,if=virtio,snapshot=on"
expect_boot replayed
lazyimg_umount "$M"

# --- (d) the store killed mid-boot --------------------------------------------------
lazyimg_mount "$NGINX_URL" "$M" --cache-dir "$C.kill" --retries 1 --connect-timeout 2 --fetch-timeout 5
boot killed -drive "file=$M/$IMG,format=raw,if=virtio,snapshot=on"
wait_console killed LAZYIMG-INIT
stop_nginx
wait_exit killed
grep -q "LAZYIMG-BOOT-OK" killed.log && fail "store killed mid-boot: the guest still printed a hash" "$(tail -20 killed.log)"
grep -qiE "LAZYIMG-BOOT-FAIL|I/O error" killed.log ||
    fail "store killed mid-boot: no I/O error reached the guest" "$(tail -20 killed.log)"
ok "store killed mid-boot: the guest saw I/O errors and powered off, nothing hung"
restart_nginx
boot recovered -drive "file=$M/$IMG,format=raw,if=virtio,snapshot=on"
expect_boot recovered
lazyimg_umount "$M"
ok "unmounted"
