//! PostHog's insight query nodes that `POST …/query/` takes besides
//! `HogQLQuery` and `TrendsQuery`: a `FunnelsQuery` and a
//! `LifecycleQuery`, read into the legacy `Filter` parameters
//! ([`Params`]) their legacy routes take, so that both forms of an
//! insight are one computation ([`super::funnel`], [`super::lifecycle`]).
//!
//! Keys that change the answer and are not served are refused; keys of
//! presentation are ignored, as the trends query's are.

use serde_json::{json, Map, Value};

use super::filter::Params;
use crate::error::{AppError, Result};

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// The keys every query node may have besides its own, read or ignored.
const COMMON: &[&str] = &[
    "kind",
    "dateRange",
    "properties",
    "filterTestAccounts",
    "aggregation_group_type_index",
    "samplingFactor",
    "modifiers",
    "response",
    "version",
    "tags",
    "dataColorTheme",
];

/// The keys of the nodes with series.
const SERIES: &[&str] = &["series", "interval"];

/// What every query node is checked for: a key outside [`COMMON`] and
/// `own` is refused (rather than ignored), and so are test-account
/// filters and groups, which Elide does not have.
pub(crate) fn check_node(q: &Map<String, Value>, kind: &str, own: &[&str]) -> Result<()> {
    if let Some(k) = q
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return invalid(format!("{kind}: {k} is not supported"));
    }
    if q.get("filterTestAccounts") == Some(&Value::Bool(true)) {
        return invalid(format!(
            "{kind}: filterTestAccounts is not supported (Elide has no test-account filters)"
        ));
    }
    if q.get("aggregation_group_type_index")
        .is_some_and(|v| !v.is_null())
    {
        return invalid(format!("{kind}: groups are not supported"));
    }
    Ok(())
}

/// A node's `dateRange` as the legacy keys (`date_from`, `date_to`,
/// `explicit_date`), into `m`.
pub(crate) fn date_range(q: &Map<String, Value>, m: &mut Map<String, Value>) -> Result<()> {
    if let Some(r) = object(q, "dateRange")? {
        copy(r, "date_from", "date_from", m);
        copy(r, "date_to", "date_to", m);
        copy(r, "explicitDate", "explicit_date", m);
    }
    Ok(())
}

/// A `FunnelsQuery` as the parameters of `…/insights/funnel/`.
pub fn funnels_params(q: &Map<String, Value>) -> Result<Params> {
    check_node(
        q,
        "FunnelsQuery",
        &[SERIES, &["breakdownFilter", "funnelsFilter"]].concat(),
    )?;
    let mut m = common(q, "FunnelsQuery")?;
    if let Some(b) = object(q, "breakdownFilter")? {
        let b = fold_breakdowns(b, true)?;
        if b.get("breakdown").is_some_and(|v| !v.is_null()) {
            for k in [
                "breakdown_histogram_bin_count",
                "breakdown_normalize_url",
                "breakdown_group_type_index",
            ] {
                if b.get(k)
                    .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
                {
                    return invalid(format!(
                        "FunnelsQuery: breakdownFilter.{k} is not supported"
                    ));
                }
            }
        }
        for k in ["breakdown", "breakdown_type", "breakdown_limit"] {
            copy(&b, k, k, &mut m);
        }
    }
    if let Some(f) = object(q, "funnelsFilter")? {
        for (from, to) in [
            ("funnelWindowInterval", "funnel_window_interval"),
            ("funnelWindowIntervalUnit", "funnel_window_interval_unit"),
            ("funnelOrderType", "funnel_order_type"),
            ("funnelVizType", "funnel_viz_type"),
            ("breakdownAttributionType", "breakdown_attribution_type"),
            ("breakdownAttributionValue", "breakdown_attribution_value"),
        ] {
            copy(f, from, to, &mut m);
        }
        if f.get("funnelAggregateByHogQL")
            .is_some_and(|v| !v.is_null() && v != "person_id")
        {
            return invalid(
                "FunnelsQuery: funnelAggregateByHogQL is not supported (funnels count persons)",
            );
        }
        match f.get("exclusions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                let list = list.iter().map(exclusion).collect::<Result<Vec<Value>>>()?;
                m.insert("exclusions".into(), Value::Array(list));
            }
            Some(v) => return invalid(format!("funnelsFilter.exclusions must be a list, got {v}")),
        }
    }
    Ok(Params(m))
}

