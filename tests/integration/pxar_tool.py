#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A pxar writer of the tests' own, independent of lazyimg's C decoder.

Writes a directory tree as a pxar archive into a Proxmox Backup Server
datastore (format: shared/formats/pbs.md sections 4, 5 and 11):

  pxar_tool.py add DATASTORE TYPE/ID/TIME SRC_DIR [--v2] [--name root]
                   [--chunk-size BYTES] [--encrypt-key HEX64]

v1 writes NAME.pxar.didx (one stream) and, as the PBS client does in that
mode, the snapshot's file catalog catalog.pcat1.didx (unless --no-catalog);
--v2 writes NAME.mpxar.didx (metadata, files as PAYLOAD_REF) and
NAME.ppxar.didx (payload). The streams are cut into
chunks of varying size (up to --chunk-size), stored as uncompressed blobs in
.chunks/, and the snapshot's manifest (index.json.blob, uncompressed) gets
the archives with their index checksums and stream sizes; an existing
manifest written by this tool is extended. With --encrypt-key the chunks are
encrypted blobs named by keyed digests, the archives' crypt-mode is encrypt
and the manifest names the key's fingerprint and is signed (pbs.md section 5).

  pxar_tool.py stream SRC_DIR OUT [--v2 PAYLOAD_OUT]

writes the raw stream(s) to files (for unit tests and fuzz seeds).
The goodbye hash is SipHash-2-4, implemented here from its paper.
"""
import argparse
import hashlib
import json
import os
import stat
import struct
import sys
import zlib

FORMAT_VERSION = 0x730f6c75df16a40d
ENTRY = 0xd5956474e588acef
ENTRY_V1 = 0x11da850a1c1cceff
FCAPS = 0x2da9dd9db5f7fb67
FILENAME = 0x16701121063917b3
SYMLINK = 0x27f971e7dbf5dc5f
HARDLINK = 0x51269c8422bd7275
DEVICE = 0x9fc9e906586d5ce9
XATTR = 0x0dab0229b57dcd03
ACL_USER = 0x2ce8540a457d55b8
ACL_GROUP = 0x136e3eceb04c03ab
ACL_GROUP_OBJ = 0x10868031e9582876
ACL_DEFAULT = 0xbbbb13415a6896f5
ACL_DEFAULT_USER = 0xc89357b40532cd1f
ACL_DEFAULT_GROUP = 0xf90a8a5816038ffe
NO_MASK = (1 << 64) - 1
PAYLOAD = 0x28147a1b0b7c1a25
PAYLOAD_REF = 0x419d3d6bc4ba977e
GOODBYE = 0x2fec4fa642d5731d
GOODBYE_TAIL_MARKER = 0xef5eed5b753e1555
PAYLOAD_START_MARKER = 0x834c68c2194a4ed2
PAYLOAD_TAIL_MARKER = 0x6c72b78b984c81b5
K0, K1 = 0x83ac3f1cfbb450db, 0xaa4f1b6879369fbd

BLOB_MAGIC = bytes([66, 171, 56, 7, 190, 131, 112, 161])
ENCRYPTED_BLOB_MAGIC = bytes([123, 103, 133, 190, 34, 45, 76, 240])
PCAT_MAGIC = bytes([145, 253, 96, 249, 196, 103, 88, 213])
DIDX_MAGIC = bytes([28, 145, 78, 165, 25, 186, 179, 205])
M64 = (1 << 64) - 1


def siphash24(k0, k1, data):
    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & M64

    v0 = k0 ^ 0x736f6d6570736575
    v1 = k1 ^ 0x646f72616e646f6d
    v2 = k0 ^ 0x6c7967656e657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n):
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & M64
            v1 = rotl(v1, 13) ^ v0
            v0 = rotl(v0, 32)
            v2 = (v2 + v3) & M64
            v3 = rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & M64
            v3 = rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & M64
            v1 = rotl(v1, 17) ^ v2
            v2 = rotl(v2, 32)

    full = len(data) // 8 * 8
    for i in range(0, full, 8):
        m = struct.unpack_from("<Q", data, i)[0]
        v3 ^= m
        rounds(2)
        v0 ^= m
    last = (len(data) & 0xff) << 56
    for i, b in enumerate(data[full:]):
        last |= b << (8 * i)
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xff
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def name_hash(name):
    return siphash24(K0, K1, name)


assert name_hash(b"__PROXMOX_FORMAT_ENTRY_V2__") == ENTRY


def parse_acl(v):
    """The kernel's xattr form of a POSIX ACL: [(tag, perm, id)]."""
    assert struct.unpack_from("<I", v)[0] == 2
    return [struct.unpack_from("<HHI", v, o) for o in range(4, len(v), 8)]


