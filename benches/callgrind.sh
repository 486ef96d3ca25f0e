#!/usr/bin/env bash
# Instructions per operation under callgrind: repeatable where wall-clock times on a busy machine
# are not. Each op of benches/ops.rs runs N times; an `empty` run is subtracted.
#
#   benches/callgrind.sh                      # the default set
#   benches/callgrind.sh create_drop fan_out  # chosen ops
#   FEATURES=live benches/callgrind.sh        # ctxkit built with these features
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || {
    echo "valgrind is needed (apt-get install valgrind)" >&2
    exit 1
}
N="${N:-20000}"
FEATURE_ARGS=()
[ -z "${FEATURES:-}" ] || FEATURE_ARGS=(--features "$FEATURES")
cargo bench -p ctxkit-benches --bench ops "${FEATURE_ARGS[@]}" --no-run 2>/dev/null
BIN=$(cargo bench -p ctxkit-benches --bench ops "${FEATURE_ARGS[@]}" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ops" and m.get("executable"):
        print(m["executable"])')
OPS=("$@")
[ ${#OPS[@]} -gt 0 ] || OPS=(create_drop tokio_create_drop create_drop_parent tokio_create_drop_parent
    create_cancel_parent_scope timeout_cancel create_drop_value is_done err err_deadline
    check_deadline value_hit_100 value_miss_100 fan_out tokio_fan_out awaits_plain
    awaits_cancellable)
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$1" "$N" 2>&1 |
        awk '/Collected/ {print $4}'
}
base=$(count empty)
printf '| op | instructions per op |\n|---|---:|\n'
for op in "${OPS[@]}"; do
    total=$(count "$op")
    printf '| %s | %d |\n' "$op" $(((total - base) / N))
done