/// A `LifecycleQuery` as the parameters of
/// `…/insights/trend/?shown_as=Lifecycle`.
pub fn lifecycle_params(q: &Map<String, Value>) -> Result<Params> {
    check_node(
        q,
        "LifecycleQuery",
        &[SERIES, &["lifecycleFilter"]].concat(),
    )?;
    // `lifecycleFilter` is presentation (which statuses show, stacking).
    object(q, "lifecycleFilter")?;
    let mut m = common(q, "LifecycleQuery")?;
    m.insert("shown_as".into(), json!("Lifecycle"));
    Ok(Params(m))
}

/// A `breakdownFilter` with PostHog's `breakdowns` (the list its current
/// editor writes: `[{"property", "type"?, "histogram_bin_count"?,
/// "normalize_url"?, "group_type_index"?}]`) written as the older keys
/// (`breakdown`, `breakdown_type`, `breakdown_…`), which the analytics
/// read: one entry as `breakdown`, several (when `several`, all of one
/// type) as a list of properties. An empty or absent list changes
/// nothing.
pub fn fold_breakdowns(b: &Map<String, Value>, several: bool) -> Result<Map<String, Value>> {
    let list = match b.get("breakdowns") {
        None | Some(Value::Null) => return Ok(b.clone()),
        Some(Value::Array(l)) if l.is_empty() => {
            let mut out = b.clone();
            out.remove("breakdowns");
            return Ok(out);
        }
        Some(Value::Array(l)) => l,
        Some(v) => {
            return invalid(format!(
                "breakdownFilter.breakdowns must be a list, got {v}"
            ))
        }
    };
    if list.len() > 1 && !several {
        return invalid(format!(
            "breakdownFilter.breakdowns: {} breakdowns; one is served here",
            list.len()
        ));
    }
    let mut out = b.clone();
    out.remove("breakdowns");
    let mut properties = Vec::with_capacity(list.len());
    let mut kind: Option<Value> = None;
    // An entry without a type has the filter's.
    let default_type = b
        .get("breakdown_type")
        .filter(|t| !t.is_null())
        .cloned()
        .unwrap_or(json!("event"));
    for e in list {
        let Value::Object(e) = e else {
            return invalid("breakdownFilter.breakdowns: each entry is an object {property, type}");
        };
        let Some(p) = e.get("property").filter(|p| !p.is_null()) else {
            return invalid("breakdownFilter.breakdowns: an entry needs its property");
        };
        properties.push(p.clone());
        let t = e
            .get("type")
            .filter(|t| !t.is_null())
            .cloned()
            .unwrap_or_else(|| default_type.clone());
        match &kind {
            Some(k) if k != &t => return invalid(
                "breakdownFilter.breakdowns: entries of different types are not served together",
            ),
            _ => kind = Some(t),
        }
        for (from, to) in [
            ("histogram_bin_count", "breakdown_histogram_bin_count"),
            ("normalize_url", "breakdown_normalize_url"),
            ("group_type_index", "breakdown_group_type_index"),
        ] {
            copy(e, from, to, &mut out);
        }
    }
    out.insert(
        "breakdown".into(),
        match properties.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(properties),
        },
    );
    out.insert("breakdown_type".into(), kind.unwrap_or(json!("event")));
    Ok(out)
}

/// `key` of `q` as an object, `None` when absent or null.
fn object<'q>(q: &'q Map<String, Value>, key: &str) -> Result<Option<&'q Map<String, Value>>> {
    match q.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => invalid(format!("{key} must be an object, got {v}")),
    }
}

