#!/usr/bin/env bash
# Where an `elide ingest` spends its cores over time: runs it into an
# empty directory and prints, every 0.25 s, each thread's CPU ticks in
# that interval (USER_HZ = 100: 25 ticks is one core for the whole
# interval) and their total (50 is both cores of a 2-core machine).
# Threads are named by their `comm` (unnamed threads inherit the
# binary's name).
#
#   benches/cpu_timeline.sh BIN INPUT.parquet
#
# e.g. benches/cpu_timeline.sh target/release/elide /tmp/elide-compare/input.parquet
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 BIN INPUT.parquet" >&2
  exit 2
fi
bin=$1
input=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" ingest --data-dir "$work/data" "$input" >/dev/null 2>&1 &
pid=$!
declare -A last
t=0
while kill -0 "$pid" 2>/dev/null; do
  sleep 0.25
  t=$((t + 25))
  line="t=$((t / 100)).$(printf '%02d' $((t % 100)))"
  total=0
  for task in /proc/"$pid"/task/*; do
    stat=$(cat "$task/stat" 2>/dev/null) || continue
    name=$(cat "$task/comm" 2>/dev/null) || continue
    # Fields after the command name: utime and stime are the 12th and 13th.
    read -r -a f <<<"${stat##*) }"
    ticks=$((f[11] + f[12]))
    tid=${task##*/}
    d=$((ticks - ${last[$tid]:-0}))
    last[$tid]=$ticks
    if [ "$d" -gt 0 ]; then line="$line $name:$d"; fi
    total=$((total + d))
  done
  echo "$line  total=$total"
done
wait "$pid"
