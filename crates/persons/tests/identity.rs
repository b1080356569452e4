//! Identity semantics, table-driven: merge rules, illegal ids, property
//! operator order, personless events, blocked ids after a deletion, reset,
//! split. Each case runs on a fresh data directory (real store, real
//! SQLite file) and checks persons through the public API and the
//! `person_id` stamped on the stored events.

use arrow::array::{Array, AsArray};
use elide_persons::capture::parse_payload;
use elide_persons::{CaptureOutcome, DeletePersons, PersonFilter, Persons, SplitSpec};
use elide_store::{Store, StoreOptions, Table};
use serde_json::{json, Value};

struct Env {
    _dir: tempfile::TempDir,
    p: Persons,
}

const P: i64 = 1;

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        background_flush: false,
        background_compaction: false,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let p = Persons::open(store).unwrap();
    Env { _dir: dir, p }
}

impl Env {
    /// Delete, with their events, the persons these distinct ids name.
    fn delete_ids(&self, ids: &[&str]) -> elide_persons::BulkDeleteResult {
        let req = DeletePersons {
            distinct_ids: ids.iter().map(|d| d.to_string()).collect(),
            delete_events: true,
            ..DeletePersons::default()
        };
        self.p.delete(P, &req).unwrap()
    }

    /// Delete, with their events, the persons of these UUIDs.
    fn delete_uuids(&self, uuids: &[String]) -> elide_persons::BulkDeleteResult {
        let req = DeletePersons {
            uuids: uuids.to_vec(),
            delete_events: true,
            ..DeletePersons::default()
        };
        self.p.delete(P, &req).unwrap()
    }

    /// The same data directory after its metadata database was lost and
    /// rebuilt ([`Persons::rebuild_metadata`]).
    fn rebuilt(self) -> (Env, elide_persons::RebuildReport) {
        let Env { _dir: dir, p } = self;
        drop(p);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("metadata.sqlite3{suffix}")));
        }
        let opts = StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), opts).unwrap();
        let (p, report) = Persons::rebuild_metadata(store).unwrap();
        (Env { _dir: dir, p }, report)
    }

    fn cap(&self, v: Value) -> CaptureOutcome {
        let evs = parse_payload(v, 0).unwrap();
        self.p.capture(P, &evs).unwrap()
    }

    /// The person of a distinct id: (uuid, properties, identified, created_at).
    fn person(&self, did: &str) -> Option<elide_persons::Person> {
        self.p
            .by_distinct_ids(P, &[did.to_string()])
            .unwrap()
            .remove(did)
    }

    fn count(&self) -> usize {
        let f = PersonFilter {
            limit: 1000,
            ..PersonFilter::default()
        };
        self.p.list(P, &f).unwrap().results.len()
    }

    /// `holder` sends an event, identifies `id` (which sends one), then
    /// `id` is reset away and sends one for the new person it names:
    /// (the first person, with 3 rows; the second, with 1).
    fn reset_away(&self, holder: &str, id: &str) -> (elide_persons::Person, elide_persons::Person) {
        self.cap(ev("e", holder, json!({})));
        self.cap(identify(holder, id));
        self.cap(ev("e", id, json!({})));
        let first = self.person(holder).unwrap();
        self.p.reset_distinct_id(P, id).unwrap();
        self.cap(ev("e", id, json!({})));
        let second = self.person(id).unwrap();
        assert_ne!(first.uuid, second.uuid);
        (first, second)
    }

    /// Visible stored events stamped with `who`'s UUID.
    fn rows_of(&self, who: &elide_persons::Person) -> usize {
        let u = who.uuid.hyphenated().to_string();
        self.stamped()
            .into_iter()
            .filter(|(_, pid)| pid.as_deref() == Some(u.as_str()))
            .count()
    }

    /// (distinct_id, person_id) of every visible stored event, in order.
    fn stamped(&self) -> Vec<(String, Option<String>)> {
        let snap = self.p.store().snapshot().unwrap();
        let mut out = Vec::new();
        for b in snap.memtable_batches(Table::Events) {
            // UUIDs as users read them.
            let b = &elide_store::schema::with_uuid_text(b.clone()).unwrap();
            let did = b.column_by_name("distinct_id").unwrap().as_string::<i32>();
            let pid = b.column_by_name("person_id").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                let p = (!pid.is_null(i)).then(|| pid.value(i).to_string());
                out.push((did.value(i).to_string(), p));
            }
        }
        out
    }
}

fn ev(event: &str, did: &str, props: Value) -> Value {
    json!({"event": event, "distinct_id": did, "properties": props})
}

fn identify(did: &str, anon: &str) -> Value {
    ev("$identify", did, json!({"$anon_distinct_id": anon}))
}

