#!/bin/bash
# lazyimg benchmark (not a test) for casync repositories: a 2 GiB image
# (8 x (240 MiB incompressible + 16 MiB zeros)) chunked by `casync make` twice,
# with the default chunk sizes (16K:64K:256K) and with 1M:4M:16M, into one
# zstd store served by nginx on 127.0.0.1.
#
#   contrib/bench-casync.sh [WORKDIR]   (root; default /var/tmp/lazyimg-bench-casync)
#   LAZYIMG_BUILD=DIR  the build directory (default ./build)
#   RUNS=N             runs per figure, the median is shown (default 3)
#   EXTRACT_RUNS=N     runs of casync extract (default 1: about a minute for
#                      the 64K index on a 2-core machine)
#
# Measures, in one run on this machine, for each of the two indexes:
#  - the peer's full restore: casync extract --store=http://.../default.castr
#    (writes the image to WORKDIR; casync's HTTP helper refuses chunks over
#    its size limit, "Chunk too large", so the 4M index may show n/a);
#  - a network reference: curl downloading the index's chunk files (each
#    distinct non-null chunk once, what a full read through the mount needs),
#    --parallel --parallel-max 16, bytes discarded;
#  - cold sequential read through a fresh mount (dd bs=1M to /dev/null), with
#    --no-cache and with an empty --cache-dir;
#  - warm read: the second read on the mount with the cache, after the page
#    cache is dropped (echo 3 > /proc/sys/vm/drop_caches), chunks from the
#    disk cache;
# with the chunk store's files in the page cache for every cold figure, and
# per-chunk overhead figures: chunks, nginx requests per cold read, the
# daemon's peak RSS (VmHWM), its context switches (all threads: wakeups) per
# cold --no-cache and warm read, and `lazyimg status --json` after a cold read.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${LAZYIMG_BUILD:-$ROOT/build}
W=${1:-/var/tmp/lazyimg-bench-casync}
RUNS=${RUNS:-3}
EXTRACT_RUNS=${EXTRACT_RUNS:-1}
[ "$(id -u)" = 0 ] || { echo "bench-casync.sh: run as root (FUSE mounts, drop_caches, nginx)" >&2; exit 1; }
[ -x "$B/fs/lazyimg" ] || contrib/build.sh >/dev/null
for c in casync nginx curl python3 zstd fusermount3 bc; do
  command -v "$c" >/dev/null || { echo "bench-casync.sh: $c is needed (contrib/install-deps.sh)" >&2; exit 1; }
done
LZ=$B/fs/lazyimg
MKIMAGE=$B/contrib/lazyimg-mkimage
CT=$ROOT/tests/integration/casync_tool.py

mkdir -p "$W"
W=$(realpath "$W")
REPO=$W/repo STORE=$W/repo/default.castr MNT=$W/mnt RAW=$W/bench.img
SEG=240 ZSEG=16 NSEG=8
SIZE=$((NSEG * (SEG + ZSEG) * 1024 * 1024))
mkdir -p "$MNT" "$REPO"
# name  index  casync make options ("-": none, the defaults 16K:64K:256K)
IMAGES=("64K x64k.img.caibx -"
  "4M x4m.img.caibx --chunk-size=1048576:4194304:16777216")

