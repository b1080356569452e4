"""Distributed SQL against one node (issue 15 step 3): the same statements
through `elide sql` alone and through `elide sql --workers` with N
`elide worker` processes on 127.0.0.1, over one store of generated events
with 1% of persons deleted. Each statement runs --runs times in one
process (`--repeat`); the medians and their ratio are printed, and the
results are checked equal.

    python3 benches/distributed.py path/to/elide [--events 1000000] [--workers 2] [--runs 5] [--dir D]

Needs only the elide binary (no Python packages). On a 2-core machine two
workers measure the overhead of distribution (planning, plan encoding,
gRPC, Arrow over loopback), not a speed-up.
"""

import argparse
import os
import re
import subprocess
import tempfile
import time

QUERIES = [
    ("count_by_event", "SELECT event, count(*) FROM events WHERE project_id = 1 GROUP BY event ORDER BY event"),
    ("distinct_persons_by_day",
     "SELECT date_trunc('day', timestamp) AS day, count(DISTINCT person_id) FROM events "
     "WHERE project_id = 1 GROUP BY day ORDER BY day"),
    ("count_dollar_events", "SELECT count(*) FROM events WHERE event LIKE '$%'"),
    ("top_distinct_ids",
     "SELECT distinct_id, count(*) AS n FROM events GROUP BY distinct_id ORDER BY n DESC, distinct_id LIMIT 10"),
]


def run(elide, *args):
    out = subprocess.run([elide, *args], capture_output=True, text=True,
                         env={**os.environ, "ELIDE_LOG": "warn"})
    if out.returncode != 0:
        raise SystemExit(f"elide {' '.join(args)} failed:\n{out.stderr}")
    return out


def median_ms(stderr):
    m = re.search(r"median: ([0-9.]+) ms", stderr)
    if not m:
        raise SystemExit(f"no median in {stderr!r}")
    return float(m.group(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("elide")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--bytes-per-task", type=int, help="elide sql --bytes-per-task (default: its own)")
    p.add_argument("--dir", help="work directory (default: a temporary one)")
    a = p.parse_args()
    elide = os.path.abspath(a.elide)
    tmp = None if a.dir else tempfile.TemporaryDirectory(prefix="elide-dist-bench-")
    work = a.dir or tmp.name
    data = os.path.join(work, "data")
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(data):
        events = os.path.join(work, "events.parquet")
        persons = max(a.events // 100, 100)
        run(elide, "gen", "--events", str(a.events), "--persons", str(persons), "--projects", "3",
            "--out", events)
        run(elide, "ingest", "--data-dir", data, events)
        ids = run(elide, "sql", "--data-dir", data, "--format", "csv",
                  "SELECT DISTINCT project_id, distinct_id FROM events ORDER BY 1, 2").stdout.splitlines()[1:]
        victims = ids[:: 100]
        by_project = {}
        for line in victims:
            project, distinct = line.split(",", 1)
            by_project.setdefault(project, []).append(distinct)
        for project, distinct in by_project.items():
            for i in range(0, len(distinct), 1000):
                args = ["delete", "--data-dir", data, "--project", project]
                for d in distinct[i:i + 1000]:
                    args += ["--distinct-id", d]
                run(elide, *args)
        print(f"store: {a.events} events, {len(victims)} of {len(ids)} distinct ids deleted")

    workers = []
    try:
        for _ in range(a.workers):
            w = subprocess.Popen([elide, "worker", "--data-dir", data, "--listen", "127.0.0.1:0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 env={**os.environ, "ELIDE_LOG": "warn"})
            line = w.stdout.readline()
            url = next(x for x in line.split() if x.startswith("http://"))
            workers.append((w, url))
        urls = ",".join(u for _, u in workers)
        extra = ["--bytes-per-task", str(a.bytes_per_task)] if a.bytes_per_task else []
        print(f"{'query':<26} {'one node ms':>12} {f'{a.workers} workers ms':>14} {'ratio':>7}")
        for name, sql in QUERIES:
            single = run(elide, "sql", "--data-dir", data, "--format", "csv", "--repeat", str(a.runs), sql)
            dist = run(elide, "sql", "--data-dir", data, "--format", "csv", "--repeat", str(a.runs),
                       "--workers", urls, *extra, sql)
            if single.stdout != dist.stdout:
                raise SystemExit(f"{name}: the results differ")
            s, d = median_ms(single.stderr), median_ms(dist.stderr)
            print(f"{name:<26} {s:>12.1f} {d:>14.1f} {d / s:>6.2f}x")
    finally:
        for w, _ in workers:
            w.terminate()
            w.wait(timeout=60)


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"({time.time() - t:.0f} s)")
