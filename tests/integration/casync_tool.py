#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helper of the casync integration tests (stdlib only; zstd via the zstd CLI).

Layout and rules follow ../shared/formats/casync.md: a 48-byte INDEX header, a
16-byte TABLE header, n items {le64 end offset, 32-byte chunk id}, a 40-byte
tail; chunk files <store>/<4 hex>/<64 hex>.cacnk (compressed) or without the
suffix (raw).

  casync_tool.py map INDEX            expected data ranges of the mounted image:
                                      merged runs of non-null chunks, "START END"
  casync_tool.py seekmap FILE         the data ranges a SEEK_DATA/SEEK_HOLE walk
                                      of FILE reports, "START END"
  casync_tool.py chunks INDEX         one line per chunk: "START END ID null|data"
  casync_tool.py info INDEX           "flags=0x.. digest=.. min=.. avg=.. max=..
                                      chunks=N size=N null=N distinct=N"
  casync_tool.py corrupt INDEX STORE N
                                      damages the stored file of the Nth (from 0)
                                      non-null chunk that the index uses only
                                      once (so exactly one range is affected);
                                      prints that chunk's "START END"
  casync_tool.py malform INDEX OUT RULE
                                      writes INDEX broken in exactly one way
  casync_tool.py malform --list       the rule names, one a line
  casync_tool.py malform --describe   the rule names and what each breaks
  casync_tool.py rawstore [--index INDEX]... STORE OUT
                                      an uncompressed copy of STORE (chunk files
                                      <4 hex>/<64 hex>, no suffix); with --index
                                      only those indexes' chunks, each verified
                                      against its id
A "null" chunk is one whose id equals the digest of as many zero bytes as the
chunk is long (the index's digest: SHA-512/256 if the feature flag
0x2000000000000000 is set, else SHA-256); lazyimg serves it as a hole.
"""

import concurrent.futures
import gzip
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

CA_FORMAT_INDEX = 0x96824D9C7B129FF9
CA_FORMAT_TABLE = 0xE75B9E112F17417D
CA_FORMAT_TABLE_TAIL_MARKER = 0x4B4F050E5549ECD1
FLAG_SHA512_256 = 0x2000000000000000
# WITH_* archive bits (0x1 .. 0x100000000) and the four top bits (EXCLUDE_FILE,
# SHA512_256, EXCLUDE_SUBMOUNTS, EXCLUDE_NODUMP): any other bit is unknown
KNOWN_FLAGS = 0x1FFFFFFFF | 0xF000000000000000
U64_MAX = (1 << 64) - 1
HEAD = 64  # INDEX (48) + TABLE header (16)
ITEM = 40
TAIL = 40
LIMIT = 128 << 20  # CA_CHUNK_SIZE_LIMIT_MAX

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd\x37\x7a\x58\x5a\x00"
GZIP_MAGIC = b"\x1f\x8b"


class IndexError_(Exception):
    pass


def die(msg):
    print(f"casync_tool: {msg}", file=sys.stderr)
    sys.exit(1)


class Index:
    """A parsed, fully validated index."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.raw = f.read()
        b = self.raw
        size = len(b)
        if size < HEAD + TAIL or (size - HEAD - TAIL) % ITEM:
            raise IndexError_(f"{path}: file size {size} is not 104 + 40*n")
        hsize, htype, self.flags, self.min, self.avg, self.max = struct.unpack_from("<6Q", b, 0)
        tsize, ttype = struct.unpack_from("<2Q", b, 48)
        if hsize != 48 or htype != CA_FORMAT_INDEX:
            raise IndexError_(f"{path}: bad INDEX header")
        if tsize != U64_MAX or ttype != CA_FORMAT_TABLE:
            raise IndexError_(f"{path}: bad TABLE header")
        if self.flags & ~KNOWN_FLAGS:
            raise IndexError_(f"{path}: unknown feature flags 0x{self.flags & ~KNOWN_FLAGS:016x}")
        if not (1 <= self.min <= self.avg <= self.max <= LIMIT):
            raise IndexError_(f"{path}: bad chunk sizes {self.min}:{self.avg}:{self.max}")
        self.n = (size - HEAD - TAIL) // ITEM
        z1, z2, ioff, tsz, marker = struct.unpack_from("<5Q", b, HEAD + ITEM * self.n)
        if (z1, z2, ioff, marker) != (0, 0, 48, CA_FORMAT_TABLE_TAIL_MARKER) or tsz + 48 != size:
            raise IndexError_(f"{path}: bad tail")
        self.ends = []
        self.ids = []
        prev = 0
        for i in range(self.n):
            off = HEAD + ITEM * i
            (end,) = struct.unpack_from("<Q", b, off)
            if end <= prev or end - prev > self.max:
                raise IndexError_(f"{path}: bad end offset {end} of item {i} (previous {prev})")
            self.ends.append(end)
            self.ids.append(b[off + 8 : off + 40])
            prev = end
        self.size = prev
        self.digest_name = "sha512_256" if self.flags & FLAG_SHA512_256 else "sha256"
        self._null = None

    def digest(self, data):
        return hashlib.new(self.digest_name, data).digest()

    def chunks(self):
        """(start, end, id) of every chunk, in order."""
        start = 0
        for end, cid in zip(self.ends, self.ids):
            yield start, end, cid
            start = end

    def null_ids(self):
        """{length: digest of that many zeros} for every chunk length used.
        One pass over max zero bytes: the hash state is copied at each length."""
        if self._null is None:
            lengths = sorted({e - s for s, e, _ in self.chunks()})
            h = hashlib.new(self.digest_name)
            zeros = bytes(1 << 20)
            done = 0
            out = {}
            for ln in lengths:
                while done < ln:
                    step = min(len(zeros), ln - done)
                    h.update(zeros[:step])
                    done += step
                out[ln] = h.copy().digest()
            self._null = out
        return self._null

    def is_null(self, start, end, cid):
        return self.null_ids()[end - start] == cid


