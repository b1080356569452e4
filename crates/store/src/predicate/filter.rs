//! One property filter (`{"key", "operator", "value"}`): its operators,
//! how it is validated, and how it compares a row's value with its own,
//! as a deletion compares ([`Comparison::Typed`]) or as PostHog's queries
//! do ([`Comparison::Text`]).
//!
//! Deletions take the first seven operators ([`PropertyOperator::deletable`]):
//! a stored deletion's predicate must read the same in every version that
//! opens the store. Queries and the persons list take all of them, as
//! PostHog's HogQL evaluates them.

use std::cmp::Ordering;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::semver;
use super::time::{filter_time, resolved, row_time};

/// Comparison of a property filter (the operators of PostHog's property
/// filters). What "equal", "set" and "a number" mean depends on the
/// [`Comparison`] a filter is evaluated with. A list of values (as text)
/// means any of them (none of them for the negated operators, `is_not`,
/// `not_icontains`, `not_regex`); an empty list drops the condition, as
/// PostHog does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyOperator {
    /// Equal to the value (or to any value of a list). PostHog's `in`.
    #[serde(alias = "in")]
    Exact,
    /// Not equal to the value (or to any of a list); unset matches.
    /// PostHog's `not_in`.
    #[serde(alias = "not_in")]
    IsNot,
    /// Case-insensitive substring of the value's text.
    Icontains,
    /// Not a case-insensitive substring of the value's text; unset
    /// matches. As text only.
    NotIcontains,
    /// `icontains` of a list, as PostHog's `multiSearchAnyCaseInsensitive`
    /// reads it: an empty list is no condition. As text only.
    IcontainsMulti,
    /// None of a list is a case-insensitive substring of the value's
    /// text; unset does not match (PostHog compares the search's NULL with
    /// 0); an empty list is no condition. As text only.
    NotIcontainsMulti,
    /// The value's text matches the regular expression (anywhere in it,
    /// as ClickHouse's `match`). As text only.
    Regex,
    /// The value's text does not match the regular expression; unset
    /// matches. As text only.
    NotRegex,
    /// The key is present (typed: any value, null included; as text: not
    /// null).
    IsSet,
    /// The key is absent (as text: or null).
    IsNotSet,
    /// A number greater than the value.
    Gt,
    /// A number greater than or equal to the value (PostHog's `min`
    /// too). As text only.
    #[serde(alias = "min")]
    Gte,
    /// A number less than the value.
    Lt,
    /// A number less than or equal to the value (PostHog's `max` too).
    /// As text only.
    #[serde(alias = "max")]
    Lte,
    /// A number within `[min, max]`, both included. As text only.
    Between,
    /// A number outside `[min, max]`. As text only.
    NotBetween,
    /// A time equal to the value's (a date, or relative: `-7d`). As text
    /// only.
    IsDateExact,
    /// A time before the value's. As text only.
    IsDateBefore,
    /// A time after the value's. As text only.
    IsDateAfter,
    /// The same version as the value's (`"1.2.3"`; see [`super::semver`]
    /// for how versions read and compare). As text only.
    SemverEq,
    /// Not the value's version. As text only.
    SemverNeq,
    /// A later version. As text only.
    SemverGt,
    /// The same or a later version. As text only.
    SemverGte,
    /// An earlier version (an unset one is, as in PostHog). As text only.
    SemverLt,
    /// The same or an earlier version. As text only.
    SemverLte,
    /// Within `~value`: `~1.2.3` is `[1.2.3, 1.3.0)`. As text only.
    SemverTilde,
    /// Within `^value`: `^1.2.3` is `[1.2.3, 2.0.0)`. As text only.
    SemverCaret,
    /// Within a pattern: `1.2.*` is `[1.2.0, 1.3.0)`. As text only.
    SemverWildcard,
}

impl PropertyOperator {
    /// Whether a deletion may filter with the operator: the seven whose
    /// typed comparison a stored predicate records.
    pub fn deletable(self) -> bool {
        use PropertyOperator::*;
        matches!(self, Exact | IsNot | Icontains | IsSet | IsNotSet | Gt | Lt)
    }

