#!/usr/bin/env python3
"""Elide against DuckDB and ClickHouse (chdb) on the same generated events,
in one run, each engine in a process of its own, one after the other.

    benches/compare.sh [--events 10000000] [--work /tmp/elide-compare] [--runs 5]

1. `elide bench-compare` generates the events (`elide gen`'s model: 5
   projects whose persons are split 1/p, 90 days), ingests them through the
   library and, in that one process: times the queries, deletes 1% of the
   persons (every 100th person in person_id order), times the queries
   again, purges, times them again. Its JSON names the file, the time
   range, the ids looked up and the persons deleted.
   Queries: count by event (project 1); count(DISTINCT person_id) by day
   (project 1, 30 days); rows of 100 persons (`person_id IN`); of one
   person; of 100 distinct ids (project 1).
2. DuckDB (a database file) and ClickHouse (chdb, a MergeTree table in
   PostHog's sort order, `person_id` as a UUID) then do the same, each in
   a fresh process started by this script: load the file, the queries, a
   `DELETE … WHERE person_id IN (…)` of the same persons (ClickHouse's
   lightweight delete), the queries, the purge (DuckDB `CHECKPOINT`,
   ClickHouse `OPTIMIZE TABLE … FINAL`), the queries.
3. Every query's rows must be equal across the three at each stage (the
   script fails otherwise); it prints each figure, the best peer and
   Elide's ratio to it.
4. With --pairs N (default 5): Elide's three stages, kept by
   bench-compare as hard-linked copies, timed against each other in
   alternating fresh processes (`elide sql --repeat`, rotating order), N
   rounds; the median ratio of after-the-delete and after-the-purge to
   before, per query — steadier than one in-process figure per stage.
5. With --ingest-rounds N: the three engines' loads of the same file again,
   N rounds in turn (in rotating order), each in a fresh process into an empty directory
   (`elide ingest` for Elide), with medians: one load per engine is too
   noisy a figure on a shared machine. `--input FILE --ingest-rounds N`
   runs only these rounds, on any parquet file of Elide's columns.

Queries are timed as one warm-up and the median of --runs, in the engine's
own process, so a query's time includes planning but not process start.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

QUERIES = {
    "duckdb": {
        "count_by_event": "SELECT event, count(*) FROM events WHERE project_id = 1 GROUP BY event ORDER BY event",
        "distinct_persons_by_day": (
            "SELECT date_trunc('day', timestamp) AS day, count(DISTINCT person_id) FROM events "
            "WHERE project_id = 1 AND timestamp >= '{start}' AND timestamp < '{end}' GROUP BY day ORDER BY day"),
        "lookup_person_ids": "SELECT 'rows', count(*) FROM events WHERE person_id IN ({person_ids})",
        "lookup_one_person": "SELECT 'rows', count(*) FROM events WHERE person_id = '{person_id}'",
        "lookup_distinct_ids": (
            "SELECT 'rows', count(*) FROM events WHERE project_id = 1 AND distinct_id IN ({distinct_ids})"),
    },
    "clickhouse": {
        "count_by_event": "SELECT event, count() FROM b.events WHERE project_id = 1 GROUP BY event ORDER BY event",
        "distinct_persons_by_day": (
            "SELECT toDate(timestamp) AS day, count(DISTINCT person_id) FROM b.events "
            "WHERE project_id = 1 AND timestamp >= parseDateTime64BestEffort('{start}', 6, 'UTC') "
            "AND timestamp < parseDateTime64BestEffort('{end}', 6, 'UTC') GROUP BY day ORDER BY day"),
        "lookup_person_ids": "SELECT 'rows', count() FROM b.events WHERE person_id IN ({person_ids})",
        "lookup_one_person": "SELECT 'rows', count() FROM b.events WHERE person_id = '{person_id}'",
        "lookup_distinct_ids": (
            "SELECT 'rows', count() FROM b.events WHERE project_id = 1 AND distinct_id IN ({distinct_ids})"),
    },
}

STAGES = ["before", "after_delete", "after_purge"]


def quoted(ids):
    return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)


def key(k):
    """A result key as Elide's JSON writes it (a day as YYYY-MM-DD)."""
    if isinstance(k, (datetime.date, datetime.datetime)):
        return k.strftime("%Y-%m-%d")
    return str(k)


