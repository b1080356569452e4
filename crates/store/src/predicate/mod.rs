//! Event predicates: which rows a deletion of events (not of a person)
//! covers. A predicate is a conjunction of an event-name list, property
//! conditions on `properties` (the persons list's operators), a
//! `timestamp` window and a distinct-id list; a deletion request applies
//! it to the rows of one project appended before its cut-off.
//!
//! This module owns the predicate's validation (an empty predicate is
//! refused: a deletion never means "everything" by accident), its
//! evaluation over stored batches ([`Matcher`]), and what a part's
//! manifest entry tells about it ([`EventPredicate::may_match_part`]).
//! Deletions compare property values as typed JSON, numbers exactly (or
//! as doubles, for requests recorded before manifest version 6: a stored
//! predicate says which, [`Numbers`]); analytics and the persons list
//! evaluate the same filters as PostHog's text ([`Comparison`]).
//! Evaluation is plain Rust over Arrow arrays, so that the deletion, the
//! replay of the ingest log, the bulk ingest and the verification scan all
//! decide a row the same way.

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::TimestampMicrosecondType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::format::PartMeta;
use crate::schema::{Table, DISTINCT_ID_COLUMN, TIMESTAMP_COLUMN};

mod filter;
mod semver;
mod time;

pub use time::parse_time;

use filter::TextFilter;
pub use filter::{
    check_patterns, pattern_count, validate_text_list, Comparison, Numbers, PropertyFilter,
    PropertyOperator, MAX_PATTERNS, MAX_PATTERN_BYTES, REGEX_SIZE_LIMIT,
};

/// A conjunction of conditions on event rows. Every condition present must
/// hold; at least one must be present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventPredicate {
    /// `event IN (…)`; empty = any event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Conditions on `properties`, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<PropertyFilter>,
    /// `timestamp >= after_us` (µs since the epoch, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_us: Option<i64>,
    /// `timestamp < before_us` (µs since the epoch, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_us: Option<i64>,
    /// `distinct_id IN (…)`; empty = any distinct id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distinct_ids: Vec<String>,
    /// How its property filters compare two numbers. A deletion records
    /// every new request with [`Numbers::Exact`] (whatever this says when
    /// it is asked for); a predicate read without the field is a request
    /// recorded before manifest version 6, and keeps comparing as doubles,
    /// so that it matches the rows it matched when it was made.
    #[serde(
        default = "Numbers::recorded_before",
        skip_serializing_if = "Numbers::is_double"
    )]
    pub numbers: Numbers,
}

/// Most event names of a predicate, and values of a property filter's list.
pub const MAX_PREDICATE_ITEMS: usize = 1000;
/// Most property filters of a predicate.
pub const MAX_PREDICATE_FILTERS: usize = 100;
/// Most bytes of an event name, a distinct id, or a property filter (its
/// key, or its value written as JSON).
pub const MAX_PREDICATE_TEXT: usize = 64 << 10;
/// Most bytes of a predicate's names, ids and filters together.
pub const MAX_PREDICATE_BYTES: usize = 1 << 20;

