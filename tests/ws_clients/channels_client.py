"""Two `websockets` clients in one Channels room of tests/apps/djsite (the
RoomConsumer of djsite/consumers.py, the in-memory channel layer): what one sends,
both receive; a third client in another room receives nothing; a handshake from a
foreign Origin is refused with 403 (AllowedHostsOriginValidator) before any accept.

    python channels_client.py ws://HOST:PORT

Prints one "ok ..." line per check and exits 0; any failure raises (exit 1)."""
import json
import sys
from urllib.parse import urlsplit

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def main():
    base = sys.argv[1]
    origin = "http://" + urlsplit(base).netloc
    kw = {"origin": origin, "open_timeout": 30, "close_timeout": 30}
    room = f"{base}/ws/room/lobby/"
    with connect(room, **kw) as a, connect(room, **kw) as b, connect(
        f"{base}/ws/room/elsewhere/", **kw
    ) as other:
        a.send("hello from a \u2603")
        for ws in (a, b):
            assert json.loads(ws.recv(timeout=30)) == {"text": "hello from a \u2603"}
        b.send("hello from b")
        for ws in (a, b):
            assert json.loads(ws.recv(timeout=30)) == {"text": "hello from b"}
        print("ok both clients of the room got both messages")
        other.send("only here")
        assert json.loads(other.recv(timeout=30)) == {"text": "only here"}
        # No wait for a silence: the next message a and b get must be this one.
        a.send("after")
        for ws in (a, b):
            got = json.loads(ws.recv(timeout=30))
            assert got == {"text": "after"}, f"another room's message leaked: {got}"
        print("ok another room's message stays there")
    try:
        with connect(room, origin="http://evil.example", open_timeout=30):
            raise AssertionError("a foreign Origin was accepted")
    except InvalidStatus as e:
        assert e.response.status_code == 403, e.response.status_code
    print("ok a foreign Origin gets 403")
    print("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
