#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""faultproxy: an HTTP/1.1 reverse proxy that injects faults (integration tests).

    faultproxy.py --upstream http://127.0.0.1:PORT [--port-file FILE] [--port N]
                  [--match REGEX] [--mode MODE] [--times N|all] [--seconds S]
                  [--ms MS] [--at start|body] [--rate BYTES_PER_S] [--log FILE]
                  [--keep-host]

Listens on 127.0.0.1 (a free port unless --port is given; the port is written
to --port-file once the socket listens) and forwards every request to the
upstream, keeping client connections alive. Python 3 standard library only.

Faults apply to requests whose path matches --match (default '/\\.chunks/'):

  none       pass everything through
  status500  answer 500 Internal Server Error (connection kept alive)
  reset      close the connection without an answer (an RST); with at=body,
             after the headers and half of the body
  stall      send the headers (full Content-Length), then hang for `seconds`
             (default 60) and close: beyond any sane client deadline
  truncate   announce the full Content-Length, send half the body, close
  flip       flip one byte in the middle of the body (length unchanged)
  delay      wait `ms` milliseconds before every answer, on every path
  redirect   answer 302 Found to file:///etc/passwd, a scheme no store follows
  busy429    answer 429 Too Many Requests with Retry-After: `seconds` (an integer)
  gzip       gzip the body and say so (Content-Encoding: gzip) whatever the
             request's Accept-Encoding, as some servers and CDNs do

