# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash disable=SC2034 # (sets variables for the tests that source it)
# Helpers of the remote-store integration tests (sourced after lib.sh, once
# setup_workdir has made $W): local HTTP servers (nginx), the fault-injecting
# proxy (faultproxy.py) and a local S3 server (s3rver, installed from npm by
# contrib/install-deps.sh). Every server listens on 127.0.0.1 only and is
# stopped by the EXIT trap of lib.sh (add_cleanup hooks).
#
#   start_nginx [--autoindex json|html|off|404] [--name NAME] [--htpasswd FILE] [--tls [--http2]]
#               [--redirect URL] ROOT
#       (--htpasswd: HTTP basic authentication against FILE is required;
#       --tls: HTTPS with a new self-signed certificate for 127.0.0.1, whose
#       file is NGINX_CERT: the CA a client must be given; --http2: HTTP/2
#       offered too; --redirect URL: every request answered 301 to URL +
#       the request's path)
#       serves ROOT; sets NGINX_NAME NGINX_PORT NGINX_URL NGINX_PID NGINX_LOG
#       (a line per request: URI STATUS METHOD BODY_BYTES PROTOCOL)
#   stop_nginx [NAME]              fast stop (connections cut); default: the last one
#   restart_nginx [NAME]           starts a stopped one again on its port
#   nginx_url NAME / nginx_log NAME / nginx_pid NAME
#   nginx_count NAME REGEX [STATUS]  requests whose URI matches REGEX (and status)
#   nginx_chunk_gets NAME          "COUNT URI" of every .chunks/ GET answered 200
#   start_serve ROOT               npm's serve (absolute links in its listings);
#                                  sets SERVE_URL SERVE_PID
#   start_proxy UPSTREAM_URL [faultproxy options]   sets PROXY_PORT PROXY_URL PROXY_PID
#   proxy_fault MODE [KEY=VALUE...]  e.g. proxy_fault status500 times=2
#   proxy_stats                    the proxy's JSON counters
#   proxy_count REGEX              requests the proxy saw for paths matching REGEX
#   proxy_reset                    clears the counters
#   start_s3rver                   sets S3_PORT S3_ENDPOINT S3_PID S3_DIR S3_AK S3_SK
#   s3_curl ARGS...                curl signed with S3_AK/S3_SK (SigV4, us-east-1)
#   s3_mkbucket BUCKET
#   s3_upload [--layout plain|pbs4] DIR BUCKET PREFIX
#   s3_list BUCKET PREFIX [DELIMITER]   every key (or common prefix), all pages

: "${W:?lib_remote.sh: source it after setup_workdir}"
LAZYIMG_NPM_PREFIX=${LAZYIMG_NPM_PREFIX:-/opt/lazyimg-npm}
FAULTPROXY=${FAULTPROXY:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/faultproxy.py}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}

# free_port: a port that was free a moment ago (callers retry on EADDRINUSE).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS: until URL answers with any HTTP status.
wait_http() {
    local i n=$(($2 * 10)) code
    for ((i = 0; i < n; i++)); do
        code=$(curl -k -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null) || code=000
        [[ $code != 000 ]] && return 0
        sleep 0.1
    done
    return 1
}

# kill_wait PID: TERM, then KILL after 5 s.
kill_wait() {
    pid_alive "$1" || return 0
    kill -TERM "$1" 2>/dev/null || return 0
    wait_pid_exit "$1" 5 || { kill -KILL "$1" 2>/dev/null; wait_pid_exit "$1" 5; }
    return 0
}

# --- nginx --------------------------------------------------------------------
declare -A NGINX_PIDS=() NGINX_PORTS=() NGINX_LOGS=()
NGINX_N=0
NGINX_NAME="" NGINX_PORT="" NGINX_URL="" NGINX_PID="" NGINX_LOG="" NGINX_CERT=""

