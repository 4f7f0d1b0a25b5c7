#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A slow link: nginx in a network namespace behind a veth limited to 8 Mbit/s
# each way (tc tbf), a datastore of 2 MiB chunks. A hydration's 12 transfers
# share the link and each takes longer than --fetch-timeout: none is cut off.
# A read of a chunk the hydration has not reached, while it runs, does not
# wait for the hydration's transfers in flight (they are paused while the
# read's transfer runs): before, it got a 13th of the link behind them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 curl ip tc nsenter
. "$T_DIR/lib_remote.sh"
T1=2025-06-01T00:00:00Z
NS=lzslow-t$$
V0=lzt$$a V1=lzt$$b # interface names: at most 15 characters
A0=10.213.7.1 A1=10.213.7.2
RATE=8mbit # 1 MB/s: a 2 MiB chunk alone takes 2.1 s

make_image big.raw rand:40M 1 # 20 chunks of 2 MiB
mkpbs --chunk-size 2M --time $T1 "$S" drive-scsi0.img=big.raw >/dev/null
IMG=vm/100/$T1/drive-scsi0.img

ip netns add "$NS" 2>netns.err || skip "no network namespaces here: $(cat netns.err)"
add_cleanup "ip netns del $NS"
ip link add "$V0" type veth peer name "$V1" || fail "ip link add veth failed"
ip link set "$V1" netns "$NS"
ip addr add "$A0/30" dev "$V0"
ip link set "$V0" up
ip -n "$NS" addr add "$A1/30" dev "$V1"
ip -n "$NS" link set "$V1" up
ip -n "$NS" link set lo up
if ! tc qdisc add dev "$V0" root tbf rate $RATE burst 32kbit latency 400ms 2>tbf.err; then
    skip "no tbf queueing discipline here: $(cat tbf.err)"
fi
tc -n "$NS" qdisc add dev "$V1" root tbf rate $RATE burst 32kbit latency 400ms

# nginx inside the namespace (nsenter --net only: `ip netns exec` would give it
# a mount namespace of its own, which keeps FUSE mounts alive)
mkdir -p ngx/tmp
cat >ngx/nginx.conf <<EOF
daemon off;
master_process off;
user root;
pid $W/ngx/nginx.pid;
error_log $W/ngx/error.log info;
events { worker_connections 1024; }
http {
    access_log $W/ngx/access.log;
    client_body_temp_path $W/ngx/tmp/body;
    proxy_temp_path $W/ngx/tmp/proxy;
    fastcgi_temp_path $W/ngx/tmp/fastcgi;
    uwsgi_temp_path $W/ngx/tmp/uwsgi;
    scgi_temp_path $W/ngx/tmp/scgi;
    sendfile on;
    server { listen $A1:8080; root $S; location / { autoindex on; autoindex_format json; } }
}
EOF
nsenter --net="/run/netns/$NS" "$NGINX_BIN" -c "$W/ngx/nginx.conf" -p "$W/ngx" >ngx/stdout.log 2>&1 &
NGX=$!
disown "$NGX"
T_PIDS+=("$NGX")
add_cleanup "kill_wait $NGX"
URL=http://$A1:8080
wait_http "$URL/" 10 || fail "nginx in the namespace does not answer" "$(cat ngx/error.log ngx/stdout.log)"

# --fetch-timeout 2: a deadline for whole requests would cut off every
# hydration transfer (each takes about 25 s here)
lazyimg_mount "$URL" "$M" --cache-dir "$W/cache" --fetch-timeout 2
"$LAZYIMG" hydrate "$M/$IMG" >hydrate.out 2>&1 &
HYD=$!
sleep 3
st=$("$LAZYIMG" status --json "$M")
python3 -c 'import json, sys
f = json.loads(sys.argv[1])["fetch"]
assert f["inflight"] >= 10 and f["queued"]["hydrate"] >= 4, f' "$st" ||
    fail "test setup: the hydration does not fill the link" "$st"
# a chunk the hydration has not reached: its read, alone on the link, takes 2.1 s
ms=$(python3 -c 'import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
t = time.monotonic()
if len(os.pread(fd, 4096, 19 << 21)) != 4096:
    sys.exit("short read")
print(int((time.monotonic() - t) * 1000))' "$M/$IMG") || fail "a read during the hydration failed"
((ms < 20000)) || fail "a read during the hydration took $ms ms (alone on the link: about 2100 ms; 40,000 when it shared the link with them)"
ok "a read of a chunk the hydration has not reached, while 12 hydration transfers fill the link: $ms ms (alone: about 2100)"

rc=0
timeout 120 tail --pid=$HYD -f /dev/null || rc=$?
((rc == 0)) || fail "the hydration did not end within 120 s" "$(cat hydrate.out)"
wait "$HYD" || fail "lazyimg hydrate failed" "$(cat hydrate.out)"
st=$("$LAZYIMG" status --json "$M")
python3 -c 'import json, sys
f = json.loads(sys.argv[1])["fetch"]
assert f["retries"] == 0 and f["errors"] == 0, f' "$st" ||
    fail "slow link: transfers were cut off and retried" "$st"
ok "the hydration ran at the link's speed, transfers of about 25 s with --fetch-timeout 2: none cut off ($(tail -1 hydrate.out))"
cmp "$M/$IMG" big.raw || fail "the hydrated image differs"
ok "the hydrated image is byte-identical"
lazyimg_umount "$M"
