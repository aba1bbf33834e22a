"""Where a server's worker spends its time under the bench's load (issue 27: "record where
the loop's time goes"): starts one scenario of scenarios.toml the way the harness does,
loads it with wrk -t1 -c64, and samples one worker process with py-spy (Python frames and,
with --native, the extension's Rust/C frames), then prints the heaviest frames by self
and by inclusive time.

    benches/asgi/profile.sh ferricorn-hello                 # (profile.sh makes py-spy's venv)
    python3 benches/asgi/profile.py ferricorn-django --native --duration 10

Needs the bench venv (BENCH_VENV, as run.sh makes it) and py-spy (PY_SPY)."""
import argparse
import collections
import os
import pathlib
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "harness"))
import run as harness  # noqa: E402  (benches/harness/run.py)


def python_workers(leader):
    """The server's Python processes below its leader (the workers), else the leader."""
    table = harness.proc_table()
    tree = harness.server_tree(table, leader, leader)

    def is_python(pid):
        try:
            return "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            return False

    below = sorted(p for p in tree if p != leader and is_python(p))
    return below or [leader]


def frame_name(frame):
    # py-spy raw frames: "function (file.py:line)"; keep the function and the file's name
    m = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame)
    return f"{m.group(1)} ({os.path.basename(m.group(2))})" if m else frame


def summarize(raw, top):
    self_t, incl, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples"]
    # The entry chain (main, the server's run loop) is in nearly every sample: left out
    # of the inclusive list, which is about the frames below it.
    below = collections.Counter({f: n for f, n in incl.items() if n < 0.6 * total})
    for title, counter in (("self", self_t), ("inclusive, < 60 %", below)):
        out += ["", f"| {title} % | frame |", "| --- | --- |"]
        out += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in counter.most_common(top)]
    return "\n".join(out)


def cpu_split(leader, workers, url, seconds):
    """CPU µs per request of the leader (ferricorn's master; a Python supervisor for the
    peers) and of the workers, over a wrk run of its own (nothing sampling the process)."""
    def ticks():
        table = harness.proc_table()
        return {p: table[p]["ticks"] for p in harness.server_tree(table, leader, leader)}

    t0 = ticks()
    _, _, out, _ = harness.run_wrk("wrk", url, 1, 64, seconds, "2s")
    t1 = ticks()
    requests = harness.parse_wrk(out).get("requests") or 1
    used = {p: (t1[p] - t0.get(p, 0)) / harness.CLK_TCK for p in t1}
    per_req = lambda cpu: 1e6 * cpu / requests  # noqa: E731
    rows = [("leader (master)", per_req(used.get(leader, 0)))]
    rows.append((f"workers ({len(workers)})", per_req(sum(used.get(w, 0) for w in workers))))
    rest = sum(c for p, c in used.items() if p != leader and p not in workers)
    if rest:
        rows.append(("other processes", per_req(rest)))
    lines = [f"CPU per request over {seconds} s of wrk -t1 -c64 alone "
             f"({requests / seconds:,.0f} req/s):", "", "| process | µs/request |", "| --- | --- |"]
    lines += [f"| {name} | {us:.1f} |" for name, us in rows]
    return "\n".join(lines)


def sample(py_spy, worker, url, a, raw):
    """py-spy on one worker while wrk loads the server; returns wrk's req/s."""
    wrk = subprocess.Popen(["wrk", "-t1", "-c64", f"-d{a.duration + 3}s", url],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    # Native stacks need the process paused at each sample (py-spy refuses
    # --nonblocking with --native); Python-only sampling leaves it running.
    mode = ["--native"] if a.native else ["--nonblocking"]
    cmd = [py_spy, "record", *mode, "-r", str(a.rate), "-d", str(a.duration),
           "-f", "raw", "-o", str(raw), "-p", str(worker)]
    spy = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rps = harness.parse_wrk(wrk.communicate()[0]).get("rps") or 0
    if spy.returncode != 0:
        sys.exit(f"py-spy failed: {spy.stderr.strip()[-500:]}")
    return rps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--native", action="store_true", help="py-spy --native (Rust/C frames)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default=str(HERE.parents[1] / "target" / "asgi-profile"))
    a = ap.parse_args()
    py_spy = os.environ.get("PY_SPY", "py-spy")
    scenarios, _, _ = harness.load_suite(HERE / "scenarios.toml")
    sc = next((s for s in scenarios if s["name"] == a.scenario), None)
    if sc is None:
        sys.exit(f"no scenario {a.scenario} in {HERE / 'scenarios.toml'}")
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(sc.get("env") or {})}
    log = open(out / f"{a.scenario}.server.log", "wb")
    proc = subprocess.Popen(["/bin/sh", "-c", sc["cmd"]], cwd=sc.get("cwd") or str(HERE),
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    raw = out / f"{a.scenario}.raw.txt"
    try:
        deadline = time.monotonic() + 30
        while harness.http_get(sc["url"], timeout=1.0)[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{a.scenario} did not come up (see {log.name})")
            time.sleep(0.1)
        time.sleep(0.5)  # every worker up, not only the first to answer
        workers = python_workers(proc.pid)
        harness.run_wrk("wrk", sc["url"], 1, 64, 2, "2s", latency=False)  # warm-up
        split = cpu_split(proc.pid, workers, sc["url"], a.duration)
        rps = sample(py_spy, workers[0], sc["url"], a, raw)
    finally:
        harness.stop_server(proc, None, 5.0)
        log.close()
    text = (f"## {a.scenario}\n\n{split}\n\nOne worker (pid {workers[0]} of {len(workers)}) "
            f"sampled by py-spy {'--native ' if a.native else ''}for {a.duration} s at {a.rate} Hz "
            f"under wrk -t1 -c64 ({rps:,.0f} req/s while sampled):\n\n" + summarize(raw, a.top))
    (out / f"{a.scenario}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
