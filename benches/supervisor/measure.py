"""Issue 4's three measurements on the release binary, against this machine:

1. requests lost during HUP reloads under wrk load (target 0),
2. time to replace a worker killed with SIGKILL,
3. time from saving a .py file to the new code being served (--reload).

    cargo build --release && python3 benches/supervisor/measure.py
Prints one JSON object; `benches/README.md` quotes a run.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "ferricorn")
APPS = os.path.join(os.path.dirname(ROOT), "shared", "bench", "apps")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(args, cwd=None):
    port = free_port()
    p = subprocess.Popen([BIN, "-b", f"127.0.0.1:{port}", *args], cwd=cwd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return p, url
        except Exception:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("server did not start")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d))
    return out


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)


def hup_under_load(reloads=3):
    p, url = start(["-w", "2", "--chdir", APPS, "hello:app"])
    before = set(children(p.pid))
    wrk = subprocess.Popen(["wrk", "-t1", "-c64", "-d12s", "--timeout", "2s", url],
                           stdout=subprocess.PIPE, text=True)
    for _ in range(reloads):
        time.sleep(3)
        p.send_signal(signal.SIGHUP)
    out, _ = wrk.communicate()
    after = set(children(p.pid))
    stop(p)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"reloads": reloads, "requests": requests, "failed": errors,
            "workers_replaced": before.isdisjoint(after)}


def replace_killed_worker(times=5):
    import threading
    p, url = start(["-w", "2", "--chdir", APPS, "hello:app"])
    booted = []
    def read_log():
        for line in p.stderr:
            if "Booted worker" in line:
                booted.append(time.monotonic())
    threading.Thread(target=read_log, daemon=True).start()
    spawned, ready = [], []
    for _ in range(times):
        time.sleep(0.3)
        victim = children(p.pid)[0]
        seen = len(booted)
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while True:
            now = children(p.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.001)
        spawned.append(round(time.monotonic() - t0, 4))
        while len(booted) == seen:
            time.sleep(0.001)
        ready.append(round(booted[-1] - t0, 4))
    stop(p)
    return {"new_process_s": spawned, "ready_s": ready,
            "median_ready_s": sorted(ready)[len(ready) // 2]}


def save_to_served():
    d = tempfile.mkdtemp()
    def write(version):
        tmp = os.path.join(d, "app.py.tmp")
        with open(tmp, "w") as f:
            f.write("def app(environ, start_response):\n"
                    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                    f"    return [b'{version}']\n")
        os.rename(tmp, os.path.join(d, "app.py"))
    write("v0")
    p, url = start(["-w", "2", "--reload", "--chdir", d, "app:app"])
    times = []
    for i in range(1, 6):
        time.sleep(0.5)
        t0 = time.monotonic()
        write(f"v{i}")
        while urllib.request.urlopen(url, timeout=5).read() != f"v{i}".encode():
            time.sleep(0.005)
        times.append(round(time.monotonic() - t0, 3))
    stop(p)
    return {"save_to_served_s": times, "median_s": sorted(times)[len(times) // 2]}


if __name__ == "__main__":
    result = {"hup_under_load": hup_under_load(), "killed_worker": replace_killed_worker(),
              "reload": save_to_served()}
    json.dump(result, sys.stdout, indent=1)
    print()
