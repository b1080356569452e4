#!/usr/bin/env bash
# Regenerates data/compat/v1: a tiny data directory in on-disk format v1.
# Never regenerate v1 once released: tests/it/compat.rs opens it forever.
set -euo pipefail
cd "$(dirname "$0")"
out=v1
rm -rf "$out" && mkdir -p "$out"
input=$(mktemp --suffix=.jsonl)
for i in $(seq 1 30); do
  printf '{"uuid":"00000000-0000-4000-8000-%012d","event":"$pageview","distinct_id":"user-%d","project_id":%d,"timestamp":"2026-10-%02dT12:00:00Z","properties":{"$browser":"Firefox","email":"user%d@example.com"}}\n' "$i" $((i % 5)) $((1 + i % 2)) $((1 + i % 3)) $((i % 5)) >> "$input"
done
elide ingest --data-dir "$out" "$input"
elide delete --data-dir "$out" --project 1 --distinct-id user-1
rm -f "$input" "$out/LOCK"
