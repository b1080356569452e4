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

use std::cmp::Ordering;
use std::collections::BTreeSet;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::TimestampMicrosecondType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, StoreError};
use crate::format::PartMeta;
use crate::schema::{Table, DISTINCT_ID_COLUMN, TIMESTAMP_COLUMN};

/// Comparison of a property filter (the operators of PostHog's persons
/// list). What "equal", "set" and "a number" mean depends on the
/// [`Comparison`] a filter is evaluated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyOperator {
    /// Equal to the value (or to any value of a list).
    Exact,
    /// Not equal to the value (or to any of a list); unset matches.
    IsNot,
    /// Case-insensitive substring of the value's text.
    Icontains,
    /// The key is present (typed: any value, null included; as text: not
    /// null).
    IsSet,
    /// The key is absent (as text: or null).
    IsNotSet,
    /// A number greater than the value.
    Gt,
    /// A number less than the value.
    Lt,
}

impl PropertyOperator {
    /// The order `gt` / `lt` want of a row's value against the filter's
    /// (`None` for the other operators).
    fn ordering(self) -> Option<Ordering> {
        match self {
            PropertyOperator::Gt => Some(Ordering::Greater),
            PropertyOperator::Lt => Some(Ordering::Less),
            _ => None,
        }
    }

    /// The operator's name as JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyOperator::Exact => "exact",
            PropertyOperator::IsNot => "is_not",
            PropertyOperator::Icontains => "icontains",
            PropertyOperator::IsSet => "is_set",
            PropertyOperator::IsNotSet => "is_not_set",
            PropertyOperator::Gt => "gt",
            PropertyOperator::Lt => "lt",
        }
    }
}

/// One property filter: `{"key": "$browser", "value": "Chrome",
/// "operator": "exact"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyFilter {
    /// Property key (a top-level key of `properties`).
    pub key: String,
    /// Comparison.
    pub operator: PropertyOperator,
    /// Value (not used by `is_set` / `is_not_set`).
    #[serde(default)]
    pub value: Value,
}

