"""Drives Socket.IO sessions against a server with the python-socketio client, as a
browser app would (tests/socketio.rs, tests/getting_started.rs):

    python socketio_client.py URL SESSIONS EVENTS [TRANSPORTS] [--echo-only] [--together]
    python socketio_client.py URL kill-worker EVENTS [TRANSPORTS]

SESSIONS sessions connect one after another (each then holds a long-poll on its
worker, so the least-busy dispatch spreads the next ones; `--together`: all at
once), then all send EVENTS `echo` events at once, each awaited before the next.
`kill-worker`: one session kills its worker and must connect again (the client's
reconnection) on another, and echo there. TRANSPORTS: comma-separated, `polling`
(the default) or `polling,websocket`: Engine.IO starts on long-polling and upgrades,
and a session still on polling then fails. The app (tests/apps/socketio_app.py)
answers `echo` and `whoami`; `--echo-only`: it answers `echo` only (the README's).
Prints one JSON line per session ({"pids": the worker pid before and after,
"echoed", "events": what the worker counted, "transport", "error"}) and exits 1 if
any session failed. Sessions are left open (see the end of `main`).
"""

import argparse
import json
import os
import signal
import threading
import time

import socketio

TIMEOUT = 20


class Session:
    def __init__(self, url, transports, reconnection=False, whoami=True):
        self.sio = socketio.Client(reconnection=reconnection, reconnection_delay=0.2)
        self.connects = threading.Semaphore(0)
        self.sio.on("connect", self.connects.release)
        self.transports = transports
        self.ask_whoami = whoami
        self.echoed = []
        self.got = threading.Condition()
        self.result = {"pids": [], "echoed": 0, "events": None, "transport": None, "error": None}
        self.sio.on("echo", self.on_echo)
        try:
            self.sio.connect(url, transports=transports, wait_timeout=TIMEOUT)
        except Exception as e:
            self.fail(e)

    def on_echo(self, data):
        with self.got:
            self.echoed.append(data)
            self.got.notify_all()

    def fail(self, e):
        self.result["error"] = f"{type(e).__name__}: {e}"

    def whoami(self):
        if not self.ask_whoami:
            return {"pid": None, "events": None}
        answer = self.sio.call("whoami", timeout=TIMEOUT)
        self.result["pids"].append(answer["pid"])
        return answer

    def upgraded(self):
        """With `websocket` among the transports, waits until Engine.IO has left
        long-polling: a session that stays on polling fails."""
        if "websocket" not in self.transports:
            return
        deadline = time.monotonic() + TIMEOUT
        while self.sio.transport() != "websocket":
            if time.monotonic() > deadline:
                raise TimeoutError(f"still on {self.sio.transport()}")
            time.sleep(0.05)

    def finish(self):
        self.result["echoed"] = len(self.echoed)
        self.result["events"] = self.whoami()["events"]
        self.result["transport"] = self.sio.transport()

    def run(self, events, kill_worker=False):
        """`events` echoes, awaited one by one; with `kill_worker`, after killing the
        session's worker and waiting for the client to connect again."""
        if self.result["error"]:
            return
        try:
            if kill_worker:
                self.connects.acquire(timeout=TIMEOUT)
                os.kill(self.whoami()["pid"], signal.SIGKILL)
                if not self.connects.acquire(timeout=TIMEOUT):
                    raise TimeoutError("never connected again")
            self.upgraded()
            if not kill_worker:
                self.whoami()
            self.echo(events)
            self.finish()
        except Exception as e:  # reported; the exit status says it failed
            self.fail(e)

    def echo(self, events):
        with self.got:
            self.echoed.clear()
        for n in range(events):
            sent = {"n": n, "text": "h\u00e9llo"}
            self.sio.emit("echo", sent)
            with self.got:
                if not self.got.wait_for(lambda: len(self.echoed) > n, timeout=TIMEOUT):
                    raise TimeoutError(f"echo {n} unanswered")
            if self.echoed[n] != sent:
                raise ValueError(f"echo {n} came back as {self.echoed[n]!r}")

def in_threads(target, items):
    threads = [threading.Thread(target=target, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("sessions", help="how many, or kill-worker")
    p.add_argument("events", type=int)
    p.add_argument("transports", nargs="?", default="polling")
    p.add_argument("--echo-only", action="store_true", help="the app has no whoami")
    p.add_argument("--together", action="store_true", help="connect all at once")
    args = p.parse_args()
    transports = args.transports.split(",")
    if args.sessions == "kill-worker":
        sessions = [Session(args.url, transports, reconnection=True)]
        sessions[0].run(args.events, kill_worker=True)
    else:
        new = lambda _: Session(args.url, transports, whoami=not args.echo_only)
        if args.together:
            sessions = []
            in_threads(lambda i: sessions.append(new(i)), range(int(args.sessions)))
        else:
            sessions = [new(i) for i in range(int(args.sessions))]
        in_threads(lambda s: s.run(args.events), sessions)
    ok = True
    for s in sessions:
        print(json.dumps(s.result), flush=True)
        ok = ok and s.result["error"] is None and s.result["echoed"] == args.events
    # No clean disconnect: python-socketio's client may skip sending CLOSE when it
    # races its own write loop, and then waits for the server's next ping (25 s)
    # whatever the server; the server forgets the sessions at their ping timeout.
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
