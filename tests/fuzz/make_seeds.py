#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the seed inputs of the fuzz targets (corpus/<target>/seed-*): one
per variant of each format, deterministic. Needs the zstd command line tool.
Usage: tests/fuzz/make_seeds.py [CORPUS_DIR]"""
import gzip
import hashlib
import lzma
import os
import struct
import subprocess
import sys
import zlib

CORPUS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def zstd(data, *opts):
    return subprocess.run(["zstd", "-q", "-c", *opts], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def text(n, salt=b""):
    """n bytes of compressible, non-zero data"""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b"line %d %s lazyimg\n" % (i, salt)
        i += 1
    return bytes(out[:n])


def sha(data):
    return hashlib.sha256(data).digest()


def sha512_256(data):
    return hashlib.new("sha512_256", data).digest()


# ---- PBS fixed index (formats/pbs.md section 3)
FIDX_MAGIC = bytes([47, 127, 65, 237, 145, 253, 15, 205])


def fidx(size, cs, digests):
    body = b"".join(digests)
    hdr = FIDX_MAGIC + bytes(range(16)) + struct.pack("<q", 1700000000) + sha(body)
    hdr += struct.pack("<QQ", size, cs)
    return hdr.ljust(4096, b"\0") + body


KiB, MiB = 1024, 1024 * 1024
write("fidx", "empty", fidx(0, 4 * MiB, []))
for cs in (64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB, 4 * MiB):
    zero = sha(bytes(cs))
    # exact multiple: data, hole, hole, data
    write("fidx", "exact-%dk" % (cs // KiB),
          fidx(4 * cs, cs, [sha(b"a"), zero, zero, sha(b"b")]))
    # short last chunk that is all zeros (a hole of its own length)
    last = cs // 3
    write("fidx", "short-zero-last-%dk" % (cs // KiB),
          fidx(2 * cs + last, cs, [zero, sha(b"c"), sha(bytes(last))]))
# one chunk of 1 byte; every chunk a hole; every chunk data
write("fidx", "one-byte", fidx(1, 64 * KiB, [sha(b"\0")]))
write("fidx", "all-holes", fidx(8 * MiB, 4 * MiB, [sha(bytes(4 * MiB))] * 2))
write("fidx", "all-data", fidx(3 * 64 * KiB - 5, 64 * KiB, [sha(b"%d" % i) for i in range(3)]))

# ---- PBS blobs (formats/pbs.md section 5)
PLAIN = bytes([66, 171, 56, 7, 190, 131, 112, 161])
ZSTD = bytes([49, 185, 88, 66, 111, 182, 163, 127])
ENC = bytes([123, 103, 133, 190, 34, 45, 76, 240])
ENC_ZSTD = bytes([230, 89, 27, 191, 11, 191, 216, 11])


def blob(magic, payload, enc=False):
    iv_tag = bytes(range(32)) if enc else b""
    return magic + struct.pack("<I", zlib.crc32(payload)) + iv_tag + payload


write("blob", "plain-empty", blob(PLAIN, b""))
write("blob", "plain-4k", blob(PLAIN, text(4096)))
write("blob", "zstd-4k", blob(ZSTD, zstd(text(4096))))
# a frame without content size (PBS 3.x stream encoder)
write("blob", "zstd-no-size", blob(ZSTD, zstd(text(5000), "--no-content-size")))
write("blob", "zstd-empty", blob(ZSTD, zstd(b"")))
write("blob", "zstd-two-frames", blob(ZSTD, zstd(text(100)) + zstd(text(100, b"x"))))
write("blob", "zstd-checksum", blob(ZSTD, zstd(text(3000), "--check")))
write("blob", "encrypted", blob(ENC, text(64), enc=True))
write("blob", "encrypted-zstd", blob(ENC_ZSTD, zstd(text(64)), enc=True))

# ---- casync chunk objects: sel (u32: len-1 | raw<<30 | sha512_256<<31), id, object
def cacnk(name, plain, codec, algo):
    h = sha512_256 if algo == "sha512" else sha
    sel = (len(plain) - 1) | (1 << 31 if algo == "sha512" else 0) | (1 << 30 if codec == "raw" else 0)
    obj = {"raw": lambda d: d,
           "zstd": zstd,
           "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
           "gzip": lambda d: gzip.compress(d, mtime=0)}[codec](plain)
    write("cacnk", name, struct.pack("<I", sel) + h(plain) + obj)


for codec in ("zstd", "xz", "gzip", "raw"):
    for algo in ("sha256", "sha512"):
        cacnk("%s-%s" % (codec, algo), text(777, codec.encode()), codec, algo)
cacnk("zstd-zeros-64k", bytes(64 * KiB), "zstd", "sha512")
cacnk("one-byte-gzip", b"\x01", "gzip", "sha256")
# zstd: several frames make one chunk
write("cacnk", "zstd-two-frames",
      struct.pack("<I", 200 - 1) + sha(text(100) + text(100, b"y")) +
      zstd(text(100)) + zstd(text(100, b"y")))

# ---- casync index (formats/casync.md section 2)
INDEX, TABLE, TAIL = 0x96824d9c7b129ff9, 0xe75b9e112f17417d, 0x4b4f050e5549ecd1
SHA512_256 = 0x2000000000000000


def caibx(flags, cmin, cavg, cmax, chunks):
    out = struct.pack("<QQQQQQ", 48, INDEX, flags, cmin, cavg, cmax)
    out += struct.pack("<QQ", 0xffffffffffffffff, TABLE)
    end = 0
    for length, cid in chunks:
        end += length
        out += struct.pack("<Q", end) + cid
    n = len(chunks)
    out += struct.pack("<QQQQQ", 0, 0, 48, 16 + 40 * n + 40, TAIL)
    return out


zero_max = sha512_256(bytes(64 * KiB))
write("caibx", "sha512-null-chunks",
      caibx(SHA512_256, 16 * KiB, 32 * KiB, 64 * KiB,
            [(64 * KiB, zero_max), (20000, sha512_256(b"a")), (64 * KiB, zero_max), (1, sha512_256(b"b"))]))
write("caibx", "sha256-fixed", caibx(0, 4096, 4096, 4096, [(4096, sha(b"%d" % i)) for i in range(4)]))
write("caibx", "sha256-null-chunks",
      caibx(0, 1, 2 * KiB, 8 * KiB, [(8 * KiB, sha(bytes(8 * KiB))), (3, sha(b"x"))]))
write("caibx", "one-chunk-flags", caibx(SHA512_256 | 0x4000000000000000, 1, 1, 1, [(1, sha512_256(b"z"))]))

# ---- manifests (formats/pbs.md: index.json)
CSUM = "dba49f16a9ea58d5cd1dfbdc7ab2b74bc4e4ccaf57684a81277e9740c8aac024"
write("manifest", "crypt-modes", (
    '{"backup-type":"ct","backup-id":"web-1.x","backup-time":1700000000,"files":['
    '{"filename":"root.pxar.didx","crypt-mode":"encrypt","size":0,"csum":"%s"},'
    '{"filename":"catalog.pcat1.didx","crypt-mode":"sign-only","size":18446744073709551615,"csum":"%s"},'
    '{"filename":"fw.conf.blob","size":1,"csum":"%s"}],'
    '"unprotected":{"key-fingerprint":"aa:bb","verify_state":{"state":"ok"}},'
    '"signature":"00ff"}\n' % (CSUM, CSUM, CSUM)).encode())
write("manifest", "host-no-files",
      b'{"backup-type":"host","backup-id":"h","backup-time":0,"files":[]}\0\0')

# ---- LVM2 PVs: the real PVs of tests/data/lvm, cut to the label, the
# metadata header and the text (moved next to the header); "#NEXTDEV"
# separates devices
def lvm_crc(data):
    return zlib.crc32(data, 0xf597a6cf ^ 0xffffffff) ^ 0xffffffff


def lvm_pv(name, msize=None, roff=512):
    path = os.path.join(os.path.dirname(__file__), "..", "data", "lvm", name)
    img = bytearray(subprocess.run(["zstd", "-q", "-d", "-c", path], stdout=subprocess.PIPE,
                                   check=True).stdout)
    mda = 4096
    h = img[mda:mda + 512]
    toff, tlen = struct.unpack_from("<QQ", h, 40)
    txt = bytes(img[mda + toff:mda + toff + tlen])
    msize = msize or struct.unpack_from("<Q", h, 32)[0]
    area = bytearray(msize)
    area[:512] = h
    first = min(tlen, msize - roff)
    area[roff:roff + first] = txt[:first]
    area[512:512 + tlen - first] = txt[first:]
    struct.pack_into("<QQQI", area, 32, msize, roff, tlen, lvm_crc(txt))
    struct.pack_into("<I", area, 0, lvm_crc(bytes(area[4:512])))
    out = bytearray(img[:mda]) + area
    return bytes(out).rstrip(b"\0")


write("lvm", "pv1", lvm_pv("vgt-pv1.img.zst"))
write("lvm", "pv2", lvm_pv("vgt-pv2.img.zst"))
write("lvm", "pv1-pv2", lvm_pv("vgt-pv1.img.zst") + b"#NEXTDEV" + lvm_pv("vgt-pv2.img.zst"))
# the text wrapping round a small circular buffer
write("lvm", "pv1-wrapped", lvm_pv("vgt-pv1.img.zst", msize=8192, roff=8192 - 1024))

# ---- remote listings
write("listing", "nginx-json-files", (
    b'[{"name":"index.json.blob","type":"file","mtime":"Mon, 01 Jan 2024 00:00:00 GMT","size":366},'
    b'{"name":"drive-scsi0.img.fidx","type":"file","size":4864},'
    b'{"name":"2024-01-01T00:00:00Z","type":"directory","mtime":"x"},{"name":"a\\u0020b","type":"other"}]'))
write("listing", "s3-list-last-page", (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name><Prefix>p/</Prefix>'
    b'<KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>'
    b'<Contents><Key>p/a&amp;b</Key><Size>3</Size></Contents><Contents><Key>p/.chunks/x</Key></Contents>'
    b'<Contents><Key>p/index.json.blob</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>'
    b'<ETag>"x"</ETag><Size>366</Size><StorageClass>STANDARD</StorageClass></Contents>'
    b'<CommonPrefixes><Prefix>p/ns/</Prefix></CommonPrefixes></ListBucketResult>'))
write("listing", "s3-error-nosuchbucket",
      b'<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>'
      b'<BucketName>b</BucketName><RequestId>1</RequestId></Error>')
write("listing", "lighttpd.html", (
    b'<!DOCTYPE html><html><head><title>Index of /</title></head><body><table>'
    b"<tr><td class='n'><a href='../'>..</a>/</td></tr>"
    b"<tr><td class='n'><a href='vm/'>vm</a>/</td></tr>"
    b"<tr><td class='n'><a href='http://x/y'>abs</a></td></tr>"
    b"<tr><td class='n'><a href='q.conf.blob?x=1#f'>q</a></td></tr></table></body></html>"))
