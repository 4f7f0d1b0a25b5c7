#!/bin/bash
# lazyimg benchmark (not a test): sequential read through the mount of a
# local datastore against plain reads of the same bytes on this machine,
# without and with the chunk cache (cold and warm), and warm random 4 KiB
# O_DIRECT read latency (fio).
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
PID=
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

CACHE=$W/cache
# mount_fresh [OPTIONS...]: a new daemon (default: no disk cache), in the
# foreground in our background so that its log ($W/daemon.log) is complete
# once it has exited. Sets PID.
mount_fresh() {
  umount_wait
  "$B/fs/lazyimg" mount -f "${@:---no-cache}" "$STORE" "$MNT" >"$W/daemon.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.05; done
  mountpoint -q "$MNT" || { cat "$W/daemon.log" >&2; exit 1; }
}
umount_wait() {
  if mountpoint -q "$MNT"; then
    fusermount3 -u "$MNT"
    wait "$PID" 2>/dev/null || true
  fi
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

# --- the chunk cache: cold (empty cache) and warm (every chunk cached) ------------
log_num() { sed -n "s/.* \([0-9][0-9]*\) $1.*/\1/p" "$W/daemon.log" | tail -1; }
rm -rf "$CACHE"
mount_fresh --cache-dir "$CACHE"
t0=$(now); cat "$IMG" > /dev/null; t1=$(now)
t_cold=$(echo "$t1 - $t0" | bc -l)
umount_wait
sql_cold=$(log_num "SQLite write transactions")
: > "$W/times"
for _ in $(seq $RUNS); do
  mount_fresh --cache-dir "$CACHE"
  t0=$(now); cat "$IMG" > /dev/null; t1=$(now)
  echo "$t1 - $t0" | bc -l >> "$W/times"
  umount_wait
done
t_warm=$(median < "$W/times")
sql_warm=$(log_num "SQLite write transactions")
loads_warm=$(sed -n 's/.*chunks loaded from the store \([0-9]*\).*/\1/p' "$W/daemon.log" | tail -1)
t_warm_data=$(for _ in $(seq $RUNS); do mount_fresh --cache-dir "$CACHE"; read_data_half "$IMG"; umount_wait; done | median)

# warm random 4 KiB O_DIRECT reads over the first data segment (fio)
fio_p() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["jobs"][0]["read"]; p=d["clat_ns"]["percentile"]; print("%.0f %.0f %.0f %.0f" % (p["50.000000"]/1e3, p["99.000000"]/1e3, p["99.900000"]/1e3, d["iops"]))' "$1"; }
fio_run() {
  fio --name=randread --filename="$1" --direct=1 --rw=randread --bs=4k --ioengine=psync \
    --size=${SEG}M --runtime=10 --time_based --output-format=json > "$2"
}
mount_fresh --cache-dir "$CACHE"
cat "$IMG" > /dev/null  # page cache of the cache files, like the datastore's
fio_run "$IMG" "$W/fio-mnt.json"
umount_wait
fio_run "$RAW" "$W/fio-raw.json"
read -r f_p50 f_p99 f_p999 f_iops < <(fio_p "$W/fio-mnt.json")
read -r r_p50 r_p99 r_p999 r_iops < <(fio_p "$W/fio-raw.json")
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

chunk cache (--cache-dir on the same disk; each warm figure from a fresh mount):

| what | time (s) | MB/s | vs reference |
|---|---|---|---|
| cat raw image file (reference) | $(printf %.2f "$t_cat_raw") | $(mbps "$SIZE" "$t_cat_raw") | 1.00 |
| cold: cat through the mount, empty cache | $(printf %.2f "$t_cold") | $(mbps "$SIZE" "$t_cold") | $(echo "$t_cat_raw / $t_cold" | bc -l | xargs printf %.2f) |
| warm: cat through the mount, every chunk cached | $(printf %.2f "$t_warm") | $(mbps "$SIZE" "$t_warm") | $(echo "$t_cat_raw / $t_warm" | bc -l | xargs printf %.2f) |
| warm: data half through the mount | $(printf %.2f "$t_warm_data") | $(mbps "$DATA" "$t_warm_data") | $(echo "$t_data_raw / $t_warm_data" | bc -l | xargs printf %.2f) vs raw data half |

chunks read from the store by a warm run: $loads_warm
SQLite write transactions: $sql_cold for the cold read ($(echo "$sql_cold * 1073741824 / $SIZE" | bc) per GiB read), $sql_warm for a warm read ($(echo "$sql_warm * 1073741824 / $SIZE" | bc) per GiB read)

| random 4 KiB reads, O_DIRECT, fio psync, 10 s, first ${SEG} MiB (data) | p50 (µs) | p99 (µs) | p99.9 (µs) | IOPS |
|---|---|---|---|---|
| through the mount, warm cache | $f_p50 | $f_p99 | $f_p999 | $f_iops |
| raw image file on this disk (reference) | $r_p50 | $r_p99 | $r_p999 | $r_iops |
EOT
