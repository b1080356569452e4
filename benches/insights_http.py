#!/usr/bin/env python3
"""Time the analytics routes over HTTP on 10M captured events.

    cargo build --release --bin elide
    benches/insights_http.py [--events 10000000] [--persons 100000] [--work /tmp/insights-bench]

1. Writes PostHog capture events as JSON lines: `--persons` persons
   (`user-N`, person property `plan` set on their first event), events
   spread over the last 90 days — `$pageview` (most), `viewed_pricing`,
   `clicked_cta`, `signup`, `purchase` — with a `$browser` property.
2. `elide capture` loads them through identity resolution (persons and
   events), `elide keys create` makes a key, `elide serve` serves them.
3. Times (median of 3 after a warm-up, wall clock of the HTTP call):
   the lifecycle of `$pageview` over 90 days by day, the correlation of a
   30-day `$pageview → purchase` funnel (events, `$pageview`'s properties,
   and person properties),
   the funnel itself, a 90-day DAU and MAU `TrendsQuery`, the property
   maths (sum and p90 of a purchase's `amount`), unique sessions, events
   per person, DAU as one number, an OR property group, a person-property
   breakdown, the funnel as a `FunnelsQuery`, stickiness, retention by
   day and by week (recurring and first time), paths (7 and 30 days, and
   an edge's persons), a formula, the persons
   of a point (`ActorsQuery`: a day's DAU, a breakdown value's, a total
   value's, a retention cohort's) and the persons page, the event and
   property definitions, two HogQL queries
   (distinct persons by day, which reads each event's person now, and
   events by name).
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--elide", default=os.environ.get("ELIDE", "target/release/elide"))
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--work", default="/tmp/insights-bench")
    ap.add_argument("--reuse", action="store_true",
                    help="time the routes on the data an earlier run left in --work (no generation, no capture); "
                         "data from before 2026-12-06 has no $current_url, so its paths are empty: generate again")
    ap.add_argument("--only", default="", help="time only the routes whose label contains this text")
    args = ap.parse_args()
    data, jsonl = os.path.join(args.work, "data"), os.path.join(args.work, "events.jsonl")
    if args.reuse and os.path.exists(os.path.join(args.work, "key")):
        with open(os.path.join(args.work, "key")) as f:
            key = f.read().strip()
    else:
        if os.path.exists(args.work):
            shutil.rmtree(args.work)
        os.makedirs(args.work)
        key = load(args, data, jsonl)
    return serve_and_time(args, data, key)


# The pages a `$pageview` is of (the paths' items).
PAGES = ["https://app.example.com/", "https://app.example.com/pricing", "https://app.example.com/docs",
         "https://app.example.com/blog", "https://app.example.com/signup/", "https://app.example.com/dashboard",
         "https://app.example.com/settings"]


def load(args, data: str, jsonl: str) -> str:
    """Generate the events, capture them into `data`; the new key (also kept in `--work`/key)."""

    rng = random.Random(42)
    now = datetime.now(timezone.utc)
    names = ["$pageview"] * 80 + ["viewed_pricing"] * 8 + ["clicked_cta"] * 6 + ["signup"] * 3 + ["purchase"] * 3
    browsers = ["Chrome", "Firefox", "Safari", "Edge"]
    t = time.perf_counter()
    seen = set()
    with open(jsonl, "w") as f:
        for _ in range(args.events):
            p = int(args.persons * rng.random() ** 2)  # skewed: a few persons are very active
            ts = now - timedelta(seconds=rng.randrange(90 * 86400))
            props = {"$browser": browsers[p % 4],
                     "$session_id": f"s-{p}-{int(ts.timestamp()) // 7200}"}
            if p not in seen:
                seen.add(p)
                props["$set"] = {"plan": ["free", "pro", "team"][p % 3]}
            event = rng.choice(names)
            if event == "$pageview":
                # From the time and the person, not the generator: the
                # other events and properties stay those of earlier runs.
                props["$current_url"] = PAGES[(int(ts.timestamp()) // 600 + p) % len(PAGES)]
            if event == "purchase":
                props["amount"] = round(rng.lognormvariate(3, 1), 2)
            f.write(json.dumps({"event": event, "distinct_id": f"user-{p}",
                                "timestamp": ts.isoformat(), "properties": props}) + "\n")
    print(f"generated {args.events} events of {len(seen)} persons in {time.perf_counter() - t:.0f} s", flush=True)

    t = time.perf_counter()
    subprocess.run([args.elide, "capture", "--data-dir", data, "--project", "1", jsonl], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"captured in {time.perf_counter() - t:.0f} s", flush=True)
    os.remove(jsonl)
    key = subprocess.run([args.elide, "keys", "create", "--data-dir", data, "--project", "1", "--scopes", "all",
                          "--format", "json"], check=True, capture_output=True, text=True).stdout
    key = json.loads(key)["key"]
    with open(os.path.join(args.work, "key"), "w") as f:
        f.write(key)
    return key


def serve_and_time(args, data: str, key: str) -> int:
    server = subprocess.Popen([args.elide, "serve", "--data-dir", data, "--bind", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = None
    for line in server.stdout:
        if "listening on" in line:
            base = line.split("listening on ")[1].split()[0]
            break
    if base is None:
        print("the server did not start", file=sys.stderr)
        return 1
    try:
        def call(path, body=None):
            req = urllib.request.Request(base + path, method="POST" if body else "GET",
                                         data=json.dumps(body).encode() if body else None,
                                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=600) as r:
                out = json.loads(r.read())
            return time.perf_counter() - t, out

        def timed(label, path, body=None, show=lambda o: ""):
            if args.only not in label:
                return
            call(path, body)
            times, out = [], None
            for _ in range(3):
                s, out = call(path, body)
                times.append(s)
            print(f"  {label:<48} {statistics.median(times) * 1e3:>8.0f} ms   {show(out)}", flush=True)

        q = urllib.parse.quote
        ev = lambda *n: q(json.dumps([{"id": x, "type": "events", "order": i} for i, x in enumerate(n)]))
        print(f"analytics over HTTP ({args.events} events, median of 3):")
        timed("lifecycle, $pageview, 90 days by day",
              f"/api/projects/1/insights/trend/?shown_as=Lifecycle&date_from=-90d&events={ev('$pageview')}",
              show=lambda o: f"new persons: {sum(next(s for s in o['result'] if s['status'] == 'new')['data']):.0f}")
        funnel = f"events={ev('$pageview', 'purchase')}&date_from=-30d&funnel_window_days=7"
        timed("funnel $pageview → purchase, 30 days", f"/api/projects/1/insights/funnel/?{funnel}",
              show=lambda o: f"counts {[s['count'] for s in o['result']]}")
        timed("correlation (events), 30 days", f"/api/projects/1/insights/funnel/correlation/?{funnel}",
              show=lambda o: f"{len(o['result']['events'])} rows")
        timed("correlation (event properties), 30 days",
              f"/api/projects/1/insights/funnel/correlation/?{funnel}&funnel_correlation_type=event_with_properties"
              f"&funnel_correlation_event_names={q(json.dumps(['$pageview']))}",
              show=lambda o: f"{len(o['result']['events'])} rows")
        timed("correlation (person properties), 30 days",
              f"/api/projects/1/insights/funnel/correlation/?{funnel}&funnel_correlation_type=properties"
              f"&funnel_correlation_names={q(json.dumps(['$all']))}",
              show=lambda o: f"{len(o['result']['events'])} rows")
        for math in ["dau", "monthly_active"]:
            timed(f"TrendsQuery {math}, 90 days by day", "/api/projects/1/query/",
                  {"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-90d"}, "interval": "day",
                             "series": [{"kind": "EventsNode", "event": "$pageview", "math": math}]}},
                  show=lambda o: f"sum {o['results'][0]['count']:.0f}")
        timed("TrendsQuery total by $browser, 90 days by day", "/api/projects/1/query/",
              {"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-90d"}, "interval": "day",
                         "series": [{"kind": "EventsNode", "event": "$pageview"}],
                         "breakdownFilter": {"breakdown": "$browser"}}},
              show=lambda o: f"{len(o['results'])} series")
        trend = lambda series, **more: {"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-90d"},
                                                  "interval": "day", "series": [series], **more}}
        for math, event in [("sum", "purchase"), ("p90", "purchase"), ("unique_session", "$pageview"),
                            ("avg_count_per_actor", "$pageview")]:
            timed(f"TrendsQuery {math}, 90 days by day", "/api/projects/1/query/",
                  trend({"kind": "EventsNode", "event": event, "math": math, "math_property": "amount"}),
                  show=lambda o: f"sum {o['results'][0]['count']:.0f}")
        for math in ["first_time_for_user", "first_matching_event_for_user"]:
            timed(f"TrendsQuery {math}, 90 days by day", "/api/projects/1/query/",
                  trend({"kind": "EventsNode", "event": "purchase", "math": math,
                         "properties": [{"key": "amount", "value": 50, "operator": "gt"}]}),
                  show=lambda o: f"sum {o['results'][0]['count']:.0f}")
        timed("TrendsQuery avg $session_duration, 90 days by day", "/api/projects/1/query/",
              trend({"kind": "EventsNode", "event": "$pageview", "math": "avg",
                     "math_property": "$session_duration"}),
              show=lambda o: f"last day {o['results'][0]['data'][-1]:.0f} s")
        timed("TrendsQuery dau compared with a year before (compare_to -1y)", "/api/projects/1/query/",
              trend({"kind": "EventsNode", "event": "$pageview", "math": "dau"},
                    compareFilter={"compare": True, "compare_to": "-1y"}),
              show=lambda o: f"previous sum {o['results'][1]['count']:.0f}")
        timed("TrendsQuery dau as one number (BoldNumber), 90 days", "/api/projects/1/query/",
              trend({"kind": "EventsNode", "event": "$pageview", "math": "dau"},
                    trendsFilter={"display": "BoldNumber"}),
              show=lambda o: f"{o['results'][0]['aggregated_value']:.0f} persons")
        timed("TrendsQuery total, Chrome OR plan pro (a group)", "/api/projects/1/query/",
              trend({"kind": "EventsNode", "event": "$pageview"},
                    properties={"type": "AND", "values": [{"type": "OR", "values": [
                        {"key": "$browser", "value": "Chrome"},
                        {"key": "plan", "value": "pro", "type": "person"}]}]}),
              show=lambda o: f"sum {o['results'][0]['count']:.0f}")
        timed("TrendsQuery total by person plan, 90 days", "/api/projects/1/query/",
              trend({"kind": "EventsNode", "event": "$pageview"},
                    breakdownFilter={"breakdown": "plan", "breakdown_type": "person"}),
              show=lambda o: f"{len(o['results'])} series")
        timed("TrendsQuery formula A / B (events per user), 90 days", "/api/projects/1/query/",
              {"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-90d"}, "interval": "day",
                         "series": [{"kind": "EventsNode", "event": "$pageview"},
                                    {"kind": "EventsNode", "event": "$pageview", "math": "dau"}],
                         "trendsFilter": {"formula": "A / B"}}},
              show=lambda o: f"last day {o['results'][0]['data'][-1]:.2f}")
        # The persons modal of a point: yesterday's DAU, most events first,
        # with their recorded sessions (none here); a total value's
        # persons over 30 days; the persons page (no source).
        yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
        modal = lambda source, **point: {"query": {
            "kind": "ActorsQuery", "source": {"kind": "InsightActorsQuery", "source": source, **point},
            "select": ["actor", "event_count", "matched_recordings"],
            "orderBy": ["event_count DESC, actor_id DESC"]}}
        dau = {"kind": "TrendsQuery", "dateRange": {"date_from": "-30d"}, "interval": "day",
               "series": [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}]}
        timed("ActorsQuery, a DAU point (one day), 100 persons", "/api/projects/1/query/",
              modal(dau, day=yesterday, series=0),
              show=lambda o: f"{len(o['results'])} persons, top {o['results'][0][1]} events")
        timed("ActorsQuery, DAU by $browser, Chrome's point", "/api/projects/1/query/",
              modal({**dau, "breakdownFilter": {"breakdown": "$browser"}}, day=yesterday, breakdown="Chrome"),
              show=lambda o: f"{len(o['results'])} persons")
        timed("ActorsQuery, DAU as one number, 30 days", "/api/projects/1/query/",
              modal({**dau, "trendsFilter": {"display": "BoldNumber"}}),
              show=lambda o: f"{len(o['results'])} persons, hasMore {o['hasMore']}")
        timed("ActorsQuery, the persons page (no source)", "/api/projects/1/query/",
              {"query": {"kind": "ActorsQuery",
                         "select": ["person_display_name -- Person", "id", "created_at", "person.$delete"]}},
              show=lambda o: f"{len(o['results'])} persons")
        timed("RetentionQuery's first cohort's persons (ActorsQuery)", "/api/projects/1/query/",
              {"query": {"kind": "ActorsQuery", "select": ["person", "appearances"],
                         "orderBy": ["length(appearances) DESC", "id"],
                         "source": {"kind": "InsightActorsQuery", "interval": 0, "source": {
                             "kind": "RetentionQuery", "retentionFilter": {
                                 "targetEntity": {"id": "$pageview", "type": "events"},
                                 "returningEntity": {"id": "purchase", "type": "events"},
                                 "period": "Day", "totalIntervals": 11}}}}},
              show=lambda o: f"{len(o['results'])} persons")
        timed("event definitions (all names, all history)", "/api/projects/1/event_definitions/",
              show=lambda o: f"{o['count']} names")
        timed("property definitions (events' names and types)", "/api/projects/1/property_definitions/",
              show=lambda o: f"{o['count']} names")
        timed("FunnelsQuery $pageview → purchase, 30 days", "/api/projects/1/query/",
              {"query": {"kind": "FunnelsQuery", "dateRange": {"date_from": "-30d"},
                         "series": [{"kind": "EventsNode", "event": "$pageview"},
                                    {"kind": "EventsNode", "event": "purchase"}],
                         "funnelsFilter": {"funnelWindowInterval": 7, "funnelWindowIntervalUnit": "day"}}},
              show=lambda o: f"counts {[s['count'] for s in o['results']]}")
        timed("StickinessQuery $pageview, 30 days", "/api/projects/1/query/",
              {"query": {"kind": "StickinessQuery", "dateRange": {"date_from": "-30d"},
                         "series": [{"kind": "EventsNode", "event": "$pageview"}]}},
              show=lambda o: f"{sum(o['results'][0]['data'])} persons")
        for period, n, kind in [("Day", 11, "retention_recurring"), ("Week", 8, "retention_recurring"),
                                ("Week", 8, "retention_first_time")]:
            timed(f"RetentionQuery $pageview → purchase, {n} {period}s, {kind[10:]}", "/api/projects/1/query/",
                  {"query": {"kind": "RetentionQuery", "retentionFilter": {
                      "targetEntity": {"id": "$pageview", "type": "events"},
                      "returningEntity": {"id": "purchase", "type": "events"},
                      "period": period, "totalIntervals": n, "retentionType": kind}}},
                  show=lambda o: f"first cohort {o['results'][0]['values'][0]['count']}")
        for days in (7, 30):
            timed(f"PathsQuery $pageview, {days} days", "/api/projects/1/query/",
                  {"query": {"kind": "PathsQuery", "dateRange": {"date_from": f"-{days}d"},
                             "pathsFilter": {"includeEventTypes": ["$pageview"]}}},
                  show=lambda o: f"{len(o['results'])} edges, top {o['results'][0]['value'] if o['results'] else 0}")
        timed("PathsQuery after a funnel's step ($pageview → purchase), 7 days", "/api/projects/1/query/",
              {"query": {"kind": "PathsQuery", "dateRange": {"date_from": "-7d"},
                         "pathsFilter": {"includeEventTypes": ["$pageview", "custom_event"]},
                         "funnelPathsFilter": {"funnelPathType": "funnel_path_after_step", "funnelStep": 2,
                                               "funnelSource": {"kind": "FunnelsQuery",
                                                                "dateRange": {"date_from": "-7d"},
                                                                "series": [{"kind": "EventsNode", "event": "$pageview"},
                                                                           {"kind": "EventsNode", "event": "purchase"}]}}}},
              show=lambda o: f"{len(o['results'])} edges")
        timed("PathsQuery all events, 7 days, an edge's persons (ActorsQuery)", "/api/projects/1/query/",
              {"query": {"kind": "ActorsQuery", "select": ["id"], "source": {
                  "kind": "InsightActorsQuery", "source": {
                      "kind": "PathsQuery", "dateRange": {"date_from": "-7d"},
                      "pathsFilter": {"pathEndKey": "2_purchase"}}}}},
              show=lambda o: f"{len(o['results'])} persons")
        explorer = ["*", "event", "person_display_name -- Person",
                    "coalesce(properties.$current_url, properties.$screen_name) -- Url / Screen",
                    "properties.$lib", "timestamp"]
        for after in ["-24h", "all"]:
            timed(f"EventsQuery, the explorer's columns, after {after}, 100 rows", "/api/projects/1/query/",
                  {"query": {"kind": "EventsQuery", "select": explorer, "after": after,
                             "orderBy": ["timestamp DESC"]}},
                  show=lambda o: f"{len(o['results'])} rows, hasMore {o['hasMore']}")
        timed("EventsQuery count() by event, 90 days", "/api/projects/1/query/",
              {"query": {"kind": "EventsQuery", "select": ["event", "count()"], "after": "-90d"}},
              show=lambda o: f"{len(o['results'])} rows")
        hogql = lambda text: {"query": {"kind": "HogQLQuery", "query": text}}
        timed("HogQL distinct persons by day, 90 days", "/api/projects/1/query/",
              hogql("select toDate(timestamp) as d, count(distinct person_id) from events "
                    "where event = '$pageview' and timestamp > now() - interval 90 day group by d"),
              show=lambda o: f"sum {sum(r[1] for r in o['results'])}")
        timed("HogQL events by event, 90 days", "/api/projects/1/query/",
              hogql("select event, count() from events where timestamp > now() - interval 90 day group by event"),
              show=lambda o: f"{len(o['results'])} rows")
        if not args.only or "cohort" in args.only:
            # A dynamic cohort (computed on every request): plan = pro, and
            # purchased at least twice in the last 30 days.
            _, cohort = call("/api/projects/1/cohorts/", {"name": "engaged pros", "filters": {"properties": {
                "type": "AND", "values": [
                    {"type": "person", "key": "plan", "value": "pro"},
                    {"type": "behavioral", "key": "purchase", "value": "performed_event_multiple",
                     "operator": "gte", "operator_value": 2, "time_value": 30, "time_interval": "day"}]}}})
            cid = cohort["id"]
            timed("cohort persons (plan pro, purchase ≥ 2 in 30 days)", f"/api/projects/1/cohorts/{cid}/persons/",
                  show=lambda o: f"first page {len(o['results'])} persons")
            by_cohort = q(json.dumps([{"type": "cohort", "key": "id", "value": cid}]))
            timed("funnel $pageview → purchase, 30 days, that cohort",
                  f"/api/projects/1/insights/funnel/?{funnel}&properties={by_cohort}",
                  show=lambda o: f"counts {[s['count'] for s in o['result']]}")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    import urllib.parse
    sys.exit(main())
