#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Secrets and hostile strings. A password in an http:// store URL is the
# HTTP basic authentication nginx requires here, and appears nowhere another
# user or a log could see it: /proc/mounts (fsname), the daemon's command
# line, its log, status (text and JSON), ls, cache stats and the cache
# database (the masked form "user:***@" is shown instead). Names and manifest
# fields of a datastore holding ESC, BEL, CR, a C1 control and invalid UTF-8
# reach ls and the mount log escaped (\xNN), never raw. The image table of
# status labels every column, as README's example does.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd python3 curl openssl
setup_workdir
. "$(dirname "$0")/lib_remote.sh"
cd "$W"
README=$(dirname "$0")/../../README.md
T=2025-07-10T12:00:00Z
S=$W/store
new_store "$S"
make_image a.raw rand:512K,zero:256K,rand:256K 1
mkpbs --chunk-size 64K --time $T "$S" drive-scsi0.img=a.raw >/dev/null

# control bytes other than \n, C1 controls and invalid UTF-8 (bytes, LC_ALL=C)
no_raw_controls() {
    if grep -aqP '[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xff' "$2"; then
        fail "$1: raw control bytes" "$(od -c "$2" | grep -E '\\(033|r|a)|377|302' | head -5)"
    fi
    ok "$1: no raw control bytes"
}

# --- 2: a password in the URL -------------------------------------------------
PW='Zq7-s3cr:t@x'        # ':' and '@' percent-encoded in the URL
SECRET=Zq7-s3cr
printf 'lazy:%s\n' "$(openssl passwd -apr1 "$PW")" >htpasswd
start_nginx --htpasswd htpasswd "$S"
URL="http://lazy:Zq7-s3cr%3At%40x@127.0.0.1:$NGINX_PORT/"
SHOWN="http://lazy:***@127.0.0.1:$NGINX_PORT"
no_secret() { # DESCRIPTION FILE
    if grep -aq -- "$SECRET" "$2"; then fail "$1 holds the password" "$(grep -a -- "$SECRET" "$2" | head -3)"; fi
    ok "$1: no password"
}

out=$("$LAZYIMG" ls "http://127.0.0.1:$NGINX_PORT/" 2>&1) && fail "ls without credentials succeeded" "$out"
[[ $out == *"HTTP 401"* ]] || fail "ls without credentials: expected HTTP 401" "$out"
ok "the server requires the password"
out=$("$LAZYIMG" ls "http://lazy:nope-Q1@127.0.0.1:$NGINX_PORT/" 2>&1) && fail "a wrong password was accepted"
[[ $out == *"lazy:***@127.0.0.1"* && $out != *nope-Q1* ]] || fail "wrong password: expected the masked URL" "$out"
ok "a wrong password: 401 naming the masked URL"
out=$("$LAZYIMG" ls "http://lazy:x@127.0.0.1:$NGINX_PORT/" --http-auth-file htpasswd 2>&1) && fail "credentials given twice were accepted"
[[ $out == *"both in the URL and in --http-auth-file"* ]] || fail "credentials twice: unclear message" "$out"
ok "credentials in the URL and --http-auth-file: refused"
# a password with an unencoded '#', '/' or '?' is no URL, and is not shown either
for pw in 'Hid#den9' 'Hid/den9' 'Hid?den9'; do
    out=$("$LAZYIMG" ls "http://lazy:$pw@127.0.0.1:1/ds" 2>&1) && fail "ls of a malformed URL succeeded" "$out"
    ! grep -qF "$pw" <<<"$out" || fail "a malformed URL's password was shown" "$out"
    grep -q "malformed URL" <<<"$out" || fail "no 'malformed URL' for $pw" "$out"
done
ok "a password with an unencoded # / ?: 'malformed URL', the password not shown"
"$LAZYIMG" ls "$URL" >ls.out 2>&1 || fail "ls with the password failed" "$(cat ls.out)"
grep -q "^vm/100/$T " ls.out || fail "ls with the password lists nothing" "$(cat ls.out)"
no_secret "ls" ls.out

