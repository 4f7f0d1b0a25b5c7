#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Encrypted Proxmox Backup Server backups (issue 16), written by the tests'
# own writers (lazyimg-mkpbs with OpenSSL, pxar_tool.py with Python's
# cryptography), read through real mounts with --keyfile: images byte-exact
# with their holes, config blobs, pxar archives, key files of each KDF and
# each way of giving a password; a wrong password, another key, no key, a
# flipped byte of ciphertext (the log telling damage from a failed tag) or
# tag, a changed signed manifest: each gives its clear error and never a
# wrong byte; a flipped stored CRC alone does not matter. Decrypted chunks are cached under
# keyed digests and serve a later mount without the store.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3 zstd
python3 -c 'import cryptography' 2>/dev/null ||
    fail "python3-cryptography is missing (contrib/deps.txt installs it)"
PXAR_TOOL=$T_DIR/pxar_tool.py
T=2026-01-02T03:04:05Z
C=$W/cache

rand_key() { od -An -v -tx1 -N32 /dev/urandom | tr -d ' \n'; }
K1=$(rand_key)
K2=$(rand_key)
printf 'correct horse battery\n' >pw
"$MKPBS" --encrypt-key "$K1" --write-keyfile key-none.json --kdf none
"$MKPBS" --encrypt-key "$K1" --write-keyfile key-scrypt.json --kdf scrypt --keyfile-password-file pw
"$MKPBS" --encrypt-key "$K1" --write-keyfile key-pbkdf2.json --kdf pbkdf2 --keyfile-password-file pw
"$MKPBS" --encrypt-key "$K2" --write-keyfile other.json --kdf none
fp_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fingerprint"])' "$1"; }
FP1=$(fp_of key-none.json)
FP2=$(fp_of other.json)
[[ $(fp_of key-scrypt.json) == "$FP1" && $(fp_of key-pbkdf2.json) == "$FP1" ]] ||
    fail "test setup: key files of one key with different fingerprints"

# 4 MiB chunks: data, an all-zero chunk (2 and 5), partly-zero chunks, a short last one
make_image disk.raw rand:5M,zero:9M,text:3M,zero:8M,rand:1M 3
make_preset small.raw 64K 2
printf 'boot: order=scsi0\nmemory: 2048\n' >conf
mkdir -p tree/etc tree/data
printf 'root:x:0:0:root:/root:/bin/bash\n' >tree/etc/passwd
head -c 700000 /dev/urandom >tree/data/blob.bin
mkpbs --id 100 --time $T --encrypt-key "$K1" "$S" drive-scsi0.img=disk.raw qemu-server.conf=conf >/dev/null
mkpbs --id 101 --time $T --encrypt-key "$K1" --crypt-mode sign-only "$S" drive-scsi0.img=disk.raw >/dev/null
mkpbs --id 102 --time $T --encrypt-key "$K1" --chunk-size 64K "$S" drive-scsi0.img=small.raw >/dev/null
python3 "$PXAR_TOOL" add "$S" ct/200/$T tree --v2 --chunk-size 65536 --encrypt-key "$K1" >/dev/null ||
    fail "pxar_tool.py add --encrypt-key failed"
python3 "$PXAR_TOOL" add "$S" ct/201/$T tree --chunk-size 65536 --encrypt-key "$K1" >/dev/null ||
    fail "pxar_tool.py add --encrypt-key (v1, with a catalog) failed"
ENC=vm/100/$T/drive-scsi0.img
SIGNED=vm/101/$T/drive-scsi0.img
SMALL=vm/102/$T/drive-scsi0.img
PX=ct/200/$T/root.pxar
PX1=ct/201/$T/root.pxar
"$SEEKMAP" --expect 4194304 disk.raw >disk.expect || fail "seekmap --expect failed"
grep -q '^hole' disk.expect || fail "test setup: disk.raw has no all-zero chunk"