#[derive(Debug)]
enum Expect {
    Same(&'static str, &'static str),
    Different(&'static str, &'static str),
    Props(&'static str, Value),
    Identified(&'static str, bool),
    Persons(usize),
    NoPerson(&'static str),
}

fn check(name: &str, e: &Env, expects: &[Expect]) {
    for x in expects {
        match x {
            Expect::Same(a, b) => {
                let (pa, pb) = (e.person(a), e.person(b));
                assert!(pa.is_some(), "{name}: {a} has no person");
                assert_eq!(
                    pa.map(|p| p.uuid),
                    pb.map(|p| p.uuid),
                    "{name}: {a} and {b} differ"
                );
            }
            Expect::Different(a, b) => {
                let (pa, pb) = (e.person(a).unwrap(), e.person(b).unwrap());
                assert_ne!(pa.uuid, pb.uuid, "{name}: {a} and {b} share a person");
            }
            Expect::Props(a, v) => {
                let p = e.person(a).unwrap();
                assert_eq!(Value::Object(p.properties), *v, "{name}: properties of {a}");
            }
            Expect::Identified(a, v) => {
                assert_eq!(
                    e.person(a).unwrap().is_identified,
                    *v,
                    "{name}: is_identified of {a}"
                )
            }
            Expect::Persons(n) => assert_eq!(e.count(), *n, "{name}: person count"),
            Expect::NoPerson(a) => assert!(e.person(a).is_none(), "{name}: {a} has a person"),
        }
    }
}

#[test]
fn merge_rules() {
    use Expect::*;
    let cases: Vec<(&str, Vec<Value>, Vec<Expect>)> = vec![
        (
            "identify merges the anonymous person into the identified id's",
            vec![
                ev(
                    "$pageview",
                    "anon",
                    json!({"$set": {"a": 1, "shared": "anon"}}),
                ),
                ev(
                    "$pageview",
                    "user",
                    json!({"$set": {"b": 2, "shared": "user"}}),
                ),
                identify("user", "anon"),
            ],
            vec![
                Same("anon", "user"),
                Persons(1),
                Identified("user", true),
                Props("user", json!({"a": 1, "b": 2, "shared": "user"})),
            ],
        ),
        (
            "identify with an unknown anonymous id attaches it",
            vec![ev("$pageview", "user", json!({})), identify("user", "anon")],
            vec![Same("anon", "user"), Persons(1), Identified("user", true)],
        ),
        (
            "identify of a new id joins the anonymous person",
            vec![ev("$pageview", "anon", json!({})), identify("user", "anon")],
            vec![Same("anon", "user"), Persons(1), Identified("anon", true)],
        ),
        (
            "identify with neither id known creates one identified person",
            vec![identify("user", "anon")],
            vec![Same("anon", "user"), Persons(1), Identified("user", true)],
        ),
        (
            "an identified person is not merged into another by identify",
            vec![
                identify("u1", "a1"),
                identify("u2", "a2"),
                identify("u2", "u1"),
            ],
            vec![Different("u1", "u2"), Persons(2), Same("a1", "u1")],
        ),
        (
            "nor by create_alias",
            vec![
                identify("u1", "a1"),
                ev("$pageview", "x", json!({})),
                ev("$create_alias", "x", json!({"alias": "u1"})),
            ],
            // The refused merge still identifies the event's person, so
            // a later identify does not merge it away either.
            vec![Different("u1", "x"), Persons(2), Identified("x", true)],
        ),
        (
            "a person identified by a refused merge is not merged by identify",
            vec![
                identify("u1", "a1"),
                ev("$pageview", "x", json!({})),
                ev("$create_alias", "x", json!({"alias": "u1"})),
                ev("$pageview", "y", json!({})),
                identify("y", "x"),
            ],
            vec![Different("x", "y"), Different("u1", "x"), Persons(3)],
        ),
        (
            "merge_dangerously merges an identified person",
            vec![
                identify("u1", "a1"),
                identify("u2", "a2"),
                ev("$merge_dangerously", "u2", json!({"alias": "u1"})),
            ],
            vec![Same("u1", "u2"), Same("a1", "a2"), Persons(1)],
        ),
        (
            "create_alias merges an anonymous person into the event's",
            vec![
                ev("$pageview", "x", json!({"$set": {"k": "x"}})),
                ev(
                    "$pageview",
                    "y",
                    json!({"$set": {"k": "y", "only_y": true}}),
                ),
                ev("$create_alias", "x", json!({"alias": "y"})),
            ],
            vec![
                Same("x", "y"),
                Persons(1),
                Props("x", json!({"k": "x", "only_y": true})),
            ],
        ),
        (
            "illegal ids never merge",
            vec![
                ev("$pageview", "anonymous", json!({})),
                ev("$pageview", "user", json!({})),
                identify("user", "anonymous"),
                identify("user", "NaN"),
                identify("user", "'null'"),
                identify("user", "   "),
                identify("Guest", "user"),
            ],
            vec![
                Different("anonymous", "user"),
                NoPerson("NaN"),
                NoPerson("'null'"),
                Different("Guest", "user"),
                Persons(3),
            ],
        ),
        (
            "case-sensitive ids are legal in other casings",
            vec![ev("$pageview", "user", json!({})), identify("user", "nan")],
            vec![Same("nan", "user"), Persons(1)],
        ),
        (
            "identify with the same id is a no-op",
            vec![identify("user", "user")],
            vec![Persons(1), Identified("user", false)],
        ),
        (
            "merging keeps the earlier created_at and the chain of ids",
            vec![
                ev("$pageview", "a", json!({})),
                ev("$pageview", "b", json!({})),
                ev("$create_alias", "b", json!({"alias": "a"})),
                ev("$pageview", "c", json!({})),
                ev("$create_alias", "b", json!({"alias": "c"})),
            ],
            vec![Same("a", "b"), Same("b", "c"), Persons(1)],
        ),
    ];
    for (name, events, expects) in cases {
        let e = env();
        for v in events {
            e.cap(v);
        }
        check(name, &e, &expects);
        // Every event is stamped with the UUID of a person that existed
        // when it was captured; the last event's person is its id's now.
        let stamped = e.stamped();
        assert!(
            stamped.iter().all(|(_, p)| p.is_some()),
            "{name}: unstamped event"
        );
    }
}

#[test]
fn merge_keeps_earlier_created_at() {
    let e = env();
    e.cap(json!({"event": "e", "distinct_id": "late", "timestamp": "2024-05-02T00:00:00Z"}));
    e.cap(json!({"event": "e", "distinct_id": "early", "timestamp": "2024-05-01T00:00:00Z"}));
    e.cap(
        json!({"event": "$identify", "distinct_id": "late", "timestamp": "2024-05-03T00:00:00Z",
                 "properties": {"$anon_distinct_id": "early"}}),
    );
    let p = e.person("late").unwrap();
    assert_eq!(p.created_at, "2024-05-01T00:00:00.000000Z");
    assert_eq!(
        p.distinct_ids,
        vec!["late".to_string(), "early".to_string()]
    );
    // The merged-away person left an override for events stamped with it.
    let early_uuid = elide_persons::ids::person_uuid(P, "early");
    let page = e.p.by_uuids(P, &[early_uuid.to_string()]).unwrap();
    assert!(page.is_empty(), "the merged-away person is gone");
    let act = e.p.activity(P, Some(&p.uuid.to_string()), 10).unwrap();
    assert_eq!(act[0].activity, "merged");
}

#[test]
fn property_operator_order() {
    let cases = [
        (json!({"$set_once": {"a": 1}}), json!({"a": 1})),
        (
            json!({"$set_once": {"a": 2}, "$set": {"b": 1}}),
            json!({"a": 1, "b": 1}),
        ),
        (
            json!({"$set": {"a": 3}, "$set_once": {"a": 4}}),
            json!({"a": 3, "b": 1}),
        ),
        (
            json!({"$set": {"c": 1}, "$unset": ["c", "b"]}),
            json!({"a": 3}),
        ),
        (json!({"$unset": {"a": true}}), json!({})),
    ];
    let e = env();
    for (props, after) in cases {
        e.cap(ev("e", "u", props.clone()));
        assert_eq!(
            Value::Object(e.person("u").unwrap().properties),
            after,
            "after {props}"
        );
    }
    // Top-level $set / $set_once fold into the event's and win on a key.
    e.cap(
        json!({"event": "e", "distinct_id": "u", "$set": {"x": "top"},
                 "properties": {"$set": {"x": "inner", "y": 1}}}),
    );
    assert_eq!(
        Value::Object(e.person("u").unwrap().properties),
        json!({"x": "top", "y": 1})
    );
    // Versions count the changes: 5 changing events + 1 (the first created it at 0).
    assert_eq!(e.person("u").unwrap().version, 6);
}

/// A captured event keeps the value of every number it was sent with,
/// fractions included, in its stored properties and in the person's: a
/// fraction is read as the double its text names and written back as
/// that double's shortest text, which names it again. (serde_json reads
/// about one such fraction in ten one double off without its
/// `float_roundtrip` feature: capture changed them.)
#[test]
fn captured_fractions_keep_their_value() {
    let e = env();
    let body = r#"{"event": "e", "distinct_id": "u", "properties": {"x": 907.3038322028689,
        "$set": {"y": 481.83792520110524}}}"#;
    let v: Value = serde_json::from_str(body).unwrap();
    e.cap(v);
    let props = e.person("u").unwrap().properties;
    assert_eq!(props["y"].as_f64(), Some(481.837_925_201_105_24));
    let snap = e.p.store().snapshot().unwrap();
    let mut stored = Vec::new();
    for b in snap.memtable_batches(Table::Events) {
        let col = b.column_by_name("properties").unwrap().as_string::<i32>();
        stored.extend((0..b.num_rows()).map(|i| col.value(i).to_string()));
    }
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].contains(r#""x":907.3038322028689"#),
        "{}",
        stored[0]
    );
}

