#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# contrib/bench.sh on a small image (128 MiB, one run, memory not warmed): the
# README's figures come from it, so it has to run on a fresh machine with the
# dependencies contrib/install-deps.sh installs. Its speeds mean nothing at
# this size and are not judged; what is checked is that it finishes, prints
# every row of its table with numbers in it, and that the rows which do not
# depend on speed hold: every data chunk cached after a cold filling read
# (target 2), each loaded once (8), none loaded by warm reads, targets 1
# and 9 judged on the median of each run's three pairs, the encrypted
# image cached too, the peer's and cp's copies identical to the image. Where
# the machine's TCP congestion control is not cubic, the context rows from
# the second nginx (connections on cubic, contrib/tcpcc.c) are there. And
# contrib/bench-status.sh runs, its status calls reading each row once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

require_fuse
require_cmd nginx curl nbdkit qemu-img openssl casync python3 mountpoint cmp ss git
setup_workdir
cd "$W"
ROOT=$(cd "$T_DIR/../.." && pwd)
B=$(cd "$(dirname "$LAZYIMG")/.." && pwd)
[[ -f $B/contrib/lazyimg-tcpcc.so ]] || fail "no $B/contrib/lazyimg-tcpcc.so (contrib/meson.build)"
# not under $W's filesystem if that is a tmpfs: the bench measures its cache
# disk with O_DIRECT writes
BW=$(mktemp -d /var/tmp/lazyimg-t-bench.XXXXXX)
add_cleanup "rm -rf '$BW'"

if ! RUNS=1 PAIRS=3 SIZE_MB=128 WARM_MB=0 LAZYIMG_BUILD=$B bash "$ROOT/contrib/bench.sh" "$BW" >bench.out 2>bench.err; then
    fail "contrib/bench.sh failed" "$(tail -20 bench.err)"
fi
cmp bench.out "$BW/results.txt" || fail "results.txt differs from what the bench printed"
ok "contrib/bench.sh ran (128 MiB, one run) and wrote results.txt"

TCP_CC=$(cat /proc/sys/net/ipv4/tcp_congestion_control)
CUBIC=no
if [[ $TCP_CC != cubic ]] && grep -qw cubic /proc/sys/net/ipv4/tcp_available_congestion_control; then
    CUBIC=yes
