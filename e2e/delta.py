"""The Delta Lake export read by independent readers (issue 15, step 2):
delta-rs (PyPI `deltalake`) and DuckDB with its delta extension.

On 1M generated events with 1% of persons deleted:
- each reader's count(*) equals Elide's, and finds 0 rows of the deleted
  persons' distinct ids;
- after a purge and a new export, reading the version before the purge
  fails rather than returning the deleted rows;
- no distinct id appears anywhere in _delta_log.

    python e2e/delta.py path/to/elide [--events N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import duckdb
import duckdb_extensions
from deltalake import DeltaTable, QueryBuilder


def run(elide, *args, parse=True):
    out = subprocess.run([elide, *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "ELIDE_LOG": "warn"})
    return json.loads(out.stdout) if parse else out.stdout


def sql(elide, data, query):
    return run(elide, "sql", "--data-dir", data, "--format", "json", query)


def export(elide, data):
    return run(elide, "export", "delta", "--data-dir", data, "--table", "events", "--format", "json")


def deltalake_rows(table, where="true", version=None):
    dt = DeltaTable(table, version=version) if version is not None else DeltaTable(table)
    batches = QueryBuilder().register("events", dt).execute(
        f"SELECT count(*) AS n FROM events WHERE {where}").read_all()
    return batches.column("n")[0].as_py()


def duckdb_con():
    con = duckdb.connect()
    duckdb_extensions.import_extension("delta", con=con)
    con.execute("LOAD delta")
    return con


def duckdb_rows(con, table, where="true"):
    return con.execute(f"SELECT count(*) FROM delta_scan('{table}') WHERE {where}").fetchone()[0]


def in_list(ids):
    return "distinct_id IN (" + ",".join("'" + i.replace("'", "''") + "'" for i in ids) + ")"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("elide")
    p.add_argument("--events", type=int, default=1_000_000)
    a = p.parse_args()
    elide = os.path.abspath(a.elide)
    work = tempfile.TemporaryDirectory(prefix="elide-delta-")
    data = os.path.join(work.name, "data")
    table = os.path.join(data, "parts", "events")
    events = os.path.join(work.name, "events.parquet")
    persons = max(a.events // 100, 100)

    run(elide, "gen", "--events", str(a.events), "--persons", str(persons), "--seed", "7",
        "--out", events, parse=False)
    run(elide, "ingest", "--data-dir", data, events, parse=False)
    print(f"delta: {a.events} events of {persons} persons ingested")

    # An export before the deletions: the version time travel must lose.
    before = export(elide, data)
    assert before["created"] and before["hidden_rows"] == 0, before

    # 1% of persons, and every distinct id seen with them.
    victims = [r["person_id"] for r in sql(elide, data,
               "SELECT DISTINCT person_id FROM events WHERE person_id IS NOT NULL "
               f"ORDER BY person_id LIMIT {persons // 100}")]
    quoted = ",".join(f"'{v}'" for v in victims)
    gone = [r["distinct_id"] for r in sql(elide, data,
            f"SELECT DISTINCT distinct_id FROM events WHERE person_id IN ({quoted})")]
    project = sql(elide, data, "SELECT min(project_id) AS p FROM events")[0]["p"]
    for i in range(0, len(victims), 500):
        run(elide, "delete", "--data-dir", data, "--project", str(project),
            *[x for v in victims[i:i + 500] for x in ("--person-id", v)], parse=False)
    expected = sql(elide, data, "SELECT count(*) AS n FROM events")[0]["n"]
    assert sql(elide, data, f"SELECT count(*) AS n FROM events WHERE {in_list(gone)}")[0]["n"] == 0
    print(f"delta: {len(victims)} persons ({len(gone)} distinct ids) deleted; Elide shows {expected} rows")

    first = export(elide, data)
    print(f"delta: export v{first['version']}: {first['files']} files, {first['hidden_rows']} rows hidden, "
          f"{first['deletion_vectors']} deletion vectors, {first['bytes_written']} bytes written, "
          f"{first['elapsed_ms']} ms")
    assert first["hidden_rows"] > 0 and first["deletion_vectors"] > 0

    con = duckdb_con()
    readers = {
        "deltalake": lambda where="true": deltalake_rows(table, where),
        "duckdb": lambda where="true": duckdb_rows(con, table, where),
    }
    for name, count in readers.items():
        n, leaked = count(), count(in_list(gone))
        print(f"delta: {name}: count(*) = {n}, rows of deleted distinct ids = {leaked}")
        assert n == expected, f"{name} counts {n}, Elide {expected}"
        assert leaked == 0, f"{name} returns {leaked} rows of deleted persons"

    # The purge rewrites the affected parts and Elide's GC removes the
    # old files; the next export moves the table to the new ones.
    run(elide, "compact", "--data-dir", data, "--now", parse=False)
    second = export(elide, data)
    assert second["removed"] > 0 and second["hidden_rows"] == 0, second
    for name, count in readers.items():
        n, leaked = count(), count(in_list(gone))
        assert n == expected and leaked == 0, f"{name} after the purge: {n} rows, {leaked} leaked"
    print(f"delta: after the purge, v{second['version']} reads {expected} rows in both readers")
    # The versions before the purge name files the purge removed: reading
    # their rows fails in both readers. (A bare count(*) may be answered
    # from the log's row counts without reading a file; it returns no row.)
    old_readers = {
        "deltalake": lambda v: QueryBuilder().register("events", DeltaTable(table, version=v)).execute(
            "SELECT count(DISTINCT distinct_id) AS n FROM events").read_all(),
        "duckdb": lambda v: con.execute(
            f"SELECT count(DISTINCT distinct_id) FROM delta_scan('{table}', version={v})").fetchall(),
    }
    for v in (before["version"], first["version"]):
        for name, read in old_readers.items():
            try:
                got = read(v)
            except Exception as e:
                msg = str(e)
                # A missing part file, not any error (a binder error would prove nothing).
                assert "No such file" in msg or "not found" in msg, f"{name} v{v}: {msg[:300]}"
                print(f"delta: {name} refuses version {v} after the purge: {msg.splitlines()[0][:120]}")
            else:
                sys.exit(f"{name} read version {v} after the purge: {got}")

    # No distinct id in the log (statistics name only project_id and timestamp).
    log = ""
    for name in sorted(os.listdir(os.path.join(table, "_delta_log"))):
        if name.endswith(".json"):
            with open(os.path.join(table, "_delta_log", name)) as f:
                log += f.read()
    every = [r["distinct_id"] for r in sql(elide, data, "SELECT DISTINCT distinct_id FROM events")]
    found = [d for d in set(every) | set(gone) if d in log]
    assert not found, f"distinct ids in _delta_log: {found[:5]}"
    print(f"delta: no distinct id of {len(set(every) | set(gone))} in {len(log)} bytes of _delta_log")
    print("delta: ok")


if __name__ == "__main__":
    main()
