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
        if key.is_empty() {
            return Err(PersonsError::InvalidInput("key is required".into()));
        }
        let needle = contains.map(str::to_lowercase);
        let rows = self.meta().read(|tx| tx.all_persons(Some(project)))?;
        let mut counts: HashMap<String, u64> = HashMap::new();
        for r in rows {
            if let Some(v) = r.properties.get(key).and_then(text_of) {
                if needle.as_ref().is_none_or(|n| v.to_lowercase().contains(n)) {
                    *counts.entry(v).or_default() += 1;
                }
            }
        }
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