def queries(dialect, spec):
    return {name: sql.format(start=spec["start"], end=spec["end"],
                             person_ids=quoted(spec["person_ids"]), person_id=spec["person_ids"][0],
                             distinct_ids=quoted(spec["distinct_ids"]))
            for name, sql in QUERIES[dialect].items()}


def timed(run, sqls, runs):
    """Each query: one warm-up, then the median of `runs` (ms) and its rows."""
    out = {}
    for name, sql in sqls.items():
        rows = run(sql)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            rows = run(sql)
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = {"ms": statistics.median(times), "rows": [[key(k), int(n)] for k, n in rows]}
        print(f"  {name:<24} {out[name]['ms']:>9.1f} ms", file=sys.stderr, flush=True)
    return out


def stages(res, spec, dialect, run, execute, delete_sql, purge_sql, used_bytes):
    """The steps after the load, the same for every peer: bytes, the
    queries, the delete, the queries, the purge, the queries, bytes."""
    res["bytes"] = used_bytes()
    os.sync()
    sqls = queries(dialect, spec)
    res["before"] = timed(run, sqls, spec["runs"])
    t = time.perf_counter()
    execute(delete_sql)
    res["delete_ms"] = (time.perf_counter() - t) * 1e3
    res["after_delete"] = timed(run, sqls, spec["runs"])
    t = time.perf_counter()
    execute(purge_sql)
    res["purge_s"] = time.perf_counter() - t
    res["after_purge"] = timed(run, sqls, spec["runs"])
    res["bytes_after_purge"] = used_bytes()
    return res


def duckdb_load(input_path, work):
    """A fresh database file loaded with the input: (connection, seconds)."""
    import duckdb

    path = os.path.join(work, "duck.db")
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    con = duckdb.connect(path)
    con.execute("SET TimeZone = 'UTC'")
    t = time.perf_counter()
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet('{input_path}')")
    con.execute("CHECKPOINT")
    return con, time.perf_counter() - t


def duckdb_peer(spec, work):
    import duckdb

    con, load_s = duckdb_load(spec["input"], work)
    res = {"engine": "duckdb", "version": duckdb.__version__, "load_s": load_s}

    def used_bytes():
        size = con.execute("PRAGMA database_size").fetchone()
        # (database_name, database_size, block_size, total_blocks, used_blocks, ...)
        return int(size[2]) * int(size[4])

    stages(res, spec, "duckdb", lambda sql: con.execute(sql).fetchall(), con.execute,
           f"DELETE FROM events WHERE person_id IN ({quoted(spec['deleted_person_ids'])})",
           "CHECKPOINT", used_bytes)
    con.close()
    return res


def clickhouse_load(input_path, work):
    """A fresh MergeTree table loaded with the input: (session, seconds)."""
    from chdb import session

    path = os.path.join(work, "ch")
    if os.path.exists(path):
        shutil.rmtree(path)
    s = session.Session(path)
    s.query("CREATE DATABASE IF NOT EXISTS b")
    # PostHog's events table: sorted by (team, day, event, distinct id), person_id a UUID.
    s.query("CREATE TABLE b.events (uuid UUID, event String, distinct_id String, person_id Nullable(UUID), "
            "project_id Int64, timestamp DateTime64(6, 'UTC'), properties Nullable(String), "
            "session_id Nullable(String)) ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) "
            "ORDER BY (project_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))")
    t = time.perf_counter()
    s.query(f"INSERT INTO b.events SELECT * FROM file('{input_path}', Parquet)")
    return s, time.perf_counter() - t