# expect_err DESCRIPTION TEXT CMD...: CMD fails and says TEXT.
expect_err() {
    local what=$1 text=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        fail "$what: succeeded" "$out"
    fi
    grep -qF -- "$text" <<<"$out" || fail "$what: expected \"$text\"" "$out"
    ok "$what"
}

# --- no key: encrypted archives are listed and refuse to open ------------------
lazyimg_mount "$S" "$M" --no-cache
expect_err "no key: the encrypted image refuses to open (ENOKEY)" "Required key not available" \
    cat "$M/$ENC"
[[ ! -e $M/vm/100/$T/qemu-server.conf ]] || fail "no key: the encrypted config blob is shown"
ok "no key: the encrypted config blob is not shown"
cmp -s disk.raw "$M/$SIGNED" || fail "no key: the sign-only image differs from its source"
ok "no key: the sign-only image (plain chunks) reads byte-exact"
lazyimg_umount "$M"

# --- the key, kdf none, cache on: everything byte-exact -------------------------
lazyimg_mount "$S" "$M" --cache-dir "$C" --keyfile key-none.json
cmp -s disk.raw "$M/$ENC" || fail "encrypted image differs from its source"
ok "encrypted image (4 MiB chunks) reads byte-exact"
"$SEEKMAP" "$M/$ENC" >enc.map || fail "seekmap of the encrypted image failed"
expect_same_file "encrypted image: holes are its keyed all-zero chunks (SEEK_DATA/SEEK_HOLE)" \
    disk.expect enc.map
blocks=$(stat -c %b "$M/$ENC")
((blocks * 512 < $(stat -c %s disk.raw))) || fail "encrypted image: st_blocks counts its holes as data"
ok "encrypted image: st_blocks leaves out the holes"
cmp -s small.raw "$M/$SMALL" || fail "encrypted image with 64 KiB chunks differs from its source"
ok "encrypted image (64 KiB chunks) reads byte-exact"
expect_same_file "encrypted config blob decrypts" conf "$M/vm/100/$T/qemu-server.conf"
cmp -s tree/data/blob.bin "$M/$PX/data/blob.bin" && cmp -s tree/etc/passwd "$M/$PX/etc/passwd" ||
    fail "encrypted pxar archive: file contents differ"
ok "encrypted pxar v2 archive: files read byte-exact"
cmp -s tree/data/blob.bin "$M/$PX1/data/blob.bin" || fail "encrypted pxar v1 archive: file contents differ"
ok "encrypted pxar v1 archive: files read byte-exact"
ls -la "$M/$SIGNED" >/dev/null && cmp -s disk.raw "$M/$SIGNED" ||
    fail "sign-only image differs with the key"
