//! Counting a trend's series ([`compute`]) and PostHog's result list
//! ([`results`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use elide_persons::{Persons, SqliteMeta};
use futures::StreamExt;
use serde_json::{json, Value};

use super::{invalid, Counts, Display, Math, TrendsSpec, BREAKDOWN_NULL, BREAKDOWN_OTHER, DAY};
use crate::analytics::personless::{Personless, MAX_RUNS};
use crate::analytics::{period_labels, session, stream, SortedKeys};
use crate::error::Result;
use crate::query::QueryLimits;

/// Compute every series (with `compareFilter`, then every series over
/// the previous period).
pub async fn compute(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    limits: &QueryLimits,
) -> Result<Vec<Counts>> {
    let mut out = compute_period(persons, project, spec, limits).await?;
    if let Some(prev) = &spec.previous {
        out.extend(compute_period(persons, project, prev, limits).await?);
    }
    Ok(out)
}

/// Every series over `spec`'s own range.
async fn compute_period(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    limits: &QueryLimits,
) -> Result<Vec<Counts>> {
    let mut runs = 0;
    loop {
        runs += 1;
        let (out, personless) = compute_once(persons, project, spec, limits).await?;
        // Again if a person was deleted while it ran ([`Personless::stale`]).
        match personless {
            Some(p) if runs < MAX_RUNS && p.stale(persons, project)? => continue,
            _ => return Ok(out),
        }
    }
}

/// A session for `spec`'s queries: its cohorts registered, and what it
/// reads of the deleted persons when a series counts personless actors
/// (read once for all).
pub(crate) async fn prepare(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    limits: &QueryLimits,
) -> Result<(datafusion::prelude::SessionContext, Option<Personless>)> {
    let ctx = session(persons, project, limits)?;
    crate::analytics::cohorts::register_for(
        &ctx,
        persons,
        project,
        spec.props
            .iter()
            .chain(spec.series.iter().flat_map(|s| &s.props)),
    )
    .await?;
    let personless = if spec.series.iter().any(|s| spec.counts_personless(s)) {
        let p = Personless::read(persons, project)?;
        p.register(&ctx);
        Some(p)
    } else {
        None
    };
    Ok((ctx, personless))
}

