//! One property filter (`{"key", "operator", "value"}`): its operators,
//! how it is validated, and how it compares a row's value with its own,
//! as a deletion compares ([`Comparison::Typed`]) or as PostHog's queries
//! do ([`Comparison::Text`]).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    pub(super) fn matches_text_with(&self, v: Option<&Value>, t: &TextFilter) -> bool {
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
pub(super) struct TextFilter {
    values: Vec<TextValue>,
    needle: String,
    bound: Option<Num>,
}

impl TextFilter {
    pub(super) fn of(f: &PropertyFilter) -> TextFilter {
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
                let s = s.trim_matches(super::json_ws);
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
    pub(super) fn recorded_before() -> Numbers {
        Numbers::Double
    }

    pub(super) fn is_double(&self) -> bool {
        *self == Numbers::Double
    }
}
