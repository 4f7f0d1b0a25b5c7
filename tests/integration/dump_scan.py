#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""dump_scan.py PID NEEDLE...: where the bytes of each NEEDLE (hex:..., or
text) are in the memory of process PID, as a core dump of it would hold them.

A mapping whose VmFlags in /proc/PID/smaps carry "dd" (MADV_DONTDUMP) is
left out of core dumps by the kernel (and by gdb's gcore); every other
mapping with pages in memory or swap is counted as dumped, readable or not
(a core holds PROT_NONE pages too; pages never touched are not in it).
Prints one line per needle, "NEEDLE dumped=N excluded=M locked=K" (K: the
kB locked in memory, smaps "Locked", of the excluded mappings that hold
it); exit status 1 when some needle is in a dumped mapping, 0 otherwise.
Run as root (or as the process's user with ptrace access).
"""
import re
import sys


def mappings(pid):
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ", line)
            if m:
                if cur:
                    yield cur
                cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16),
                       "perms": m.group(3), "name": line.split()[-1] if len(line.split()) > 5 else "",
                       "dd": False, "kb": 0, "locked": 0}
            elif line.startswith("VmFlags:"):
                cur["dd"] = " dd" in " " + line.split(":", 1)[1]
            elif line.startswith(("Rss:", "Swap:")):
                cur["kb"] += int(line.split()[1])
            elif line.startswith("Locked:"):
                cur["locked"] = int(line.split()[1])
    if cur:
        yield cur


def main():
    pid = int(sys.argv[1])
    needles = []
    for a in sys.argv[2:]:
        needles.append(bytes.fromhex(a[4:]) if a.startswith("hex:") else a.encode())
    found = {n: [0, 0, 0] for n in needles}
    longest = max(len(n) for n in needles)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for mp in mappings(pid):
            if mp["kb"] == 0 or mp["name"] in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            # excluded mappings are looked into only where small (a key's
            # page): AddressSanitizer's shadow is terabytes, excluded
            if mp["dd"] and mp["end"] - mp["start"] > (64 << 20):
                continue
            prev, pos, step = b"", mp["start"], 1 << 20
            while pos < mp["end"]:
                n = min(step, mp["end"] - pos)
                try:
                    mem.seek(pos)
                    cur = mem.read(n)
                except OSError:
                    cur = b""  # a hole the kernel cannot read: not dumped either
                for nd in needles:
                    # with the end of the step before: a needle across the
                    # boundary (never one wholly in it: that is shorter)
                    tail = prev[len(prev) - (len(nd) - 1):] if len(nd) > 1 else b""
                    c = (tail + cur).count(nd)
                    found[nd][1 if mp["dd"] else 0] += c
                    if c and mp["dd"]:
                        found[nd][2] += mp["locked"]
                prev = (prev + cur)[-(longest - 1):] if longest > 1 else b""
                pos += n
    bad = False
    for a, nd in zip(sys.argv[2:], needles):
        d, x, lk = found[nd]
        print(f"{a} dumped={d} excluded={x} locked={lk}")
        bad |= d > 0
    sys.exit(1 if bad else 0)


main()
