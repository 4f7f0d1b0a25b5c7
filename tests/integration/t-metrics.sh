#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# --metrics-listen: the Prometheus exposition parses (prometheus_client's own
# parser) with the families and types documented in fs/metrics.h; its
# counters move by what a read of an image must cost (chunk loads = distinct
# data chunks, bytes read >= the image, latency histogram = fetch requests),
# and agree with `lazyimg status --json`; 404 and 405; a silent client does not
# block the server for more than its timeout; a Unix socket (mode 0600,
# removed at unmount); a bad address and a port in use fail the mount with
# one line and status 1, nothing mounted.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test curl
# the Debian module (python3-prometheus-client): the system's python, not a
# pyenv one that may come first in PATH
PY=/usr/bin/python3
[[ -x $PY ]] || fail "$PY not found (install python3)"
$PY -c 'import prometheus_client.parser' 2>/dev/null ||
    fail "python3-prometheus-client is not installed (contrib/deps.txt)"

T1=2025-04-01T10:00:00Z
IMG=vm/100/$T1/drive-scsi0.img
make_image a.raw rand:256K,zero:256K,text:192K,rand:128K 1
sum=$(mkpbs --chunk-size 64K --time $T1 "$S" drive-scsi0.img=a.raw)
FIDX=$S/vm/100/$T1/drive-scsi0.img.fidx
zd=$(zero_digest 65536)
# chunks the image must load from the store: its distinct non-zero digests
n_data=$(fidx_digests "$FIDX" | grep -vx "$zd" | sort -u | wc -l)
size=$(stat -c %s a.raw)
data_bytes=$(("$(summary_field "$sum" chunks)" * 65536 - "$(summary_field "$sum" zero)" * 65536))
((n_data > 4)) || fail "the image should have several data chunks" "$sum"
ok "datastore: $n_data distinct data chunks, $size bytes ($sum)"

free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# parse FILE OUT: the exposition in FILE, parsed, as JSON {families: {name:
# type}, samples: {name{k="v",...}: value}} in OUT
cat >parse.py <<'EOF'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1], encoding="utf-8").read()
fams, samples = {}, {}
for f in text_string_to_metric_families(text):
    if f.name in fams:
        sys.exit("family %s twice" % f.name)
    fams[f.name] = f.type
    for s in f.samples:
        key = s.name
        if s.labels:
            key += "{" + ",".join('%s="%s"' % kv for kv in sorted(s.labels.items())) + "}"
        if key in samples:
            sys.exit("sample %s twice" % key)
        samples[key] = s.value
json.dump({"families": fams, "samples": samples}, open(sys.argv[2], "w"), indent=1)
EOF
parse() {
    local out
    out=$($PY parse.py "$1" "$2" 2>&1) || fail "the exposition $1 does not parse" "$out" "$(head -40 "$1")"
}
# val PARSED KEY: the sample's value as an integer ("missing" if absent)
val() {
    $PY -c 'import json, sys
s = json.load(open(sys.argv[1]))["samples"]
v = s.get(sys.argv[2])
print("missing" if v is None else int(v))' "$1" "$2"
}
# scrape URL OUT [curl options]: GET with status 200 and the exposition's
# content type; the body in OUT, parsed into OUT.json
scrape() {
    local url=$1 out=$2 code ctype
    shift 2
    code=$(curl -sS -m 20 "$@" -D "$out.head" -o "$out" -w '%{http_code}' "$url") ||
        fail "curl $url failed"
    expect_eq "GET $url answers 200" 200 "$code"
    ctype=$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' "$out.head" | tr -d '\r')
    expect_eq "GET $url: content type of the text format 0.0.4" \
        "text/plain; version=0.0.4; charset=utf-8" "$ctype"
    parse "$out" "$out.json"
}

# --- TCP ----------------------------------------------------------------------
PORT=$(free_port)
URL=http://127.0.0.1:$PORT/metrics
lazyimg_mount "$S" "$M" --metrics-listen "127.0.0.1:$PORT"
scrape "$URL" m1

