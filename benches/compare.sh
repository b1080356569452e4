#!/usr/bin/env bash
# Run benches/compare.py (Elide against DuckDB and ClickHouse) in a venv
# with duckdb and chdb (created on first use under $VENV, default
# /tmp/elide-bench-venv). Build the release binary first:
# cargo build --release --bin elide
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-/tmp/elide-bench-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import chdb, duckdb" 2>/dev/null || "$VENV/bin/pip" install --quiet chdb duckdb
ELIDE="${ELIDE:-${CARGO_TARGET_DIR:-target}/release/elide}" exec "$VENV/bin/python" benches/compare.py "$@"
