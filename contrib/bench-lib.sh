# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the benchmark scripts (sourced): nginx on a free port of
# 127.0.0.1; the image of contrib/bench.sh and its stores; fresh mounts.

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_nginx WORKDIR ROOT PROBE [ACCESS_LOG]: nginx serving ROOT (JSON
# directory indexes) on a free port, with its files in WORKDIR; PROBE is a
# path below ROOT that must answer before it counts as up. ACCESS_LOG, when
# given, gets "URI STATUS BYTES" per request. Tries five ports; sets PORT and
# NGINX_PID, or returns 1 with nginx's messages on stderr.
start_nginx() {
  local w=$1 root=$2 probe=$3 log=${4:-} logcfg="access_log off;" up
  if [ -n "$log" ]; then
    logcfg="log_format bench '\$request_uri \$status \$body_bytes_sent'; access_log $log bench;"
    : >"$log"
  fi
  for _ in 1 2 3 4 5; do
    PORT=$(free_port)
    cat >"$w/nginx.conf" <<EOF2
worker_processes 2; daemon off; pid $w/nginx.pid; error_log $w/nginx-error.log; user root;
events { worker_connections 1024; }
http {
  $logcfg
  sendfile on; keepalive_requests 1000000;
  server { listen 127.0.0.1:$PORT; root $root; location / { autoindex on; autoindex_format json; } }
}
EOF2
    nginx -c "$w/nginx.conf" >"$w/nginx.out" 2>&1 &
    NGINX_PID=$!
    up=no
    for _ in $(seq 50); do
      if curl -sf -o /dev/null "http://127.0.0.1:$PORT/$probe"; then up=yes; break; fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.1
    done
    [ $up = yes ] && return 0
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
  done
  cat "$w/nginx-error.log" "$w/nginx.out" >&2
  return 1
}

# bench_stores: the image of contrib/bench.sh and its stores, made once in
# $D (kept between runs) with the tools of build $B: needs W D B SIZE_MB SEG
# CT, log and die. Sets RAW DS CAS PLAIN FIDX REL CREL ENC_DS ENC_KEY N_PBS
# N_CAS N_CAS_ALL CAS_DIGEST CAS_EVP CAS_DNAME ZERO and writes the lists
# $W/pbs.ids pbs.files pbs.warm cas.ids cas.files enc.warm (NUL-separated
# file lists: what a cold read of each store reads).
bench_stores() {
  local layout f
  RAW=$D/img.raw DS=$D/ds CAS=$D/casync PLAIN=$D/plain
  FIDX=$DS/vm/100/2025-07-10T12:00:00Z/drive-scsi0.img.fidx
  REL=vm/100/latest/drive-scsi0.img CREL=img64k
  if [ ! -f "$D/.made-v1" ]; then
    rm -rf "${D:?}"/*
    log "writing the $SIZE_MB MiB image, its PBS datastore and its casync store..."
    layout=$(for _ in 1 2 3 4 5 6 7 8; do printf 'rand:%dM,zero:%dM,' "$SEG" "$SEG"; done)
    "$B/contrib/lazyimg-mkimage" "$RAW" "${layout%,}" >/dev/null
    "$B/contrib/lazyimg-mkpbs" --quiet --time 2025-07-10T12:00:00Z "$DS" drive-scsi0.img="$RAW"
    mkdir -p "$CAS"
    casync make --store="$CAS/default.castr" "$CAS/$CREL.caibx" "$RAW" >/dev/null
    "$B/contrib/lazyimg-mkimage" --seed 7 "$PLAIN" "rand:$((SIZE_MB / 2))M" >/dev/null
    touch "$D/.made-v1"
  fi
  # the same image encrypted with a fixed key (kdf none: no password to give)
  ENC_DS=$D/ds-enc ENC_KEY=$D/enc-key.json
  if [ ! -f "$D/.made-enc-v1" ]; then
    rm -rf "$ENC_DS" "$ENC_KEY"
    log "writing the encrypted datastore..."
    "$B/contrib/lazyimg-mkpbs" --quiet --time 2025-07-10T12:00:00Z \
      --encrypt-key 4c617a79696d672062656e63686d61726b206b6579206f662069737375652031 \
      --write-keyfile "$ENC_KEY" --kdf none "$ENC_DS" drive-scsi0.img="$RAW"
    touch "$D/.made-enc-v1"
  fi
  find "$ENC_DS/vm" "$ENC_DS/.chunks" -type f -print0 >"$W/enc.warm"
  # the distinct data chunks: PBS from the fidx (4096-byte header, then 32-byte
  # digests; the zero chunk is served as a hole), casync from its index
  ZERO=$(head -c 4194304 /dev/zero | sha256sum | cut -c1-64)
  tail -c +4097 "$FIDX" | od -An -v -tx1 -w32 | tr -d ' ' | sort -u | grep -vx "$ZERO" >"$W/pbs.ids"
  N_PBS=$(wc -l <"$W/pbs.ids")
  sed -E "s|^(....)(.*)\$|$DS/.chunks/\\1/\\1\\2|" "$W/pbs.ids" | tr '\n' '\0' >"$W/pbs.files"
  python3 "$CT" chunks "$CAS/$CREL.caibx" | awk '$4 == "data" {print $3}' | sort -u >"$W/cas.ids"
  N_CAS=$(wc -l <"$W/cas.ids")
  find "$CAS" -type f -print0 >"$W/cas.files"
  N_CAS_ALL=$(python3 "$CT" chunks "$CAS/$CREL.caibx" | wc -l)
  # the casync index's digest (casync make's default is SHA-512/256), and its
  # name for openssl speed
  CAS_DIGEST=$(python3 "$CT" info "$CAS/$CREL.caibx" | sed -n 's/.*digest=\([a-z0-9_]*\).*/\1/p')
  case $CAS_DIGEST in
    sha512_256) CAS_EVP=sha512-256 CAS_DNAME=SHA-512/256 ;;
    sha256) CAS_EVP=sha256 CAS_DNAME=SHA-256 ;;
    *) die "unknown digest '$CAS_DIGEST' of $CAS/$CREL.caibx" ;;
  esac
  for f in $(tr '\0' ' ' <"$W/pbs.files"); do [ -f "$f" ] || die "missing chunk file $f"; done
  # what a cold read of the datastore reads: the snapshot's files and the chunk files
  { find "$DS/vm" -type f -print0; cat "$W/pbs.files"; } >"$W/pbs.warm"
}