# families and their types
$PY - m1.json <<'EOF' || fail "families or types of the exposition are not the documented ones"
import json, sys
fams = json.load(open(sys.argv[1]))["families"]
want = {
    "lazyimg_reads": "counter", "lazyimg_read_bytes": "counter",
    "lazyimg_read_waits": "counter", "lazyimg_read_wait_seconds": "counter",
    "lazyimg_fetch_requests": "counter", "lazyimg_fetch_retries": "counter",
    "lazyimg_fetch_failovers": "counter", "lazyimg_fetch_failures": "counter",
    "lazyimg_fetch_received_bytes": "counter", "lazyimg_fetch_inflight": "gauge",
    "lazyimg_fetch_queued": "gauge", "lazyimg_fetch_latency_seconds": "histogram",
    "lazyimg_chunk_loads": "counter", "lazyimg_chunk_load_bytes": "counter",
    "lazyimg_chunk_load_failures": "counter",
    "lazyimg_memory_cache_hits": "counter", "lazyimg_memory_cache_misses": "counter",
    "lazyimg_memory_cache_evictions": "counter", "lazyimg_memory_cache_size_bytes": "gauge",
    "lazyimg_disk_cache_hits": "counter", "lazyimg_disk_cache_misses": "counter",
    "lazyimg_disk_cache_evictions": "counter", "lazyimg_disk_cache_size_bytes": "gauge",
    "lazyimg_disk_cache_budget_bytes": "gauge", "lazyimg_errors": "counter",
    "lazyimg_images_loaded": "gauge", "lazyimg_store_active": "gauge",
}
bad = ["%s: %s, expected %s" % (n, fams.get(n, "missing"), t) for n, t in want.items() if fams.get(n) != t]
if bad:
    sys.exit("\n".join(bad))
EOF
ok "the exposition parses, with the documented families and types"
expect_eq "nothing loaded before the first read" 0 "$(val m1.json lazyimg_chunk_loads_total)"
expect_eq "no image loaded before the first open" 0 "$(val m1.json lazyimg_images_loaded)"
expect_eq "the store is active" 1 "$(val m1.json "lazyimg_store_active{store=\"$S\"}")"

# --- a read moves the counters ----------------------------------------------
cmp "$M/$IMG" a.raw || fail "the image differs from its source"
ok "the image reads back exactly"
scrape "$URL" m2
d() { echo $(("$(val m2.json "$1")" - "$(val m1.json "$1")")); }
reads=$(d lazyimg_reads_total)
((reads >= 1)) || fail "lazyimg_reads_total did not move ($reads)"
ok "lazyimg_reads_total moved by $reads"
rb=$(d lazyimg_read_bytes_total)
((rb >= size)) || fail "lazyimg_read_bytes_total moved by $rb, less than the image ($size)"
ok "lazyimg_read_bytes_total moved by $rb >= the image size $size"
# nothing was loaded before this read: its first read of a data chunk waited
waits=$(d lazyimg_read_waits_total)
((waits >= 1 && waits <= reads)) || fail "lazyimg_read_waits_total moved by $waits (reads: $reads)"
ok "lazyimg_read_waits_total moved by $waits of $reads reads"
$PY - m1.json m2.json <<'EOF' || fail "lazyimg_read_wait_seconds_total did not move with the waits"
import json, sys
a, b = (json.load(open(f))["samples"]["lazyimg_read_wait_seconds_total"] for f in sys.argv[1:])
assert a == 0 and b > 0, (a, b)
EOF
ok "lazyimg_read_wait_seconds_total moved"
expect_eq "lazyimg_chunk_loads_total moved by the distinct data chunks" "$n_data" "$(d lazyimg_chunk_loads_total)"
expect_eq "lazyimg_chunk_load_bytes_total moved by their bytes" $((n_data * 65536)) \
    "$(d lazyimg_chunk_load_bytes_total)"
expect_eq "no chunk load failed" 0 "$(d lazyimg_chunk_load_failures_total)"
req=$(d lazyimg_fetch_requests_total)
((req >= n_data)) || fail "lazyimg_fetch_requests_total moved by $req, fewer than $n_data chunks"
ok "lazyimg_fetch_requests_total moved by $req"
expect_eq "the latency histogram counts every fetch request" "$(val m2.json lazyimg_fetch_requests_total)" \
    "$(val m2.json lazyimg_fetch_latency_seconds_count)"
$PY - m2.json <<'EOF' || fail "the latency histogram is not cumulative up to +Inf = _count"
import json, sys
s = json.load(open(sys.argv[1]))["samples"]
pre = 'lazyimg_fetch_latency_seconds_bucket{le="'
b = sorted((float(k[len(pre):-2]), v) for k, v in s.items() if k.startswith(pre))
assert len(b) > 10 and b[-1][0] == float("inf"), b
assert all(x[1] <= y[1] for x, y in zip(b, b[1:])), b
assert b[-1][1] == s["lazyimg_fetch_latency_seconds_count"] > 0
assert s["lazyimg_fetch_latency_seconds_sum"] > 0
EOF
ok "the latency histogram's buckets are cumulative, +Inf equals _count, _sum > 0"
lbl="{image=\"$IMG\"}"
expect_eq "one image loaded" 1 "$(val m2.json lazyimg_images_loaded)"
expect_eq "lazyimg_image_size_bytes$lbl" "$size" "$(val m2.json "lazyimg_image_size_bytes$lbl")"
expect_eq "lazyimg_image_data_bytes$lbl" "$data_bytes" "$(val m2.json "lazyimg_image_data_bytes$lbl")"
for k in read fetch chunk_load disk_cache_bad_entry disk_cache_read disk_cache_enospc; do
    expect_eq "lazyimg_errors_total{kind=\"$k\"} is 0" 0 "$(val m2.json "lazyimg_errors_total{kind=\"$k\"}")"