#[test]
fn personless_events_create_nothing() {
    let e = env();
    let out = e.cap(ev(
        "e",
        "ghost",
        json!({"$process_person_profile": false, "$set": {"a": 1}}),
    ));
    assert_eq!(out.stats.personless, 1);
    assert_eq!(out.stats.persons_created, 0);
    assert!(e.person("ghost").is_none());
    // Stamped with the UUID the id would get.
    let uuid = elide_persons::ids::person_uuid(P, "ghost").to_string();
    assert_eq!(e.stamped()[0].1.as_deref(), Some(uuid.as_str()));
    // A personless identify is dropped, as PostHog drops it: it merges
    // nothing, sets nothing and is not stored.
    e.cap(ev("e", "real", json!({"$set": {"a": 1}})));
    let out = e.cap(ev(
        "$identify",
        "real",
        json!({"$anon_distinct_id": "ghost", "$process_person_profile": false,
                                         "$set": {"a": 2}}),
    ));
    assert_eq!((out.stats.events, out.stats.dropped_personless), (0, 1));
    assert!(e.person("ghost").is_none());
    let real = e.person("real").unwrap();
    assert_eq!(real.properties["a"], json!(1));
    assert_eq!(e.stamped().len(), 2);
}

/// Every personless event that only makes sense with persons is dropped
/// (`$identify`, `$create_alias`, `$merge_dangerously`, `$groupidentify`
/// with `$process_person_profile: false`, a boolean); the others of the
/// batch are stored.
#[test]
fn personless_person_events_are_dropped() {
    let e = env();
    let off = json!({"$process_person_profile": false, "alias": "x", "$anon_distinct_id": "y"});
    let mut batch: Vec<Value> = [
        "$identify",
        "$create_alias",
        "$merge_dangerously",
        "$groupidentify",
    ]
    .iter()
    .map(|name| ev(name, "u", off.clone()))
    .collect();
    batch.push(ev("$pageview", "u", off.clone()));
    // Not a boolean: the event processes its person, and merges.
    batch.push(ev(
        "$identify",
        "u",
        json!({"$process_person_profile": "false", "$anon_distinct_id": "y"}),
    ));
    let out = e.cap(Value::Array(batch));
    assert_eq!((out.stats.events, out.stats.dropped_personless), (2, 4));
    assert_eq!(out.seq_end - out.seq_start, 2);
    let stamped: Vec<String> = e.stamped().into_iter().map(|(d, _)| d).collect();
    assert_eq!(stamped, ["u", "u"]);
    let u = e.person("u").unwrap();
    assert_eq!(u.distinct_ids.len(), 2, "{u:?}");
    assert!(e.person("x").is_none());
}

