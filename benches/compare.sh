#!/usr/bin/env bash
# Runs ctxkit's benchmarks side by side with tokio-util (same criterion run) and Go's context
# (benches/go), and prints one table: scenario, ctxkit, tokio-util, Go, and the ratios.
#
#   benches/compare.sh                 # everything (about 10 minutes on 2 cores)
#   benches/compare.sh value           # only the scenarios whose name matches a filter
#
# Environment: MEASURE (criterion seconds per bench, default 2), WARMUP (default 1),
# GOBENCHTIME (default 1s), RAW_DIR (where raw outputs go, default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

FILTER="${1:-}"
MEASURE="${MEASURE:-2}"
WARMUP="${WARMUP:-1}"
GOBENCHTIME="${GOBENCHTIME:-1s}"
RAW_DIR="${RAW_DIR:-$(mktemp -d)}"
mkdir -p "$RAW_DIR"

if ! command -v go >/dev/null 2>&1; then
    echo "== installing Go (Debian's golang-go)" >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    # A newer Go from backports when the machine has it, else the release's own.
    if apt-cache policy golang-1.23-go 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        $SUDO apt-get install -y -q golang-1.23-go >/dev/null
        export PATH="/usr/lib/go-1.23/bin:$PATH"
    else
        $SUDO apt-get install -y -q golang-go >/dev/null
    fi
fi

echo "== criterion: ctxkit and tokio-util (raw output in $RAW_DIR)" >&2
cargo bench -p ctxkit-benches --bench context -- --measurement-time "$MEASURE" --warm-up-time "$WARMUP" \
    ${FILTER:+"$FILTER"} >"$RAW_DIR/criterion.txt" 2>"$RAW_DIR/criterion.err" || {
    cat "$RAW_DIR/criterion.err" >&2
    exit 1
}
# The in-suite fan-out runs on a heap shaped by every scenario before it (and tokio-util's
# right after ctxkit's): also run it with each side alone in a fresh process, alternating.
ISOLATED_ROUNDS="${ISOLATED_ROUNDS:-3}"
: >"$RAW_DIR/isolated.txt"
if [ -z "$FILTER" ] || [[ "fan_out/waiters=100000" == *"$FILTER"* ]]; then
    echo "== fan-out of 100,000, each side in its own process ($ISOLATED_ROUNDS rounds)" >&2
    for _ in $(seq "$ISOLATED_ROUNDS"); do
        for side in ctxkit tokio-util; do
            cargo bench -p ctxkit-benches --bench context -- --measurement-time "$MEASURE" --warm-up-time "$WARMUP" \
                "^fan_out/waiters=100000/$side\$" >>"$RAW_DIR/isolated.txt" 2>>"$RAW_DIR/criterion.err"
        done
    done
fi
echo "== bytes per node (dhat)" >&2
cargo bench -p ctxkit-benches --bench memory >"$RAW_DIR/memory.txt" 2>"$RAW_DIR/memory.err"

echo "== go test -bench ($(go version | cut -d' ' -f3))" >&2
(
    cd benches/go
    go test -run '^$' -benchmem -benchtime "$GOBENCHTIME" \
        -bench '^Benchmark(CreateDrop|CancelTree|CommonParentCancel|WithTimeout|CheckLive|DeepValue)' .
    # One fan-out op spawns up to 100k goroutines: a fixed count keeps the run short.
    go test -run '^$' -benchtime 20x -bench '^BenchmarkFanOut' .
    go test -v -run '^TestNodeBytes$' -count 1 .
) >"$RAW_DIR/go.txt" 2>&1

python3 - "$RAW_DIR" "$FILTER" <<'EOF'
import re, sys, platform, os, datetime

raw, flt = sys.argv[1], sys.argv[2]
UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}

# criterion: "<id>\n   time:   [low unit mid unit high unit]" (the id may share the line)
crit = {}
text = open(os.path.join(raw, "criterion.txt")).read()
for m in re.finditer(r"^(\S+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", text, re.M):
    ident, val, unit = m.group(1), float(m.group(2)), m.group(3)
    scenario, side = ident.rsplit("/", 1)
    crit.setdefault(scenario, {})[side] = val * UNITS[unit]