start_nginx() {
    local fmt=json name="" root dir port try conf auth="" tls=false h2=false scheme=http ssl="" certs="" redirect=""
    while (($#)); do
        case $1 in
        --autoindex) fmt=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --htpasswd) auth="auth_basic \"lazyimg\"; auth_basic_user_file $(realpath "$2");"; shift 2 ;;
        --tls) tls=true; shift ;;
        --http2) h2=true; shift ;;
        --redirect) redirect=$2; shift 2 ;;
        *) break ;;
        esac
    done
    root=$(realpath "$1")
    [[ -d $root ]] || fail "start_nginx: $1 is not a directory"
    [[ -x $NGINX_BIN ]] || fail "nginx not found (install it: contrib/install-deps.sh)"
    NGINX_N=$((NGINX_N + 1))
    [[ -n $name ]] || name=nginx$NGINX_N
    dir=$W/$name
    mkdir -p "$dir/tmp"
    if $tls; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
            -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1 ||
            fail "start_nginx --tls: openssl req failed" "$(cat "$dir/openssl.log")"
        scheme=https ssl=" ssl"
        $h2 && ssl=" ssl http2" # (nginx 1.22: no "http2 on;" yet)
        certs="ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem;"
    fi
    local autoindex
    case $fmt in
    json | html | xml) autoindex="autoindex on; autoindex_format $fmt;" ;;
    off) autoindex="autoindex off;" ;;
    # no index and 404 for every directory, as Caddy's file_server and static
    # hosts answer (nginx and Apache answer 403)
    404) autoindex="autoindex off; if (\$uri ~ /\$) { return 404; }" ;;
    *) fail "start_nginx: --autoindex json|html|off|404, not '$fmt'" ;;
    esac
    [[ -z $redirect ]] || autoindex="return 301 $redirect\$request_uri;"
    local user=""
    [[ $(id -u) == 0 ]] && user="user root;"
    for try in 1 2 3 4 5; do
        port=$(free_port)
        conf=$dir/nginx.conf
        cat >"$conf" <<EOF
# one process (no master): killing NGINX_PID stops the server at once
daemon off;
master_process off;
$user
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    log_format lazyimg '\$request_uri \$status \$request_method \$body_bytes_sent \$server_protocol';
    access_log $dir/access.log lazyimg;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    sendfile on;
    keepalive_timeout 120s;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$port$ssl;
        server_name localhost;
        $certs
        root $root;
        location / { $autoindex $auth }
    }
}
EOF
        : >"$dir/access.log"
        "$NGINX_BIN" -c "$conf" -p "$dir" -e "$dir/error.log" >>"$dir/stdout.log" 2>&1 &
        local pid=$!
        disown "$pid" # no "Killed" message from stop_nginx; a bare `wait` skips it
        T_PIDS+=("$pid")
        add_cleanup "kill_wait $pid"
        if wait_http "$scheme://127.0.0.1:$port/" 10 && pid_alive "$pid"; then
            NGINX_PIDS[$name]=$pid NGINX_PORTS[$name]=$port NGINX_LOGS[$name]=$dir/access.log
            NGINX_NAME=$name NGINX_PORT=$port NGINX_URL=$scheme://127.0.0.1:$port NGINX_PID=$pid
            NGINX_LOG=$dir/access.log NGINX_CERT=""
            $tls && NGINX_CERT=$dir/cert.pem
            return 0
        fi
        kill_wait "$pid"
        grep -q "Address already in use" "$dir/error.log" "$dir/stdout.log" 2>/dev/null && continue
        fail "nginx did not start on 127.0.0.1:$port" "$(cat "$dir/stdout.log" "$dir/error.log" 2>/dev/null | tail -20)"
    done
    fail "nginx: no free port after 5 tries"
}

_nginx_name() {
    local n=${1:-$NGINX_NAME}
    [[ -n ${NGINX_PIDS[$n]:-} ]] || fail "no nginx named '$n' was started"
    echo "$n"
}
nginx_url() { local n; n=$(_nginx_name "${1:-}"); echo "http://127.0.0.1:${NGINX_PORTS[$n]}"; }
nginx_log() { local n; n=$(_nginx_name "${1:-}"); echo "${NGINX_LOGS[$n]}"; }
nginx_pid() { local n; n=$(_nginx_name "${1:-}"); echo "${NGINX_PIDS[$n]}"; }

# stop_nginx [NAME]: stops it at once (open connections are cut).
stop_nginx() {
    local n pid
    n=$(_nginx_name "${1:-}")
    pid=${NGINX_PIDS[$n]}
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 5 || fail "nginx $n (pid $pid) did not stop"
}

# restart_nginx [NAME]: starts a stopped nginx again, same port and root.
restart_nginx() {
    local n dir pid
    n=$(_nginx_name "${1:-}")
    dir=$W/$n
    "$NGINX_BIN" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" >>"$dir/stdout.log" 2>&1 &
    pid=$!
    disown "$pid"
    T_PIDS+=("$pid")
    add_cleanup "kill_wait $pid"
    wait_http "http://127.0.0.1:${NGINX_PORTS[$n]}/" 10 && pid_alive "$pid" ||
        fail "nginx $n did not start again on port ${NGINX_PORTS[$n]}" "$(tail -20 "$dir/error.log" 2>/dev/null)"
    NGINX_PIDS[$n]=$pid
    [[ $n != "$NGINX_NAME" ]] || NGINX_PID=$pid
}

