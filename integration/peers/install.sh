#!/usr/bin/env bash
# Installs the real gRPC / W3C peers the `peers_python` tests talk to: a Python venv with grpcio,
# grpcio-tools and opentelemetry-api from PyPI, and the Python stubs of peers/hop.proto.
# Usage: peers/install.sh [VENV_DIR]   (default: $CARGO_TARGET_DIR/peers-venv, else the
# workspace's target/peers-venv; reused when already complete)
# Prints the venv's python to use as CTXKIT_PEERS_PYTHON. Exits 0 with a loud warning, printing
# nothing on stdout, where python3 is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${CARGO_TARGET_DIR:-$here/../../target}/peers-venv}"

if ! command -v python3 >/dev/null 2>&1; then
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!!! python3 NOT FOUND: the real-peer tests (grpcio, opentelemetry) are SKIPPED !!!" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 0
fi

if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt" >&2
    "$venv/bin/python" -m grpc_tools.protoc -I "$here" --python_out="$venv" \
        --grpc_python_out="$venv" "$here/hop.proto" >&2
    touch "$venv/.complete"
fi
echo "$(cd "$venv" && pwd)/bin/python"
