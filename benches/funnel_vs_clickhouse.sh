#!/usr/bin/env bash
# Run benches/funnel_vs_clickhouse.py in a venv with chdb (created on first
# use under $VENV, default /tmp/elide-bench-venv). Build the release binary
# first: cargo build --release --bin elide
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-/tmp/elide-bench-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet chdb
fi
ELIDE="${ELIDE:-${CARGO_TARGET_DIR:-target}/release/elide}" exec "$VENV/bin/python" benches/funnel_vs_clickhouse.py "$@"
