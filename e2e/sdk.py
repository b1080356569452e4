"""The real PostHog Python SDK (pinned in e2e/requirements.txt) against
`elide serve`, unchanged: capture, set, set_once, alias, $identify, gzip
uploads; then the persons API as a PostHog user's script calls it: list,
get, delete with events, deletion_status, reset.

Run by e2e/run: python e2e/sdk.py path/to/elide
"""

import sys
import time

import posthog
import requests

from server import Server

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)


def client(srv, errors, token=None, **kw):
    def on_error(e, batch):
        errors.append(f"{e!r} ({len(batch)} events)")

    return posthog.Posthog(
        token or srv.token, host=srv.base, on_error=on_error, capture_mode="v0",
        max_retries=0, flush_interval=0.2, **kw,
    )


def hogql(srv, sql):
    r = requests.post(srv.api("/query/"), headers=srv.auth(),
                      json={"query": {"kind": "HogQLQuery", "query": sql}}, timeout=60)
    assert r.status_code == 200, f"query {sql!r}: {r.status_code} {r.text}"
    return r.json()["results"]


def person(srv, distinct_id):
    r = requests.get(srv.api("/persons/"), headers=srv.auth(),
                     params={"distinct_id": distinct_id}, timeout=30)
    assert r.status_code == 200, r.text
    found = r.json()["results"]
    return found[0] if found else None


def events_of(srv, ids):
    quoted = ", ".join(f"'{i}'" for i in ids)
    return hogql(srv, f"select count() from events where distinct_id in ({quoted})")[0][0]


