#!/usr/bin/env bash
# The performance targets, row by row, against tokio-util's CancellationToken and Go's context:
# interleaved rounds, medians and ratios in one table.
#
#   benches/compare.sh                  # every row, ROUNDS=3 (about 5 minutes on 2 cores)
#   benches/compare.sh cancel_tree      # only the rows whose name contains a filter
#
# A round is one run of benches/benches/rows.rs (ctxkit and tokio-util taking turns in one
# process, the median of SAMPLES samples per side) followed by one run of Go's benchmarks
# (benches/go). The table gives, per row, the median over the rounds of each side and the ratio
# of the medians; benches/results.json keeps them for benches/chart.py.
#
# Environment: ROUNDS (default 3), SAMPLES and SAMPLE_MS (rows.rs), GOBENCHTIME (default 0.2s),
# RAW_DIR (raw outputs, default a temp dir), RESULTS (default benches/results.json; empty: none).
set -euo pipefail
cd "$(dirname "$0")/.."

FILTER="${1:-}"
ROUNDS="${ROUNDS:-3}"
GOBENCHTIME="${GOBENCHTIME:-0.2s}"
RAW_DIR="${RAW_DIR:-$(mktemp -d)}"
RESULTS="${RESULTS-benches/results.json}"
mkdir -p "$RAW_DIR"

# Go 1.23 (Debian's golang-1.23-go, from bookworm-backports) when present: Go's context changed
# in 1.21, and the comparison is with a current Go.
[ -x /usr/lib/go-1.23/bin/go ] && export PATH="/usr/lib/go-1.23/bin:$PATH"
command -v go >/dev/null || {
    echo "Go is needed: apt-get install golang-1.23-go (bookworm-backports)" >&2
    exit 1
}
# Standard library only: no toolchain or module downloads.
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
GO_VERSION=$(go version)
echo "== $GO_VERSION" >&2

