#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Transfer faults between the daemon and an HTTP store (faultproxy.py in front
# of nginx, faults on chunk requests only): 500s, connection resets, stalls
# beyond --fetch-timeout, truncated and corrupted bodies. With 2 faults per
# chunk the retries succeed and the image is byte-identical; with every
# attempt failing, reads of the affected range fail with EIO within the
# deadline x attempts, never with wrong bytes, and the daemon keeps serving
# holes and other snapshots.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 curl timeout
. "$T_DIR/lib_remote.sh"
T1=2025-04-01T00:00:00Z
T2=2025-04-02T00:00:00Z
CH=$((256 << 10))
# 6 data chunks, 4 zero chunks (a hole at [1536K, 2560K)), 2 data chunks
make_image f.raw rand:1536K,zero:1M,rand:512K 1
make_image g.raw rand:512K 2
mkpbs --chunk-size 256K --time $T1 "$S" drive-scsi0.img=f.raw >/dev/null
mkpbs --chunk-size 256K --id 101 --time $T2 "$S" drive-scsi0.img=g.raw >/dev/null
IMG=vm/100/$T1/drive-scsi0.img
OTHER=vm/101/$T2/drive-scsi0.img
HOLE_OFF=$((1536 << 10))

start_nginx "$S"
# faults on chunk files only (not on a listing of .chunks/)
start_proxy "$NGINX_URL" --match '/\.chunks/[0-9a-f]{4}/[0-9a-f]{64}$'
FT=2      # --fetch-timeout
RETRIES=2 # --retries: 3 attempts per chunk
OPTS=(--no-cache --retries "$RETRIES" --fetch-timeout "$FT" --connect-timeout 2 --readahead 0)
LIMIT=$((FT * (RETRIES + 1) + 10)) # seconds any read may take

