//! Identity resolution against a model: random sequences of captures (in
//! batches of several events, which exercises the resolver's per-batch
//! cache), session recordings, deletions (some keeping the profile, some
//! of several persons in one call, some by UUID, with or without events
//! and recordings), resets, splits and
//! flushes and compactions over a small pool of distinct ids, illegal ones included.
//! After every step the real persons (which ids share a person,
//! properties, identified flags) must equal the model's, and so must the
//! stored events still visible (buffered or in parts) and each person's
//! subject-access export. The model stamps each
//! event with its person as it is stored: the holder of its distinct id
//! then; for an event of an id no one holds (personless before the id's
//! first person, after a reset detached it, or while a deletion blocks
//! it), the id's next holder, or no one once a reset lifts the block. A
//! merge moves the stamps, a deletion leaves its person's no one's, and
//! a deletion with `delete_events` hides the events stamped with its
//! person, and no other (one that keeps the profile leaves the stamps;
//! a recording is stamped as an event sent personless, and
//! `delete_recordings` hides those stamped with the person;
//! a split leaves them too, and gives the moved ids' next events to
//! their new persons). The real deletion decides the same from its
//! records of resets and its store requests' floors.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use arrow::array::AsArray;
use elide_persons::ids::is_illegal_for_merge;
use elide_persons::{
    CaptureBatch, CaptureEvent, DeletePersons, ExportSink, PersonExport, PersonFilter, Persons,
    PersonsError, SplitSpec,
};
use elide_store::{Store, StoreOptions, Table};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const IDS: &[&str] = &["a", "b", "c", "d", "anonymous", "NaN"];
const KEYS: &[&str] = &["k1", "k2"];

#[derive(Debug, Clone)]
enum Merge {
    None,
    Identify(usize),
    Alias(usize),
    Dangerous(usize),
}

#[derive(Debug, Clone)]
struct Ev {
    did: usize,
    merge: Merge,
    personless: bool,
    set_once: Option<(usize, i64)>,
    set: Option<(usize, i64)>,
    unset: Option<usize>,
}

#[derive(Debug, Clone)]
enum Step {
    Capture(Vec<Ev>),
    /// Several batches captured as one unit (`capture_all`, what `elide
    /// persons capture` and bulk imports run): as if captured one after
    /// the other.
    CaptureAll(Vec<Vec<Ev>>),
    /// A session recording's row sent by a distinct id (no person
    /// resolution: `append_unresolved`).
    Record(usize),
    /// A distinct id naming the person, what goes with it, and whether
    /// the profile stays.
    Delete(usize, Also, bool),
    /// The same for the persons several ids name, in one call.
    DeleteMany(Vec<usize>, Also, bool),
    /// The person a distinct id names, deleted by its UUID.
    DeleteByUuid(usize, Also),
    Reset(usize),
    /// Split every other id off the person holding this one.
    Split(usize),
    /// Write the buffered rows into parts.
    Flush,
    /// Purge every deletion from the parts and merge them.
    Compact,
}

/// What a person deletion takes with it: its events, its recordings.
#[derive(Debug, Clone, Copy)]
struct Also {
    events: bool,
    recordings: bool,
}

fn also() -> impl Strategy<Value = Also> {
    (
        proptest::bool::weighted(0.75),
        proptest::bool::weighted(0.5),
    )
        .prop_map(|(events, recordings)| Also { events, recordings })
}