def main(elide):
    with Server(elide) as srv:
        try:
            run(srv)
        except Exception:
            print(srv.logs(), file=sys.stderr)
            raise
        if failures:
            print(srv.logs(), file=sys.stderr)
    if failures:
        print(f"e2e sdk: {len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("e2e sdk: all checks passed")


def run(srv):
    errors = []
    ph = client(srv, errors)
    # An anonymous visitor, then the identified user.
    for i in range(3):
        ph.capture("pageview", distinct_id="anon-1", properties={"path": f"/p{i}"})
    ph.capture("signed_up", distinct_id="user-1", properties={"plan": "free", "$set": {"email": "one@example.com"}})
    ph.capture("$identify", distinct_id="user-1", properties={"$anon_distinct_id": "anon-1", "$set": {"name": "One"}})
    ph.set(distinct_id="user-1", properties={"plan": "pro"})
    ph.set_once(distinct_id="user-1", properties={"first_plan": "free"})
    ph.set_once(distinct_id="user-1", properties={"first_plan": "pro"})
    ph.alias(previous_id="user-1", distinct_id="user-1@work")
    ph.capture("purchase", distinct_id="user-1@work", properties={"amount": 30, "emoji": "\U0001F600"})
    ph.flush()
    ph.shutdown()

    # gzip uploads: 250 events in batches of 100.
    gz = client(srv, errors, gzip=True)
    for i in range(250):
        gz.capture("gz_event", distinct_id=f"gz-{i % 5}", properties={"i": i})
    gz.flush()
    gz.shutdown()
    check(not errors, f"the SDK reported no error: {errors}")

    # What arrived.
    check(hogql(srv, "select count() from events where event = 'gz_event'") == [[250]],
          "250 gzip events stored")
    by_event = hogql(srv, "select event, count(), countIf(properties.$lib = 'posthog-python') "
                          "from events group by event order by event")
    check(by_event == [["$create_alias", 1, 1], ["$identify", 1, 1], ["$set", 1, 1], ["$set_once", 2, 2],
                       ["gz_event", 250, 250], ["pageview", 3, 3], ["purchase", 1, 1],
                       ["signed_up", 1, 1]],
          f"every call arrived once, with the SDK's $lib: {by_event}")
    check(hogql(srv, "select JSONExtractString(properties, 'emoji') from events where event = 'purchase'") == [["\U0001F600"]],
          "non-ASCII text round-trips")
    p = person(srv, "user-1")
    check(p is not None, "user-1 has a person")
    if p is None:
        return
    check(sorted(p["distinct_ids"]) == ["anon-1", "user-1", "user-1@work"],
          f"$identify and alias merged the ids: {p['distinct_ids']}")
    props = p["properties"]
    check(props.get("email") == "one@example.com", f"$set inside properties: {props}")
    check(props.get("name") == "One", f"$set of $identify: {props}")
    check(props.get("plan") == "pro", f"set(): {props}")
    check(props.get("first_plan") == "free", f"set_once() kept the first value: {props}")
    for did in ("anon-1", "user-1@work"):
        other = person(srv, did)
        check(other is not None and other["uuid"] == p["uuid"], f"{did} resolves to the same person")
    got = requests.get(srv.api(f"/persons/{p['uuid']}/"), headers=srv.auth(), timeout=30)
    check(got.status_code == 200 and got.json()["uuid"] == p["uuid"], f"get by UUID: {got.status_code}")
    check(hogql(srv, "select person.properties.plan from events where event = 'purchase'") == [["pro"]],
          "person.properties through the event's person")
    ids = ["anon-1", "user-1", "user-1@work"]
    before = events_of(srv, ids)
    check(before == 10, f"the person's events before deletion: {before}")

    # Delete the person with their events: invisible when the 202 returns.
    r = requests.delete(srv.api(f"/persons/{p['uuid']}/?delete_events=true"), headers=srv.auth(), timeout=60)
    check(r.status_code == 202, f"DELETE person: {r.status_code} {r.text}")
    check(events_of(srv, ids) == 0, "no event of the deleted person is visible once the 202 returns")
    check(person(srv, "user-1") is None, "the person is gone")
    r = requests.get(srv.api("/persons/deletion_status/"), headers=srv.auth(),
                     params={"person_uuid": p["uuid"]}, timeout=30)
    body = r.json()
    check(r.status_code == 200 and body["count"] == 1
          and body["results"][0]["status"] in ("pending", "completed"),
          f"deletion_status lists the deletion: {body}")
    r = requests.get(srv.api("/persons/deletion_status/"), headers=srv.auth(),
                     params={"status": "bogus"}, timeout=30)
    check(r.status_code == 400 and r.json().get("attr") == "status", f"bad status → 400: {r.text}")

    # The deleted id is blocked: its new events make no person until reset.
    ph = client(srv, errors, sync_mode=True)
    ph.capture("after_delete", distinct_id="user-1", properties={"$set": {"back": True}})
    check(person(srv, "user-1") is None, "a deleted id makes no person before reset")
    r = requests.post(srv.api("/persons/reset_person_distinct_id/"), headers=srv.auth(),
                      json={"distinct_id": "user-1"}, timeout=30)
    check(r.status_code == 202, f"reset: {r.status_code} {r.text}")
    ph.capture("after_reset", distinct_id="user-1", properties={"$set": {"back": True}})
    ph.shutdown()
    fresh = person(srv, "user-1")
    check(fresh is not None and fresh["uuid"] != p["uuid"] and fresh["properties"].get("back") is True,
          f"after reset the id makes a new person: {fresh}")
    check(not errors, f"the SDK reported no error: {errors}")

    # A wrong token is refused (401) and the SDK does not retry it.
    bad_errors = []
    bad = client(srv, bad_errors, token="phc_not_a_token")
    bad.capture("x", distinct_id="nobody")
    bad.flush()
    bad.shutdown()
    check(len(bad_errors) == 1 and "401" in bad_errors[0], f"unknown token → one 401: {bad_errors}")
    check(person(srv, "nobody") is None, "nothing stored for an unknown token")


if __name__ == "__main__":
    t = time.time()
    main(sys.argv[1])
    print(f"e2e sdk: {time.time() - t:.1f} s")
