#!/usr/bin/env python3
"""Open N idle HTTP/1.1 keep-alive connections and hold them (stdlib only).

Each connection sends one `GET PATH HTTP/1.1` and reads the whole response
(Content-Length framing), then stays open and silent. At most --window
connections are being set up at once, so the server's accept queue never
overflows. When every connection has been answered (or has failed) it writes a
JSON summary to --ready-file (atomically) and then holds the connections until
SIGTERM/SIGINT or --hold seconds, watching for connections the server closes.
At the end it prints one JSON line: opened, answered, failed, closed by the
server while held, the set-up time and how long they were held.

    python3 idle_conns.py --port 8121 -n 10000 --ready-file /tmp/ready.json --hold 300
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time

CONNECTING, SENDING, READING, IDLE = range(4)


class Conn:
    __slots__ = ("sock", "state", "buf", "sent", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = CONNECTING
        self.buf = b""
        self.sent = 0
        self.need = None  # total bytes of head + body once the head is parsed


def response_complete(c: Conn) -> bool:
    """True once the buffer holds one whole response (head + Content-Length body)."""
    if c.need is None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        for line in c.buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        c.need = end + 4 + length
    return len(c.buf) >= c.need


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("-n", "--connections", type=int, default=10000)
    ap.add_argument("--window", type=int, default=256,
                    help="connections being set up at once (default 256)")
    ap.add_argument("--setup-timeout", type=float, default=120.0,
                    help="give up on connections not answered after this many seconds")
    ap.add_argument("--ready-file", help="write the set-up summary (JSON) here when done")
    ap.add_argument("--hold", type=float, default=600.0,
                    help="hold the idle connections at most this long (default 600 s)")
    a = ap.parse_args(argv)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.connections + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        if hard < want:
            print(f"idle_conns: RLIMIT_NOFILE hard limit {hard} < {want}", file=sys.stderr)

    stop = False

    def on_signal(_sig, _frm):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    request = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
               f"User-Agent: idle_conns\r\n\r\n").encode()
    sel = selectors.DefaultSelector()
    pending = 0          # connections started, not yet answered or failed
    started = answered = failed = 0
    errors: dict[str, int] = {}
    idle: list[Conn] = []
    closed_by_server = unexpected_data = 0
    t0 = time.monotonic()

    def fail(c: Conn, why: str):
        nonlocal failed, pending
        errors[why] = errors.get(why, 0) + 1
        failed += 1
        pending -= 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    # set-up phase
    while (started < a.connections or pending) and not stop:
        while started < a.connections and pending < a.window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            c = Conn(s)
            started += 1
            pending += 1
            rc = s.connect_ex((a.host, a.port))
            if rc not in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE, c)  # so fail() can unregister
                fail(c, errno.errorcode.get(rc, str(rc)))
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        if time.monotonic() - t0 > a.setup_timeout:
            for key in list(sel.get_map().values()):
                c = key.data
                if c.state != IDLE:
                    fail(c, "setup-timeout")
            break
        for key, _ev in sel.select(timeout=1.0):
            c: Conn = key.data
            s = c.sock
            try:
                if c.state == CONNECTING:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(c, errno.errorcode.get(err, str(err)))
                        continue
                    c.state = SENDING
                if c.state == SENDING:
                    c.sent += s.send(request[c.sent:])
                    if c.sent == len(request):
                        c.state = READING
                        sel.modify(s, selectors.EVENT_READ, c)
                    continue
                if c.state == READING:
                    data = s.recv(65536)
                    if not data:
                        fail(c, "closed-before-response")
                        continue
                    c.buf += data
                    if response_complete(c):
                        status = c.buf[:12]
                        if not status.startswith(b"HTTP/1.1 2"):
                            fail(c, "status " + status.decode("latin-1", "replace").strip())
                            continue
                        c.state = IDLE
                        c.buf = b""
                        idle.append(c)
                        answered += 1
                        pending -= 1
                    continue
                # an idle connection readable already: the server closed it early
                data = s.recv(65536)
                if data:
                    unexpected_data += 1
                else:
                    closed_by_server += 1
                sel.unregister(s)
                s.close()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                fail(c, errno.errorcode.get(e.errno or 0, str(e)))

    setup_s = time.monotonic() - t0
    summary = {"requested": a.connections, "answered": answered, "failed": failed,
               "errors": errors, "setup_s": round(setup_s, 2),
               "closed_by_server_during_setup": closed_by_server}
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(summary, f)
        os.replace(tmp, a.ready_file)
    print(json.dumps({"event": "ready", **summary}), file=sys.stderr, flush=True)

    # hold phase: every idle connection stays registered for reading; a readable
    # idle connection means the server closed it (or sent something unasked)
    t_hold = time.monotonic()
    while not stop and time.monotonic() - t_hold < a.hold:
        for key, _ev in sel.select(timeout=0.5):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except OSError:
                data = b""
            if data:
                unexpected_data += 1
            else:
                closed_by_server += 1
            sel.unregister(c.sock)
            c.sock.close()
    held_s = time.monotonic() - t_hold
    still_open = answered - closed_by_server - unexpected_data
    for key in list(sel.get_map().values()):
        key.data.sock.close()
    print(json.dumps({**summary, "held_s": round(held_s, 1),
                      "closed_by_server": closed_by_server,
                      "unexpected_data": unexpected_data,
                      "still_open_at_end": still_open}), flush=True)
    return 0 if failed == 0 and still_open == answered else 1


if __name__ == "__main__":
    sys.exit(main())