ok "sign-only snapshot: its signature verifies and its image reads byte-exact"
# after all that, a core dump of the daemon would not hold the key: its page
# is left out (MADV_DONTDUMP), and no copy of it is anywhere else (json-c's
# string of a key file without kdf, the loader's stack, the block of the last
# keyed hash, vector registers saved on a stack by lazy binding)
IDK1=$(python3 -c 'import hashlib, sys
print(hashlib.pbkdf2_hmac("sha256", bytes.fromhex(sys.argv[1]), b"_id_key", 10, 32).hex())' "$K1")
B64=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"])' key-none.json)
out=$(python3 "$T_DIR/dump_scan.py" "$MOUNT_PID" "hex:$K1" "hex:$IDK1" "$B64" \
    "hex:${K1:0:32}" "hex:${K1:32}" "hex:${IDK1:0:32}" "hex:${IDK1:32}") ||
    fail "a core dump of the daemon would hold the key (dump_scan.py: dumped=N)" "$out"
grep -q "^hex:$K1 dumped=0 excluded=[1-9]" <<<"$out" ||
    fail "dump_scan.py did not find the key in its own page" "$out"
ok "the key, its id key, their halves and the key file's base64 are in no memory a core dump holds"
# ... and the page is locked in the (detached) daemon, where the limit allows
# (AddressSanitizer makes mlock() a no-op: not under the sanitizer build)
lim=$(ulimit -l)
if grep -q libasan "/proc/$MOUNT_PID/maps"; then
    ok "(the key page's lock is not checked under AddressSanitizer, which ignores mlock)"
elif [[ $lim == unlimited ]] || ((lim >= 4)); then
    grep -q "^hex:$K1 .* locked=[1-9]" <<<"$out" ||
        fail "the key's page is not locked in the daemon (ulimit -l $lim)" "$out"
    ok "the key's page is locked in memory in the detached daemon"
fi
lazyimg_umount "$M"

# decrypted chunks are cached under their keyed digests (algorithm 3 in the
# index), apart from plain ones; these 64 KiB chunks are packed
n=$(python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(db.execute("SELECT COUNT(*) FROM chunks WHERE algo = 3 AND pack != 0").fetchone()[0])' \
    "$C/index.sqlite")
((n > 0)) || fail "no chunk cached under a keyed digest in a pack"
ok "decrypted chunks are cached under their keyed digests, in packs ($n entries)"
out=$("$LAZYIMG" cache verify --cache-dir "$C" 2>&1) || fail "cache verify failed" "$out"
grep -q ", 0 bad" <<<"$out" || fail "cache verify: unexpected report" "$out"
ok "cache verify keeps the decrypted chunks (CRCs checked)"
perm=$(stat -c %a "$C")
[[ $perm == 700 ]] || fail "the cache directory is mode $perm, not 700"
ok "the cache directory is 0700"
# a later mount reads them from the cache alone
mv "$S/.chunks" "$S/.chunks-away"
mkdir "$S/.chunks"
lazyimg_mount "$S" "$M" --cache-dir "$C" --keyfile key-none.json
cmp -s disk.raw "$M/$ENC" || fail "encrypted image from the cache differs from its source"
ok "warm mount: the encrypted image reads byte-exact from the cache, the store's chunks gone"
lazyimg_umount "$M"
rmdir "$S/.chunks"
mv "$S/.chunks-away" "$S/.chunks"

# --- protected key files: each KDF, each way of giving the password -----------
SUM=$(sha_of disk.raw)
lazyimg_mount "$S" "$M" --no-cache --keyfile key-scrypt.json --keyfile-password-file "$W/pw"
expect_eq "scrypt key file, password from --keyfile-password-file" "$SUM" "$(sha_of "$M/$ENC")"
lazyimg_umount "$M"
LAZYIMG_KEY_PASSWORD='correct horse battery' lazyimg_mount "$S" "$M" --no-cache --keyfile key-pbkdf2.json
expect_eq "PBKDF2 key file, password from \$LAZYIMG_KEY_PASSWORD" "$SUM" "$(sha_of "$M/$ENC")"
pid_env=$(tr '\0' '\n' </proc/"$MOUNT_PID"/environ | grep -c 'correct horse' || true)
expect_eq "\$LAZYIMG_KEY_PASSWORD is gone from the daemon's /proc/PID/environ" 0 "$pid_env"
lazyimg_umount "$M"
# a password given through a pipe (process substitution): no file, no variable
lazyimg_mount "$S" "$M" --no-cache --keyfile key-scrypt.json \
    --keyfile-password-file <(printf 'correct horse battery\n')
expect_eq "scrypt key file, password from a pipe (--keyfile-password-file <(...))" "$SUM" "$(sha_of "$M/$ENC")"
lazyimg_umount "$M"
# ^C at the terminal's password prompt leaves the terminal's echo on
python3 - "$LAZYIMG" "$S" <<'EOF' || fail "^C at the password prompt: the terminal is left without echo"
import os, pty, signal, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "ls", "--keyfile", "key-scrypt.json", sys.argv[2]])
out = b""
deadline = time.time() + 20
while b"Password for" not in out and time.time() < deadline:
    out += os.read(fd, 1024)
