//! Reads the persons API and the query layer need besides lookups: how
//! many persons match a filter, the values a person property takes, and
//! every distinct id's person properties (one consistent read).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{PersonsError, Result};
use crate::meta::{MetaStore, PersonFilter};
use crate::persons::Persons;
use serde_json::Map;

/// One value of a person property and how many persons have it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PropertyValue {
    /// The value, as text.
    pub name: String,
    /// Persons with it.
    pub count: u64,
}

/// Most values [`Persons::property_values`] returns.
pub const MAX_VALUES: usize = 100;

/// Most memory the tally of a property's values may hold (each distinct
/// value's text and about 64 bytes of its own); past it the request is
/// refused, as a query past its memory limit is.
pub const MAX_VALUES_TALLY_BYTES: usize = 256 << 20;

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl<M: MetaStore> Persons<M> {
    /// How many persons match `filter` (its paging ignored).
    pub fn count(&self, project: i64, filter: &PersonFilter) -> Result<u64> {
        let mut all = filter.clone();
        all.offset = 0;
        all.limit = usize::MAX >> 1;
        self.meta()
            .read(|tx| Ok(tx.list_persons(project, &all)?.len() as u64))
    }

    /// The values person property `key` takes in `project`, most common
    /// first (ties by value), optionally only those containing `contains`
    /// (case-insensitive); at most [`MAX_VALUES`].
    pub fn property_values(
        &self,
        project: i64,
        key: &str,
        contains: Option<&str>,
    ) -> Result<Vec<PropertyValue>> {
        self.property_values_within(project, key, contains, MAX_VALUES_TALLY_BYTES)
    }

    /// [`Persons::property_values`] with a tally of at most `max_bytes`.
    fn property_values_within(
        &self,
        project: i64,
        key: &str,
        contains: Option<&str>,
        max_bytes: usize,
    ) -> Result<Vec<PropertyValue>> {
        if key.is_empty() {
            return Err(PersonsError::InvalidInput("key is required".into()));
        }
        let needle = contains.map(str::to_lowercase);
        // The persons are read one at a time; only the tally is held, and
        // it is bounded.
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut held = 0usize;
        self.meta().read(|tx| {
            tx.each_person(Some(project), &mut |r| {
                let Some(v) = r.properties.get(key).and_then(text_of) else {
                    return Ok(());
                };
                if !needle.as_ref().is_none_or(|n| v.to_lowercase().contains(n)) {
                    return Ok(());
                }
                if let Some(n) = counts.get_mut(&v) {
                    *n += 1;
                    return Ok(());
                }
                held += v.len() + 64;
                if held > max_bytes {
                    return Err(PersonsError::InvalidInput(format!(
                        "property {key:?} takes more distinct values than {max_bytes} bytes hold: narrow them with a value to look for"
                    )));
                }
                counts.insert(v, 1);
                Ok(())
            })
        })?;
        let mut out: Vec<PropertyValue> = counts
            .into_iter()
            .map(|(name, count)| PropertyValue { name, count })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        out.truncate(MAX_VALUES);
        Ok(out)
    }

    /// Each distinct id of `project` with its person's properties, read in
    /// one transaction (persons shared between their ids). `charge` is
    /// called with about the memory each person and each id will hold
    /// ([`properties_bytes`], plus the id) as it is read; its first error
    /// stops the read and is returned (a query's memory limit).
    pub fn properties_by_distinct_id(
        &self,
        project: i64,
        charge: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<HashMap<String, Arc<Map<String, Value>>>> {
        self.meta().read(|tx| {
            let mut persons: HashMap<uuid::Uuid, Arc<Map<String, Value>>> = HashMap::new();
            tx.each_person(Some(project), &mut |r| {
                charge(properties_bytes(&r.properties))?;
                persons.insert(r.uuid, Arc::new(r.properties));
                Ok(())
            })?;
            let mut out = HashMap::new();
            tx.each_distinct_id(Some(project), &mut |_, id, uuid| {
                if let Some(p) = persons.get(&uuid) {
                    charge(64 + id.len())?;
                    out.insert(id, Arc::clone(p));
                }
                Ok(())
            })?;
            Ok(out)
        })
    }
}

/// About the memory a parsed properties object holds: each key and value
/// with the map's and the values' own overhead.
pub fn properties_bytes(m: &Map<String, Value>) -> usize {
    fn value(v: &Value) -> usize {
        match v {
            Value::String(s) => 32 + s.len(),
            Value::Array(a) => 32 + a.iter().map(value).sum::<usize>(),
            Value::Object(m) => properties_bytes(m),
            _ => 32,
        }
    }
    32 + m
        .iter()
        .map(|(k, v)| 32 + k.len() + value(v))
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use elide_store::{Store, StoreOptions};
    use serde_json::{json, Value};

    use crate::capture::parse_payload;
    use crate::error::PersonsError;
    use crate::persons::Persons;

    /// The values of a property are tallied from persons read one at a
    /// time, and a tally past its bound is refused, not grown.
    #[test]
    fn a_values_tally_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            background_flush: false,
            background_compaction: false,
            ..StoreOptions::default()
        };
        let p = Persons::open(Store::open(dir.path(), opts).unwrap()).unwrap();
        let events: Vec<Value> = (0..300)
            .map(|i| {
                json!({"event": "$identify", "distinct_id": format!("u{i}"),
                    "properties": {"$set": {"k": format!("v{}", i % 30), "unique": i}}})
            })
            .collect();
        p.capture(1, &parse_payload(Value::Array(events), 0).unwrap())
            .unwrap();
        let got = p.property_values_within(1, "k", None, 30 * 70).unwrap();
        assert_eq!(got.len(), 30);
        assert!(got.iter().all(|v| v.count == 10), "{got:?}");
        let got = p
            .property_values_within(1, "k", Some("V2"), 1 << 20)
            .unwrap();
        assert_eq!(got.len(), 11, "v2 and v20-v29: {got:?}");
        let e = p
            .property_values_within(1, "unique", None, 100 * 70)
            .expect_err("past the bound");
        assert!(matches!(e, PersonsError::InvalidInput(_)), "{e:?}");
    }
}
