"""The Delta Lake export at scale (issue 15): time and bytes written for a
store of N generated events with 1% of persons deleted, then again after
the purge. Bytes written are the commit's JSON (checkpoints not counted) plus the
deletion-vector file, against the parquet bytes the table references in
place (target: at most 1%).

    python3 benches/delta_export.py path/to/elide [--events 10000000] [--dir D]

Needs only the elide binary (no Python packages).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time


def run(elide, *args, parse=True):
    out = subprocess.run([elide, *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "ELIDE_LOG": "warn"})
    return json.loads(out.stdout) if parse else out.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("elide")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--dir", help="work directory (default: a temporary one)")
    a = p.parse_args()
    elide = os.path.abspath(a.elide)
    tmp = None if a.dir else tempfile.TemporaryDirectory(prefix="elide-delta-bench-")
    work = a.dir or tmp.name
    data = os.path.join(work, "data")
    events = os.path.join(work, "events.parquet")
    persons = max(a.events // 100, 100)
    if not os.path.exists(data):
        t = time.time()
        run(elide, "gen", "--events", str(a.events), "--persons", str(persons), "--projects", "5",
            "--seed", "11", "--out", events, parse=False)
        run(elide, "ingest", "--data-dir", data, events, parse=False)
        print(f"{a.events} events of {persons} persons in 5 projects ingested in {time.time() - t:.1f} s")
        sql = lambda q: run(elide, "sql", "--data-dir", data, "--format", "json", q)
        victims = sql("SELECT project_id, person_id FROM (SELECT DISTINCT project_id, person_id FROM events "
                      f"WHERE person_id IS NOT NULL) ORDER BY person_id LIMIT {persons // 100}")
        by_project = {}
        for v in victims:
            by_project.setdefault(v["project_id"], []).append(v["person_id"])
        for project, ids in by_project.items():
            for i in range(0, len(ids), 500):
                run(elide, "delete", "--data-dir", data, "--project", str(project),
                    *[x for pid in ids[i:i + 500] for x in ("--person-id", pid)], parse=False)
        print(f"{len(victims)} persons deleted")

    def export(label):
        t = time.time()
        r = run(elide, "export", "delta", "--data-dir", data, "--format", "json")
        wall = time.time() - t
        share = 100.0 * r["bytes_written"] / max(r["data_bytes"], 1)
        print(f"{label}: v{r['version']} {r['files']} files, {r['added']} added, {r['removed']} removed, "
              f"{r['deletion_vectors']} deletion vectors, {r['hidden_rows']} rows hidden; "
              f"{r['bytes_written']} bytes written for {r['data_bytes']} parquet bytes ({share:.3f}%); "
              f"export {r['elapsed_ms']} ms, command {wall:.2f} s")
        return r

    export("first export")
    export("again, nothing changed")
    t = time.time()
    run(elide, "compact", "--data-dir", data, "--now", parse=False)
    print(f"purge: {time.time() - t:.1f} s")
    export("after the purge")


if __name__ == "__main__":
    main()