fn ev() -> impl Strategy<Value = Ev> {
    let merge = prop_oneof![
        4 => Just(Merge::None),
        2 => (0..IDS.len()).prop_map(Merge::Identify),
        1 => (0..IDS.len()).prop_map(Merge::Alias),
        1 => (0..IDS.len()).prop_map(Merge::Dangerous),
    ];
    let kv = proptest::option::of((0..KEYS.len(), 0..3i64));
    (
        0..IDS.len(),
        merge,
        proptest::bool::weighted(0.15),
        kv.clone(),
        kv,
        proptest::option::of(0..KEYS.len()),
    )
        .prop_map(|(did, merge, personless, set_once, set, unset)| Ev {
            did,
            merge,
            personless,
            set_once,
            set,
            unset,
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec(ev(), 1..5).prop_map(Step::Capture),
        1 => proptest::collection::vec(proptest::collection::vec(ev(), 1..4), 1..4)
            .prop_map(Step::CaptureAll),
        2 => (0..IDS.len()).prop_map(Step::Record),
        2 => (0..IDS.len(), also(), proptest::bool::weighted(0.25))
            .prop_map(|(d, e, k)| Step::Delete(d, e, k)),
        1 => (
            proptest::collection::vec(0..IDS.len(), 2..4),
            also(),
            proptest::bool::weighted(0.25),
        )
            .prop_map(|(d, e, k)| Step::DeleteMany(d, e, k)),
        1 => (0..IDS.len(), also()).prop_map(|(d, e)| Step::DeleteByUuid(d, e)),
        2 => (0..IDS.len()).prop_map(Step::Reset),
        1 => (0..IDS.len()).prop_map(Step::Split),
        1 => Just(Step::Flush),
        1 => Just(Step::Compact),
    ]
}

#[derive(Debug, Default)]
struct MPerson {
    props: Map<String, Value>,
    identified: bool,
}

#[derive(Debug, Default)]
struct Model {
    owner: HashMap<String, usize>,
    persons: HashMap<usize, MPerson>,
    blocked: HashSet<String>,
    next: usize,
    /// Every stored event and recording row, in order: its number.
    rows: Vec<Row>,
}

/// A stored event or recording row.
#[derive(Debug)]
struct Row {
    did: String,
    stamp: Stamp,
    /// A deletion hid it.
    hidden: bool,
    /// A session recording's row (else an event).
    recording: bool,
}

impl Row {
    fn new(did: &str, stamp: Stamp, hidden: bool, recording: bool) -> Row {
        Row {
            did: did.to_string(),
            stamp,
            hidden,
            recording,
        }
    }
}

/// Whose a stored event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Person(usize),
    /// The id's next holder's.
    Pending,
    NoOne,
}

impl Model {
    fn get_or_create(&mut self, did: &str, identified: bool) -> usize {
        if let Some(p) = self.owner.get(did) {
            return *p;
        }
        self.next += 1;
        self.persons.insert(
            self.next,
            MPerson {
                props: Map::new(),
                identified,
            },
        );
        self.owner.insert(did.to_string(), self.next);
        self.next
    }

    fn capture(&mut self, e: &Ev) {
        if e.personless && !matches!(e.merge, Merge::None) {
            // A personless merge is dropped, as PostHog drops it: never
            // stored (its number stays unused).
            self.rows
                .push(Row::new(IDS[e.did], Stamp::NoOne, true, false));
            return;
        }
        // Stored whatever happens to its person.
        self.rows
            .push(Row::new(IDS[e.did], Stamp::Pending, false, false));
        self.capture_person(e);
        self.stamp_pending();
    }

    /// A recording's row: stamped as an event sent personless.
    fn record(&mut self, did: usize) {
        self.rows
            .push(Row::new(IDS[did], Stamp::Pending, false, true));
        self.stamp_pending();
    }

    /// A row, or an earlier one, of an id someone holds now is its.
    fn stamp_pending(&mut self) {
        for r in &mut self.rows {
            if r.stamp == Stamp::Pending {
                if let Some(p) = self.owner.get(r.did.as_str()) {
                    r.stamp = Stamp::Person(*p);
                }
            }
        }
    }