/// [`compute`] once, with what it read of the deleted persons.
async fn compute_once(
    persons: &Arc<Persons<SqliteMeta>>,
    project: i64,
    spec: &TrendsSpec,
    limits: &QueryLimits,
) -> Result<(Vec<Counts>, Option<Personless>)> {
    let (ctx, personless) = prepare(persons, project, spec, limits).await?;
    let deleted = |who: &str| personless.as_ref().is_some_and(|p| p.is_deleted(who));
    // What the counts, the breakdown values and the personless actors'
    // numbers hold is charged to the query's memory pool: a breakdown by
    // a property unique per event (`$insert_id`) makes about one value of
    // every event, and is refused at the query's memory limit.
    let tally = elide_query::hold(&ctx.runtime_env().memory_pool, "trends tally", 0)?;
    let mut out = Vec::new();
    for s in &spec.series {
        let mut counts: Counts = BTreeMap::new();
        let bd_of = |c: &arrow::array::StringArray, r: usize| -> Option<String> {
            spec.breakdown.as_ref().map(|_| {
                // An empty string is PostHog's null bucket too.
                if c.is_null(r) || c.value(r).is_empty() {
                    BREAKDOWN_NULL.to_string()
                } else {
                    c.value(r).to_string()
                }
            })
        };
        let math = spec.math_of(s);
        if math.over_rows() {
            // One value per (period, breakdown value), computed in SQL.
            let mut rows = stream(&ctx, &spec.rows_sql(s, personless.as_ref())?).await?;
            while let Some(b) = rows.next().await {
                let b = b?;
                let period = b.column(0).as_primitive::<Int64Type>();
                let bd = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                let bd = bd.as_string::<i32>();
                let n = b.column(2).as_primitive::<Float64Type>();
                for r in 0..b.num_rows() {
                    if period.is_null(r) {
                        continue;
                    }
                    add(
                        &mut counts,
                        &tally,
                        bd_of(bd, r),
                        period.value(r),
                        n.value(r),
                    )?;
                }
            }
            out.push(counts);
            continue;
        }
        match math.days() {
            None => {
                // Personless actors: one row per (period, value, UUID)
                // with its events, less the UUIDs of deleted persons.
                if let Some(sql) = spec.personless_sql(s, personless.as_ref())? {
                    let mut rows = stream(&ctx, &sql).await?;
                    while let Some(b) = rows.next().await {
                        let b = b?;
                        let period = b.column(0).as_primitive::<Int64Type>();
                        let bd = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                        let bd = bd.as_string::<i32>();
                        let who = arrow::compute::cast(b.column(2), &DataType::Utf8)?;
                        let who = who.as_string::<i32>();
                        let events = b.column(3).as_primitive::<Int64Type>();
                        for r in 0..b.num_rows() {
                            if period.is_null(r) || who.is_null(r) || deleted(who.value(r)) {
                                continue;
                            }
                            let n = if math == Math::Total {
                                events.value(r).max(0) as f64
                            } else {
                                1.0
                            };
                            add(&mut counts, &tally, bd_of(bd, r), period.value(r), n)?;
                        }
                    }
                }
                let mut rows = stream(&ctx, &spec.sql(s)?).await?;
                while let Some(b) = rows.next().await {
                    let b = b?;
                    let period = b.column(0).as_primitive::<Int64Type>();
                    let bd = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                    let bd = bd.as_string::<i32>();
                    let n = b.column(2).as_primitive::<Int64Type>();
                    for r in 0..b.num_rows() {
                        if period.is_null(r) {
                            continue;
                        }
                        let n = n.value(r).max(0) as f64;
                        add(&mut counts, &tally, bd_of(bd, r), period.value(r), n)?;
                    }
                }
            }
            Some(days) => {
                // One integer per event, (breakdown value, person's row
                // id, day), in a flat vector then sorted: each (value,
                // person)'s active days come out together and in order,
                // with no per-person collection and no random access per
                // row. Breakdown values are numbered (`names`), so that a
                // row costs no allocation.
                // This series' numbering of values and personless actors,
                // charged while the series is counted (the counts stay, on
                // `tally`).
                let series = elide_query::hold(&ctx.runtime_env().memory_pool, "trends series", 0)?;
                let mut values: Vec<Option<String>> = Vec::new();
                let mut names: HashMap<String, usize> = HashMap::new();
                if spec.breakdown.is_none() {
                    values.push(None);
                }
                let mut keys = SortedKeys::new();
                let base_day = (spec.first - (days - 1) * DAY).div_euclid(DAY);
                // Personless actors (their UUID's text) are numbered from
                // 2^62, above every person's row id.
                let queries = [
                    Some(spec.sql(s)?),
                    spec.personless_sql(s, personless.as_ref())?,
                ];
                let mut numbered: HashMap<String, i64> = HashMap::new();
                for sql in queries.iter().flatten() {
                    let mut rows = stream(&ctx, sql).await?;
                    while let Some(b) = rows.next().await {
                        let b = b?;
                        let t = b.column(0).as_primitive::<Int64Type>();
                        let bd = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
                        let bd = bd.as_string::<i32>();
                        let person: Int64Array = match b.column(2).data_type() {
                            DataType::Int64 => b.column(2).as_primitive::<Int64Type>().clone(),
                            _ => {
                                let text = arrow::compute::cast(b.column(2), &DataType::Utf8)?;
                                let text = text.as_string::<i32>();
                                (0..text.len())
                                    .map(|r| -> Result<Option<i64>> {
                                        let who = text.value(r);
                                        if text.is_null(r) || deleted(who) {
                                            return Ok(None);
                                        }
                                        // A UUID seen before costs no copy.
                                        if let Some(&n) = numbered.get(who) {
                                            return Ok(Some(n));
                                        }
                                        series.try_grow(who.len() + ENTRY_OVERHEAD)?;
                                        let n = (1i64 << 62) + numbered.len() as i64;
                                        numbered.insert(who.to_string(), n);
                                        Ok(Some(n))
                                    })
                                    .collect::<Result<Int64Array>>()?
                            }
                        };
                        for r in 0..b.num_rows() {
                            if t.is_null(r) || person.is_null(r) {
                                continue;
                            }
                            let value = if spec.breakdown.is_none() {
                                0
                            } else {
                                // An empty string is the null bucket
                                // (as `bd_of`).
                                let v = if bd.is_null(r) || bd.value(r).is_empty() {
                                    BREAKDOWN_NULL
                                } else {
                                    bd.value(r)
                                };
                                match names.get(v) {
                                    Some(&k) => k,
                                    None if values.len() >= u32::MAX as usize => {
                                        return invalid("the breakdown has too many values");
                                    }
                                    None => {
                                        series.try_grow(2 * (v.len() + ENTRY_OVERHEAD))?;
                                        names.insert(v.to_string(), values.len());
                                        values.push(Some(v.to_string()));
                                        values.len() - 1
                                    }
                                }
                            };
                            // Row ids are positive; days are counted from the
                            // first the query reads.
                            let (Ok(id), Ok(day)) = (
                                u64::try_from(person.value(r)),
                                u32::try_from(t.value(r).div_euclid(DAY) - base_day),
                            ) else {
                                continue;
                            };
                            let key =
                                (value as u128) << 96 | u128::from(id) << 32 | u128::from(day);
                            keys.push(key);
                        }
                    }
                    drop(rows);
                }
                let keys = keys.finish();
                let mut ds: Vec<i64> = Vec::new();
                for (at, &key) in keys.iter().enumerate() {
                    ds.push((base_day + i64::from(key as u32)) * DAY);
                    if keys.get(at + 1).is_some_and(|next| next >> 32 == key >> 32) {
                        continue;
                    }
                    // The last day of this (value, person): the person
                    // counts on every day d with an active day in
                    // (d - days, d]: merged runs [a, b + days).
                    let value = (key >> 96) as usize;
                    let c = periods_of(&mut counts, &tally, values[value].clone())?;
                    let mut k = 0;
                    while k < ds.len() {
                        let start = ds[k];
                        let mut end = ds[k] + days * DAY;
                        while k + 1 < ds.len() && ds[k + 1] < end {
                            k += 1;
                            end = ds[k] + days * DAY;
                        }
                        let mut d = start.max(spec.first);
                        while d < end && d <= spec.to {
                            bump(c, &tally, d, 1.0)?;
                            d += DAY;
                        }
                        k += 1;
                    }
                    ds.clear();
                }
            }
        }
        out.push(counts);
    }
    Ok((out, personless))
}