fi
python3 - bench.out "$CUBIC" "$TCP_CC" "$(nproc)" <<'EOF' || fail "the bench's table is not as expected" "$(cat bench.out)"
import re, sys
text = open(sys.argv[1]).read()
cubic = sys.argv[2] == "yes"
tcp_cc = sys.argv[3]  # the machine's congestion control, as the bench read it
ncpu = int(sys.argv[4])
rows = {}
for line in text.splitlines():
    if line.startswith("| ") and not line.startswith("| what |"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 8, line
        rows[cells[0]] = cells
def row(prefix):
    # "LABEL |": that label exactly, else every label starting with it
    if prefix.endswith(" |"):
        hits = [r for k, r in rows.items() if k == prefix[:-2]]
    else:
        hits = [r for k, r in rows.items() if k.startswith(prefix)]
    assert len(hits) == 1, (prefix, len(hits))
    return hits[0]
num = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# measured rows: MB/s and min-max numbers, the daemon's CPU and RSS where lazyimg ran
measured = ["ref: SHA-256, openssl speed", "ref: SHA-256 per core", "ref: AES-256-GCM decryption", "ref: cat of a plain",
            "ref: cat of the cache's chunk files", "ref: cat of the datastore's chunk files", "ref: curl -Z", "ref: the cache disk",
            "ref (peer)", "ref: cp --sparse=always of the image",
            "HTTP, cold read with defaults", "HTTP, target 5's cold reads",
            "HTTP, cp --sparse=always to a file, fresh mount", "HTTP, cp --sparse=always to a file from a warm mount"]
daemon = ["local, cold --no-cache |", "local, cold --no-cache, the datastore's files out of the page cache",
          "local, cold cache filling", "local, warm, page cache dropped",
          "local, warm, page cache warm", "HTTP, cold --no-cache |", "HTTP, cold cache filling",
          "HTTP, warm, page cache dropped", "HTTP, warm, page cache warm",
          "casync 64K over HTTP, cold --no-cache", "casync 64K over HTTP, cold cache filling",
          "local, encrypted (AES-256-GCM", "local, encrypted, cold cache filling"]
if cubic:
    daemon.append("HTTP, cold --no-cache, nginx on cubic")
for p in measured + daemon:
    r = row(p)
    assert num.match(r[1]) and float(r[1]) > 0, (p, r)
    lo, hi = r[2].split("\u2013")
    assert num.match(lo) and num.match(hi) and float(lo) <= float(r[1]) <= float(hi), (p, r)
for p in daemon:
    r = row(p)
    assert num.match(r[3]) and float(r[3]) > 0, (p, "CPU", r)
    assert num.match(r[4]) and float(r[4]) > 0, (p, "RSS", r)
# every target row has a value and a verdict
targets = [r for k, r in rows.items() if re.match(r"^[1-9]\. ", k)]
assert len(targets) >= 30, len(targets)
for r in targets:
    assert r[5], r
    if "(context, no target)" in r[0]:
        assert num.match(r[5]) and not r[7], r
    else:
        assert r[7] in ("PASS", "FAIL"), r
# what does not depend on speed holds at any size
for p in ["2. cached chunks after the cold cache-filling read", "2. cached chunks, HTTP",
          "2. cached chunks, casync 64K", "8. chunks loaded (status --json)", "8. chunks loaded, HTTP",
          "8. chunks loaded, casync 64K", "9. cached chunks after the cold encrypted read"]:
    assert row(p)[7] == "PASS", row(p)
assert "chunks loaded by warm reads (expected 0): local 0 (page cache dropped), 0 (warm); HTTP 0, 0; cp from a warm mount 0" in text, "warm loads"
# the local store reads its chunks with O_DIRECT when its files are out of the
# page cache (every data chunk of the image), not when they are in it
m = re.search(r"^- chunks read with O_DIRECT by the local store \(status --json: stores\[\]\.direct_reads\): "
              r"with its files out of the page cache ([0-9]+) \(distinct data chunks ([0-9]+)\); "
              r"with them in the page cache \(local --no-cache\) ([0-9]+)$", text, re.M)
assert m, "no line of the O_DIRECT reads"
assert m.group(1) == m.group(2) and m.group(3) == "0", m.groups()
row("1. (context, no target) local cold --no-cache with the datastore's files out of the page cache / cat of those files")
row("5. (context, no target) HTTP cp --sparse=always from a warm mount")
# the bounds of targets 1 (local) and 9 (--no-cache): each the arithmetic of
# the rows it names (their printed medians are rounded: a tolerance)
def f(p, i):
    return float(row(p)[i])
disk = f("ref: the cache disk", 1) / f("local, cold --no-cache |", 1)
r = f("1. (context, no target) the cache disk's rate (dd above) / local cold --no-cache", 5)
assert abs(r - disk) <= 0.02 + 0.01 * disk, ("disk bound", r, disk)
aes = float(row("ref: AES-256-GCM decryption")[3].split()[0])
plain_cpu = f("local, cold --no-cache |", 3)
enc_cpu = f("local, encrypted (AES-256-GCM", 3)
r = f("9. (context, no target) daemon CPU per GiB the encryption adds", 5)
assert abs(r - (enc_cpu - plain_cpu) / aes) <= 0.15, ("encryption's CPU", r, enc_cpu, plain_cpu, aes)
r = f("9. (context, no target) local --no-cache CPU per GiB / (the same + AES-256-GCM", 5)
assert abs(r - plain_cpu / (plain_cpu + aes)) <= 0.03, ("AES bound", r, plain_cpu, aes)
# (2 cores or more) the same warm cp with cp and the request threads on one CPU
if ncpu >= 2:
    r = row("HTTP, the same cp from a warm mount with cp and the daemon's request threads on one CPU")
    assert num.match(r[1]) and float(r[1]) > 0, r
    row("5. (context, no target) the warm-mount cp with cp and the request threads on one CPU")
# the fill runs' per-run figures, each in its place (fields of one status line)
for what in ("local", "HTTP", "casync 64K"):
    assert re.search(r"^- " + what + r", cold cache filling: [0-9]+ chunks in the cache's index when the read ended; "
                     r"after waiting [0-9]+\.[0-9] s: [0-9]+ inserted, [0-9]+ skipped \(status --json\); "
                     r"SQLite write transactions [0-9]+ \(status --json\), [0-9]+ \(daemon log at exit\); "
                     r"chunks loaded by --no-cache reads: [0-9]+$", text, re.M), what
# target 1: every pair's ratio, and each store's verdict on the median of them
m = re.search(r"^- target 1, the ratio of each pair \(cache filling / --no-cache\), .*: "
              r"local (\S+); HTTP (\S+); casync 64K (\S+)$", text, re.M)
assert m, "no line of target 1's pairs"
for what, v in zip(("local", "HTTP", "casync 64K"), m.groups()):
    pairs = v.split("/")
    assert len(pairs) == 3 and all(num.match(x) for x in pairs), (what, v)
    r = row("1. cache filling / --no-cache, " + what + " (")
    assert r[5] == sorted(pairs, key=float)[1], (what, r, pairs)
    assert "the median of its 3 pairs" in r[0], r
assert re.search(r"^- target 1, MB/s of data of the pairs after the first .*: local [0-9]+, [0-9]+ and [0-9]+, [0-9]+; "
                 r"HTTP [0-9]+, [0-9]+ and [0-9]+, [0-9]+; casync 64K [0-9]+, [0-9]+ and [0-9]+, [0-9]+$", text, re.M), "pairs' MB/s"
# target 5: every pair's ratios (ours / the peer right before), each verdict
# on the median of them
m = re.search(r"^- target 5, the ratio of each pair \(ours / the peer right before it\), .*: "
              r"cold read (\S+); cp (\S+); the peer ([0-9]+, [0-9]+, [0-9]+), cp ([0-9]+, [0-9]+, [0-9]+), "
              r"cold read ([0-9]+, [0-9]+, [0-9]+) logical MB/s$", text, re.M)
assert m, "no line of target 5's pairs"
for what, v in zip(("cold read with defaults (cat)", "cp --sparse=always"), m.groups()[:2]):
    pairs = v.split("/")
    assert len(pairs) == 3 and all(num.match(x) for x in pairs), (what, v)
    r = row("5. HTTP " + what + " / peer")
    assert r[5] == sorted(pairs, key=float)[1], (what, r, pairs)
    assert "the median of its 3 pairs" in r[0], r
# target 9: every pair's ratio (each encrypted read against the unencrypted
# one right before it), each verdict on the median of them; the first pair's
# MB/s make its first ratio
m = re.search(r"^- target 9, the ratio of each pair \(encrypted / the unencrypted read right before it\), .*: "
              r"--no-cache (\S+); cache filling (\S+)$", text, re.M)
assert m, "no line of target 9's pairs"
first = re.search(r"^- target 9, MB/s of data of each run's first pair, unencrypted then encrypted: --no-cache ([0-9]+) then ([0-9]+); "
                  r"cache filling ([0-9]+) then ([0-9]+)$", text, re.M)
assert first, "no line of target 9's first pairs"
for i, k in enumerate(("--no-cache", "cache filling")):
    pairs = m.group(i + 1).split("/")
    assert len(pairs) == 3 and all(num.match(x) for x in pairs), (k, pairs)
    r = row("9. encrypted / unencrypted cold read, local, " + k + " (")
    assert abs(float(r[5]) - float(sorted(pairs, key=float)[1])) <= 0.005, (k, r, pairs)
    assert "the median of its 3 pairs, the unencrypted read right before the encrypted one" in r[0], r
    want = float(first.group(2 * i + 2)) / float(first.group(2 * i + 1))
    assert abs(float(pairs[0]) - want) <= 0.01 + 0.01 * want, (k, pairs, want)
# who hashed, per cold read: a share of blocks paired where the CPU has the
# SHA extensions, "openssl" elsewhere
sha_ni = " sha_ni " in " " + open("/proc/cpuinfo").read().replace("\n", " ") + " "
m = re.search(r"SHA-256 blocks hashed two at a time \(.*\): local (\S+) --no-cache, (\S+) filling; "
              r"HTTP (\S+), (\S+); encrypted (\S+), (\S+)$", text, re.M)
assert m, "no line of SHA-256 pairs"
for v in m.groups():
    assert re.match(r"^[0-9]+%$", v) if sha_ni else v == "openssl", (v, sha_ni)
# how long the cold reads waited for chunks (status --json: reads.waits,
# wait_us): a share of the read's time (one reader: its waits do not overlap)
# and a count; a cold read waits at least for its first data chunk
pct, cnt = r"([0-9]+)%", r"([0-9]+)"
m = re.search(r"^- the read's time its reads waited for a chunk \(status --json: reads\.wait_us; .*\), and how many reads waited: "
              r"local --no-cache %s \(%s\), filling %s \(%s\); HTTP --no-cache %s \(%s\), filling %s \(%s\); "
              r"casync 64K --no-cache %s \(%s\), filling %s \(%s\); encrypted --no-cache %s, filling %s; "
              r"warm, page cache dropped: local %s, HTTP %s$" % ((pct, cnt) * 6 + (pct,) * 4), text, re.M)
assert m, "no line of the reads' waits"
g = [int(x) for x in m.groups()]
assert all(0 <= v <= 101 for v in g[0:12:2] + g[12:]), g
assert all(v >= 1 for v in g[1:12:2]), g
assert "were compared with the image (first run, first pair): identical" in text, "copies"
assert re.search(r"^TCP congestion control: " + re.escape(tcp_cc), text, re.M)
# the machine's facts behind target 5 and target 1: idle CPUs, the disk's mount
assert re.search(r"^idle CPUs and FUSE: cpuidle driver \S+, governor \S+", text, re.M), "idle CPUs line"
assert re.search(r"^the disk holding [^:]*: (unknown|.*, readahead [0-9]+ KiB, \S+ mounted \S+)", text, re.M), "disk line"
if cubic:
    row("3. (context, no target) CPU per GiB / SHA-256 s per GiB, HTTP --no-cache, nginx on cubic")
    assert 'rows "nginx on cubic"' in text
else:
    assert "nginx on cubic" not in text
# casync make's digest, SHA-512/256, gets its reference row
row("ref: SHA-512/256, the casync index's digest")
row("3. (context, no target) CPU per GiB / SHA-512/256 s per GiB (its digest), casync 64K --no-cache")
EOF
ok "every row of the table has its numbers and verdict; targets 2 and 8, the encrypted cache and warm loads hold; the copies are identical"
if [[ $CUBIC == yes ]]; then
    ok "the congestion control is $TCP_CC: the rows from the nginx on cubic are there"
fi
! pgrep -f "$BW/nginx" >/dev/null || fail "an nginx of the bench is still running" "$(pgrep -af "$BW/nginx")"
! mountpoint -q "$BW/mnt" || fail "the bench left its mount"
ok "the bench stopped its nginx servers and unmounted"

# --- contrib/bench-status.sh (the README's figure for status during a cold
# read): it runs; its status calls during and after the read counted the
# image afresh once (the first, before the read: from the empty index's
# rows), then took the rows added, each read once; the image ends fully
# cached
if ! RUNS=1 SIZE_MB=32 LAZYIMG_BUILD=$B bash "$ROOT/contrib/bench-status.sh" "$BW/status" >status.out 2>status.err; then
    fail "contrib/bench-status.sh failed" "$(tail -20 status.err)"
fi
line=$(grep '^run 1:' status.out) || fail "contrib/bench-status.sh printed no run" "$(cat status.out)"
chunks=$(sed -n 's/.*casync store with \([0-9]*\) chunks.*/\1/p' status.out)
[[ -n $chunks && $chunks -gt 0 ]] || fail "contrib/bench-status.sh: no chunk count" "$(cat status.out)"
[[ $line == *"counts 1, chunk lookups 0, index rows read $chunks,"* ]] ||
    fail "bench-status.sh: expected one count afresh, no lookup, the $chunks rows read once" "$line"
[[ $line == *"hydrated 100.0%"* ]] || fail "bench-status.sh: the image is not fully cached after its read" "$line"
! mountpoint -q "$BW/status/mnt" || fail "bench-status.sh left its mount"
ok "contrib/bench-status.sh: $line"

# --- contrib/bench-ab.sh (the before-and-after tables of docs/performance.md): it runs on
# the bench's image, with options given to one side only; every mode asked
# for gets its row with numbers, B's options reach B's daemons and only
# them; an unknown mode is refused before anything is read
if ! PAIRS=2 SIZE_MB=128 WARM_MB=0 A=$B B=$B B_OPTS="--readahead 1" MODES="local-nocache http-fill warm-cp" \
    bash "$ROOT/contrib/bench-ab.sh" "$BW" >ab.out 2>ab.err; then
    fail "contrib/bench-ab.sh failed" "$(tail -20 ab.err)"
fi
cmp ab.out "$BW/ab-results.txt" || fail "ab-results.txt differs from what bench-ab.sh printed"
python3 - ab.out ab.err <<'PYEOF' || fail "bench-ab.sh's table is not as expected" "$(cat ab.out ab.err)"
import re, statistics, sys
text, log = open(sys.argv[1]).read(), open(sys.argv[2]).read()
assert re.search(r"^B: build directory .*; options: --readahead 1$", text, re.M), "B's options"
assert re.search(r"^A: build directory [^;]*$", text, re.M), "A has no options"
# every read's figure from the progress lines (one decimal), in the order read
reads = {}
for m in re.finditer(r"^\[[0-9:]+\] (\S+) pair ([0-9]+) ([AB]): ([0-9.]+) MB/s", log, re.M):
    reads.setdefault(m.group(1), []).append((int(m.group(2)), m.group(3), float(m.group(4))))
n = r"([0-9]+(?:\.[0-9]+)?)"
for mode in ("local-nocache", "http-fill", "warm-cp"):
    got = reads.get(mode, [])
    # A first in odd pairs, B first in even ones
    assert [(p, s) for p, s, _ in got] == [(1, "A"), (1, "B"), (2, "B"), (2, "A")], (mode, got)
    a = [v for p, s, v in sorted(got) if s == "A"]
    b = [v for p, s, v in sorted(got) if s == "B"]
    m = re.search(r"^\| " + mode + r" \| " + n + r" \(" + n + "–" + n + r"\) \| " + n + r" \(" + n + "–" + n +
                  r"\) \| " + n + r" \| " + n + r" \(" + n + "–" + n + r"\) \| ([0-2]) of 2 \| " + n + " / " + n +
                  r" \|$", text, re.M)
    assert m, mode
    v = [float(x) for x in m.groups()]
    near = lambda x, want, tol: abs(x - want) <= tol
    assert near(v[0], statistics.median(a), 0.6) and near(v[1], min(a), 0.6) and near(v[2], max(a), 0.6), (mode, v, a)
    assert near(v[3], statistics.median(b), 0.6) and near(v[4], min(b), 0.6) and near(v[5], max(b), 0.6), (mode, v, b)
    ratio = statistics.median(b) / statistics.median(a)
    assert near(v[6], ratio, 0.002 + 0.001 * ratio), (mode, "ratio of medians", v[6], ratio)
    per = [y / x for x, y in zip(a, b)]  # B / A of the same pair
    assert near(v[7], statistics.median(per), 0.002 + 0.001 * v[7]), (mode, "per pair", v[7], per)
    assert int(v[10]) == sum(y > x for x, y in zip(a, b)), (mode, "wins", v[10], a, b)
PYEOF
# each read's progress line names the daemon's command: B's with the option,
# A's without, six reads each (three modes, two pairs)
[[ $(grep -c "pair [12] B: .* mount .*--readahead 1)\$" ab.err) == 6 ]] || fail "bench-ab.sh: B's reads without its options" "$(cat ab.err)"
[[ $(grep -c "pair [12] A: .* mount " ab.err) == 6 && $(grep -c "pair [12] A: .*--readahead" ab.err) == 0 ]] ||
    fail "bench-ab.sh: A's reads not as expected" "$(cat ab.err)"
if PAIRS=1 MODES="local-nocache bogus" bash "$ROOT/contrib/bench-ab.sh" "$BW" >ab2.out 2>ab2.err; then
    fail "bench-ab.sh accepted an unknown mode"
fi
grep -q "unknown mode 'bogus'" ab2.err || fail "bench-ab.sh: no message for an unknown mode" "$(cat ab2.err)"
[[ ! -s ab2.out ]] || fail "bench-ab.sh printed a table for an unknown mode"
if PAIRS=1 MODES="local-nocache" A_ENV="--help" bash "$ROOT/contrib/bench-ab.sh" "$BW" >ab3.out 2>ab3.err; then
    fail "bench-ab.sh took an environment word without NAME="
fi
grep -q "A_ENV and B_ENV take NAME=VALUE words, not '--help'" ab3.err || fail "bench-ab.sh: no message for a bad A_ENV" "$(cat ab3.err)"
! mountpoint -q "$BW/mnt" || fail "bench-ab.sh left its mount"
ok "contrib/bench-ab.sh: each mode's row agrees with its reads (order, medians, ratios, wins), B's options on B only, unknown modes and bad environment words refused"
