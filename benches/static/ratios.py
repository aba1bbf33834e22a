"""Ratio table (ferricorn / nginx, medians over rounds) from a run.py results JSONL."""
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


print("| file | nginx req/s | ferricorn req/s | ratio | nginx p99 ms | ferricorn p99 ms "
      "| nginx CPU µs/req | ferricorn CPU µs/req | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for size in ("1k", "1m"):
    n, f = f"nginx-static-{size}", f"ferricorn-static-{size}"
    errors = sum(r.get("errors", 0) for r in runs[n] + runs[f])
    print(f"| {size} | {med(n, 'rps'):,.0f} | {med(f, 'rps'):,.0f} | "
          f"**{med(f, 'rps') / med(n, 'rps'):.2f}×** | {med(n, 'p99_ms'):.2f} | {med(f, 'p99_ms'):.2f} | "
          f"{med(n, 'server_cpu_us_per_req'):.1f} | {med(f, 'server_cpu_us_per_req'):.1f} | {errors} |")
print(f"\nrounds: {min(len(v) for v in runs.values()) if runs else 0} (medians)")