/// What an entry of the tally holds beyond its text: a `String` header,
/// a map's node or slot.
const ENTRY_OVERHEAD: usize = 64;

/// `value`'s counts per period, made (and charged to `tally`) if new.
fn periods_of<'c>(
    counts: &'c mut Counts,
    tally: &datafusion::execution::memory_pool::MemoryReservation,
    value: Option<String>,
) -> Result<&'c mut BTreeMap<i64, f64>> {
    use std::collections::btree_map::Entry;
    Ok(match counts.entry(value) {
        Entry::Occupied(o) => o.into_mut(),
        Entry::Vacant(v) => {
            tally.try_grow(v.key().as_ref().map_or(0, String::len) + ENTRY_OVERHEAD)?;
            v.insert(BTreeMap::new())
        }
    })
}

/// Add `n` to the count of `period`, charging `tally` for a new entry.
fn bump(
    periods: &mut BTreeMap<i64, f64>,
    tally: &datafusion::execution::memory_pool::MemoryReservation,
    period: i64,
    n: f64,
) -> Result<()> {
    use std::collections::btree_map::Entry;
    match periods.entry(period) {
        Entry::Occupied(mut o) => *o.get_mut() += n,
        Entry::Vacant(v) => {
            tally.try_grow(ENTRY_OVERHEAD)?;
            v.insert(n);
        }
    }
    Ok(())
}

/// Add `n` to `value`'s count in `period` ([`periods_of`], [`bump`]).
fn add(
    counts: &mut Counts,
    tally: &datafusion::execution::memory_pool::MemoryReservation,
    value: Option<String>,
    period: i64,
    n: f64,
) -> Result<()> {
    bump(periods_of(counts, tally, value)?, tally, period, n)
}

/// A breakdown value and its counts per period.
pub(crate) type Ranked<'a> = (&'a Option<String>, &'a BTreeMap<i64, f64>);

/// A series' breakdown values (and their counts) as [`results`] shows
/// them: the largest `breakdown_limit` by their total over `periods`,
/// chosen before any is zero-filled (a breakdown by a property unique
/// per event has as many values as events), then the rest (`Other`).
/// As PostHog ranks them: values before the null one (a total value: by
/// the value alone), then by total, largest first, then by value.
pub(crate) fn ranked<'a>(
    spec: &TrendsSpec,
    c: &'a Counts,
    periods: &[i64],
) -> (Vec<Ranked<'a>>, Vec<Ranked<'a>>) {
    let in_range = |p: &i64| periods.binary_search(p).is_ok();
    let mut totals: Vec<(&Option<String>, f64, &BTreeMap<i64, f64>)> = c
        .iter()
        .map(|(bd, m)| {
            let total = m.iter().filter(|(p, _)| in_range(p)).map(|(_, n)| *n).sum();
            (bd, total, m)
        })
        .collect();
    let null = |v: &Option<String>| {
        spec.display != Display::TotalValue && v.as_deref() == Some(BREAKDOWN_NULL)
    };
    totals.sort_by(|a, b| {
        null(a.0)
            .cmp(&null(b.0))
            .then_with(|| b.1.total_cmp(&a.1))
            .then_with(|| a.0.cmp(b.0))
    });
    let rest = totals.split_off(spec.breakdown_limit.min(totals.len()));
    let pairs = |v: Vec<(&'a Option<String>, f64, &'a BTreeMap<i64, f64>)>| {
        v.into_iter().map(|(bd, _, m)| (bd, m)).collect()
    };
    (pairs(totals), pairs(rest))
}

