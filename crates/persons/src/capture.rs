//! Events in PostHog's capture shape, parsed and validated.
//!
//! One event is an object with `event`, `distinct_id` (a string or a
//! number; `properties.distinct_id` when absent at the top), `properties`
//! (an object), `timestamp` (ISO-8601; now when absent), `uuid`, and
//! top-level `$set` / `$set_once`, which are folded into
//! `properties.$set` / `properties.$set_once` (the top-level value wins on
//! a shared key). A line or request body may also be a batch object
//! `{"batch": [event, ...]}` or an array of events. Other top-level fields
//! that SDKs send (`api_key`, `token`, `type`, `library`, `sent_at`,
//! `offset`) are accepted and ignored, except `offset` (milliseconds
//! before now) which dates an event that has no `timestamp`.

use serde_json::{Map, Value};

use crate::error::{PersonsError, Result};
use crate::ids::validate_distinct_id;
use crate::props::PropertyOps;

/// Events whose property operations never change their person, as in
/// PostHog.
pub const NO_PERSON_UPDATE_EVENTS: [&str; 2] = ["$exception", "$$heatmap"];

/// Longest accepted event name, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 200;

/// A validated capture event.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureEvent {
    /// Event name.
    pub event: String,
    /// Distinct id of the actor.
    pub distinct_id: String,
    /// Properties, with top-level `$set` / `$set_once` folded in.
    pub properties: Map<String, Value>,
    /// Event time (µs since the epoch, UTC); `None` = when captured.
    pub timestamp_us: Option<i64>,
    /// Event UUID; generated when `None`.
    pub uuid: Option<String>,
    /// The person property operations of `properties`.
    pub ops: PropertyOps,
    /// The other distinct id of a merge event (`$anon_distinct_id` or
    /// `alias`), as text (integers exactly as written).
    pub merge_other: Option<String>,
}

impl CaptureEvent {
    /// The event as a project's settings let it be stored: without `$ip`
    /// when IPs are anonymized, without the dropped property names (in
    /// `properties`, `$set` and `$set_once` alike). `None` when nothing
    /// changes.
    pub fn scrubbed(&self, s: &crate::meta::ProjectSettings) -> Option<CaptureEvent> {
        let drop =
            |k: &str| (s.anonymize_ips && k == "$ip") || s.drop_properties.iter().any(|d| d == k);
        let hit = |m: &Map<String, Value>| m.keys().any(|k| drop(k));
        let nested = |m: &Map<String, Value>, key: &str| {
            m.get(key).and_then(Value::as_object).is_some_and(hit)
        };
        let p = &self.properties;
        if !(hit(p) || nested(p, "$set") || nested(p, "$set_once")) {
            return None;
        }
        let mut ev = self.clone();
        ev.properties.retain(|k, _| !drop(k));
        for key in ["$set", "$set_once"] {
            if let Some(Value::Object(m)) = ev.properties.get_mut(key) {
                m.retain(|k, _| !drop(k));
            }
        }
        // The operations follow the properties left.
        ev.ops = PropertyOps::from_properties(&ev.properties).0;
        Some(ev)
    }
}

/// What an event asks of identity resolution besides its own person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRequest {
    /// The distinct id whose person merges into the event's.
    pub other: String,
    /// `$merge_dangerously`: merge even an identified person.
    pub dangerous: bool,
}

impl CaptureEvent {
    /// A minimal event (used by the person update operations and tests).
    pub fn new(
        event: impl Into<String>,
        distinct_id: impl Into<String>,
        properties: Map<String, Value>,
    ) -> Result<CaptureEvent> {
        let mut obj = Map::new();
        obj.insert("event".into(), Value::String(event.into()));
        obj.insert("distinct_id".into(), Value::String(distinct_id.into()));
        obj.insert("properties".into(), Value::Object(properties));
        parse_event(Value::Object(obj), 0).map_err(PersonsError::InvalidInput)
    }

    /// False when `properties.$process_person_profile` is `false`: the
    /// event is personless (no person is created or changed for it).
    pub fn processes_person(&self) -> bool {
        self.properties.get("$process_person_profile") != Some(&Value::Bool(false))
    }

    /// Whether its `$set`, `$set_once` and `$unset` change its person:
    /// not for `$exception` and `$$heatmap`, which never update persons in
    /// PostHog (their person is still found or created).
    pub fn updates_person_properties(&self) -> bool {
        !NO_PERSON_UPDATE_EVENTS.contains(&self.event.as_str())
    }

