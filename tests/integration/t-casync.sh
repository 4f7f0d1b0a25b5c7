#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# casync/desync repositories: blob indexes (.caibx) written by `casync make`
# (zstd default, SHA-256, xz, gzip, small chunk sizes, a nested path) are
# mounted from a local directory and over HTTP (nginx, with and without a
# directory index, chunk store given separately), and every image equals its
# source and `casync extract`'s restore; SEEK_DATA/SEEK_HOLE report exactly
# the null chunks (casync_tool.py map), which are never fetched; cp
# --sparse=always allocates only the data; `lazyimg ls` lists indexes, a .caidx
# as not mountable, an index below a directory whose name another index takes
# (x.caibx beside x/y.caibx) as hidden, and each kind of malformed index as invalid (which a mount
# skips with a warning, and a --snapshot mount refuses); a corrupt chunk (zstd,
# xz, gzip, raw) fails only its own range with EIO; an uncompressed store
# (chunk files without .cacnk) serves locally and over HTTP; a repository in
# an S3 bucket (s3rver) and a chunk store in one (--chunk-store s3://) serve
# the same images, without requests for null chunks, and warm from the cache.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd python3 curl casync zstd cmp cp du od node
HERE=$(cd "$(dirname "$0")" && pwd)
CT=$HERE/casync_tool.py
setup_workdir
. "$HERE/lib_remote.sh"
cd "$W"
M=$W/mnt
SRV=$W/srv # nginx's root
R=$SRV/repo
RX=$SRV/repo-xz
RG=$SRV/repo-gz
mkdir -p "$R/releases" "$RX" "$RG"

# ct ARGS...: casync_tool.py (a failure stops the test with its message)
ct() {
    local out
    out=$(python3 "$CT" "$@" 2>&1) || fail "casync_tool.py $* failed" "$out"
    [[ -z $out ]] || printf '%s\n' "$out"
}
cmk() {
    local out
    out=$(casync make "$@" 2>&1) || fail "casync make $* failed" "$out"
}
cex() {
    local out
    rm -f "${*: -1}"
    out=$(casync extract "$@" 2>&1) || fail "casync extract $* failed" "$out"
}
# files MNT: every non-directory below MNT, sorted
files() {
    (cd "$1" && find . ! -type d | sort)
}
# mount_out STORE MNT [OPTIONS...]: like lazyimg_mount, keeping the command's
# output (the mount-time warnings) in MOUNT_OUT
MOUNT_OUT=""
mount_out() {
    local store=$1 mnt=$2
    shift 2
    mkdir -p "$mnt"
    T_MOUNTS+=("$mnt")
    MOUNT_OUT=$("$LAZYIMG" mount "$@" "$store" "$mnt" 2>&1) || fail "lazyimg mount $* $store $mnt failed" "$MOUNT_OUT"
    mountpoint -q "$mnt" || fail "lazyimg mount returned before $mnt was mounted"
    MOUNT_PID=$(daemon_pid "$mnt")
    T_PIDS+=("$MOUNT_PID")
}
# mount_fails WHAT STORE MNT [OPTIONS...]: the mount must fail (non-zero exit,
# nothing mounted, a message); the message is left in FAIL_OUT
FAIL_OUT=""
mount_fails() {
    local what=$1 store=$2 mnt=$3 rc=0
    shift 3
    mkdir -p "$mnt"
    T_MOUNTS+=("$mnt")
    FAIL_OUT=$("$LAZYIMG" mount "$@" "$store" "$mnt" 2>&1) || rc=$?
    if mountpoint -q "$mnt"; then
        fusermount3 -u "$mnt"
        fail "$what: the mount succeeded" "$FAIL_OUT"
    fi
    ((rc != 0)) || fail "$what: lazyimg mount exited 0 without mounting" "$FAIL_OUT"
    [[ -n $FAIL_OUT ]] || fail "$what: the mount failed (exit $rc) without a message"
}
# null_ids INDEX...: the distinct ids of the null chunks of the indexes
null_ids() {
    local i
    for i in "$@"; do ct chunks "$i" | awk '$4 == "null" {print $3}'; done | sort -u
}
# check_image LABEL FILE SOURCE INDEX [EXTRACTED]: byte-identical to SOURCE
# (and to casync extract's restore), SEEK_DATA/SEEK_HOLE walk = the null-chunk map
check_image() {
    local label=$1 f=$2 src=$3 idx=$4 ex=${5:-} out
    out=$(cmp "$f" "$src" 2>&1) || fail "$label: ${f#"$W"/} differs from $src" "$out"
    if [[ -n $ex ]]; then
        out=$(cmp "$f" "$ex" 2>&1) || fail "$label: ${f#"$W"/} differs from casync extract's $ex" "$out"
    fi
    ct map "$idx" >"$label.map.expect"
    ct seekmap "$f" >"$label.map"
    expect_same_file "$label: equals $src${ex:+ and $ex}; SEEK_DATA/SEEK_HOLE map = the index's non-null chunk runs" \
        "$label.map.expect" "$label.map"
}
# check_sparse_copy LABEL FILE SOURCE INDEX: cp --sparse=always copies only the data
check_sparse_copy() {
    local label=$1 f=$2 src=$3 idx=$4 data ext du_k out
    rm -f "$label.copy"
    cp --sparse=always "$f" "$label.copy" || fail "$label: cp --sparse=always ${f#"$W"/} failed"
    out=$(cmp "$label.copy" "$src" 2>&1) || fail "$label: the cp --sparse=always copy differs from $src" "$out"
    ct map "$idx" >"$label.cpmap"
    data=$(awk '{s += $2 - $1} END {print s + 0}' "$label.cpmap")
    ext=$(wc -l <"$label.cpmap")
    du_k=$(du -k "$label.copy" | cut -f1)
    # each data run may start and end inside a 4 KiB block
    ((du_k <= (data + 1023) / 1024 + 8 * ext + 64)) ||
        fail "$label: the sparse copy takes ${du_k}K on disk, more than the ${data}-byte data ($ext runs)"
    ok "$label: cp --sparse=always copy equals the source and takes ${du_k}K (data $((data / 1024))K of $(($(stat -c %s "$src") / 1024))K)"
    rm -f "$label.copy"
}

