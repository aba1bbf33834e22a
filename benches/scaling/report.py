#!/usr/bin/env python3
"""Tables of a benches/scaling/run.sh result directory (stdlib only).

    python3 benches/scaling/report.py benches/results/<date>-scaling > table.md

Reads results.jsonl (run.py single lines) and the idle-*.txt / idle-*.json files,
prints the markdown tables and writes idle.json (the idle-connection figures).
"""

from __future__ import annotations

import json
import pathlib
import re
import statistics
import sys

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_figures(text: str) -> dict:
    def ms(tok):
        m = re.fullmatch(r"([\d.]+)(us|ms|s)", tok)
        return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None

    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else None
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        r[f"p{pct}_ms"] = ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = sum(map(int, m.groups())) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["errors"] = errors + (int(m.group(1)) if m else 0)
    return r


def fmt(v, f="{:,.0f}"):
    return "–" if v is None else f.format(v)


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def load_table(out: pathlib.Path) -> tuple[list[str], dict]:
    runs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    by: dict[str, list] = {}
    for r in runs:
        by.setdefault(r["name"], []).append(r)
    lines = [
        "| workers | connections | req/s | p50 ms | p99 ms | errors | server CPU µs/req "
        "| server CPU % | wrk CPU % | peak RSS MiB | peak PSS MiB | load at start |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("scaling-w1-c64", "scaling-w2-c64", "scaling-w4-c64",
                 "scaling-w2-c256", "scaling-w2-c1024"):
        rs = [r for r in by.get(name, []) if r.get("ok")]
        if not rs:
            lines.append(f"| {name} | failed: {by.get(name, [{}])[0].get('error', 'not run')} |")
            continue
        w, c = re.fullmatch(r"scaling-w(\d+)-c(\d+)", name).groups()
        g = lambda k: med([r.get(k) for r in rs])  # noqa: E731
        loads = ", ".join(f"{r['load_at_start'][0]:.2f}" for r in rs)
        lines.append(
            f"| {w} | {c} | {fmt(g('rps'))} | {fmt(g('p50_ms'), '{:.2f}')} | {fmt(g('p99_ms'), '{:.2f}')} "
            f"| {sum(r['errors'] for r in rs)} | {fmt(g('server_cpu_us_per_req'), '{:.1f}')} "
            f"| {fmt(g('server_cpu_pct'), '{:.0f}')} | {fmt(g('wrk_cpu_pct'), '{:.0f}')} "
            f"| {fmt(g('peak_rss_mib'), '{:.1f}')} | {fmt(g('peak_pss_mib'), '{:.1f}')} | {loads} |")
    n = max((len(v) for v in by.values()), default=0)
    lines.append("")
    lines.append(f"runs per point: {n}" + (" (medians)" if n > 1 else ""))
    return lines, (runs[0]["wrk_params"] if runs else {})