    /// A personless event that only makes sense with persons: `$identify`,
    /// `$create_alias`, `$merge_dangerously` or `$groupidentify` with
    /// `$process_person_profile: false`. PostHog drops these (with the
    /// ingestion warning `invalid_event_when_process_person_profile_is_false`),
    /// and so does capture here.
    pub fn is_dropped_when_personless(&self) -> bool {
        const PERSON_EVENTS: [&str; 4] = [
            "$identify",
            "$create_alias",
            "$merge_dangerously",
            "$groupidentify",
        ];
        // The name first: most events are none of these, and it needs no
        // property lookup.
        PERSON_EVENTS.contains(&self.event.as_str()) && !self.processes_person()
    }

    /// The merge this event asks for: `$identify` with
    /// `properties.$anon_distinct_id`, `$create_alias` or
    /// `$merge_dangerously` with `properties.alias`.
    pub fn merge_request(&self) -> Option<MergeRequest> {
        self.merge_with().map(|(other, dangerous)| MergeRequest {
            other: other.to_string(),
            dangerous,
        })
    }

    /// [`CaptureEvent::merge_request`], borrowed: the other distinct id
    /// and whether the merge is `$merge_dangerously`.
    pub fn merge_with(&self) -> Option<(&str, bool)> {
        let dangerous = match self.event.as_str() {
            "$identify" | "$create_alias" => false,
            "$merge_dangerously" => true,
            _ => return None,
        };
        Some((self.merge_other.as_deref()?, dangerous))
    }

    /// `properties.$session_id`, when a non-empty string.
    pub fn session_id(&self) -> Option<&str> {
        self.properties
            .get("$session_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && !s.contains('\0'))
    }
}

/// Exact texts of the id fields of one event, read from its JSON text
/// (see [`parse_payload_text`]).
#[derive(Debug, Default, Clone)]
pub struct RawIds {
    distinct_id: Option<std::result::Result<Option<String>, String>>,
    props_distinct_id: Option<std::result::Result<Option<String>, String>>,
    anon: Option<std::result::Result<Option<String>, String>>,
    alias: Option<std::result::Result<Option<String>, String>>,
}

type Raw = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

impl RawIds {
    /// Read the id fields of one event object's JSON text.
    pub fn of_event(text: &str) -> std::result::Result<RawIds, String> {
        let top: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut ids = RawIds {
            distinct_id: top
                .get("distinct_id")
                .map(|r| elide_store::jsonl::id_text(r)),
            ..RawIds::default()
        };
        if let Some(p) = top.get("properties") {
            if let Ok(props) = serde_json::from_str::<Raw>(p.get()) {
                let get = |k: &str| props.get(k).map(|r| elide_store::jsonl::id_text(r));
                ids.props_distinct_id = get("distinct_id");
                ids.anon = get("$anon_distinct_id");
                ids.alias = get("alias");
            }
        }
        Ok(ids)
    }
}

/// PostHog's text for an event without a distinct id.
pub const NO_DISTINCT_ID: &str = "event submitted without a distinct_id";

/// PostHog's text for an event without a name (missing or empty).
pub const EMPTY_EVENT_NAME: &str = "event submitted with an empty event name";

/// Cut an id to [`crate::ids::MAX_DISTINCT_ID_CHARS`] characters.
fn truncate_id(id: String) -> String {
    match id.char_indices().nth(crate::ids::MAX_DISTINCT_ID_CHARS) {
        Some((at, _)) => id[..at].to_string(),
        None => id,
    }
}

/// Why a number cannot be an id without its literal text.
const INEXACT: &str = "\u{0}inexact";

/// The text of an id value: a string, or an integer held exactly by the
/// parsed number. A number that is not (a fraction, or an integer past 64
/// bits) takes its literal text from `raw` when the caller has it, and is
/// refused otherwise.
fn id_text(
    v: &Value,
    raw: Option<&Option<std::result::Result<Option<String>, String>>>,
) -> std::result::Result<Option<String>, String> {
    match v {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Value::Number(n) => match raw {
            Some(Some(Ok(Some(text)))) => Ok(Some(text.clone())),
            Some(Some(Err(e))) => Err(e.clone()),
            Some(_) => Err(format!("must be a string or an integer, got {n}")),
            None => Err(INEXACT.into()),
        },
        Value::Null => Ok(None),
        _ => Err("must be a string or a number".into()),
    }
}

/// Parse one event object. `now_us` dates events that carry an `offset`
/// but no `timestamp`; `Err` says what is wrong.
pub fn parse_event(v: Value, now_us: i64) -> std::result::Result<CaptureEvent, String> {
    parse_event_with(v, &Clock::at(now_us), None)
}

/// The time an event is read at: now, and the request's `sent_at` (the
/// sender's clock when it sent), for PostHog's clock-skew correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Now (µs since the epoch, UTC).
    pub now_us: i64,
    /// The request's `sent_at` (µs), if it had one.
    pub sent_at_us: Option<i64>,
    /// Whether an event time more than [`MAX_FUTURE_US`] ahead of now is
    /// taken as now (PostHog's capture does; a file import keeps its times).
    pub clamp_future: bool,
}

