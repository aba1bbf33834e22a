"""Tables of benches/asgi from a run.py results JSONL: per app (`hello`, `django`), every
server's medians over the interleaved rounds and its ratio to Granian ASGI (default and
tuned), then ferricorn's ratio to each peer and issue 27's goals.

    python3 benches/asgi/report.py results.jsonl           # markdown to stdout
    python3 benches/asgi/report.py --check results.jsonl   # exit 1 unless every run worked

--check (what the smoke mode runs) wants, for every scenario: each round ok, no wrk
errors, the probe's status 200, and one body size per app across the servers (the same
bytes from every server)."""
import argparse
import json
import statistics
import sys
from collections import defaultdict

BASES = ("granian-asgi", "granian-asgi-tuned")
WORKS = ("hello", "django")


def load(path):
    runs = defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[r["name"]].append(r)
    return runs


def split(name):
    """'granian-asgi-tuned-hello' -> ('granian-asgi-tuned', 'hello')."""
    server, _, work = name.rpartition("-")
    return server, work


def med(rs, key):
    vals = [r[key] for r in rs if r.get("ok") and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def spread(rs, key):
    vals = [r[key] for r in rs if r.get("ok") and r.get(key) is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:,.0f}"
    return f"{statistics.median(vals):,.0f} ({min(vals):,.0f}–{max(vals):,.0f})"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "-"


def fmt(v, f="{:.2f}"):
    return f.format(v) if v is not None else "-"


def work_table(work, by_server):
    out = [f"### {work}", "",
           "| server | req/s median (min–max) | p50 ms | p99 ms | CPU µs/req | PSS MiB "
           "| errors | ÷ Granian ASGI | ÷ Granian tuned |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    base = {b: med(by_server.get(b, []), "rps") for b in BASES}
    order = sorted(by_server, key=lambda s: -(med(by_server[s], "rps") or 0))
    for server in order:
        rs = by_server[server]
        rps = med(rs, "rps")
        name = f"**{server}**" if server == "ferricorn" else server
        out.append(
            f"| {name} | {spread(rs, 'rps')} | {fmt(med(rs, 'p50_ms'))} | "
            f"{fmt(med(rs, 'p99_ms'))} | {fmt(med(rs, 'server_cpu_us_per_req'), '{:.0f}')} | "
            f"{fmt(med(rs, 'peak_pss_mib'), '{:.1f}')} | "
            f"{sum(r.get('errors', 0) for r in rs if r.get('ok'))} | "
            f"{ratio(rps, base[BASES[0]])} | {ratio(rps, base[BASES[1]])} |")
    ours = by_server.get("ferricorn")
    if ours and med(ours, "rps"):
        peers = [s for s in order if s != "ferricorn"]
        out += ["", "ferricorn ÷ each peer (req/s): " + ", ".join(
            f"{s} {ratio(med(ours, 'rps'), med(by_server[s], 'rps'))}" for s in peers)]
    return out


def goals(by_work):
    hello, django = by_work.get("hello", {}), by_work.get("django", {})
    out = ["", "Issue 27's goals:"]
    if "ferricorn" in hello and "granian-asgi" in hello:
        r = med(hello["ferricorn"], "rps") / med(hello["granian-asgi"], "rps")
        out.append(f"- hello ≥ 1.2× Granian ASGI: {r:.2f}× ({'met' if r >= 1.2 else 'not met'})")
    if "ferricorn" in django and len(django) > 1:
        ours = django["ferricorn"]
        peers = {s: rs for s, rs in django.items() if not s.startswith("ferricorn")}
        best = max(peers, key=lambda s: med(peers[s], "rps") or 0)
        low = min(peers, key=lambda s: med(peers[s], "p99_ms") or float("inf"))
        ahead = med(ours, "rps") > med(peers[best], "rps")
        lowest = med(ours, "p99_ms") < med(peers[low], "p99_ms")
        out.append(f"- Django async view ahead of every peer: {ratio(med(ours, 'rps'), med(peers[best], 'rps'))} "
                   f"the best ({best}) ({'met' if ahead else 'not met'}); lowest p99: "
                   f"{med(ours, 'p99_ms'):.2f} ms vs {low}'s {med(peers[low], 'p99_ms'):.2f} ms "
                   f"({'met' if lowest else 'not met'})")
    return out if len(out) > 2 else []


def check(runs):
    problems, sizes = [], defaultdict(set)
    for name, rs in runs.items():
        for r in rs:
            probe = r.get("probe") or {}
            if not r.get("ok"):
                problems.append(f"{name} round {r.get('round')}: {r.get('error', 'not ok')}")
            elif r.get("errors"):
                problems.append(f"{name} round {r.get('round')}: {r['errors']} wrk errors")
            if probe.get("status") != 200:
                problems.append(f"{name} round {r.get('round')}: probe status {probe.get('status')}")
            if probe.get("body_bytes"):
                sizes[split(name)[1]].add(probe["body_bytes"])
    for work, s in sizes.items():
        if len(s) != 1:
            problems.append(f"{work}: the servers' bodies differ in size: {sorted(s)}")
    for p in problems:
        print("FAIL", p)
    print(f"{len(runs)} scenarios, {sum(map(len, runs.values()))} runs: "
          f"{'ok' if not problems else f'{len(problems)} problem(s)'}")
    return not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every run worked")
    a = ap.parse_args()
    runs = load(a.results)
    if a.check:
        sys.exit(0 if check(runs) else 1)
    by_work = defaultdict(dict)
    for name, rs in runs.items():
        server, work = split(name)
        by_work[work][server] = rs
    lines = []
    for work in [w for w in WORKS if w in by_work] + [w for w in by_work if w not in WORKS]:
        lines += work_table(work, by_work[work]) + [""]
    lines += goals(by_work)
    rounds = min(len(v) for v in runs.values()) if runs else 0
    lines += ["", f"rounds: {rounds} (medians), wrk -t1 -c64, 2 workers per server"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