M=$W/mnt
lazyimg_mount_fg "$URL" "$M" "$W/mount.log" -- -d --mirror "$URL"
cmp "$M/vm/100/$T/drive-scsi0.img" a.raw || fail "image read with the URL's credentials differs"
ok "the image reads back exactly with the URL's credentials"
grep -F " $M " /proc/mounts >mounts.out
grep -qF "lazyimg:$SHOWN" mounts.out || fail "fsname: expected lazyimg:$SHOWN" "$(cat mounts.out)"
no_secret "/proc/mounts" mounts.out
tr '\0' ' ' <"/proc/$MOUNT_PID/cmdline" >cmdline.out
grep -qF "$SHOWN" cmdline.out || grep -qF "http://lazy@127.0.0.1:$NGINX_PORT" cmdline.out ||
    fail "daemon command line: expected the masked URL" "$(cat cmdline.out)"
no_secret "the daemon's command line (ps)" cmdline.out
"$LAZYIMG" status "$M" >status.out 2>&1 || fail "status failed" "$(cat status.out)"
grep -qF "* $SHOWN (active)" status.out || fail "status: expected the masked store" "$(cat status.out)"
no_secret "status" status.out
"$LAZYIMG" status --json "$M" >status.json 2>&1
no_secret "status --json" status.json
# 10: every column of the image table has a header, the one README shows
hdr=$(grep -E '^  PATH ' status.out) || fail "status: no image table" "$(cat status.out)"
readme_hdr=$(grep -m1 -E '^  PATH .*CACHED / DATA' "$README")
expect_eq "status image header is README's" "$readme_hdr" "$hdr"
lazyimg_umount "$M"
grep -qF "mounted $SHOWN/ at $M" mount.log || fail "mount log: expected the masked URL" "$(head -5 mount.log)"
no_secret "the daemon's log" mount.log
"$LAZYIMG" cache stats >stats.out 2>&1 && "$LAZYIMG" cache stats --json >>stats.out 2>&1 ||
    fail "cache stats failed" "$(cat stats.out)"
grep -qF "$SHOWN" stats.out || fail "cache stats: expected the masked store" "$(cat stats.out)"
no_secret "cache stats" stats.out
cat "$LAZYIMG_CACHE_DIR"/index.sqlite* >db.bin
grep -aqF "lazy:***@" db.bin || fail "cache database: no masked store name"
no_secret "the cache database" db.bin
# every file of the cache directory: chunks, and the metadata cache (meta/)
find "$LAZYIMG_CACHE_DIR" -type f -exec cat {} + >cachedir.bin
[ -n "$(find "$LAZYIMG_CACHE_DIR/meta" -type f)" ] || fail "no metadata cached below meta/"
no_secret "the cache directory's files" cachedir.bin

# --- 5: hostile names and manifest fields -----------------------------------
E=$W/evil
new_store "$E"
mkpbs --chunk-size 64K --time $T "$E" drive-scsi0.img=a.raw >/dev/null
mkpbs --chunk-size 64K --id 101 --time $T "$E" drive-scsi0.img=a.raw >/dev/null
mkdir -p "$E/vm/"$'title\e]0;pwned\a' "$E/vm/"$'cr\rlf' "$E/vm/"$'c1\xc2\x9b31m' "$E/vm/"$'bad\xffutf8'
mkdir -p "$E/vm/100/"$'\e[2J'
# a manifest field holding ESC, CR and BEL (a valid blob: magic, CRC-32, JSON)
python3 - "$E/vm/101/$T/index.json.blob" "$T" <<'PY'
import calendar, json, struct, sys, time, zlib
p, t = sys.argv[1], sys.argv[2]
m = {'backup-type': 'vm', 'backup-id': '101',
     'backup-time': calendar.timegm(time.strptime(t, '%Y-%m-%dT%H:%M:%SZ')),
     'files': [{'filename': 'drive-scsi0.img.fidx', 'crypt-mode': '\x1b[31mred\r\x07',
                'size': 1, 'csum': '00' * 32}]}
data = json.dumps(m).encode()
magic = bytes([66, 171, 56, 7, 190, 131, 112, 161]) # uncompressed blob
open(p, 'wb').write(magic + struct.pack('<I', zlib.crc32(data)) + data)
PY
"$LAZYIMG" ls "$E" >evil-ls.out 2>&1 || fail "ls of the hostile datastore failed" "$(cat -v evil-ls.out)"
no_raw_controls "ls" evil-ls.out
for want in 'title\x1b]0;pwned\x07' 'cr\x0dlf' 'c1\xc2\x9b31m' 'bad\xffutf8' '\x1b[2J' '\x1b[31mred\x0d\x07'; do
    grep -qF -- "$want" evil-ls.out || fail "ls: expected the escaped name $want" "$(cat evil-ls.out)"
