#!/usr/bin/env python3
"""Draws benches/results.json (written by benches/compare.sh) as benches/chart.png: per row, the
ratio ctxkit/tokio-util and ctxkit/Go on a log scale. Left of the line at 1 ctxkit leads.

    python3 -m venv /tmp/chart-venv && /tmp/chart-venv/bin/pip install matplotlib
    /tmp/chart-venv/bin/python benches/chart.py [results.json] [chart.png]
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "results.json")
dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "chart.png")
data = json.load(open(src))

LABELS = {
    "create_cancel_live_parent": "create + cancel under a live parent",
    "timeout_made_cancelled": "timeout child made + cancelled",
    "err_deadline_1t": "err() under a deadline, 1 thread",
    "err_deadline_2t": "err() under a deadline, 2 threads",
    "check_deadline_1t": "check() under a deadline, 1 thread",
    "check_deadline_2t": "check() under a deadline, 2 threads",
    "is_done": "is_done()",
    "fan_out_10k": "fan-out, 10k waiters",
    "fan_out_100k": "fan-out, 100k waiters",
    "cancel_tree_depth_1": "cancel_tree, depth 1",
    "cancel_tree_depth_10": "cancel_tree, depth 10",
    "cancel_tree_depth_100": "cancel_tree, depth 100",
    "cancel_tree_depth_1000": "cancel_tree, depth 1000",
    "value_hit_depth_1000": "value hit, depth 1000",
    "value_miss_depth_1000": "value miss, depth 1000",
    "timeout_bytes": "bytes per timer made + cancelled",
}

rows = []
for r in data["rows"]:
    tokio = go = None
    if r.get("tokio_ns"):
        tokio = r["ctxkit_ns"] / r["tokio_ns"]
    if r.get("go_ns"):
        go = r["ctxkit_ns"] / r["go_ns"]
    if r.get("go_bytes"):
        go = r["ctxkit_bytes"] / r["go_bytes"]
    if tokio is None and go is None:
        continue
    mark = "✓" if r["holds"] else "✗"
    label = f"{LABELS.get(r['row'], r['row'])}  [{r['target']} {mark}]"
    rows.append((label, tokio, go, r["holds"]))
rows.reverse()

fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
h = 0.38
for i, (label, tokio, go, holds) in enumerate(rows):
    if tokio is not None:
        ax.barh(i + h / 2, tokio, height=h, color="#4c78a8")
    if go is not None:
        ax.barh(i - h / 2, go, height=h, color="#f58518")
    for v, y in ((tokio, i + h / 2), (go, i - h / 2)):
        if v is not None:
            ax.text(v * 1.04, y, f"{v:.2f}×", va="center", fontsize=8)
ax.set_yticks(range(len(rows)))
ax.set_yticklabels([r[0] for r in rows], fontsize=8)
for t, (_, _, _, holds) in zip(ax.get_yticklabels(), rows):
    t.set_color("#2a7a2a" if holds else "#b22222")
ax.set_xscale("log")
biggest = max(v for r in rows for v in r[1:3] if v is not None)
ax.set_xlim(right=max(biggest, 1.0) * 2.2)
ax.axvline(1.0, color="black", linewidth=1)
ax.set_xlabel("ctxkit time (or bytes) / peer's   —   left of 1: ctxkit leads")
ax.legend(
    handles=[Patch(color="#4c78a8", label="ctxkit / tokio-util"), Patch(color="#f58518", label="ctxkit / Go")],
    loc="center right",
    fontsize=8,
)
ax.set_title(f"ctxkit against tokio-util and Go ({data['go'].split()[2]}); row labels: target, green when it holds", fontsize=10)
fig.tight_layout()
fig.savefig(dst, dpi=110)
print(f"wrote {dst}")