/// The periods [`results`] shows: the first day alone for a total value.
pub(crate) fn shown_periods(spec: &TrendsSpec) -> Vec<i64> {
    match spec.display {
        Display::TotalValue => vec![spec.first],
        Display::Series | Display::Cumulative => spec.periods(),
    }
}

/// PostHog's result list ([`results_period`]); with `compareFilter`,
/// the current period's rows then the previous one's, each marked
/// `compare: true` and `compare_label` `current` or `previous`.
pub fn results(spec: &TrendsSpec, counts: &[Counts]) -> Value {
    let Some(prev) = &spec.previous else {
        return results_period(spec, counts);
    };
    let (current, previous) = counts.split_at(spec.series.len().min(counts.len()));
    let mut out = Vec::new();
    for (s, c, label) in [(spec, current, "current"), (&**prev, previous, "previous")] {
        if let Value::Array(rows) = results_period(s, c) {
            for mut row in rows {
                if let Some(o) = row.as_object_mut() {
                    o.insert("compare".into(), json!(true));
                    o.insert("compare_label".into(), json!(label));
                }
                out.push(row);
            }
        }
    }
    Value::Array(out)
}

/// PostHog's result list of one period: per series (and breakdown value, the largest
/// `breakdown_limit` by total, then `Other`: the sum of the rest per
/// period, as PostHog sums them whatever the math, unless hidden),
/// `{action, label, count, data, labels, days, breakdown_value?}`,
/// zero-filled; with formulas, their rows instead
/// ([`super::formula::rows`]).
fn results_period(spec: &TrendsSpec, counts: &[Counts]) -> Value {
    let (labels, days) = period_labels(spec.interval, &spec.periods());
    // A total value is counted at the first day alone.
    let periods = shown_periods(spec);
    let mut per_series: Vec<Vec<Value>> = Vec::new();
    for (i, (s, c)) in spec.series.iter().zip(counts).enumerate() {
        let mut out = Vec::new();
        let rows: Vec<(Option<String>, Vec<f64>)> = if spec.breakdown.is_none() {
            let by = c.get(&None);
            vec![(
                None,
                periods
                    .iter()
                    .map(|p| by.and_then(|m| m.get(p)).copied().unwrap_or(0.0))
                    .collect(),
            )]
        } else {
            let in_range = |p: &i64| periods.binary_search(p).is_ok();
            let (kept, rest) = ranked(spec, c, &periods);
            let mut rows: Vec<(Option<String>, Vec<f64>)> = kept
                .into_iter()
                .map(|(bd, m)| {
                    (
                        bd.clone(),
                        periods
                            .iter()
                            .map(|p| m.get(p).copied().unwrap_or(0.0))
                            .collect(),
                    )
                })
                .collect();
            // Values past the limit with nothing in the range make no
            // Other row.
            if spec.breakdown_other && rest.iter().any(|(_, m)| m.keys().any(in_range)) {
                rows.push((
                    Some(BREAKDOWN_OTHER.to_string()),
                    periods
                        .iter()
                        .map(|p| {
                            rest.iter()
                                .map(|(_, m)| m.get(p).copied().unwrap_or(0.0))
                                .sum::<f64>()
                        })
                        .collect(),
                ));
            }
            rows
        };
        for (bd, mut data) in rows {
            let label = match &bd {
                Some(v) => v.clone(),
                None => s.custom_name.clone().unwrap_or_else(|| s.name.clone()),
            };
            let action = json!({"id": s.event, "type": "events", "order": i, "name": s.name,
                "custom_name": s.custom_name, "math": s.math.as_str(),
                "math_property": s.math_property.as_ref().map(|m| &m.key)});
            // As PostHog's `build_series_response`: a total value has no
            // data, its `count` is 0; a running sum's `count` is its last.
            let mut o = match spec.display {
                Display::TotalValue => json!({
                    "action": action,
                    "label": label,
                    "count": 0,
                    "aggregated_value": data.first().copied().unwrap_or(0.0),
                    "data": [],
                    "days": days,
                }),
                Display::Cumulative => {
                    let mut sum = 0.0;
                    for v in &mut data {
                        sum += *v;
                        *v = sum;
                    }
                    json!({"action": action, "label": label, "count": sum, "data": data,
                        "labels": labels, "days": days})
                }
                Display::Series => json!({
                    "action": action,
                    "label": label,
                    "count": data.iter().sum::<f64>(),
                    "data": data,
                    "labels": labels,
                    "days": days,
                }),
            };
            if let (Some(v), Some(obj)) = (bd, o.as_object_mut()) {
                obj.insert("breakdown_value".into(), json!(v));
            }
            out.push(o);
        }
        per_series.push(out);
    }
    if !spec.formulas.is_empty() {
        return Value::Array(super::formula::rows(
            &spec.formulas,
            &per_series,
            spec.display == Display::TotalValue,
        ));
    }
    Value::Array(per_series.into_iter().flatten().collect())
}