#[test]
fn deleted_persons_ids_are_blocked_until_reset() {
    let e = env();
    e.cap(ev("e", "anon", json!({"$set": {"email": "x@example.com"}})));
    e.cap(identify("user", "anon"));
    let before = e.person("user").unwrap();
    let out = e.delete_ids(&["anon"]);
    assert_eq!((out.persons_found, out.persons_deleted), (1, 1));
    assert!(out.events_queued_for_deletion && !out.recordings_queued_for_deletion);
    // Events captured before are hidden at once.
    assert!(e.stamped().is_empty());
    // After: stored, no person, never merged, not deleted.
    let o = e.cap(ev("e", "user", json!({"$set": {"email": "y@example.com"}})));
    assert_eq!(o.stats.blocked, 1);
    e.cap(identify("user", "fresh"));
    e.cap(identify("fresh", "anon"));
    assert!(e.person("user").is_none() && e.person("anon").is_none());
    assert_eq!(e.stamped().len(), 3);
    assert_eq!(e.stamped()[0], ("user".to_string(), None));
    // "fresh" got a person of its own (the identify with "anon" did not merge).
    assert!(e.person("fresh").is_some());
    // Reset frees one id; its next event creates a new person whose UUID
    // is not the deleted one's.
    let r = e.p.reset_distinct_id(P, "user").unwrap();
    assert!(r.unblocked);
    e.cap(ev("e", "user", json!({})));
    let again = e.person("user").unwrap();
    assert_ne!(again.uuid, before.uuid);
    assert!(e.person("anon").is_none(), "anon stays blocked");
    // Resetting an unknown id is an error and changes nothing.
    assert!(e.p.reset_distinct_id(P, "nobody").is_err());
}

#[test]
fn reset_detaches_a_live_id() {
    let e = env();
    e.cap(identify("user", "anon"));
    let p = e.person("user").unwrap();
    let r = e.p.reset_distinct_id(P, "anon").unwrap();
    assert_eq!(r.detached_from, Some(p.uuid));
    assert!(e.person("anon").is_none());
    e.cap(ev("e", "anon", json!({})));
    assert_ne!(e.person("anon").unwrap().uuid, p.uuid);
}

/// The rows an id sent before a reset detached it are its old person's
/// (they carry its person id): the person's deletion deletes them, and
/// only them (the id's rows for its new person stay); also when the reset
/// left the person with no id at all, whose deletion then waits for its
/// purge like any other instead of being complete at once.
#[test]
fn a_deletion_covers_the_rows_of_ids_reset_away_from_the_person() {
    let e = env();
    let (p, q) = e.reset_away("user", "anon");
    let mine = |who: &elide_persons::Person| e.rows_of(who);
    assert_eq!((mine(&p), mine(&q)), (3, 1));
    let out = e.delete_ids(&["user"]);
    assert_eq!(out.persons_deleted, 1);
    assert_eq!(
        mine(&p),
        0,
        "a row anon sent for the deleted person is left"
    );
    assert_eq!(mine(&q), 1, "anon's row for its new person went too");

    // A person left with no id by a reset.
    e.cap(ev("e", "solo", json!({})));
    let s = e.person("solo").unwrap();
    e.p.reset_distinct_id(P, "solo").unwrap();
    assert_eq!(mine(&s), 1);
    let out = e.delete_uuids(&[s.uuid.to_string()]);
    assert_eq!(out.persons_deleted, 1);
    assert_eq!(mine(&s), 0, "the person with no id kept its row");
    let status =
        e.p.deletion_status(P, Some(&s.uuid.to_string()), None, 10, 0)
            .unwrap();
    assert_eq!(
        status[0].status,
        elide_persons::DeletionState::Pending,
        "complete before its rows were purged"
    );
}

