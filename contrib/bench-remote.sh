#!/bin/bash
# lazyimg benchmark (not a test) for remote stores: a 4 GiB image
# (8 x (256 MiB incompressible + 256 MiB zeros), 4 MiB chunks) in a datastore
# served by nginx on 127.0.0.1. contrib/bench.sh measures the remote read paths
# against the issue-13 targets; this script adds hydration, latency under a
# hydration and --fetch-concurrency with 20 ms per request.
#
#   contrib/bench-remote.sh [WORKDIR]   (root; default /var/tmp/lazyimg-bench)
#
# Measures, in one run on this machine:
#  - the reference: curl downloading the same chunk files with the same
#    concurrency (16, --parallel), bytes discarded;
#  - cold sequential reads through the mount (--no-cache: every chunk is
#    fetched): the data half, and the whole image;
#  - lazyimg hydrate of the image into an empty cache;
#  - with 20 ms added to every request (tests/integration/faultproxy.py in
#    front of nginx): the cold data-half read at --fetch-concurrency 1, 4, 16, 32;
#  - fio random 4 KiB O_DIRECT reads (3 s) of a cached region, p99 latency without
#    and with a hydration of the rest of the image running;
#  - (issue 17) fio random 4 KiB O_DIRECT reads (10 s) of the last data segment
#    with 20 ms per request and an empty cache, while `cat` reads the image from
#    its start and a hydration runs: p50/p99 against 2 round trips plus the
#    transfer time of one chunk (a single chunk fetched through the proxy).
# Each figure is the median of RUNS runs (default 3; delay runs: 1).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${LAZYIMG_BUILD:-$ROOT/build}
W=${1:-/var/tmp/lazyimg-bench}
RUNS=${RUNS:-3}
[ -x "$B/fs/lazyimg" ] || contrib/build.sh >/dev/null
command -v nginx >/dev/null || { echo "nginx is needed (contrib/install-deps.sh)" >&2; exit 1; }

mkdir -p "$W"
STORE=$W/ds MNT=$W/mnt-remote RAW=$W/bench.raw
SEG=256 NSEG=8
REL=vm/100/latest/drive-scsi0.img
IMG=$MNT/$REL
DATA=$((NSEG * SEG * 1024 * 1024))
mkdir -p "$MNT"
if [ ! -f "$STORE/vm/100/2025-07-10T12:00:00Z/index.json.blob" ]; then
  layout=$(for _ in $(seq $NSEG); do printf 'rand:%dM,zero:%dM,' $SEG $SEG; done)
  "$B/contrib/lazyimg-mkimage" "$RAW" "${layout%,}"
  "$B/contrib/lazyimg-mkpbs" --quiet --time 2025-07-10T12:00:00Z "$STORE" drive-scsi0.img="$RAW"
fi