impl PropertyFilter {
    /// A filter of a *deletion*, from its JSON: only the fields `key`,
    /// `operator`, `value` (and PostHog's `"type": "event"`), and a
    /// `value` present for every operator that compares one; then
    /// [`PropertyFilter::validate`]. A filter that reads its fields
    /// leniently would turn a misspelt `"valeu"` into `value: null`, and
    /// `is_not null` matches nearly every row: the deletion would widen.
    pub fn strict(v: &Value) -> std::result::Result<PropertyFilter, String> {
        let Value::Object(o) = v else {
            return Err(format!("a property filter is an object, got {v}"));
        };
        const FIELDS: &[&str] = &["key", "operator", "value", "type"];
        if let Some(k) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "unknown field {k:?} in a property filter; expected {}",
                FIELDS.join(", ")
            ));
        }
        if let Some(t) = o.get("type").filter(|t| t.as_str() != Some("event")) {
            return Err(format!(
                "a deletion filters event properties (\"type\": \"event\"), got \"type\": {t}"
            ));
        }
        let f: PropertyFilter = serde_json::from_value(Value::Object(
            o.iter()
                .filter(|(k, _)| k.as_str() != "type")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
        .map_err(|e| format!("not a property filter: {e}"))?;
        let compares = !matches!(
            f.operator,
            PropertyOperator::IsSet | PropertyOperator::IsNotSet
        );
        if compares && !o.contains_key("value") {
            return Err(format!(
                "filter on {:?}: {} needs a value (null compares with null)",
                f.key,
                f.operator.as_str()
            ));
        }
        f.validate()?;
        Ok(f)
    }

    /// Check the value against the operator as deletions compare
    /// ([`Comparison::Typed`]); `Err` says what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.validate_as(Comparison::Typed)
    }

    /// Check the value against the operator as `how` compares: as text,
    /// `gt`/`lt` also take a numeric string (`"30"`), as PostHog does.
    pub fn validate_as(&self, how: Comparison) -> std::result::Result<(), String> {
        if self.key.is_empty() {
            return Err("a property filter needs a key".into());
        }
        let key = &self.key;
        match self.operator {
            PropertyOperator::Exact | PropertyOperator::IsNot => match &self.value {
                Value::Array(items) if items.is_empty() => {
                    Err(format!("filter on {key:?}: empty list of values"))
                }
                Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
                    Err(format!(
                        "filter on {key:?}: values must be strings, numbers, booleans or null"
                    ))
                }
                Value::Object(_) => Err(format!(
                    "filter on {key:?}: the value must be a string, number, boolean, null or a list of them"
                )),
                _ => Ok(()),
            },
            PropertyOperator::Icontains => match &self.value {
                Value::String(s) if s.is_empty() => {
                    Err(format!("filter on {key:?}: icontains needs a non-empty string"))
                }
                Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
                v => Err(format!("filter on {key:?}: icontains needs a string, got {v}")),
            },
            PropertyOperator::IsSet | PropertyOperator::IsNotSet => Ok(()),
            PropertyOperator::Gt | PropertyOperator::Lt => match &self.value {
                Value::Number(n) if n.as_f64().is_some() => Ok(()),
                Value::String(_) if how == Comparison::Text && Num::of(&self.value).is_some() => {
                    Ok(())
                }
                v => Err(format!(
                    "filter on {key:?}: {} needs a number, got {v}",
                    self.operator.as_str()
                )),
            },
        }
    }

    /// Whether `props` (a row's parsed properties; `None` when the row has
    /// none or they are not an object) satisfy the filter, as a new
    /// deletion compares ([`Comparison::Typed`]).
    pub fn matches(&self, props: Option<&Map<String, Value>>) -> bool {
        self.matches_value(props.and_then(|p| p.get(&self.key)))
    }

    /// Whether a row whose value of the key is `v` (`None`: absent)
    /// satisfies the filter, comparing as `how` says.
    pub fn matches_value_as(&self, v: Option<&Value>, how: Comparison) -> bool {
        match how {
            Comparison::Typed => self.matches_typed(v, Numbers::Exact),
            Comparison::TypedAsDoubles => self.matches_typed(v, Numbers::Double),
            Comparison::Text => self.matches_text(v),
        }
    }

    /// [`PropertyFilter::matches_value`] as [`Comparison::Text`] compares.
    fn matches_text(&self, v: Option<&Value>) -> bool {
        self.matches_text_with(v, &TextFilter::of(self))
    }

    /// [`PropertyFilter::matches_text`] with the filter's side worked out.
    fn matches_text_with(&self, v: Option<&Value>, t: &TextFilter) -> bool {
        // JSON null is unset.
        let v = v.filter(|v| !v.is_null());
        let any_equal = || t.values.iter().any(|w| w.equals(v));
        match self.operator {
            PropertyOperator::Exact => any_equal(),
            PropertyOperator::IsNot => !any_equal(),
            PropertyOperator::Icontains => {
                v.is_some_and(|v| text_of(v).to_lowercase().contains(&t.needle))
            }
            PropertyOperator::IsSet => v.is_some(),
            PropertyOperator::IsNotSet => v.is_none(),
            PropertyOperator::Gt | PropertyOperator::Lt => {
                v.and_then(Num::of)
                    .zip(t.bound)
                    .and_then(|(a, b)| a.compare(b))
                    == self.operator.ordering()
            }
        }
    }

    /// Whether a row whose value of the key is `v` (`None`: absent)
    /// satisfies the filter, as [`Comparison::Typed`] compares.
    pub fn matches_value(&self, v: Option<&Value>) -> bool {
        self.matches_typed(v, Numbers::Exact)
    }

    /// [`PropertyFilter::matches_value`], two numbers compared as
    /// `numbers` says.
    fn matches_typed(&self, v: Option<&Value>, numbers: Numbers) -> bool {
        let any_equal = |v: &Value| match &self.value {
            Value::Array(items) => items.iter().any(|w| json_eq(v, w, numbers)),
            w => json_eq(v, w, numbers),
        };
        match self.operator {
            PropertyOperator::Exact => v.is_some_and(any_equal),
            PropertyOperator::IsNot => !v.is_some_and(any_equal),
            PropertyOperator::Icontains => v.is_some_and(|v| {
                let hay = match v {
                    Value::String(s) => s.to_lowercase(),
                    v => v.to_string().to_lowercase(),
                };
                let needle = match &self.value {
                    Value::String(s) => s.to_lowercase(),
                    w => w.to_string().to_lowercase(),
                };
                hay.contains(&needle)
            }),
            PropertyOperator::IsSet => v.is_some(),
            PropertyOperator::IsNotSet => v.is_none(),
            PropertyOperator::Gt | PropertyOperator::Lt => {
                // Numbers only (see `json_eq`).
                v.and_then(|v| Num::typed(v, numbers))
                    .zip(Num::typed(&self.value, numbers))
                    .and_then(|(a, b)| a.compare(b))
                    == self.operator.ordering()
            }
        }
    }
}

/// How a property filter compares a row's value with its own.
///
/// - `Typed`: as JSON values: `"5"` is not `5`, `gt`/`lt` need a number,
///   JSON null is a value (`is_set`, equal to a `null` filter value);
///   two numbers by value (`5` equals `5.0`), two integers exactly (two
///   past 2^53 that one double would hold alike stay apart); a fraction
///   is a double, compared as one. Deletions compare
///   so (a stored predicate must keep matching exactly what it matched
///   when it was made, and never widen by a coercion).
/// - `TypedAsDoubles`: as `Typed`, but two numbers as doubles, as
///   deletions recorded before manifest version 6 compared and keep
///   comparing ([`Numbers::Double`]).
/// - `Text`: as PostHog's queries compare a property: by its text (a
///   string's own text, `true`/`false`, a number's or a nested value's
///   JSON), so `"5"` and `5` are equal, and numbers equal by value
///   (`"5.0"` and `5`); `gt`/`lt` read a number or a numeric string; JSON
///   null is unset (`is_set` false, `is_not_set` true, equal to a `null`
///   filter value as an absent key is). Analytics, `properties_match` and
///   the persons list compare so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Comparison {
    /// As JSON values (deletions).
    #[default]
    Typed,
    /// As JSON values, numbers as doubles (deletions recorded before
    /// manifest version 6).
    TypedAsDoubles,
    /// As PostHog's text (analytics, the persons list).
    Text,
}

/// A filter's side of [`Comparison::Text`], worked out once per filter
/// (not once per row): each value's text and number, the lowercased
/// needle of `icontains`, the bound of `gt`/`lt`.
#[derive(Debug)]
struct TextFilter {
    values: Vec<TextValue>,
    needle: String,
    bound: Option<Num>,
}