def item(htype, content=b""):
    return struct.pack("<QQ", htype, 16 + len(content)) + content


def bst_order(sorted_items):
    """The sorted items laid out as an implicit binary search tree
    (children of i at 2i+1 and 2i+2): an in-order walk of the indices."""
    n = len(sorted_items)
    out = [None] * n
    it = iter(sorted_items)

    def walk(i):
        if i >= n:
            return
        walk(2 * i + 1)
        out[i] = next(it)
        walk(2 * i + 2)

    walk(0)
    return out


class Encoder:
    def __init__(self, v2, entry_v1=False):
        self.v2 = v2
        self.entry_v1 = entry_v1
        self.meta = bytearray()
        self.payload = bytearray()
        self.inodes = {}  # (dev, ino) -> FILENAME offset of the first link
        if v2:
            self.meta += item(FORMAT_VERSION, struct.pack("<Q", 2))
            self.payload += struct.pack("<QQ", PAYLOAD_START_MARKER, 16)

    def entry(self, path, st):
        mtime_ns = st.st_mtime_ns
        if self.entry_v1:  # the older layout: mtime as u64 nanoseconds
            self.meta += item(ENTRY_V1, struct.pack("<QQIIQ", st.st_mode, 0, st.st_uid,
                                                    st.st_gid, mtime_ns))
        else:
            self.meta += item(ENTRY, struct.pack("<QQIIqII", st.st_mode, 0, st.st_uid,
                                                 st.st_gid, mtime_ns // 10**9, mtime_ns % 10**9,
                                                 0))
        try:
            names = sorted(os.listxattr(path, follow_symlinks=False))
        except OSError:
            names = []
        acls, fcaps = {}, None
        for n in names:
            v = os.getxattr(path, n, follow_symlinks=False)
            if n.startswith("system.posix_acl_"):
                acls[n] = parse_acl(v)
                continue
            if n == "security.capability":
                fcaps = v
                continue
            self.meta += item(XATTR, n.encode() + b"\0" + v)
        # ACL items in pxar's order; owner and other come from the mode
        acc = acls.get("system.posix_acl_access", [])
        for tag, kind in ((2, ACL_USER), (8, ACL_GROUP)):
            for t, perm, i in acc:
                if t == tag:
                    self.meta += item(kind, struct.pack("<QQ", i, perm))
        if any(t == 0x10 for t, _, _ in acc):
            self.meta += item(ACL_GROUP_OBJ, struct.pack("<Q", [p for t, p, _ in acc if t == 4][0]))
        dfl = acls.get("system.posix_acl_default", [])
        if dfl:
            get = lambda tag, none=0: next((p for t, p, _ in dfl if t == tag), none)
            self.meta += item(ACL_DEFAULT, struct.pack("<QQQQ", get(1), get(4), get(0x20),
                                                       get(0x10, NO_MASK)))
            for tag, kind in ((2, ACL_DEFAULT_USER), (8, ACL_DEFAULT_GROUP)):
                for t, perm, i in dfl:
                    if t == tag:
                        self.meta += item(kind, struct.pack("<QQ", i, perm))
        if fcaps is not None:
            self.meta += item(FCAPS, fcaps)

    def node(self, path, st, root_base=None):
        """Encodes @path (its ENTRY first); returns nothing."""
        entry_pos = len(self.meta)
        self.entry(path, st)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            with open(path, "rb") as f:
                data = f.read()
            if self.v2:
                off = len(self.payload)
                self.payload += item(PAYLOAD, data)
                self.meta += item(PAYLOAD_REF, struct.pack("<QQ", off, len(data)))
            else:
                self.meta += item(PAYLOAD, data)
        elif stat.S_ISLNK(mode):
            self.meta += item(SYMLINK, os.fsencode(os.readlink(path)) + b"\0")
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.meta += item(DEVICE, struct.pack("<QQ", os.major(st.st_rdev), os.minor(st.st_rdev)))
        elif stat.S_ISDIR(mode):
            children = []
            for name in sorted(os.listdir(path)):
                bname = os.fsencode(name)
                cpath = os.path.join(path, name)
                cst = os.lstat(cpath)
                start = len(self.meta)
                self.meta += item(FILENAME, bname + b"\0")
                key = (cst.st_dev, cst.st_ino)
                if not stat.S_ISDIR(cst.st_mode) and cst.st_nlink > 1 and key in self.inodes:
                    target = self.inodes[key]
                    self.meta += item(HARDLINK, struct.pack("<Q", start - target[0]) +
                                      target[1] + b"\0")
                else:
                    if not stat.S_ISDIR(cst.st_mode) and cst.st_nlink > 1:
                        self.inodes[key] = (start, bname)
                    self.node(cpath, cst)
                children.append((name_hash(bname), start, len(self.meta) - start))
            gb_start = len(self.meta)
            table = b""
            for h, start, size in bst_order(sorted(children)):
                table += struct.pack("<QQQ", h, gb_start - start, size)
            base = entry_pos if root_base is None else root_base
            size = 16 + len(table) + 24
            table += struct.pack("<QQQ", GOODBYE_TAIL_MARKER, gb_start - base, size)
            self.meta += item(GOODBYE, table)

    def encode(self, root):
        self.node(root, os.lstat(root), root_base=0)
        if self.v2:
            self.payload += struct.pack("<QQ", PAYLOAD_TAIL_MARKER, 16)
        return bytes(self.meta), bytes(self.payload) if self.v2 else None