impl Clock {
    /// Now, with no `sent_at`.
    pub fn at(now_us: i64) -> Clock {
        Clock {
            now_us,
            sent_at_us: None,
            clamp_future: false,
        }
    }
}

/// How far ahead of now an event time may be before it is taken as now.
pub const MAX_FUTURE_US: i64 = 23 * 3600 * 1_000_000;

fn parse_event_with(
    v: Value,
    clock: &Clock,
    raw: Option<&RawIds>,
) -> std::result::Result<CaptureEvent, String> {
    let now_us = clock.now_us;
    let Value::Object(mut obj) = v else {
        return Err("an event must be a JSON object".into());
    };
    let event = match obj.remove("event") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) | Some(Value::Null) | None => return Err(EMPTY_EVENT_NAME.into()),
        Some(_) => return Err("field `event` must be a string".into()),
    };
    if event.chars().count() > MAX_EVENT_NAME_CHARS {
        return Err(format!(
            "event name longer than {MAX_EVENT_NAME_CHARS} characters"
        ));
    }
    if event.contains('\0') {
        return Err("field `event` contains a NUL character".into());
    }
    let mut properties = match obj.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("field `properties` must be an object".into()),
    };
    fn named(field: &'static str) -> impl Fn(String) -> String {
        move |e: String| {
            if e == INEXACT {
                e
            } else {
                format!("field `{field}` {e}")
            }
        }
    }
    // As PostHog's capture reads it: a string, a number, or any other
    // value as its compact JSON text (SDKs send what they are given).
    let event_id = |v: &Value, raw| match v {
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => Ok(Some(v.to_string())),
        _ => id_text(v, raw),
    };
    let top = obj.remove("distinct_id").unwrap_or(Value::Null);
    let distinct_id =
        match event_id(&top, raw.map(|r| &r.distinct_id)).map_err(named("distinct_id"))? {
            Some(d) => d,
            None => match properties.get("distinct_id") {
                Some(v) => event_id(v, raw.map(|r| &r.props_distinct_id))
                    .map_err(named("properties.distinct_id"))?
                    .ok_or(NO_DISTINCT_ID)?,
                None => return Err(NO_DISTINCT_ID.into()),
            },
        };
    // PostHog replaces NUL characters and cuts distinct ids to 200
    // characters rather than refusing.
    let distinct_id = truncate_id(distinct_id.replace('\0', "\u{FFFD}"));
    validate_distinct_id(&distinct_id)?;
    let merge_key = match event.as_str() {
        "$identify" => Some(("$anon_distinct_id", raw.map(|r| &r.anon))),
        "$create_alias" | "$merge_dangerously" => Some(("alias", raw.map(|r| &r.alias))),
        _ => None,
    };
    let merge_other = match merge_key.and_then(|(k, r)| properties.get(k).map(|v| (k, v, r))) {
        // Anything but a string or an exact integer names no id: no merge.
        Some((k, v, r)) => match id_text(v, r) {
            // Unlike `distinct_id`, a merge id is not cut: an overlong one
            // names no id (a prefix could be someone else's). A NUL is
            // replaced as in `distinct_id`, so that it names the id as
            // stored.
            Ok(t) => t.map(|t| t.replace('\0', "\u{FFFD}")),
            Err(e) if e == INEXACT => return Err(e),
            Err(e) if matches!(v, Value::Number(_)) => return Err(format!("`properties.{k}` {e}")),
            Err(_) => None,
        },
        None => None,
    };
    for key in ["$set", "$set_once"] {
        match obj.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(top)) => {
                let slot = properties
                    .entry(key.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                match slot {
                    Value::Object(inner) => inner.extend(top),
                    // A malformed one inside (left out anyway): the
                    // top-level value wins whole.
                    other => *other = Value::Object(top),
                }
            }
            Some(_) => return Err(format!("field `{key}` must be an object")),
        }
    }
    // PostHog's order: an `offset` (ms before now) wins; else the
    // `timestamp`, corrected by the sender's clock skew when the request
    // has `sent_at` (unless `$ignore_sent_at`); absent both, now (None).
    let offset = match obj.get("offset") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let ms = n.as_i64().ok_or("field `offset` must be an integer (ms)")?;
            let back = ms.checked_mul(1000).and_then(|us| now_us.checked_sub(us));
            Some(back.ok_or("field `offset` is out of range")?)
        }
        Some(_) => return Err("field `offset` must be an integer (ms)".into()),
    };
    let stamped = match obj.remove("timestamp") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            elide_store::normalize::parse_timestamp(&s)
                .map_err(|e| format!("field `timestamp`: {e}"))?,
        ),
        Some(_) => return Err("field `timestamp` must be an ISO-8601 string".into()),
    };
    let ignore_sent_at = properties.get("$ignore_sent_at") == Some(&Value::Bool(true));
    let timestamp_us = match (offset, stamped, clock.sent_at_us) {
        (Some(t), _, _) => Some(t),
        (None, Some(ts), Some(sent)) if !ignore_sent_at => Some(
            ts.checked_sub(sent)
                .and_then(|skew| now_us.checked_add(skew))
                .ok_or("field `timestamp` is out of range against `sent_at`")?,
        ),
        (None, ts, _) => ts,
    }
    .map(|ts| {
        if clock.clamp_future && ts > now_us.saturating_add(MAX_FUTURE_US) {
            now_us
        } else {
            ts
        }
    });
    if let Some(ts) = timestamp_us {
        elide_store::normalize::check_timestamp_us(ts)
            .map_err(|e| format!("field `timestamp` (or `offset`): {e}"))?;
    }
    let uuid = match obj.remove("uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let u = uuid::Uuid::parse_str(&s).map_err(|e| format!("field `uuid`: {e}"))?;
            Some(u.hyphenated().to_string())
        }
        Some(_) => return Err("field `uuid` must be a string".into()),
    };
    let (ops, left_out) = PropertyOps::from_properties(&properties);
    if !left_out.is_empty() {
        // Kept, as PostHog keeps it; its person is not changed by them.
        tracing::debug!(event = %event, problems = ?left_out, "malformed person property operations left out");
    }
    Ok(CaptureEvent {
        event,
        distinct_id,
        properties,
        timestamp_us,
        uuid,
        ops,
        merge_other,
    })
}