impl EventPredicate {
    /// Whether no condition is given (such a predicate is refused).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.properties.is_empty()
            && self.after_us.is_none()
            && self.before_us.is_none()
            && self.distinct_ids.is_empty()
    }

    /// How its property filters compare ([`EventPredicate::numbers`]).
    pub fn comparison(&self) -> Comparison {
        match self.numbers {
            Numbers::Exact => Comparison::Typed,
            Numbers::Double => Comparison::TypedAsDoubles,
        }
    }

    /// Sort and deduplicate the lists (so that equal predicates are
    /// stored equally).
    pub fn normalize(&mut self) {
        for list in [&mut self.events, &mut self.distinct_ids] {
            list.sort();
            list.dedup();
        }
    }

    /// Check the predicate for deleting from `tables`: not empty, no empty
    /// name or id, a window that is not inverted, valid property filters,
    /// and no condition on a column a table lacks (recordings have no
    /// `event` or `properties`).
    pub fn validate(&self, tables: &[Table]) -> Result<()> {
        let bad = |m: String| Err(StoreError::InvalidInput(m));
        if self.is_empty() {
            return bad("a deletion of events needs at least one condition (event, property, time window or distinct id); an empty predicate would delete everything".into());
        }
        if self.events.iter().any(String::is_empty) {
            return bad("event names must not be empty".into());
        }
        if self.distinct_ids.iter().any(String::is_empty) {
            return bad("distinct ids must not be empty".into());
        }
        if self.distinct_ids.len() > crate::MAX_DELETE_IDS {
            return bad(format!(
                "at most {} distinct ids per predicate, got {}",
                crate::MAX_DELETE_IDS,
                self.distinct_ids.len()
            ));
        }
        if let (Some(a), Some(b)) = (self.after_us, self.before_us) {
            if a >= b {
                return bad(format!(
                    "the time window is empty or inverted: after ({}) is not before before ({})",
                    crate::format::us_to_rfc3339(a),
                    crate::format::us_to_rfc3339(b)
                ));
            }
        }
        // Bounded: a predicate is kept in the manifest, which every
        // commit rewrites, for as long as its request is listed.
        if self.events.len() > MAX_PREDICATE_ITEMS {
            return bad(format!(
                "at most {MAX_PREDICATE_ITEMS} event names per predicate, got {}",
                self.events.len()
            ));
        }
        if self.properties.len() > MAX_PREDICATE_FILTERS {
            return bad(format!(
                "at most {MAX_PREDICATE_FILTERS} property filters per predicate, got {}",
                self.properties.len()
            ));
        }
        let texts = self
            .events
            .iter()
            .chain(&self.distinct_ids)
            .map(String::len);
        if self
            .properties
            .iter()
            .any(|f| matches!(&f.value, Value::Array(items) if items.len() > MAX_PREDICATE_ITEMS))
        {
            return bad(format!(
                "a property filter's list holds at most {MAX_PREDICATE_ITEMS} values"
            ));
        }
        let filters = self
            .properties
            .iter()
            .map(|f| f.key.len().max(f.value.to_string().len()));
        let sizes: Vec<usize> = texts.chain(filters).collect();
        let total = sizes.iter().fold(0usize, |a, n| a.saturating_add(*n));
        if total > MAX_PREDICATE_BYTES {
            return bad(format!(
                "a predicate holds at most {MAX_PREDICATE_BYTES} bytes of names, ids and filters, got {total}"
            ));
        }
        if sizes.iter().any(|n| *n > MAX_PREDICATE_TEXT) {
            return bad(format!(
                "a name, id or filter of a predicate holds at most {MAX_PREDICATE_TEXT} bytes"
            ));
        }
        for f in &self.properties {
            f.validate().map_err(StoreError::InvalidInput)?;
        }
        if tables.contains(&Table::Recordings)
            && (!self.events.is_empty() || !self.properties.is_empty())
        {
            return bad(
                "recordings have no event or properties: a predicate with event or property conditions applies to the events table only".into(),
            );
        }
        Ok(())
    }

    /// Whether a part may hold matching rows, as its manifest entry tells
    /// (its time range against the window).
    pub fn may_match_part(&self, p: &PartMeta) -> bool {
        self.after_us.is_none_or(|a| p.max_ts >= a) && self.before_us.is_none_or(|b| p.min_ts < b)
    }

    /// Whether every row of `p` satisfies the predicate, as its manifest
    /// entry tells: only a window, which holds the part's whole time range
    /// (then nothing needs reading).
    pub fn covers_part(&self, p: &PartMeta) -> bool {
        self.events.is_empty()
            && self.properties.is_empty()
            && self.distinct_ids.is_empty()
            && self.after_us.is_none_or(|a| p.min_ts >= a)
            && self.before_us.is_none_or(|b| p.max_ts < b)
    }

    /// The columns a [`Matcher`] reads for `table`.
    pub fn columns(&self, table: Table) -> Vec<&'static str> {
        let mut c = Vec::new();
        if table == Table::Events && !self.events.is_empty() {
            c.push("event");
        }
        if self.after_us.is_some() || self.before_us.is_some() {
            c.push(TIMESTAMP_COLUMN);
        }
        if !self.distinct_ids.is_empty() {
            c.push(DISTINCT_ID_COLUMN);
        }
        c
    }

    /// Whether evaluation needs the `properties` column (read in a second
    /// pass, only for rows the other conditions kept).
    pub fn needs_properties(&self) -> bool {
        !self.properties.is_empty()
    }
}