def enc_u64(v):
    out = bytearray()
    while v >= 128:
        out.append(128 | (v & 127))
        v >>= 7
    out.append(v)
    return bytes(out)


def enc_i64(v):
    if v >= 0:
        return enc_u64(v)
    d = -(v + 1) + 1
    out = bytearray()
    while d >= 128:
        out.append(128 | (d & 127))
        d >>= 7
    out += bytes([128 | d, 0])
    return bytes(out)


def catalog(archives):
    """A pcat1 file catalog of [(archive name, source dir)]: directory blocks
    children first, the root's offset last (pbs.md section 11)."""
    out = bytearray(PCAT_MAGIC)
    seen = set()

    def block(entries):
        start = len(out)
        table = bytearray(enc_u64(len(entries)))
        for kind, name, extra in entries:
            table += kind + enc_u64(len(name)) + name
            if kind == b"d":
                table += enc_u64(start - extra)
            elif kind == b"f":
                table += enc_u64(extra[0]) + enc_i64(extra[1])
        out.extend(enc_u64(len(table)) + table)
        return start

    def walk(path):
        entries = []
        for name in sorted(os.listdir(path)):
            p = os.path.join(path, name)
            st = os.lstat(p)
            b = os.fsencode(name)
            if stat.S_ISDIR(st.st_mode):
                entries.append((b"d", b, walk(p)))
            elif not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
                entries.append((b"h", b, None))
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    seen.add((st.st_dev, st.st_ino))
                entries.append((b"f", b, (st.st_size, int(st.st_mtime))))
            else:
                kind = {stat.S_IFLNK: b"l", stat.S_IFBLK: b"b", stat.S_IFCHR: b"c",
                        stat.S_IFIFO: b"p", stat.S_IFSOCK: b"s"}[stat.S_IFMT(st.st_mode)]
                entries.append((kind, b, None))
        return block(entries)

    tops = [(b"d", name.encode(), walk(src)) for name, src in archives]
    root = block(tops)
    out += struct.pack("<Q", root)
    return bytes(out)