    fn capture_person(&mut self, e: &Ev) {
        let did = IDS[e.did];
        if self.blocked.contains(did) || e.personless {
            return;
        }
        let (other, dangerous) = match e.merge {
            Merge::None => (None, false),
            Merge::Identify(o) | Merge::Alias(o) => (Some(IDS[o]), false),
            Merge::Dangerous(o) => (Some(IDS[o]), true),
        };
        let pid = match other {
            None => self.get_or_create(did, false),
            Some(o) if o == did => self.get_or_create(did, false),
            Some(o)
                if is_illegal_for_merge(o)
                    || is_illegal_for_merge(did)
                    || self.blocked.contains(o) =>
            {
                self.get_or_create(did, false)
            }
            Some(o) => {
                let pid = match (self.owner.get(o).copied(), self.owner.get(did).copied()) {
                    (Some(x), Some(t)) if x == t => t,
                    (Some(x), None) => {
                        self.owner.insert(did.to_string(), x);
                        x
                    }
                    (None, Some(t)) => {
                        self.owner.insert(o.to_string(), t);
                        t
                    }
                    (None, None) => {
                        let t = self.get_or_create(did, true);
                        self.owner.insert(o.to_string(), t);
                        t
                    }
                    (Some(x), Some(t)) => {
                        if self.persons[&x].identified && !dangerous {
                            // Refused; the event's person is identified.
                            self.persons.get_mut(&t).unwrap().identified = true;
                            return self.apply(t, e);
                        }
                        let gone = self.persons.remove(&x).unwrap();
                        let into = self.persons.get_mut(&t).unwrap();
                        for (k, v) in gone.props {
                            into.props.entry(k).or_insert(v);
                        }
                        for v in self.owner.values_mut() {
                            if *v == x {
                                *v = t;
                            }
                        }
                        for r in &mut self.rows {
                            if r.stamp == Stamp::Person(x) {
                                r.stamp = Stamp::Person(t);
                            }
                        }
                        t
                    }
                };
                self.persons.get_mut(&pid).unwrap().identified = true;
                pid
            }
        };
        self.apply(pid, e);
    }

    fn apply(&mut self, pid: usize, e: &Ev) {
        let p = &mut self.persons.get_mut(&pid).unwrap().props;
        if let Some((k, v)) = e.set_once {
            p.entry(KEYS[k].to_string()).or_insert(json!(v));
        }
        if let Some((k, v)) = e.set {
            p.insert(KEYS[k].to_string(), json!(v));
        }
        if let Some(k) = e.unset {
            p.remove(KEYS[k]);
        }
    }

    fn delete(&mut self, did: &str, also: Also, keep: bool) -> bool {
        let Some(pid) = self.owner.get(did).copied() else {
            return false;
        };
        let goes = |r: &Row| {
            if r.recording {
                also.recordings
            } else {
                also.events
            }
        };
        if keep {
            // The rows go; the person, its ids and their stamps stay.
            for r in &mut self.rows {
                r.hidden |= goes(r) && r.stamp == Stamp::Person(pid);
            }
            return true;
        }
        for r in &mut self.rows {
            if r.stamp == Stamp::Person(pid) {
                r.hidden |= goes(r);
                r.stamp = Stamp::NoOne;
            }
        }
        self.persons.remove(&pid);
        let ids: Vec<String> = self
            .owner
            .iter()
            .filter(|(_, p)| **p == pid)
            .map(|(d, _)| d.clone())
            .collect();
        for d in ids {
            self.owner.remove(&d);
            self.blocked.insert(d);
        }
        true
    }

    fn reset(&mut self, did: &str) -> bool {
        if self.blocked.remove(did) {
            // What the id sent while blocked is no one's.
            for r in &mut self.rows {
                if r.did == did && r.stamp == Stamp::Pending {
                    r.stamp = Stamp::NoOne;
                }
            }
            return true;
        }
        // Its events so far keep their stamps; its next are its next
        // holder's.
        self.owner.remove(did).is_some()
    }

    /// Delete the persons `dids` name (each once, whichever id names
    /// it), as one call does; returns how many.
    fn delete_many(&mut self, dids: &[&str], also: Also, keep: bool) -> usize {
        let mut pids: Vec<usize> = Vec::new();
        for d in dids {
            if let Some(p) = self.owner.get(*d) {
                if !pids.contains(p) {
                    pids.push(*p);
                }
            }
        }
        for p in &pids {
            let did = self
                .owner
                .iter()
                .find(|(_, q)| *q == p)
                .map(|(d, _)| d.clone())
                .expect("a found person holds an id");
            self.delete(&did, also, keep);
        }
        pids.len()
    }

