#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Concurrency: parallel whole-image and interleaved readers, on one image and
# on two images at once, buffered and O_DIRECT, with the default chunk memory
# and with a tiny one (constant eviction), all read exactly the source bytes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

begin_mount_test python3
T=2025-07-07T07:07:07Z

# A: 24 MiB, 64K chunks (384 chunks); B: 16 MiB, 1M chunks.
make_image a.raw rand:5M,zero:1M,text:3M,rand:64K,zero:100K,rand:4M,repeat:2M,text:2M,zero:3M,rand:4660K 31
make_image b.raw text:2M,rand:6M,zero:2M,rand:3M,repeat:1M,text:2M 32
mkpbs --chunk-size 64K --id 100 --time $T "$S" drive-scsi0.img=a.raw >/dev/null
mkpbs --chunk-size 1M --id 101 --time $T "$S" drive-scsi0.img=b.raw >/dev/null
A=vm/100/$T/drive-scsi0.img
B=vm/101/$T/drive-scsi0.img
SHA_A=$(sha_of a.raw)
SHA_B=$(sha_of b.raw)

# Reader of every 4th block (blocks of BS bytes, not chunk-aligned) starting
# at block R; compares each block with the source; O_DIRECT if asked.
cat >ilv.py <<'EOF'
import os, sys
img, src, r, n, bs, direct = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "direct"
fd = os.open(img, os.O_RDONLY | (os.O_DIRECT if direct else 0))
sfd = os.open(src, os.O_RDONLY)
size = os.fstat(sfd).st_size
if not direct:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # start cold
off, blocks = r * bs, 0
while off < size:
    got = os.pread(fd, bs, off)
    want = os.pread(sfd, bs, off)
    if got != want:
        print(f"{img}: block at {off} (+{bs}, reader {r}/{n}{' O_DIRECT' if direct else ''}): "
              f"got {len(got)} bytes, differs from the source")
        sys.exit(1)
    off += n * bs
    blocks += 1
print(f"reader {r}: {blocks} blocks")
EOF

# Reader of a hot region: 40 O_DIRECT reads at offsets around the chunk
# boundaries 3M..5M of B (1M chunks), in a per-reader order.
cat >hot.py <<'EOF'
import os, random, sys
img, src, r = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(img, os.O_RDONLY | os.O_DIRECT)
sfd = os.open(src, os.O_RDONLY)
rnd = random.Random(r)
for i in range(40):
    off = (3 << 20) + rnd.randrange(2 << 20)
    n = rnd.choice((4096, 65536, 1 << 20))
    if os.pread(fd, n, off) != os.pread(sfd, n, off):
        print(f"{img}: hot read {i} at {off} (+{n}, reader {r}) differs from the source")
        sys.exit(1)
EOF

# wait_all DESC PID...: every background job must succeed.
wait_all() {
    local desc=$1 p bad=0
    shift
    for p in "$@"; do
        wait "$p" || bad=$((bad + 1))
    done
    ((bad == 0)) || fail "$desc: $bad of $# readers failed (see above)"
}

# whole IMG TAG buffered|direct: one whole-image reader, its sha256 into TAG.sha
whole() {
    local fl=""
    [[ $3 == direct ]] && fl=iflag=direct
    dd if="$1" bs=1M $fl status=none | sha256sum | cut -d' ' -f1 >"$2.sha"
}