def cut(stream, max_chunk):
    """Chunks of varying size (a quarter to all of @max_chunk): like a
    content-defined chunker's, but from the offset alone."""
    out, at, i = [], 0, 0
    while at < len(stream):
        size = max(1, max_chunk // 4 + (i * 7919 % (max_chunk - max_chunk // 4 + 1)))
        out.append(stream[at:at + size])
        at += size
        i += 1
    return out


class Key:
    """An encryption key (pbs.md §5), with Python's own primitives."""

    def __init__(self, hexkey):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self.key = bytes.fromhex(hexkey)
        self.aes = AESGCM(self.key)
        self.id_key = hashlib.pbkdf2_hmac("sha256", self.key, b"_id_key", 10, 32)
        fp = hashlib.sha256(hashlib.sha256(b"Proxmox Backup Encryption Key Fingerprint").digest()
                            + self.id_key).digest()
        self.fingerprint = ":".join("%02x" % b for b in fp)

    def digest(self, data):
        return hashlib.sha256(data + self.id_key).digest()

    def blob(self, data):
        """An encrypted, uncompressed blob: magic, CRC of the ciphertext, IV, tag."""
        iv = os.urandom(16)
        sealed = self.aes.encrypt(iv, data, None)
        ct, tag = sealed[:-16], sealed[-16:]
        return ENCRYPTED_BLOB_MAGIC + struct.pack("<I", zlib.crc32(ct)) + iv + tag + ct

    def sign(self, manifest):
        """HMAC-SHA256 under the id key of the canonical JSON of the protected part."""
        import hmac
        signed = {k: v for k, v in manifest.items() if k not in ("unprotected", "signature")}
        text = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hmac.new(self.id_key, text.encode(), hashlib.sha256).hexdigest()


def put_didx(ds, snapdir, fname, stream, max_chunk, key=None):
    entries, end = b"", 0
    for c in cut(stream, max_chunk):
        d = key.digest(c) if key else hashlib.sha256(c).digest()
        cdir = os.path.join(ds, ".chunks", d[:2].hex())
        os.makedirs(cdir, exist_ok=True)
        path = os.path.join(cdir, d.hex())
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(key.blob(c) if key else BLOB_MAGIC + struct.pack("<I", zlib.crc32(c)) + c)
        end += len(c)
        entries += struct.pack("<Q", end) + d
    csum = hashlib.sha256(entries).digest()
    head = bytearray(4096)
    head[0:8] = DIDX_MAGIC
    head[8:24] = hashlib.md5(fname.encode()).digest()
    head[24:32] = struct.pack("<q", 1733000000)
    head[32:64] = csum
    with open(os.path.join(snapdir, fname), "wb") as f:
        f.write(bytes(head) + entries)
    return {"filename": fname, "size": end, "csum": csum.hex(),
            "crypt-mode": "encrypt" if key else "none"}


def put_manifest(snapdir, group, files, key=None):
    btype, bid, btime = group
    path = os.path.join(snapdir, "index.json.blob")
    if os.path.exists(path):
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:8] != BLOB_MAGIC:
            sys.exit("pxar_tool: %s is not an uncompressed blob written by this tool" % path)
        m = json.loads(raw[12:])
        m["files"] = [x for x in m["files"] if x["filename"] not in {y["filename"] for y in files}]
        m["files"] += files
    else:
        import calendar
        import time
        t = calendar.timegm(time.strptime(btime, "%Y-%m-%dT%H:%M:%SZ"))
        m = {"backup-type": btype, "backup-id": bid, "backup-time": t, "files": files,
             "unprotected": {}, "signature": None}
    if key:
        m["unprotected"]["key-fingerprint"] = key.fingerprint
        m["signature"] = key.sign(m)
    body = json.dumps(m, indent=2).encode()
    with open(path, "wb") as f:
        f.write(BLOB_MAGIC + struct.pack("<I", zlib.crc32(body)) + body)


def cmd_add(a):
    meta, payload = Encoder(a.v2, a.entry_v1).encode(a.src)
    group = a.snapshot.split("/")
    if len(group) != 3:
        sys.exit("pxar_tool: SNAPSHOT must be TYPE/ID/TIME")
    snapdir = os.path.join(a.datastore, *group)
    os.makedirs(snapdir, exist_ok=True)
    key = Key(a.encrypt_key) if a.encrypt_key else None
    if a.v2:
        files = [put_didx(a.datastore, snapdir, a.name + ".mpxar.didx", meta, a.chunk_size, key),
                 put_didx(a.datastore, snapdir, a.name + ".ppxar.didx", payload, a.chunk_size,
                          key)]
    else:
        files = [put_didx(a.datastore, snapdir, a.name + ".pxar.didx", meta, a.chunk_size, key)]
        if not a.no_catalog:
            cat = catalog([(a.name + ".pxar.didx", a.src)])
            files.append(put_didx(a.datastore, snapdir, "catalog.pcat1.didx", cat, a.chunk_size,
                                  key))
    put_manifest(snapdir, group, files, key)
    print("%s: %s, metadata %d bytes%s" % (a.snapshot, "v2" if a.v2 else "v1", len(meta),
                                            ", payload %d bytes" % len(payload) if a.v2 else ""))


def cmd_stream(a):
    meta, payload = Encoder(a.v2 is not None).encode(a.src)
    with open(a.out, "wb") as f:
        f.write(meta)
    if a.v2:
        with open(a.v2, "wb") as f:
            f.write(payload)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add")
    a.add_argument("datastore")
    a.add_argument("snapshot")
    a.add_argument("src")
    a.add_argument("--v2", action="store_true")
    a.add_argument("--name", default="root")
    a.add_argument("--chunk-size", type=int, default=256 * 1024)
    a.add_argument("--no-catalog", action="store_true")
    a.add_argument("--entry-v1", action="store_true", help="the older ENTRY layout")
    a.add_argument("--encrypt-key", metavar="HEX64",
                   help="encrypt the chunks with this raw key and sign the manifest "
                        "(needs python3-cryptography)")
    a.set_defaults(fn=cmd_add)
    s = sub.add_parser("stream")
    s.add_argument("src")
    s.add_argument("out")
    s.add_argument("--v2", metavar="PAYLOAD_OUT")
    s.set_defaults(fn=cmd_stream)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
