#!/usr/bin/env bash
# Alternating rounds of `elide ingest` of one parquet file into an empty
# directory, one binary after the other, with /usr/bin/time's wall, user
# and system CPU (s) and peak memory (KiB). For comparing two builds on
# this noisy machine: same input, same order each round.
#
#   benches/ingest_ab.sh ROUNDS INPUT.parquet BIN...
#
# e.g. elide gen --events 10000000 --persons 100000 --projects 5 --out /tmp/g10m.parquet
#      benches/ingest_ab.sh 3 /tmp/g10m.parquet /tmp/elide-before /tmp/elide-after
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 ROUNDS INPUT.parquet BIN..." >&2
  exit 2
fi
rounds=$1
input=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for r in $(seq 1 "$rounds"); do
  for b in "$@"; do
    rm -rf "$work/data"
    sync
    /usr/bin/time -o "$work/time" -f "%e %U %S %M" "$b" ingest --data-dir "$work/data" "$input" >/dev/null 2>"$work/stderr" \
      || { cat "$work/stderr" >&2; exit 1; }
    echo "round $r $b wall/user/sys(s)/maxrss(KiB): $(tail -1 "$work/time")"
  done
done
