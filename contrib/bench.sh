#!/bin/bash
# lazyimg benchmark (not a test): sequential read through the mount of a
# local datastore against plain reads of the same bytes on this machine.
#
#   contrib/bench.sh [WORKDIR]      (root; default WORKDIR /var/tmp/lazyimg-bench)
#
# Builds a 4 GiB image: 8 x (256 MiB incompressible + 256 MiB zeros), 4 MiB
# chunks, written with lazyimg-mkpbs. The datastore files are read once first
# so the page cache is warm for them; every lazyimg figure comes from a fresh
# mount (so the kernel's cache of the mounted file is empty). Each figure is
# the median of RUNS runs (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/build
W=${1:-/var/tmp/lazyimg-bench}
RUNS=${RUNS:-3}
[ -x "$B/fs/lazyimg" ] || contrib/build.sh >/dev/null

mkdir -p "$W"
STORE=$W/ds MNT=$W/mnt RAW=$W/bench.raw
SEG=256 NSEG=8
IMG=$MNT/vm/100/latest/drive-scsi0.img
mkdir -p "$MNT"
cleanup() { mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"; true; }
trap cleanup EXIT

if [ ! -f "$STORE/vm/100/2025-07-10T12:00:00Z/index.json.blob" ]; then
  layout=$(for _ in $(seq $NSEG); do printf 'rand:%dM,zero:%dM,' $SEG $SEG; done)
  "$B/contrib/lazyimg-mkimage" "$RAW" "${layout%,}"
  "$B/contrib/lazyimg-mkpbs" --quiet --time 2025-07-10T12:00:00Z "$STORE" drive-scsi0.img="$RAW"
fi
SIZE=$(stat -c %s "$RAW")
DATA=$((NSEG * SEG * 1024 * 1024))

now() { date +%s.%N; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f", b / t / 1e6}'; }

mount_fresh() {
  cleanup
  for _ in $(seq 50); do mountpoint -q "$MNT" || break; sleep 0.1; done
  "$B/fs/lazyimg" mount "$STORE" "$MNT"
  PID=$(pgrep -n -f "lazyimg mount $STORE")
}

# data segments only: dd each 256 MiB data segment
read_data_half() {
  local t0 t1 i
  t0=$(now)
  for i in $(seq 0 $((NSEG - 1))); do
    dd if="$1" of=/dev/null bs=1M skip=$((i * 2 * SEG)) count=$SEG status=none
  done
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

echo "warming the page cache for the datastore and the raw image..."
find "$STORE/.chunks" -type f -size +0 -print0 | xargs -0 cat > /dev/null
cat "$RAW" > /dev/null

t_cat_raw=$(for _ in $(seq $RUNS); do t0=$(now); cat "$RAW" > /dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; done | median)
t_data_raw=$(for _ in $(seq $RUNS); do read_data_half "$RAW"; done | median)

: > "$W/times"
rss_kb=0
for _ in $(seq $RUNS); do
  mount_fresh
  t0=$(now); cat "$IMG" > /dev/null; t1=$(now)
  echo "$t1 - $t0" | bc -l >> "$W/times"
  r=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
  [ "$r" -gt "$rss_kb" ] && rss_kb=$r
done
t_cat_mnt=$(median < "$W/times")
t_data_mnt=$(for _ in $(seq $RUNS); do mount_fresh; read_data_half "$IMG"; done | median)

# cp --sparse=always; the zero chunk is moved away meanwhile: had cp read a
# hole through the store, it would have failed with EIO
ZERO=bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8
ZFILE=$STORE/.chunks/${ZERO:0:4}/$ZERO
t_cp=$(for _ in $(seq $RUNS); do
  mount_fresh; rm -f "$W/copy.raw"
  [ -f "$ZFILE" ] && mv "$ZFILE" "$ZFILE.away"
  t0=$(now); cp --sparse=always "$IMG" "$W/copy.raw"; t1=$(now)
  [ -f "$ZFILE.away" ] && mv "$ZFILE.away" "$ZFILE"
  echo "$t1 - $t0" | bc -l
done | median)
# the read side of cp alone: the same copy into /dev/null (no file to write)
t_cp_null=$(for _ in $(seq $RUNS); do
  mount_fresh
  [ -f "$ZFILE" ] && mv "$ZFILE" "$ZFILE.away"
  t0=$(now); cp --sparse=always "$IMG" /dev/null; t1=$(now)
  [ -f "$ZFILE.away" ] && mv "$ZFILE.away" "$ZFILE"
  echo "$t1 - $t0" | bc -l
done | median)
# what writing the copy costs on this disk: cp of the raw file
t_cp_raw=$(for _ in $(seq $RUNS); do
  rm -f "$W/copy2.raw"; t0=$(now); cp --sparse=always "$RAW" "$W/copy2.raw"; t1=$(now)
  echo "$t1 - $t0" | bc -l
done | median)
rm -f "$W/copy2.raw"
cmp "$W/copy.raw" "$RAW" || { echo "bench: cp --sparse output differs from the source" >&2; exit 1; }
copy_kb=$(du -k "$W/copy.raw" | cut -f1)
rm -f "$W/copy.raw"
cleanup

cat <<EOT

lazyimg benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)
image: $((SIZE >> 20)) MiB, $((DATA >> 20)) MiB incompressible data + $(((SIZE - DATA) >> 20)) MiB zero chunks, 4 MiB chunks; median of $RUNS runs

| what | time (s) | MB/s | vs reference |
|---|---|---|---|
| cat raw image file (reference) | $(printf %.2f "$t_cat_raw") | $(mbps "$SIZE" "$t_cat_raw") | 1.00 |
| cat image through the mount | $(printf %.2f "$t_cat_mnt") | $(mbps "$SIZE" "$t_cat_mnt") | $(echo "$t_cat_raw / $t_cat_mnt" | bc -l | xargs printf %.2f) |
| data half, raw file (reference) | $(printf %.2f "$t_data_raw") | $(mbps "$DATA" "$t_data_raw") | 1.00 |
| data half through the mount | $(printf %.2f "$t_data_mnt") | $(mbps "$DATA" "$t_data_mnt") | $(echo "$t_data_raw / $t_data_mnt" | bc -l | xargs printf %.2f) |
| cp --sparse=always from the mount to a file | $(printf %.2f "$t_cp") | $(mbps "$SIZE" "$t_cp") | $(echo "$t_cp / $t_data_mnt" | bc -l | xargs printf %.2f) x data-half read |
| cp --sparse=always from the mount to /dev/null | $(printf %.2f "$t_cp_null") | $(mbps "$SIZE" "$t_cp_null") | $(echo "$t_cp_null / $t_data_mnt" | bc -l | xargs printf %.2f) x data-half read |
| cp --sparse=always of the raw file to a file (cost of writing the copy) | $(printf %.2f "$t_cp_raw") | $(mbps "$SIZE" "$t_cp_raw") | |

daemon peak RSS (VmHWM, highest of the runs) while reading the whole image: $((rss_kb / 1024)) MiB
cp --sparse=always output: $((copy_kb / 1024)) MiB allocated of $((SIZE >> 20)) MiB; identical to the source; no zero chunk read
EOT
