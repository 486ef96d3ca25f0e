#!/usr/bin/env bash
# Installs the real gRPC / W3C / OTLP peers the `peers_python` and `otel_otlp` tests talk to: a
# Python venv with grpcio, grpcio-tools and the OpenTelemetry SDK from PyPI, and the Python stubs
# of peers/hop.proto.
# Usage: peers/install.sh [VENV_DIR]   (default: $CARGO_TARGET_DIR/peers-venv, else the
# workspace's target/peers-venv; reused when already complete)
# Prints the venv's python to use as CTXKIT_PEERS_PYTHON.
# Where python3 is missing or PyPI cannot be reached, it says so once, loudly, on stderr, prints
# nothing on stdout and exits 0 (the tests then skip), except under CI=true, where it fails with
# that message.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${CARGO_TARGET_DIR:-$here/../../target}/peers-venv}"
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac

under_ci=false
case "${CI:-}" in "" | false | 0) ;; *) under_ci=true ;; esac

unavailable() {
    if $under_ci; then
        echo "peers/install.sh: error: $* (CI=true: the Python peers must be installed)" >&2
        exit 1
    fi
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!!! SKIPPED: $*; the real-peer tests (grpcio, OpenTelemetry) will not run" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 0
}

if ! command -v python3 >/dev/null 2>&1; then
    unavailable "python3 not found"
fi

mkdir -p "$(dirname "$venv")"
# Two test binaries may ask at once: one installs, the other waits for it.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
fi

if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    if ! python3 -m venv "$venv" >"$log" 2>&1; then
        cat "$log" >&2
        rm -rf "$venv"
        unavailable "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    # Short network timeouts: offline, this fails within a minute instead of retrying for long.
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --timeout 30 --retries 2 -r "$here/requirements.txt" >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        rm -rf "$venv"
        unavailable "pip could not install $here/requirements.txt (is PyPI reachable?)"
    fi
    "$venv/bin/python" -m grpc_tools.protoc -I "$here" --python_out="$venv" \
        --grpc_python_out="$venv" "$here/hop.proto" >&2
    touch "$venv/.complete"
fi
echo "$(cd "$venv" && pwd)/bin/python"