/// A predicate bound to the columns of one batch.
pub struct Matcher<'a> {
    pred: &'a EventPredicate,
    events: Option<(&'a StringArray, BTreeSet<&'a str>)>,
    ts: Option<&'a arrow::array::PrimitiveArray<TimestampMicrosecondType>>,
    ids: Option<(&'a StringArray, BTreeSet<&'a str>)>,
}

fn string_column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| StoreError::Internal(format!("column {name} missing or not a string")))
}

impl<'a> Matcher<'a> {
    /// Bind `pred` to `batch`, which holds (at least) the columns of
    /// [`EventPredicate::columns`] for `table`.
    pub fn new(pred: &'a EventPredicate, table: Table, batch: &'a RecordBatch) -> Result<Self> {
        let events = if table == Table::Events && !pred.events.is_empty() {
            Some((
                string_column(batch, "event")?,
                pred.events.iter().map(String::as_str).collect(),
            ))
        } else {
            None
        };
        let ts = if pred.after_us.is_some() || pred.before_us.is_some() {
            Some(
                batch
                    .column_by_name(TIMESTAMP_COLUMN)
                    .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
                    .ok_or_else(|| {
                        StoreError::Internal("column timestamp missing or not a timestamp".into())
                    })?,
            )
        } else {
            None
        };
        let ids = if pred.distinct_ids.is_empty() {
            None
        } else {
            Some((
                string_column(batch, DISTINCT_ID_COLUMN)?,
                pred.distinct_ids.iter().map(String::as_str).collect(),
            ))
        };
        Ok(Matcher {
            pred,
            events,
            ts,
            ids,
        })
    }

    /// Whether row `i` satisfies every condition but the property filters.
    pub fn row(&self, i: usize) -> bool {
        if let Some((col, set)) = &self.events {
            if col.is_null(i) || !set.contains(col.value(i)) {
                return false;
            }
        }
        if let Some(ts) = self.ts {
            if ts.is_null(i) {
                return false;
            }
            let t = ts.value(i);
            if self.pred.after_us.is_some_and(|a| t < a)
                || self.pred.before_us.is_some_and(|b| t >= b)
            {
                return false;
            }
        }
        if let Some((col, set)) = &self.ids {
            if col.is_null(i) || !set.contains(col.value(i)) {
                return false;
            }
        }
        true
    }
}

/// Most `{` and `[` a row may hold for [`PropertiesMatcher::found_once`]
/// (below serde_json's nesting limit of 127).
const MAX_FAST_BRACKETS: usize = 100;

/// Whether a row's `properties` text satisfies every property filter of a
/// predicate, prepared once for many rows: the filtered keys, their quoted
/// forms searched for in each row's text, and whether a row without them
/// passes.
pub struct PropertiesMatcher<'a> {
    filters: std::borrow::Cow<'a, [PropertyFilter]>,
    /// How the filters compare.
    how: Comparison,
    /// Each filter's side, when comparing as text (empty when typed).
    text: Vec<TextFilter>,
    keys: Vec<String>,
    /// `"key"` of each filter, found with a SIMD substring search.
    quoted: Vec<memchr::memmem::Finder<'static>>,
    absent_ok: bool,
    /// No key holds a quote, a backslash or a control character: each
    /// key's quoted form can occur in a row without backslashes only as
    /// that key or a string equal to it ([`PropertiesMatcher::found_once`]).
    plain_keys: bool,
}

