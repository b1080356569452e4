#!/usr/bin/env bash
# Alternating rounds of one query in fresh `elide sql --repeat N` processes,
# one binary after the other, on each data directory given: the median of
# the N runs (elide sql's own figure) and /usr/bin/time's user and system
# CPU (s) of the whole process. For comparing two builds on this noisy
# machine: same data, same order each round.
#
#   benches/sql_ab.sh ROUNDS REPEAT 'SQL' DIR[:DIR...] BIN...
#
# e.g. (after benches/compare.sh --work /tmp/cmp, on its stage directories)
#   benches/sql_ab.sh 3 15 "$(python3 -c "import json; print(json.load(open('/tmp/cmp/elide.json'))['sqls']['distinct_persons_by_day'])")" \
#     /tmp/cmp/stage-before:/tmp/cmp/stage-after-delete:/tmp/cmp/store /tmp/elide-before /tmp/elide-after
set -euo pipefail
if [ $# -lt 5 ]; then
  echo "usage: $0 ROUNDS REPEAT 'SQL' DIR[:DIR...] BIN..." >&2
  exit 2
fi
rounds=$1
repeat=$2
sql=$3
IFS=: read -r -a dirs <<<"$4"
shift 4
err=$(mktemp)
trap 'rm -f "$err"' EXIT
for r in $(seq 1 "$rounds"); do
  for d in "${dirs[@]}"; do
    for b in "$@"; do
      /usr/bin/time -f "%U %S" "$b" sql --data-dir "$d" --repeat "$repeat" --format csv "$sql" >/dev/null 2>"$err" \
        || { cat "$err" >&2; exit 1; }
      median=$(grep -o "median: [0-9.]* ms" "$err" || echo "median: ?")
      echo "round $r $d $b $median user/sys(s): $(tail -1 "$err")"
    done
  done
done