def chunk_paths(store, cid):
    h = cid.hex()
    base = os.path.join(store, h[:4], h)
    return base + ".cacnk", base


def decode(blob):
    """Decompressed bytes of a .cacnk file's contents (codec from the magic)."""
    if blob.startswith(ZSTD_MAGIC):
        if not shutil.which("zstd"):
            die("the zstd program is needed (apt-get install zstd)")
        p = subprocess.run(["zstd", "-q", "-d", "-c"], input=blob, capture_output=True)
        if p.returncode != 0:
            raise ValueError("zstd: " + p.stderr.decode(errors="replace").strip())
        return p.stdout
    if blob.startswith(XZ_MAGIC):
        return lzma.decompress(blob, format=lzma.FORMAT_XZ)
    if blob.startswith(GZIP_MAGIC):
        return gzip.decompress(blob)
    raise ValueError("unknown compression magic " + blob[:6].hex())


# --- map / seekmap / chunks / info -------------------------------------------------


def cmd_map(args):
    if len(args) != 1:
        die("usage: map INDEX")
    idx = load(args[0])
    runs = []
    for s, e, cid in idx.chunks():
        if idx.is_null(s, e, cid):
            continue
        if runs and runs[-1][1] == s:
            runs[-1][1] = e
        else:
            runs.append([s, e])
    for s, e in runs:
        print(s, e)


def cmd_seekmap(args):
    if len(args) != 1:
        die("usage: seekmap FILE")
    fd = os.open(args[0], os.O_RDONLY)
    size = os.fstat(fd).st_size
    off = 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == 6:  # ENXIO: no data after off
                break
            raise
        h = os.lseek(fd, d, os.SEEK_HOLE)
        if h <= d:
            die(f"{args[0]}: lseek(SEEK_HOLE, {d}) = {h}, not after the data start")
        print(d, h)
        off = h
    os.close(fd)


def cmd_chunks(args):
    if len(args) != 1:
        die("usage: chunks INDEX")
    idx = load(args[0])
    for s, e, cid in idx.chunks():
        print(s, e, cid.hex(), "null" if idx.is_null(s, e, cid) else "data")


def cmd_info(args):
    if len(args) != 1:
        die("usage: info INDEX")
    idx = load(args[0])
    null = sum(1 for c in idx.chunks() if idx.is_null(*c))
    print(
        f"flags=0x{idx.flags:016x} digest={idx.digest_name} min={idx.min} avg={idx.avg} max={idx.max} "
        f"chunks={idx.n} size={idx.size} null={null} distinct={len(set(idx.ids))}"
    )


def load(path):
    try:
        return Index(path)
    except IndexError_ as e:
        die(str(e))
    except OSError as e:
        die(f"{path}: {e.strerror}")