impl<'a> PropertiesMatcher<'a> {
    /// Prepare `pred`'s property filters, compared as deletions compare
    /// ([`EventPredicate::comparison`]).
    pub fn new(pred: &'a EventPredicate) -> PropertiesMatcher<'a> {
        Self::comparing(pred, pred.comparison())
    }

    /// Prepare `pred`'s property filters, compared as `how` says.
    pub fn comparing(pred: &'a EventPredicate, how: Comparison) -> PropertiesMatcher<'a> {
        Self::prepare(std::borrow::Cow::Borrowed(&pred.properties), how)
    }

    fn prepare(
        filters: std::borrow::Cow<'a, [PropertyFilter]>,
        how: Comparison,
    ) -> PropertiesMatcher<'a> {
        let text: Vec<TextFilter> = match how {
            Comparison::Text => filters.iter().map(TextFilter::of).collect(),
            Comparison::Typed | Comparison::TypedAsDoubles => Vec::new(),
        };
        PropertiesMatcher {
            how,
            keys: filters.iter().map(|f| f.key.clone()).collect(),
            quoted: filters
                .iter()
                .map(|f| {
                    memchr::memmem::Finder::new(format!("\"{}\"", f.key).as_bytes()).into_owned()
                })
                .collect(),
            absent_ok: match how {
                // With the filters' prepared side (a regular expression
                // is compiled once).
                Comparison::Text => filters
                    .iter()
                    .zip(&text)
                    .all(|(f, t)| f.matches_text_with(None, t)),
                _ => filters.iter().all(|f| f.matches_value_as(None, how)),
            },
            text,
            plain_keys: filters.iter().all(|f| {
                !f.key
                    .chars()
                    .any(|c| c == '"' || c == '\\' || c.is_control())
            }),
            filters,
        }
    }
}

impl PropertiesMatcher<'static> {
    /// Prepare `filters`, owned by the matcher (one kept for many calls,
    /// such as the persons list's SQLite function), compared as `how`
    /// says.
    pub fn owning(filters: Vec<PropertyFilter>, how: Comparison) -> Self {
        Self::prepare(std::borrow::Cow::Owned(filters), how)
    }
}

impl PropertiesMatcher<'_> {
    /// Whether a row whose properties are `text` (`None`: null) passes.
    pub fn matches(&self, text: Option<&str>) -> bool {
        if self.keys.is_empty() {
            return true;
        }
        let Some(text) = text else {
            return self.absent_ok;
        };
        // Without a backslash, a key can only appear spelled out, and is
        // often read without parsing the row.
        if !text.contains('\\') {
            if let Some(verdict) = self.read_without_parse(text) {
                return verdict;
            }
        }
        // Parse only the values of the filtered keys; skip the others.
        let values = extract(text, &self.keys);
        self.filters
            .iter()
            .enumerate()
            .all(|(i, f)| self.test(i, f, values.as_ref().and_then(|v| v[i].as_ref())))
    }

    /// Whether the `i`th filter `f` holds of `v`.
    fn test(&self, i: usize, f: &PropertyFilter, v: Option<&Value>) -> bool {
        match self.text.get(i) {
            Some(t) => f.matches_text_with(v, t),
            None => f.matches_value_as(v, self.how),
        }
    }

    /// Whether `text` (which holds no backslash: every quote delimits a
    /// string) passes, decided filter by filter without parsing the row
    /// when that is certain; `None` otherwise (then the row is parsed). A
    /// key whose quoted form is nowhere in the text is absent; one found
    /// is read by [`PropertiesMatcher::found_once`]. Stored properties are
    /// JSON objects, checked when written
    /// (`normalize::validate_json_object`), on which both readings agree
    /// for every key, so the first filter that fails decides.
    fn read_without_parse(&self, text: &str) -> Option<bool> {
        let mut outline = None;
        for (i, (f, q)) in self.filters.iter().zip(&self.quoted).enumerate() {
            let value = self.read_value(text, q, &mut outline)?;
            if !self.test(i, f, value.as_ref()) {
                return Some(false);
            }
        }
        Some(true)
    }

    /// The top-level value of the key whose quoted form is `q` in `text`
    /// (no backslash), read without parsing the row; `None` when that is
    /// not certain. `outline` keeps [`PropertiesMatcher::readable_outline`]
    /// of the row, asked at the first key found.
    fn read_value(
        &self,
        text: &str,
        q: &memchr::memmem::Finder<'static>,
        outline: &mut Option<bool>,
    ) -> Option<Option<Value>> {
        let Some(at) = q.find(text.as_bytes()) else {
            return Some(None);
        };
        if !*outline.get_or_insert_with(|| self.readable_outline(text)) {
            return None;
        }
        self.found_once(text, q, at)
    }

    /// Whether a key found in `text` may be read by
    /// [`PropertiesMatcher::found_once`]: the filters' keys are plain, the
    /// text has an object's outline, and fewer brackets than a parse's
    /// nesting limit (a parse gives up past 127 levels, and the whole row
    /// is then read as no object: with fewer brackets than that in all,
    /// none is that deep and both readings agree).
    fn readable_outline(&self, text: &str) -> bool {
        let trimmed = text.trim_matches(json_ws);
        self.plain_keys
            && trimmed.starts_with('{')
            && trimmed.ends_with('}')
            && memchr::memchr2_iter(b'{', b'[', text.as_bytes()).count() < MAX_FAST_BRACKETS
    }

    /// The top-level value of the key whose quoted form `q` first occurs
    /// at `at` in `text` (no backslash, a readable outline), read without
    /// parsing the rest: `Some(None)` when the key is not at the top
    /// level, `None` when this reading is not certain (the quoted form
    /// occurs again, or the value does not parse alone).
    fn found_once(
        &self,
        text: &str,
        q: &memchr::memmem::Finder<'static>,
        at: usize,
    ) -> Option<Option<Value>> {
        let bytes = text.as_bytes();
        let end = at + q.needle().len();
        if q.find(&bytes[at + 1..]).is_some() {
            return None;
        }
        // Whether the occurrence opens a string at depth 1: quotes and
        // brackets before it, counted outside strings.
        let prefix = &bytes[..at];
        let opener = memchr::memchr(b'{', prefix).map_or(0, |i| i + 1);
        let (depth, in_string) = if memchr::memchr2(b'{', b'[', &prefix[opener..]).is_none() {
            // Nothing opened after the object's own brace (a flat object,
            // the common case): depth 1, inside a string when an odd
            // number of quotes came before.
            (1, memchr::memchr_iter(b'"', prefix).count() % 2 == 1)
        } else {
            let (mut depth, mut in_string) = (0i64, false);
            for &b in prefix {
                match b {
                    b'"' => in_string = !in_string,
                    b'{' | b'[' if !in_string => depth += 1,
                    b'}' | b']' if !in_string => depth -= 1,
                    _ => {}
                }
            }
            (depth, in_string)
        };
        let rest = text[end..].trim_start_matches(json_ws);
        let Some(value) = rest.strip_prefix(':') else {
            // A string value spelled as the key, or quotes of two strings
            // around it: the key is not there.
            return Some(None);
        };
        if in_string || depth != 1 {
            // A nested object's key (or not a key at all): absent at the
            // top level.
            return Some(None);
        }
        let mut values = serde_json::Deserializer::from_str(value).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) => Some(Some(v)),
            _ => None,
        }
    }
}