bench_exe() {
    cargo bench -p ctxkit-benches --bench "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
cargo bench -p ctxkit-benches --bench rows --bench memory --no-run 2>"$RAW_DIR/build.err" || {
    cat "$RAW_DIR/build.err" >&2
    exit 1
}
ROWS=$(bench_exe rows)
MEMORY=$(bench_exe memory)

echo "== bytes (dhat; Go: runtime.MemStats)" >&2
"$MEMORY" >"$RAW_DIR/memory.txt"
(cd benches/go && go test -v -count 1 -run '^TestNodeBytes$' .) >>"$RAW_DIR/memory.txt"

: >"$RAW_DIR/rows.txt"
: >"$RAW_DIR/go.txt"
for round in $(seq "$ROUNDS"); do
    echo "== round $round/$ROUNDS: ctxkit and tokio-util" >&2
    "$ROWS" $FILTER | sed "s/^/round=$round /" >>"$RAW_DIR/rows.txt"
    echo "== round $round/$ROUNDS: Go" >&2
    (
        cd benches/go
        go test -run '^$' -cpu 2 -benchmem -benchtime "$GOBENCHTIME" \
            -bench '^Benchmark(CreateDrop|WithTimeoutCancel|ErrDeadline|CheckLive|CancelTree|DeepValue)' .
        # One fan-out op spawns up to 100k goroutines: a fixed count keeps the run short.
        go test -run '^$' -cpu 2 -benchtime 5x -bench '^BenchmarkFanOut/waiters=(10000|100000)$' .
    ) | sed "s/^/round=$round /" >>"$RAW_DIR/go.txt" 2>&1
done

python3 - "$RAW_DIR" "$GO_VERSION" "$RESULTS" <<'EOF'
import datetime, json, os, platform, re, statistics, subprocess, sys

raw, go_version, results = sys.argv[1], sys.argv[2], sys.argv[3]
med = statistics.median

rust = {}
for m in re.finditer(r"^round=\d+ row=(\S+) side=(\S+) ns=([\d.]+)", open(f"{raw}/rows.txt").read(), re.M):
    rust.setdefault((m.group(1), m.group(2)), []).append(float(m.group(3)))
go, go_bytes = {}, {}
for m in re.finditer(r"^round=\d+ Benchmark(\S+?)-(\d+)\s+\d+\s+([\d.]+) ns/op(?:\s+(\d+) B/op\s+(\d+) allocs/op)?",
                     open(f"{raw}/go.txt").read(), re.M):
    name, ns = m.group(1), float(m.group(3))
    if name == "ErrDeadline/parallel":
        ns *= int(m.group(2))  # RunParallel reports wall time over all checks: per thread
    go.setdefault(name, []).append(ns)
    if m.group(4):
        go_bytes[name] = (int(m.group(4)), int(m.group(5)))
mem = {}
for m in re.finditer(r"^(memory|churn) side=(\S+) kind=(\S+) \w+=([\d.]+) allocs=([\d.]+)",
                     open(f"{raw}/memory.txt").read(), re.M):
    mem[(m.group(1), m.group(2), m.group(3))] = (float(m.group(4)), float(m.group(5)))

def r(row, side):
    v = rust.get((row, side))
    return med(v) if v else None

def g(name):
    v = go.get(name)
    return med(v) if v else None

def fmt(ns):
    if ns is None:
        return "n/a"
    if ns >= 1e6:
        return f"{ns/1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns/1e3:.2f} µs"
    return f"{ns:.2f} ns"

def ratio(a, b):
    return None if a is None or b is None else a / b

# (row, what it is, Go benchmark, target: (kind, bound)) with kind one of
# "tokio" (ctxkit/tokio-util <= bound), "go" (ctxkit/Go <= bound), "ns" (ctxkit <= bound ns).
ROWS = [
    ("create_cancel_live_parent", "child create + cancel under a live parent (`let (ctx, h) = parent.with_cancel()`, h dropped first) vs `child_token()` create + drop", "CreateDrop/Root=OpenCanceler", ("tokio", 0.8)),
    ("timeout_made_cancelled", "timeout child made + cancelled inside a runtime", "WithTimeoutCancel", ("ns", 250)),
    ("err_deadline_1t", "`err()` under a deadline, 1 thread", "ErrDeadline/threads=1", ("ns", 6)),
    ("err_deadline_2t", "`err()` under a deadline, 2 threads at once (per thread)", "ErrDeadline/parallel", ("ns", 6)),
    ("check_deadline_1t", "`check()` under a deadline, 1 thread", "ErrDeadline/threads=1", ("ns", 6)),
    ("check_deadline_2t", "`check()` under a deadline, 2 threads at once (per thread)", "ErrDeadline/parallel", ("ns", 6)),
    ("is_done", "`is_done()` on a live context", "CheckLive/Done", ("tokio", 1.0)),
    ("fan_out_10k", "10k waiters: cancel to all woken", "FanOut/waiters=10000", ("tokio", 1.0)),
    ("fan_out_100k", "100k waiters: cancel to all woken", "FanOut/waiters=100000", ("tokio", 1.0)),
]
for d in (1, 10, 100, 1000):
    ROWS.append((f"cancel_tree_depth_{d}", f"`cancel_tree`, a chain of {d} made and cancelled", f"CancelTree/depth={d}", ("tokio", 1.0)))
ROWS += [
    ("value_hit_depth_1000", "value lookup at depth 1000, hit", "DeepValueHit/depth=1000", ("go", 1.0)),
    ("value_miss_depth_1000", "value lookup at depth 1000, miss", "DeepValueMiss/depth=1000", ("go", 1.0)),
]

out = []
print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit: "
      + subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip())
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
rounds = max((len(v) for v in rust.values()), default=0)
print(f"{go_version}; {subprocess.run(['rustc', '--version'], capture_output=True, text=True).stdout.strip()}; "
      f"{rounds} rounds, medians")