# --- corrupt -----------------------------------------------------------------------


def cmd_corrupt(args):
    if len(args) != 3:
        die("usage: corrupt INDEX STORE N")
    idx = load(args[0])
    store = args[1]
    n = int(args[2])
    uses = {}
    for cid in idx.ids:
        uses[cid] = uses.get(cid, 0) + 1
    cand = [c for c in idx.chunks() if not idx.is_null(*c) and uses[c[2]] == 1]
    if not 0 <= n < len(cand):
        die(f"{args[0]}: no non-null chunk number {n} used once (there are {len(cand)})")
    s, e, cid = cand[n]
    comp, raw = chunk_paths(store, cid)
    path = comp if os.path.exists(comp) else raw
    if not os.path.exists(path):
        die(f"chunk {cid.hex()} is not in {store}")
    with open(path, "rb") as f:
        blob = bytearray(f.read())
    compressed = path == comp
    # Flip a byte in the middle: inside the compressed payload (past the
    # frame header, before any trailing checksum), or anywhere in raw data.
    # Check that the result no longer decodes to the chunk; try other bytes if
    # it still does.
    size = len(blob)
    lo = min(16, size // 2) if compressed else 0
    hi = size - 8 if compressed and size > 32 else size
    tries = [size // 2] + list(range(lo, hi))
    for pos in tries:
        bad = bytearray(blob)
        bad[pos] ^= 0x55
        try:
            data = decode(bytes(bad)) if compressed else bytes(bad)
            if len(data) == e - s and idx.digest(data) == cid:
                continue  # still valid: try another byte
        except (ValueError, lzma.LZMAError, OSError, EOFError, zlib.error):
            pass
        break
    else:
        die(f"could not damage {path}")
    # a new file renamed over the old one: hard links (a cp -al'd store) keep
    # the good bytes; the mode (0444) is kept
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".corrupt.")
    with os.fdopen(fd, "wb") as f:
        f.write(bad)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.rename(tmp, path)
    print(s, e)


# --- malform -----------------------------------------------------------------------

RULES = [
    ("file-size", "file size is not 104 + 40*n (8 bytes appended)"),
    ("short", "file shorter than 104 bytes (cut to 96)"),
    ("index-size", "INDEX header size is 56, not 48"),
    ("index-type", "INDEX header type is not CA_FORMAT_INDEX"),
    ("table-size", "TABLE header size is the table's real size, not UINT64_MAX"),
    ("table-type", "TABLE header type is not CA_FORMAT_TABLE"),
    ("feature-bits", "an unknown feature flag (bit 40) is set"),
    ("min-zero", "chunk_size_min is 0"),
    ("min-gt-avg", "chunk_size_min > chunk_size_avg"),
    ("avg-gt-max", "chunk_size_avg > chunk_size_max"),
    ("max-limit", "chunk_size_max > 128 MiB"),
    ("offset-order", "an end offset equals the one before it (a zero-length chunk)"),
    ("chunk-gt-max", "the last chunk is longer than chunk_size_max"),
    ("zero-fill", "the tail's second zero-fill word is not 0"),
    ("index-offset", "tail index_offset is 56, not 48"),
    ("tail-size", "tail size + 48 != file size"),
    ("tail-marker", "the tail marker is wrong"),
    ("trailing", "a copy of the tail follows the tail (40 trailing bytes)"),
]


def put64(b, off, v):
    struct.pack_into("<Q", b, off, v & U64_MAX)


def malform(idx, rule):
    b = bytearray(idx.raw)
    n = idx.n
    tail = HEAD + ITEM * n
    if rule == "file-size":
        b += bytes(8)
    elif rule == "short":
        del b[96:]
    elif rule == "index-size":
        put64(b, 0, 56)
    elif rule == "index-type":
        put64(b, 8, CA_FORMAT_INDEX ^ 1)
    elif rule == "table-size":
        put64(b, 48, 16 + ITEM * n + TAIL)
    elif rule == "table-type":
        put64(b, 56, CA_FORMAT_TABLE ^ 1)
    elif rule == "feature-bits":
        put64(b, 16, idx.flags | (1 << 40))
    elif rule == "min-zero":
        put64(b, 24, 0)
    elif rule == "min-gt-avg":
        put64(b, 24, idx.avg + 1)
    elif rule == "avg-gt-max":
        put64(b, 32, idx.max + 1)
    elif rule == "max-limit":
        put64(b, 40, LIMIT + 1)
    elif rule == "offset-order":
        # end[k] = end[k-1]: chunk k becomes empty, chunk k+1 takes its bytes;
        # k is chosen so that chunk k+1 stays <= max (only this rule broken)
        ends = idx.ends
        for k in range(1, n - 1):
            if ends[k + 1] - ends[k - 1] <= idx.max:
                put64(b, HEAD + ITEM * k, ends[k - 1])
                break
        else:
            die("offset-order: the index has no two neighbouring chunks that fit in max together")
    elif rule == "chunk-gt-max":
        put64(b, HEAD + ITEM * (n - 1), idx.ends[-1] + idx.max)
    elif rule == "zero-fill":
        put64(b, tail + 8, 1)
    elif rule == "index-offset":
        put64(b, tail + 16, 56)
    elif rule == "tail-size":
        put64(b, tail + 24, 16 + ITEM * n + TAIL + ITEM)
    elif rule == "tail-marker":
        put64(b, tail + 32, CA_FORMAT_TABLE_TAIL_MARKER ^ (1 << 63))
    elif rule == "trailing":
        b += b[tail : tail + TAIL]
    else:
        die(f"unknown rule '{rule}' (see malform --list)")
    return bytes(b)


def cmd_malform(args):
    if args == ["--list"]:
        for name, _ in RULES:
            print(name)
        return
    if args == ["--describe"]:
        for name, what in RULES:
            print(f"{name}\t{what}")
        return
    if len(args) != 3:
        die("usage: malform INDEX OUT RULE | malform --list")
    idx = load(args[0])
    if idx.n < 3:
        die(f"{args[0]}: malform needs an index of at least 3 chunks")
    data = malform(idx, args[2])
    with open(args[1], "wb") as f:
        f.write(data)
    # the copy must really be invalid
    try:
        Index(args[1])
    except IndexError_:
        return
    die(f"malform {args[2]}: the result still parses as a valid index")


# --- rawstore ----------------------------------------------------------------------


def cmd_rawstore(args):
    indexes = []
    while args and args[0] == "--index":
        if len(args) < 2:
            die("rawstore: --index needs an argument")
        indexes.append(load(args[1]))
        args = args[2:]
    if len(args) != 2:
        die("usage: rawstore [--index INDEX]... STORE OUT")
    store, out = args
    jobs = {}  # id hex -> (expected length, digest name) or None
    if indexes:
        for idx in indexes:
            for s, e, cid in idx.chunks():
                jobs[cid.hex()] = (e - s, idx.digest_name)
    else:
        for d in sorted(os.listdir(store)):
            if len(d) != 4 or not os.path.isdir(os.path.join(store, d)):
                continue
            for f in os.listdir(os.path.join(store, d)):
                h = f[:-6] if f.endswith(".cacnk") else f
                if len(h) == 64 and not h.startswith("."):
                    jobs[h] = None
    os.makedirs(out, exist_ok=True)

    def one(h):
        comp = os.path.join(store, h[:4], h + ".cacnk")
        raw = os.path.join(store, h[:4], h)
        if os.path.exists(comp):
            with open(comp, "rb") as f:
                data = decode(f.read())
        elif os.path.exists(raw):
            with open(raw, "rb") as f:
                data = f.read()
        else:
            raise ValueError(f"chunk {h} is not in {store}")
        want = jobs[h]
        if want is not None:
            ln, dname = want
            if len(data) != ln or hashlib.new(dname, data).hexdigest() != h:
                raise ValueError(f"chunk {h} of {store} does not match its id")
        d = os.path.join(out, h[:4])
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, h)
        tmp = dst + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o444)
        os.rename(tmp, dst)
        return len(data)

    total = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
        try:
            for n in ex.map(one, sorted(jobs)):
                total += n
        except ValueError as e:
            die(str(e))
    print(f"{len(jobs)} chunks, {total} bytes")


COMMANDS = {
    "map": cmd_map,
    "seekmap": cmd_seekmap,
    "chunks": cmd_chunks,
    "info": cmd_info,
    "corrupt": cmd_corrupt,
    "malform": cmd_malform,
    "rawstore": cmd_rawstore,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