phase() {
    local m=$1 label=$2 pids=() i mode r
    # 1. four whole-image readers on A (two buffered, two O_DIRECT)
    for i in 0 1 2 3; do
        mode=$([[ $((i % 2)) == 1 ]] && echo direct || echo buffered)
        whole "$m/$A" "w$i" "$mode" &
        pids+=($!)
    done
    wait_all "$label: 4 parallel whole readers of A" "${pids[@]}"
    for i in 0 1 2 3; do
        expect_eq "$label: whole reader $i of A ($([[ $((i % 2)) == 1 ]] && echo O_DIRECT || echo buffered)) sha256" "$SHA_A" "$(cat w$i.sha)" >/dev/null
    done
    ok "$label: 4 parallel whole-image readers of A (2 buffered, 2 O_DIRECT) read the source bytes"

    # 2. four interleaved readers on A (every 4th 100000-byte block)
    pids=()
    for r in 0 1 2 3; do
        mode=$([[ $r -ge 2 ]] && echo direct || echo buffered)
        python3 ilv.py "$m/$A" a.raw $r 4 100000 "$mode" >ilv$r.log 2>&1 &
        pids+=($!)
    done
    wait_all "$label: 4 interleaved readers of A" "${pids[@]}"
    for r in 0 1 2 3; do
        grep -q '^reader' ilv$r.log || fail "$label: interleaved reader $r of A" "$(cat ilv$r.log)"
    done
    ok "$label: 4 interleaved readers of A (2 buffered, 2 O_DIRECT) read the source bytes"

    # 3. two images at once: 4 whole readers + 4 interleaved readers each
    pids=()
    for i in 0 1; do
        whole "$m/$A" "xa$i" "$([[ $i == 1 ]] && echo direct || echo buffered)" &
        pids+=($!)
        whole "$m/$B" "xb$i" "$([[ $i == 1 ]] && echo direct || echo buffered)" &
        pids+=($!)
    done
    for r in 0 1 2 3; do
        mode=$([[ $r -ge 2 ]] && echo direct || echo buffered)
        python3 ilv.py "$m/$A" a.raw $r 4 300000 "$mode" >ila$r.log 2>&1 &
        pids+=($!)
        python3 ilv.py "$m/$B" b.raw $r 4 1000000 "$mode" >ilb$r.log 2>&1 &
        pids+=($!)
    done
    wait_all "$label: 12 readers of A and B at once" "${pids[@]}"
    for i in 0 1; do
        expect_eq "$label: A+B: whole reader $i of A" "$SHA_A" "$(cat xa$i.sha)" >/dev/null
        expect_eq "$label: A+B: whole reader $i of B" "$SHA_B" "$(cat xb$i.sha)" >/dev/null
    done
    ok "$label: 12 readers of two images at once (whole and interleaved, buffered and O_DIRECT) read the source bytes"

    # 4. random 4 KiB O_DIRECT reads (aligned and unaligned), 4 parallel loops
    pids=()
    for r in 0 1 2 3; do
        (
            RANDOM=$((r + 1))
            size=$(stat -c %s a.raw)
            for ((k = 0; k < 32; k++)); do
                off=$(((RANDOM * 32768 + RANDOM) % (size - 4096)))
                ((k % 2)) || off=$((off / 4096 * 4096))
                got=$(dd if="$m/$A" iflag=direct,skip_bytes bs=4096 count=1 skip=$off status=none | sha256sum)
                want=$(dd if=a.raw iflag=skip_bytes bs=4096 count=1 skip=$off status=none | sha256sum)
                [[ $got == "$want" ]] || {
                    echo "O_DIRECT 4K read at $off differs from the source"
                    exit 1
                }
            done
        ) &
        pids+=($!)
    done
    wait_all "$label: random O_DIRECT 4K reads" "${pids[@]}"
    ok "$label: 128 random 4 KiB O_DIRECT reads (4 in parallel, half unaligned) equal the source"

    # 5. one hot region of B read by 8 O_DIRECT readers at once, while
    #    2 O_DIRECT readers sweep all of A and B (evicting with a small memory)
    pids=()
    for r in 0 1 2 3 4 5 6 7; do
        python3 hot.py "$m/$B" b.raw $r >hot$r.log 2>&1 &
        pids+=($!)
    done
    whole "$m/$A" "ha" direct &
    pids+=($!)
    whole "$m/$B" "hb" direct &
    pids+=($!)
    wait_all "$label: hot-region readers" "${pids[@]}"
    expect_eq "$label: sweeping reader of A during the hot reads" "$SHA_A" "$(cat ha.sha)" >/dev/null
    expect_eq "$label: sweeping reader of B during the hot reads" "$SHA_B" "$(cat hb.sha)" >/dev/null
    ok "$label: 8 O_DIRECT readers of one hot region of B (plus 2 sweeping readers) read the source bytes"
}

lazyimg_mount "$S" "$M"
PID=$MOUNT_PID
phase "$M" "default"
pid_alive "$PID" || fail "daemon died"
lazyimg_umount "$M"
ok "unmounted"

# the smallest decoded-chunk memory (4 chunks of B) and few threads: constant eviction
lazyimg_mount "$S" "$M" --mem-cache 4M --threads 4
phase "$M" "--mem-cache 4M --threads 4"
lazyimg_umount "$M"
ok "unmounted"