    /// Move every id of `did`'s person but `did` to a new person each.
    fn split(&mut self, did: &str) -> bool {
        let Some(pid) = self.owner.get(did).copied() else {
            return false;
        };
        let moving: Vec<String> = self
            .owner
            .iter()
            .filter(|(d, p)| **p == pid && d.as_str() != did)
            .map(|(d, _)| d.clone())
            .collect();
        if moving.is_empty() {
            return false;
        }
        for d in moving {
            self.next += 1;
            self.persons.insert(self.next, MPerson::default());
            self.owner.insert(d, self.next);
        }
        true
    }

    /// Each person's ids (none for a person a reset left without one),
    /// with the numbers of its rows no deletion hid, sorted.
    fn exports(&self) -> Vec<(BTreeSet<String>, Vec<u64>)> {
        let mut by: BTreeMap<usize, BTreeSet<String>> =
            self.persons.keys().map(|p| (*p, BTreeSet::new())).collect();
        for (d, p) in &self.owner {
            by.entry(*p).or_default().insert(d.clone());
        }
        let mut out: Vec<_> = by
            .into_iter()
            .map(|(p, ids)| {
                let rows = (0..self.rows.len())
                    .filter(|i| self.rows[*i].stamp == Stamp::Person(p) && !self.rows[*i].hidden)
                    .map(|i| i as u64)
                    .collect();
                (ids, rows)
            })
            .collect();
        out.sort();
        out
    }

    /// The numbers of the rows no deletion hid.
    fn visible(&self) -> Vec<u64> {
        (0..self.rows.len())
            .filter(|i| !self.rows[*i].hidden)
            .map(|i| i as u64)
            .collect()
    }

    /// (sets of ids sharing a person) with each person's properties and flag.
    fn view(&self) -> BTreeSet<(BTreeSet<String>, String, bool)> {
        let mut by: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for (d, p) in &self.owner {
            by.entry(*p).or_default().insert(d.clone());
        }
        by.into_iter()
            .map(|(p, ids)| {
                let mp = &self.persons[&p];
                (
                    ids,
                    Value::Object(mp.props.clone()).to_string(),
                    mp.identified,
                )
            })
            .collect()
    }
}

fn real_view(p: &Persons) -> BTreeSet<(BTreeSet<String>, String, bool)> {
    let ids: Vec<String> = IDS.iter().map(|s| s.to_string()).collect();
    p.by_distinct_ids(1, &ids)
        .unwrap()
        .into_values()
        .map(|person| {
            let mut props: Vec<(String, Value)> = person.properties.into_iter().collect();
            props.sort_by(|a, b| a.0.cmp(&b.0));
            let props: Map<String, Value> = props.into_iter().collect();
            (
                person.distinct_ids.into_iter().collect(),
                Value::Object(props).to_string(),
                person.is_identified,
            )
        })
        .collect()
}

/// The numbers (`n`) of the rows of `b` (events, or recordings with
/// `{"n": …}` for snapshot data), appended to `out`.
fn numbers(b: &arrow::record_batch::RecordBatch, out: &mut Vec<u64>) {
    let props = b
        .column_by_name("properties")
        .or_else(|| b.column_by_name("snapshot_data"))
        .unwrap();
    let props = arrow::compute::cast(props, &arrow::datatypes::DataType::Utf8).unwrap();
    let props = props.as_string::<i32>();
    for i in 0..b.num_rows() {
        let v: Value = serde_json::from_str(props.value(i)).unwrap();
        out.push(v["n"].as_u64().unwrap());
    }
}

/// The numbers (`n`) of the visible stored events and recording rows,
/// buffered or in parts.
fn real_visible(p: &Persons) -> Vec<u64> {
    let ids: Vec<String> = IDS.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    p.store()
        .rows_of_distinct_ids(1, &ids, &Table::ALL, &mut |_, b| {
            numbers(&b, &mut out);
            Ok(())
        })
        .unwrap();
    out.sort_unstable();
    out
}

