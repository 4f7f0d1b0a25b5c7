#!/bin/bash
# lazyimg boot benchmark (not a test), issue 17: seconds from QEMU's start to
# the guest's marker line, booting the *next* backup of a disk from the mount
# over a constrained link with an empty chunk cache, with and without the read
# profile the previous backup's boot recorded, against booting the raw file.
#
#   contrib/bench-boot.sh [WORKDIR]   (root; default /var/tmp/lazyimg-bench-boot)
#
# Environment: RUNS (default 5) boots per figure; SIZE_MB (default 512) of
# the disk; CHANGE (default 4) data files rewritten in the next backup;
# DELAY_MS (default 50) added to every request and RATE (bytes/s, default
# 6250000 = 50 Mbit/s) of the constrained link (tests/integration/faultproxy.py
# in front of nginx on 127.0.0.1); READ (default: all) data files the guest's
# init reads, for a boot that reads part of its disk; LAZYIMG_BUILD (default
# ./build).
#
# The disk: tests/integration/mkbootimg.sh (Debian kernel, busybox initramfs,
# ext4 with data files the init hashes; mostly zeros), and a copy with CHANGE
# files rewritten in place (the next backup, sharing most chunks), written as
# two snapshots of vm/100 (4 MiB chunks). KVM when it boots the raw disk
# (a nested /dev/kvm may exist and fail), else TCG; ACCEL=kvm|tcg forces one.
# Figures (medians of RUNS boots, each from a fresh mount):
#   raw        the next disk's raw file, -drive …,snapshot=on
#   none       the next snapshot through the link, empty cache, --no-boot-profile
#   profile    the same with the first snapshot's boot profile (recorded once by
#              booting the first snapshot through the mount, per link; each run
#              starts from a copy of that cache directory with its chunks cleared)
# once through the constrained link and once straight from nginx; plus the
# bytes the mount fetched before the marker (status --json) and the profile's
# replay figures (the daemon's log line when the profile is saved).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${LAZYIMG_BUILD:-$ROOT/build}
W=${1:-/var/tmp/lazyimg-bench-boot}
RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-512}
CHANGE=${CHANGE:-4}
DELAY_MS=${DELAY_MS:-50}
RATE=${RATE:-6250000}
die() { echo "bench-boot.sh: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (FUSE, loop devices for the disk, nginx)"
for c in qemu-system-x86_64 nginx curl python3 fusermount3; do
  command -v "$c" >/dev/null || die "$c is needed (contrib/install-deps.sh)"
done
[ -x "$B/fs/lazyimg" ] || contrib/build.sh >/dev/null
LZ=$B/fs/lazyimg
mkdir -p "$W"
W=$(realpath "$W")
READ=${READ:-}
D=$W/data-${SIZE_MB}M${READ:+-read$READ}
DS=$D/ds MNT=$W/mnt
mkdir -p "$D" "$MNT"
T1=2026-03-01T00:00:00Z T2=2026-03-02T00:00:00Z
ACCEL=${ACCEL:-}
PIDS=()
cleanup() {
  mountpoint -q "$MNT" && fusermount3 -u "$MNT" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# --- the disks and their datastore (kept between runs) ------------------------
if [ ! -f "$D/.made-v1" ]; then
  rm -rf "${D:?}"/*
  log "building the $SIZE_MB MiB disk and its next backup..."
  tests/integration/mkbootimg.sh "$D/first.raw" --size "$SIZE_MB" --seed 1 ${READ:+--read "$READ"} >/dev/null
  tests/integration/mkbootimg.sh "$D/next.raw" --from "$D/first.raw" --change "$CHANGE" --seed 2 >/dev/null
  mkdir -p "$DS/.chunks"
  : >"$DS/.lock"
  "$B/contrib/lazyimg-mkpbs" --quiet --time $T1 "$DS" drive-scsi0.img="$D/first.raw"
  "$B/contrib/lazyimg-mkpbs" --quiet --time $T2 "$DS" drive-scsi0.img="$D/next.raw"
  touch "$D/.made-v1"
fi
WANT1=$(cat "$D/first.raw.sha256") WANT2=$(cat "$D/next.raw.sha256")
# what the next snapshot's data chunks take on the wire (stored, compressed)
WIRE=$(python3 - "$DS/vm/100/$T2/drive-scsi0.img.fidx" "$DS" <<'EOF'
import hashlib, os, sys
b = open(sys.argv[1], "rb").read()
zero = hashlib.sha256(bytes(4 << 20)).hexdigest()
ds = {b[4096 + 32 * i: 4128 + 32 * i].hex() for i in range((len(b) - 4096) // 32)} - {zero}
print(sum(os.path.getsize(os.path.join(sys.argv[2], ".chunks", d[:4], d)) for d in ds))
EOF
)
DATA=$(($(stat -c %b "$D/next.raw") * 512))
IMG2=vm/100/$T2/drive-scsi0.img IMG1=vm/100/$T1/drive-scsi0.img

start_nginx "$W" "$D" ds/ || die "nginx did not start"
PIDS+=("$NGINX_PID")
DIRECT=http://127.0.0.1:$PORT/ds
python3 tests/integration/faultproxy.py --upstream "http://127.0.0.1:$PORT" --port-file "$W/proxy.port" \
  --mode delay --ms "$DELAY_MS" --rate "$RATE" >"$W/proxy.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 50); do [ -s "$W/proxy.port" ] && break; sleep 0.1; done
[ -s "$W/proxy.port" ] || die "faultproxy did not start"
SLOW=http://127.0.0.1:$(cat "$W/proxy.port")/ds
rm -f "$W/proxy.port"

declare -A V
add() { V[$1]+="$2 "; }
med() { printf '%s\n' ${V[$1]-} | sort -g | awk 'NF {v[++n] = $1} END {if (!n) print "nan"; else if (n % 2) print v[(n + 1) / 2]; else print (v[n / 2] + v[n / 2 + 1]) / 2}'; }
range() { printf '%s\n' ${V[$1]-} | sort -g | awk 'NF {v[++n] = $1} END {printf "%s–%s", v[1], v[n]}'; }
calc() { awk "BEGIN {print $*}"; }

# boot DRIVE-OPTIONS HASH [ACCEL]: seconds from QEMU's start to the marker (HASH checked), into BOOT_S;
# MARK_BYTES: what the mount had fetched then (when one is in place)
boot() {
  local serial=$W/serial.log t0 t1 got
  : >"$serial"
  t0=$EPOCHREALTIME
  qemu-system-x86_64 -machine accel=${3:-$ACCEL} -m 256 -display none -monitor none -no-reboot \
    -serial "file:$serial" -drive "$1" >"$W/qemu.out" 2>&1 &
  local q=$!
  MARK_BYTES=""
  local n=9000 # 180 s; a probe of ACCEL 60 s
  [ -n "${3:-}" ] && n=3000
  for _ in $(seq $n); do
    grep -q "LAZYIMG-BOOT-" "$serial" && break
    kill -0 "$q" 2>/dev/null || break
    sleep 0.02
  done
  t1=$EPOCHREALTIME
  if mountpoint -q "$MNT"; then
    MARK_BYTES=$("$LZ" status --json "$MNT" | python3 -c 'import json, sys; print(json.load(sys.stdin)["cache"]["load_bytes"])')
  fi
  for _ in $(seq 300); do kill -0 "$q" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$q" 2>/dev/null || true
  wait "$q" || true
  got=$(sed -n 's/.*LAZYIMG-BOOT-OK \([0-9a-f]\{64\}\).*/\1/p' "$serial" | tail -1)
  BOOT_S=$(calc "$t1 - $t0")
  [ "$got" = "$2" ] || { [ -n "${3:-}" ] && return 1; die "the boot did not print the expected hash (console: $(tail -3 "$serial" | tr '\n' ' '); $(tail -3 "$W/qemu.out" | tr '\n' ' '))"; }
}
mount_fg() {
  "$LZ" mount -f "$@" "$MNT" >"$W/daemon.log" 2>&1 &
  MPID=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
  cat "$W/daemon.log" >&2
  die "mount failed"
}
umount_fg() {
  fusermount3 -u "$MNT"
  wait "$MPID" || true
}

if [ -z "$ACCEL" ]; then
  ACCEL=tcg
  [ -w /dev/kvm ] && boot "file=$D/next.raw,format=raw,if=virtio,snapshot=on" "$WANT2" kvm && ACCEL=kvm
fi
# profiles are kept per store location: one recording per link
log "accel $ACCEL; the first snapshot's boot records the profile, once per link..."
for link in slow direct; do
  url=$SLOW
  [ $link = direct ] && url=$DIRECT
  rm -rf "$W/cache-profile-$link"
  mount_fg "$url" --cache-dir "$W/cache-profile-$link"
  boot "file=$MNT/$IMG1,format=raw,if=virtio,snapshot=on" "$WANT1"
  umount_fg
  "$LZ" cache clear --cache-dir "$W/cache-profile-$link" >/dev/null
done

for run in $(seq "$RUNS"); do
  log "run $run of $RUNS"
  boot "file=$D/next.raw,format=raw,if=virtio,snapshot=on" "$WANT2"
  add raw "$BOOT_S"
  for link in slow direct; do
    url=$SLOW
    [ $link = direct ] && url=$DIRECT
    rm -rf "$W/cache"
    mount_fg "$url" --cache-dir "$W/cache" --no-boot-profile
    boot "file=$MNT/$IMG2,format=raw,if=virtio,snapshot=on" "$WANT2"
    add "$link.none" "$BOOT_S"
    add "$link.none.bytes" "$MARK_BYTES"
    umount_fg
    rm -rf "$W/cache"
    cp -a "$W/cache-profile-$link" "$W/cache"
    mount_fg "$url" --cache-dir "$W/cache"
    boot "file=$MNT/$IMG2,format=raw,if=virtio,snapshot=on" "$WANT2"
    add "$link.profile" "$BOOT_S"
    add "$link.profile.bytes" "$MARK_BYTES"
    umount_fg
    # "…the replay of X fetched R chunks (H read in the window, U not), S were cached already"
    read -r r h u s < <(sed -n 's/.*fetched \([0-9]*\) chunks (\([0-9]*\) read in the window, \([0-9]*\) not), \([0-9]*\) were cached.*/\1 \2 \3 \4/p' "$W/daemon.log" | tail -1)
    add "$link.replayed" "${r:-0}"
    add "$link.useless" "${u:-0}"
    add "$link.skipped" "${s:-0}"
    log "  $link: none $(med "$link.none") s, profile $(med "$link.profile") s (replayed ${r:-?}, useless ${u:-?})"
  done
  log "  raw $(med raw) s"
done

RAW=$(med raw)
{
  echo
  echo "lazyimg boot benchmark (contrib/bench-boot.sh) — $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) cores, accel $ACCEL"
  echo "disk: $SIZE_MB MiB, $((DATA >> 20)) MiB of data; the guest reads ${READ:-all} of its data files; the next backup rewrites $CHANGE data files; 4 MiB chunks; $RUNS boots per figure (median, min–max)"
  echo "constrained link: faultproxy.py, +$DELAY_MS ms per request, $(calc "$RATE * 8 / 1e6") Mbit/s; direct: nginx on 127.0.0.1"
  echo "all the next snapshot's data chunks are $(calc "int($WIRE / 1048576)") MiB on the wire: $(calc "int($WIRE / $RATE * 10) / 10") s at the link's rate (a boot that reads all of them cannot be faster)"
  echo
  echo "| boot of the next backup | seconds to marker | min–max | excess over raw | MiB fetched before the marker |"
  echo "|---|---|---|---|---|"
  echo "| raw file | $RAW | $(range raw) | | |"
  for link in slow:constrained direct:direct; do
    k=${link%%:*}
    for m in none:"empty cache, no profile" profile:"empty cache, profile of the previous backup"; do
      x=${m%%:*}
      printf '| %s, %s | %s | %s | %.1f | %.0f |\n' "${link#*:}" "${m#*:}" "$(med "$k.$x")" "$(range "$k.$x")" \
        "$(calc "$(med "$k.$x") - $RAW")" "$(calc "$(med "$k.$x.bytes") / 1048576")"
    done
  done
  ex_none=$(calc "$(med slow.none) - $RAW")
  ex_prof=$(calc "$(med slow.profile) - $RAW")
  ratio=$(calc "($ex_prof > 0.05 ? $ex_none / $ex_prof : 99)")
  echo
  echo "| target (constrained link) | value | target | result |"
  echo "|---|---|---|---|"
  printf '| excess without ÷ excess with the profile | %.2f | >= 2 | %s |\n' "$ratio" "$(awk -v v="$ratio" 'BEGIN {print (v >= 2 ? "PASS" : "FAIL")}')"
  t=$(calc "$(med slow.profile) / $RAW")
  printf '| with the profile ÷ raw file | %.2f | <= 1.3 | %s |\n' "$t" "$(awk -v v="$t" 'BEGIN {print (v <= 1.3 ? "PASS" : "FAIL")}')"
  u=$(calc "($(med slow.replayed) > 0 ? $(med slow.useless) / $(med slow.replayed) : 0)")
  printf '| useless prefetches ÷ replayed (chunks of one size: bytes alike) | %.2f | <= 0.10 | %s |\n' "$u" "$(awk -v v="$u" 'BEGIN {print (v <= 0.10 ? "PASS" : "FAIL")}')"
  echo
  echo "replay per run (constrained): replayed $(printf '%s' "${V[slow.replayed]}"), useless $(printf '%s' "${V[slow.useless]}"), already cached $(printf '%s' "${V[slow.skipped]}")"
} | tee "$W/results.txt"