impl TextFilter {
    fn of(f: &PropertyFilter) -> TextFilter {
        TextFilter {
            values: match &f.value {
                Value::Array(items) => items.iter().map(TextValue::of).collect(),
                w => vec![TextValue::of(w)],
            },
            needle: text_of(&f.value).to_lowercase(),
            bound: Num::of(&f.value),
        }
    }
}

/// One value of a filter as text comparison reads it.
#[derive(Debug)]
struct TextValue {
    /// `None`: null (equal to an unset property).
    text: Option<String>,
    num: Option<Num>,
}

impl TextValue {
    fn of(w: &Value) -> TextValue {
        TextValue {
            text: (!w.is_null()).then(|| text_of(w).into_owned()),
            num: Num::of(w),
        }
    }

    /// Whether a row's value `v` (`None`: unset) equals this one.
    fn equals(&self, v: Option<&Value>) -> bool {
        // Only a numeric filter value reads the row's value as a number
        // (most are not: then no row pays for the parse).
        let same_number = |v: &Value| {
            self.num.and_then(|b| Num::of(v).and_then(|a| a.compare(b))) == Some(Ordering::Equal)
        };
        match (v, &self.text) {
            (None, text) => text.is_none(),
            (Some(_), None) => false,
            // A number's text is a number: equal texts are equal numbers.
            (Some(v @ Value::Number(_)), Some(_)) => same_number(v),
            (Some(v), Some(text)) => *text_of(v) == **text || same_number(v),
        }
    }
}

/// A value's text as PostHog reads a property: a string's own text,
/// anything else its JSON (`true`, `5`, `{"a":1}`).
fn text_of(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        Value::Bool(true) => std::borrow::Cow::Borrowed("true"),
        Value::Bool(false) => std::borrow::Cow::Borrowed("false"),
        v => std::borrow::Cow::Owned(v.to_string()),
    }
}

/// A number, or a string that is one (as written, finite), as PostHog's
/// cast reads a numeric property. Integers compare exactly (two large ids
/// that one `f64` would round together stay apart), anything else as
/// `f64`.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// A JSON number as typed comparison reads it (a string is not a
    /// number): exactly, or as a double for requests recorded before
    /// manifest version 6 ([`Numbers`]).
    fn typed(v: &Value, numbers: Numbers) -> Option<Num> {
        match (v, numbers) {
            (Value::Number(_), Numbers::Exact) => Num::of(v),
            (Value::Number(n), Numbers::Double) => n.as_f64().map(Num::Float),
            _ => None,
        }
    }

    fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .map(|i| Num::Int(i.into()))
                .or_else(|| n.as_u64().map(|u| Num::Int(u.into())))
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(Num::Float)),
            Value::String(s) => {
                // Spaces around the number are not part of it (as
                // PostHog's persons list reads it).
                let s = s.trim_matches(json_ws);
                s.parse::<i128>().map(Num::Int).ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(Num::Float)
                })
            }
            _ => None,
        }
    }

    /// Two integers exactly; otherwise as doubles. A number written with
    /// a fraction or an exponent, or an integer past 64 bits, was read as
    /// a double: past 2^53 that double stands for several integers, and
    /// compared as one it equals each of them (rounding the integer to a
    /// double cannot change its order against anything below 2^53).
    fn compare(self, other: Num) -> Option<Ordering> {
        let f = |n: Num| match n {
            Num::Int(i) => i as f64,
            Num::Float(x) => x,
        };
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => f(a).partial_cmp(&f(b)),
        }
    }
}

/// JSON equality with numbers compared by value (`1 == 1.0`), as
/// `numbers` says: exactly, or as doubles (requests recorded before
/// manifest version 6: a stored predicate must keep matching exactly the
/// rows it matched when it was made, so for those two integers past 2^53
/// that one double holds alike stay equal).
fn json_eq(a: &Value, b: &Value, numbers: Numbers) -> bool {
    match (Num::typed(a, numbers), Num::typed(b, numbers)) {
        (Some(p), Some(q)) => p.compare(q) == Some(Ordering::Equal),
        _ => a == b,
    }
}

/// How a deletion's predicate compares two numbers
/// ([`EventPredicate::numbers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Numbers {
    /// Two integers exactly, anything else as doubles
    /// ([`Comparison::Typed`]): every request recorded since manifest
    /// version 6.
    #[default]
    Exact,
    /// As doubles ([`Comparison::TypedAsDoubles`]): requests recorded
    /// before, whose predicates were written without the field.
    Double,
}

impl Numbers {
    /// What a predicate written without the field compares with.
    fn recorded_before() -> Numbers {
        Numbers::Double
    }