    /// Whether the order of a row's number (or time) against the filter's
    /// satisfies a comparing operator (`gt`, `gte`, `lt`, `lte`, the date
    /// operators).
    fn accepts(self, o: Ordering) -> bool {
        use PropertyOperator::*;
        match self {
            Gt | IsDateAfter => o == Ordering::Greater,
            Gte => o != Ordering::Less,
            Lt | IsDateBefore => o == Ordering::Less,
            Lte => o != Ordering::Greater,
            IsDateExact => o == Ordering::Equal,
            _ => false,
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
            PropertyOperator::NotIcontains => "not_icontains",
            PropertyOperator::IcontainsMulti => "icontains_multi",
            PropertyOperator::NotIcontainsMulti => "not_icontains_multi",
            PropertyOperator::Regex => "regex",
            PropertyOperator::NotRegex => "not_regex",
            PropertyOperator::Gte => "gte",
            PropertyOperator::Lte => "lte",
            PropertyOperator::Between => "between",
            PropertyOperator::NotBetween => "not_between",
            PropertyOperator::IsDateExact => "is_date_exact",
            PropertyOperator::IsDateBefore => "is_date_before",
            PropertyOperator::IsDateAfter => "is_date_after",
            PropertyOperator::SemverEq => "semver_eq",
            PropertyOperator::SemverNeq => "semver_neq",
            PropertyOperator::SemverGt => "semver_gt",
            PropertyOperator::SemverGte => "semver_gte",
            PropertyOperator::SemverLt => "semver_lt",
            PropertyOperator::SemverLte => "semver_lte",
            PropertyOperator::SemverTilde => "semver_tilde",
            PropertyOperator::SemverCaret => "semver_caret",
            PropertyOperator::SemverWildcard => "semver_wildcard",
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
        // By name: serde's aliases (`in`, `min`, …) are the queries'.
        if let Some(op) = o.get("operator") {
            const DELETABLE: &[&str] = &[
                "exact",
                "is_not",
                "icontains",
                "is_set",
                "is_not_set",
                "gt",
                "lt",
            ];
            if !op.as_str().is_some_and(|op| DELETABLE.contains(&op)) {
                return Err(format!(
                    "a deletion's property filters take {}, not {op}",
                    DELETABLE.join(", ")
                ));
            }
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
    /// `gt`/`lt` also take a numeric string (`"30"`), as PostHog does, a
    /// list of values where one is compared (any of them), and an empty
    /// list (no condition); deletions (typed) take neither, nor the
    /// operators that are not [`PropertyOperator::deletable`].
    pub fn validate_as(&self, how: Comparison) -> std::result::Result<(), String> {
        if self.key.is_empty() {
            return Err("a property filter needs a key".into());
        }
        let key = &self.key;
        let op = self.operator.as_str();
        if how == Comparison::Text {
            return self.validate_text();
        }
        match self.operator {
            PropertyOperator::Exact | PropertyOperator::IsNot => match &self.value {
                Value::Array(items) if items.is_empty() => {
                    Err(format!("filter on {key:?}: empty list of values"))
                }
                v => scalars(key, v),
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
                v => Err(format!("filter on {key:?}: {op} needs a number, got {v}")),
            },
            _ => Err(format!(
                "filter on {key:?}: a deletion's property filters take exact, is_not, icontains, is_set, is_not_set, gt or lt, not {op}"
            )),
        }
    }

    /// [`PropertyFilter::validate_as`] for [`Comparison::Text`].
    fn validate_text(&self) -> std::result::Result<(), String> {
        let key = &self.key;
        let op = self.operator.as_str();
        let items = items(&self.value);
        // An empty list drops the condition (PostHog's `property_to_expr`),
        // except where PostHog reads the list itself.
        let no_condition = matches!(&self.value, Value::Array(a) if a.is_empty());
        match self.operator {
            PropertyOperator::IsSet | PropertyOperator::IsNotSet => Ok(()),
            PropertyOperator::Exact | PropertyOperator::IsNot => scalars(key, &self.value),
            PropertyOperator::Icontains
            | PropertyOperator::NotIcontains
            | PropertyOperator::IcontainsMulti
            | PropertyOperator::NotIcontainsMulti => {
                let multi = matches!(
                    self.operator,
                    PropertyOperator::IcontainsMulti | PropertyOperator::NotIcontainsMulti
                );
                if no_condition && !multi {
                    return Err(format!(
                        "filter on {key:?}: {op} needs a string or a non-empty list of them"
                    ));
                }
                match items
                    .iter()
                    .find(|v| !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
                {
                    Some(v) => Err(format!("filter on {key:?}: {op} needs a string, got {v}")),
                    None => Ok(()),
                }
            }
            PropertyOperator::Regex | PropertyOperator::NotRegex
                if items.len() > MAX_PATTERNS =>
            {
                Err(format!(
                    "filter on {key:?}: {op} takes at most {MAX_PATTERNS} regular expressions, got {}",
                    items.len()
                ))
            }
            PropertyOperator::Regex | PropertyOperator::NotRegex => {
                items.iter().try_for_each(|v| match v {
                    Value::String(p) if p.len() > MAX_PATTERN_BYTES => Err(format!(
                        "filter on {key:?}: {op}: a regular expression holds at most {MAX_PATTERN_BYTES} bytes, got {}",
                        p.len()
                    )),
                    Value::String(p) => compile_regex(p).map(drop).map_err(|e| {
                        format!("filter on {key:?}: {op}: {p:?} is not a regular expression: {e}")
                    }),
                    v => Err(format!(
                        "filter on {key:?}: {op} needs a regular expression as text, got {v}"
                    )),
                })
            }
            PropertyOperator::Gt
            | PropertyOperator::Gte
            | PropertyOperator::Lt
            | PropertyOperator::Lte => match items.iter().find(|v| Num::of(v).is_none()) {
                Some(v) => Err(format!("filter on {key:?}: {op} needs a number, got {v}")),
                None => Ok(()),
            },
            PropertyOperator::Between | PropertyOperator::NotBetween => between(&self.value)
                .map(drop)
                .map_err(|e| format!("filter on {key:?}: {op} {e}")),
            PropertyOperator::IsDateExact
            | PropertyOperator::IsDateBefore
            | PropertyOperator::IsDateAfter => {
                let now = Utc::now();
                items.iter().try_for_each(|v| {
                    filter_time(v, now)
                        .map(drop)
                        .map_err(|e| format!("filter on {key:?}: {op}: {e}"))
                })
            }
            PropertyOperator::SemverEq
            | PropertyOperator::SemverNeq
            | PropertyOperator::SemverGt
            | PropertyOperator::SemverGte
            | PropertyOperator::SemverLt
            | PropertyOperator::SemverLte
            | PropertyOperator::SemverTilde
            | PropertyOperator::SemverCaret
            | PropertyOperator::SemverWildcard => semver::versions(self.operator, items)
                .map(drop)
                .map_err(|e| format!("filter on {key:?}: {e}")),
        }
    }

    /// The filter with the relative dates of a date operator's values
    /// (`-7d`) resolved at `now` into the times they name, so that every
    /// part of a query reads them alike (a query resolves them at its
    /// start, as its `now()`); `None` when it has none.
    pub fn dates_resolved_at(&self, now: chrono::DateTime<Utc>) -> Option<PropertyFilter> {
        use PropertyOperator::*;
        if !matches!(self.operator, IsDateExact | IsDateBefore | IsDateAfter) {
            return None;
        }
        let one = |v: &Value| resolved(v, now);
        let value = match &self.value {
            Value::Array(a) if a.iter().any(|v| one(v).is_some()) => Value::Array(
                a.iter()
                    .map(|v| one(v).unwrap_or_else(|| v.clone()))
                    .collect(),
            ),
            v => one(v)?,
        };
        Some(PropertyFilter {
            value,
            ..self.clone()
        })
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
        use PropertyOperator::*;
        if t.no_condition {
            return true;
        }
        // JSON null is unset.
        let v = v.filter(|v| !v.is_null());
        let any_equal = || t.values.iter().any(|w| w.equals(v));
        let contains = || {
            v.is_some_and(|v| {
                let hay = text_of(v).to_lowercase();
                t.needles.iter().any(|n| hay.contains(n.as_str()))
            })
        };
        let matches = || {
            v.is_some_and(|v| {
                let hay = text_of(v);
                t.patterns.iter().any(|r| r.is_match(&hay))
            })
        };
        let number = || v.and_then(Num::of);
        let ordered = |a: Num, b: &Num| a.compare(*b).is_some_and(|o| self.operator.accepts(o));
        match self.operator {
            Exact => any_equal(),
            IsNot => !any_equal(),
            Icontains | IcontainsMulti => contains(),
            NotIcontains => !contains(),
            // PostHog: `multiSearchAnyCaseInsensitive(NULL, …) = 0` is not
            // true.
            NotIcontainsMulti => v.is_some() && !contains(),
            Regex => matches(),
            NotRegex => !matches(),
            IsSet => v.is_some(),
            IsNotSet => v.is_none(),
            Gt | Gte | Lt | Lte => number().is_some_and(|a| t.bounds.iter().any(|b| ordered(a, b))),
            Between | NotBetween => {
                let (Some(a), [lo, hi]) = (number(), t.bounds.as_slice()) else {
                    return false;
                };
                let inside = a.compare(*lo).is_some_and(|o| o != Ordering::Less)
                    && a.compare(*hi).is_some_and(|o| o != Ordering::Greater);
                let outside = a.compare(*lo) == Some(Ordering::Less)
                    || a.compare(*hi) == Some(Ordering::Greater);
                if self.operator == Between {
                    inside
                } else {
                    outside
                }
            }
            IsDateExact | IsDateBefore | IsDateAfter => v
                .and_then(row_time)
                .is_some_and(|x| t.times.iter().any(|w| self.operator.accepts(x.cmp(w)))),
            // Unset reads as the empty text, as PostHog's `sortableSemver`
            // of NULL.
            SemverEq | SemverNeq | SemverGt | SemverGte | SemverLt | SemverLte | SemverTilde
            | SemverCaret | SemverWildcard => {
                let x = semver::sortable(&v.map(text_of).unwrap_or_default());
                t.versions
                    .iter()
                    .any(|w| semver::holds(self.operator, &x, w))
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
                    .is_some_and(|o| self.operator.accepts(o))
            }
            // Not deletable (`validate` refuses them): as text, should a
            // filter be asked to compare so anyway.
            _ => self.matches_text(v),
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
/// needles of `icontains`, the compiled patterns of `regex`, the bounds of
/// the numeric operators, the times of the date operators (a relative
/// date read against the time the filter is prepared).
#[derive(Debug)]
pub(super) struct TextFilter {
    /// The value is an empty list: no condition (every row passes).
    no_condition: bool,
    values: Vec<TextValue>,
    needles: Vec<String>,
    patterns: Vec<regex::Regex>,
    bounds: Vec<Num>,
    times: Vec<i64>,
    /// Per value: its version, or a range's bounds.
    versions: Vec<Vec<semver::Version>>,
}

impl TextFilter {
    pub(super) fn of(f: &PropertyFilter) -> TextFilter {
        use PropertyOperator::*;
        let items = items(&f.value);
        let op = f.operator;
        let now = Utc::now();
        TextFilter {
            no_condition: items.is_empty()
                && !matches!(op, Icontains | NotIcontains | Between | NotBetween),
            values: if matches!(op, Exact | IsNot) {
                items.iter().map(TextValue::of).collect()
            } else {
                Vec::new()
            },
            needles: if matches!(
                op,
                Icontains | NotIcontains | IcontainsMulti | NotIcontainsMulti
            ) {
                items.iter().map(|v| text_of(v).to_lowercase()).collect()
            } else {
                Vec::new()
            },
            // A pattern that does not compile matches nothing (validation
            // refuses it first).
            patterns: if matches!(op, Regex | NotRegex) {
                items
                    .iter()
                    .filter_map(|v| v.as_str().and_then(|p| compile_regex(p).ok()))
                    .collect()
            } else {
                Vec::new()
            },
            bounds: match op {
                Between | NotBetween => between(&f.value).map(Vec::from).unwrap_or_default(),
                _ => items.iter().filter_map(Num::of).collect(),
            },
            times: if matches!(op, IsDateExact | IsDateBefore | IsDateAfter) {
                items
                    .iter()
                    .filter_map(|v| filter_time(v, now).ok())
                    .collect()
            } else {
                Vec::new()
            },
            // A value that is no version compares with nothing
            // (validation refuses it first).
            versions: match semver::is_version(op) {
                true => semver::versions(op, items).unwrap_or_default(),
                false => Vec::new(),
            },
        }
    }
}

/// A filter's values: the items of a list, or the one value.
fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        v => std::slice::from_ref(v),
    }
}

/// Whether `v` is a value or a list of values that equality compares
/// (strings, numbers, booleans, null).
fn scalars(key: &str, v: &Value) -> std::result::Result<(), String> {
    match v {
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => Err(format!(
            "filter on {key:?}: values must be strings, numbers, booleans or null"
        )),
        Value::Object(_) => Err(format!(
            "filter on {key:?}: the value must be a string, number, boolean, null or a list of them"
        )),
        _ => Ok(()),
    }
}

/// The `[min, max]` of `between` / `not_between`: two numbers (or
/// numeric strings), the first not above the second, as PostHog checks.
fn between(v: &Value) -> std::result::Result<[Num; 2], String> {
    let Value::Array(a) = v else {
        return Err(format!("needs a two-element list [min, max], got {v}"));
    };
    let [lo, hi] = a.as_slice() else {
        return Err(format!("needs a two-element list [min, max], got {v}"));
    };
    let (Some(lo), Some(hi)) = (Num::of(lo), Num::of(hi)) else {
        return Err(format!("needs numbers, got {v}"));
    };
    if lo.compare(hi) != Some(Ordering::Greater) {
        Ok([lo, hi])
    } else {
        Err(format!("needs min less than or equal to max, got {v}"))
    }
}

/// A filter's regular expression, compiled (RE2-like syntax, as
/// ClickHouse's `match`; matched anywhere in the text).
fn compile_regex(p: &str) -> std::result::Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT / 2)
        .build()
}

/// The most memory a filter's compiled regular expression may take, and
/// (half of it) its matching cache. Unicode classes such as `\w` compile
/// large: a pattern of a few of them, as `\w+@\w+\.\w+`, must fit. A
/// list of filters holds at most [`MAX_PATTERNS`] of them
/// ([`check_patterns`]).
pub const REGEX_SIZE_LIMIT: usize = 256 << 10;

/// Most regular expressions in one list of filters, all its `regex` and
/// `not_regex` filters together ([`check_patterns`]).
pub const MAX_PATTERNS: usize = 20;

/// Longest regular expression (bytes): its parse takes memory in
/// proportion before the compiled size is known.
pub const MAX_PATTERN_BYTES: usize = 2048;

/// The regular expressions of `filters` (of their `regex` and
/// `not_regex` filters), counted.
pub fn pattern_count<'a>(filters: impl Iterator<Item = &'a PropertyFilter>) -> usize {
    filters
        .filter(|f| {
            matches!(
                f.operator,
                PropertyOperator::Regex | PropertyOperator::NotRegex
            )
        })
        .map(|f| items(&f.value).len())
        .sum()
}

/// Check a list of filters as queries compare them ([`Comparison::Text`]):
/// each on its own ([`PropertyFilter::validate_as`]), then their regular
/// expressions together ([`check_patterns`]).
pub fn validate_text_list(filters: &[PropertyFilter]) -> std::result::Result<(), String> {
    for f in filters {
        f.validate_as(Comparison::Text)?;
    }
    check_patterns(filters)
}

/// Whether a list of filters holds at most [`MAX_PATTERNS`] regular
/// expressions in all (each filter is checked on its own by
/// [`PropertyFilter::validate_as`]).
pub fn check_patterns(filters: &[PropertyFilter]) -> std::result::Result<(), String> {
    let n = pattern_count(filters.iter());
    if n > MAX_PATTERNS {
        return Err(format!(
            "a list of property filters holds at most {MAX_PATTERNS} regular expressions, got {n}"
        ));
    }
    Ok(())
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