assert b"Password for" in out, out
assert not termios.tcgetattr(fd)[3] & termios.ECHO, "echo is on while the prompt waits"
os.kill(pid, signal.SIGINT)
_, status = os.waitpid(pid, 0)
assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT, status
sys.exit(0 if termios.tcgetattr(fd)[3] & termios.ECHO else 1)
EOF
ok "^C at the password prompt: the process ends by SIGINT, the terminal's echo is back on"
mkdir -p "$M"
expect_err "wrong password: the mount says so" "wrong password for the key file" \
    env LAZYIMG_KEY_PASSWORD=nope "$LAZYIMG" mount --no-cache --keyfile key-scrypt.json "$S" "$M"
expect_err "a password of 4097 bytes: the mount says it is too long (not wrong)" \
    "longer than 4096 bytes, too long for a password" \
    env LAZYIMG_KEY_PASSWORD="$(head -c 4097 /dev/zero | tr '\0' x)" "$LAZYIMG" mount --no-cache \
    --keyfile key-scrypt.json "$S" "$M"
expect_err "protected key without a password: the mount says how to give it" \
    "protected by a password" \
    env -u LAZYIMG_KEY_PASSWORD "$LAZYIMG" mount --no-cache --keyfile key-pbkdf2.json "$S" "$M" </dev/null
! mountpoint -q "$M" || fail "a mount with a bad key is in place"
ok "nothing is mounted after a key error"
# getopt takes "--keyfile-password" for --keyfile-password-file: the value is
# a file name then, and must not be echoed
out=$("$LAZYIMG" mount --keyfile-password hunter2 --keyfile key-scrypt.json "$S" "$M" 2>&1) &&
    fail "a password given on the command line was accepted"
! grep -q hunter2 <<<"$out" || fail "a password given on the command line is echoed" "$out"
ok "a password on the command line is refused and not echoed"

# --- another key: refused with both fingerprints -------------------------------
lazyimg_mount_fg "$S" "$M" other.log -- --no-cache --keyfile other.json
expect_err "another key: the encrypted image refuses to open (EKEYREJECTED)" \
    "Key was rejected by service" cat "$M/$ENC"
grep -qF "this snapshot was encrypted with key $FP1, the key file is $FP2" other.log ||
    fail "another key: the log does not name both fingerprints" "$(cat other.log)"
ok "another key: the log names the snapshot's key and the key file's"
cmp -s disk.raw "$M/$SIGNED" || fail "another key: the sign-only image differs"
grep -qF "signed with key $FP1" other.log ||
    fail "another key: the log does not say the signature is not checked" "$(cat other.log)"
ok "another key: a sign-only image still reads, its signature noted as not checked"
lazyimg_umount "$M"