    fn is_double(&self) -> bool {
        *self == Numbers::Double
    }
}

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
        PropertiesMatcher {
            how,
            text: match how {
                Comparison::Text => filters.iter().map(TextFilter::of).collect(),
                Comparison::Typed | Comparison::TypedAsDoubles => Vec::new(),
            },
            keys: filters.iter().map(|f| f.key.clone()).collect(),
            quoted: filters
                .iter()
                .map(|f| {
                    memchr::memmem::Finder::new(format!("\"{}\"", f.key).as_bytes()).into_owned()
                })
                .collect(),
            absent_ok: filters.iter().all(|f| f.matches_value_as(None, how)),
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
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: Value) -> PropertyFilter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn operators_on_present_absent_and_odd_values() {
        let props = json!({"b": "Chrome", "n": 5, "f": 2.5, "z": null, "t": true});
        let props = props.as_object();
        let cases = [
            (
                json!({"key": "b", "operator": "exact", "value": "Chrome"}),
                true,
            ),
            (
                json!({"key": "b", "operator": "exact", "value": ["Safari", "Chrome"]}),
                true,
            ),
            (
                json!({"key": "b", "operator": "exact", "value": "chrome"}),
                false,
            ),
            (json!({"key": "n", "operator": "exact", "value": 5.0}), true),
            (
                json!({"key": "n", "operator": "exact", "value": "5"}),
                false,
            ),
            (
                json!({"key": "z", "operator": "exact", "value": null}),
                true,
            ),
            (
                json!({"key": "x", "operator": "exact", "value": null}),
                false,
            ),
            (
                json!({"key": "b", "operator": "is_not", "value": "Chrome"}),
                false,
            ),
            (
                json!({"key": "x", "operator": "is_not", "value": "Chrome"}),
                true,
            ),
            (
                json!({"key": "b", "operator": "icontains", "value": "HRO"}),
                true,
            ),
            (
                json!({"key": "n", "operator": "icontains", "value": 5}),
                true,
            ),
            (
                json!({"key": "t", "operator": "icontains", "value": "tru"}),
                true,
            ),
            (
                json!({"key": "x", "operator": "icontains", "value": "a"}),
                false,
            ),
            (json!({"key": "z", "operator": "is_set"}), true),
            (json!({"key": "x", "operator": "is_set"}), false),
            (json!({"key": "x", "operator": "is_not_set"}), true),
            (json!({"key": "n", "operator": "gt", "value": 4}), true),
            (json!({"key": "f", "operator": "lt", "value": 2.5}), false),
            (json!({"key": "b", "operator": "gt", "value": 1}), false),
        ];
        for (f, want) in cases {
            assert_eq!(filter(f.clone()).matches(props), want, "{f}");
        }
    }

    /// PostHog compares a property's text: `"5"` equals `5`, `true` equals
    /// `"true"`, JSON null is unset; typed comparison (deletions) keeps
    /// them apart. Each case: filter, row, as text, typed.
    #[test]
    fn text_comparison_reads_values_as_posthog_does() {
        let row = json!({"s5": "5", "n5": 5, "f5": 5.0, "t": true, "ts": "true",
            "z": null, "e": "", "o": {"a": 1}, "big": "10", "word": "ten", "inf": "inf",
            "id": 9007199254740993_u64, "sid": "9007199254740993"});
        let row = row.as_object();
        let cases = [
            (
                json!({"key": "s5", "operator": "exact", "value": 5}),
                true,
                false,
            ),
            (
                json!({"key": "n5", "operator": "exact", "value": "5"}),
                true,
                false,
            ),
            (
                json!({"key": "f5", "operator": "exact", "value": "5"}),
                true,
                false,
            ),
            (
                json!({"key": "n5", "operator": "exact", "value": [1, "5"]}),
                true,
                false,
            ),
            (
                json!({"key": "t", "operator": "exact", "value": "true"}),
                true,
                false,
            ),
            (
                json!({"key": "ts", "operator": "exact", "value": true}),
                true,
                false,
            ),
            (
                json!({"key": "t", "operator": "exact", "value": true}),
                true,
                true,
            ),
            (
                json!({"key": "o", "operator": "exact", "value": r#"{"a":1}"#}),
                true,
                false,
            ),
            (
                json!({"key": "s5", "operator": "exact", "value": "05"}),
                true,
                false,
            ),
            (
                json!({"key": "word", "operator": "exact", "value": "TEN"}),
                false,
                false,
            ),
            (
                json!({"key": "s5", "operator": "is_not", "value": 5}),
                false,
                true,
            ),
            (
                json!({"key": "absent", "operator": "is_not", "value": 5}),
                true,
                true,
            ),
            (
                json!({"key": "z", "operator": "is_not", "value": 5}),
                true,
                true,
            ),
            // JSON null is unset as text, a value typed.
            (json!({"key": "z", "operator": "is_set"}), false, true),
            (json!({"key": "z", "operator": "is_not_set"}), true, false),
            (
                json!({"key": "z", "operator": "exact", "value": null}),
                true,
                true,
            ),
            (
                json!({"key": "absent", "operator": "exact", "value": null}),
                true,
                false,
            ),
            (
                json!({"key": "s5", "operator": "exact", "value": null}),
                false,
                false,
            ),
            (
                json!({"key": "z", "operator": "icontains", "value": "nul"}),
                false,
                true,
            ),
            (json!({"key": "e", "operator": "is_set"}), true, true),
            (json!({"key": "absent", "operator": "is_set"}), false, false),
            // Numbers read from numeric strings as text.
            (
                json!({"key": "big", "operator": "gt", "value": 9}),
                true,
                false,
            ),
            (
                json!({"key": "big", "operator": "lt", "value": 9}),
                false,
                false,
            ),
            (
                json!({"key": "word", "operator": "gt", "value": 9}),
                false,
                false,
            ),
            (
                json!({"key": "inf", "operator": "gt", "value": 9}),
                false,
                false,
            ),
            (
                json!({"key": "t", "operator": "gt", "value": 0}),
                false,
                false,
            ),
            (
                json!({"key": "n5", "operator": "gt", "value": 4.5}),
                true,
                true,
            ),
            (
                json!({"key": "t", "operator": "icontains", "value": "RU"}),
                true,
                true,
            ),
            (
                json!({"key": "n5", "operator": "icontains", "value": 5}),
                true,
                true,
            ),
            // A numeric string as the value of gt/lt, as text only.
            (
                json!({"key": "big", "operator": "gt", "value": "9"}),
                true,
                false,
            ),
            (
                json!({"key": "n5", "operator": "lt", "value": "5.5"}),
                true,
                false,
            ),
            // Integers past f64's precision stay apart, both ways (as
            // doubles, typed_numbers_as_the_predicate_records).
            (
                json!({"key": "id", "operator": "exact", "value": 9007199254740992_u64}),
                false,
                false,
            ),
            (
                json!({"key": "id", "operator": "exact", "value": 9007199254740993_u64}),
                true,
                true,
            ),
            (
                json!({"key": "sid", "operator": "exact", "value": 9007199254740992_u64}),
                false,
                false,
            ),
            (
                json!({"key": "id", "operator": "exact", "value": "9007199254740993"}),
                true,
                false,
            ),
            (
                json!({"key": "id", "operator": "gt", "value": 9007199254740992_u64}),
                true,
                true,
            ),
            // Spaces around a numeric string are not part of the number.
            (
                json!({"key": "big", "operator": "gt", "value": " 9 "}),
                true,
                false,
            ),
        ];
        for (f, text, typed) in cases {
            let f = filter(f);
            let v = row.and_then(|r| r.get(&f.key));
            assert_eq!(
                f.matches_value_as(v, Comparison::Text),
                text,
                "{f:?} as text"
            );
            assert_eq!(
                f.matches_value_as(v, Comparison::Typed),
                typed,
                "{f:?} typed"
            );
            // The prepared matcher agrees, on the text of the whole row.
            let pred = EventPredicate {
                properties: vec![f.clone()],
                ..Default::default()
            };
            let whole = Value::Object(row.cloned().unwrap_or_default()).to_string();
            for (how, want) in [(Comparison::Text, text), (Comparison::Typed, typed)] {
                let m = PropertiesMatcher::comparing(&pred, how);
                assert_eq!(m.matches(Some(&whole)), want, "{f:?} {how:?} prepared");
            }
        }
        // A row without properties: `exact null` matches it as text only.
        let pred = EventPredicate {
            properties: vec![filter(
                json!({"key": "k", "operator": "exact", "value": null}),
            )],
            ..Default::default()
        };
        assert!(PropertiesMatcher::comparing(&pred, Comparison::Text).matches(None));
        assert!(!PropertiesMatcher::comparing(&pred, Comparison::Typed).matches(None));
    }

    /// Typed comparison of two numbers: exactly in a new predicate, as
    /// doubles in one recorded before (read without `numbers`); through
    /// the filter, and through the prepared matcher on both its paths (a
    /// row read without a parse, and one parsed because it holds a
    /// backslash).
    #[test]
    fn typed_numbers_as_the_predicate_records() {
        const BIG: u64 = 1 << 53;
        // (filter, the row's value, exact, as doubles)
        let cases = [
            (
                json!({"operator": "exact", "value": BIG}),
                json!(BIG + 1),
                false,
                true,
            ),
            (
                json!({"operator": "exact", "value": BIG + 1}),
                json!(BIG + 1),
                true,
                true,
            ),
            (
                json!({"operator": "exact", "value": [1, BIG]}),
                json!(BIG + 1),
                false,
                true,
            ),
            (
                json!({"operator": "is_not", "value": BIG}),
                json!(BIG + 1),
                true,
                false,
            ),
            (
                json!({"operator": "gt", "value": BIG}),
                json!(BIG + 1),
                true,
                false,
            ),
            (
                json!({"operator": "lt", "value": BIG + 1}),
                json!(BIG),
                true,
                false,
            ),
            (
                json!({"operator": "lt", "value": BIG}),
                json!(BIG + 1),
                false,
                false,
            ),
            (
                json!({"operator": "exact", "value": u64::MAX}),
                json!(u64::MAX - 1),
                false,
                true,
            ),
            (
                json!({"operator": "exact", "value": -(BIG as i64) - 1}),
                json!(-(BIG as i64)),
                false,
                true,
            ),
            // A fraction is a double, compared as one (it was read so:
            // past 2^53 it stands for each integer it holds).
            (
                json!({"operator": "exact", "value": BIG + 1}),
                json!(BIG as f64),
                true,
                true,
            ),
            (
                json!({"operator": "gt", "value": BIG as f64}),
                json!(BIG + 1),
                false,
                false,
            ),
            (
                json!({"operator": "exact", "value": BIG as f64}),
                json!(BIG + 2),
                false,
                false,
            ),
            (
                json!({"operator": "exact", "value": 5}),
                json!(5.0),
                true,
                true,
            ),
            (
                json!({"operator": "gt", "value": 2.5}),
                json!(3),
                true,
                true,
            ),
            (
                json!({"operator": "gt", "value": -2.5}),
                json!(-2),
                true,
                true,
            ),
            (
                json!({"operator": "lt", "value": 2}),
                json!(1.5),
                true,
                true,
            ),
            (
                json!({"operator": "lt", "value": 1e300}),
                json!(u64::MAX),
                true,
                true,
            ),
            // Typed: a numeric string is not a number, in either reading.
            (
                json!({"operator": "exact", "value": 5}),
                json!("5"),
                false,
                false,
            ),
            (
                json!({"operator": "gt", "value": 4}),
                json!("5"),
                false,
                false,
            ),
        ];
        for (f, v, exact, doubles) in cases {
            let mut f = f.as_object().cloned().unwrap_or_default();
            f.insert("key".into(), json!("k"));
            let f = filter(Value::Object(f));
            for (how, numbers, want) in [
                (Comparison::Typed, Numbers::Exact, exact),
                (Comparison::TypedAsDoubles, Numbers::Double, doubles),
            ] {
                assert_eq!(f.matches_value_as(Some(&v), how), want, "{f:?} {v} {how:?}");
                let pred = EventPredicate {
                    properties: vec![f.clone()],
                    numbers,
                    ..Default::default()
                };
                assert_eq!(pred.comparison(), how);
                let m = PropertiesMatcher::new(&pred);
                let plain = json!({"k": v}).to_string();
                let escaped = json!({"k": v, "x": "a\\b"}).to_string();
                assert!(escaped.contains('\\'));
                for text in [plain, escaped] {
                    assert_eq!(m.matches(Some(&text)), want, "{f:?} {text} {how:?}");
                }
            }
        }
    }

    /// A fraction in a row's text is read as the double its text names
    /// (the nearest one), as Rust and every other reader do: a numeric
    /// string of the same text, or the same number in the filter, equals
    /// it. (serde_json reads such numbers one double off in about one
    /// case in ten without its `float_roundtrip` feature, so `"907…689"`
    /// and `907…689` differed.)
    #[test]
    fn fractions_are_read_as_the_double_their_text_names() {
        for text in [
            "907.3038322028689",
            "481.83792520110524",
            "0.30000000000000004",
        ] {
            let exact: f64 = text.parse().unwrap_or_default();
            let row = format!(r#"{{"x":{text}}}"#);
            let parsed: Value = serde_json::from_str(&row).unwrap_or_default();
            assert_eq!(parsed["x"].as_f64(), Some(exact), "{text}");
            for (how, value) in [
                (Comparison::Text, json!(text)),
                (Comparison::Text, json!(exact)),
                (Comparison::Typed, json!(exact)),
            ] {
                let pred = EventPredicate {
                    properties: vec![filter(
                        json!({"key": "x", "operator": "exact", "value": value}),
                    )],
                    ..Default::default()
                };
                let m = PropertiesMatcher::comparing(&pred, how);
                assert!(m.matches(Some(&row)), "{text} {how:?} {value}");
            }
        }
    }

    /// A predicate written without `numbers` was recorded before they
    /// compared exactly: it reads as doubles, and writes back the same
    /// text (a signed receipt of it stays valid). A new one says so.
    #[test]
    fn a_predicate_without_numbers_reads_as_doubles() {
        let old = r#"{"properties":[{"key":"k","operator":"exact","value":1}]}"#;
        let p: EventPredicate = serde_json::from_str(old).unwrap_or_default();
        assert_eq!(p.numbers, Numbers::Double);
        assert_eq!(p.properties.len(), 1);
        assert_eq!(serde_json::to_string(&p).ok().as_deref(), Some(old));
        let new = EventPredicate {
            numbers: Numbers::Exact,
            ..p
        };
        let text = serde_json::to_string(&new).unwrap_or_default();
        assert!(text.contains(r#""numbers":"exact""#), "{text}");
        assert_eq!(
            serde_json::from_str::<EventPredicate>(&text).ok(),
            Some(new)
        );
        assert_eq!(EventPredicate::default().numbers, Numbers::Exact);
    }

    #[test]
    fn the_text_shortcut_agrees_with_parsing() {
        let filters = [
            json!({"key": "plan", "operator": "exact", "value": "pro"}),
            json!({"key": "plan", "operator": "is_not_set"}),
            json!({"key": "plan", "operator": "is_not", "value": "pro"}),
        ];
        let texts = [
            None,
            Some(r#"{"a": 1}"#),
            Some(r#"{"plan": "pro"}"#),
            Some(r#"{"pl\u0061n": "pro"}"#),
            Some("not json"),
            Some("[1, 2]"),
        ];
        for f in filters {
            let pred = EventPredicate {
                properties: vec![filter(f.clone())],
                ..Default::default()
            };
            for t in texts {
                let parsed = t.and_then(|t| match serde_json::from_str::<Value>(t) {
                    Ok(Value::Object(m)) => Some(m),
                    _ => None,
                });
                assert_eq!(
                    PropertiesMatcher::new(&pred).matches(t),
                    pred.properties[0].matches(parsed.as_ref()),
                    "{f} on {t:?}"
                );
            }
        }
    }

    /// Each filter key's value as `matches` reads it without a parse
    /// (only on text without a backslash); `None` when that reading is not
    /// certain for some key.
    fn fast_read(m: &PropertiesMatcher, text: &str) -> Option<Vec<Option<Value>>> {
        if text.contains('\\') {
            return None;
        }
        let mut outline = None;
        m.quoted
            .iter()
            .map(|q| m.read_value(text, q, &mut outline))
            .collect()
    }

    fn json_value(depth: u32) -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        // Keys and strings from a small alphabet that collides with the
        // filtered keys, as keys, as values and nested.
        let word = prop::sample::select(vec!["a", "b", ",", ":", "a\"", "x y", "{", "}"]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(Value::from),
            word.clone().prop_map(|w| Value::String(w.to_string())),
        ];
        leaf.prop_recursive(depth, 24, 4, move |inner| {
            let word = prop::sample::select(vec!["a", "b", ",", ":", "a\"", "x y"]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((word, inner), 0..4).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        /// The reading of keys found once gives what a parse gives, on
        /// objects whose keys and strings collide with the filtered keys,
        /// compact or pretty, with a key repeated by hand.
        #[test]
        fn keys_found_once_read_as_a_parse_does(
            v in json_value(3),
            pretty in proptest::prelude::any::<bool>(),
            repeat in proptest::prelude::any::<bool>(),
        ) {
            let Value::Object(m) = v else { return Ok(()) };
            // Only valid objects: stored properties are checked when written.
            let repeat = repeat && !m.is_empty();
            let mut text = if pretty {
                serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default()
            } else {
                serde_json::to_string(&Value::Object(m)).unwrap_or_default()
            };
            if repeat {
                text.insert_str(1, r#""a": 7, "#);
            }
            let pred = EventPredicate {
                properties: ["a", "b", ",", ":", "x y", "zz", "a\",\"b", "a\":\""]
                    .iter()
                    .map(|k| PropertyFilter {
                        key: (*k).into(),
                        operator: PropertyOperator::IsSet,
                        value: Value::Null,
                    })
                    .collect(),
                ..Default::default()
            };
            let m = PropertiesMatcher::new(&pred);
            let keys: Vec<&str> = pred.properties.iter().map(|f| f.key.as_str()).collect();
            let parsed = extract(&text, &keys);
            if let Some(fast) = fast_read(&m, &text) {
                proptest::prop_assert_eq!(Some(fast), parsed.clone(), "{}", text);
            }
            // A row's verdict, decided by the first filter that fails, is
            // the parse's, whatever the filters' order and operators.
            for ops in [
                [PropertyOperator::IsNot, PropertyOperator::Exact],
                [PropertyOperator::Exact, PropertyOperator::IsNotSet],
                [PropertyOperator::IsSet, PropertyOperator::IsNot],
            ] {
                let pred = EventPredicate {
                    properties: ["b", "a", ":", "x y"]
                        .iter()
                        .enumerate()
                        .map(|(i, k)| PropertyFilter {
                            key: (*k).into(),
                            operator: ops[i % 2],
                            value: json!(["a", 1, true, ","]),
                        })
                        .collect(),
                    ..Default::default()
                };
                let keys: Vec<&str> = pred.properties.iter().map(|f| f.key.as_str()).collect();
                let values = extract(&text, &keys);
                let want = pred.properties.iter().enumerate().all(|(i, f)| {
                    f.matches_value(values.as_ref().and_then(|v| v[i].as_ref()))
                });
                let got = PropertiesMatcher::new(&pred).matches(Some(&text));
                proptest::prop_assert_eq!(got, want, "{:?} on {}", ops, text);
            }
        }
    }

    #[test]
    fn keys_found_once_are_read_without_a_parse() {
        let pred = EventPredicate {
            properties: vec![
                filter(json!({"key": "$p", "operator": "is_not", "value": [false, "false"]})),
                filter(json!({"key": "$browser", "operator": "exact", "value": "Chrome"})),
            ],
            ..Default::default()
        };
        let m = PropertiesMatcher::new(&pred);
        let found = |t: &str| fast_read(&m, t);
        assert_eq!(
            found(r#"{"$browser": "Chrome", "n": {"$p": false}, "$p": true}"#),
            None,
            "twice: parsed"
        );
        assert_eq!(
            found(r#"{"$browser":"Chrome","n":{"$p":false}}"#),
            Some(vec![None, Some(json!("Chrome"))]),
            "nested: absent"
        );
        assert_eq!(
            found(r#"{"x": "$p", "$browser": ["Chrome"]}"#),
            Some(vec![None, Some(json!(["Chrome"]))]),
            "a value spelled as the key: absent"
        );
        assert_eq!(found(r#"{"$p": "a\"b"}"#), None, "a backslash: parsed");
        assert_eq!(
            found(r#"{"$p": false} trailing"#),
            None,
            "no object's outline"
        );
        assert_eq!(
            found("\u{a0}{\"$p\": false}"),
            None,
            "not JSON's whitespace"
        );
        // A key with a quote: its quoted form spans other strings.
        for (text, key) in [
            (r#"{"k":"a","b":1}"#, r#"a","b"#),
            (r#"{"a":":1"}"#, r#"a":"#),
        ] {
            let pred = EventPredicate {
                properties: vec![filter(json!({"key": key, "operator": "is_set"}))],
                ..Default::default()
            };
            let m = PropertiesMatcher::new(&pred);
            assert_eq!(fast_read(&m, text), None, "{key} in {text}");
            assert!(!m.matches(Some(text)), "{key} in {text}");
        }
        // A filtered key's value nested as deep as a parse of the row
        // still allows, and one level deeper (then the row is no object
        // to the parse, and must be none here either).
        let pred = EventPredicate {
            properties: vec![filter(json!({"key": "$p", "operator": "is_set"}))],
            ..Default::default()
        };
        let set = PropertiesMatcher::new(&pred);
        let deep = |n: usize| format!(r#"{{"$p": {}{}}}"#, "[".repeat(n), "]".repeat(n));
        let limit = (1..200)
            .find(|&n| extract(&deep(n), &["$p"]).is_none())
            .expect("serde_json has a nesting limit");
        for n in [limit - 1, limit] {
            let parsed = extract(&deep(n), &["$p"]);
            assert_eq!(
                set.matches(Some(&deep(n))),
                parsed.is_some_and(|v| v[0].is_some()),
                "{n} levels"
            );
        }
        assert!(!m.matches(Some(r#"{"$browser": "Chrome", "$p": false}"#)));
        assert!(m.matches(Some(r#"{"$browser": "Chrome", "$p": true}"#)));
    }

    #[test]
    fn extraction_agrees_with_a_full_parse() {
        let texts = [
            r#"{"a": 1, "b": {"x": [1, 2]}, "c": "C"}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"b": "only"}"#,
            r#"{"c\u0041": 5, "cA": 6}"#,
            r#"{}"#,
            r#"[1]"#,
            r#"{"a": 1} trailing"#,
            "",
        ];
        for t in texts {
            let full = match serde_json::from_str::<Value>(t) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            };
            let keys = ["a", "b", "cA", "a", "zz"];
            let got = extract(t, &keys);
            let want = full
                .as_ref()
                .map(|m| keys.iter().map(|k| m.get(*k).cloned()).collect::<Vec<_>>());
            assert_eq!(got, want, "{t}");
        }
    }

    #[test]
    fn bad_predicates_are_refused_with_a_reason() {
        let ok = EventPredicate {
            events: vec!["$pageview".into()],
            ..Default::default()
        };
        assert!(ok.validate(&[Table::Events]).is_ok());
        let cases: Vec<(EventPredicate, &[Table], &str)> = vec![
            (
                EventPredicate::default(),
                &[Table::Events],
                "at least one condition",
            ),
            (
                EventPredicate {
                    after_us: Some(10),
                    before_us: Some(10),
                    ..Default::default()
                },
                &[Table::Events],
                "inverted",
            ),
            (
                EventPredicate {
                    events: vec![String::new()],
                    ..Default::default()
                },
                &[Table::Events],
                "must not be empty",
            ),
            (ok.clone(), &[Table::Recordings], "recordings have no event"),
            (
                EventPredicate {
                    properties: vec![filter(json!({"key": "n", "operator": "gt", "value": "x"}))],
                    ..Default::default()
                },
                &[Table::Events],
                "needs a number",
            ),
            (
                EventPredicate {
                    properties: vec![filter(
                        json!({"key": "n", "operator": "exact", "value": []}),
                    )],
                    ..Default::default()
                },
                &[Table::Events],
                "empty list",
            ),
        ];
        let many = |n: usize| (0..n).map(|i| format!("e{i}")).collect::<Vec<_>>();
        let cases = cases.into_iter().chain([
            (
                EventPredicate {
                    events: many(MAX_PREDICATE_ITEMS + 1),
                    ..Default::default()
                },
                &[Table::Events][..],
                "event names per predicate",
            ),
            (
                EventPredicate {
                    properties: (0..=MAX_PREDICATE_FILTERS)
                        .map(|_| filter(json!({"key": "a", "operator": "is_set"})))
                        .collect(),
                    ..Default::default()
                },
                &[Table::Events],
                "property filters per predicate",
            ),
            (
                EventPredicate {
                    events: (0..20).map(|i| format!("{i}{}", "x".repeat(60_000))).collect(),
                    ..Default::default()
                },
                &[Table::Events],
                "bytes of names",
            ),
            (
                EventPredicate {
                    events: vec!["x".repeat(MAX_PREDICATE_TEXT + 1)],
                    ..Default::default()
                },
                &[Table::Events],
                "at most",
            ),
            (
                EventPredicate {
                    properties: vec![filter(
                        json!({"key": "a", "operator": "exact", "value": many(MAX_PREDICATE_ITEMS + 1)}),
                    )],
                    ..Default::default()
                },
                &[Table::Events],
                "values",
            ),
        ]);
        for (p, tables, needle) in cases {
            let e = p.validate(tables).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} (wanted {needle})");
        }
        let unknown = serde_json::from_value::<PropertyFilter>(
            json!({"key": "a", "operator": "regex", "value": "x"}),
        );
        assert!(unknown.is_err(), "an unknown operator is refused");
    }

    #[test]
    fn a_part_outside_the_window_is_skipped() {
        let p = PartMeta {
            id: 1,
            table: Table::Events,
            project_id: 1,
            day: 0,
            last_day: None,
            path: String::new(),
            size: 0,
            rows: 1,
            row_groups: vec![1],
            min_seq: 0,
            max_seq: 0,
            min_ts: 100,
            max_ts: 200,
            tombstone: None,
            checksum: None,
            blake3: None,
            runs: None,
        };
        let w = |a: Option<i64>, b: Option<i64>| EventPredicate {
            after_us: a,
            before_us: b,
            ..Default::default()
        };
        assert!(w(Some(200), None).may_match_part(&p));
        assert!(!w(Some(201), None).may_match_part(&p));
        assert!(w(None, Some(101)).may_match_part(&p));
        assert!(!w(None, Some(100)).may_match_part(&p));
        assert!(w(None, None).may_match_part(&p));
    }
}