fn copy(from: &Map<String, Value>, key: &str, to: &str, m: &mut Map<String, Value>) {
    if let Some(v) = from.get(key).filter(|v| !v.is_null()) {
        m.insert(to.into(), v.clone());
    }
}

/// The series, dates, interval, properties and test-account switch every
/// node has, as the legacy names.
fn common(q: &Map<String, Value>, kind: &str) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    let Some(Value::Array(series)) = q.get("series") else {
        return invalid(format!("{kind}: series must be a list of EventsNode"));
    };
    let events = series
        .iter()
        .enumerate()
        .map(|(i, s)| entity(s, i))
        .collect::<Result<Vec<Value>>>()?;
    m.insert("events".into(), Value::Array(events));
    date_range(q, &mut m)?;
    copy(q, "interval", "interval", &mut m);
    copy(q, "properties", "properties", &mut m);
    Ok(m)
}

/// One `EventsNode` of `series` as a legacy entity.
fn entity(s: &Value, order: usize) -> Result<Value> {
    let Value::Object(o) = s else {
        return invalid("series: each entry is an object (EventsNode)");
    };
    match o.get("kind").and_then(Value::as_str) {
        None | Some("EventsNode") => {}
        Some("ActionsNode") => {
            return invalid("series of kind ActionsNode are not supported: Elide has no actions")
        }
        Some(other) => {
            return invalid(format!(
                "series of kind {other} are not supported (EventsNode)"
            ))
        }
    }
    let mut e = json!({"id": o.get("event").cloned().unwrap_or(Value::Null), "type": "events", "order": order});
    for k in ["name", "custom_name", "properties"] {
        if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
            e[k] = v.clone();
        }
    }
    Ok(e)
}

/// One exclusion (`{kind: EventsNode, event, funnelFromStep,
/// funnelToStep, properties?}`) as a legacy one.
fn exclusion(x: &Value) -> Result<Value> {
    let Value::Object(o) = x else {
        return invalid("funnelsFilter.exclusions: each entry is an object (EventsNode)");
    };
    let mut e = entity(x, 0)?;
    for (from, to) in [
        ("funnelFromStep", "funnel_from_step"),
        ("funnelToStep", "funnel_to_step"),
    ] {
        if let Some(v) = o.get(from) {
            e[to] = v.clone();
        }
    }
    Ok(e)
}

