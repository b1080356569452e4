//! Identity resolution against a model: random sequences of captures (in
//! batches of several events, which exercises the resolver's per-batch
//! cache), deletions and resets over a small pool of distinct ids,
//! illegal ones included. After every step the real persons (which ids
//! share a person, properties, identified flags) must equal the model's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use elide_persons::ids::is_illegal_for_merge;
use elide_persons::{CaptureEvent, DeletePersons, Persons};
use elide_store::{Store, StoreOptions};
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
    Delete(usize),
    Reset(usize),
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
        1 => (0..IDS.len()).prop_map(Step::Delete),
        1 => (0..IDS.len()).prop_map(Step::Reset),
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

    fn delete(&mut self, did: &str) -> bool {
        let Some(pid) = self.owner.get(did).copied() else {
            return false;
        };
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
            return true;
        }
        self.owner.remove(did).is_some()
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

fn to_event(e: &Ev) -> CaptureEvent {
    let mut props = Map::new();
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
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn identity_matches_the_model(steps in proptest::collection::vec(step(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..Default::default()
        }).unwrap();
        let p = Persons::open(store).unwrap();
        let mut m = Model::default();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Capture(evs) => {
                    let batch: Vec<CaptureEvent> = evs.iter().map(to_event).collect();
                    p.capture(1, &batch).unwrap();
                    for e in evs {
                        m.capture(e);
                    }
                }
                Step::Delete(d) => {
                    let r = p.delete(1, &DeletePersons { distinct_ids: vec![IDS[*d].into()], ..Default::default() }).unwrap();
                    prop_assert_eq!(r.persons_deleted == 1, m.delete(IDS[*d]), "step {}: delete {}", i, IDS[*d]);
                }
                Step::Reset(d) => {
                    let real = p.reset_distinct_id(1, IDS[*d]).is_ok();
                    prop_assert_eq!(real, m.reset(IDS[*d]), "step {}: reset {}", i, IDS[*d]);
                }
            }
            prop_assert_eq!(real_view(&p), m.view(), "after step {}: {:?}", i, s);
        }
    }
}
