"""The `websockets` client library against tests/apps/ws_echo.py (Flask-Sock):
text and binary echo, a 16 MiB message, a fragmented message, ping/pong, close codes.

    python echo_client.py ws://HOST:PORT        (or wss://... with --cafile CERT)

Prints one "ok ..." line per check and exits 0; any failure raises (exit 1)."""
import argparse
import os
import ssl
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

MIB = 1024 * 1024


def options(args):
    kw = {"max_size": 32 * MIB, "open_timeout": 30, "close_timeout": 30}
    if args.base.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.cafile)
        ctx.set_alpn_protocols(["http/1.1"])
        kw["ssl"] = ctx
    return kw


def check_echo(ws):
    ws.send("hello ferricorn \u00e9\u2603")
    assert ws.recv(timeout=30) == "hello ferricorn \u00e9\u2603"
    blob = bytes(range(256)) * 4
    ws.send(blob)
    got = ws.recv(timeout=30)
    assert isinstance(got, bytes) and got == blob, "binary echo"
    ws.send("")
    assert ws.recv(timeout=30) == ""
    print("ok text and binary echo")


def check_big(ws):
    big = os.urandom(16 * MIB)
    ws.send(big)
    got = ws.recv(timeout=120)
    assert got == big, f"16 MiB binary echo: {len(got)} bytes back"
    text = "x\u00e9" * (8 * MIB // 3) + "end"
    ws.send(text)
    assert ws.recv(timeout=120) == text, "big text echo"
    print("ok 16 MiB binary and", len(text.encode()), "bytes text echoed")


def check_fragments(ws):
    # An iterable is sent as one message in several frames (continuation frames).
    ws.send(["frag", "ment", "ed \u2603"])
    assert ws.recv(timeout=30) == "fragmented \u2603"
    ws.send([b"\x00\x01", b"\x02" * 70000, b"\xff"])
    assert ws.recv(timeout=30) == b"\x00\x01" + b"\x02" * 70000 + b"\xff"
    print("ok fragmented messages")


def check_ping(ws):
    for payload in (b"", b"ping-1", bytes(125)):
        pong = ws.ping(payload)
        assert pong.wait(30), f"no pong for {payload!r}"
    # A ping between the frames of a message (control frames may interleave).
    ws.send(["before ", "after"])
    assert ws.recv(timeout=30) == "before after"
    print("ok ping/pong")


def check_close_codes(base, kw):
    for code in (1000, 4001, 4999, 1011):
        with connect(f"{base}/close/{code}", **kw) as ws:
            ws.send(f"bye {code}")
            try:
                ws.recv(timeout=30)
                raise AssertionError("no close")
            except ConnectionClosed as e:
                assert e.rcvd is not None, f"no close frame: {e!r}"
                assert e.rcvd.code == code, f"{e.rcvd.code} != {code}"
                assert e.rcvd.reason == f"bye {code}", e.rcvd.reason
    # A client-initiated close is answered with the same code.
    with connect(f"{base}/echo", **kw) as ws:
        ws.close(code=4321, reason="client done")
        assert ws.close_code == 4321, ws.close_code
    print("ok close codes")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base", help="ws://host:port or wss://host:port")
    p.add_argument("--cafile")
    p.add_argument("--quick", action="store_true", help="text/binary echo only")
    args = p.parse_args()
    kw = options(args)
    with connect(f"{args.base}/echo", **kw) as ws:
        check_echo(ws)
        if args.quick:
            return
        check_big(ws)
        check_fragments(ws)
        check_ping(ws)
    check_close_codes(args.base, kw)
    print("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