# files_of LIST: cat every file named in LIST (NUL-separated) to stdout
files_of() { xargs -0 cat <"$1"; }
# drop_caches: every clean page of the page cache dropped (root)
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# mount_fresh STORE [OPTIONS...]: a new daemon ($LZ, with the environment
# assignments of the array MOUNT_ENV if set) in our background, on $MNT (log
# $W/daemon.log); sets PID
mount_fresh() {
  local store=$1
  shift
  env "${MOUNT_ENV[@]}" "$LZ" mount -f "$@" "$store" "$MNT" >"$W/daemon.log" 2>&1 &
  PID=$!
  for _ in $(seq 600); do
    mountpoint -q "$MNT" && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$W/daemon.log" >&2
  die "mount of $store failed"
}
# umount_wait: unmounts $MNT and waits for the daemon $PID, which must exit 0
umount_wait() {
  local i
  for i in $(seq 20); do
    fusermount3 -u "$MNT" 2>/dev/null && break
    [ "$i" = 20 ] && die "cannot unmount $MNT"
    sleep 0.2
  done
  wait "$PID" || die "the daemon exited with status $? (log: $W/daemon.log)"
  PID=""
}

# warm_first: warms the machine's memory once, before measuring (see
# contrib/bench.sh): WARM_MB MiB (auto: warm_auto_mb; 0: not) written to
# /dev/shm and removed. Sets WARM_MB, WARMED (what was done, for the
# header) and WARM_COPY_MB (what warm_for_copy writes: twice SIZE_MB by
# default, no more than WARM_MB, which fits the memory and /dev/shm).
warm_first() {
  [ "$WARM_MB" = auto ] && WARM_MB=$(warm_auto_mb)
  WARM_COPY_MB=${WARM_COPY_MB:-$((SIZE_MB * 2))}
  [ "$WARM_COPY_MB" -gt "$WARM_MB" ] && WARM_COPY_MB=$WARM_MB
  WARMED="no (WARM_MB=0)"
  if [ "$WARM_MB" -gt 0 ]; then
    log "warming memory: $WARM_MB MiB into /dev/shm..."
    shm_warm "$WARM_MB"
    WARMED="yes: wrote $WARM_MB MiB to /dev/shm and removed it, $(awk -v m="$WARM_MB" -v t="$WARM_SECS" 'BEGIN {printf "%.0f", m * 1048576 / t / 1e6}') MB/s"
  fi
}
# warm_for_copy: right before a timed copy to a file, WARM_COPY_MB MiB
# written to /dev/shm and removed (not when WARM_MB is 0)
warm_for_copy() { if [ "$WARM_MB" -gt 0 ]; then shm_warm "$WARM_COPY_MB"; fi; }
# warm_auto_mb: the MiB to write to /dev/shm to warm the machine's memory
# (see contrib/bench.sh): 3/4 of the memory available, less than /dev/shm holds
warm_auto_mb() {
  local mb shm
  mb=$(awk '/^MemAvailable/ {printf "%d", $2 / 1024 * 3 / 4}' /proc/meminfo)
  shm=$(df -m --output=avail /dev/shm | tail -1)
  [ "$mb" -gt $((shm - 1024)) ] && mb=$((shm - 1024))
  echo "$mb"
}
# shm_warm MB: writes MB MiB to /dev/shm and removes the file; WARM_SECS is
# how long the writing took
shm_warm() {
  local t0=$EPOCHREALTIME
  dd if=/dev/zero of=/dev/shm/lazyimg-bench-warm bs=1M count="$1" status=none
  WARM_SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {print b - a}')
  rm -f /dev/shm/lazyimg-bench-warm
}