/// A person's export reads a part once, though it holds rows of both an
/// id the person held throughout and one another person held before (an
/// id cut by `_seq`): the rows delivered are the same as before the flush.
#[test]
fn an_export_reads_each_part_once() {
    let e = env();
    let (a, b) = e.reset_away("a1", "x");
    let before: Vec<u64> = [&a, &b].iter().map(|w| e.rows_of(w) as u64).collect();
    assert_eq!(before, [3, 1]);
    e.p.store().flush().unwrap();
    for (who, n) in [&a, &b].into_iter().zip(before) {
        let rows = e.p.export_counts(P, &who.uuid.to_string()).unwrap();
        assert_eq!((rows.total(), rows.parts), (n, 1), "{rows:?}");
    }
}

/// An id another person held before (reset away from it, then the id of
/// a new person) goes with the new person's deletion from where it
/// joined it: the first person's rows of the id stay, and the first
/// person's own deletion still finds them (its record of the id outlives
/// the second's deletion). A subject-access export of either holds the
/// same rows. Both deletions are verified after the purge.
#[test]
fn a_deletion_leaves_the_rows_an_id_sent_for_its_earlier_person() {
    let e = env();
    let (a, b) = e.reset_away("a1", "x");
    e.cap(ev("e", "x", json!({})));
    let mine = |who: &elide_persons::Person| e.rows_of(who);
    let a_rows = mine(&a);
    assert_eq!((a_rows, mine(&b)), (3, 2));
    // A subject-access export (and the deletion's dry run) holds the
    // same rows: x's row from before the reset is a's, not b's.
    for who in [&a, &b] {
        let rows = e.p.export_counts(P, &who.uuid.to_string()).unwrap();
        assert_eq!(rows.total(), mine(who) as u64, "{rows:?}");
    }
    let delete = |key: &str| e.delete_uuids(&[key.to_string()]);
    assert_eq!(delete(&b.uuid.to_string()).persons_deleted, 1);
    assert_eq!(mine(&b), 0);
    assert_eq!(mine(&a), a_rows, "x's rows for its earlier person went too");
    assert_eq!(delete(&a.uuid.to_string()).persons_deleted, 1);
    assert_eq!(mine(&a), 0, "x's rows for its earlier person were left");
    let store = e.p.store();
    store.flush().unwrap();
    store
        .compact(elide_store::CompactRequest {
            manual: true,
            ..Default::default()
        })
        .unwrap();
    for who in [&a, &b] {
        let status =
            e.p.deletion_status(P, Some(&who.uuid.to_string()), None, 10, 0)
                .unwrap();
        assert_eq!(status[0].status, elide_persons::DeletionState::Completed);
    }
}

/// A deleted holder's rows stay no one's: a profile-only deletion of the
/// middle one of three holders of `x` leaves its boundary, so the third's
/// deletion takes only its own row; a reset that lifts a deletion's block
/// on `y` leaves one too, so the next person's deletion takes neither the
/// deleted person's row nor the one stored while `y` was blocked.
#[test]
fn a_deleted_or_unblocked_holders_rows_stay_no_ones() {
    let e = env();
    let rows_of_id = |did: &str| e.stamped().iter().filter(|(d, _)| d == did).count();
    let delete = |did: &str, events: bool| {
        let out =
            e.p.delete(
                P,
                &DeletePersons {
                    distinct_ids: vec![did.into()],
                    delete_events: events,
                    ..DeletePersons::default()
                },
            )
            .unwrap();
        assert_eq!(out.persons_deleted, 1);
    };
    // Holders a and b (reset away) and c, one row each.
    e.cap(ev("e", "x", json!({})));
    e.p.reset_distinct_id(P, "x").unwrap();
    e.cap(ev("e", "x", json!({})));
    let b =
        e.p.reset_distinct_id(P, "x")
            .unwrap()
            .detached_from
            .unwrap();
    e.cap(ev("e", "x", json!({})));
    let out =
        e.p.delete(
            P,
            &DeletePersons {
                uuids: vec![b.to_string()],
                ..DeletePersons::default()
            },
        )
        .unwrap();
    assert_eq!(out.persons_deleted, 1);
    assert_eq!(rows_of_id("x"), 3);
    delete("x", true);
    assert_eq!(
        rows_of_id("x"),
        2,
        "the last holder took an earlier one's row"
    );

    e.cap(ev("e", "y", json!({})));
    delete("y", false);
    e.cap(ev("e", "y", json!({}))); // blocked: no person
    assert!(e.p.reset_distinct_id(P, "y").unwrap().unblocked);
    e.cap(ev("e", "y", json!({})));
    delete("y", true);
    assert_eq!(
        rows_of_id("y"),
        2,
        "the unblocked id's next person took rows before it"
    );
}