print()
print("| row | ctxkit | tokio-util | Go | ctxkit/tokio-util | ctxkit/Go | target | holds |")
print("|---|---:|---:|---:|---:|---:|---|---|")
one_thread = {}
for row, what, goname, (kind, bound) in ROWS:
    c, t, gv = r(row, "ctxkit"), r(row, "tokio-util"), g(goname)
    if c is None:
        continue
    rt, rg = ratio(c, t), ratio(c, gv)
    if kind == "tokio":
        target, ok = f"≤ {bound:.2f}× tokio-util", rt is not None and rt <= bound
    elif kind == "go":
        target, ok = f"≤ {bound:.2f}× Go", rg is not None and rg <= bound
    else:
        target, ok = f"≤ {bound} ns", c <= bound
    if row.endswith("_1t"):
        one_thread[row[:-3]] = c
    if row.endswith("_2t") and row[:-3] in one_thread:
        target += " and ≤ 1 thread"
        ok = ok and c <= one_thread[row[:-3]]
    f = lambda x: "" if x is None else f"{x:.2f}"
    print(f"| {what} | {fmt(c)} | {fmt(t)} | {fmt(gv)} | {f(rt)} | {f(rg)} | {target} | {'yes' if ok else '**no**'} |")
    out.append({"row": row, "what": what, "ctxkit_ns": c, "tokio_ns": t, "go_ns": gv,
                "target": target, "holds": ok,
                "ctxkit_rounds": rust.get((row, "ctxkit")), "tokio_rounds": rust.get((row, "tokio-util")),
                "go_rounds": go.get(goname)})

clock = r("clock_read", "ctxkit")
if clock is not None:
    print(f"| for reference: one `Instant::now()` (a clock read) | {fmt(clock)} | | | | | | |")
    out.append({"row": "clock_read", "what": "Instant::now()", "ctxkit_ns": clock, "tokio_ns": None,
                "go_ns": None, "target": "", "holds": True})

p, c = r("cancellable_per_ready_await", "plain"), r("cancellable_per_ready_await", "cancellable")
if p is not None and c is not None:
    per = c - p
    print(f"| `#[cancellable]`, cost per ready await (plain fn {fmt(p)}, annotated {fmt(c)} per await) | {per:.2f} ns | | | | | ≤ 2 ns | {'yes' if per <= 2 else '**no**'} |")
    out.append({"row": "cancellable_per_ready_await", "what": "#[cancellable] per ready await",
                "ctxkit_ns": per, "tokio_ns": None, "go_ns": None, "target": "≤ 2 ns", "holds": per <= 2})

churn = mem.get(("churn", "ctxkit", "with_timeout_cancelled"))
live = mem.get(("memory", "ctxkit", "with_timeout/runtime"))
go_live = mem.get(("memory", "go", "with_timeout/runtime"))
gb = go_bytes.get("WithTimeoutCancel")
if churn or live:
    print()
    print("| bytes per timer | ctxkit bytes (allocations) | Go bytes (allocations) | target | holds |")
    print("|---|---:|---:|---|---|")
    if churn:
        ok = gb is not None and churn[0] <= gb[0]
        print(f"| timeout child made + cancelled: allocated per op (dhat; Go: -benchmem) | {churn[0]:.0f} ({churn[1]:.2f}) | "
              + (f"{gb[0]} ({gb[1]})" if gb else "n/a") + f" | ≤ Go | {'yes' if ok else '**no**'} |")
        out.append({"row": "timeout_bytes", "what": "bytes per timer made + cancelled", "ctxkit_bytes": churn[0],
                    "go_bytes": gb[0] if gb else None, "target": "≤ Go", "holds": ok})
    if live:
        gl = f"{go_live[0]:.0f} ({go_live[1]:.2f})" if go_live else "n/a"
        print(f"| a standing timeout child: live heap (dhat; Go: runtime.MemStats) | {live[0]:.0f} ({live[1]:.2f}) | {gl} | | |")

if results:
    json.dump({"go": go_version, "rows": out}, open(results, "w"), indent=1)
    print(f"\n(saved to {results})", file=sys.stderr)
EOF