done
ok "ls shows every hostile name and field escaped"
grep -q "^vm/100/$T " evil-ls.out || fail "ls: the good snapshot is missing" "$(cat evil-ls.out)"
lazyimg_mount_fg "$E" "$W/mnt2" "$W/evil.log" --
cmp "$W/mnt2/vm/100/$T/drive-scsi0.img" a.raw || fail "image of the hostile datastore differs"
lazyimg_umount "$W/mnt2"
no_raw_controls "mount log" evil.log
grep -qF 'title\x1b]0;pwned\x07' evil.log || fail "mount log: expected the escaped name" "$(cat evil.log)"
grep -qF '\x1b[31mred\x0d\x07' evil.log || fail "mount log: expected the escaped manifest field" "$(cat evil.log)"
ok "the mount log shows hostile names and fields escaped"

# --- SIGHUP: a rotated password applies without a remount ---------------------
printf 'lazy:%s\n' "$PW" >auth1
chmod 600 auth1
lazyimg_mount_fg "http://127.0.0.1:$NGINX_PORT/" "$M" hup.log -- --no-cache --readahead 0 --http-auth-file auth1
IMG=$M/vm/100/$T/drive-scsi0.img
cmp <(read_range "$IMG" 0 65536) <(head -c 65536 a.raw) || fail "SIGHUP: the first read with the old password failed"
PW2='n3w-Pw-after-rotation'
printf 'lazy:%s\n' "$(openssl passwd -apr1 "$PW2")" >htpasswd # the server's password changes
out=$(read_range "$IMG" 65536 65536 2>&1 >/dev/null) && fail "SIGHUP: a read with the old password succeeded after the server changed it"
[[ $out == *"Input/output error"* ]] || fail "SIGHUP: expected EIO with the old password" "$out"
grep -q "HTTP 401" hup.log || fail "SIGHUP: the log does not say the server refused the old password" "$(tail -3 hup.log)"
printf 'lazy:%s\n' "$PW2" >auth1 # the file is rotated too ...
kill -HUP "$MOUNT_PID"          # ... and the daemon told
for _ in $(seq 50); do grep -q "credentials reloaded" hup.log && break; sleep 0.1; done
grep -q "http://127.0.0.1:$NGINX_PORT: credentials reloaded" hup.log || fail "SIGHUP: no 'credentials reloaded' line" "$(tail -5 hup.log)"
mountpoint -q "$M" || fail "SIGHUP unmounted the store"
cmp "$IMG" a.raw || fail "SIGHUP: the image does not read with the new password"
ok "SIGHUP: the rotated password in --http-auth-file applies without a remount (still mounted)"
: >auth1 # a broken file: the old credentials stay
kill -HUP "$MOUNT_PID"
for _ in $(seq 50); do grep -q "credentials not reloaded" hup.log && break; sleep 0.1; done
grep -q "credentials not reloaded (the old ones stay)" hup.log || fail "SIGHUP with a broken file: no warning" "$(tail -5 hup.log)"
no_secret "the log after SIGHUP" hup.log
pid_alive "$MOUNT_PID" && mountpoint -q "$M" || fail "SIGHUP with a broken file: the daemon went away"
ok "SIGHUP with a broken credentials file: a warning, the old credentials stay"
lazyimg_umount "$M"

# --- an http:// store that redirects to https://, with --http-auth-file -------
# libcurl does not send credentials on to another scheme, host or port: the
# 401 at the end of the redirect said "authentication required or rejected",
# as for a wrong password
start_nginx --tls --htpasswd htpasswd --name authtls "$S"
TLS_URL=$NGINX_URL
cp "$NGINX_CERT" authtls.pem
start_nginx --redirect "$TLS_URL" --name redir "$S"
printf 'lazy:%s\n' "$PW2" >auth.redir # htpasswd holds PW2 since the rotation above
chmod 600 auth.redir
"$LAZYIMG" ls --ca-cert authtls.pem --http-auth-file auth.redir "$TLS_URL" >ls.tls 2>&1 ||
    fail "test setup: ls of the https store with its credentials failed" "$(cat ls.tls)"
out=$("$LAZYIMG" ls --ca-cert authtls.pem --http-auth-file auth.redir "$NGINX_URL" 2>&1) &&
    fail "ls through a redirect that drops the credentials succeeded" "$out"
[[ $out == *"HTTP 401"*"after a redirect to $TLS_URL/"*"give that location as the store"* ]] ||
    fail "401 after a redirect: the message does not name the redirect's target" "$out"
ok "401 after an http -> https redirect: $out"