/// A bulk deletion's receipts count every metadata row it removes or
/// erases once: a person with more than 1000 ids (two requests), one with
/// a detached id (its count on its run's request), one plain.
#[test]
fn a_bulk_deletions_metadata_rows_are_counted_once() {
    let e = env();
    let ids: Vec<Value> = (1..1500)
        .map(|k| identify("p0", &format!("p{k}")))
        .collect();
    let evs: Vec<_> = ids
        .into_iter()
        .map(|v| parse_payload(v, 0).unwrap().remove(0))
        .collect();
    e.p.capture(P, &evs).unwrap();
    e.cap(identify("r1", "r2"));
    e.p.reset_distinct_id(P, "r2").unwrap();
    e.cap(ev("e", "s", json!({})));
    assert_eq!(e.person("p0").unwrap().distinct_ids.len(), 1500);
    let out = e.delete_ids(&["p0", "r1", "s"]);
    assert_eq!(out.persons_deleted, 3);
    let requests = e.p.store().requests().unwrap();
    assert_eq!(requests.len(), 3, "p0's 1500 ids, the others' 2, r2's run");
    let counted: u64 = requests.iter().map(|r| r.metadata_rows_removed).sum();
    // Profiles, ids, and r1's record of r2.
    assert_eq!(counted, (1 + 1500) + (1 + 1 + 1) + (1 + 1));
}

/// A split, like a reset, leaves the rows a moved id sent until then with
/// its old person: the person's deletion deletes them, not the id's later
/// rows for its new person.
#[test]
fn a_deletion_covers_the_rows_of_ids_split_off_the_person() {
    let e = env();
    e.cap(ev("e", "a", json!({})));
    e.cap(ev("$create_alias", "a", json!({"alias": "b"})));
    e.cap(ev("e", "b", json!({})));
    let p = e.person("a").unwrap();
    e.p.split(P, &p.uuid.to_string(), &SplitSpec::Main("a".into()))
        .unwrap();
    e.cap(ev("e", "b", json!({})));
    let r = e.person("b").unwrap();
    assert_ne!(r.uuid, p.uuid);
    let mine = |who: &elide_persons::Person| e.rows_of(who);
    assert_eq!((mine(&p), mine(&r)), (3, 1));
    e.delete_ids(&["a"]);
    assert_eq!(mine(&p), 0, "a row b sent for the deleted person is left");
    assert_eq!(mine(&r), 1, "b's row for its new person went too");
}

#[test]
fn split_moves_ids_to_new_persons() {
    let e = env();
    e.cap(ev("e", "a", json!({"$set": {"k": 1}})));
    e.cap(ev("$create_alias", "a", json!({"alias": "b"})));
    e.cap(ev("$create_alias", "a", json!({"alias": "c"})));
    let p = e.person("a").unwrap();
    assert_eq!(p.distinct_ids, vec!["a", "b", "c"]);
    // Bad specs change nothing.
    let key = p.id.to_string();
    assert!(e.p.split(P, &key, &SplitSpec::Main("zzz".into())).is_err());
    assert!(e
        .p
        .split(
            P,
            &key,
            &SplitSpec::Ids(vec!["a".into(), "b".into(), "c".into()])
        )
        .is_err());
    assert_eq!(e.person("c").unwrap().uuid, p.uuid);
    let out = e.p.split(P, &key, &SplitSpec::Main("b".into())).unwrap();
    assert_eq!(out.new_persons.len(), 2);
    assert_eq!(e.person("b").unwrap().uuid, p.uuid);
    assert_eq!(e.person("b").unwrap().properties["k"], json!(1));
    // "a" created the person, so its derived UUID was taken: a new one.
    let a = e.person("a").unwrap();
    assert_ne!(a.uuid, p.uuid);
    assert!(a.properties.is_empty());
    assert_ne!(e.person("c").unwrap().uuid, a.uuid);
    assert_eq!(e.count(), 3);
}

#[test]
fn a_merged_away_uuid_is_never_reused() {
    let e = env();
    e.cap(ev("e", "x", json!({})));
    e.cap(ev("e", "y", json!({})));
    // x's person (UUID derived from "x") is merged into y's.
    e.cap(ev("$create_alias", "y", json!({"alias": "x"})));
    let merged_away = elide_persons::ids::person_uuid(P, "x");
    assert_eq!(e.person("x").unwrap().uuid, e.person("y").unwrap().uuid);
    // Detach x: its next event creates a person, which must not take the
    // merged-away UUID (events stamped with it belong to y's person).
    e.p.reset_distinct_id(P, "x").unwrap();
    e.cap(ev("e", "x", json!({})));
    let x = e.person("x").unwrap();
    assert_ne!(x.uuid, merged_away);
    assert_ne!(x.uuid, e.person("y").unwrap().uuid);
}

/// A chain of merges leaves every merged-away UUID one hop from the live
/// person, whether the merges come in one request or one per request.
#[test]
fn overrides_point_one_hop_to_the_live_person() {
    use elide_persons::ids::person_uuid;
    let events = [
        ev("e", "x", json!({})),
        ev("e", "y", json!({})),
        ev("e", "z", json!({})),
        ev("e", "w", json!({})),
        // x into y, y into z, then an unrelated merge (w into z) whose
        // repointing must not touch the others.
        ev("$create_alias", "y", json!({"alias": "x"})),
        ev("$merge_dangerously", "z", json!({"alias": "y"})),
        ev("$merge_dangerously", "z", json!({"alias": "w"})),
    ];
    for one_request in [false, true] {
        let e = env();
        if one_request {
            e.cap(Value::Array(events.to_vec()));
        } else {
            for v in &events {
                e.cap(v.clone());
            }
        }
        let b = elide_persons::tables::overrides_batches(e.p.meta(), Some(P), &mut |_| Ok(()))
            .unwrap()
            .remove(0);
        let col = |name: &str| {
            let a = b.column_by_name(name).unwrap().as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        };
        let mut got: Vec<(String, String)> = col("old_person_id")
            .into_iter()
            .zip(col("override_person_id"))
            .collect();
        got.sort();
        let z = person_uuid(P, "z").to_string();
        let mut want: Vec<(String, String)> = ["x", "y", "w"]
            .iter()
            .map(|d| (person_uuid(P, d).to_string(), z.clone()))
            .collect();
        want.sort();
        assert_eq!(got, want, "one request: {one_request}");
        assert_eq!(e.person("x").unwrap().uuid.to_string(), z);
    }
}

