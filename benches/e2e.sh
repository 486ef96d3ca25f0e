#!/usr/bin/env bash
# What a service pays for ctxkit's layers, end to end on loopback (release build):
#
# - an axum hello-world route: bare, behind `ServerLayer`, and behind `ServerLayer` with a
#   `#[cancellable]` handler reading a travelling key; saturated by wrk (16 connections) and
#   loaded at a fixed rate by benches/e2e's load client;
# - a tonic unary method: bare (plain tonic channel), `ServerLayer` + `ClientLayer` (each call
#   under a context with a 5 s timeout, sent as grpc-timeout), and the same with a
#   `#[cancellable]` handler; saturated and at a fixed rate by the load client.
#
# All six servers run at once; every round loads each in turn (rotating the order) for SECS at
# saturation and SECS at a fixed rate. The table gives medians over the rounds; the throughput
# loss and the p99 added are taken against the bare variant within each round (neighbouring
# loads see the same background load on a shared machine), and their medians reported.
#
#   benches/e2e.sh                    # ROUNDS=15 SECS=1 RATE=1000 CONNS=16
#   ROUNDS=5 benches/e2e.sh grpc      # only the variants whose name matches
#
# Each server runs on one worker thread; with `taskset` the servers and the load share no core.
set -euo pipefail
cd "$(dirname "$0")/.."

FILTER="${1:-}"
ROUNDS="${ROUNDS:-15}"
SECS="${SECS:-1}"
RATE="${RATE:-1000}"
CONNS="${CONNS:-16}"
RAW="${RAW_DIR:-$(mktemp -d)}"
mkdir -p "$RAW"
command -v wrk >/dev/null || {
    echo "wrk is needed (apt-get install wrk)" >&2
    exit 1
}

cargo build --release -q -p ctxkit-e2e
BIN=target/release
SERVER_CPU=() LOAD_CPU=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1)
fi

VARIANTS=()
for v in http-bare http-layer http-cancellable grpc-bare grpc-layer grpc-cancellable; do
    [[ -z "$FILTER" || "$v" == *"$FILTER"* ]] && VARIANTS+=("$v")
done
n=${#VARIANTS[@]}

declare -A ADDR PID
cleanup() {
    for v in "${!PID[@]}"; do kill "${PID[$v]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for v in "${VARIANTS[@]}"; do
    rm -f "$RAW/$v.out"
    "${SERVER_CPU[@]}" "$BIN/e2e-server" "$v" 0 >"$RAW/$v.out" &
    PID[$v]=$!
done
for v in "${VARIANTS[@]}"; do
    for _ in $(seq 600); do
        grep -q listening "$RAW/$v.out" 2>/dev/null && break
        sleep 0.05
    done
    ADDR[$v]=$(awk '/listening/ {print $2}' "$RAW/$v.out")
    [ -n "${ADDR[$v]}" ] || {
        echo "the $v server did not start within 30 s" >&2
        exit 1
    }
done

echo "== $ROUNDS rounds of ${VARIANTS[*]}, ${SECS}s per load (raw output in $RAW)" >&2
: >"$RAW/results.txt"
for round in $(seq "$ROUNDS"); do
    for k in $(seq 0 $((n - 1))); do
        v=${VARIANTS[$(((k + round) % n))]}
        addr=${ADDR[$v]}
        extra=()
        case "$v" in
            http-*)
                proto=http
                sat=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency \
                    -H 'x-request-id: r-1' "http://$addr/" | tee -a "$RAW/wrk.txt" |
                    awk '/Requests\/sec/ {printf "rps=%s ", $2} / 99%/ {printf "wrk_p99=%s ", $2}')
                ;;
            grpc-*)
                proto=grpc
                [ "$v" = grpc-bare ] || extra=(--ctxkit)
                sat=$("${LOAD_CPU[@]}" "$BIN/e2e-load" grpc "$addr" --secs "$SECS" --warmup 0.2 \
                    --conns "$CONNS" "${extra[@]}")
                ;;
        esac
        fixed=$("${LOAD_CPU[@]}" "$BIN/e2e-load" "$proto" "$addr" --secs "$SECS" --warmup 0.2 \
            --conns "$CONNS" --rate "$RATE" "${extra[@]}")
        echo "round=$round variant=$v saturation: $sat | rate=$RATE: $fixed" | tee -a "$RAW/results.txt" >&2
    done
done

python3 "$(dirname "$0")/e2e_table.py" "$RAW/results.txt" "$RATE"
