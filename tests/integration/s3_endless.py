#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A hostile S3 endpoint for the listing-bounds test: every ListObjectsV2
request is answered with a page of KEYS keys, IsTruncated=true and a fresh
NextContinuationToken, forever. Any other request gets 404.

  s3_endless.py PORTFILE [KEYS]   listens on 127.0.0.1 (a free port, written
                                  to PORTFILE), counts pages in PORTFILE.pages
"""
import http.server
import os
import sys
import threading

PORTFILE = sys.argv[1]
KEYS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
lock = threading.Lock()
pages = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        global pages
        if "list-type=2" not in self.path:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with lock:
            pages += 1
            n = pages
            with open(PORTFILE + ".pages", "w") as f:
                f.write(f"{n}\n")
        prefix = ""
        for part in self.path.split("?", 1)[-1].split("&"):
            if part.startswith("prefix="):
                prefix = part[len("prefix="):].replace("%2F", "/")
        keys = "".join(
            f"<Contents><Key>{prefix}obj-{n:07d}-{i:04d}</Key><Size>1</Size></Contents>"
            for i in range(KEYS))
        body = ('<?xml version="1.0" encoding="UTF-8"?>'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>b</Name><Prefix>{prefix}</Prefix><KeyCount>{KEYS}</KeyCount>"
                f"<IsTruncated>true</IsTruncated>"
                f"<NextContinuationToken>token-{n}</NextContinuationToken>"
                f"{keys}</ListBucketResult>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gives up (timeout, bound reached) resets its connection


srv = Server(("127.0.0.1", 0), Handler)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(f"{srv.server_address[1]}\n")
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
