#!/usr/bin/env bash
# Property filters, two builds alternating: `properties_match` over a
# store's events (`elide sql --repeat 7`: the median of 7 after a
# warm-up), and the persons list with one filter (the whole `elide
# persons list` process). Prints each build's count and time per query
# and round; the counts must agree.
#
#   benches/filters_ab.sh ROUNDS EVENTS_DIR PERSONS_DIR BIN...
#
# e.g. (EVENTS_DIR: `elide ingest` of `elide gen`'s 10M events;
#       PERSONS_DIR: `elide bench-persons --events 400000 --persons 100000`)
#   benches/filters_ab.sh 3 /tmp/gdir /tmp/bp /tmp/elide-before /tmp/elide-after
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 ROUNDS EVENTS_DIR PERSONS_DIR BIN..." >&2
  exit 2
fi
rounds=$1
events=$2
persons=$3
shift 3
filters=(
  '[{"key": "$browser", "value": "Safari"}]'
  '[{"key": "plan", "value": "enterprise"}]'
  '[{"key": "amount", "value": 20, "operator": "gt"}]'
  '[{"key": "amount", "value": 28.32}]'
)
person_filters=(
  '{"key": "$initial_browser", "operator": "exact", "value": "Safari"}'
  '{"key": "$initial_os", "operator": "is_not", "value": "Linux"}'
)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for f in "${filters[@]}"; do
    for b in "$@"; do
      sql="SELECT count(*) FROM events WHERE properties_match(properties, '$f')"
      median=$("$b" sql --data-dir "$events" --repeat 7 --format csv "$sql" 2>&1 >"$out" | grep -o 'median: [0-9.]* ms')
      echo "round $r $b events $f: $(tail -1 "$out") rows, $median"
    done
  done
  for f in "${person_filters[@]}"; do
    for b in "$@"; do
      start=$(date +%s%N)
      n=$("$b" persons list --data-dir "$persons" --project 1 --limit 10000 --property "$f" --format json | grep -c '"uuid"')
      end=$(date +%s%N)
      echo "round $r $b persons $f: $n listed, $(( (end - start) / 1000000 )) ms"
    done
  done
done
