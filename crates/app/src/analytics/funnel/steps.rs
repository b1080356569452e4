//! What a funnel answers: the insight's steps ([`steps`], one list per
//! breakdown group) and which actors a persons request wants
//! ([`StepSelection`]).

use serde_json::{json, Value};

use elide_query::funnel::posthog::Order;

use super::breakdown::groups;
use super::{invalid, Actor, FunnelSpec};
use crate::analytics::filter::Params;
use crate::error::Result;

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The steps of one funnel (one breakdown value), PostHog's shape.
fn format_steps(
    spec: &FunnelSpec,
    actors: &[&Actor],
    breakdown: Option<&[String]>,
    base_url: &str,
) -> Vec<Value> {
    let unordered = spec.order == Order::Unordered;
    // A breakdown value's lists hold only its persons.
    let only = breakdown.map_or(String::new(), |bd| {
        let v: Vec<Value> = bd.iter().map(|x| json!(x)).collect();
        let text = Value::Array(v).to_string();
        let enc: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
        format!("&funnel_step_breakdown={enc}")
    });
    spec.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let reached: Vec<&&Actor> = actors.iter().filter(|a| a.steps > i).collect();
            let (avg, med) = if i == 0 {
                (Value::Null, Value::Null)
            } else {
                let avgs: Vec<f64> = reached.iter().filter_map(|a| a.conversion_times.get(i - 1).copied()).collect();
                let mut meds: Vec<f64> = reached.iter().filter_map(|a| a.conversion_medians.get(i - 1).copied()).collect();
                let avg = (!avgs.is_empty()).then(|| avgs.iter().sum::<f64>() / avgs.len() as f64);
                (json!(avg), json!(median(&mut meds)))
            };
            let (name, action_id, custom) = if unordered {
                let n = i + 1;
                (format!("Completed {n} step{}", if n == 1 { "" } else { "s" }), Value::Null, Value::Null)
            } else {
                (s.name.clone(), json!(s.id), json!(s.custom_name))
            };
            let url = |step: i64| format!("{base_url}funnel_step={step}{only}");
            let mut o = json!({
                "action_id": action_id,
                "name": name,
                "custom_name": custom,
                "order": i,
                "people": [],
                "count": reached.len(),
                "type": "events",
                "average_conversion_time": avg,
                "median_conversion_time": med,
                "converted_people_url": url(i as i64 + 1),
                "dropped_people_url": if i == 0 { Value::Null } else { json!(url(-(i as i64 + 1))) },
            });
            if let (Some(bd), Some(obj)) = (breakdown, o.as_object_mut()) {
                let v: Vec<Value> = bd.iter().map(|x| json!(x)).collect();
                obj.insert("breakdown".into(), json!(v));
                obj.insert("breakdown_value".into(), json!(v));
            }
            o
        })
        .collect()
}

/// The funnel insight: the list of steps, or with a breakdown one list per
/// group ([`groups`]).
pub fn steps(spec: &FunnelSpec, actors: &[Actor], base_url: &str) -> Value {
    if spec.steps.is_empty() {
        return json!([]);
    }
    match &spec.breakdown {
        None => {
            let all: Vec<&Actor> = actors.iter().collect();
            Value::Array(format_steps(spec, &all, None, base_url))
        }
        Some(_) => Value::Array(
            groups(spec, actors)
                .into_iter()
                .map(|(k, members)| Value::Array(format_steps(spec, &members, Some(&k), base_url)))
                .collect(),
        ),
    }
}

/// Which persons a funnel-persons request wants: `funnel_custom_steps`
/// (the persons whose furthest step is one of them) overrides
/// `funnel_step` (`k > 0`: reached at least step `k`; `-k`: reached step
/// `k - 1` but not `k`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepSelection {
    /// Furthest steps wanted.
    pub steps: Vec<usize>,
    /// Only this breakdown value (`funnel_step_breakdown`), if given
    /// (`["Other"]`: the group of the values past the limit).
    pub breakdown: Option<Vec<String>>,
}

impl StepSelection {
    /// Parse `funnel_step`, `funnel_custom_steps` and
    /// `funnel_step_breakdown` for a funnel of `n` steps.
    pub fn parse(p: &Params, n: usize) -> Result<StepSelection> {
        let steps: Vec<usize> = if let Some(v) = p.json("funnel_custom_steps") {
            let Value::Array(items) = v else {
                return invalid("funnel_custom_steps must be a JSON list of step numbers");
            };
            let mut out = Vec::new();
            for i in items {
                match i
                    .as_i64()
                    .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                {
                    // A step past the funnel's last is nobody's furthest
                    // step: left out, so the list a person is looked up
                    // in has at most `n` entries whatever was sent.
                    Some(k) if k >= 1 => {
                        if k as u64 <= n as u64 {
                            out.push(k as usize);
                        }
                    }
                    _ => {
                        return invalid(format!(
                            "funnel_custom_steps: {i} is not a step number (1-based)"
                        ))
                    }
                }
            }
            out.sort_unstable();
            out.dedup();
            out
        } else {
            match p.int("funnel_step")? {
                None => return invalid("Missing both funnel_step and funnel_custom_steps"),
                Some(0) => return invalid("funnel_step is 1-based: 0 is not a step"),
                Some(-1) => return invalid("To request dropoff of initial step use -2"),
                Some(k) if k > 0 => ((k as usize)..=n.max(k as usize)).collect(),
                Some(k) => match k.checked_neg().and_then(|k| usize::try_from(k - 1).ok()) {
                    Some(step) => vec![step],
                    None => return invalid(format!("funnel_step {k} is not a step")),
                },
            }
        };
        let breakdown = match p.json("funnel_step_breakdown") {
            None => None,
            Some(Value::Array(a)) => Some(a.iter().map(json_text).collect()),
            Some(v) => Some(vec![json_text(&v)]),
        };
        Ok(StepSelection { steps, breakdown })
    }

    /// The actors wanted, once each (an actor of several values is listed
    /// once when no value is asked for).
    pub fn select<'a>(&self, spec: &FunnelSpec, actors: &'a [Actor]) -> Vec<&'a Actor> {
        // The list the insight shows for the value; a value folded into
        // `Other` still names its own actors.
        let in_group: Vec<&Actor> = match &self.breakdown {
            None => actors.iter().collect(),
            Some(want) => match groups(spec, actors).into_iter().find(|(k, _)| k == want) {
                Some((_, members)) => members,
                None => actors.iter().filter(|a| &a.breakdown == want).collect(),
            },
        };
        let mut seen = std::collections::HashSet::new();
        in_group
            .into_iter()
            .filter(|a| self.steps.contains(&a.steps))
            .filter(|a| seen.insert((&a.person, a.personless)))
            .collect()
    }
}

/// A requested breakdown value as text (`null`, once Elide's value of an
/// unset property, is `""` as in PostHog's funnels).
fn json_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}
