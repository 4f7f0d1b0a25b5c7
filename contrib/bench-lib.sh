# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the benchmark scripts (sourced): nginx on a free port of 127.0.0.1.

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