# --- images and indexes ----------------------------------------------------------
# Mixed data (incompressible, text, repeated), zero runs of several MiB, sizes
# that are multiples of nothing, all-zero tails (a short all-zero last chunk),
# an image starting with zeros.
make_image disk.img rand:8M,zero:6M,text:4M,rand:12345,zero:9M,repeat:2M,rand:9M,zero:1500K 1
make_image small.img text:1M,zero:2M,rand:3M,zero:300K,rand:777,zero:1M,text:2M,zero:200K 2
make_image mid.img rand:2M,zero:3M,text:1M,rand:1000033,zero:600K 3
make_image x.img zero:1M,rand:2M,zero:2M,text:1M,rand:4321 4
mkdir -p tree/sub
printf 'hello\n' >tree/a.txt
head -c 300000 disk.img >tree/sub/b.bin
ln -s a.txt tree/link

cmk --store="$R/default.castr" "$R/disk.img.caibx" disk.img
cmk --store="$R/default.castr" --digest=sha256 "$R/sha256.img.caibx" disk.img
cmk --store="$R/default.castr" --chunk-size=4096:16384:65536 "$R/small.img.caibx" small.img
cmk --store="$R/default.castr" "$R/releases/x.img.caibx" x.img
cmk --store="$R/default.castr" "$R/tree.caidx" tree
cmk --store="$RX/default.castr" --compression=xz "$RX/mid.img.caibx" mid.img
cmk --store="$RG/default.castr" --compression=gzip "$RG/mid.img.caibx" mid.img
ok "casync make: default, --digest=sha256, --chunk-size=4096:16384:65536, nested, .caidx, xz, gzip"

# name  repository  index (relative)  source
VARIANTS=("disk $R disk.img.caibx disk.img"
    "sha256 $R sha256.img.caibx disk.img"
    "small $R small.img.caibx small.img"
    "nested $R releases/x.img.caibx x.img"
    "xz $RX mid.img.caibx mid.img"
    "gzip $RG mid.img.caibx mid.img")
R_IMAGES=("./disk.img" "./releases/x.img" "./sha256.img" "./small.img") # sorted

# the indexes are what the test needs: digest, chunk sizes, null and data chunks
for v in "${VARIANTS[@]}"; do
    read -r name repo idx src <<<"$v"
    info=$(ct info "$repo/$idx")
    read -r -a kv <<<"$info"
    declare -A I=()
    for f in "${kv[@]}"; do I[${f%%=*}]=${f#*=}; done
    [[ ${I[size]} == "$(stat -c %s "$src")" ]] || fail "$name: index size ${I[size]} != size of $src" "$info"
    ((I[null] > 0 && I[null] < I[chunks])) || fail "test setup: $name: the index should have null and data chunks" "$info"
    case $name in
    sha256) want="digest=sha256 min=16384 avg=65536 max=262144" ;;
    small) want="digest=sha512_256 min=4096 avg=16384 max=65536" ;;
    *) want="digest=sha512_256 min=16384 avg=65536 max=262144" ;;
    esac
    [[ $info == *"$want"* ]] || fail "$name: index header: expected $want" "$info"
    unset I
done
ok "indexes: digest and chunk sizes as asked, each with null and data chunks"
# the codec of each store, from the first bytes of a chunk file
magic_of() {
    local f
    f=$(find "$1" -name "*.cacnk" -type f -print -quit)
    od -An -tx1 -N6 "$f" | tr -d ' \n'
}
expect_eq "default store: zstd chunk files" 28b52ffd "$(magic_of "$R/default.castr" | cut -c1-8)"
expect_eq "xz store: xz chunk files" fd377a585a00 "$(magic_of "$RX/default.castr")"
expect_eq "gzip store: gzip chunk files" 1f8b "$(magic_of "$RG/default.castr" | cut -c1-4)"

# casync extract: the reference restore; its sparse layout (casync finds
# zeros by scanning, holes >= 4 KiB) lies inside the null-chunk map's data
for v in "${VARIANTS[@]}"; do
    read -r name repo idx src <<<"$v"
    cex --store="$repo/default.castr" "$repo/$idx" "ex.$name.img"
    out=$(cmp "ex.$name.img" "$src" 2>&1) || fail "casync extract of $name differs from $src" "$out"
    ct map "$repo/$idx" >"ex.$name.map"
    ct seekmap "ex.$name.img" >"ex.$name.seek"
    python3 - "ex.$name.map" "ex.$name.seek" <<'EOF' || fail "$name: casync extract's data lies outside the null-chunk map's data runs"