/// Each real person's ids (none for a person a reset left without one),
/// with the numbers of the events its export holds, sorted.
fn real_exports(p: &Persons) -> Vec<(BTreeSet<String>, Vec<u64>)> {
    struct Numbers(Vec<u64>);
    impl ExportSink for Numbers {
        fn person(&mut self, _: &PersonExport) -> elide_persons::Result<()> {
            Ok(())
        }
        fn rows(
            &mut self,
            _: Table,
            b: arrow::record_batch::RecordBatch,
        ) -> elide_store::Result<()> {
            numbers(&b, &mut self.0);
            Ok(())
        }
    }
    let all = PersonFilter {
        limit: 1000,
        ..PersonFilter::default()
    };
    let mut out: Vec<_> = p
        .list(1, &all)
        .unwrap()
        .results
        .into_iter()
        .map(|person| {
            let mut sink = Numbers(Vec::new());
            p.export(1, &person.uuid.to_string(), &Table::ALL, &mut sink)
                .unwrap();
            sink.0.sort_unstable();
            (person.distinct_ids.into_iter().collect(), sink.0)
        })
        .collect();
    out.sort();
    out
}

/// Recording row `n` of the run, sent by `did`.
fn recording(did: &str, n: usize) -> arrow::record_batch::RecordBatch {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Schema::new(vec![
        Field::new("session_id", DataType::Utf8, false),
        Field::new("distinct_id", DataType::Utf8, false),
        Field::new("project_id", DataType::Int64, false),
        Field::new("timestamp", ts, false),
        Field::new("snapshot_data", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![format!("s-{did}")])),
        Arc::new(StringArray::from(vec![did])),
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![1_790_000_000_000_000 + n as i64])
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(vec![json!({ "n": n }).to_string()])),
    ];
    arrow::record_batch::RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