NGINX_PID="" PID=""
cleanup() {
  set +e
  if mountpoint -q "$MNT"; then fusermount3 -u -z "$MNT"; fi
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
  rm -f "$W/extract.img"
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f", b / t / 1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
warm_store() { find "$STORE" -type f -print0 | xargs -0 cat >/dev/null; }

# --- the image and the indexes (kept between runs) -----------------------------------
STAMP=$W/.made-v1
if [ ! -f "$STAMP" ]; then
  rm -rf "$STORE" "$REPO"/*.caibx "$RAW"
  layout=$(for _ in $(seq $NSEG); do printf 'rand:%dM,zero:%dM,' $SEG $ZSEG; done)
  echo "writing the $((SIZE >> 20)) MiB image..."
  "$MKIMAGE" "$RAW" "${layout%,}" >/dev/null
  for spec in "${IMAGES[@]}"; do
    read -r name idx opts <<<"$spec"
    [ "$opts" = - ] && opts=""
    echo "casync make $opts ($name average chunks)..."
    t0=$(now)
    # shellcheck disable=SC2086 # (no option, or one)
    casync make --store="$STORE" $opts "$REPO/$idx" "$RAW" >/dev/null
    echo "  $(echo "$(now) - $t0" | bc -l | xargs printf '%.1f') s"
  done
  touch "$STAMP"
fi
declare -A NCH NDIST NNULL
for spec in "${IMAGES[@]}"; do
  read -r name idx opts <<<"$spec"
  python3 "$CT" chunks "$REPO/$idx" >"$W/$name.chunks"
  NCH[$name]=$(wc -l <"$W/$name.chunks")
  NNULL[$name]=$(awk '$4 == "null"' "$W/$name.chunks" | wc -l)
  awk '$4 == "data" {print $3}' "$W/$name.chunks" | sort -u >"$W/$name.ids"
  NDIST[$name]=$(wc -l <"$W/$name.ids")
done

# --- nginx on a free port ------------------------------------------------------------
LOG=$W/access.log
start_nginx "$W" "$W" repo/ "$LOG" || { echo "nginx did not start" >&2; exit 1; }
URL=http://127.0.0.1:$PORT/repo
requests() { wc -l <"$LOG"; }

# --- mounts --------------------------------------------------------------------------
umount_wait() {
  if mountpoint -q "$MNT"; then
    fusermount3 -u "$MNT"
  fi
  if [ -n "$PID" ]; then
    wait "$PID" 2>/dev/null || true
    PID=""
  fi
}
# mount_fresh [OPTIONS...]: a new daemon for $URL (log in $W/mount.log)
mount_fresh() {
  umount_wait
  "$LZ" mount -f "$@" "$URL" "$MNT" >"$W/mount.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
  mountpoint -q "$MNT" || { cat "$W/mount.log" >&2; exit 1; }
}
read_image() { # FILE: seconds for dd of the whole file
  local t0
  t0=$(now)
  dd if="$1" of=/dev/null bs=1M status=none
  echo "$(now) - $t0" | bc -l
}
vmhwm() { awk '/^VmHWM/ {print $2}' "/proc/$PID/status"; }
# context switches of all the daemon's threads so far (its wakeups)
ctxsw() {
  cat "/proc/$PID/task/"*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {s += $2} END {print s + 0}'
}
cache_entries() {
  "$LZ" cache stats --json --cache-dir "$1" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["entries"])' 2>/dev/null || echo -1
}
# wait_cache DIR N: until the disk cache holds N entries or stops growing for
# 5 s (at most 120 s); prints the entries
wait_cache() {
  local n last=-1 same=0
  for _ in $(seq 1200); do
    n=$(cache_entries "$1")
    [ "$n" -ge "$2" ] && break
    if [ "$n" = "$last" ]; then
      same=$((same + 1))
      [ $same -ge 50 ] && break
    else
      same=0
    fi
    last=$n
    sleep 0.1
  done
  echo "$n"
}
status_fields() { # REL: the scalar fields of status --json: fetch, cache and image REL
  "$LZ" status --json "$MNT" 2>/dev/null | python3 -c '
import json, sys
st = json.load(sys.stdin)
out = []
for sec in ("fetch", "cache"):
    for k, v in (st.get(sec) or {}).items():
        if isinstance(v, (int, float, str, bool)):
            out.append(f"{sec}.{k}={v}")
for img in st.get("images") or []:
    if img.get("path") not in (sys.argv[1], "/" + sys.argv[1]):
        continue
    for k, v in img.items():
        if isinstance(v, (int, float, bool)):
            out.append(f"image.{k}={v}")
print(" ".join(out))' "$1" 2>/dev/null || echo "(lazyimg status --json did not answer)"
}

declare -A T_CURL T_EX T_NOC T_COLD T_WARM REQ_NOC REQ_COLD REQ_WARM CACHED RSS STATUS EX_ERR CSW_NOC CSW_WARM
for spec in "${IMAGES[@]}"; do
  read -r name idx opts <<<"$spec"
  img=$MNT/${idx%.caibx}
  echo "measuring the $name index (${NCH[$name]} chunks)..."

  # network reference: curl, the distinct non-null chunk files, 16 in parallel
  sed "s|^\(....\)\(.*\)\$|url = \"$URL/default.castr/\1/\1\2.cacnk\"\noutput = \"/dev/null\"|" "$W/$name.ids" >"$W/$name.curl"
  warm_store
  T_CURL[$name]=$(for _ in $(seq "$RUNS"); do
    t0=$(now); curl -s --no-progress-meter --parallel --parallel-max 16 -K "$W/$name.curl" 2>/dev/null
    echo "$(now) - $t0" | bc -l
  done | median)

  # the peer's restore
  rm -f "$W/t.ex"
  EX_ERR[$name]=""
  for _ in $(seq "$EXTRACT_RUNS"); do
    rm -f "$W/extract.img"
    warm_store
    t0=$(now)
    if ! casync extract --store="$URL/default.castr" "$REPO/$idx" "$W/extract.img" >/dev/null 2>"$W/extract.log"; then
      EX_ERR[$name]=$(grep -v '^Failed to run' "$W/extract.log" | head -1)
      break
    fi
    echo "$(now) - $t0" | bc -l >>"$W/t.ex"
    cmp -s "$W/extract.img" "$RAW" || { EX_ERR[$name]="the restored file differs from the image"; break; }
  done
  T_EX[$name]=""
  if [ -n "${EX_ERR[$name]}" ]; then
    echo "casync extract of $idx failed: ${EX_ERR[$name]}" >&2
  elif [ -s "$W/t.ex" ]; then
    T_EX[$name]=$(median <"$W/t.ex")
  fi
  rm -f "$W/extract.img" "$W/t.ex"

  # cold, --no-cache
  rm -f "$W/t.noc" "$W/r.noc"
  for _ in $(seq "$RUNS"); do
    warm_store
    mount_fresh --no-cache
    r0=$(requests)
    c0=$(ctxsw)
    read_image "$img" >>"$W/t.noc"
    echo $(($(ctxsw) - c0)) >>"$W/x.noc"
    echo $(($(requests) - r0)) >>"$W/r.noc"
    rss=$(vmhwm)
    umount_wait
    echo "$rss" >>"$W/rss.$name"
  done
  T_NOC[$name]=$(median <"$W/t.noc")
  REQ_NOC[$name]=$(median <"$W/r.noc")
  CSW_NOC[$name]=$(median <"$W/x.noc")

  # cold with an empty disk cache, then warm from the disk cache
  rm -f "$W/t.cold" "$W/t.warm" "$W/r.cold" "$W/r.warm" "$W/c.cold"
  for run in $(seq "$RUNS"); do
    rm -rf "$W/cache"
    warm_store
    mount_fresh --cache-dir "$W/cache"
    r0=$(requests)
    read_image "$img" >>"$W/t.cold"
    echo $(($(requests) - r0)) >>"$W/r.cold"
    if [ "$run" = 1 ]; then STATUS[$name]=$(status_fields "${idx%.caibx}"); fi
    wait_cache "$W/cache" "${NDIST[$name]}" >>"$W/c.cold"
    drop_caches
    r0=$(requests)
    c0=$(ctxsw)
    read_image "$img" >>"$W/t.warm"
    echo $(($(ctxsw) - c0)) >>"$W/x.warm"
    echo $(($(requests) - r0)) >>"$W/r.warm"
    vmhwm >>"$W/rss.$name"
    umount_wait
  done
  T_COLD[$name]=$(median <"$W/t.cold")
  T_WARM[$name]=$(median <"$W/t.warm")
  REQ_COLD[$name]=$(median <"$W/r.cold")
  REQ_WARM[$name]=$(median <"$W/r.warm")
  CACHED[$name]=$(median <"$W/c.cold")
  RSS[$name]=$(sort -n "$W/rss.$name" | tail -1)
  CSW_WARM[$name]=$(median <"$W/x.warm")
  rm -f "$W/x.noc" "$W/x.warm"
  rm -f "$W/rss.$name" "$W/t.noc" "$W/r.noc" "$W/t.cold" "$W/t.warm" "$W/r.cold" "$W/r.warm" "$W/c.cold"
done
rm -rf "$W/cache"

# --- report --------------------------------------------------------------------------
DATA=$((NSEG * SEG * 1024 * 1024))
echo
echo "lazyimg casync benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "image: $((SIZE >> 20)) MiB ($((DATA >> 20)) MiB incompressible, $(((SIZE - DATA) >> 20)) MiB zeros), zstd store"
echo "served by nginx on 127.0.0.1 (files in the page cache); median of $RUNS runs (casync extract: $EXTRACT_RUNS)"
echo "MB/s are of the image size ($((SIZE / 1000000)) MB)"
echo
echo "| what | 64K avg chunks: s | MB/s | 4M avg chunks: s | MB/s |"
echo "|---|---|---|---|---|"
cell() { # SECONDS: "s | MB/s" or n/a
  if [ -n "$1" ]; then printf '%.2f | %s' "$1" "$(mbps $SIZE "$1")"; else printf 'n/a | n/a'; fi
}
row() { # LABEL ARRAY-NAME
  local -n a=$2
  printf '| %s | %s | %s |\n' "$1" "$(cell "${a[64K]}")" "$(cell "${a[4M]}")"
}
# speedup A B: A / B, or n/a
speedup() {
  if [ -n "$1" ] && [ -n "$2" ]; then printf '%sx' "$(ratio "$1" "$2")"; else printf 'n/a'; fi
}
row "curl --parallel-max 16, the distinct data chunk files (network reference)" T_CURL
row "casync extract --store=http://… (the peer's full restore, writes the file)" T_EX
row "cold read through a fresh mount, --no-cache" T_NOC
row "cold read through a fresh mount, empty --cache-dir" T_COLD
row "warm read (disk cache, page cache dropped)" T_WARM
echo
echo "| ratio | 64K | 4M | target |"
echo "|---|---|---|---|"
printf '| cold --no-cache read vs casync extract (speedup) | %s | %s | >= 3x (64K) |\n' \
  "$(speedup "${T_EX[64K]}" "${T_NOC[64K]}")" "$(speedup "${T_EX[4M]}" "${T_NOC[4M]}")"
printf '| cold read with the cache vs casync extract (speedup) | %s | %s | |\n' \
  "$(speedup "${T_EX[64K]}" "${T_COLD[64K]}")" "$(speedup "${T_EX[4M]}" "${T_COLD[4M]}")"
printf '| cold --no-cache read vs curl (share of the network reference) | %s%% | %s%% | |\n' \
  "$(awk -v a="${T_CURL[64K]}" -v b="${T_NOC[64K]}" 'BEGIN {printf "%.0f", 100 * a / b}')" \
  "$(awk -v a="${T_CURL[4M]}" -v b="${T_NOC[4M]}" 'BEGIN {printf "%.0f", 100 * a / b}')"
printf '| warm 64K / warm 4M (throughput) | %s%% | | >= 70%% |\n' \
  "$(awk -v a="${T_WARM[4M]}" -v b="${T_WARM[64K]}" 'BEGIN {printf "%.0f", 100 * a / b}')"
for name in 64K 4M; do
  if [ -n "${EX_ERR[$name]}" ]; then echo "casync extract, $name index: failed: ${EX_ERR[$name]}"; fi
done
echo
echo "per-chunk overhead (medians):"
for name in 64K 4M; do
  echo "- $name: ${NCH[$name]} chunks (${NNULL[$name]} null, ${NDIST[$name]} distinct data chunks)"
  echo "  nginx requests per cold read: ${REQ_NOC[$name]} with --no-cache, ${REQ_COLD[$name]} with the cache" \
    "(ideal: ${NDIST[$name]})"
  echo "  disk cache entries after the cold read: ${CACHED[$name]} of ${NDIST[$name]};" \
    "requests during the warm read: ${REQ_WARM[$name]} (ideal: 0)"
  echo "  daemon peak RSS (VmHWM, highest of the runs): $((RSS[$name] / 1024)) MiB"
  echo "  daemon context switches (all threads, wakeups) per read: ${CSW_NOC[$name]} cold --no-cache" \
    "($(awk -v a="${CSW_NOC[$name]}" -v b="${NDIST[$name]}" 'BEGIN {printf "%.1f", a / b}') per data chunk)," \
    "${CSW_WARM[$name]} warm ($(awk -v a="${CSW_WARM[$name]}" -v b="${NCH[$name]}" 'BEGIN {printf "%.1f", a / b}') per chunk)"
  echo "  lazyimg status --json after the first cold read: ${STATUS[$name]}"
done