# nginx_count NAME REGEX [STATUS]: requests whose URI matches REGEX (ERE).
nginx_count() {
    local log
    log=$(nginx_log "${1:-}")
    awk -v re="$2" -v st="${3:-}" '$1 ~ re && (st == "" || $2 == st) {n++} END {print n + 0}' "$log"
}

# nginx_chunk_gets NAME: "COUNT URI" for every chunk (.chunks/XXXX/DIGEST, not
# a listing of .chunks/) answered 200 to a GET, sorted by URI.
nginx_chunk_gets() {
    local log
    log=$(nginx_log "${1:-}")
    awk '$1 ~ /\/\.chunks\/[^\/]+\/[^\/]+$/ && $2 == 200 && $3 == "GET" {n[$1]++} END {for (u in n) print n[u], u}' "$log" |
        sort -k2
}

# --- serve (npm) -------------------------------------------------------------------
SERVE_URL="" SERVE_PID=""

# start_serve ROOT: npm's serve on 127.0.0.1 (a free port), whose HTML
# listings link each entry by its absolute path; sets SERVE_URL SERVE_PID.
start_serve() {
    local bin=$LAZYIMG_NPM_PREFIX/node_modules/serve/build/main.js root port pid try
    [[ -f $bin ]] || fail "serve not installed in $LAZYIMG_NPM_PREFIX (run contrib/install-deps.sh)"
    command -v node >/dev/null || fail "node not found (install nodejs: contrib/install-deps.sh)"
    root=$(realpath "$1")
    for try in 1 2 3 4 5; do
        port=$(free_port)
        node "$bin" -l "tcp://127.0.0.1:$port" -n --no-port-switching --no-request-logging "$root" \
            >"$W/serve.log" 2>&1 &
        pid=$!
        disown "$pid"
        T_PIDS+=("$pid")
        add_cleanup "kill_wait $pid"
        if wait_http "http://127.0.0.1:$port/" 10 && pid_alive "$pid"; then
            SERVE_URL=http://127.0.0.1:$port SERVE_PID=$pid
            return 0
        fi
        kill_wait "$pid"
        grep -q "EADDRINUSE\|already in use" "$W/serve.log" 2>/dev/null && continue
        fail "serve did not start on 127.0.0.1:$port" "$(tail -20 "$W/serve.log")"
    done
    fail "serve: no free port after 5 tries"
}

# --- faultproxy -----------------------------------------------------------------
PROXY_PORT="" PROXY_URL="" PROXY_PID=""

# start_proxy UPSTREAM_URL [faultproxy options...]
start_proxy() {
    local up=$1 pf=$W/faultproxy.port
    shift
    rm -f "$pf"
    python3 "$FAULTPROXY" --upstream "$up" --port-file "$pf" --log "$W/faultproxy.log" "$@" \
        >>"$W/faultproxy.out" 2>&1 &
    PROXY_PID=$!
    disown "$PROXY_PID" # a bare `wait` in a test must not wait for it
    T_PIDS+=("$PROXY_PID")
    add_cleanup "kill_wait $PROXY_PID"
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s $pf ]] && break
        pid_alive "$PROXY_PID" || break
        sleep 0.1
    done
    [[ -s $pf ]] || fail "faultproxy did not start" "$(tail -20 "$W/faultproxy.out")"
    PROXY_PORT=$(cat "$pf")
    PROXY_URL=http://127.0.0.1:$PROXY_PORT
    wait_http "$PROXY_URL/__stats" 10 || fail "faultproxy on port $PROXY_PORT does not answer"
}

# proxy_fault MODE [KEY=VALUE...]: sets the fault (and restarts the per-path counts).
proxy_fault() {
    local q="mode=$1" kv out
    shift
    for kv in "$@"; do
        q+="&$(python3 -c 'import sys, urllib.parse as u; k, _, v = sys.argv[1].partition("="); print(u.quote(k) + "=" + u.quote(v))' "$kv")"
    done
    out=$(curl -sS -f -m 5 "$PROXY_URL/__fault?$q" 2>&1) || fail "proxy_fault $q failed" "$out"
}