import sys
B = 4096
blocks = set()
for line in open(sys.argv[1]):
    s, e = map(int, line.split())
    blocks.update(range(s // B, (e + B - 1) // B))
bad = []
for line in open(sys.argv[2]):
    s, e = map(int, line.split())
    miss = [b for b in range(s // B, (e + B - 1) // B) if b not in blocks]
    if miss:
        bad.append(f"extract data [{s}, {e}): blocks {miss[:5]}... are null chunks in the map")
for b in bad[:10]:
    print("    " + b)
sys.exit(1 if bad else 0)
EOF
done
ok "casync extract restores all ${#VARIANTS[@]} indexes byte-identical; its holes cover every null chunk (4 KiB blocks)"

# casync extract over HTTP (casync-http) from nginx: the peer's restore
start_nginx --autoindex json "$SRV"
URL=$NGINX_URL
cex --store="$URL/repo/default.castr" "$R/disk.img.caibx" hx.disk.img
cmp -s hx.disk.img disk.img || fail "casync extract --store=$URL/repo/default.castr differs from disk.img"
cex --store="$URL/repo-xz/default.castr" "$RX/mid.img.caibx" hx.mid.img
cmp -s hx.mid.img mid.img || fail "casync extract --store=$URL/repo-xz/default.castr differs from mid.img"
ok "casync extract over HTTP (nginx) restores disk.img (zstd) and mid.img (xz) byte-identical"
stop_nginx
rm -f hx.disk.img hx.mid.img

# --- local repositories ----------------------------------------------------------
lazyimg_mount "$R" "$M"
# the .caidx shows as the directory tree of its catar archive
printf '%s\n' "${R_IMAGES[@]}" ./tree/a.txt ./tree/link ./tree/sub/b.bin | sort >tree.expect
files "$M" >tree.local
expect_same_file "local mount: one file per .caibx (nested kept), the .caidx as a tree, default.castr not shown" tree.expect tree.local
diff -r --no-dereference tree "$M/tree" >diff.out 2>&1 || fail "tree.caidx: the mounted tree differs from its source" "$(cat diff.out)"
expect_eq "tree.caidx: the symlink's target" a.txt "$(readlink "$M/tree/link")"
expect_eq "tree.caidx: a file's mode" "$(stat -c %a tree/sub/b.bin)" "$(stat -c %a "$M/tree/sub/b.bin")"
ok "tree.caidx (written by casync make): the catar archive's tree equals its source"
"$LAZYIMG" find "$R" 'b.bin' >find.out 2>find.err || fail "find in a casync repository failed" "$(cat find.err)"
grep -q "^\.  tree/sub/b.bin  300000  " find.out || fail "find: no match for b.bin in tree.caidx" "$(cat find.out)"
ok "find in a casync repository: sub/b.bin of tree.caidx"

for v in "${VARIANTS[@]}"; do
    read -r name repo idx src <<<"$v"
    [[ $repo == "$R" ]] || continue
    check_image "local $name" "$M/${idx%.caibx}" "$src" "$repo/$idx" "ex.$name.img"
    check_sparse_copy "local-$name" "$M/${idx%.caibx}" "$src" "$repo/$idx"
done
lazyimg_umount "$M"
for v in "${VARIANTS[@]}"; do
    read -r name repo idx src <<<"$v"
    [[ $repo == "$R" ]] && continue
    lazyimg_mount "$repo" "$M" --no-cache
    expect_eq "local $name repository: just ${idx%.caibx}" "./${idx%.caibx}" "$(files "$M")"
    check_image "local $name" "$M/${idx%.caibx}" "$src" "$repo/$idx" "ex.$name.img"
    lazyimg_umount "$M"
done

# --- lazyimg ls ------------------------------------------------------------------
# ls_line OUTPUT PATH: the line of index PATH (shown with or without .caibx)
ls_line() {
    local p=${2%.caibx}
    p=${p%.caidx}
    p=${p//./\\.}
    grep -E "(^|[[:space:]])$p(\\.caibx|\\.caidx)?([[:space:]]|$)" <<<"$1" || true
}
check_ls() {
    local label=$1 out=$2 v name repo idx src n line
    for v in "${VARIANTS[@]}"; do
        read -r name repo idx src <<<"$v"
        [[ $repo == "$R" ]] || continue
        line=$(ls_line "$out" "$idx")
        [[ $(grep -c . <<<"$line") == 1 ]] || fail "$label: expected one line for $idx" "$out"
        n=$(ct chunks "$repo/$idx" | wc -l)
        grep -qw -- "$n" <<<"$line" || fail "$label: the line of $idx does not give its $n chunks" "$line"
        ! grep -qiE 'invalid|not mountable' <<<"$line" || fail "$label: $idx is listed as not usable" "$line"
    done
    line=$(ls_line "$out" tree.caidx)
    [[ $(grep -c . <<<"$line") == 1 ]] || fail "$label: expected one line for tree.caidx" "$out"
    grep -q 'yes (a directory' <<<"$line" || fail "$label: tree.caidx is not shown as a directory" "$line"
    ok "$label: every .caibx with its chunk count, tree.caidx a directory"
}
out=$("$LAZYIMG" ls "$R" 2>&1) || fail "lazyimg ls $R failed" "$out"
check_ls "lazyimg ls (local)" "$out"

# --- a name taken twice: x.caibx beside x/y.caibx -----------------------------------
# the file x takes the name: x/y is hidden, by the mount (with a warning) and in ls
SH=$W/shadow
mkdir -p "$SH/x" "$SH/w"
cp "$R/releases/x.img.caibx" "$SH/x.caibx"
cp "$R/small.img.caibx" "$SH/x/y.caibx"
cp "$R/small.img.caibx" "$SH/w/y.caibx"
mount_out "$SH" "$M" --no-cache --chunk-store "$R/default.castr"
expect_eq "x.caibx beside x/y.caibx: x is the file, x/y is not mounted" "$(printf '%s\n' ./w/y ./x)" "$(files "$M")"
cmp "$M/x" x.img || fail "x.caibx beside x/: x differs from x.img"
lazyimg_umount "$M"
grep -E 'x/y\.caibx.*hidden.*x\.caibx' <<<"$MOUNT_OUT" >/dev/null ||
    fail "the mount does not warn that x/y.caibx is hidden by x.caibx" "$MOUNT_OUT"
out=$("$LAZYIMG" ls "$SH" 2>&1) || fail "lazyimg ls $SH failed" "$out"
line=$(ls_line "$out" x/y.caibx)
grep -qE '(^|[[:space:]])no \(hidden: .*x\.caibx\)' <<<"$line" || fail "ls: x/y is not shown as hidden by x.caibx" "$out"
for i in x.caibx w/y.caibx; do
    line=$(ls_line "$out" "$i")
    grep -qE '[[:space:]]yes$' <<<"$line" || fail "ls: $i is not shown as mounted" "$out"
done
ok "the mount warns that x/y.caibx is hidden; ls: x/y '$(grep -o 'no (hidden.*' <<<"$(ls_line "$out" x/y.caibx)")', x and w/y 'yes'"
out=$("$LAZYIMG" ls --json "$SH" 2>&1) || fail "lazyimg ls --json $SH failed" "$out"
got=$(python3 -c 'import json, sys
for x in json.load(sys.stdin):
    print(x["index"], x["mounted"], x.get("hidden-by", "-"))' <<<"$out") || fail "ls --json: not the expected JSON" "$out"
expect_eq "ls --json: mounted and hidden-by" "$(printf '%s\n' 'w/y.caibx True -' 'x.caibx True -' 'x/y.caibx False x.caibx')" "$got"

# x.caibx beside x.caidx (both would be x: the file, listed first, is shown),
# and an archive's name taken as a directory (t.caidx beside t/in.caibx)
SH2=$W/shadow2
mkdir -p "$SH2/t"
cp "$R/small.img.caibx" "$SH2/v.caibx"
cp "$R/tree.caidx" "$SH2/v.caidx"
cp "$R/tree.caidx" "$SH2/t.caidx"
cp "$R/small.img.caibx" "$SH2/t/in.caibx"
mount_out "$SH2" "$M" --no-cache --chunk-store "$R/default.castr"
[[ -f $M/v && -d $M/t && ! -e $M/t/in ]] || fail "v.caibx beside v.caidx, t.caidx beside t/in.caibx: not v the file, t the archive"
lazyimg_umount "$M"
grep -qF 'v.caidx: hidden: its name is taken by the index v.caibx' <<<"$MOUNT_OUT" ||
    fail "the mount does not say v.caidx is hidden by v.caibx" "$MOUNT_OUT"
grep -qF "t/in.caibx: hidden: its directory's name is taken by the index t.caidx" <<<"$MOUNT_OUT" ||
    fail "the mount does not say t/in.caibx is hidden by t.caidx" "$MOUNT_OUT"
out=$("$LAZYIMG" ls --json "$SH2" 2>&1) || fail "lazyimg ls --json $SH2 failed" "$out"
got=$(python3 -c 'import json, sys
for x in json.load(sys.stdin):
    print(x["index"], x["mounted"], x.get("hidden-by", "-"))' <<<"$out") || fail "ls --json: not the expected JSON" "$out"
expect_eq "ls --json: the hidden ones not mounted, naming the index that hides them" \
    "$(printf '%s\n' 't.caidx True -' 't/in.caibx False t.caidx' 'v.caibx True -' 'v.caidx False v.caibx')" "$got"
ok "x.caibx beside x.caidx, and an archive's name over a directory: the mount and ls agree on what is hidden"

# --- malformed indexes -------------------------------------------------------------
# one copy of small.img.caibx per rule of the reader checklist, next to a good one
Bd=$W/bad
mkdir -p "$Bd"
cp "$R/small.img.caibx" "$Bd/good.img.caibx"
mapfile -t RULES < <(ct malform --list)
((${#RULES[@]} >= 18)) || fail "casync_tool.py malform --list: expected at least 18 rules" "${RULES[@]}"
for rule in "${RULES[@]}"; do
    ct malform "$R/small.img.caibx" "$Bd/$rule.img.caibx" "$rule"
done
# the words of our message about each rule (case-insensitive ERE), matched
# after the file name (which holds the rule name) is removed
declare -A KEY=(
    [file-size]='multiple of 40'
    [short]='shorter than'
    [index-size]='INDEX header size'
    [index-type]='header type'
    [table-size]='TABLE header size'
    [table-type]='TABLE header type'
    [feature-bits]='unknown feature'
    [min-zero]='min 0,'
    [min-gt-avg]='chunk sizes min'
    [avg-gt-max]='chunk sizes min'
    [max-limit]='chunk sizes min'
    [offset-order]='strictly increase'
    [chunk-gt-max]='more than chunk_size_max'
    [zero-fill]='zero fill'
    [index-offset]='index_offset'
    [tail-size]='tail table size'
    [tail-marker]='tail marker'
    [trailing]='trailing bytes'
)
# says MESSAGE RULE: MESSAGE has RULE's keyword outside the file name
says() {
    local m=$1 rule=$2 key=${KEY[$2]:-index}
    m=${m//"$Bd"/}
    m=${m//"$rule.img.caibx"/}
    grep -qiE -- "$key" <<<"$m"
}
# (ls reads only the indexes: no chunk store needed)
out=$("$LAZYIMG" ls "$Bd" 2>&1) || true
for rule in "${RULES[@]}"; do
    line=$(ls_line "$out" "$rule.img.caibx")
    [[ $(grep -c . <<<"$line") == 1 ]] || fail "lazyimg ls: expected one line for $rule.img.caibx" "$out"
    grep -qE 'invalid: *[^ ]' <<<"$line" || fail "lazyimg ls: $rule.img.caibx is not listed as 'invalid: REASON'" "$line"
    says "${line#*invalid:}" "$rule" || fail "lazyimg ls: the reason for $rule.img.caibx does not mention ${KEY[$rule]}" "$line"
done
line=$(ls_line "$out" good.img.caibx)
if [[ -z $line ]] || grep -q invalid <<<"$line"; then
    fail "lazyimg ls: good.img.caibx is missing or invalid" "$out"
fi
ok "lazyimg ls: each of the ${#RULES[@]} malformed indexes is 'invalid:' with a fitting reason; the good one is listed"

# a mount reads an index on first use: each malformed one fails its stat with
# EIO and the daemon logs the file and the rule; the good one reads
lazyimg_mount_fg "$Bd" "$M" "$W/bad-mount.log" -- --no-cache --chunk-store "$R/default.castr"
for rule in "${RULES[@]}"; do
    out=$(stat "$M/$rule.img" 2>&1) && fail "stat of malformed $rule.img succeeded" "$out"
    grep -q "Input/output error" <<<"$out" || fail "stat of malformed $rule.img: expected EIO" "$out"
    line=$(grep -F "$rule.img.caibx" "$W/bad-mount.log" || true)
    [[ -n $line ]] || fail "mount with malformed indexes: no message names $rule.img.caibx" "$(cat "$W/bad-mount.log")"
    says "$line" "$rule" || fail "mount: the message about $rule.img.caibx does not mention ${KEY[$rule]}" "$line"
done
cmp "$M/good.img" small.img || fail "the good index next to malformed ones: good.img differs from small.img"
ok "mount with ${#RULES[@]} malformed indexes: each fails its stat with EIO and a logged reason; good.img reads"
lazyimg_umount "$M"

for rule in "${RULES[@]}"; do
    mount_fails "--snapshot $rule.img.caibx" "$Bd" "$M" --no-cache --chunk-store "$R/default.castr" --snapshot "$rule.img.caibx"
    grep -qF "$rule.img" <<<"$FAIL_OUT" || fail "--snapshot $rule.img.caibx: the message does not name the index" "$FAIL_OUT"
    says "$FAIL_OUT" "$rule" || fail "--snapshot $rule.img.caibx: the message does not mention ${KEY[$rule]}" "$FAIL_OUT"
done
ok "mount --snapshot of each malformed index fails with a message naming it and the rule (e.g. $(head -1 <<<"$FAIL_OUT"))"
mount_fails "--snapshot of a missing index" "$Bd" "$M" --no-cache --chunk-store "$R/default.castr" --snapshot nosuch.img.caibx
grep -qF nosuch.img <<<"$FAIL_OUT" || fail "--snapshot nosuch.img.caibx: the message does not name the index" "$FAIL_OUT"
ok "mount --snapshot of a missing index fails: $(head -1 <<<"$FAIL_OUT")"
lazyimg_mount "$Bd" "$M" --no-cache --chunk-store "$R/default.castr" --snapshot good.img.caibx
expect_eq "local --snapshot good.img.caibx next to malformed indexes: just good.img" ./good.img "$(files "$M")"
cmp "$M/good.img" small.img || fail "--snapshot good.img.caibx: good.img differs from small.img"
lazyimg_umount "$M"

# --- tiny chunks: a 1 MiB read spans thousands of them -----------------------------
DT=$W/tiny
mkdir -p "$DT"
make_image tiny.img rand:3M,zero:64K,rand:1000 7
cmk --store="$DT/default.castr" --chunk-size=64:256:1024 "$DT/tiny.img.caibx" tiny.img
n=$(ct chunks "$DT/tiny.img.caibx" | wc -l)
((n > 4000)) || fail "test setup: tiny.img.caibx has only $n chunks"
lazyimg_mount "$DT" "$M" --cache-dir "$W/tiny-cache"
out=$(timeout 60 cmp "$M/tiny.img" tiny.img 2>&1) || fail "tiny chunks, cold: tiny.img differs or hangs" "$out"
lazyimg_umount "$M"
# warm: every piece of a 1 MiB read comes from the disk cache
lazyimg_mount "$DT" "$M" --cache-dir "$W/tiny-cache"
out=$(timeout 60 dd if="$M/tiny.img" of=/dev/null bs=1M iflag=direct 2>&1) ||
    fail "tiny chunks, warm: 1 MiB O_DIRECT reads failed or hung" "$out"
out=$(timeout 60 cmp "$M/tiny.img" tiny.img 2>&1) || fail "tiny chunks, warm: tiny.img differs or hangs" "$out"
lazyimg_umount "$M"
ok "tiny chunks (64:256:1024, $n chunks): 1 MiB reads over thousands of chunks, cold and warm, equal the source"

# --- chunks larger than the disk cache keeps: said once, when the image loads ------
DB=$W/bigchunks
mkdir -p "$DB"
make_image big.img rand:40M 8
cmk --store="$DB/default.castr" --chunk-size=20M:24M:32M "$DB/big.img.caibx" big.img
lazyimg_mount_fg "$DB" "$M" bigchunks.log -- --cache-dir "$W/big-cache"
out=$(timeout 60 cmp "$M/big.img" big.img 2>&1) || fail "chunks of 20-32 MiB: big.img differs" "$out"
lazyimg_umount "$M"
grep -qE "big.img: chunks of up to (2[0-9]|3[0-2]) MiB, more than the 16 MiB the disk cache keeps" bigchunks.log ||
    fail "chunks of 20-32 MiB: the log does not say the disk cache will not keep them" "$(cat bigchunks.log)"
ok "chunks of 20-32 MiB read right, and the log says they are more than the disk cache keeps"

# --- an index whose path would not fit a path of the mount: skipped, said so -------
DP=$W/deep
mkdir -p "$DP"
cp "$R/small.img.caibx" "$DP/ok.caibx"
python3 - "$DP" "$R/small.img.caibx" <<'EOF' || fail "test setup: the deep directories"
import os, shutil, sys
os.chdir(sys.argv[1])
src = open(sys.argv[2], "rb").read()
for i in range(16):
    d = "d%02d" % i + "x" * 250
    os.mkdir(d)
    os.chdir(d)
open("y" * 200 + ".caibx", "wb").write(src)
EOF
out=$("$LAZYIMG" ls "$DP" 2>&1) || fail "lazyimg ls of a store with a too long path failed" "$out"
grep -qE "d00x+…: a path longer than 4095 bytes: skipped" <<<"$out" ||
    fail "an index path longer than 4095 bytes: no warning" "$out"
grep -qE "^ok .*yes$" <<<"$out" || fail "the index beside it is not listed as mounted" "$out"
ok "an index path longer than 4095 bytes is skipped with a warning; the others are listed"

# --- uncompressed store (desync 'uncompressed': no .cacnk suffix) --------------------
RAW=$SRV/raw.castr
ct rawstore --index "$R/disk.img.caibx" --index "$R/small.img.caibx" "$R/default.castr" "$RAW" >/dev/null
[[ -z $(find "$RAW" -name '*.cacnk') ]] || fail "test setup: the raw store has .cacnk files"
cex --store="$RAW" "$R/disk.img.caibx" ex.raw.img
cmp -s ex.raw.img disk.img || fail "test setup: casync extract from the raw store differs from disk.img"
rm -f ex.raw.img
DR=$W/idx-raw
mkdir -p "$DR"
cp "$R/disk.img.caibx" "$R/small.img.caibx" "$DR/"
lazyimg_mount "$DR" "$M" --no-cache --chunk-store "$RAW"
check_image "raw store disk" "$M/disk.img" disk.img "$R/disk.img.caibx"
check_image "raw store small" "$M/small.img" small.img "$R/small.img.caibx"
lazyimg_umount "$M"

# --- a corrupt chunk: EIO on its range only ----------------------------------------
# corrupt_case LABEL INDEX STORE SOURCE N: damages a copy of STORE's Nth used-once
# non-null chunk of INDEX
corrupt_case() {
    local label=$1 idx=$2 store=$3 src=$4 n=$5 C=$W/corrupt-$1 range s e size lo hi err rc
    mkdir -p "$C"
    cp "$idx" "$C/"
    cp -al "$store" "$C/store.castr" # corrupt_case writes a new file: the original keeps its bytes
    range=$(ct corrupt "$C/$(basename "$idx")" "$C/store.castr" "$n")
    read -r s e <<<"$range"
    lazyimg_mount "$C" "$M" --no-cache --chunk-store "$C/store.castr"
    local img
    img=$M/$(basename "${idx%.caibx}")
    size=$(stat -c %s "$src")
    rc=0
    err=$(dd if="$img" of=/dev/null bs=64K iflag=skip_bytes,count_bytes skip="$s" count=$((e - s)) 2>&1) || rc=$?
    if ((rc == 0)) || ! grep -q 'Input/output error' <<<"$err"; then
        fail "$label: reading the corrupt chunk [$s, $e) did not fail with EIO (dd exit $rc)" "$err"
    fi
    # the rest, in whole pages (the page cache reads pages: the ones holding
    # the chunk's first and last bytes touch it)
    lo=$((s / 4096 * 4096))
    hi=$(((e + 4095) / 4096 * 4096))
    cmp -s <(read_range "$img" 0 "$lo") <(read_range "$src" 0 "$lo") ||
        fail "$label: the $lo bytes before the corrupt chunk do not read back right"
    if ((hi < size)); then
        cmp -s <(read_range "$img" "$hi" $((size - hi))) <(read_range "$src" "$hi" $((size - hi))) ||
            fail "$label: the $((size - hi)) bytes after the corrupt chunk do not read back right"
    fi
    rc=0
    err=$(dd if="$img" of=/dev/null bs=4K iflag=skip_bytes,count_bytes skip=$(((s + e) / 2)) count=1 2>&1) || rc=$?
    ((rc != 0)) || fail "$label: a second read inside the corrupt chunk succeeded"
    pid_alive "$MOUNT_PID" || fail "$label: the daemon died"
    ok "$label: reads of the corrupt chunk [$s, $e) fail with EIO, the $lo bytes before and $((size > hi ? size - hi : 0)) after read right"
    lazyimg_umount "$M"
}
corrupt_case zstd "$R/disk.img.caibx" "$R/default.castr" disk.img 5
corrupt_case xz "$RX/mid.img.caibx" "$RX/default.castr" mid.img 3
corrupt_case gzip "$RG/mid.img.caibx" "$RG/default.castr" mid.img 4
corrupt_case raw "$R/small.img.caibx" "$RAW" small.img 40

# --- over HTTP: nginx with a JSON directory index -----------------------------------
start_nginx --autoindex json "$SRV"
URL=$NGINX_URL
lazyimg_mount "$URL/repo" "$M" --no-cache
files "$M" >tree.http
expect_same_file "HTTP mount: the same files as the local mount" tree.expect tree.http
for v in "${VARIANTS[@]}"; do
    read -r name repo idx src <<<"$v"
    [[ $repo == "$R" ]] || continue
    check_image "http $name" "$M/${idx%.caibx}" "$src" "$repo/$idx"
done
lazyimg_umount "$M"
for v in "${VARIANTS[@]}"; do
    read -r name repo idx src <<<"$v"
    [[ $repo == "$R" ]] && continue
    lazyimg_mount "$URL/${repo#"$SRV"/}" "$M" --no-cache
    check_image "http $name" "$M/${idx%.caibx}" "$src" "$repo/$idx"
    lazyimg_umount "$M"
done
# holes are never fetched: no request names a null chunk (any suffix)
null_ids "$R/disk.img.caibx" "$R/sha256.img.caibx" "$R/small.img.caibx" "$R/releases/x.img.caibx" \
    "$RX/mid.img.caibx" >null.ids
[[ -s null.ids ]] || fail "test setup: no null chunk ids"
got=$(grep -F -f null.ids "$NGINX_LOG" || true)
[[ -z $got ]] || fail "null chunks were requested from nginx" "$(head -5 <<<"$got")"
n=$(nginx_count "" '\.cacnk$' 200)
((n > 0)) || fail "test setup: no chunk request in nginx's log" "$(head -5 "$NGINX_LOG")"
ok "no request for any of the $(wc -l <null.ids) null chunk ids ($n chunk files fetched)"

out=$("$LAZYIMG" ls "$URL/repo" 2>&1) || fail "lazyimg ls $URL/repo failed" "$out"
check_ls "lazyimg ls (HTTP)" "$out"

# the indexes in a local directory, the chunk store on the server
D=$W/idx-only
mkdir -p "$D/releases"
cp "$R/disk.img.caibx" "$R/small.img.caibx" "$D/"
cp "$R/releases/x.img.caibx" "$D/releases/"
before=$(nginx_count "" '\.cacnk$' 200)
lazyimg_mount "$D" "$M" --no-cache --chunk-store "$URL/repo/default.castr"
expect_eq "local indexes, --chunk-store URL: their files" "$(printf '%s\n' ./disk.img ./releases/x.img ./small.img)" "$(files "$M")"
check_image "chunk-store-url disk" "$M/disk.img" disk.img "$R/disk.img.caibx"
check_image "chunk-store-url small" "$M/small.img" small.img "$R/small.img.caibx"
check_image "chunk-store-url nested" "$M/releases/x.img" x.img "$R/releases/x.img.caibx"
lazyimg_umount "$M"
(($(nginx_count "" '\.cacnk$' 200) > before)) || fail "--chunk-store URL: no chunk was fetched from nginx"
ok "--chunk-store URL: the chunks came from nginx"

# the uncompressed store over HTTP (.cacnk answered 404, then the bare name)
lazyimg_mount "$DR" "$M" --no-cache --chunk-store "$URL/raw.castr"
check_image "raw store over http disk" "$M/disk.img" disk.img "$R/disk.img.caibx"
lazyimg_umount "$M"
(($(nginx_count "" '/raw\.castr/[0-9a-f]+/[0-9a-f]+$' 200) > 0)) || fail "raw store over HTTP: no bare chunk file was fetched"
ok "raw store over HTTP: bare chunk files fetched"
stop_nginx

# --- no directory index: --snapshot ----------------------------------------------------
# (directories answered 403, as nginx and Apache do, or 404, as Caddy's
# file_server and static hosts do: refused before, also as --chunk-store)
for fmt in off 404; do
    code=403
    [[ $fmt == 404 ]] && code=404
    start_nginx --autoindex $fmt "$SRV"
    URL=$NGINX_URL
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/repo/") == "$code" ]] || fail "nginx --autoindex $fmt should answer $code for a directory"
    lazyimg_mount "$URL/repo" "$M" --no-cache --snapshot disk.img.caibx --snapshot releases/x.img.caibx
    expect_eq "--snapshot (x2, one nested), directories answered $code: exactly those images" \
        "$(printf '%s\n' ./disk.img ./releases/x.img)" "$(files "$M")"
    check_image "snapshot disk ($code)" "$M/disk.img" disk.img "$R/disk.img.caibx"
    check_image "snapshot nested ($code)" "$M/releases/x.img" x.img "$R/releases/x.img.caibx"
    lazyimg_umount "$M"
    expect_eq "no directory listing was answered 200 to the --snapshot mount ($code)" 0 \
        "$(awk '$1 ~ /\/$/ && $2 == 200' "$NGINX_LOG" | wc -l)"
    lazyimg_mount "$D" "$M" --no-cache --chunk-store "$URL/repo/default.castr"
    check_image "chunk-store URL, directories answered $code" "$M/disk.img" disk.img "$R/disk.img.caibx"
    lazyimg_umount "$M"
    mount_fails "--snapshot of a missing index over HTTP ($code)" "$URL/repo" "$M" --no-cache --snapshot nosuch.img.caibx
    grep -qF nosuch.img <<<"$FAIL_OUT" || fail "--snapshot nosuch.img.caibx over HTTP: the message does not name the index" "$FAIL_OUT"
    ok "--snapshot of a missing index over HTTP ($code) fails: $(head -1 <<<"$FAIL_OUT")"
    stop_nginx
done

# --- hydrate, then the image reads with nginx gone ------------------------------------
start_nginx --autoindex json "$SRV"
URL=$NGINX_URL
C=$W/cache-hyd
lazyimg_mount "$URL/repo" "$M" --cache-dir "$C" --snapshot disk.img.caibx
out=$("$LAZYIMG" hydrate "$M/disk.img" 2>&1) || fail "lazyimg hydrate disk.img failed" "$out"
lazyimg_umount "$M"
got=$(grep -F -f null.ids "$NGINX_LOG" || true)
[[ -z $got ]] || fail "hydrate requested null chunks" "$(head -5 <<<"$got")"
ok "lazyimg hydrate disk.img: exit 0, no null chunk requested"
lazyimg_mount "$URL/repo" "$M" --cache-dir "$C" --snapshot disk.img.caibx
stat "$M/disk.img" >/dev/null
stop_nginx
check_image "hydrated, nginx stopped" "$M/disk.img" disk.img "$R/disk.img.caibx"
lazyimg_umount "$M"
# casync's chunks (all under 1 MiB) are packed: rows name packs, no chunk has
# a file of its own, and verify re-hashes them all
read -r rows packed < <(python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(*db.execute("SELECT COUNT(*), TOTAL(pack != 0) FROM chunks").fetchone())' "$C/index.sqlite")
((rows > 0)) || fail "hydrate cached no chunk"
expect_eq "every cached casync chunk is in a pack ($rows)" "$rows" "${packed%.0}"
expect_eq "no casync chunk has a file of its own" 0 "$(find "$C/data" -type f | wc -l)"
out=$("$LAZYIMG" cache verify --cache-dir "$C" 2>&1) || fail "cache verify of packed chunks failed" "$out"
grep -q "checked $rows entries, 0 bad" <<<"$out" || fail "cache verify: unexpected report" "$out"
ok "cache verify re-hashes the $rows packed chunks: 0 bad"

# --- S3 (s3rver): the repository in a bucket, and a chunk store in a bucket ----------
start_s3rver
s3_mkbucket casync
s3_upload "$R" casync repo
# through faultproxy (no faults; --keep-host keeps the signed Host header) so
# that requests can be counted
start_proxy "$S3_ENDPOINT" --keep-host
export AWS_ACCESS_KEY_ID=$S3_AK AWS_SECRET_ACCESS_KEY=$S3_SK
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_SHARED_CREDENTIALS_FILE AWS_REGION AWS_DEFAULT_REGION
S3OPTS=(--s3-endpoint "$PROXY_URL" --s3-region us-east-1 --s3-path-style)
lazyimg_mount s3://casync/repo "$M" --no-cache "${S3OPTS[@]}"
files "$M" >tree.s3
expect_same_file "S3 mount: the same files as the local mount" tree.expect tree.s3
for v in "${VARIANTS[@]}"; do
    read -r name repo idx src <<<"$v"
    [[ $repo == "$R" ]] || continue
    check_image "s3 $name" "$M/${idx%.caibx}" "$src" "$repo/$idx"
done
lazyimg_umount "$M"
got=$(grep -F -f null.ids "$W/faultproxy.log" || true)
[[ -z $got ]] || fail "S3: null chunks were requested" "$(head -5 <<<"$got")"
n=$(proxy_count '/casync/repo/default\.castr/[0-9a-f]{4}/[0-9a-f]{64}\.cacnk$')
((n > 0)) || fail "S3: no chunk object was requested through the proxy" "$(tail -5 "$W/faultproxy.log")"
ok "S3: no request for any null chunk ($n chunk objects fetched)"
out=$("$LAZYIMG" ls "${S3OPTS[@]}" s3://casync/repo 2>&1) || fail "lazyimg ls s3://casync/repo failed" "$out"
check_ls "lazyimg ls (S3)" "$out"

# local indexes, --chunk-store s3://; with a disk cache: the warm read fetches nothing
C=$W/cache-s3
lazyimg_mount "$D" "$M" --cache-dir "$C" --chunk-store s3://casync/repo/default.castr "${S3OPTS[@]}"
check_image "chunk-store-s3 disk" "$M/disk.img" disk.img "$R/disk.img.caibx"
check_image "chunk-store-s3 nested" "$M/releases/x.img" x.img "$R/releases/x.img.caibx"
lazyimg_umount "$M"
proxy_reset
lazyimg_mount "$D" "$M" --cache-dir "$C" --chunk-store s3://casync/repo/default.castr "${S3OPTS[@]}"
check_image "chunk-store-s3 disk, warm" "$M/disk.img" disk.img "$R/disk.img.caibx"
check_image "chunk-store-s3 nested, warm" "$M/releases/x.img" x.img "$R/releases/x.img.caibx"
lazyimg_umount "$M"
expect_eq "--chunk-store s3://, warm: no chunk object requested" 0 "$(proxy_count '\.cacnk$')"