#[test]
fn deleted_and_merged_away_uuids_stay_taken() {
    let e = env();
    e.cap(ev("e", "anon", json!({})));
    e.cap(ev("e", "user", json!({})));
    e.cap(identify("user", "anon"));
    let p = e.person("user").unwrap();
    let anon_uuid = elide_persons::ids::person_uuid(P, "anon");
    assert_ne!(p.uuid, anon_uuid, "anon's person was merged away");
    e.p.delete(
        P,
        &DeletePersons {
            distinct_ids: vec!["user".into()],
            ..DeletePersons::default()
        },
    )
    .unwrap();
    // Personless events of a blocked id carry no person.
    e.cap(ev("e", "anon", json!({"$process_person_profile": false})));
    assert_eq!(e.stamped().last().unwrap().1, None);
    e.p.reset_distinct_id(P, "anon").unwrap();
    e.p.reset_distinct_id(P, "user").unwrap();
    // Personless events now carry the UUID a new person would get: neither
    // the deleted person's nor the merged-away one's.
    e.cap(ev("e", "anon", json!({"$process_person_profile": false})));
    let stamped = e.stamped().last().unwrap().1.clone().unwrap();
    assert_ne!(stamped, p.uuid.to_string());
    assert_ne!(stamped, anon_uuid.to_string());
    e.cap(ev("e", "anon", json!({})));
    e.cap(ev("e", "user", json!({})));
    let (a, u) = (
        e.person("anon").unwrap().uuid,
        e.person("user").unwrap().uuid,
    );
    assert_eq!(
        a.to_string(),
        stamped,
        "the person gets the UUID its personless events had"
    );
    assert!(a != anon_uuid && a != p.uuid && u != p.uuid && u != anon_uuid);
}

#[test]
fn overlong_merge_ids_do_not_merge() {
    let e = env();
    let long = "x".repeat(201);
    let o = e.cap(ev("$create_alias", "user", json!({"alias": long})));
    assert_eq!(o.stats.merges_illegal, 1);
    assert_eq!(e.person("user").unwrap().distinct_ids, vec!["user"]);
}

#[test]
fn one_persons_per_directory_per_process() {
    let e = env();
    let again = Persons::open(e.p.store().clone());
    assert!(again.unwrap_err().to_string().contains("already open"));
    let store = e.p.store().clone();
    drop(e.p);
    // Released on drop.
    let reopened = Persons::open(store).unwrap();
    drop(reopened);
    drop(e._dir);
}

/// A person's properties stop growing at the bound: an update past it is
/// not applied (and counted), the event is still stored, and updates that
/// fit (overwrites, removals) still apply. Before the bound, a public
/// token could grow one person's properties without end, every batch
/// rewriting the whole of them.
#[test]
fn person_properties_stop_growing_at_the_bound() {
    use elide_persons::props::MAX_PERSON_PROPERTIES_BYTES as MAX;
    let e = env();
    let big = "v".repeat(100 * 1024);
    let mut refused = 0;
    for i in 0..10 {
        let o = e.cap(ev(
            "e",
            "grower",
            json!({"$set": {format!("k{i}"): big.clone()}}),
        ));
        assert_eq!(o.stats.events, 1);
        refused += o.stats.properties_too_large;
    }
    let p = e.person("grower").unwrap();
    let len = serde_json::to_vec(&p.properties).unwrap().len();
    assert!(len <= MAX, "{len} bytes");
    assert_eq!(p.properties.len(), 6, "six values of 100 KiB fit");
    assert_eq!(refused, 4);
    // What fits still applies: an overwrite with a small value, a removal,
    // and then a new key in the room they made.
    e.cap(ev(
        "e",
        "grower",
        json!({"$set": {"k0": "small"}, "$unset": ["k1"]}),
    ));
    e.cap(ev("e", "grower", json!({"$set": {"k9": big.clone()}})));
    let p = e.person("grower").unwrap();
    assert_eq!(p.properties["k0"], "small");
    assert!(!p.properties.contains_key("k1"));
    assert!(p.properties.contains_key("k9"));
    assert!(serde_json::to_vec(&p.properties).unwrap().len() <= MAX);
}