now() { date +%s.%N; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f", b / t / 1e6}'; }

NGINX_PID= PROXY_PID= PID=
cleanup() {
  mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
  true
}
trap cleanup EXIT

start_nginx "$W" "$W" ds/ || { echo "nginx did not start" >&2; exit 1; }
URL=http://127.0.0.1:$PORT/ds

echo "warming the page cache for the datastore..."
find "$STORE/.chunks" -type f -size +0 -print0 | xargs -0 cat >/dev/null

umount_wait() {
  if mountpoint -q "$MNT"; then
    fusermount3 -u "$MNT"
    wait "$PID" 2>/dev/null || true
  fi
}
# mount_fresh STORE_URL [OPTIONS...]: a new daemon in our background (log in $W/remote.log).
mount_fresh() {
  local url=$1
  shift
  umount_wait
  "$B/fs/lazyimg" mount -f "$@" "$url" "$MNT" >"$W/remote.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
  mountpoint -q "$MNT" || { cat "$W/remote.log" >&2; exit 1; }
}
read_data_half() {
  local t0 t1 i
  t0=$(now)
  for i in $(seq 0 $((NSEG - 1))); do
    dd if="$IMG" of=/dev/null bs=1M skip=$((i * 2 * SEG)) count=$SEG status=none
  done
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

# --- reference: curl, same chunk files, same concurrency ----------------------
find "$STORE/.chunks" -type f -size +0 | sed "s|^$W|url = \"http://127.0.0.1:$PORT|; s|\$|\"\noutput = \"/dev/null\"|" >"$W/urls.cfg"
CHUNK_BYTES=$(find "$STORE/.chunks" -type f -size +0 -printf '%s\n' | awk '{s += $1} END {printf "%d\n", s}')
t_curl=$(for _ in $(seq $RUNS); do
  t0=$(now); curl -s --parallel --parallel-max 16 -K "$W/urls.cfg" 2>/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc -l
done | median)

# --- cold reads through the mount ---------------------------------------------
t_data=$(for _ in $(seq $RUNS); do mount_fresh "$URL" --no-cache; read_data_half; done | median)
umount_wait
rss=$(for _ in $(seq $RUNS); do
  mount_fresh "$URL" --no-cache
  t0=$(now); cat "$IMG" >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc -l >>"$W/t_whole"
  grep VmHWM /proc/$PID/status | awk '{print $2}'
done | sort -n | tail -1)
t_whole=$(median <"$W/t_whole")
rm -f "$W/t_whole"
umount_wait

# --- hydration -------------------------------------------------------------------
t_hyd=$(for _ in $(seq $RUNS); do
  rm -rf "$W/cache-remote"
  mount_fresh "$URL" --cache-dir "$W/cache-remote"
  t0=$(now); "$B/fs/lazyimg" hydrate "$IMG" >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc -l
done | median)
umount_wait

# --- fio p99 with and without a hydration running --------------------------------
FIO_SIZE=128M
fio_p99() {
  fio --name=rand --filename="$IMG" --rw=randread --bs=4k --direct=1 --ioengine=psync \
      --size=$FIO_SIZE --time_based --runtime=3 --output-format=json >"$W/fio-remote.json"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); p=j["jobs"][0]["read"]["clat_ns"]["percentile"]; print(round(p["99.000000"]/1000))' "$W/fio-remote.json"
}
rm -rf "$W/cache-remote"
mount_fresh "$URL" --cache-dir "$W/cache-remote"
dd if="$IMG" of=/dev/null bs=1M count=128 status=none # the fio region, cached
p99_quiet=$(fio_p99)
"$B/fs/lazyimg" hydrate "$IMG" >/dev/null &
HYD=$!
sleep 0.5
p99_hyd=$(fio_p99)
hyd_running=no
kill -0 $HYD 2>/dev/null && hyd_running=yes
wait $HYD || true
umount_wait

# --- 20 ms per request through the proxy -----------------------------------------
PPORT_FILE=$W/proxy.port
rm -f "$PPORT_FILE"
python3 "$ROOT/tests/integration/faultproxy.py" --upstream "http://127.0.0.1:$PORT" \
  --port-file "$PPORT_FILE" --mode none >"$W/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do [ -s "$PPORT_FILE" ] && break; sleep 0.1; done
PURL=http://127.0.0.1:$(cat "$PPORT_FILE")/ds
# the proxy relays every byte in Python: on 2 cores it takes CPU from the
# daemon, so the same path without the delay is a reference too
mount_fresh "$PURL" --no-cache
t_proxy=$(read_data_half)
curl -sf -o /dev/null "http://127.0.0.1:$(cat "$PPORT_FILE")/__fault?mode=delay&ms=20"
declare -A t_delay
for c in 1 4 16 32; do
  mount_fresh "$PURL" --no-cache --fetch-concurrency $c
  t_delay[$c]=$(read_data_half)
done
umount_wait

# --- random reads under load: 20 ms per request, empty cache ----------------------
# one chunk's transfer through the proxy, the delay included (median of 5)
one_chunk=$(find "$STORE/.chunks" -type f -size +1M -print -quit)
t_chunk=$(for _ in 1 2 3 4 5; do
  curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$(cat "$PPORT_FILE")${one_chunk#"$W"}"
done | median)
rm -rf "$W/cache-load"
mount_fresh "$PURL" --cache-dir "$W/cache-load"
cat "$IMG" >/dev/null &
CAT=$!
"$B/fs/lazyimg" hydrate "$IMG" >/dev/null 2>&1 &
HYD=$!
sleep 0.5
fio --name=load --filename="$IMG" --rw=randread --bs=4k --direct=1 --ioengine=psync \
  --offset=$(((2 * NSEG - 2) * SEG))M --size=${SEG}M --time_based --runtime=10 \
  --output-format=json >"$W/fio-load.json"
kill $CAT $HYD 2>/dev/null || true
wait $CAT $HYD 2>/dev/null || true
# misses are the first read of each of the region's 64 chunks: a sliver of
# the reads, so the tail (p99.9, p99.99, max) says more about them than p99
read -r load_p50 load_p99 load_p999 load_p9999 load_max load_n < <(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["jobs"][0]["read"]
p = r["clat_ns"]["percentile"]
print(*(round(p[k] / 1000) for k in ("50.000000", "99.000000", "99.900000", "99.990000")),
      round(r["clat_ns"]["max"] / 1000), r["total_ios"])' "$W/fio-load.json")
umount_wait

echo
echo "4 GiB image (2 GiB incompressible in 4 MiB chunks, 2 GiB zero chunks), nginx on 127.0.0.1,"
echo "$(nproc) CPUs, median of $RUNS runs"
echo
echo "| what | s | MB/s |"
echo "|---|---|---|"
printf '| curl, the %d chunk files (%d MB), --parallel-max 16 (reference) | %.2f | %s |\n' \
  "$(wc -l <"$W/urls.cfg" | awk '{print $1 / 2}')" $((CHUNK_BYTES / 1000000)) "$t_curl" "$(mbps "$CHUNK_BYTES" "$t_curl")"
printf '| cold read through the mount, data half | %.2f | %s (%.2fx curl) |\n' "$t_data" "$(mbps $DATA "$t_data")" \
  "$(echo "$t_curl / $t_data" | bc -l)"
printf '| cold read through the mount, whole image | %.2f | %s |\n' "$t_whole" "$(mbps $((DATA * 2)) "$t_whole")"
printf '| lazyimg hydrate into an empty cache | %.2f | %s (of data) |\n' "$t_hyd" "$(mbps $DATA "$t_hyd")"
printf '| through the proxy, no delay, --fetch-concurrency 16, data half | %.2f | %s |\n' "$t_proxy" "$(mbps $DATA "$t_proxy")"
for c in 1 4 16 32; do
  printf '| +20 ms per request, --fetch-concurrency %d, data half | %.2f | %s (%.0f%% of no delay direct, %.0f%% through the proxy) |\n' "$c" "${t_delay[$c]}" \
    "$(mbps $DATA "${t_delay[$c]}")" "$(echo "100 * $t_data / ${t_delay[$c]}" | bc -l)" "$(echo "100 * $t_proxy / ${t_delay[$c]}" | bc -l)"
done
echo
echo "daemon peak RSS, cold whole-image read: $((rss / 1024)) MiB"
echo "fio 4 KiB random O_DIRECT reads of a cached 128 MiB region, p99: ${p99_quiet} us alone, ${p99_hyd} us during a hydration (still running at the end: $hyd_running)"
bound=$(awk -v t="$t_chunk" 'BEGIN {printf "%.0f", (0.040 + t) * 1e6}')
echo "random 4 KiB O_DIRECT reads, +20 ms per request, empty cache, with cat and a hydration of the image running: $load_n reads in 10 s, p50 $load_p50 us, p99 $load_p99 us, p99.9 $load_p999 us, p99.99 $load_p9999 us, max $load_max us;" \
  "one chunk through the proxy $(awk -v t="$t_chunk" 'BEGIN {printf "%.0f", t * 1000}') ms, so 2 round trips + a chunk = $((bound / 1000)) ms:" \
  "$(awk -v p="$load_p99" -v b="$bound" 'BEGIN {print p <= b ? "PASS" : "FAIL"}')"
