#!/bin/bash
# lazyimg benchmark (not a test): what `lazyimg status` costs the daemon while
# an image is being cached. A casync image of small chunks (SIZE_MB, default
# 1024 MiB of incompressible data, chunked by `casync make` with its default
# 16K:64K:256K) in a local store; a fresh mount with an empty --cache-dir;
# while `cat` reads the image once, `lazyimg status` every 0.2 s, then ten
# more a little apart with the cache settled. Prints, per run, the CPU time
# of the daemon's control thread (the thread that answers status; counting
# cached chunks is nearly all of it), the status calls, the image's counts
# afresh, chunk lookups and index rows read (status --json: report; builds
# from before 2026-12-07 have no such field) and the read's time.
#
#   contrib/bench-status.sh [WORKDIR]   (root; default /var/tmp/lazyimg-bench-status)
#   LAZYIMG_BUILD=DIR  the build directory (default ./build)
#   LAZYIMG=PATH       the lazyimg binary (default DIR/fs/lazyimg): compare builds
#   RUNS=N             runs (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${LAZYIMG_BUILD:-$ROOT/build}
LZ=${LAZYIMG:-$B/fs/lazyimg}
W=${1:-/var/tmp/lazyimg-bench-status}
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-1024}
die() { echo "bench-status.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (FUSE mounts)"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MB must be a positive number"
for c in casync python3 fusermount3 mountpoint; do
  command -v "$c" >/dev/null || die "$c is needed (contrib/install-deps.sh)"
done
[ -x "$B/contrib/lazyimg-mkimage" ] || contrib/build.sh >/dev/null
[ -x "$LZ" ] || die "no lazyimg binary at $LZ"

mkdir -p "$W"
W=$(realpath "$W")
D=$W/data-${SIZE_MB}M MNT=$W/mnt CACHE=$W/cache
mkdir -p "$D" "$MNT"
PID=
cleanup() {
  if mountpoint -q "$MNT"; then fusermount3 -u "$MNT" 2>/dev/null || true; fi
  [ -n "$PID" ] && wait "$PID" 2>/dev/null
  return 0
}
trap cleanup EXIT
if [ ! -f "$D/.made-v1" ]; then
  rm -rf "${D:?}"/*
  echo "writing the $SIZE_MB MiB image and its casync store..." >&2
  "$B/contrib/lazyimg-mkimage" "$D/img.raw" "rand:${SIZE_MB}M" >/dev/null
  casync make --store="$D/default.castr" "$D/img.caibx" "$D/img.raw" >/dev/null
  rm -f "$D/img.raw"
  touch "$D/.made-v1"
fi
chunks=$(find "$D/default.castr" -name '*.cacnk' | wc -l)

# control_ms: CPU of the daemon's control thread (utime + stime), ms
control_ms() {
  local t
  for t in /proc/"$PID"/task/*; do
    [ "$(cat "$t/comm")" = lz-control ] && sed 's/.*) //' "$t/stat" | awk '{print ($12 + $13) * 10}'
  done
  return 0
}

echo "lazyimg status while an image is cached (contrib/bench-status.sh) — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
echo "image: $SIZE_MB MiB of data, casync store with $chunks chunks (16K:64K:256K), local; binary $LZ"
for run in $(seq "$RUNS"); do
  rm -rf "$CACHE"
  "$LZ" mount -f --cache-dir "$CACHE" "$D" "$MNT" >"$W/daemon.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
  mountpoint -q "$MNT" || die "the mount failed: $(cat "$W/daemon.log")"
  stat "$MNT/img" >/dev/null
  c0=$(control_ms)
  t0=$EPOCHREALTIME
  cat "$MNT/img" >/dev/null &
  reader=$!
  calls=0
  while kill -0 "$reader" 2>/dev/null; do
    "$LZ" status "$MNT" >/dev/null
    calls=$((calls + 1))
    sleep 0.2
  done
  wait "$reader"
  t1=$EPOCHREALTIME
  during=$calls
  for _ in $(seq 10); do
    sleep 0.3
    "$LZ" status "$MNT" >/dev/null
    calls=$((calls + 1))
  done
  c1=$(control_ms)
  json=$("$LZ" status --json "$MNT")
  fusermount3 -u "$MNT"
  wait "$PID" || true
  PID=
  python3 - "$json" "$run" "$during" "$calls" "$c0" "$c1" "$t0" "$t1" <<'EOF'
import json, sys
o = json.loads(sys.argv[1])
run, during, calls = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ms = float(sys.argv[6]) - float(sys.argv[5])
read_s = float(sys.argv[8]) - float(sys.argv[7])
img = o["images"][0] if o["images"] else {}
rep = o.get("report")
cost = (f"counts {rep['counts']}, chunk lookups {rep['lookups']}, index rows read {rep['rows']}"
        if rep else "counts n/a (no report field)")
print(f"run {run}: {calls} status calls ({during} during the {read_s:.2f} s read), "
      f"control thread {ms:.0f} ms of CPU ({ms / calls:.1f} ms per call), "
      f"{cost}, hydrated {img.get('hydrated_pct', 'n/a')}%")
EOF
done
