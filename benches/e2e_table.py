#!/usr/bin/env python3
"""The table of benches/e2e.sh from its raw results: medians over the rounds, and the throughput
loss and p99 added against the bare variant of the same round, as medians over the rounds.

    python3 benches/e2e_table.py RESULTS_TXT RATE
"""

import re
import statistics
import sys

runs = {}  # (round, variant) -> (req/s at saturation, p50 µs, p99 µs at the fixed rate)
for line in open(sys.argv[1]):
    rnd = int(re.search(r"round=(\d+)", line).group(1))
    v = re.search(r"variant=(\S+)", line).group(1)
    sat, fixed = line.split("|")
    runs[(rnd, v)] = (
        float(re.search(r"rps=([\d.]+)", sat).group(1)),
        float(re.search(r"p50_us=(\d+)", fixed).group(1)),
        float(re.search(r"p99_us=(\d+)", fixed).group(1)),
    )
rounds = sorted({r for r, _ in runs})
variants = {v for _, v in runs}
med = statistics.median
rate = sys.argv[2]

print(f"| variant | req/s at saturation | loss vs bare | p50 at {rate}/s | p99 at {rate}/s | p99 added vs bare |")
print("|---|---:|---:|---:|---:|---:|")
order = ["http-bare", "http-layer", "http-cancellable", "grpc-bare", "grpc-layer", "grpc-cancellable"]
for v in order:
    if v not in variants:
        continue
    mine = [runs[(r, v)] for r in rounds if (r, v) in runs]
    rps, p50, p99 = (med(x[i] for x in mine) for i in range(3))
    base = v.split("-")[0] + "-bare"
    loss = added = ""
    if v != base and base in variants:
        pairs = [(runs[(r, v)], runs[(r, base)]) for r in rounds if (r, v) in runs and (r, base) in runs]
        loss = f"{med(1 - a[0] / b[0] for a, b in pairs) * 100:.1f}%"
        added = f"{med(a[2] - b[2] for a, b in pairs):+.0f} µs"
    print(f"| {v} | {rps:,.0f} | {loss} | {p50:.0f} µs | {p99:.0f} µs | {added} |")
print()
print(f"{len(rounds)} rounds. req/s at saturation per round:")
for v in order:
    if v in variants:
        print(f"- {v}: " + ", ".join(f"{runs[(r, v)][0]:,.0f}" for r in rounds if (r, v) in runs))