def clickhouse_peer(spec, work):
    import chdb

    s, load_s = clickhouse_load(spec["input"], work)
    res = {"engine": "clickhouse", "version": chdb.__version__, "load_s": load_s}
    t = time.perf_counter()
    s.query("OPTIMIZE TABLE b.events FINAL")
    res["merge_s"] = time.perf_counter() - t

    def q(sql):
        return json.loads(str(s.query(sql + " FORMAT JSONCompact")))["data"]

    def used_bytes():
        return int(q("SELECT sum(bytes_on_disk) FROM system.parts "
                     "WHERE database = 'b' AND table = 'events' AND active")[0][0])

    stages(res, spec, "clickhouse", q, s.query,
           f"DELETE FROM b.events WHERE person_id IN ({quoted(spec['deleted_person_ids'])})",
           "OPTIMIZE TABLE b.events FINAL", used_bytes)
    s.close()
    return res


def ingest_rounds(elide_bin, input_path, work, rounds):
    """The three engines' loads of one file, `rounds` times in turn (the order
    rotating from round to round), each in a fresh process into an empty
    directory, with `sync` before each; print
    each round and the medians. Each engine's time is its load alone, as in
    the main comparison: the time `elide ingest` reports (the ingest and
    its commit, not the store's open and close; the whole process's is
    printed too), the peers' load statement (DuckDB's with its
    CHECKPOINT)."""
    times = {"elide": [], "duckdb": [], "clickhouse": []}
    process = []
    data = os.path.join(work, "ingest-elide")
    names = list(times)
    for rnd in range(1, rounds + 1):
        k = (rnd - 1) % len(names)
        for name in names[k:] + names[:k]:
            if os.path.exists(data):
                shutil.rmtree(data)
            os.sync()
            if name == "elide":
                t = time.perf_counter()
                r = subprocess.run([elide_bin, "ingest", "--data-dir", data, input_path], check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                process.append(time.perf_counter() - t)
                m = re.search(r"ingested \d+ rows .* in ([0-9.]+) s", r.stderr)
                if not m:
                    raise SystemExit(f"no time in elide ingest's output: {r.stderr[-300:]}")
                s = float(m.group(1))
            else:
                out = subprocess.run([sys.executable, __file__, "--peer-ingest", name, "--input", input_path,
                                      "--work", work], check=True, stdout=subprocess.PIPE, text=True).stdout
                s = last_json(out)["load_s"]
            times[name].append(s)
        r = {n: v[-1] for n, v in times.items()}
        print(f"  round {rnd}: Elide {r['elide']:.2f} s (process {process[-1]:.2f} s), DuckDB {r['duckdb']:.2f} s, ClickHouse "
              f"{r['clickhouse']:.2f} s; Elide / best {r['elide'] / min(r['duckdb'], r['clickhouse']):.2f}x",
              flush=True)
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(os.path.join(work, "ch"), ignore_errors=True)
    for p in ("duck.db", "duck.db.wal"):
        if os.path.exists(os.path.join(work, p)):
            os.remove(os.path.join(work, p))
    med = {n: statistics.median(v) for n, v in times.items()}
    per_round = [e / min(d, c) for e, d, c in zip(times["elide"], times["duckdb"], times["clickhouse"])]
    best = min(("duckdb", "clickhouse"), key=lambda n: med[n])
    print(f"  medians of {rounds}: Elide {med['elide']:.2f} s, DuckDB {med['duckdb']:.2f} s, ClickHouse "
          f"{med['clickhouse']:.2f} s; Elide / best ({best}) {med['elide'] / med[best]:.2f}x; "
          f"per round Elide / that round's best: median {statistics.median(per_round):.2f}x "
          f"({min(per_round):.2f}–{max(per_round):.2f})")


def stage_pairs(elide_bin, spec, rounds, repeat):
    """Elide's queries at its three stages (before the delete, after it, after
    the purge), each round one fresh `elide sql --repeat` process per stage in
    rotating order; the median over rounds of each stage's ratio to before."""
    dirs = spec["stage_dirs"]
    out = {}
    for name, sql in spec["sqls"].items():
        ratios = {s: [] for s in STAGES if s != "before"}
        for rnd in range(rounds):
            order = STAGES[rnd % len(STAGES):] + STAGES[:rnd % len(STAGES)]
            ms = {}
            for stage in order:
                r = subprocess.run([elide_bin, "sql", "--data-dir", dirs[stage], "--repeat", str(repeat),
                                    "--format", "csv", sql], capture_output=True, text=True, check=True)
                m = re.search(r"median: ([0-9.]+) ms", r.stderr)
                if not m:
                    raise SystemExit(f"no median in elide sql's output: {r.stderr[-300:]}")
                ms[stage] = float(m.group(1))
            for s in ratios:
                ratios[s].append(ms[s] / ms["before"])
        out[name] = {s: (statistics.median(v), min(v), max(v)) for s, v in ratios.items()}
    return out


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def row(label, unit, elide, peers, fmt="{:.1f}", excluded=()):
    """One table row; the peers in `excluded` are shown but not compared."""
    compared = [(p, v) for p, v in peers.items() if p not in excluded] or list(peers.items())
    best_name, best = min(compared, key=lambda kv: kv[1])
    cells = [fmt.format(elide)] + [fmt.format(v) + (" (no rewrite)" if p in excluded else "")
                                   for p, v in peers.items()]
    print(f"| {label} ({unit}) | " + " | ".join(cells) + f" | {elide / best:.2f}x {best_name} |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--elide", default=os.environ.get("ELIDE", "target/release/elide"))
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/tmp/elide-compare")
    ap.add_argument("--compression", help="Elide's part codec (lz4, zstd, zstd:LEVEL, tiered, tiered:LEVEL, snappy, none)")
    ap.add_argument("--pairs", type=int, default=5,
                    help="rounds of Elide's stages against each other, each query in a fresh "
                         "`elide sql --repeat` process per stage, in rotating order (0: none)")
    ap.add_argument("--peer", choices=["duckdb", "clickhouse"],
                    help="(internal) run one peer on --spec and print its JSON")
    ap.add_argument("--spec", help="(internal) Elide's JSON, for --peer")
    ap.add_argument("--ingest-rounds", type=int, default=0,
                    help="then this many rounds of the three engines' loads of the input in turn, "
                         "each in a fresh process, with medians (0: none)")
    ap.add_argument("--input", help="only the ingest rounds, of this parquet file (no generation, no queries)")
    ap.add_argument("--peer-ingest", choices=["duckdb", "clickhouse"],
                    help="(internal) load --input into one peer and print its time as JSON")
    args = ap.parse_args()

    if args.peer_ingest:
        load = duckdb_load if args.peer_ingest == "duckdb" else clickhouse_load
        conn, load_s = load(args.input, args.work)
        conn.close()
        print(json.dumps({"load_s": load_s}))
        return 0
    if args.input:
        os.makedirs(args.work, exist_ok=True)
        print(f"ingest of {args.input}, {max(args.ingest_rounds, 1)} rounds", flush=True)
        ingest_rounds(args.elide, args.input, args.work, max(args.ingest_rounds, 1))
        return 0

    if args.peer:
        with open(args.spec) as f:
            spec = json.load(f)
        peer = duckdb_peer if args.peer == "duckdb" else clickhouse_peer
        print(json.dumps(peer(spec, args.work)))
        return 0

    if os.path.exists(args.work):
        shutil.rmtree(args.work)
    cmd = [args.elide, "bench-compare", "--data-dir", args.work, "--events", str(args.events),
           "--persons", str(args.persons), "--runs", str(args.runs)]
    if args.compression:
        cmd += ["--compression", args.compression]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    elide = last_json(out)
    spec_path = os.path.join(args.work, "elide.json")
    with open(spec_path, "w") as f:
        json.dump(elide, f)

    peers = {}
    for name in ["duckdb", "clickhouse"]:
        os.sync()  # no write-back of the previous engine's files during the timings
        print(f"$ {name} (own process)", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--peer", name, "--spec", spec_path,
                              "--work", args.work], check=True, stdout=subprocess.PIPE, text=True).stdout
        peers[name] = last_json(out)

    same = True
    for stage in STAGES:
        for name in QUERIES["duckdb"]:
            want = elide[stage][name]["rows"]
            for p, r in peers.items():
                if r[stage][name]["rows"] != want:
                    same = False
                    print(f"MISMATCH {stage} {name}: elide {want[:5]}… {p} {r[stage][name]['rows'][:5]}…")

    mib = 1 << 20
    print(f"\n{elide['events']} events, {len(elide['deleted_person_ids'])} persons deleted "
          f"({elide['rows_deleted']} rows); DuckDB {peers['duckdb']['version']}, "
          f"chdb {peers['clickhouse']['version']}; Elide's parts {elide['compression']}; "
          f"queries: median of {args.runs} after a warm-up")
    print("\n| line | Elide | DuckDB | ClickHouse | Elide / best peer |\n|---|---|---|---|---|")
    for name in QUERIES["duckdb"]:
        for stage in STAGES:
            row(f"{name}, {stage.replace('_', ' ')}", "ms", elide[stage][name]["ms"],
                {p: r[stage][name]["ms"] for p, r in peers.items()})
    row("delete of 1% of persons, until hidden", "ms", elide["delete_ms"],
        {p: r["delete_ms"] for p, r in peers.items()})
    # A purge that left the file as large as before rewrote nothing: the
    # deleted rows' bytes are still on disk (DuckDB's CHECKPOINT).
    kept = [p for p, r in peers.items() if r["bytes_after_purge"] >= r["bytes"]]
    row("purge", "s", elide["purge_s"], {p: r["purge_s"] for p, r in peers.items()}, "{:.2f}", kept)
    row("ingest of the parquet file", "s", elide["load_s"],
        {p: r["load_s"] for p, r in peers.items()}, "{:.2f}")
    # Elide's whole store directory, as the peers' figures are their whole storage.
    row("bytes on disk", "MiB", elide["store_bytes"] / mib, {p: r["bytes"] / mib for p, r in peers.items()})
    row("bytes after the purge", "MiB", elide["store_bytes_after_purge"] / mib,
        {p: r["bytes_after_purge"] / mib for p, r in peers.items()})
    print(f"\nElide's delete: {elide['delete_find_ids_ms']:.1f} ms finding the persons' distinct ids (a scan of "
          f"person_id), {elide['delete_ms'] - elide['delete_find_ids_ms']:.1f} ms deleting them (delete_many; "
          f"what the persons layer, which knows the ids, pays)")
    if "merge_s" in elide:
        print(f"\nElide's merges after the load: {elide['parts_loaded']} parts into {elide['parts']} "
              f"in {elide['merge_s']:.2f} s (not in its load time)")
    print(f"\nElide: open {elide['open_ms']:.1f} ms, ready() {elide['ready_ms']:.1f} ms, {elide['parts']} parts, "
          f"store directory {elide['store_bytes'] / mib:.1f} MiB; ClickHouse's OPTIMIZE FINAL after "
          f"the load {peers['clickhouse']['merge_s']:.2f} s (not in its load time)")
    print("Elide after the delete / before, after the purge / before:")
    for name in QUERIES["duckdb"]:
        b = elide["before"][name]["ms"]
        print(f"  {name:<24} {elide['after_delete'][name]['ms'] / b:.3f}x  {elide['after_purge'][name]['ms'] / b:.3f}x")
    if args.pairs > 0:
        print(f"\nElide's stages in alternating fresh processes ({args.pairs} rounds, `elide sql --repeat "
              f"{args.runs}` per stage and round, rotating order): median ratio to before (min–max)")
        for name, r in stage_pairs(args.elide, elide, args.pairs, args.runs).items():
            d, p = r["after_delete"], r["after_purge"]
            print(f"  {name:<24} after the delete {d[0]:.3f}x ({d[1]:.3f}–{d[2]:.3f})   "
                  f"after the purge {p[0]:.3f}x ({p[1]:.3f}–{p[2]:.3f})")
    if args.ingest_rounds > 0:
        print(f"\nThe loads again, {args.ingest_rounds} rounds in turn, each in a fresh process:")
        ingest_rounds(args.elide, elide["input"], args.work, args.ingest_rounds)
    print(f"\nsame rows from all three at every stage: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