def idle_section(out: pathlib.Path) -> list[str]:
    mem, extra = {}, {}
    for line in (out / "idle-memory.txt").read_text().splitlines():
        if line.startswith("load at start:"):
            extra["load_at_start"] = line.split(":", 1)[1].strip()
        elif line.startswith("master_cpu"):
            extra.update(x.split("=", 1) for x in line.split())
        elif line.strip():
            label, _, rest = line.partition(" ")
            mem[label] = {k: int(v) for k, v in (x.split("=", 1) for x in rest.split())}
    setup = json.loads((out / "idle-setup.json").read_text())
    final_lines = [ln for ln in (out / "idle-conns.json").read_text().splitlines() if ln.strip()]
    final = json.loads(final_lines[-1]) if final_lines else {}
    n = setup["answered"]

    def probes(fn):
        rows = [ln.split() for ln in (out / fn).read_text().splitlines() if ln.strip()]
        ms = sorted(float(t) * 1000 for _, t in rows)
        ok = sum(1 for s, _ in rows if s.startswith("2"))
        return {"n": len(rows), "ok": ok, "median_ms": round(statistics.median(ms), 2),
                "max_ms": round(ms[-1], 2)}

    pb, pw = probes("idle-probes-before.txt"), probes("idle-probes-with.txt")
    wb = wrk_figures((out / "idle-wrk-before.txt").read_text())
    ww = wrk_figures((out / "idle-wrk-with.txt").read_text())
    d_rss = mem["with"]["master_rss_kib"] - mem["before"]["master_rss_kib"]
    d_pss = mem["with"]["tree_pss_kib"] - mem["before"]["tree_pss_kib"]
    d_slab = mem["with"]["slab_kib"] - mem["before"]["slab_kib"]
    ticks = int(extra.get("master_cpu_ticks_10s_idle", 0))
    tck = int(extra.get("clk_tck", 100))
    fig = {
        "load_at_start": extra.get("load_at_start"),
        "connections_requested": setup["requested"], "connections_open": n,
        "failed": setup["failed"], "setup_s": setup["setup_s"],
        "closed_by_server_while_held": final.get("closed_by_server"),
        "held_s": final.get("held_s"),
        "memory": mem,
        "master_rss_kib_per_conn": round(d_rss / n, 2) if n else None,
        "tree_pss_kib_per_conn": round(d_pss / n, 2) if n else None,
        "kernel_slab_kib_per_conn_both_ends": round(d_slab / n, 2) if n else None,
        "master_cpu_ms_per_s_idle": round(1000 * ticks / tck / 10, 1),
        "probes_before": pb, "probes_with": pw, "wrk_before": wb, "wrk_with": ww,
    }
    (out / "idle.json").write_text(json.dumps(fig, indent=1) + "\n")

    b, w, a = mem["before"], mem["with"], mem["after-close"]
    return [
        f"| figure | without | with {n:,} idle connections |",
        "| --- | --- | --- |",
        f"| master RSS MiB | {b['master_rss_kib'] / 1024:.1f} | {w['master_rss_kib'] / 1024:.1f} "
        f"(+{d_rss / 1024:.1f}; **{fig['master_rss_kib_per_conn']:.1f} KiB per connection**) |",
        f"| tree PSS MiB (master + 2 workers) | {b['tree_pss_kib'] / 1024:.1f} | {w['tree_pss_kib'] / 1024:.1f} "
        f"(+{d_pss / 1024:.1f}) |",
        f"| kernel slab, whole machine (both ends of each connection) MiB | {b['slab_kib'] / 1024:.1f} "
        f"| {w['slab_kib'] / 1024:.1f} (+{d_slab / 1024:.1f}; {fig['kernel_slab_kib_per_conn_both_ends']:.1f} KiB per connection) |",
        f"| one GET on a new connection, median / max ms (20) | {pb['median_ms']:.2f} / {pb['max_ms']:.2f} "
        f"| {pw['median_ms']:.2f} / {pw['max_ms']:.2f} ({pw['ok']}/{pw['n']} 200) |",
        f"| wrk -t1 -c64 -d5s req/s | {fmt(wb['rps'])} | {fmt(ww['rps'])} |",
        f"| wrk -t1 -c64 -d5s p99 ms, errors | {fmt(wb['p99_ms'], '{:.2f}')}, {wb['errors']} "
        f"| {fmt(ww['p99_ms'], '{:.2f}')}, {ww['errors']} |",
        f"| master CPU while they sit idle (10 s) | – | {fig['master_cpu_ms_per_s_idle']} ms/s |",
        "",
        f"Set up in {setup['setup_s']} s ({setup['failed']} failed); held {final.get('held_s')} s, "
        f"{final.get('closed_by_server')} closed by the server meanwhile. After they closed: master RSS "
        f"{a['master_rss_kib'] / 1024:.1f} MiB. Config: idle.toml (`keep_alive = 120`, "
        "`max_connections = 20000`; the defaults 5 s / 10000 would close or cap them).",
    ]


def main(argv):
    out = pathlib.Path(argv[1] if len(argv) > 1 else ".")
    lines, params = load_table(out)
    print(f"### Workers and connections (hello app, wrk -t1, {params.get('duration')} "
          f"after a {params.get('warmup_s', 0):g} s warm-up)\n")
    print("\n".join(lines))
    if (out / "idle-memory.txt").exists():
        print("\n### Idle keep-alive connections (-w 2)\n")
        print("\n".join(idle_section(out)))


if __name__ == "__main__":
    main(sys.argv)
