"""Ratio table from a run.py results JSONL: every `ferricorn-X` scenario against each
peer scenario whose name ends in `-X` (medians over the interleaved rounds)."""
import json
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        if r.get("rps") is not None:
            runs[r["name"]].append(r)


def med(name, key):
    vals = [r[key] for r in runs[name] if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


print("| work | peer | peer req/s | ferricorn req/s | ratio | peer p99 ms | ferricorn p99 ms "
      "| peer CPU µs/req | ferricorn CPU µs/req | peer PSS MiB | ferricorn PSS MiB | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for ours in sorted(n for n in runs if n.startswith("ferricorn-")):
    work = ours[len("ferricorn-"):]
    for peer in sorted(n for n in runs if n.endswith("-" + work) and n != ours):
        errors = sum(r.get("errors", 0) for r in runs[peer] + runs[ours])
        print(f"| {work} | {peer} | {med(peer, 'rps'):,.0f} | {med(ours, 'rps'):,.0f} | "
              f"**{med(ours, 'rps') / med(peer, 'rps'):.2f}×** | {med(peer, 'p99_ms'):.2f} | "
              f"{med(ours, 'p99_ms'):.2f} | {med(peer, 'server_cpu_us_per_req'):.1f} | "
              f"{med(ours, 'server_cpu_us_per_req'):.1f} | {med(peer, 'peak_pss_mib'):.1f} | "
              f"{med(ours, 'peak_pss_mib'):.1f} | {errors} |")
print(f"\nrounds: {min(len(v) for v in runs.values()) if runs else 0} (medians)")
