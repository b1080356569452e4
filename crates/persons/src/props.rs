//! Person property operations, in PostHog's order: `$set_once` (only keys
//! that are absent), then `$set` (overwrite), then `$unset` (remove).
//!
//! The operations come from an event's `properties.$set`,
//! `properties.$set_once` and `properties.$unset`; top-level `$set` and
//! `$set_once` of a capture payload are folded into those at parse time
//! (the top-level value wins on a shared key, as PostHog does).

use std::collections::VecDeque;

use serde_json::{Map, Value};

/// The property operations an event carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropertyOps {
    /// Set where absent.
    pub set_once: Map<String, Value>,
    /// Set, overwriting.
    pub set: Map<String, Value>,
    /// Remove.
    pub unset: Vec<String>,
}

impl PropertyOps {
    /// Read the operations of an event's properties, with the problems
    /// of those left out. As PostHog's ingestion does, a malformed
    /// operator changes nothing and refuses nothing: a `$set` or
    /// `$set_once` that is not an object, an `$unset` that is neither a
    /// list nor an object, and the entries of an `$unset` list that are
    /// not strings are left out (the event keeps them in its properties).
    pub fn from_properties(props: &Map<String, Value>) -> (PropertyOps, Vec<String>) {
        let mut left_out = Vec::new();
        let mut object = |key: &str| -> Map<String, Value> {
            match props.get(key) {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    left_out.push(format!("properties.{key} is not an object"));
                    Map::new()
                }
            }
        };
        let set_once = object("$set_once");
        let set = object("$set");
        let unset = match props.get("$unset") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let keys: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                if keys.len() < items.len() {
                    left_out.push("properties.$unset lists values that are not strings".into());
                }
                keys
            }
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            Some(_) => {
                left_out.push("properties.$unset is neither a list of keys nor an object".into());
                Vec::new()
            }
        };
        (
            PropertyOps {
                set_once,
                set,
                unset,
            },
            left_out,
        )
    }

    /// The length of `target` as compact JSON after [`PropertyOps::apply`],
    /// given its length `now` before: computed from the entries the
    /// operations touch (applied in apply's order), so its cost is that
    /// of the operations, not of the whole object.
    pub fn len_after(&self, target: &Map<String, Value>, now: usize) -> usize {
        let mut touched: std::collections::HashMap<&str, Option<&Value>> = Default::default();
        for (k, v) in &self.set_once {
            let present = match touched.get(k.as_str()) {
                Some(t) => t.is_some(),
                None => target.contains_key(k),
            };
            if !present {
                touched.insert(k, Some(v));
            }
        }
        for (k, v) in &self.set {
            touched.insert(k, Some(v));
        }
        for k in &self.unset {
            touched.insert(k, None);
        }
        // `{` entries joined by `,` `}`, an entry being `"key":value`.
        let entry = |k: &str, v: &Value| json_len(k) + 1 + json_len(v);
        let mut n = target.len();
        let mut entries = now.saturating_sub(2 + n.saturating_sub(1));
        for (k, new) in touched {
            if let Some(old) = target.get(k) {
                entries = entries.saturating_sub(entry(k, old));
                n -= 1;
            }
            if let Some(new) = new {
                entries += entry(k, new);
                n += 1;
            }
        }
        2 + entries + n.saturating_sub(1)
    }

    /// No operation at all.
    pub fn is_empty(&self) -> bool {
        self.set_once.is_empty() && self.set.is_empty() && self.unset.is_empty()
    }

    /// Apply to `target`; true when it changed.
    pub fn apply(&self, target: &mut Map<String, Value>) -> bool {
        let mut changed = false;
        for (k, v) in &self.set_once {
            if !target.contains_key(k) {
                target.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        for (k, v) in &self.set {
            if target.get(k) != Some(v) {
                target.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        for k in &self.unset {
            changed |= target.remove(k).is_some();
        }
        changed
    }
}

/// The largest a person's properties may grow to by an event's update, as
/// JSON text: 640 KiB. An update past it is not applied (the event is
/// still stored), as PostHog refuses person updates past its own size
/// check; every later read and write of the person stays bounded.
pub const MAX_PERSON_PROPERTIES_BYTES: usize = 640 * 1024;

/// The length of `v` as compact JSON text, without building the text.
pub fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serialising a JSON value or a string into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Merge the properties of a merged-away person into the target's: keys
/// of both keep the target's value.
pub fn merge_properties(target: &mut Map<String, Value>, merged_away: &Map<String, Value>) {
    for (k, v) in merged_away {
        if !target.contains_key(k) {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// One step of a person's property history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimelinePoint {
    /// Event time (µs since the epoch, UTC).
    pub timestamp_us: i64,
    /// The event that changed the properties.
    pub event: String,
    /// Its UUID.
    pub event_uuid: String,
    /// Keys whose value it changed.
    pub changed: Vec<String>,
    /// The properties after it.
    pub properties: Map<String, Value>,
}

/// Most property values the points of one timeline hold together (each
/// point carries the whole state after it): past it, the earliest points
/// are left out.
pub const MAX_TIMELINE_VALUES: usize = 1_000_000;

/// A person's property states over time (see [`properties_timeline`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// The points, oldest first: the latest that fit
    /// [`MAX_TIMELINE_VALUES`].
    pub points: Vec<TimelinePoint>,
    /// Earlier points left out to fit it.
    pub left_out: usize,
}

/// A person's property states over time: the events' operations folded in
/// event-time order (ties in capture order, which the caller's order
/// gives), one point per event that changed something. Events whose
/// properties are not valid JSON objects are skipped.
///
/// Each point holds the whole state after it, so a person whose every
/// event sets a new key makes a timeline quadratic in its events: the fold
/// keeps only each point's changes (and the values they replaced), and the
/// states are rebuilt backwards from the last one, for the latest points
/// whose states hold at most [`MAX_TIMELINE_VALUES`] values together.
pub fn properties_timeline<'a>(
    events: impl IntoIterator<Item = (i64, &'a str, &'a str, &'a str)>,
) -> Timeline {
    let mut fold = TimelineFold::new(MAX_TIMELINE_VALUES);
    for (ts, event, uuid, props) in events {
        fold.push(ts, event, uuid, props);
    }
    fold.finish()
}

/// [`properties_timeline`] one event at a time, so that a caller can
/// stream a person's events through it: it keeps the current state and
/// the changes of the latest `max_values` points (no point before them
/// can fit in the answer, each costing at least one value), never the
/// events.
#[derive(Debug)]
pub struct TimelineFold {
    /// Most values the answer's points hold together.
    max_values: usize,
    state: Map<String, Value>,
    steps: VecDeque<Step>,
    /// Points dropped from the front of `steps`.
    dropped: usize,
}

/// A point without its state: the keys it changed, each with the value it
/// had before (None: absent).
#[derive(Debug)]
struct Step {
    timestamp_us: i64,
    event: String,
    event_uuid: String,
    undo: Vec<(String, Option<Value>)>,
}

impl TimelineFold {
    /// A fold whose answer holds at most `max_values` values (the
    /// server's is [`MAX_TIMELINE_VALUES`]).
    pub fn new(max_values: usize) -> TimelineFold {
        TimelineFold {
            max_values,
            state: Map::new(),
            steps: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Fold in the next event (event-time order, ties in capture order).
    /// Properties that are not a JSON object are skipped.
    pub fn push(&mut self, ts: i64, event: &str, uuid: &str, props: &str) {
        // As capture applies them: these events never change the person.
        if crate::capture::NO_PERSON_UPDATE_EVENTS.contains(&event) {
            return;
        }
        let Ok(Value::Object(props)) = serde_json::from_str::<Value>(props) else {
            return;
        };
        let (ops, _) = PropertyOps::from_properties(&props);
        // The keys the operations touch, with their values before.
        let mut keys: Vec<&String> = ops
            .set_once
            .keys()
            .chain(ops.set.keys())
            .chain(ops.unset.iter())
            .collect();
        keys.sort();
        keys.dedup();
        let before: Vec<(String, Option<Value>)> = keys
            .into_iter()
            .map(|k| (k.clone(), self.state.get(k).cloned()))
            .collect();
        if !ops.apply(&mut self.state) {
            return;
        }
        let undo: Vec<(String, Option<Value>)> = before
            .into_iter()
            .filter(|(k, old)| self.state.get(k) != old.as_ref())
            .collect();
        if self.steps.len() >= self.max_values && self.steps.pop_front().is_some() {
            self.dropped += 1;
        }
        self.steps.push_back(Step {
            timestamp_us: ts,
            event: event.to_string(),
            event_uuid: uuid.to_string(),
            undo,
        });
    }

    /// The timeline of the events pushed.
    pub fn finish(self) -> Timeline {
        let TimelineFold {
            max_values,
            mut state,
            mut steps,
            dropped,
        } = self;
        // Backwards from the last state: each point's state, then undo its
        // changes for the point before.
        let mut points = Vec::new();
        let mut budget = max_values;
        while let Some(step) = steps.pop_back() {
            let Some(left) = budget.checked_sub(state.len().max(1)) else {
                steps.push_back(step);
                break;
            };
            budget = left;
            let changed = step.undo.iter().map(|(k, _)| k.clone()).collect();
            points.push(TimelinePoint {
                timestamp_us: step.timestamp_us,
                event: step.event,
                event_uuid: step.event_uuid,
                changed,
                properties: state.clone(),
            });
            for (k, old) in step.undo {
                match old {
                    Some(v) => state.insert(k, v),
                    None => state.remove(&k),
                };
            }
        }
        points.reverse();
        Timeline {
            points,
            left_out: dropped + steps.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test literal is an object"),
        }
    }

    /// The length after the operations, computed from the touched
    /// entries, is the length of the result, whatever the overlaps.
    #[test]
    fn len_after_is_the_length_of_the_result() {
        let targets = [
            json!({}),
            json!({"a": 1}),
            json!({"a": "x", "b": [1, 2], "c": {"d": null}, "é\"q": "\u{1}"}),
        ];
        let events = [
            json!({}),
            json!({"$set": {"a": 2}}),
            json!({"$set_once": {"a": 9, "z": "new"}}),
            json!({"$unset": ["a", "missing"]}),
            json!({"$set_once": {"n": 1}, "$set": {"n": 2}, "$unset": ["n"]}),
            json!({"$set_once": {"a": "once"}, "$set": {"b": "long value"}, "$unset": {"c": 1}}),
            json!({"$unset": ["a", "b", "c", "é\"q"]}),
            json!({"$set": {"a": "x"}}),
        ];
        for t in &targets {
            for e in &events {
                let target = obj(t.clone());
                let (ops, _) = PropertyOps::from_properties(&obj(e.clone()));
                let mut after = target.clone();
                ops.apply(&mut after);
                assert_eq!(
                    ops.len_after(&target, json_len(&target)),
                    json_len(&after),
                    "{t} with {e}"
                );
            }
        }
    }

    /// Table of (person before, event properties, person after).
    #[test]
    fn operators_apply_in_posthogs_order() {
        let cases = [
            // $set_once only fills absent keys.
            (
                json!({"a": 1}),
                json!({"$set_once": {"a": 2, "b": 3}}),
                json!({"a": 1, "b": 3}),
            ),
            // $set overwrites.
            (json!({"a": 1}), json!({"$set": {"a": 2}}), json!({"a": 2})),
            // $set_once runs first, so $set wins on a shared key.
            (
                json!({}),
                json!({"$set_once": {"a": 1}, "$set": {"a": 2}}),
                json!({"a": 2}),
            ),
            // $unset runs last: it removes even what $set just set.
            (
                json!({"a": 1}),
                json!({"$set": {"b": 1}, "$unset": ["a", "b"]}),
                json!({}),
            ),
            // $unset as an object uses its keys.
            (
                json!({"a": 1, "c": 1}),
                json!({"$unset": {"a": null}}),
                json!({"c": 1}),
            ),
            // null is a value for $set.
            (
                json!({"a": 1}),
                json!({"$set": {"a": null}}),
                json!({"a": null}),
            ),
            // Nothing to do.
            (json!({"a": 1}), json!({"x": 1}), json!({"a": 1})),
        ];
        for (before, props, after) in cases {
            let (ops, _) = PropertyOps::from_properties(&obj(props.clone()));
            let mut p = obj(before.clone());
            let changed = ops.apply(&mut p);
            assert_eq!(Value::Object(p), after, "{before} + {props}");
            assert_eq!(changed, before != after, "{before} + {props}");
        }
    }

    /// A malformed operator is left out and named; the well-formed ones
    /// beside it stay.
    #[test]
    fn malformed_operations_are_left_out_and_named() {
        for (props, needle) in [
            (json!({"$set": 1, "$unset": ["b"]}), "$set"),
            (json!({"$set_once": "x", "$unset": ["b"]}), "$set_once"),
            (json!({"$unset": [1, "b"]}), "$unset"),
        ] {
            let (ops, left_out) = PropertyOps::from_properties(&obj(props));
            assert_eq!(ops.unset, vec!["b".to_string()]);
            assert!(ops.set.is_empty() && ops.set_once.is_empty());
            assert!(
                left_out.len() == 1 && left_out[0].contains(needle),
                "{left_out:?}"
            );
        }
        let (ops, left_out) =
            PropertyOps::from_properties(&obj(json!({"$unset": "a", "$set": {"c": 1}})));
        assert!(ops.unset.is_empty() && ops.set.len() == 1, "{ops:?}");
        assert!(left_out[0].contains("$unset"), "{left_out:?}");
    }

    #[test]
    fn merge_keeps_the_targets_values() {
        let mut t = obj(json!({"a": 1, "b": 2}));
        merge_properties(&mut t, &obj(json!({"b": 3, "c": 4})));
        assert_eq!(Value::Object(t), json!({"a": 1, "b": 2, "c": 4}));
    }

    #[test]
    fn timeline_has_one_point_per_change() {
        let evs = [
            (1, "$pageview", "u1", r#"{"$set": {"plan": "free"}}"#),
            (2, "$pageview", "u2", r#"{"$set": {"plan": "free"}}"#),
            (
                3,
                "upgrade",
                "u3",
                r#"{"$set": {"plan": "pro"}, "$set_once": {"first": 3}}"#,
            ),
            (4, "x", "u4", "not json"),
            (
                5,
                "$delete_person_property",
                "u5",
                r#"{"$unset": ["first"]}"#,
            ),
        ];
        let Timeline {
            points: t,
            left_out,
        } = properties_timeline(evs);
        assert_eq!(left_out, 0);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].changed, vec!["plan"]);
        assert_eq!(t[1].changed, vec!["first", "plan"]);
        assert_eq!(
            Value::Object(t[1].properties.clone()),
            json!({"plan": "pro", "first": 3})
        );
        assert_eq!(t[2].changed, vec!["first"]);
        assert_eq!(
            Value::Object(t[2].properties.clone()),
            json!({"plan": "pro"})
        );
    }

    /// The timeline as first written: each point's state cloned, the
    /// changed keys found by comparing whole states.
    fn model(events: &[(i64, String)]) -> Vec<(i64, Vec<String>, Map<String, Value>)> {
        let mut state = Map::new();
        let mut out = Vec::new();
        for (ts, props) in events {
            let Ok(Value::Object(props)) = serde_json::from_str::<Value>(props) else {
                continue;
            };
            let (ops, _) = PropertyOps::from_properties(&props);
            let before = state.clone();
            if !ops.apply(&mut state) {
                continue;
            }
            let mut changed: Vec<String> = state
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .chain(before.keys().filter(|k| !state.contains_key(*k)).cloned())
                .collect();
            changed.sort();
            out.push((*ts, changed, state.clone()));
        }
        out
    }

    /// Random `$set`, `$set_once` and `$unset` over five keys and three
    /// values: the same points as the model.
    #[test]
    fn timeline_matches_the_model() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let events: Vec<(i64, String)> = (0..next(30) as i64)
                .map(|ts| {
                    let mut props = serde_json::Map::new();
                    for op in ["$set", "$set_once"] {
                        let m: Map<String, Value> = (0..next(3))
                            .map(|_| (format!("k{}", next(5)), json!(next(3))))
                            .collect();
                        if !m.is_empty() {
                            props.insert(op.into(), Value::Object(m));
                        }
                    }
                    let unset: Vec<Value> = (0..next(2))
                        .map(|_| json!(format!("k{}", next(5))))
                        .collect();
                    if !unset.is_empty() {
                        props.insert("$unset".into(), Value::Array(unset));
                    }
                    (ts, Value::Object(props).to_string())
                })
                .collect();
            let t = properties_timeline(events.iter().map(|(ts, p)| (*ts, "e", "u", p.as_str())));
            assert_eq!(t.left_out, 0);
            let got: Vec<(i64, Vec<String>, Map<String, Value>)> = t
                .points
                .into_iter()
                .map(|p| (p.timestamp_us, p.changed, p.properties))
                .collect();
            let all = model(&events);
            assert_eq!(got, all, "{events:?}");
            // With a small bound: the model's latest points whose states
            // fit it (each costing at least one value), however many
            // earlier ones the fold dropped as it went.
            for max in 1..12 {
                let mut fold = TimelineFold::new(max);
                for (ts, p) in &events {
                    fold.push(*ts, "e", "u", p);
                }
                let t = fold.finish();
                let mut budget = max;
                let kept = all
                    .iter()
                    .rev()
                    .take_while(|(_, _, s)| match budget.checked_sub(s.len().max(1)) {
                        Some(left) => {
                            budget = left;
                            true
                        }
                        None => false,
                    })
                    .count();
                let want = &all[all.len() - kept..];
                let got: Vec<(i64, Vec<String>, Map<String, Value>)> = t
                    .points
                    .into_iter()
                    .map(|p| (p.timestamp_us, p.changed, p.properties))
                    .collect();
                assert_eq!(got, want, "max {max}: {events:?}");
                assert_eq!(t.left_out, all.len() - kept, "max {max}");
            }
        }
    }

    /// A person whose every event sets a new key: the latest points whose
    /// states fit MAX_TIMELINE_VALUES are kept, and the others counted.
    #[test]
    fn a_long_timeline_keeps_its_latest_points_within_the_bound() {
        let events: Vec<String> = (0..2_000)
            .map(|i| json!({"$set": {format!("k{i:04}"): i}}).to_string())
            .collect();
        let t = properties_timeline(
            events
                .iter()
                .enumerate()
                .map(|(i, p)| (i as i64, "e", "u", p.as_str())),
        );
        assert_eq!(t.points.len() + t.left_out, 2_000);
        assert!(t.left_out > 0);
        let held: usize = t.points.iter().map(|p| p.properties.len()).sum();
        assert!(held <= MAX_TIMELINE_VALUES, "{held}");
        let last = t.points.last().expect("the latest point");
        assert_eq!((last.timestamp_us, last.properties.len()), (1_999, 2_000));
        let first = &t.points[0];
        assert_eq!(first.timestamp_us as usize, t.left_out);
        assert_eq!(first.changed, vec![format!("k{:04}", t.left_out)]);
        assert_eq!(first.properties.len(), t.left_out + 1);
    }
}