/// The events of a payload: one event, a batch object `{"batch": [...]}`
/// or an array of events.
fn items(v: Value) -> std::result::Result<Vec<Value>, String> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Object(mut obj) if obj.contains_key("batch") => match obj.remove("batch") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err("field `batch` must be an array of events".into()),
        },
        v @ Value::Object(_) => Ok(vec![v]),
        _ => Err("expected an event object, a batch object or an array".into()),
    }
}

/// The same events as [`items`], as their JSON texts.
fn raw_items(text: &str) -> std::result::Result<Vec<Box<serde_json::value::RawValue>>, String> {
    let t = text.trim_start();
    if t.starts_with('[') {
        return serde_json::from_str(t).map_err(|e| e.to_string());
    }
    let top: Raw = serde_json::from_str(t).map_err(|e| e.to_string())?;
    match top.get("batch") {
        Some(b) => serde_json::from_str(b.get()).map_err(|e| e.to_string()),
        None => Ok(vec![serde_json::value::RawValue::from_string(
            t.to_string(),
        )
        .map_err(|e| e.to_string())?]),
    }
}

fn parse_items(
    items: Vec<Value>,
    clock: &Clock,
    raws: Option<&[RawIds]>,
) -> std::result::Result<Vec<CaptureEvent>, (usize, String)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_event_with(v, clock, raws.and_then(|r| r.get(i))).map_err(|e| (i, e)))
        .collect()
}

fn readable((i, e): (usize, String)) -> String {
    if e == INEXACT {
        format!("event {i}: an id is a number that is not an exact integer (a fraction, or past 64 bits); send it as a string")
    } else {
        format!("event {i}: {e}")
    }
}