`norange=1` drops every request's Range header: a server that answers each
GET with the whole object (python's http.server does).

`times` (default all): the first N requests of EACH distinct path get the
fault, later ones pass (so retries succeed); `all` faults every request.

`rate` (bytes per second, default 0 = unlimited) paces every answer's body,
all connections together (one token bucket: a link of that bandwidth), in
any mode, in pieces of at most 64 KiB sent every 1/8 s or more often; with
`delay` it makes a slow, far link (benchmarks).

Control (never forwarded):
  GET /__fault?mode=M[&times=N|all][&seconds=S][&ms=MS][&at=start|body][&match=RE][&rate=B][&norange=1]
        sets the fault; counts per path restart at 0 (reset=0 keeps them)
  GET /__stats   JSON {"mode", "times", "match", "total", "counts": {path: n},
                 "faulted": {path: n}, "status": {path: {code: n}},
                 "max_inflight": the most requests being answered at once}
  GET /__reset   clears the counts
"""

import argparse
import gzip
import http.client
import http.server
import json
import os
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
       "te", "trailers", "transfer-encoding", "upgrade", "content-length"}
MODES = ("none", "status500", "reset", "stall", "truncate", "flip", "delay", "redirect",
         "busy429", "gzip")


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.mode = "none"
        self.times = None  # None = all
        self.seconds = 60.0
        self.ms = 0
        self.at = "start"
        self.match = re.compile(r"/\.chunks/")
        self.rate = 0.0
        self.norange = False  # drop Range headers: a server that answers every GET whole
        self.paced_until = 0.0  # when the link is free again (monotonic)
        self.reset()

    def pace(self, nbytes):
        """Seconds to wait before sending @nbytes on the shared link."""
        with self.lock:
            if self.rate <= 0:
                return 0.0
            now = time.monotonic()
            start = max(now, self.paced_until)
            self.paced_until = start + nbytes / self.rate
            return self.paced_until - now

    def reset(self):
        self.counts = {}
        self.faulted = {}
        self.status = {}
        self.total = 0
        self.inflight = 0
        self.max_inflight = 0

    def begin(self):
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)

    def end(self):
        with self.lock:
            self.inflight = max(0, self.inflight - 1)

    def configure(self, q, keep_counts=False):
        """q: dict of str -> str. Raises ValueError on a bad setting."""
        # every setting but match goes back to its default unless given
        mode = q.get("mode", "none")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
        times = q.get("times")
        if times is None or times == "all":
            t = None
        else:
            t = int(times)
            if t < 0:
                raise ValueError("times must be >= 0 or 'all'")
        seconds = float(q.get("seconds", 60))
        ms = int(q.get("ms", 0))
        at = q.get("at", "start")
        if at not in ("start", "body"):
            raise ValueError("at must be start or body")
        match = re.compile(q["match"]) if "match" in q else self.match
        rate = float(q.get("rate", 0))
        norange = q.get("norange", "0") == "1"
        if rate < 0:
            raise ValueError("rate must be >= 0")
        with self.lock:
            self.rate = rate
            self.norange = norange
            self.mode, self.times, self.seconds, self.ms = mode, t, seconds, ms
            self.at, self.match = at, match
            if not keep_counts:
                self.reset()

    def account(self, path):
        """Counts a request; returns the fault to apply to it (or None)."""
        with self.lock:
            self.total += 1
            n = self.counts.get(path, 0) + 1
            self.counts[path] = n
            mode = self.mode
            if mode == "delay":
                return ("delay", self.ms / 1000.0)
            if mode == "none" or not self.match.search(path):
                return None
            if self.times is not None and n > self.times:
                return None
            self.faulted[path] = self.faulted.get(path, 0) + 1
            return (mode, self.seconds, self.at)

    def record_status(self, path, code):
        with self.lock:
            per = self.status.setdefault(path, {})
            per[str(code)] = per.get(str(code), 0) + 1

    def snapshot(self):
        with self.lock:
            return {
                "mode": self.mode,
                "times": "all" if self.times is None else self.times,
                "match": self.match.pattern,
                "seconds": self.seconds,
                "ms": self.ms,
                "at": self.at,
                "rate": self.rate,
                "total": self.total,
                "counts": dict(self.counts),
                "faulted": dict(self.faulted),
                "status": {p: dict(s) for p, s in self.status.items()},
                "max_inflight": self.max_inflight,
            }


class Upstream:
    """Per-thread keep-alive connections to the upstream."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            raise SystemExit(f"faultproxy: upstream must be http(s)://, not {url!r}")
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base = u.path.rstrip("/")
        self.local = threading.local()

    def _conn(self, fresh=False):
        c = getattr(self.local, "conn", None)
        if c is None or fresh:
            if c is not None:
                c.close()
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            c = cls(self.host, self.port, timeout=120)
            self.local.conn = c
        return c

    def request(self, method, path, headers, body):
        """Returns (status, reason, headers list, body bytes)."""
        last = None
        for attempt in range(2):  # a kept-alive upstream connection may have closed
            c = self._conn(fresh=attempt > 0)
            try:
                c.request(method, self.base + path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                hdrs = r.getheaders()
                if r.will_close:
                    c.close()
                    self.local.conn = None
                return r.status, r.reason, hdrs, data
            except (http.client.HTTPException, OSError) as e:
                last = e
                c.close()
                self.local.conn = None
        raise last


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # a client that goes away must never take the proxy down or spam
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, BrokenPipeError, TimeoutError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy/1"
    state: State = None
    upstream: Upstream = None
    logf = None
    keep_host = False

    def log_message(self, fmt, *args):
        if self.logf:
            try:
                self.logf.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))
                self.logf.flush()
            except (OSError, ValueError):
                pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, BrokenPipeError, TimeoutError, socket.timeout):
            self.close_connection = True

    # --- control -------------------------------------------------------------
    def _json(self, code, obj):
        data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _control(self, path, query):
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        if path == "/__fault":
            try:
                self.state.configure(q, keep_counts=q.get("reset") == "0")
            except (ValueError, re.error) as e:
                self._json(400, {"error": str(e)})
                return
            self.log_message("fault set: %s", q)
            self._json(200, self.state.snapshot())
        elif path == "/__stats":
            self._json(200, self.state.snapshot())
        elif path == "/__reset":
            with self.state.lock:
                self.state.reset()
            self._json(200, self.state.snapshot())
        else:
            self._json(404, {"error": "unknown control path"})

    # --- proxying ------------------------------------------------------------
    def _abort(self, rst=True):
        """Closes the client connection at once (an RST when rst)."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        if rst:
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        else:
            try:
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _send_head(self, status, reason, headers, length):
        self.send_response(status, reason)
        for k, v in headers:
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _proxy(self):
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        if path.startswith("/__"):
            self._control(path, split.query)
            return
        self.state.begin()
        try:
            self._answer(path)
        finally:
            self.state.end()

    def _answer(self, path):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        fault = self.state.account(path)
        if fault and fault[0] == "delay":
            time.sleep(fault[1])
            fault = None
        if fault and fault[0] == "reset" and fault[2] == "start":
            self.state.record_status(path, "reset")
            self._abort(rst=True)
            return
        if fault and fault[0] == "busy429":
            self.state.record_status(path, 429)
            self.send_response(429)
            self.send_header("Retry-After", str(int(fault[1])))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault and fault[0] == "redirect":
            self.state.record_status(path, 302)
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault and fault[0] == "status500":
            self.state.record_status(path, 500)
            data = b"faultproxy: injected 500\n"
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"
                   and not (self.state.norange and k.lower() == "range")}
        if not self.keep_host or "Host" not in self.headers:
            headers["Host"] = "%s:%d" % (self.upstream.host, self.upstream.port)
        else:
            headers["Host"] = self.headers["Host"]
        try:
            status, reason, rh, data = self.upstream.request(self.command, self.path, headers, body)
        except (http.client.HTTPException, OSError) as e:
            self.state.record_status(path, 502)
            msg = f"faultproxy: upstream failed: {e}\n".encode()
            self.send_response(502)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        if self.command == "HEAD":
            self.state.record_status(path, status)
            length = next((v for k, v in rh if k.lower() == "content-length"), "0")
            self._send_head(status, reason, rh, int(length))
            return
        if fault is None or status >= 300 or not data:
            self.state.record_status(path, status)
            self._send_head(status, reason, rh, len(data))
            self._send_paced(data)
            return
        mode, seconds, at = fault
        self.state.record_status(path, mode)
        if mode == "flip":
            b = bytearray(data)
            b[len(b) // 2] ^= 0x5A
            self._send_head(status, reason, rh, len(b))
            self.wfile.write(bytes(b))
        elif mode == "gzip":
            z = gzip.compress(data)
            rh = [(k, v) for k, v in rh if k.lower() != "content-encoding"]
            rh.append(("Content-Encoding", "gzip"))
            self._send_head(status, reason, rh, len(z))
            self._send_paced(z)
        elif mode == "truncate":
            self._send_head(status, reason, rh, len(data))
            self.wfile.write(data[: len(data) // 2])
            self._abort(rst=False)
        elif mode == "reset":  # at=body
            self._send_head(status, reason, rh, len(data))
            self.wfile.write(data[: len(data) // 2])
            self._abort(rst=True)
        elif mode == "stall":
            self._send_head(status, reason, rh, len(data))
            self.wfile.flush()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            self._abort(rst=False)

    def _send_paced(self, data):
        """Writes @data at the link's rate, in pieces of at most 64 KiB and
        of an eighth of a second (a slow link still moves every 1/8 s), or
        at once."""
        rate = self.state.rate
        step = 65536 if rate <= 0 else max(1024, min(65536, int(rate / 8)))
        for off in range(0, len(data), step):
            wait = self.state.pace(min(step, len(data) - off))
            if wait > 0:
                time.sleep(wait)
            self.wfile.write(data[off:off + step])

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _proxy


def main():
    ap = argparse.ArgumentParser(description="HTTP/1.1 reverse proxy with fault injection")
    ap.add_argument("--upstream", required=True, help="http://HOST:PORT[/BASE]")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--match", default=r"/\.chunks/", help="regex of the paths that get faults")
    ap.add_argument("--mode", default="none", choices=MODES)
    ap.add_argument("--times", default="all", help="N or all")
    ap.add_argument("--seconds", default="60", help="stall duration")
    ap.add_argument("--ms", default="0", help="delay per answer")
    ap.add_argument("--at", default="start", choices=("start", "body"), help="where reset cuts")
    ap.add_argument("--rate", default="0", help="bytes per second of the link (0: unlimited)")
    ap.add_argument("--log", help="append a line per request to this file")
    ap.add_argument("--keep-host", action="store_true",
                    help="forward the client's Host header (for signed requests: S3 SigV4)")
    a = ap.parse_args()

    state = State()
    try:
        state.configure({"mode": a.mode, "times": a.times, "seconds": a.seconds, "ms": a.ms,
                         "at": a.at, "match": a.match, "rate": a.rate})
    except (ValueError, re.error) as e:
        ap.error(str(e))
    Handler.state = state
    Handler.upstream = Upstream(a.upstream)
    Handler.keep_host = a.keep_host
    if a.log:
        Handler.logf = open(a.log, "a", buffering=1)

    srv = Server(("127.0.0.1", a.port), Handler)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.rename(tmp, a.port_file)
    else:
        print(port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
