#!/usr/bin/env python3
"""A delaying TCP proxy on loopback: a WAN link in front of the stand-in.

Bench-only (bench/wan_bench.lua starts it). Python 3 standard library.

    python3 bench/wan_proxy.py --target HOST:PORT [--port 0] [--delay-ms 30]
        [--no-handshake] [--sse-hold-ms H --sse-gap-ms G] [--log FILE]
        [--parent-pid PID]

Prints one line ``PORT <port> PID <pid>`` on stdout once listening, then
forwards every accepted connection to --target.

What it models
--------------
Every byte read from one side reaches the other side --delay-ms later
(one-way delay; the round trip is twice that), in order, in both
directions, and an end of stream (FIN) is passed on after the bytes
before it. Bandwidth is not limited.

A client's connect() to a loopback port completes at once, so without
help a new connection would cost nothing. By default the proxy also
models the TCP handshake: bytes the client sends on a new connection
count as sent no earlier than one round trip after the accept (when the
SYN-ACK would have come back), so a request on a fresh connection takes
two round trips, as on a real link. TLS handshakes are bytes and pay
their own round trips. --no-handshake turns this off.

The streaming probe (--sse-hold-ms, --sse-gap-ms): in responses whose
head says ``text/event-stream`` with chunked transfer encoding, the first
HTTP chunk (the stand-in writes one event per chunk) is held back H ms
after the head, and the rest G ms after the first. With --log FILE the
proxy appends one line per streamed response,
``FIRST_EVENT <unix time>`` (time.time(), the same clock as luasocket's
gettime), taken just before the first byte of the first event is written
to the client's socket. Nothing about qwenvl is instrumented.
"""

import argparse
import collections
import os
import signal
import socket
import sys
import threading
import time

CLOCK = time.monotonic


class Pipe:
    """One direction of one connection: a reader thread queues what it
    reads with the time it may be delivered, a writer thread delivers it."""

    def __init__(self, conn, src, dst, delay, not_before=0.0, pacer=None):
        self.conn, self.src, self.dst = conn, src, dst
        self.delay, self.not_before = delay, not_before
        self.pacer = pacer
        self.q = collections.deque()
        self.cv = threading.Condition()

    def start(self):
        threading.Thread(target=self.read_loop, daemon=True).start()
        threading.Thread(target=self.write_loop, daemon=True).start()

    def put(self, due, data, tag=None):
        with self.cv:
            self.q.append((due, data, tag))
            self.cv.notify()

    def read_loop(self):
        while True:
            try:
                data = self.src.recv(65536)
            except OSError:
                data = b""
            now = CLOCK()
            due = max(now, self.not_before) + self.delay
            if not data:
                self.put(due, None)
                return
            if self.pacer is None:
                self.put(due, data)
            else:
                for when, piece, tag in self.pacer.feed(due, data):
                    self.put(when, piece, tag)

    def write_loop(self):
        while True:
            with self.cv:
                while not self.q:
                    self.cv.wait()
                due, data, tag = self.q.popleft()
            wait = due - CLOCK()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                try:
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self.conn.half_closed()
                return
            if tag is not None:
                self.conn.proxy.log("FIRST_EVENT %.6f" % time.time())
            try:
                self.dst.sendall(data)
            except OSError:
                self.conn.close()
                return