done

# the same figures as lazyimg status --json (nothing runs in between, once
# the disk cache has committed what the read brought: its writer finishes
# asynchronously, and a commit between the two would move cached bytes)
for _ in $(seq 100); do
    "$LAZYIMG" status --json "$M" >status.json || fail "lazyimg status --json failed"
    $PY -c 'import json, sys
i = json.load(open(sys.argv[1]))["images"][0]
sys.exit(i["cached_bytes"] != i["data_bytes"])' status.json && break
    sleep 0.1
done
scrape "$URL" m3
js() { $PY -c 'import json, sys
o = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    o = o[int(k)] if isinstance(o, list) else o[k]
print(o)' status.json "$1"; }
expect_eq "chunk loads: metrics = status" "$(js cache.loads)" "$(val m3.json lazyimg_chunk_loads_total)"
expect_eq "fetch requests: metrics = status" "$(js fetch.requests)" "$(val m3.json lazyimg_fetch_requests_total)"
expect_eq "read bytes: metrics = status" "$(js reads.bytes)" "$(val m3.json lazyimg_read_bytes_total)"
expect_eq "read waits: metrics = status" "$(js reads.waits)" "$(val m3.json lazyimg_read_waits_total)"
# the same counts in the summary for people (nothing read in between)
out=$("$LAZYIMG" status "$M") || fail "lazyimg status failed" "$out"
want="reads:   $(js reads.requests) requests, .* answered, $(js reads.errors) errors; $(js reads.waits) waited for a chunk, [0-9]+ (us|ms|s) in all"
grep -Eq "^$want\$" <<<"$out" || fail "lazyimg status: no line like \"$want\"" "$out"
ok "lazyimg status shows the reads and their waits"
expect_eq "disk cache budget: metrics = status" "$(js cache.disk.budget)" \
    "$(val m3.json lazyimg_disk_cache_budget_bytes)"
expect_eq "cached bytes of the image: metrics = status" "$(js images.0.cached_bytes)" \
    "$(val m3.json "lazyimg_image_cached_bytes$lbl")"

# a second read is answered from the caches: no load, hits move
cat "$M/$IMG" >/dev/null
scrape "$URL" m4
expect_eq "a second read loads nothing from the store" "$(val m3.json lazyimg_chunk_loads_total)" \
    "$(val m4.json lazyimg_chunk_loads_total)"
hits=$(($(val m4.json lazyimg_memory_cache_hits_total) + $(val m4.json lazyimg_disk_cache_hits_total) -
    $(val m3.json lazyimg_memory_cache_hits_total) - $(val m3.json lazyimg_disk_cache_hits_total)))
((hits >= n_data)) || fail "cache hits moved by $hits on a second read of $n_data chunks"
ok "a second read moves the cache hits (by $hits)"
expect_eq "a second read waits for no chunk" "$(val m3.json lazyimg_read_waits_total)" \
    "$(val m4.json lazyimg_read_waits_total)"

# --- other requests -----------------------------------------------------------
expect_eq "another path is 404" 404 "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")"
expect_eq "/metricsx is 404" 404 "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "${URL}x")"
expect_eq "POST /metrics is 405" 405 "$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "$URL")"
expect_eq "a query string is ignored" 200 "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL?x=1")"
raw() {
    $PY -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode())
print(s.makefile("rb").readline().decode().strip())' "$PORT" "$1"
}
expect_eq "a malformed request line is 400" "HTTP/1.1 400 Bad Request" "$(raw $'nonsense\r\n\r\n')"
expect_eq "HTTP/1.0 is served" "HTTP/1.1 200 OK" "$(raw $'GET /metrics HTTP/1.0\r\n\r\n')"
expect_eq "an oversized request is 400" "HTTP/1.1 400 Bad Request" \
    "$(raw "GET /metrics HTTP/1.1"$'\r\n'"X: $(head -c 10000 /dev/zero | tr '\0' a)"$'\r\n\r\n')"