/// Parse a capture payload: one event, a batch object `{"batch": [...]}`
/// or an array of events. Ids that are numbers must be exact integers
/// here (the literal text of a larger one is gone once parsed into a
/// [`Value`]); [`parse_payload_text`] keeps any integer's text.
pub fn parse_payload(v: Value, now_us: i64) -> std::result::Result<Vec<CaptureEvent>, String> {
    parse_items(items(v)?, &Clock::at(now_us), None).map_err(readable)
}

/// Parse a capture payload from its JSON text (a leading byte-order mark
/// is ignored). An id given as an integer keeps its literal text, however
/// long (`12345678901234567890123` and `...124` stay two ids); a number
/// with a fraction or an exponent is refused.
pub fn parse_payload_text(
    text: &str,
    now_us: i64,
) -> std::result::Result<Vec<CaptureEvent>, String> {
    parse_events_text(text, &Clock::at(now_us))
}

fn parse_events_text(text: &str, clock: &Clock) -> std::result::Result<Vec<CaptureEvent>, String> {
    let text = elide_store::jsonl::strip_bom(text);
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    match parse_items(items(v)?, clock, None) {
        Err((_, e)) if e == INEXACT => {
            // Some id is a number no f64 holds exactly: read the literals.
            let raws = raw_items(text)?
                .iter()
                .map(|r| RawIds::of_event(r.get()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
            parse_items(items(v)?, clock, Some(&raws)).map_err(readable)
        }
        r => r.map_err(readable),
    }
}

/// A capture request as PostHog's capture endpoints read it: the events,
/// and the project token (from the request, the events, or their
/// properties).
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    /// The token all the request's tokens agree on (`None`: none given).
    pub token: Option<String>,
    /// The events, in request order.
    pub events: Vec<CaptureEvent>,
}

/// Why a capture request is refused, with PostHog's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureRefusal {
    /// 400: unreadable, or an event is invalid.
    Invalid(String),
    /// 401: no token anywhere.
    NoToken,
    /// 401: tokens that differ.
    InconsistentTokens,
}

impl std::fmt::Display for CaptureRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureRefusal::Invalid(s) => f.write_str(s),
            CaptureRefusal::NoToken => f.write_str("event submitted without an api_key"),
            CaptureRefusal::InconsistentTokens => {
                f.write_str("batch submitted with inconsistent api_key values")
            }
        }
    }
}

fn token_of(v: &Value) -> Option<&str> {
    let o = v.as_object()?;
    ["api_key", "token", "$token"]
        .iter()
        .find_map(|k| o.get(*k).and_then(Value::as_str))
        .or_else(|| o.get("properties")?.get("token")?.as_str())
        .filter(|t| !t.trim().is_empty())
}

/// `text` with every `\uXXXX` escape of a UTF-16 surrogate that is not
/// half of a pair replaced by `\uFFFD`; `None` when it has none. Escapes
/// are read pairwise from the left, so an escaped backslash followed by
/// `uD800` is text, not an escape.
pub fn repair_lone_surrogates(text: &str) -> Option<String> {
    fn unit(b: &[u8], i: usize) -> Option<u16> {
        let hex = b.get(i..i + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(u) = unit(b, i) else {
            i += 2;
            continue;
        };
        let pair = (0xD800..=0xDBFF).contains(&u)
            && unit(b, i + 6).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l));
        if pair {
            i += 12;
        } else if (0xD800..=0xDFFF).contains(&u) {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..i]);
            o.push_str("\\uFFFD");
            i += 6;
            copied = i;
        } else {
            i += 6;
        }
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