/// JSON's whitespace (`str::trim` would also take Unicode's).
fn json_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The values of `keys` in the JSON object `text` (`None` per absent key),
/// or `None` when `text` is not a JSON object. Other values are skipped
/// without being built; a repeated key keeps its last value (as a parse
/// into a map does).
fn extract<K: AsRef<str>>(text: &str, keys: &[K]) -> Option<Vec<Option<Value>>> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Wanted<'k, K>(&'k [K]);
    struct Key<'k, K>(&'k [K]);
    impl<'de, K: AsRef<str>> DeserializeSeed<'de> for Key<'_, K> {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de, K: AsRef<str>> Visitor<'de> for Key<'_, K> {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E>(self, k: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|w| w.as_ref() == k))
        }
    }
    impl<'de, K: AsRef<str>> DeserializeSeed<'de> for Wanted<'_, K> {
        type Value = Vec<Option<Value>>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, K: AsRef<str>> Visitor<'de> for Wanted<'_, K> {
        type Value = Vec<Option<Value>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out = vec![None; self.0.len()];
            while let Some(k) = m.next_key_seed(Key(self.0))? {
                match k {
                    Some(i) => {
                        let v: Value = m.next_value()?;
                        // The same key may be filtered twice.
                        for (j, w) in self.0.iter().enumerate() {
                            if w.as_ref() == self.0[i].as_ref() {
                                out[j] = Some(v.clone());
                            }
                        }
                    }
                    None => {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    let mut d = serde_json::Deserializer::from_str(text);
    let v = Wanted(keys).deserialize(&mut d).ok()?;
    d.end().ok()?;
    Some(v)
}

/// Whether every row of `batch` (positions `rows`, all of which passed
/// [`Matcher::row`]) satisfies the property filters: the positions that
/// do, through `keep`.
pub fn filter_properties(
    pred: &EventPredicate,
    props: &StringArray,
    rows: impl Iterator<Item = usize>,
    mut keep: impl FnMut(usize),
) {
    let m = PropertiesMatcher::new(pred);
    for i in rows {
        let text = (!props.is_null(i)).then(|| props.value(i));
        if m.matches(text) {
            keep(i);
        }
    }
}

#[cfg(test)]
mod tests;