/// A metadata rebuild blocks the ids a deleted person held when it was
/// deleted, and not an id it had lost before (reset away, then another
/// person's): that person's events keep getting a person.
#[test]
fn a_rebuild_blocks_a_deleted_persons_ids_and_not_those_it_had_lost() {
    let e = env();
    e.cap(ev("e", "a1", json!({})));
    e.cap(identify("a1", "x"));
    e.p.reset_distinct_id(P, "x").unwrap();
    e.cap(ev("e", "x", json!({})));
    let out = e.delete_ids(&["a1"]);
    assert_eq!(out.persons_deleted, 1);
    assert!(e.person("x").is_some());
    let (e, report) = e.rebuilt();
    assert_eq!(report.ids_blocked, 1, "{report:?}");
    e.cap(ev("e", "a1", json!({})));
    e.cap(ev("e", "x", json!({})));
    assert!(e.person("a1").is_none(), "a deleted person came back");
    assert!(e.person("x").is_some(), "x's new holder lost its person");
}

/// A deletion that kept the profile leaves its ids in use: a metadata
/// rebuild does not block them (their events get a person again).
#[test]
fn a_rebuild_leaves_the_ids_of_a_kept_profile_unblocked() {
    let e = env();
    e.cap(ev("e", "k", json!({})));
    e.cap(ev("e", "gone", json!({})));
    for (id, keep_person) in [("k", true), ("gone", false)] {
        let out =
            e.p.delete(
                P,
                &DeletePersons {
                    distinct_ids: vec![id.into()],
                    delete_events: true,
                    keep_person,
                    ..DeletePersons::default()
                },
            )
            .unwrap();
        assert_eq!(out.persons_found, 1);
    }
    let (e, report) = e.rebuilt();
    assert_eq!(report.ids_blocked, 1, "{report:?}");
    e.cap(ev("e", "k", json!({})));
    e.cap(ev("e", "gone", json!({})));
    assert!(e.person("k").is_some(), "the kept person's id was blocked");
    assert!(e.person("gone").is_none(), "a deleted person came back");
}

/// The activity a person logged before it was merged away is its
/// survivor's: the survivor's export lists it, and deleting the survivor
/// erases its details as it does the survivor's own.
#[test]
fn a_merged_away_persons_activity_is_exported_and_erased_with_its_survivor() {
    let e = env();
    e.cap(json!({"event": "e", "distinct_id": "anon"}));
    let mut set = serde_json::Map::new();
    set.insert("secret_key_name".into(), json!("x"));
    let anon = elide_persons::ids::person_uuid(P, "anon");
    e.p.update_properties(P, &anon.to_string(), set).unwrap();
    e.cap(json!({"event": "e", "distinct_id": "user"}));
    e.cap(json!({"event": "$identify", "distinct_id": "user", "properties": {"$anon_distinct_id": "anon"}}));
    let user = e.person("user").unwrap();
    assert!(user.distinct_ids.contains(&"anon".to_string()));
    assert_ne!(user.uuid, anon, "anon merged into user's person");
    let logged = e.p.activity(P, Some(&anon.to_string()), 10).unwrap();
    assert!(
        logged.iter().any(|a| a
            .detail
            .as_ref()
            .is_some_and(|d| d.to_string().contains("secret_key_name"))),
        "{logged:?}"
    );
    let export = e.p.export_meta(P, &user.uuid.to_string()).unwrap();
    assert!(
        export
            .activity
            .iter()
            .any(|a| a.person_uuid == Some(anon) && a.activity == "properties_updated"),
        "{:?}",
        export.activity
    );
    assert!(
        export.activity.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first"
    );
    e.p.delete(
        P,
        &elide_persons::DeletePersons {
            uuids: vec![user.uuid.to_string()],
            ..Default::default()
        },
    )
    .unwrap();
    for u in [anon, user.uuid] {
        let left = e.p.activity(P, Some(&u.to_string()), 100).unwrap();
        assert!(
            left.iter()
                .filter(|a| a.activity != "deleted")
                .all(|a| a.detail.is_none()),
            "{u}: {left:?}"
        );
    }
}

/// A project made with the largest id leaves none for the next: a clear
/// error, not an overflow.
#[test]
fn no_project_id_past_the_largest() {
    let e = env();
    e.p.ensure_project(i64::MAX).unwrap();
    let err = e.p.create_project("next").unwrap_err();
    assert!(
        matches!(err, elide_persons::PersonsError::InvalidInput(_)),
        "{err:?}"
    );
}

/// `$exception` and `$$heatmap` never update persons, as in PostHog: their
/// person is found or created, its properties stay.
#[test]
fn exceptions_and_heatmaps_never_update_persons() {
    let e = env();
    e.cap(
        json!({"event": "$pageview", "distinct_id": "u", "properties": {"$set": {"plan": "pro"}}}),
    );
    for name in ["$exception", "$$heatmap"] {
        e.cap(json!({"event": name, "distinct_id": "u",
            "properties": {"$set": {"plan": "x"}, "$set_once": {"first": 1}, "$unset": ["plan"]}}));
        e.cap(json!({"event": name, "distinct_id": format!("new{name}"), "properties": {"$set": {"a": 1}}}));
        let fresh = e
            .person(&format!("new{name}"))
            .expect("a person is created");
        assert!(
            fresh.properties.is_empty(),
            "{name}: {:?}",
            fresh.properties
        );
    }
    let p = e.person("u").unwrap();
    assert_eq!(p.properties.get("plan"), Some(&json!("pro")));
    assert!(p.properties.get("first").is_none());
}
