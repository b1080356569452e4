#!/usr/bin/env bash
# Regenerates data/compat/text-person-ids: a tiny data directory whose
# parts hold event `uuid`s as 16 bytes and `person_id`s as text (manifest
# format 1), as builds from 086f9fa wrote until person ids were stored as
# bytes: pass a binary built at 086f9fa as $1. Never regenerate it:
# tests/it/compat.rs opens it forever.
set -euo pipefail
elide=${1:?usage: generate_v2.sh PATH-TO-ELIDE-BUILT-AT-086f9fa}
cd "$(dirname "$0")"
out=text-person-ids
rm -rf "$out" && mkdir -p "$out"
input=$(mktemp --suffix=.jsonl)
# Event i: distinct id user-(i % 5), whose person is
# 00000000-0000-4000-9000-<i % 5, 12 digits>; user-4's events have none.
for i in $(seq 1 30); do
  k=$((i % 5))
  person=$(printf '"00000000-0000-4000-9000-%012d"' "$k")
  [ "$k" = 4 ] && person=null
  printf '{"uuid":"00000000-0000-4000-8000-%012d","event":"$pageview","distinct_id":"user-%d","person_id":%s,"project_id":%d,"timestamp":"2026-10-%02dT12:00:00Z","properties":{"$browser":"Firefox"}}\n' "$i" "$k" "$person" $((1 + i % 2)) $((1 + i % 3)) >> "$input"
done
"$elide" ingest --data-dir "$out" "$input"
"$elide" delete --data-dir "$out" --project 1 --distinct-id user-1
rm -f "$input" "$out/LOCK"