proxy_stats() {
    curl -sS -f -m 5 "$PROXY_URL/__stats" || fail "faultproxy: /__stats failed"
}

proxy_reset() {
    curl -sS -f -m 5 -o /dev/null "$PROXY_URL/__reset" || fail "faultproxy: /__reset failed"
}

# proxy_count REGEX: how many requests the proxy saw for paths matching REGEX
# (Python regex, searched).
proxy_count() {
    local js
    js=$(proxy_stats)
    # the counters on stdin: thousands of paths exceed one argument's limit
    python3 -c 'import json, re, sys
st = json.load(sys.stdin); r = re.compile(sys.argv[1])
print(sum(n for p, n in st["counts"].items() if r.search(p)))' "$1" <<<"$js"
}

# --- s3rver ---------------------------------------------------------------------
S3_PORT="" S3_ENDPOINT="" S3_PID="" S3_DIR=""
S3_AK=S3RVER S3_SK=S3RVER # s3rver's built-in credentials
S3_EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

start_s3rver() {
    local bin=$LAZYIMG_NPM_PREFIX/node_modules/s3rver/bin/s3rver.js out i
    [[ -f $bin ]] || fail "s3rver not installed in $LAZYIMG_NPM_PREFIX (run contrib/install-deps.sh)"
    command -v node >/dev/null || fail "node not found (install nodejs: contrib/install-deps.sh)"
    S3_DIR=$W/s3rver
    mkdir -p "$S3_DIR/data"
    out=$S3_DIR/stdout.log
    : >"$out" # exists before the first poll below (the child opens it later)
    # port 0: s3rver picks a free port and prints "S3rver listening on ADDR:PORT"
    # --openssl-legacy-provider: s3rver makes ListObjectsV2 continuation tokens
    # with DES, which OpenSSL 3 has only in its legacy provider (without it every
    # listing longer than one page fails with 500 InternalError)
    node --openssl-legacy-provider "$bin" --directory "$S3_DIR/data" --address 127.0.0.1 --port 0 --silent >"$out" 2>&1 &
    S3_PID=$!
    disown "$S3_PID"
    T_PIDS+=("$S3_PID")
    add_cleanup "kill_wait $S3_PID"
    for ((i = 0; i < 200; i++)); do
        S3_PORT=$(sed -n 's/^S3rver listening on .*:\([0-9]*\)$/\1/p' "$out")
        [[ -n $S3_PORT ]] && break
        pid_alive "$S3_PID" || break
        sleep 0.1
    done
    [[ -n $S3_PORT ]] || fail "s3rver did not start" "$(tail -20 "$out")"
    S3_ENDPOINT=http://127.0.0.1:$S3_PORT
    wait_http "$S3_ENDPOINT/" 10 || fail "s3rver on port $S3_PORT does not answer"
}

# s3_curl ARGS...: curl signed (SigV4) with S3_AK/S3_SK; s3rver needs the
# x-amz-content-sha256 header on every request (UNSIGNED-PAYLOAD for uploads).
s3_curl() {
    curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_AK:$S3_SK" "$@"
}

s3_mkbucket() {
    local code
    code=$(s3_curl -o "$W/s3.out" -w '%{http_code}' -X PUT -H "x-amz-content-sha256: $S3_EMPTY_SHA" \
        "$S3_ENDPOINT/$1") || fail "s3_mkbucket $1: curl failed"
    [[ $code == 200 ]] || fail "s3_mkbucket $1: HTTP $code" "$(cat "$W/s3.out")"
}