/// Read a capture request body (already decompressed and decoded): an
/// event, an array of events, or `{batch, api_key|token, sent_at, ...}`.
/// The token is the request's `api_key`/`token`, else the events' own
/// (`token`, `$token`, `api_key`, then `properties.token`), which must all
/// agree. `sent_at` corrects each event's clock skew.
pub fn parse_capture_request(
    text: &str,
    now_us: i64,
) -> std::result::Result<CaptureRequest, CaptureRefusal> {
    let text = elide_store::jsonl::strip_bom(text);
    let refused =
        |e: serde_json::Error| CaptureRefusal::Invalid(format!("failed to parse request: {e}"));
    let repaired: String;
    let (text, v): (&str, Value) = match serde_json::from_str(text) {
        Ok(v) => (text, v),
        // posthog-python's `json.dumps` writes a string it could not
        // decode (a file name) with lone UTF-16 surrogates, which
        // serde_json refuses: they become U+FFFD, and the batch is kept.
        Err(e) => {
            repaired = repair_lone_surrogates(text).ok_or_else(|| refused(e))?;
            let v = serde_json::from_str(&repaired).map_err(refused)?;
            (repaired.as_str(), v)
        }
    };
    let envelope = v.as_object().filter(|o| o.contains_key("batch"));
    let sent_at_us = envelope
        .and_then(|o| o.get("sent_at"))
        .and_then(Value::as_str)
        .and_then(|s| elide_store::normalize::parse_timestamp(s).ok());
    let mut token: Option<String> = envelope
        .and_then(|o| {
            ["api_key", "token"]
                .iter()
                .find_map(|k| o.get(*k)?.as_str())
        })
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_string());
    let list: Vec<&Value> = match (&v, envelope) {
        (_, Some(o)) => match o.get("batch") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => {
                return Err(CaptureRefusal::Invalid(
                    "field `batch` must be an array of events".into(),
                ))
            }
        },
        (Value::Array(items), None) => items.iter().collect(),
        (Value::Object(_), None) => vec![&v],
        _ => {
            return Err(CaptureRefusal::Invalid(
                "failed to parse request: expected an event, an array of events or a batch".into(),
            ))
        }
    };
    if list.is_empty() {
        return Err(CaptureRefusal::Invalid("request holds no event".into()));
    }
    if token.is_none() {
        for t in list.iter().filter_map(|e| token_of(e)) {
            match &token {
                None => token = Some(t.trim().to_string()),
                Some(prev) if prev != t.trim() => return Err(CaptureRefusal::InconsistentTokens),
                Some(_) => {}
            }
        }
    }
    let clock = Clock {
        now_us,
        sent_at_us,
        clamp_future: true,
    };
    let events = parse_events_text(text, &clock).map_err(CaptureRefusal::Invalid)?;
    Ok(CaptureRequest { token, events })
}