# ends_reader SIGNAL PID SECONDS WHAT: sends SIGNAL to the reader PID, which
# must be gone within SECONDS; ENDED_MS: how long it took
ends_reader() {
    local sig=$1 pid=$2 secs=$3 what=$4 t0
    t0=$(date +%s%N)
    kill "-$sig" "$pid"
    for _ in $(seq $((secs * 20))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && fail "$what: the reader is still there $secs s after SIG$sig"
    ENDED_MS=$((($(date +%s%N) - t0) / 1000000))
}

# --- 2 faults per chunk: the retries make every read succeed -------------------
for mode in status500 reset truncate flip stall; do
    extra=()
    [[ $mode == stall ]] && extra=(seconds=30)
    proxy_fault "$mode" times=2 "${extra[@]}"
    lazyimg_mount "$PROXY_URL" "$M" "${OPTS[@]}"
    t0=$SECONDS
    out=$(timeout $((LIMIT * 3)) cmp "$M/$IMG" f.raw 2>&1) || fail "$mode x2 per chunk: the image is not byte-identical after retries" "$out"
    st=$(proxy_stats)
    python3 -c 'import json, sys
st = json.loads(sys.argv[1])
f = st["faulted"]
assert len(f) == 8 and all(n == 2 for n in f.values()), f' "$st" ||
        fail "$mode: expected exactly 2 faulted requests for each of the 8 data chunks" "$st"
    ok "$mode x2 per chunk: the image is byte-identical after retries ($((SECONDS - t0)) s)"
    pid_alive "$MOUNT_PID" || fail "$mode: the daemon died"
    lazyimg_umount "$M"
done

# --- a transfer cut off after some of its bytes: the retry asks for the rest --
# (Range: the 2nd and 3rd requests of each chunk are answered 206, and about
# one chunk's bytes are received per chunk, not two: half, a quarter, a quarter)
for fault in truncate "reset at=body"; do
    # shellcheck disable=SC2086 # (the fault's words)
    proxy_fault $fault times=2
    lazyimg_mount "$PROXY_URL" "$M" "${OPTS[@]}"
    out=$(timeout $((LIMIT * 3)) cmp "$M/$IMG" f.raw 2>&1) || fail "$fault x2 per chunk, resumed: the image is not byte-identical" "$out"
    st=$("$LAZYIMG" status --json "$M")
    lazyimg_umount "$M"
    python3 -c 'import json, sys
st = json.loads(sys.argv[1])
ranged = [p for p, c in st["status"].items() if c.get("206")]
assert len(ranged) == 8, st["status"]' "$(proxy_stats)" ||
        fail "$fault: the retries of the 8 data chunks did not ask for the rest (no 206)" "$(proxy_stats)"
    python3 -c 'import json, sys
f = json.loads(sys.argv[1])["fetch"]
chunk = 256 << 10
assert f["bytes"] < 8 * chunk * 1.5, f["bytes"]' "$st" ||
        fail "$fault: more bytes received than resumed transfers need" "$st"
    ok "$fault x2 per chunk: the retries resumed (206), the image byte-identical"
done

# a server that answers a request for the rest with the whole object: asked
# for all of it at once, which costs no attempt (--retries 1: a cut, then the
# whole object, then all of it again)
proxy_fault truncate times=1 norange=1
lazyimg_mount "$PROXY_URL" "$M" --no-cache --retries 1 --fetch-timeout "$FT" --connect-timeout 2 --readahead 0
out=$(timeout $((LIMIT * 3)) cmp "$M/$IMG" f.raw 2>&1) ||
    fail "a server that ignores Range, after a cut: the image does not read (--retries 1)" "$out"
lazyimg_umount "$M"
ok "a server that ignores Range: after a cut, the whole object again at once, the image byte-identical with --retries 1"
proxy_fault none

# --- every attempt fails: EIO, in time, never wrong bytes ----------------------
for mode in status500 reset truncate flip stall; do
    extra=()
    [[ $mode == stall ]] && extra=(seconds=60)
    proxy_fault "$mode" times=all "${extra[@]}"
    lazyimg_mount "$PROXY_URL" "$M" "${OPTS[@]}"
    rm -f got
    t0=$SECONDS
    rc=0
    err=$(timeout $LIMIT dd if="$M/$IMG" of=got bs=$CH count=2 status=none 2>&1) || rc=$?
    took=$((SECONDS - t0))
    ((rc != 124)) || fail "$mode x all: the read did not return within $LIMIT s (deadline $FT s x $((RETRIES + 1)) attempts + 10)"
    ((rc != 0)) || fail "$mode x all: the read of a chunk that never arrives intact succeeded"
    grep -q "Input/output error" <<<"$err" || fail "$mode x all: expected EIO" "$err"
    n=$(stat -c %s got 2>/dev/null || echo 0)
    if ((n > 0)); then
        cmp -s got <(head -c "$n" f.raw) || fail "$mode x all: the $n bytes returned before the error are wrong"
    fi
    ok "$mode x all: dd fails with EIO after $took s, $n bytes returned (all correct)"
    # the daemon is alive and still serves holes (no store access) ...
    pid_alive "$MOUNT_PID" || fail "$mode x all: the daemon died"
    cmp -s <(read_range "$M/$IMG" $HOLE_OFF $((1 << 20))) <(head -c $((1 << 20)) /dev/zero) ||
        fail "$mode x all: the hole of the image does not read as zeros"
    ok "$mode x all: the hole still reads as zeros"
    # ... and other snapshots once the store is healthy again
    proxy_fault none
    out=$(timeout $LIMIT cmp "$M/$OTHER" g.raw 2>&1) || fail "$mode x all: the other snapshot is not readable after the faults" "$out"
    ok "$mode x all: the daemon then serves another snapshot byte-identical"
    lazyimg_umount "$M"
done

# --- a redirect to a scheme the store does not follow ---------------------------
# EIO for the read it answered (no retry mends it), with the reason in the log;
# the transfer's handle is not used again (libcurl refused an option on it from
# then on, and every later fetch failed until a remount)
proxy_fault redirect times=1
lazyimg_mount_fg "$PROXY_URL" "$M" redirect.log -- "${OPTS[@]}"
rc=0
err=$(timeout $LIMIT dd if="$M/$IMG" of=/dev/null bs=$CH count=1 status=none 2>&1) || rc=$?
((rc != 0 && rc != 124)) || fail "redirect to file://: the read did not fail at once (rc $rc)" "$err"
grep -q "Input/output error" <<<"$err" || fail "redirect to file://: expected EIO" "$err"
grep -qF "redirect refused" redirect.log || fail "redirect to file://: the log does not say so" "$(cat redirect.log)"
ok "redirect to file://: EIO, the log says the redirect was refused"
proxy_fault none
out=$(timeout $LIMIT cmp "$M/$IMG" f.raw 2>&1) ||
    fail "after a refused redirect: the image does not read byte-identical" "$out$(tail -5 redirect.log)"
ok "after a refused redirect: the whole image reads byte-identical"
# the same for an index, loaded with a blocking request of its own
proxy_fault redirect times=1 match='/drive-scsi0\.img\.fidx$'
! out=$(timeout $LIMIT cat "$M/$OTHER" 2>&1 >/dev/null) ||
    fail "redirect to file:// of an index: the image opened"
proxy_fault none match='/\.chunks/[0-9a-f]{4}/[0-9a-f]{64}$'
sleep 2 # a failed load is the answer for 2 s (FS_LOAD_FAILED_MS)
out=$(timeout $LIMIT cmp "$M/$OTHER" g.raw 2>&1) ||
    fail "after a refused redirect of an index: the image does not read byte-identical" "$out$(tail -5 redirect.log)"
ok "after a refused redirect of its index: another image opens and reads byte-identical"
lazyimg_umount "$M"

# --- an index whose load stalls: concurrent openers wait for one load ----------
# (3 attempts of --fetch-timeout each; before, each waiting opener loaded it
# again in turn, the k-th waiting k times as long)
proxy_fault stall times=all seconds=60 match='/drive-scsi0\.img\.fidx$'
lazyimg_mount "$PROXY_URL" "$M" "${OPTS[@]}"
t0=$SECONDS
pids=()
for i in 1 2 3; do
    (
        rc=0
        timeout 60 cat "$M/$OTHER" >/dev/null 2>&1 || rc=$?
        echo "$rc" >"open$i.rc"
    ) &
    pids+=($!)
done
wait "${pids[@]}"
took=$((SECONDS - t0))
for i in 1 2 3; do
    rc=$(cat "open$i.rc")
    ((rc != 0 && rc != 124)) || fail "stalled index: opener $i ended with $rc (0: opened, 124: still waiting after 60 s)"
done
((took <= FT * 3 + 8)) || fail "stalled index: 3 concurrent openers took $took s (one load is at most $((FT * 3)) s)"
n=$(proxy_count '/drive-scsi0\.img\.fidx$')
((n <= 4)) || fail "stalled index: $n requests for it, for 3 concurrent openers (one load: 3 attempts)"
ok "stalled index: 3 concurrent openers fail together after $took s, $n requests for the index"
proxy_fault none match='/\.chunks/[0-9a-f]{4}/[0-9a-f]{64}$'
RC=0
cat "$M/$OTHER" >/dev/null 2>&1 || RC=$?
((RC != 0)) || fail "stalled index: an open right after the failure loaded it again (the failure is the answer for 2 s)"
sleep 2
out=$(timeout $LIMIT cmp "$M/$OTHER" g.raw 2>&1) || fail "stalled index, then healthy: the image does not read" "$out"
ok "stalled index, then healthy: an open within 2 s gets the failure, the next one loads it"
lazyimg_umount "$M"

# --- a busy server's Retry-After is waited for ---------------------------------
# (429 with Retry-After: 2 on each chunk's first request; the default backoff
# would retry after 100 ms and meet the throttle again)
proxy_fault busy429 times=1 seconds=2
lazyimg_mount "$PROXY_URL" "$M" "${OPTS[@]}"
t0=$(date +%s%N)
cmp -s <(read_range "$M/$IMG" 0 $CH) <(read_range f.raw 0 $CH) || fail "429 with Retry-After: 2: the chunk does not read right after the retry"
ms=$((($(date +%s%N) - t0) / 1000000))
((ms >= 1900)) || fail "429 with Retry-After: 2: retried after $ms ms"
((ms < 2000 * 3 / 2 + 2000)) || fail "429 with Retry-After: 2: the read took $ms ms"
ok "429 with Retry-After: 2: the chunk is requested again after $ms ms, and reads right"
# the same for an index, loaded with a blocking request of its own (its
# backoff alone would retry after 100 ms, then 400 ms, and fail)
proxy_fault busy429 times=2 seconds=2 match='/drive-scsi0\.img\.fidx$'
t0=$(date +%s%N)
out=$(timeout $LIMIT cmp "$M/$OTHER" g.raw 2>&1) ||
    fail "429 with Retry-After: 2 on an index: the image does not read right" "$out"
ms=$((($(date +%s%N) - t0) / 1000000))
n=$(proxy_count '/drive-scsi0\.img\.fidx$')
((ms >= 3900)) || fail "429 with Retry-After: 2 on an index: loaded after $ms ms (two waits of 2 s expected)"
((n == 3)) || fail "429 with Retry-After: 2 on an index: $n requests for it (3 expected)"
ok "429 with Retry-After: 2 on an index, twice: loaded on the 3rd request after $ms ms, reads right"
proxy_fault none match='/\.chunks/[0-9a-f]{4}/[0-9a-f]{64}$'
lazyimg_umount "$M"

# --- a slow link: a transfer longer than --fetch-timeout that keeps moving -----
# (32 KiB/s: a 256 KiB chunk takes 8 s. A deadline for the whole request cut
# every attempt off after 2 s: EIO on a link that works.)
proxy_fault none rate=32768
lazyimg_mount "$PROXY_URL" "$M" "${OPTS[@]}"
t0=$(date +%s%N)
timeout 60 cmp <(read_range "$M/$IMG" $CH $CH) <(read_range f.raw $CH $CH) >slow.out 2>&1 &
slow=$!
# status while the transfer moves: its bytes count before it ends (a rate of
# finished transfers read 0 MB/s for minutes on a slow link)
sleep 3
st=$("$LAZYIMG" status --json "$M") || fail "slow link: status --json failed" "$st"
python3 -c 'import json, sys
f = json.loads(sys.argv[1])["fetch"]
assert f["inflight"] == 1 and f["latency_us"]["count"] == 0, f
assert 32768 <= f["bytes"] < 262144, f["bytes"]' "$st" || fail "slow link: status 3 s into the transfer does not count its bytes" "$st"
ok "slow link: status 3 s into an 8 s transfer counts $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["fetch"]["bytes"])' "$st") bytes received"
wait "$slow" || fail "slow link (32 KiB/s): a chunk that takes longer than --fetch-timeout $FT s does not read" "$(cat slow.out)"
ms=$((($(date +%s%N) - t0) / 1000000))
((ms > FT * 1000)) || fail "test setup: the chunk took $ms ms, not longer than --fetch-timeout $FT s"
n=$(proxy_count '/\.chunks/[0-9a-f]{4}/[0-9a-f]{64}$')
((n == 1)) || fail "slow link: $n requests for one chunk (a transfer was cut off and retried)"
ok "slow link (32 KiB/s): a chunk that takes $ms ms (--fetch-timeout $FT s) is read in one request"
lazyimg_umount "$M"
proxy_fault none

# --- a server that gzips answers nobody asked it to compress -----------------
# (read as the objects before: "manifest: not a blob", "index: file size …")
proxy_fault gzip match='.'
lazyimg_mount "$PROXY_URL" "$M" "${OPTS[@]}"
out=$(timeout $LIMIT cmp "$M/$IMG" f.raw 2>&1) || fail "answers gzipped unasked: the image does not read right" "$out"
lazyimg_umount "$M"
n=$(proxy_stats | python3 -c 'import json, re, sys
st = json.load(sys.stdin)
print(sum(n for p, n in st["faulted"].items() if re.search(r"\.(fidx|blob)$|/\.chunks/[0-9a-f]{4}/", p)))')
((n >= 8)) || fail "test setup: only $n index, blob and chunk answers were gzipped"
ok "answers gzipped unasked (Content-Encoding: gzip on $n indexes, blobs and chunks): decoded, the image byte-identical"
proxy_fault none match='/\.chunks/[0-9a-f]{4}/[0-9a-f]{64}$'

# --- a read stuck on a stalled chunk: the watchdog names it, ^C ends it --------
# (--stuck-after 2; a fetch deadline of 40 s that the test never reaches)
proxy_fault stall times=all seconds=60
lazyimg_mount_fg "$PROXY_URL" "$M" stuck.log -- --no-cache --retries 0 --fetch-timeout 40 \
    --connect-timeout 2 --readahead 0 --stuck-after 2
D0=$(fidx_digest "$S/$IMG.fidx" 0)
# (a background job of a script ignores SIGINT: the reader restores its default)
python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp("dd", ["dd", "if=" + sys.argv[1], "of=/dev/null", "bs=" + sys.argv[2], "count=1", "status=none"])' \
    "$M/$IMG" "$CH" 2>dd.err &
reader=$!
for _ in $(seq 60); do grep -q "has waited" stuck.log && break; sleep 0.1; done
grep -q "$IMG: a read of $CH bytes at image offset 0 has waited [0-9]* s for 1 chunk: ${D0:0:16}$" stuck.log ||
    fail "stuck read: no watchdog line naming the read and its chunk ${D0:0:16}" "$(cat stuck.log)"
ok "stuck read: the watchdog logs it after --stuck-after 2 s, with the chunk it waits for"
kill -0 "$reader" 2>/dev/null || fail "stuck read: the reader returned although the chunk is stalled"
ends_reader INT "$reader" 3 "stuck read (the interrupt did not end its read)"
ok "stuck read: SIGINT ends the reader's wait at once ($ENDED_MS ms; the fetch deadline was 40 s)"
pid_alive "$MOUNT_PID" || fail "stuck read: the daemon died after the interrupt"
cmp -s <(read_range "$M/$IMG" $HOLE_OFF $((1 << 20))) <(head -c $((1 << 20)) /dev/zero) ||
    fail "stuck read: the hole does not read as zeros after the interrupt"
proxy_fault none
out=$(timeout $LIMIT cmp "$M/$OTHER" g.raw 2>&1) || fail "stuck read: another snapshot is not readable after the interrupt" "$out"
ok "stuck read: after the interrupt the daemon serves holes and other snapshots"
lazyimg_umount "$M"

# --- signals that do not end a reader do not fail its read -----------------------
# a timer every 50 ms (handler with SA_RESTART) while the read waits 1 s for
# its chunk: the read returns the right bytes, as on a disk (the daemon got an
# interrupt and let the read go on; the kernel holds the later signals, one
# pending at a time, until the read returns) ...
SIGREAD=${SIGREAD:?SIGREAD must point to the sigread helper}
proxy_fault delay ms=1000
lazyimg_mount_fg "$PROXY_URL" "$M" signals.log -- --no-cache --retries 0 --fetch-timeout 40 \
    --connect-timeout 2 --readahead 0 -d
out=$(timeout $LIMIT "$SIGREAD" "$M/$IMG" $CH $CH 50 2>sigread.err >sigread.out) ||
    fail "a timer signal during a waiting read: the read failed" "$(cat sigread.err)"
cmp -s sigread.out <(read_range f.raw $CH $CH) || fail "a timer signal during a waiting read: wrong bytes"
grep -qE "bytes, [1-9][0-9]* signals" sigread.err ||
    fail "test setup: no signal arrived during the read" "$(cat sigread.err)"
grep -q "interrupted by a signal that does not end its" signals.log ||
    fail "test setup: the daemon got no interrupt for the timer's signals" "$(tail -5 signals.log)"
ok "a timer signal (SA_RESTART) during a waiting read: the read returns its bytes ($(cat sigread.err))"
# ... and once such a reader is killed while its chunk is stalled, it dies
# within the watchdog's second (the kernel sends no second interrupt)
proxy_fault stall times=all seconds=60
"$SIGREAD" "$M/$IMG" $((2 * CH)) $CH 50 >/dev/null 2>&1 &
reader=$!
sleep 1
kill -0 "$reader" 2>/dev/null || fail "stalled read with a timer: the reader returned although its chunk is stalled"
ends_reader KILL "$reader" 3 "stalled read with a timer"
ok "stalled read with a timer: SIGKILL ends the reader in $ENDED_MS ms (the fetch deadline was 40 s)"
pid_alive "$MOUNT_PID" || fail "stalled read with a timer: the daemon died"
proxy_fault none
lazyimg_umount "$M"

# --- --fetch-concurrency bounds the transfers in flight, over every transfer
# thread: with each answer held 0.3 s and 8 chunks wanted at once, exactly N
# requests are answered at a time (the proxy counts them) ---------------------
for n in 3 1; do
    lazyimg_mount "$PROXY_URL" "$M" --no-cache --fetch-concurrency "$n" --readahead 8
    proxy_fault delay ms=300
    out=$(timeout $LIMIT cmp "$M/$IMG" f.raw 2>&1) || fail "concurrency $n: the image is not byte-identical" "$out"
    st=$(proxy_stats)
    python3 -c 'import json, sys
st, n = json.loads(sys.argv[1]), int(sys.argv[2])
assert st["max_inflight"] == n, st["max_inflight"]' "$st" "$n" ||
        fail "--fetch-concurrency $n: the proxy saw $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["max_inflight"])' "$st") requests at once, not $n"
    ok "--fetch-concurrency $n: exactly $n chunk requests in flight at once"
    proxy_fault none
    lazyimg_umount "$M"
done

# --- by default, small chunks from a far store get more transfers in flight:
# such a store answers each request a round trip late (here the proxy holds
# every answer 0.3 s), and only more requests at once fill its link. Not
# large chunks, not a store that answers at once (nginx on 127.0.0.1), not
# with the option given.
# 128 chunks of 64 KiB or 24 of 2 MiB, all wanted at once (the memory cache
# is made large enough to hold them) ------------------------------------------
make_image small.raw rand:8M 11
make_image large.raw rand:48M 12
mkpbs --chunk-size 64K --id 102 --time $T1 "$S" drive-scsi0.img=small.raw >/dev/null
mkpbs --chunk-size 2M --id 103 --time $T1 "$S" drive-scsi0.img=large.raw >/dev/null
for run in "far 102 small.raw" "far 103 large.raw" "far 102 small.raw --fetch-concurrency 16" \
    "near 102 small.raw"; do
    read -r where id raw opt <<<"$run"
    # near: nginx itself (the proxy, in Python, takes tens of ms to answer
    # 16 requests at once: for lazyimg it is far)
    url=$PROXY_URL
    [[ $where == near ]] && url=$NGINX_URL
    # shellcheck disable=SC2086 # $opt: no option or one with its value
    lazyimg_mount "$url" "$M" --no-cache --readahead 16 --mem-cache 256M $opt
    [[ $where == far ]] && proxy_fault delay ms=300
    proxy_reset
    out=$(timeout $LIMIT cmp "$M/vm/$id/$T1/drive-scsi0.img" "$raw" 2>&1) ||
        fail "$where store, $raw ${opt:-by default}: not byte-identical" "$out"
    got=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["max_inflight"])' "$(proxy_stats)")
    [[ $where == near ]] && got="(nginx: not counted)"
    read -r ttfb limit < <(python3 -c 'import json, sys
f = json.loads(sys.argv[1])["fetch"]; print(f["small_ttfb_us"], f["small_limit"])' \
        "$("$LAZYIMG" status --json "$M")")
    what="$where store, ${raw%.raw} chunks, ${opt:-defaults}: $got requests in flight at most (small objects: the quickest of the last 32 started answering after $((ttfb / 1000)).$(printf %03d $((ttfb % 1000))) ms; limit $limit)"
    case $where-$raw${opt:+-given} in
    far-small.raw) ((got > 32 && got <= 64 && limit == 64)) || fail "$what; expected 33-64, limit 64" ;;
    far-large.raw) ((got == 16)) || fail "$what; expected 16" ;;
    far-small.raw-given) ((got == 16 && limit == 16)) || fail "$what; expected 16" ;;
    near-small.raw) ((limit == 16 && ttfb < 10000)) || fail "$what; expected limit 16" ;;
    esac
    ok "$what"
    proxy_fault none
    lazyimg_umount "$M"
done