# s3_upload [--layout plain|pbs4] DIR BUCKET PREFIX: every file below DIR (a
# datastore) to s3://BUCKET/PREFIX/RELPATH ('plain', a synced datastore), or
# with layout pbs4 (PBS 4 S3 backend): .chunks/... to PREFIX/.chunks/..., every
# other file to PREFIX/.cnt/RELPATH. 8 parallel curl processes of 64 files each.
s3_upload() {
    local layout=plain
    if [[ $1 == --layout ]]; then
        layout=$2
        shift 2
    fi
    local dir bucket=$2 prefix=${3%/} list res
    dir=$(realpath "$1")
    [[ $layout == plain || $layout == pbs4 ]] || fail "s3_upload: unknown layout $layout"
    list=$(mktemp "$W/s3up.XXXXXX")
    res=$list.res
    # "FILE URL" pairs, ':' percent-encoded in the URL
    # Directory markers: s3rver reports a common prefix only for a "directory"
    # holding an object itself (vm/ holding only vm/100/... is never listed),
    # so every directory without files of its own (outside .chunks) also gets
    # an empty "DIR/" object, as the AWS console and rclone make them; the
    # client must ignore the key equal to the prefix it lists.
    : >"$list.markers"
    (cd "$dir" && find . -type f -printf '%P\n') | sort | awk -v d="$dir" -v base="$S3_ENDPOINT/$bucket/${prefix:+$prefix/}" \
        -v layout="$layout" -v markers="$list.markers" '
        function put(file, key) {
            if (layout == "pbs4" && key !~ /^\.chunks\//) key = ".cnt/" key
            gsub(/:/, "%3A", key)
            if (file == "") print base key > markers
            else { print file; print base key }
        }
        {
            put(d "/" $0, $0)
            p = $0; sub(/\/?[^\/]*$/, "", p); hasfile[p] = 1
            while (p != "") { alldirs[p] = 1; sub(/\/?[^\/]*$/, "", p) }
        }
        END {
            for (p in alldirs)
                if (!(p in hasfile) && p != ".chunks" && p !~ /^\.chunks\//) put("", p "/")
        }' >"$list"
    local n=$(($(wc -l <"$list") / 2))
    ((n > 0)) || fail "s3_upload: no files below $dir"
    # each xargs batch: curl -T F1 URL1 -T F2 URL2 ... on one kept-alive connection
    # (each curl writes its own result file: parallel writers would interleave)
    rm -f "$res".*
    xargs -d '\n' -n 128 -P 8 bash -c '
        a=()
        while (($# >= 2)); do a+=(-T "$1" -o /dev/null "$2"); shift 2; done
        exec curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "${0%%|*}" \
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -w "%{http_code} %{url_effective}\n" "${a[@]}" \
            >"${0#*|}.$$" 2>&1
    ' "$S3_AK:$S3_SK|$res" <"$list" || fail "s3_upload: curl failed" "$(cat "$res".* | grep -v '^200 ' | head -20)"
    cat "$res".* >"$res"
    rm -f "$res".*
    # the markers: curl -T would append the file name to a URL ending in '/'
    if [[ -s $list.markers ]]; then
        n=$((n + $(wc -l <"$list.markers")))
        xargs -d '\n' -n 64 bash -c '
            a=()
            for u in "$@"; do a+=(-o /dev/null "$u"); done
            exec curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$0" -X PUT --data-binary "" \
                -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -w "%{http_code} %{url_effective}\n" "${a[@]}"
        ' "$S3_AK:$S3_SK" <"$list.markers" >>"$res" 2>&1 || fail "s3_upload: curl failed (markers)" "$(grep -v '^200 ' "$res" | head -20)"
    fi
    local good
    good=$(grep -c '^200 ' "$res" || true)
    [[ $good == "$n" ]] || fail "s3_upload $dir: $good of $n uploads answered 200" "$(grep -v '^200 ' "$res" | head -20)"
    rm -f "$list" "$res" "$list.markers"
}

# s3_list BUCKET PREFIX [DELIMITER]: every key below PREFIX (with DELIMITER:
# the common prefixes, then the keys), following continuation tokens.
s3_list() {
    local bucket=$1 prefix=$2 delim=${3:-} token="" page=$W/s3list.xml q out
    while :; do
        q="list-type=2&prefix=$(python3 -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=""))' "$prefix")"
        [[ -n $delim ]] && q+="&delimiter=$(python3 -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=""))' "$delim")"
        [[ -n $token ]] && q+="&continuation-token=$(python3 -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=""))' "$token")"
        s3_curl -f -o "$page" -H "x-amz-content-sha256: $S3_EMPTY_SHA" "$S3_ENDPOINT/$bucket?$q" ||
            fail "s3_list $bucket $prefix: ListObjectsV2 failed" "$(cat "$page" 2>/dev/null)"
        out=$(python3 - "$page" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
for cp in root.findall(ns + "CommonPrefixes"):
    print("K" + cp.find(ns + "Prefix").text)
for c in root.findall(ns + "Contents"):
    print("K" + c.find(ns + "Key").text)
if (root.findtext(ns + "IsTruncated") or "false") == "true":
    print("T" + (root.findtext(ns + "NextContinuationToken") or ""))
EOF
        ) || fail "s3_list: bad ListObjectsV2 answer" "$(head -c 2000 "$page")"
        sed -n 's/^K//p' <<<"$out"
        token=$(sed -n 's/^T//p' <<<"$out")
        [[ -n $token ]] || break
    done
}
