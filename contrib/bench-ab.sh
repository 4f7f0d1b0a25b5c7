#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# lazyimg A/B benchmark (not a test): two builds, or one build with two sets
# of options, read the image of contrib/bench.sh in interleaved pairs, and the
# medians and their ratio are printed. On this project's VMs the same cold
# read moves by 10% and more from one read to the next, and the machine's
# speed drifts within minutes: a change of a few percent shows only in pairs
# read right after each other, in alternating order, many times.
#
#   contrib/bench-ab.sh [WORKDIR]    (root; default WORKDIR /var/tmp/lazyimg-bench)
#
# Environment:
#   A, B          what to compare: a build directory (holding fs/lazyimg) or
#                 a git revision of this repository, whose files are written
#                 (git archive) and built once in WORKDIR/ab-src-<commit>
#                 (default: both ./build, to compare options)
#   A_OPTS, B_OPTS  more mount options for A's and B's daemons (split on spaces)
#   A_ENV, B_ENV  environment assignments for A's and B's daemons (NAME=VALUE ...)
#   MODES         the reads (default "local-nocache local-fill http-nocache
#                 http-fill casync-nocache casync-fill"):
#                   STORE-nocache, STORE-fill   cold cat of the image, MB/s of
#                       data, --no-cache or cache filling (defaults, empty
#                       cache); STORE: local, http, casync (64 KiB chunks over
#                       HTTP), enc (the encrypted local datastore) or disk
#                       (the local datastore with the page cache dropped
#                       before each read: its files read from the disk)
#                   http-cp    cp --sparse=always of the HTTP image to a file,
#                       fresh mount and cache (logical MB/s, bench.sh's target 5)
#                   warm-cp    the same cp from a warm mount: every chunk
#                       cached, the cache's files in the page cache
#   PAIRS=N       pairs per mode (default 6); A reads first in odd pairs, B in
#                 even ones: an even number gives both sides each place equally
#                 often (on this project's VM a cold read right after another
#                 cache-filling read was up to 20% slower or faster by turns)
#   SIZE_MB, WARM_MB, WARM_COPY_MB   as in contrib/bench.sh (the same image and
#                 stores, kept in WORKDIR/data-<SIZE>M)
#
# Every read is from a fresh daemon (mount -f in the background), with the
# store's files in the page cache, as contrib/bench.sh reads. The table goes to
# stdout and WORKDIR/ab-results.txt; progress to stderr.
set -euo pipefail
export LC_ALL=C
. "$(dirname "$0")/bench-lib.sh"
# a build directory or WORKDIR given relative to where we were started
HERE=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
W=${1:-/var/tmp/lazyimg-bench}
[[ $W == /* ]] || W=$HERE/$W
PAIRS=${PAIRS:-6}
SIZE_MB=${SIZE_MB:-2048}
WARM_MB=${WARM_MB:-auto}
MODES=${MODES:-local-nocache local-fill http-nocache http-fill casync-nocache casync-fill}
unset LAZYIMG_CACHE_DIR LAZYIMG_FETCH_CONCURRENCY

die() { echo "bench-ab.sh: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
calc() { awk "BEGIN {print $*}"; }
[ "$(id -u)" = 0 ] || die "run as root (FUSE mounts, nginx)"
exec 9>/run/lock/lazyimg-bench.lock
flock -n 9 || die "another benchmark is running on this machine (/run/lock/lazyimg-bench.lock)"
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || die "PAIRS must be a positive number"
if ! [[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || [ $((SIZE_MB % 128)) != 0 ]; then die "SIZE_MB must be a multiple of 128"; fi
for m in $MODES; do
  [[ $m =~ ^(local|disk|http|casync|enc)-(nocache|fill)$|^http-cp$|^warm-cp$ ]] || die "unknown mode '$m' (see the top of $0)"
done
for c in nginx curl casync python3 fusermount3 mountpoint git; do
  command -v "$c" >/dev/null || die "$c is needed (contrib/install-deps.sh)"
done
mkdir -p "$W"
W=$(realpath "$W")
# each side's options and environment, split on spaces (no globbing)
read -ra OPTS_A <<<"${A_OPTS:-}"
read -ra OPTS_B <<<"${B_OPTS:-}"
read -ra ENV_A <<<"${A_ENV:-}"
read -ra ENV_B <<<"${B_ENV:-}"
for e in "${ENV_A[@]}" "${ENV_B[@]}"; do
  [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "A_ENV and B_ENV take NAME=VALUE words, not '$e'"
done

# build_of SPEC: the build directory of SPEC (a build directory, relative to
# where we were started or absolute, or a revision of this repository)
build_of() {
  local spec=$1 dir commit src
  [[ $spec == /* ]] && dir=$spec || dir=$HERE/$spec
  if [ -x "$dir/fs/lazyimg" ]; then realpath "$dir"; return; fi
  commit=$(git rev-parse --verify -q "$spec^{commit}") || die "'$spec' is neither a build directory nor a revision"
  src=$W/ab-src-$commit
  if [ ! -x "$src/build/fs/lazyimg" ]; then
    log "building $spec ($commit) in $src..."
    # the revision's files only (git archive): no worktree is left in the
    # repository, and the tree is kept in WORKDIR for the next comparison
    if [ ! -f "$src/meson.build" ]; then
      rm -rf "$src"
      mkdir -p "$src"
      git archive --format=tar "$commit" | tar -x -C "$src" || die "git archive of $spec failed"
    fi
    "$src/contrib/build.sh" >"$W/ab-build.log" 2>&1 || { tail -20 "$W/ab-build.log" >&2; die "the build of $spec failed"; }
  fi
  echo "$src/build"
}
# desc_of SPEC BUILD: what the table calls a side
desc_of() {
  if [[ $2 == "$W"/ab-src-* ]]; then
    echo "revision $1 ($(git rev-parse --short "$1^{commit}")), built in $2"
  else
    echo "build directory $2"
  fi
}
SPEC_A=${A:-$ROOT/build} SPEC_B=${B:-$ROOT/build}
BA=$(build_of "$SPEC_A")
BB=$(build_of "$SPEC_B")
# the stores are made with B's tools (they are kept, whichever build made them)
B=$BB CT=$ROOT/tests/integration/casync_tool.py
D=$W/data-${SIZE_MB}M MNT=$W/mnt SEG=$((SIZE_MB / 16))
SIZE=$((SIZE_MB << 20)) DATA=$((SIZE / 2))
mkdir -p "$D" "$MNT"

PID="" NGINX_PID=""
cleanup() {
  set +e
  mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
  wait 2>/dev/null
  rm -f /dev/shm/lazyimg-bench-warm "$W/ab-out.raw"
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"

bench_stores
start_nginx "$W" "$D" ds/ || die "nginx did not start"
HTTP=http://127.0.0.1:$PORT

warm_first # (contrib/bench-lib.sh: WARM_MB, WARMED, WARM_COPY_MB)

# one SIDE MODE: one timed read by side A or B; sets ONE_MBPS, ONE_RSS (MiB)
# and ONE_CMD (the daemon's environment and command, but the store and mount point)
one() {
  local side=$1 mode=$2 store img list cache=$W/ab-cache t0 t1 bytes=$DATA
  local -a opts extra=()
  local -n build=B$side o=OPTS_$side e=ENV_$side
  LZ=$build/fs/lazyimg
  MOUNT_ENV=("${e[@]}")
  case ${mode%-*} in
    local) store=$DS img=$REL list=$W/pbs.warm ;;
    disk) store=$DS img=$REL list="" ;; # the datastore's files out of the page cache
    http | warm) store=$HTTP/ds img=$REL list=$W/pbs.warm ;;
    casync) store=$HTTP/casync img=$CREL list=$W/cas.files ;;
    enc) store=$ENC_DS img=$REL list=$W/enc.warm extra=(--keyfile "$ENC_KEY") ;;
  esac
  case $mode in
    *-nocache) opts=(--no-cache) ;;
    warm-cp) cache=$W/ab-cache-warm-$side opts=(--cache-dir "$cache") ;;
    *) opts=(--cache-dir "$cache") ;;
  esac
  if [ "$mode" = warm-cp ]; then
    if [ ! -f "$cache/.ab-filled" ]; then # filled once by this side's own build
      rm -rf "$cache"
      mount_fresh "$store" "${opts[@]}" "${o[@]}"
      cat "$MNT/$img" >/dev/null
      umount_wait # (the daemon writes what it has read before it exits)
      touch "$cache/.ab-filled"
    fi
    find "$cache" -type f -print0 >"$W/ab-cachefiles"
    list=$W/ab-cachefiles
  fi
  if [ -n "$list" ]; then
    files_of "$list" >/dev/null
  else
    drop_caches
  fi
  mount_fresh "$store" "${opts[@]}" "${extra[@]}" "${o[@]}"
  ONE_CMD="${e[*]}${e[*]:+ }$LZ mount ${opts[*]} ${extra[*]}${extra[*]:+ }${o[*]}"
  if [[ $mode == *-cp ]]; then
    bytes=$SIZE
    rm -f "$W/ab-out.raw"
    warm_for_copy
    t0=$EPOCHREALTIME
    cp --sparse=always "$MNT/$img" "$W/ab-out.raw"
    t1=$EPOCHREALTIME
  else
    t0=$EPOCHREALTIME
    cat "$MNT/$img" >/dev/null
    t1=$EPOCHREALTIME
  fi
  ONE_RSS=$(awk '/^VmHWM/ {print $2 / 1024}' "/proc/$PID/status")
  umount_wait
  # what this read wrote goes now, not during the next read (its writeback
  # and, on a disk mounted with discard, its discards)
  rm -rf "$W/ab-out.raw" "$W/ab-cache"
  sync
  ONE_MBPS=$(calc "$bytes / ($t1 - $t0) / 1e6")
}
A_OPTS=${A_OPTS:-} B_OPTS=${B_OPTS:-} A_ENV=${A_ENV:-} B_ENV=${B_ENV:-}
rm -rf "$W/ab-cache"

# the measurements: R[mode.side] "MB/s ..." and M[mode.side] "RSS ..."
declare -A R M
for mode in $MODES; do
  rm -f "$W"/ab-cache-warm-?/.ab-filled
  for ((p = 1; p <= PAIRS; p++)); do
    if ((p % 2)); then order="A B"; else order="B A"; fi
    for side in $order; do
      one "$side" "$mode"
      R[$mode.$side]+="$ONE_MBPS " M[$mode.$side]+="$ONE_RSS "
      log "$mode pair $p $side: $(printf %.1f "$ONE_MBPS") MB/s, $(printf %.0f "$ONE_RSS") MiB ($ONE_CMD)"
    done
  done
done

# stats "V1 V2 ...": "median min max"
# shellcheck disable=SC2086 # (the values, split)
stats() { printf '%s\n' $1 | sort -g | awk '{v[++n] = $1} END {printf "%s %s %s\n", (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2), v[1], v[n]}'; }
{
  echo "lazyimg A/B (contrib/bench-ab.sh) — $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) cores"
  echo "A: $(desc_of "$SPEC_A" "$BA")${A_OPTS:+; options: $A_OPTS}${A_ENV:+; environment: $A_ENV}"
  echo "B: $(desc_of "$SPEC_B" "$BB")${B_OPTS:+; options: $B_OPTS}${B_ENV:+; environment: $B_ENV}"
  echo "image: $SIZE_MB MiB (contrib/bench.sh's); $PAIRS pair(s) per read, A first in odd pairs; memory warmed first: $WARMED"
  echo "MB/s of data (cat), logical MB/s (cp); each read from a fresh daemon with the store's files in the page cache"
  echo
  echo "| read | A MB/s: median (min–max) | B MB/s: median (min–max) | B ÷ A, medians | B ÷ A per pair: median (min–max) | B faster in | peak RSS MiB, A / B (highest) |"
  echo "|---|---|---|---|---|---|---|"
  for mode in $MODES; do
    read -r am al ah < <(stats "${R[$mode.A]}")
    read -r bm bl bh < <(stats "${R[$mode.B]}")
    # shellcheck disable=SC2206
    a=(${R[$mode.A]}) b=(${R[$mode.B]})
    pr="" wins=0
    for i in "${!a[@]}"; do
      pr+="$(calc "${b[$i]} / ${a[$i]}") "
      awk -v x="${b[$i]}" -v y="${a[$i]}" 'BEGIN {exit !(x > y)}' && wins=$((wins + 1))
    done
    read -r pm pl ph < <(stats "$pr")
    printf '| %s | %.0f (%.0f–%.0f) | %.0f (%.0f–%.0f) | %.3f | %.3f (%.2f–%.2f) | %d of %d | %.0f / %.0f |\n' \
      "$mode" "$am" "$al" "$ah" "$bm" "$bl" "$bh" "$(calc "$bm / $am")" "$pm" "$pl" "$ph" "$wins" "$PAIRS" \
      "$(stats "${M[$mode.A]}" | cut -d' ' -f3)" "$(stats "${M[$mode.B]}" | cut -d' ' -f3)"
  done
} | tee "$W/ab-results.txt"