/// The legacy parameters of a persons route of an insight (`events`,
/// `date_from`, `date_to`, `explicit_date`, `interval`, `properties`) as
/// a query node of `kind`, and which series `entity_id` names (default
/// the first; with `entity_math` and `entity_order`, the one of that
/// math and place). A `TrendsQuery`'s series keep their `math` and
/// `math_property`.
pub fn legacy_series(p: &Params, kind: &str) -> Result<(Map<String, Value>, usize)> {
    // The legacy entities as every legacy route reads them (`actions`
    // and `filter_test_accounts` refused, ids as text, in `order`).
    let entities = super::filter::entities(p)?;
    if entities.is_empty() {
        return invalid("events must name the event: a JSON list of {id, type: \"events\"}");
    }
    if p.text("entity_type").is_some_and(|t| t != "events") {
        return invalid("entity_type must be events: Elide has no actions");
    }
    // The given entities in the same order (`entities` sorts by `order`,
    // the place in the list by default, stably), for their filters as
    // given (`entities` checked them).
    let mut raw: Vec<(i64, Value)> = match p.json("events") {
        Some(Value::Array(list)) => list
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    v.get("order").and_then(Value::as_i64).unwrap_or(i as i64),
                    v,
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    raw.sort_by_key(|(order, _)| *order);
    let mut series = Vec::with_capacity(entities.len());
    for (e, (_, given)) in entities.iter().zip(&raw) {
        let mut s = json!({"kind": "EventsNode", "event": e.id, "name": e.name});
        if let Some(c) = &e.custom_name {
            s["custom_name"] = json!(c);
        }
        if let Some(props) = given.get("properties").filter(|v| !v.is_null()) {
            s["properties"] = props.clone();
        }
        if kind == "TrendsQuery" {
            for k in ["math", "math_property", "math_property_type"] {
                if let Some(v) = given.get(k).filter(|v| !v.is_null()) {
                    s[k] = v.clone();
                }
            }
        }
        series.push(s);
    }
    // PostHog's `get_target_entity`: the entity of that id, and of that
    // math (`total` when unset) and place when they are given.
    // (A stickiness counts actors whatever the math: not a choice there.)
    let math = p.text("entity_math").filter(|_| kind == "TrendsQuery");
    let order = p.int("entity_order")?;
    let index = match p.text("entity_id") {
        None => 0,
        Some(id) => series
            .iter()
            .zip(&raw)
            .position(|(s, (o, _))| {
                s["event"].as_str() == Some(id.as_str())
                    && math.as_deref().is_none_or(|m| {
                        s.get("math").and_then(Value::as_str).unwrap_or("total") == m
                    })
                    && order.is_none_or(|n| *o == n)
            })
            .ok_or_else(|| {
                AppError::InvalidQuery(format!("entity_id {id:?} is none of the events"))
            })?,
    };
    let mut q = Map::new();
    q.insert("kind".into(), json!(kind));
    q.insert("series".into(), Value::Array(series));
    let mut range = Map::new();
    for (from, to) in [
        ("date_from", "date_from"),
        ("date_to", "date_to"),
        ("explicit_date", "explicitDate"),
    ] {
        if let Some(v) = p.0.get(from).filter(|v| !v.is_null()) {
            range.insert(to.into(), v.clone());
        }
    }
    q.insert("dateRange".into(), Value::Object(range));
    if let Some(i) = p.text("interval") {
        q.insert("interval".into(), json!(i));
    }
    if let Some(props) = p.json("properties") {
        q.insert("properties".into(), props);
    }
    Ok((q, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(b: Value, several: bool) -> std::result::Result<Value, String> {
        let Value::Object(b) = b else {
            unreachable!("an object")
        };
        fold_breakdowns(&b, several)
            .map(Value::Object)
            .map_err(|e| e.to_string())
    }

    /// One entry is that breakdown; several (of one type) a list of
    /// keys; an entry without a type has the filter's; mixed types and
    /// several where one is served are refused.
    #[test]
    fn breakdowns_fold_into_the_older_keys() {
        assert_eq!(
            fold(
                json!({"breakdowns": [{"property": "plan", "type": "person"}], "breakdown_limit": 5}),
                false
            ),
            Ok(json!({"breakdown": "plan", "breakdown_type": "person", "breakdown_limit": 5}))
        );
        assert_eq!(
            fold(
                json!({"breakdown_type": "person", "breakdowns": [{"property": "plan"}]}),
                false
            ),
            Ok(json!({"breakdown": "plan", "breakdown_type": "person"}))
        );
        assert_eq!(
            fold(
                json!({"breakdowns": [{"property": "a"}, {"property": "b"}]}),
                true
            ),
            Ok(json!({"breakdown": ["a", "b"], "breakdown_type": "event"}))
        );
        assert_eq!(
            fold(json!({"breakdown": "x", "breakdowns": []}), false),
            Ok(json!({"breakdown": "x"}))
        );
        let err = fold(
            json!({"breakdowns": [{"property": "a"}, {"property": "b"}]}),
            false,
        )
        .expect_err("several");
        assert!(err.contains("2 breakdowns"), "{err}");
        let err = fold(
            json!({"breakdowns": [{"property": "a"}, {"property": "b", "type": "person"}]}),
            true,
        )
        .expect_err("mixed");
        assert!(err.contains("different types"), "{err}");
        let err = fold(json!({"breakdowns": [{"type": "event"}]}), true).expect_err("no property");
        assert!(err.contains("property"), "{err}");
    }
}