/// Parse one line of a capture file (1-based `line` for errors).
pub fn parse_line(line: usize, text: &str, now_us: i64) -> Result<Vec<CaptureEvent>> {
    parse_payload_text(text, now_us).map_err(|reason| PersonsError::InvalidLine { line, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Lone surrogates (what posthog-python writes for a string it could
    /// not decode) become U+FFFD; pairs, escaped backslashes and other
    /// escapes stay as they were.
    #[test]
    fn lone_surrogates_are_replaced_and_the_batch_kept() {
        let cases = [
            (r#""\udcff""#, Some(r#""\uFFFD""#)),
            (r#""a\ud83d""#, Some(r#""a\uFFFD""#)),
            (
                r#""\ud83d\ude00 \udc00\ud800x""#,
                Some(r#""\ud83d\ude00 \uFFFD\uFFFDx""#),
            ),
            (r#""\\ud800""#, None),
            (r#""\\\ud800""#, Some(r#""\\\uFFFD""#)),
            (r#""\ud83d\ude00 \n \u00e9""#, None),
        ];
        for (input, want) in cases {
            assert_eq!(repair_lone_surrogates(input).as_deref(), want, "{input}");
            if let Some(w) = want {
                serde_json::from_str::<Value>(w).expect("valid JSON");
            }
        }
        let body = r#"{"api_key": "phc_x", "batch": [{"event": "ok", "distinct_id": "s-1"},
            {"event": "x", "distinct_id": "s-2", "properties": {"file": "\udcff.txt"}}]}"#;
        let r = parse_capture_request(body, 0).expect("kept");
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[1].properties["file"], json!("\u{fffd}.txt"));
    }

    #[test]
    fn top_level_set_folds_into_properties_and_wins() {
        let e = parse_event(
            json!({"event": "e", "distinct_id": 7, "properties": {"$set": {"a": 1, "b": 1}},
                   "$set": {"b": 2}, "$set_once": {"c": 3}}),
            0,
        )
        .unwrap();
        assert_eq!(e.distinct_id, "7");
        assert_eq!(e.properties["$set"], json!({"a": 1, "b": 2}));
        assert_eq!(e.properties["$set_once"], json!({"c": 3}));
        assert_eq!(e.ops.set.len(), 2);
    }

    #[test]
    fn distinct_id_from_properties_and_offset() {
        let e = parse_event(
            json!({"event": "e", "properties": {"distinct_id": "p"}, "offset": 1000}),
            5_000_000,
        )
        .unwrap();
        assert_eq!(e.distinct_id, "p");
        assert_eq!(e.timestamp_us, Some(4_000_000));
    }

    #[test]
    fn bad_events_are_named() {
        for (v, needle) in [
            (json!([1]), "event 0"),
            (json!({"distinct_id": "a"}), EMPTY_EVENT_NAME),
            (json!({"event": "", "distinct_id": "a"}), EMPTY_EVENT_NAME),
            (json!({"event": "e"}), NO_DISTINCT_ID),
            (json!({"event": "e", "distinct_id": " "}), "blank"),
            (
                json!({"event": "e", "distinct_id": "a", "properties": []}),
                "`properties`",
            ),
            (
                json!({"event": "e", "distinct_id": "a", "timestamp": "yesterday"}),
                "timestamp",
            ),
            (
                json!({"event": "e", "distinct_id": "a", "timestamp": 5}),
                "ISO-8601",
            ),
            (
                json!({"event": "e", "distinct_id": "a", "uuid": "nope"}),
                "uuid",
            ),
            (json!({"event": "e", "distinct_id": "a", "$set": 1}), "$set"),
            (
                json!({"event": "e", "distinct_id": "a", "offset": i64::MIN / 100}),
                "out of range",
            ),
            (json!({"batch": {}}), "batch"),
            (json!("x"), "expected"),
        ] {
            let e = parse_payload(v.clone(), 0).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
        let e = parse_line(3, "{not json", 0).unwrap_err();
        assert!(e.to_string().starts_with("line 3: invalid JSON"), "{e}");
        // Other values are their JSON text, NULs replaced, as PostHog's
        // capture reads them.
        for (id, want) in [
            (json!(true), "true"),
            (json!({"b": [1, "x"]}), r#"{"b":[1,"x"]}"#),
            (json!("a\0b"), "a\u{FFFD}b"),
        ] {
            let evs = parse_payload(json!({"event": "e", "distinct_id": id}), 0).unwrap();
            assert_eq!(evs[0].distinct_id, want);
        }
        // A merge id names the id as stored: its NUL replaced too.
        let evs = parse_payload(
            json!({"event": "$identify", "distinct_id": "u", "properties": {"$anon_distinct_id": "x\0y"}}),
            0,
        )
        .unwrap();
        assert_eq!(evs[0].merge_other.as_deref(), Some("x\u{FFFD}y"));
        // A malformed operator inside `properties` is kept there and left
        // out of the person's operations, as PostHog's ingestion does: the
        // event (and the request) is not refused.
        let evs = parse_payload(
            json!({"event": "e", "distinct_id": "a", "properties": {"$unset": 1, "$set": {"k": 2}}}),
            0,
        )
        .unwrap();
        assert_eq!(evs[0].properties["$unset"], json!(1));
        assert!(evs[0].ops.unset.is_empty());
        assert_eq!(evs[0].ops.set["k"], json!(2));
    }

    #[test]
    fn merge_requests_and_personless() {
        let ev = |v: Value| parse_event(v, 0).unwrap();
        let id = ev(
            json!({"event": "$identify", "distinct_id": "u", "properties": {"$anon_distinct_id": "a"}}),
        );
        assert_eq!(
            id.merge_request(),
            Some(MergeRequest {
                other: "a".into(),
                dangerous: false
            })
        );
        let al =
            ev(json!({"event": "$create_alias", "distinct_id": "u", "properties": {"alias": "b"}}));
        assert_eq!(
            al.merge_request(),
            Some(MergeRequest {
                other: "b".into(),
                dangerous: false
            })
        );
        let md = ev(
            json!({"event": "$merge_dangerously", "distinct_id": "u", "properties": {"alias": "c"}}),
        );
        assert_eq!(
            md.merge_request(),
            Some(MergeRequest {
                other: "c".into(),
                dangerous: true
            })
        );
        assert_eq!(
            ev(json!({"event": "$identify", "distinct_id": "u"})).merge_request(),
            None
        );
        let pl = ev(
            json!({"event": "e", "distinct_id": "u", "properties": {"$process_person_profile": false}}),
        );
        assert!(!pl.processes_person());
        assert!(ev(json!({"event": "e", "distinct_id": "u", "properties": {"$process_person_profile": "no"}})).processes_person());
    }
}
