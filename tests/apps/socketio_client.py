"""Drives Socket.IO sessions against a server with the python-socketio client, as a
browser app would: `python socketio_client.py URL CLIENTS EVENTS [TRANSPORTS]`, or
`... URL kill-worker EVENTS [TRANSPORTS]`: one session kills its worker and must
connect again (the client's reconnection) on another, and echo there.

CLIENTS sessions connect one after another (each then holds a long-poll on its
worker, so the least-busy dispatch spreads the next ones), then all send EVENTS
`echo` events at once, each awaited before the next. TRANSPORTS: comma-separated,
`polling` (the default) or `polling,websocket`. Prints one JSON line per session
({"pids": the worker pid before and after, "echoed", "events": what the worker
counted, "transport", "error"}) and exits 1 if any session failed.
Sessions are left open (see the end of `main`).
"""

import json
import os
import signal
import sys
import threading

import socketio

TIMEOUT = 20


class Session:
    def __init__(self, url, transports, reconnection=False):
        self.sio = socketio.Client(reconnection=reconnection, reconnection_delay=0.2)
        self.connects = threading.Semaphore(0)
        self.sio.on("connect", self.connects.release)
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
        answer = self.sio.call("whoami", timeout=TIMEOUT)
        self.result["pids"].append(answer["pid"])
        return answer

    def run(self, events):
        if self.result["error"]:
            return
        try:
            self.whoami()
            self.echo(events)
            self.result["echoed"] = len(self.echoed)
            self.result["events"] = self.whoami()["events"]
            self.result["transport"] = self.sio.transport()
        except Exception as e:  # reported; the exit status says it failed
            self.fail(e)

    def echo(self, events):
        with self.got:
            self.echoed.clear()
        for n in range(events):
            self.sio.emit("echo", {"n": n})
            with self.got:
                if not self.got.wait_for(lambda: len(self.echoed) > n, timeout=TIMEOUT):
                    raise TimeoutError(f"echo {n} unanswered")
            if self.echoed[n] != {"n": n}:
                raise ValueError(f"echo {n} came back as {self.echoed[n]!r}")

    def outlive_worker(self, events):
        """Kills the session's worker, waits for the client to connect again, and
        runs `events` echoes on the new session."""
        try:
            self.connects.acquire(timeout=TIMEOUT)
            first = self.whoami()["pid"]
            os.kill(first, signal.SIGKILL)
            if not self.connects.acquire(timeout=TIMEOUT):
                raise TimeoutError("never connected again")
            self.echo(events)
            self.result["echoed"] = len(self.echoed)
            self.result["events"] = self.whoami()["events"]
            self.result["transport"] = self.sio.transport()
        except Exception as e:  # reported; the exit status says it failed
            self.fail(e)


def main():
    url, clients, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
    transports = (sys.argv[4] if len(sys.argv) > 4 else "polling").split(",")
    if clients == "kill-worker":
        sessions = [Session(url, transports, reconnection=True)]
        sessions[0].outlive_worker(events)
    else:
        sessions = [Session(url, transports) for _ in range(int(clients))]
        threads = [threading.Thread(target=s.run, args=(events,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ok = True
    for s in sessions:
        print(json.dumps(s.result), flush=True)
        ok = ok and s.result["error"] is None and s.result["echoed"] == events
    # No clean disconnect: python-socketio's client may skip sending CLOSE when it
    # races its own write loop, and then waits for the server's next ping (25 s)
    # whatever the server; the server forgets the sessions at their ping timeout.
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