# a client that connects and says nothing holds the one thread for the
# timeout (5 s) at most
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
t0=$(date +%s%N)
code=$(curl -s -m 20 -o /dev/null -w '%{http_code}' "$URL" || true)
t=$((($(date +%s%N) - t0) / 1000000))
exec 3>&-
expect_eq "a scrape behind a silent client is answered" 200 "$code"
((t < 9000)) || fail "the scrape behind a silent client took $t ms"
ok "... within $t ms"

# --- a port in use, bad addresses: one line, status 1, no mount ----------------
# expect_refused DESCRIPTION OPTIONS...: the mount fails with one line and status 1
expect_refused() {
    local what=$1 out rc=0
    shift
    mkdir -p "$W/mnt2"
    out=$("$LAZYIMG" mount "$@" "$S" "$W/mnt2" 2>&1) || rc=$?
    T_MOUNTS+=("$W/mnt2")
    expect_eq "$what: exit status 1" 1 "$rc"
    expect_eq "$what: one line ($out)" 1 "$(wc -l <<<"$out")"
    grep -q -- '--metrics-listen' <<<"$out" || fail "$what: the message does not name the option" "$out"
    ! mountpoint -q "$W/mnt2" || fail "$what: mounted anyway"
    [[ -z $(daemon_pids "$W/mnt2") ]] || fail "$what: a daemon runs anyway"
    ok "$what: nothing mounted"
}
expect_refused "a port in use" --metrics-listen "127.0.0.1:$PORT"
expect_refused "port 99999" --metrics-listen 127.0.0.1:99999
expect_refused "no port" --metrics-listen 127.0.0.1
expect_refused "no host" --metrics-listen :9469
expect_refused "an address not of this host" --metrics-listen "192.0.2.1:$(free_port)"
expect_refused "a name that does not resolve" --metrics-listen "no-such-host.invalid:$(free_port)"
expect_refused "a relative unix socket path" --metrics-listen unix:m.sock
expect_refused "a unix socket inside the mount" --metrics-listen "unix:$W/mnt2/m.sock"
lazyimg_umount "$M"
expect_eq "the port is free after the unmount" 000 \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL" || true)"

# --- IPv6 and names -------------------------------------------------------------
if $PY -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
    P6=$(free_port)
    lazyimg_mount "$S" "$M" --metrics-listen "[::1]:$P6"
    scrape "http://[::1]:$P6/metrics" m6
    lazyimg_umount "$M"
else
    ok "no IPv6 loopback here: [::1] not tried"
fi
PL=$(free_port)
lazyimg_mount "$S" "$M" --metrics-listen "localhost:$PL"
scrape "http://127.0.0.1:$PL/metrics" ml
lazyimg_umount "$M"

# --- a Unix socket ------------------------------------------------------------------
SOCK=$W/metrics.sock
lazyimg_mount "$S" "$M" --metrics-listen "unix:$SOCK"
[[ -S $SOCK ]] || fail "no socket at $SOCK"
expect_eq "the socket's mode" 600 "$(stat -c %a "$SOCK")"
scrape http://localhost/metrics mu --unix-socket "$SOCK"
cat "$M/$IMG" >/dev/null
scrape http://localhost/metrics mu2 --unix-socket "$SOCK"
expect_eq "unix socket: chunk loads after a read (the disk cache has them)" 0 \
    "$(val mu2.json lazyimg_chunk_loads_total)"
((($(val mu2.json lazyimg_disk_cache_hits_total) - $(val mu.json lazyimg_disk_cache_hits_total)) >= n_data)) ||
    fail "unix socket: a read of a cached image does not move the disk cache hits"
ok "unix socket: a read of the cached image moves the disk cache hits"
expect_eq "unix socket: another path is 404" 404 \
    "$(curl -s -m 10 --unix-socket "$SOCK" -o /dev/null -w '%{http_code}' http://localhost/x)"
lazyimg_umount "$M"
[[ ! -e $SOCK ]] || fail "the socket $SOCK is still there after the unmount"
ok "the socket is removed at unmount"
# a stale socket (a daemon killed) is replaced; a live one is not
$PY -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$SOCK"
lazyimg_mount "$S" "$M" --metrics-listen "unix:$SOCK"
scrape http://localhost/metrics mu3 --unix-socket "$SOCK"
expect_refused "a unix socket another daemon listens on" --metrics-listen "unix:$SOCK"
scrape http://localhost/metrics mu4 --unix-socket "$SOCK"
lazyimg_umount "$M"
[[ ! -e $SOCK ]] || fail "the socket $SOCK is still there after the unmount"
ok "the socket is removed at unmount"
