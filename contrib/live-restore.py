#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live restore: moves a running QEMU guest's disk off a lazyimg mount.

  contrib/live-restore.py --qmp SOCKET --device ID --target FILE [--format raw|qcow2]

The guest was started from the mount (an image, or an overlay made by
`lazyimg overlay`) with a QMP socket (-qmp unix:SOCKET,server=on,wait=off)
and a drive ID (-drive id=ID,... or a -blockdev node name). This copies the
whole disk as the guest sees it (backing chain included) to FILE with
QEMU's drive-mirror (sync=full), waits until the copy is in step, and
switches the guest over (block-job-complete): from then on the guest reads
and writes FILE only, and the mount can go (lazyimg umount). Guest writes
made during the copy are mirrored too. Exit status 0 once switched; 1 with
the reason otherwise. Only the Python standard library is used.
"""
import argparse
import json
import socket
import sys
import time


class QMP:
    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        greeting = self.read()
        if "QMP" not in greeting:
            raise RuntimeError("not a QMP socket: %r" % greeting)
        self.cmd("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("QEMU closed the QMP socket")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        self.sock.sendall(json.dumps({"execute": name, "arguments": args or {}}).encode() + b"\n")
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)
            elif "error" in msg:
                raise RuntimeError("%s: %s" % (name, msg["error"].get("desc", msg["error"])))
            elif "return" in msg:
                return msg["return"]

    def wait_event(self, names, device, deadline):
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] in names and ev.get("data", {}).get("device") == device:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for %s" % "/".join(names))
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--qmp", required=True, help="QEMU's QMP unix socket")
    p.add_argument("--device", required=True, help="the drive's id (or node name)")
    p.add_argument("--target", required=True, help="the local file to copy the disk to")
    p.add_argument("--format", default="raw", choices=("raw", "qcow2"))
    p.add_argument("--timeout", type=float, default=3600, help="seconds for the whole copy")
    p.add_argument("--job", default="lazyimg-live-restore")
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    try:
        q = QMP(a.qmp, 30)
        q.cmd("drive-mirror", {"device": a.device, "job-id": a.job, "target": a.target,
                               "format": a.format, "sync": "full", "mode": "absolute-paths"})
        q.sock.settimeout(max(1.0, a.timeout))
        ev = q.wait_event(("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_ERROR"), a.job,
                          deadline)
        if ev["event"] != "BLOCK_JOB_READY":
            raise RuntimeError("the copy failed: %s" % ev.get("data"))
        q.cmd("block-job-complete", {"device": a.job})
        ev = q.wait_event(("BLOCK_JOB_COMPLETED", "BLOCK_JOB_ERROR"), a.job, deadline)
        if ev["event"] != "BLOCK_JOB_COMPLETED" or ev["data"].get("error"):
            raise RuntimeError("the switch failed: %s" % ev.get("data"))
    except (OSError, RuntimeError, ValueError) as e:
        print("live-restore: %s" % e, file=sys.stderr)
        return 1
    print("live-restore: %s now runs on %s (%d bytes copied)" %
          (a.device, a.target, ev["data"].get("offset", 0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