# --- damaged ciphertext or tag: EIO for that chunk only -------------------------
# tamper MODE CHUNK: flips a byte of the ciphertext with the CRC made to match,
# so that only AES-GCM's authentication can catch it (ct), or left as it was,
# so that the CRC (read only when the tag fails) tells damage (ctraw); a byte
# of the tag (tag); or a byte of the stored CRC alone, over ciphertext the
# tag proves (crc: the chunk reads).
tamper() {
    python3 - "$1" "$2" <<'EOF' || fail "tamper $1 $2 failed"
import struct, sys, zlib
mode, path = sys.argv[1], sys.argv[2]
b = bytearray(open(path, "rb").read())
assert b[:8] in (bytes([123, 103, 133, 190, 34, 45, 76, 240]), bytes([230, 89, 27, 191, 11, 191, 216, 11]))
if mode in ("ct", "ctraw"):
    b[44 + (len(b) - 44) // 2] ^= 0x01
    if mode == "ct":
        b[8:12] = struct.pack("<I", zlib.crc32(bytes(b[44:])))
elif mode == "crc":
    b[9] ^= 0x10
else:
    b[28 + 5] ^= 0x80
open(path, "wb").write(bytes(b))
EOF
}
# two data chunks of the 64 KiB image, used once each, not the first
mapfile -t ds < <(fidx_digests "$S/$SMALL.fidx" | sort | uniq -u | head -8)
((${#ds[@]} >= 2)) || fail "test setup: the 64 KiB image has too few distinct chunks"
for mode in ct ctraw tag crc; do
    d=${ds[0]}
    [[ $mode == tag ]] && d=${ds[1]}
    n=$(fidx_digests "$S/$SMALL.fidx" | grep -nx "$d" | cut -d: -f1)
    idx=$((n - 1))
    cp "$(chunk_path "$S" "$d")" "$d.orig"
    tamper $mode "$(chunk_path "$S" "$d")"
    lazyimg_mount_fg "$S" "$M" "tamper-$mode.log" -- --no-cache --keyfile key-none.json
    if [[ $mode == crc ]]; then
        cmp -s <(read_range small.raw $((idx * 65536)) 65536) <(read_range "$M/$SMALL" $((idx * 65536)) 65536) ||
            fail "flipped stored CRC alone: the chunk (its ciphertext authentic) does not read byte-exact" \
                "$(cat tamper-$mode.log)"
        ok "flipped stored CRC alone: the chunk reads byte-exact (the tag proves the ciphertext)"
    else
        expect_err "flipped $mode byte: reading its chunk fails with EIO" "Input/output error" \
            read_range "$M/$SMALL" $((idx * 65536)) 65536
    fi
    size=$(stat -c %s small.raw)
    other=$(((idx + 3) * 65536 < size ? idx + 3 : idx - 3))
    cmp -s <(read_range small.raw $((other * 65536)) 65536) <(read_range "$M/$SMALL" $((other * 65536)) 65536) ||
        fail "flipped $mode byte: another chunk of the image differs"
    ok "flipped $mode byte: the other chunks still read byte-exact"
    lazyimg_umount "$M"
    cp "$d.orig" "$(chunk_path "$S" "$d")"
    # the log says why: damage (the CRC of what arrived does not match) or
    # a tag that does not authenticate (the CRC made to match, or the tag)
    why="does not authenticate"
    [[ $mode == ctraw ]] && why="CRC-32 mismatch"
    if [[ $mode == crc ]]; then
        ! grep -qE "CRC-32 mismatch|does not authenticate" "tamper-$mode.log" ||
            fail "flipped stored CRC alone: the log reports an error" "$(cat tamper-$mode.log)"
    else
        grep -qF "$why" "tamper-$mode.log" ||
            fail "flipped $mode byte: the log does not say \"$why\"" "$(cat tamper-$mode.log)"
        ok "flipped $mode byte: the log says \"$why\""
    fi
done

# an encrypted chunk where the sign-only image (plain chunks) names one, read
# with the key given: the log names the mix-up, not a key to give
p=$(fidx_digest "$S/$SIGNED.fidx" 0)
cp "$(chunk_path "$S" "$p")" signed0.orig
cp "$(chunk_path "$S" "$(fidx_digest "$S/$ENC.fidx" 0)")" "$(chunk_path "$S" "$p")"
lazyimg_mount_fg "$S" "$M" mixup.log -- --no-cache --keyfile key-none.json
expect_err "an encrypted chunk in the sign-only image: EIO, never its bytes" "Input/output error" \
    read_range "$M/$SIGNED" 0 65536
lazyimg_umount "$M"
cp signed0.orig "$(chunk_path "$S" "$p")"
grep -qF "is encrypted, although the manifest says its archive is not" mixup.log ||
    fail "an encrypted chunk in the sign-only image: the log does not name the mix-up" "$(cat mixup.log)"
! grep -qF "no key is configured" mixup.log ||
    fail "an encrypted chunk in the sign-only image: the log asks for a key that was given" "$(cat mixup.log)"
ok "an encrypted chunk in the sign-only image: the log says it is encrypted although its archive is not"
# a key file others can read is warned about (as ssh does); a 0600 one is not
! grep -q "can be read by other users" mixup.log ||
    fail "a key file of mode 0600 was warned about" "$(cat mixup.log)"
cp key-none.json key-open.json
chmod 0644 key-open.json
lazyimg_mount_fg "$S" "$M" keyopen.log -- --no-cache --keyfile key-open.json
cmp -s disk.raw "$M/$ENC" || fail "a key file of mode 0644: the image differs"
lazyimg_umount "$M"
grep -q "key-open.json can be read by other users (mode 644)" keyopen.log ||
    fail "a key file of mode 0644: no warning" "$(cat keyopen.log)"
ok "a key file others can read: warned (mode 644), the image still reads; 0600: no warning"

# --- find with the key ----------------------------------------------------------
out=$("$LAZYIMG" find --keyfile key-none.json "$S" passwd 2>&1) || fail "find --keyfile failed" "$out"
grep -q "^ct/200/$T  root.pxar/etc/passwd " <<<"$out" || fail "find --keyfile: the file of the encrypted archive is not found" "$out"
grep -q "^ct/201/$T  root.pxar/etc/passwd " <<<"$out" ||
    fail "find --keyfile: the file of the encrypted v1 archive (its encrypted catalog) is not found" "$out"
ok "find --keyfile searches encrypted pxar archives (v2, and v1 through its encrypted catalog)"

# --- a signed manifest changed after the backup --------------------------------
# rewrite SNAPDIR: adds a protected member to the manifest, as an uncompressed
# blob with a correct CRC (only the signature can tell).
man=$S/vm/101/$T/index.json.blob
python3 - "$man" <<'EOF' || fail "rewriting the manifest failed"
import json, struct, subprocess, sys, zlib
path = sys.argv[1]
raw = open(path, "rb").read()
body = raw[12:]
if raw[:8] == bytes([49, 185, 88, 66, 111, 182, 163, 127]):
    body = subprocess.run(["zstd", "-dc"], input=body, capture_output=True, check=True).stdout
m = json.loads(body)
m["files"][0]["crypt-mode"] = "none"
out = json.dumps(m, indent=1).encode()
magic = bytes([66, 171, 56, 7, 190, 131, 112, 161])
open(path, "wb").write(magic + struct.pack("<I", zlib.crc32(out)) + out)
EOF
lazyimg_mount_fg "$S" "$M" tampered.log -- --no-cache --keyfile key-none.json
expect_err "changed signed manifest: its image refuses to open (EBADMSG)" "Bad message" \
    cat "$M/$SIGNED"
grep -qF "signature does not verify" tampered.log ||
    fail "changed signed manifest: the log does not say so" "$(cat tampered.log)"
ok "changed signed manifest: the log says its signature does not verify"
cmp -s disk.raw "$M/$ENC" || fail "changed manifest of another snapshot: the encrypted image differs"
ok "the other snapshots are not affected"
lazyimg_umount "$M"
ok "unmounted"
out=$("$LAZYIMG" ls --keyfile key-none.json "$S" 2>&1) || fail "ls --keyfile failed" "$out"
grep -E "^vm/101/$T +drive-scsi0.img .*no \(manifest signature missing or wrong" <<<"$out" >/dev/null ||
    fail "changed signed manifest: ls does not say the image will not open" "$out"
grep -E "^vm/100/$T +drive-scsi0.img .* yes$" <<<"$out" >/dev/null ||
    fail "ls: the untouched encrypted image is not shown mountable" "$out"
ok "ls --keyfile says the snapshot with the changed manifest will not open, the others will"

# --- a manifest whose signature was removed, one re-signed around a plain blob ---
# rewrite MODE: "unsign" sets vm/100's signature to null, keeping its
# fingerprint and crypt modes (the client never writes that); "nofp" leaves
# out the key's fingerprint, which the signature does not cover (as older
# clients wrote it); "plainconf"
# puts a plain blob in place of its encrypted config blob, with the manifest
# updated and signed again with the key (only the blob's kind can tell).
snap=$S/vm/100/$T
cp "$snap/index.json.blob" man.orig
cp "$snap/qemu-server.conf.blob" conf.orig
rewrite() {
    python3 - "$T_DIR" "$snap" "$1" "$K1" <<'EOF' || fail "rewriting vm/100 ($1) failed"
import hashlib, json, struct, subprocess, sys, zlib
sys.path.insert(0, sys.argv[1])
from pxar_tool import Key
snap, mode, key = sys.argv[2], sys.argv[3], Key(sys.argv[4])
plain = bytes([66, 171, 56, 7, 190, 131, 112, 161])
def blob(body):
    return plain + struct.pack("<I", zlib.crc32(body)) + body
raw = open(snap + "/index.json.blob", "rb").read()
body = raw[12:]
if raw[:8] != plain:
    body = subprocess.run(["zstd", "-dc"], input=body, capture_output=True, check=True).stdout
m = json.loads(body)
assert m["unprotected"]["key-fingerprint"] == key.fingerprint and m["signature"]
if mode == "unsign":
    m["signature"] = None
elif mode == "nofp":
    del m["unprotected"]["key-fingerprint"]
elif mode == "masterkey":
    # the backup key wrapped for an RSA master key: a plain blob, its entry
    # with the backup's crypt-mode (as the client writes it)
    b = blob(b"RSA-WRAPPED-KEY\n")
    open(snap + "/rsa-encrypted.key.blob", "wb").write(b)
    m["files"].append({"filename": "rsa-encrypted.key.blob", "crypt-mode": "encrypt",
                       "size": len(b), "csum": hashlib.sha256(b).hexdigest()})
    m["signature"] = key.sign(m)
else:
    conf = blob(b"args: -evil\n")
    open(snap + "/qemu-server.conf.blob", "wb").write(conf)
    f = [x for x in m["files"] if x["filename"] == "qemu-server.conf.blob"][0]
    assert f["crypt-mode"] == "encrypt"
    f["size"], f["csum"] = len(conf), hashlib.sha256(conf).hexdigest()
    m["signature"] = key.sign(m)
open(snap + "/index.json.blob", "wb").write(blob(json.dumps(m, indent=1).encode()))
EOF
}
rewrite unsign
lazyimg_mount_fg "$S" "$M" unsigned.log -- --no-cache --keyfile key-none.json
expect_err "manifest made with the key, its signature removed: its image refuses to open" \
    "Bad message" cat "$M/$ENC"
expect_err "manifest made with the key, its signature removed: its config refuses to open" \
    "Bad message" cat "$M/vm/100/$T/qemu-server.conf"
grep -qF "the manifest is not signed, although it names a key's fingerprint" unsigned.log ||
    fail "signature removed: the log does not say why" "$(cat unsigned.log)"
ok "signature removed: the log says the manifest is not signed although made with a key"
lazyimg_umount "$M"
cp man.orig "$snap/index.json.blob"
rewrite nofp
lazyimg_mount_fg "$S" "$M" nofp.log -- --no-cache --keyfile key-none.json
cmp -s disk.raw "$M/$ENC" || fail "manifest without its key's fingerprint: the image differs with its key"
lazyimg_umount "$M"
lazyimg_mount_fg "$S" "$M" nofp-other.log -- --no-cache --keyfile other.json
expect_err "manifest without its key's fingerprint, read with another key: its image refuses to open" \
    "Bad message" cat "$M/$ENC"
grep -qF "either the backup was made with another key or the manifest was changed after it" nofp-other.log ||
    fail "manifest without its key's fingerprint, another key: the log does not allow for another key" \
        "$(cat nofp-other.log)"
ok "manifest without its key's fingerprint: reads with its key; with another, the log names both causes"
lazyimg_umount "$M"
cp man.orig "$snap/index.json.blob"
rewrite plainconf
lazyimg_mount_fg "$S" "$M" plainconf.log -- --no-cache --keyfile key-none.json
cmp -s disk.raw "$M/$ENC" || fail "re-signed manifest: the encrypted image differs"
expect_err "a plain blob where the manifest names an encrypted one: EIO, never its bytes" \
    "Input/output error" cat "$M/vm/100/$T/qemu-server.conf"
grep -qF "qemu-server.conf.blob of an encrypted archive is not encrypted" plainconf.log ||
    fail "plain blob for an encrypted one: the log does not say so" "$(cat plainconf.log)"
ok "plain blob for an encrypted one: the log says it is not encrypted"
lazyimg_umount "$M"
cp man.orig "$snap/index.json.blob"
cp conf.orig "$snap/qemu-server.conf.blob"
rewrite masterkey
lazyimg_mount_fg "$S" "$M" masterkey.log -- --no-cache --keyfile key-none.json
expect_eq "the master key's blob (plain, its entry 'encrypt', as the client writes it) reads" \
    "RSA-WRAPPED-KEY" "$(cat "$M/vm/100/$T/rsa-encrypted.key")"
lazyimg_umount "$M"
cp man.orig "$snap/index.json.blob"
rm "$snap/rsa-encrypted.key.blob"

# --- a shared cache: one key's decrypted chunks never answer another key -------
# A holder of key 2 signs an index that names key 1's chunks (their digests
# are in the store for anyone to read); a mount of key 2 on the cache that a
# mount of key 1 filled must not be answered with key 1's plaintext.
C2=$W/cache-shared
lazyimg_mount "$S" "$M" --cache-dir "$C2" --keyfile key-none.json
cmp -s disk.raw "$M/$ENC" || fail "shared cache: key 1's image differs"
# status sees the chunks where the cache files them
pct=""
for _ in $(seq 50); do
    pct=$("$LAZYIMG" status --json "$M" | python3 -c 'import json, sys
print([i["hydrated_pct"] for i in json.load(sys.stdin)["images"] if i["path"] == sys.argv[1]][0])' "$ENC")
    [[ $pct == 100.0 ]] && break
    sleep 0.1
done
expect_eq "status: the encrypted image, read whole, is 100% in the cache" 100.0 "$pct"
lazyimg_umount "$M"
S2=$W/store-key2
mkpbs --id 100 --time $T --encrypt-key "$K2" "$S2" drive-scsi0.img=disk.raw >/dev/null
cp "$S/$ENC.fidx" "$S2/$ENC.fidx"
python3 - "$T_DIR" "$S/vm/100/$T" "$S2/vm/100/$T" "$K2" <<'EOF' || fail "signing key 2's manifest around key 1's index failed"
import json, struct, subprocess, sys, zlib
sys.path.insert(0, sys.argv[1])
from pxar_tool import Key
plain = bytes([66, 171, 56, 7, 190, 131, 112, 161])
def manifest(d):
    raw = open(d + "/index.json.blob", "rb").read()
    body = raw[12:]
    if raw[:8] != plain:
        body = subprocess.run(["zstd", "-dc"], input=body, capture_output=True, check=True).stdout
    return json.loads(body)
one, two, key = manifest(sys.argv[2]), manifest(sys.argv[3]), Key(sys.argv[4])
src = [f for f in one["files"] if f["filename"] == "drive-scsi0.img.fidx"][0]
dst = [f for f in two["files"] if f["filename"] == "drive-scsi0.img.fidx"][0]
dst["csum"], dst["size"] = src["csum"], src["size"]
assert two["unprotected"]["key-fingerprint"] == key.fingerprint
two["signature"] = key.sign(two)
body = json.dumps(two, indent=1).encode()
open(sys.argv[3] + "/index.json.blob", "wb").write(plain + struct.pack("<I", zlib.crc32(body)) + body)
EOF
lazyimg_mount_fg "$S2" "$M" key2.log -- --cache-dir "$C2" --keyfile other.json
# (the first chunk: data; key 1's zero chunk is no hole under key 2's id key)
expect_err "shared cache: key 2's index naming key 1's chunks reads EIO, not key 1's plaintext" \
    "Input/output error" read_range "$M/$ENC" 0 4194304
lazyimg_umount "$M"