class SsePacer:
    """Splits a server->client HTTP/1.1 byte stream into responses and, in
    event-stream responses, holds the first chunk and the ones after it."""

    def __init__(self, hold, gap):
        self.hold, self.gap = hold, gap
        self.buf = b""
        self.state = "head"      # head | length | chunks | raw
        self.left = 0            # bytes left of a Content-Length body
        self.sse = False
        self.chunk_no = 0
        self.head_due = 0.0

    def feed(self, due, data):
        out = []
        self.buf += data
        while self.buf:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head, self.buf = self.buf[:end + 4], self.buf[end + 4:]
                out.append((due, head, None))
                text = head.decode("latin-1").lower()
                status = text.split(" ", 2)[1] if " " in text else ""
                chunked = "transfer-encoding: chunked" in text
                self.sse = chunked and "text/event-stream" in text
                self.chunk_no, self.head_due = 0, due
                if status.startswith("1") or status in ("204", "304"):
                    continue
                if chunked:
                    self.state = "chunks"
                else:
                    length = None
                    for line in text.split("\r\n"):
                        if line.startswith("content-length:"):
                            length = int(line.split(":", 1)[1].strip() or 0)
                    if length is None:
                        self.state = "raw"          # until the connection ends
                    else:
                        self.state, self.left = "length", length
            elif self.state == "length":
                n = min(self.left, len(self.buf))
                if n:
                    out.append((due, self.buf[:n], None))
                self.buf, self.left = self.buf[n:], self.left - n
                if self.left == 0:
                    self.state = "head"
                else:
                    break
            elif self.state == "raw":
                out.append((due, self.buf, None))
                self.buf = b""
            else:  # chunks: "<hex>[;ext]\r\n<data>\r\n", the last one "0\r\n\r\n"
                eol = self.buf.find(b"\r\n")
                if eol < 0:
                    break
                size = int(self.buf[:eol].split(b";")[0].strip() or b"0", 16)
                total = eol + 2 + size + 2
                if size == 0:
                    trailer = self.buf.find(b"\r\n\r\n", eol)
                    if trailer < 0:
                        break
                    total = trailer + 4
                if len(self.buf) < total:
                    break
                piece, self.buf = self.buf[:total], self.buf[total:]
                tag = None
                when = due
                if self.sse and size > 0:
                    self.chunk_no += 1
                    if self.chunk_no == 1:
                        when = max(due, self.head_due + self.hold)
                        tag = "first"
                    else:
                        when = max(due, self.head_due + self.hold + self.gap)
                elif self.sse:
                    when = max(due, self.head_due + self.hold + self.gap)
                out.append((when, piece, tag))
                if size == 0:
                    self.state = "head"
        return out


class Conn:
    def __init__(self, proxy, client):
        self.proxy, self.client = proxy, client
        self.lock = threading.Lock()
        self.open_dirs = 2
        self.closed = False

    def start(self):
        accepted = CLOCK()
        try:
            self.server = socket.create_connection(self.proxy.target)
        except OSError:
            self.client.close()
            return
        for s in (self.client, self.server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        p = self.proxy
        not_before = accepted + 2 * p.delay if p.handshake else 0.0
        pacer = SsePacer(p.sse_hold, p.sse_gap) if p.sse_pace else None
        Pipe(self, self.client, self.server, p.delay, not_before).start()
        Pipe(self, self.server, self.client, p.delay, 0.0, pacer).start()

    def half_closed(self):
        with self.lock:
            self.open_dirs -= 1
            last = self.open_dirs == 0
        if last:
            self.close()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            try:  # shutdown wakes a reader blocked in recv(); close alone does not
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class Proxy:
    def __init__(self, args):
        host, _, port = args.target.rpartition(":")
        self.target = (host or "127.0.0.1", int(port))
        self.delay = args.delay_ms / 1000.0
        self.handshake = not args.no_handshake
        self.sse_pace = args.sse_hold_ms is not None or args.sse_gap_ms is not None
        self.sse_hold = (args.sse_hold_ms or 0) / 1000.0
        self.sse_gap = (args.sse_gap_ms or 0) / 1000.0
        self.log_path = args.log
        self.log_lock = threading.Lock()

    def log(self, line):
        if not self.log_path:
            return
        with self.log_lock:
            with open(self.log_path, "a") as f:
                f.write(line + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description="delaying TCP proxy (bench only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--delay-ms", type=float, default=30.0, help="one-way delay (RTT = 2x)")
    ap.add_argument("--no-handshake", action="store_true",
                    help="do not charge a round trip for a new connection")
    ap.add_argument("--sse-hold-ms", type=float, default=None)
    ap.add_argument("--sse-gap-ms", type=float, default=None)
    ap.add_argument("--log", default=None, help="append FIRST_EVENT lines here")
    ap.add_argument("--parent-pid", type=int, default=0)
    args = ap.parse_args(argv)
    proxy = Proxy(args)

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.host, args.port))
    ls.listen(128)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    parent = args.parent_pid or os.getppid()

    def watchdog():  # do not outlive the bench
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
            if not args.parent_pid and os.getppid() != parent:
                os._exit(0)

    if parent > 1:
        threading.Thread(target=watchdog, daemon=True).start()

    sys.stdout.write("PORT %d PID %d\n" % (ls.getsockname()[1], os.getpid()))
    sys.stdout.flush()
    while True:
        try:
            client, _ = ls.accept()
        except InterruptedError:
            continue
        Conn(proxy, client).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