/// Event `n` of the run.
fn to_event(e: &Ev, n: usize) -> CaptureEvent {
    let mut props = Map::new();
    props.insert("n".into(), json!(n));
    match e.merge {
        Merge::None => {}
        Merge::Identify(o) => {
            props.insert("$anon_distinct_id".into(), json!(IDS[o]));
        }
        Merge::Alias(o) | Merge::Dangerous(o) => {
            props.insert("alias".into(), json!(IDS[o]));
        }
    }
    if e.personless {
        props.insert("$process_person_profile".into(), json!(false));
    }
    if let Some((k, v)) = e.set_once {
        props.insert("$set_once".into(), json!({ KEYS[k]: v }));
    }
    if let Some((k, v)) = e.set {
        props.insert("$set".into(), json!({ KEYS[k]: v }));
    }
    if let Some(k) = e.unset {
        props.insert("$unset".into(), json!([KEYS[k]]));
    }
    let name = match e.merge {
        Merge::None => "$pageview",
        Merge::Identify(_) => "$identify",
        Merge::Alias(_) => "$create_alias",
        Merge::Dangerous(_) => "$merge_dangerously",
    };
    CaptureEvent::new(name, IDS[e.did], props).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn identity_matches_the_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..Default::default()
        }).unwrap();
        let p = Persons::open(store).unwrap();
        // Recordings are appended to an existing project (a capture makes
        // its project on the way).
        prop_assert_eq!(p.create_project("model").unwrap().id, 1);
        let mut m = Model::default();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Capture(evs) => {
                    let first = m.rows.len();
                    let batch: Vec<CaptureEvent> =
                        evs.iter().enumerate().map(|(k, e)| to_event(e, first + k)).collect();
                    p.capture(1, &batch).unwrap();
                    for e in evs {
                        m.capture(e);
                    }
                }
                Step::CaptureAll(batches) => {
                    let mut first = m.rows.len();
                    let mut input = Vec::new();
                    for evs in batches {
                        let events: Vec<CaptureEvent> =
                            evs.iter().enumerate().map(|(k, e)| to_event(e, first + k)).collect();
                        first += evs.len();
                        input.push(Ok(CaptureBatch { events, lines: Vec::new() }));
                    }
                    p.capture_all(1, &mut input.into_iter(), &mut |_| {}).unwrap();
                    for e in batches.iter().flatten() {
                        m.capture(e);
                    }
                }
                Step::Record(d) => {
                    p.append_unresolved(1, Table::Recordings, &recording(IDS[*d], m.rows.len())).unwrap();
                    m.record(*d);
                }
                Step::Delete(d, also, keep) => {
                    let r = p.delete(1, &DeletePersons {
                        distinct_ids: vec![IDS[*d].into()],
                        delete_events: also.events,
                        delete_recordings: also.recordings,
                        keep_person: *keep,
                        ..Default::default()
                    }).unwrap();
                    prop_assert_eq!(r.persons_deleted, usize::from(r.persons_found == 1 && !keep));
                    prop_assert_eq!(r.persons_found == 1, m.delete(IDS[*d], *also, *keep), "step {}: delete {}", i, IDS[*d]);
                }
                Step::DeleteMany(ds, also, keep) => {
                    let dids: Vec<&str> = ds.iter().map(|d| IDS[*d]).collect();
                    let r = p.delete(1, &DeletePersons {
                        distinct_ids: dids.iter().map(|d| d.to_string()).collect(),
                        delete_events: also.events,
                        delete_recordings: also.recordings,
                        keep_person: *keep,
                        ..Default::default()
                    }).unwrap();
                    prop_assert_eq!(r.persons_found, m.delete_many(&dids, *also, *keep), "step {}: delete {:?}", i, dids);
                }
                Step::DeleteByUuid(d, also) => {
                    let holder = p.by_distinct_ids(1, &[IDS[*d].to_string()]).unwrap();
                    let real = match holder.into_values().next() {
                        Some(person) => p.delete(1, &DeletePersons {
                            uuids: vec![person.uuid.to_string()],
                            delete_events: also.events,
                            delete_recordings: also.recordings,
                            ..Default::default()
                        }).unwrap().persons_deleted == 1,
                        None => false,
                    };
                    prop_assert_eq!(real, m.delete(IDS[*d], *also, false), "step {}: delete by UUID {}", i, IDS[*d]);
                }
                Step::Reset(d) => {
                    let real = p.reset_distinct_id(1, IDS[*d]).is_ok();
                    prop_assert_eq!(real, m.reset(IDS[*d]), "step {}: reset {}", i, IDS[*d]);
                }
                Step::Split(d) => {
                    let holder = p.by_distinct_ids(1, &[IDS[*d].to_string()]).unwrap();
                    let real = holder.into_values().next().is_some_and(|person| {
                        p.split(1, &person.uuid.to_string(), &SplitSpec::Main(IDS[*d].into()))
                            .is_ok()
                    });
                    prop_assert_eq!(real, m.split(IDS[*d]), "step {}: split {}", i, IDS[*d]);
                }
                Step::Flush => p.store().flush().unwrap(),
                Step::Compact => {
                    let r = p.store().compact(elide_store::CompactRequest {
                        manual: true,
                        merges: true,
                        ..Default::default()
                    }).unwrap();
                    prop_assert!(r.verification_failures.is_empty(), "{:?}", r.verification_failures);
                }
            }
            prop_assert_eq!(real_view(&p), m.view(), "after step {}: {:?}", i, s);
            prop_assert_eq!(real_visible(&p), m.visible(), "rows after step {}: {:?}", i, s);
            prop_assert_eq!(real_exports(&p), m.exports(), "exports after step {}: {:?}", i, s);
        }
    }
}

/// Rows appended to a project must all be that project's: a scan filters
/// projects by part, so another project's row would be its to read.
#[test]
fn appended_rows_of_another_project_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..Default::default()
        },
    )
    .unwrap();
    let p = Persons::open(store).unwrap();
    assert_eq!(p.create_project("one").unwrap().id, 1);
    assert_eq!(p.create_project("two").unwrap().id, 2);
    let rows = recording(IDS[0], 0);
    let e = p
        .append_unresolved(2, Table::Recordings, &rows)
        .unwrap_err();
    assert!(matches!(e, PersonsError::InvalidInput(_)), "{e}");
    let e = p
        .capture_and_append(2, &[], Table::Recordings, &rows)
        .unwrap_err();
    assert!(matches!(e, PersonsError::InvalidInput(_)), "{e}");
    assert_eq!(p.store().status().unwrap().memtable_rows, 0);
    p.append_unresolved(1, Table::Recordings, &rows).unwrap();
    assert_eq!(p.store().status().unwrap().memtable_rows, 1);
}
