"""python-socketio's client against tests/apps/sio_app.py (Flask-SocketIO, threading
mode): each of N clients connects with long-polling, upgrades to a WebSocket, then
echoes messages and asks the worker's pid. Every request of one Engine.IO session
must reach the worker that holds the session: with several workers and no sticky
routing, the polls and the upgrade of a session land on the other worker and fail.

    python sio_client.py http://HOST:PORT [--clients N] [--no-pid]

Prints the worker pids seen ("pids 123 456") and exits 0; any failure raises."""
import argparse
import sys
import threading

import socketio


def one_client(url, i, pids, errors, ask_pid):
    try:
        sio = socketio.Client(reconnection=False)
        got = {}
        upgraded = threading.Event()
        answers = {"echo": threading.Event(), "pid": threading.Event()}

        @sio.on("echo")
        def on_echo(data):
            got["echo"] = data
            answers["echo"].set()

        @sio.on("pid")
        def on_pid(data):
            got["pid"] = data
            answers["pid"].set()

        sio.connect(url, transports=["polling", "websocket"], wait_timeout=30)
        # Engine.IO starts on polling and upgrades in the background.
        for _ in range(300):
            if sio.transport() == "websocket":
                upgraded.set()
                break
            sio.sleep(0.1)
        assert upgraded.is_set(), f"client {i}: still on {sio.transport()}"
        for n in range(5):
            answers["echo"].clear()
            msg = {"client": i, "n": n, "text": "h\u00e9llo"}
            sio.emit("echo", msg)
            assert answers["echo"].wait(30), f"client {i}: no echo {n}"
            assert got["echo"] == msg, got["echo"]
        if ask_pid:
            sio.emit("pid")
            assert answers["pid"].wait(30), f"client {i}: no pid"
            pids.append(got["pid"])
        sio.disconnect()
    except Exception as e:  # reported by the main thread
        errors.append(f"client {i}: {e!r}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--no-pid", action="store_true", help="the app has no pid event")
    args = p.parse_args()
    pids, errors = [], []
    threads = [
        threading.Thread(target=one_client, args=(args.url, i, pids, errors, not args.no_pid))
        for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, "\n".join(errors)
    assert args.no_pid or len(pids) == args.clients, pids
    print("pids", " ".join(str(p) for p in sorted(set(pids))))
    print("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
