//! Person property operations, in PostHog's order: `$set_once` (only keys
//! that are absent), then `$set` (overwrite), then `$unset` (remove).
//!
//! The operations come from an event's `properties.$set`,
//! `properties.$set_once` and `properties.$unset`; top-level `$set` and
//! `$set_once` of a capture payload are folded into those at parse time
//! (the top-level value wins on a shared key, as PostHog does).

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
    /// Read the operations of an event's properties. `Err` names the bad
    /// field (a `$set` that is not an object, an `$unset` that is neither
    /// a list of strings nor an object).
    pub fn from_properties(props: &Map<String, Value>) -> Result<PropertyOps, String> {
        let object = |key: &str| -> Result<Map<String, Value>, String> {
            match props.get(key) {
                None | Some(Value::Null) => Ok(Map::new()),
                Some(Value::Object(m)) => Ok(m.clone()),
                Some(_) => Err(format!("properties.{key} must be an object")),
            }
        };
        let unset = match props.get("$unset") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err("properties.$unset must list strings".to_string()),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            Some(_) => {
                return Err("properties.$unset must be a list of keys or an object".into());
            }
        };
        Ok(PropertyOps {
            set_once: object("$set_once")?,
            set: object("$set")?,
            unset,
        })
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

/// A person's property states over time: the events' operations folded in
/// event-time order (ties in capture order, which the caller's order
/// gives), one point per event that changed something. Events whose
/// properties are not valid JSON objects are skipped.
pub fn properties_timeline<'a>(
    events: impl IntoIterator<Item = (i64, &'a str, &'a str, &'a str)>,
) -> Vec<TimelinePoint> {
    let mut state = Map::new();
    let mut points = Vec::new();
    for (ts, event, uuid, props) in events {
        let Ok(Value::Object(props)) = serde_json::from_str::<Value>(props) else {
            continue;
        };
        let Ok(ops) = PropertyOps::from_properties(&props) else {
            continue;
        };
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
        points.push(TimelinePoint {
            timestamp_us: ts,
            event: event.to_string(),
            event_uuid: uuid.to_string(),
            changed,
            properties: state.clone(),
        });
    }
    points
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
            let ops = PropertyOps::from_properties(&obj(props.clone())).unwrap();
            let mut p = obj(before.clone());
            let changed = ops.apply(&mut p);
            assert_eq!(Value::Object(p), after, "{before} + {props}");
            assert_eq!(changed, before != after, "{before} + {props}");
        }
    }

    #[test]
    fn malformed_operations_are_named() {
        for (props, needle) in [
            (json!({"$set": 1}), "$set"),
            (json!({"$set_once": "x"}), "$set_once"),
            (json!({"$unset": [1]}), "$unset"),
            (json!({"$unset": "a"}), "$unset"),
        ] {
            let e = PropertyOps::from_properties(&obj(props)).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
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
        let t = properties_timeline(evs);
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
}