GO = {
    "create_drop/background": "CreateDrop/Root=Background",
    "create_drop/cancel_parent": "CreateDrop/Root=OpenCanceler",
    "common_parent_cancel": "CommonParentCancel",
    "with_timeout": "WithTimeout",
    "check/is_done": "CheckLive/Done",
    "check/err": "CheckLive/Err",
}
for d in (1, 10, 100, 1000):
    GO[f"cancel_tree/depth={d}"] = f"CancelTree/depth={d}"
for n in (1000, 100000):
    GO[f"fan_out/waiters={n}"] = f"FanOut/waiters={n}"
for d in (10, 100, 1000):
    GO[f"value_hit/depth={d}"] = f"DeepValueHit/depth={d}"
    GO[f"value_miss/depth={d}"] = f"DeepValueMiss/depth={d}"
gores = {}
gotext = open(os.path.join(raw, "go.txt")).read()
for m in re.finditer(r"^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op", gotext, re.M):
    gores[m.group(1)] = float(m.group(2))

def fmt(ns):
    if ns is None:
        return "n/a"
    if ns >= 1e6:
        return f"{ns/1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns/1e3:.2f} µs"
    return f"{ns:.2f} ns"

def ratio(a, b):
    return "" if a is None or b is None else f"{a/b:.2f}"

rows = []
attr = []
for scenario, sides in crit.items():
    if scenario.startswith("cancellable/"):
        attr.append((scenario, sides.get("plain"), sides.get("cancellable")))
        continue
    go = gores.get(GO.get(scenario, "-"))
    rows.append((scenario, sides["ctxkit"], sides.get("tokio-util"), go))

print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except Exception:
    pass
print(f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
gov = re.search(r"go(\d+\.\d+(\.\d+)?)", os.popen("go version").read())
print(f"go: {gov.group(0) if gov else '?'}; rustc: {os.popen('rustc --version').read().split()[1]}")
print()
print("| scenario | ctxkit | tokio-util | Go | ctxkit/tokio-util | ctxkit/Go |")
print("|---|---:|---:|---:|---:|---:|")
for s, c, t, g in rows:
    print(f"| {s} | {fmt(c)} | {fmt(t)} | {fmt(g)} | {ratio(c, t)} | {ratio(c, g)} |")

if attr:
    AWAITS = 10_000
    print()
    print(f"| #[cancellable], {AWAITS} awaits per call | plain fn | #[cancellable] fn | overhead per await |")
    print("|---|---:|---:|---:|")
    for s, p, c in attr:
        per = "" if p is None or c is None else f"{(c - p) / AWAITS:.2f} ns"
        print(f"| {s} | {fmt(p)} | {fmt(c)} | {per} |")

iso = {}
for m in re.finditer(r"^fan_out/waiters=100000/(\S+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]",
                     open(os.path.join(raw, "isolated.txt")).read(), re.M):
    iso.setdefault(m.group(1), []).append(float(m.group(2)) * UNITS[m.group(3)])
if iso.get("ctxkit") and iso.get("tokio-util"):
    med = lambda v: sorted(v)[len(v) // 2]
    c, t = med(iso["ctxkit"]), med(iso["tokio-util"])
    print()
    print(f"| fan_out/waiters=100000, each side alone in a fresh process ({len(iso['ctxkit'])} rounds, median) | ctxkit | tokio-util | ctxkit/tokio-util |")
    print("|---|---:|---:|---:|")
    print(f"| runs: ctxkit {', '.join(fmt(x) for x in iso['ctxkit'])}; tokio-util {', '.join(fmt(x) for x in iso['tokio-util'])} | {fmt(c)} | {fmt(t)} | {ratio(c, t)} |")

mem = {}
for path in ("memory.txt", "go.txt"):
    for m in re.finditer(r"^memory side=(\S+) kind=(\S+) live_bytes=([\d.]+) allocs=([\d.]+)",
                         open(os.path.join(raw, path)).read(), re.M):
        mem.setdefault(m.group(2), {})[m.group(1)] = (float(m.group(3)), float(m.group(4)))
print()
print("| node kind | ctxkit bytes (allocs) | tokio-util bytes (allocs) | Go bytes (allocs) |")
print("|---|---:|---:|---:|")
for kind, sides in mem.items():
    cell = lambda s: f"{sides[s][0]:.0f} ({sides[s][1]:.2f})" if s in sides else "n/a"
    print(f"| {kind} | {cell('ctxkit')} | {cell('tokio-util')} | {cell('go')} |")
EOF
