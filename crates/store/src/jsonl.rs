//! Row-oriented input: [`EventRow`] and JSON lines.
//!
//! A JSON-lines file holds one event object per line with the events
//! schema's fields: `uuid`, `event`, `distinct_id`, `person_id`,
//! `project_id`, `timestamp` (ISO-8601 string or integer microseconds),
//! `properties` (object or JSON string), `session_id`. Unknown fields are
//! an error naming the line, so that a typo never silently drops data.

use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::normalize::{parse_timestamp, validate_json_object};
use crate::schema::timestamp_type;

/// One event, row-oriented.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    /// Event UUID; generated when `None`.
    pub uuid: Option<String>,
    /// Event name.
    pub event: String,
    /// Distinct id of the actor.
    pub distinct_id: String,
    /// Person UUID.
    pub person_id: Option<String>,
    /// Project.
    pub project_id: i64,
    /// Event time, µs since the epoch (UTC).
    pub timestamp_us: i64,
    /// JSON object as a string.
    pub properties: Option<String>,
    /// Session.
    pub session_id: Option<String>,
}

/// Build an events batch (input schema) from rows.
pub fn rows_to_batch(rows: &[EventRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut uuid = StringBuilder::with_capacity(n, n * 36);
    let mut event = StringBuilder::with_capacity(n, n * 12);
    let mut did = StringBuilder::with_capacity(n, n * 16);
    let mut person = StringBuilder::with_capacity(n, n * 36);
    let mut project = Int64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut props = StringBuilder::with_capacity(n, n * 64);
    let mut session = StringBuilder::with_capacity(n, n * 16);
    for r in rows {
        uuid.append_option(r.uuid.as_deref());
        event.append_value(&r.event);
        did.append_value(&r.distinct_id);
        person.append_option(r.person_id.as_deref());
        project.append_value(r.project_id);
        ts.append_value(r.timestamp_us);
        props.append_option(r.properties.as_deref());
        session.append_option(r.session_id.as_deref());
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("uuid", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, false),
        Field::new("distinct_id", DataType::Utf8, false),
        Field::new("person_id", DataType::Utf8, true),
        Field::new("project_id", DataType::Int64, false),
        Field::new("timestamp", timestamp_type(), false),
        Field::new("properties", DataType::Utf8, true),
        Field::new("session_id", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(uuid.finish()),
        Arc::new(event.finish()),
        Arc::new(did.finish()),
        Arc::new(person.finish()),
        Arc::new(project.finish()),
        Arc::new(ts.finish()),
        Arc::new(props.finish()),
        Arc::new(session.finish()),
    ];
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// The text of an id given as a raw JSON value: a string, or an integer
/// literal kept exactly as written (never through a float, which would
/// make `12345678901234567890123` and `...124` one id). `Ok(None)` for
/// `null`; a fraction, an exponent or any other type is refused.
pub fn id_text(raw: &RawValue) -> std::result::Result<Option<String>, String> {
    let t = raw.get().trim();
    match t.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(t)
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(b'n') if t == "null" => Ok(None),
        Some(b'-' | b'0'..=b'9') => {
            let digits = t.strip_prefix('-').unwrap_or(t);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Some(t.to_string()))
            } else {
                Err(format!(
                    "must be a string or an integer, got the number {t} (fractions and exponents are refused)"
                ))
            }
        }
        _ => Err("must be a string or an integer".into()),
    }
}

/// Strip a UTF-8 byte-order mark from the start of a text.
pub fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{feff}').unwrap_or(s)
}

/// Parse one JSON line (1-based `line` for errors) into a row.
pub fn parse_event_line(line: usize, text: &str) -> Result<EventRow> {
    let err = |reason: String| StoreError::InvalidLine { line, reason };
    let fields: Vec<(String, Box<RawValue>)> =
        match serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(text) {
            Ok(m) => m.into_iter().collect(),
            Err(e) if text.trim_start().starts_with('{') => {
                return Err(err(format!("invalid JSON: {e}")))
            }
            Err(e) => {
                return Err(err(
                    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                        Ok(_) => "expected a JSON object".into(),
                        Err(_) => format!("invalid JSON: {e}"),
                    },
                ))
            }
        };
    let mut obj = Vec::with_capacity(fields.len());
    let mut distinct_id = None;
    for (k, raw) in fields {
        if k == "distinct_id" {
            distinct_id = Some(
                id_text(&raw)
                    .map_err(|r| err(format!("field `distinct_id` {r}")))?
                    .ok_or_else(|| err("field `distinct_id` is null".into()))?,
            );
            continue;
        }
        let v: Value =
            serde_json::from_str(raw.get()).map_err(|e| err(format!("field `{k}`: {e}")))?;
        obj.push((k, v));
    }
    let mut row = EventRow {
        uuid: None,
        event: String::new(),
        distinct_id: String::new(),
        person_id: None,
        project_id: 0,
        timestamp_us: 0,
        properties: None,
        session_id: None,
    };
    let (mut has_event, mut has_project, mut has_ts) = (false, false, false);
    let has_did = distinct_id.is_some();
    if let Some(d) = distinct_id {
        row.distinct_id = d;
    }
    let opt_str = |k: &str, v: &Value| -> Result<Option<String>> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(err(format!("field `{k}` must be a string"))),
        }
    };
    for (k, v) in &obj {
        match k.as_str() {
            "uuid" => row.uuid = opt_str(k, v)?,
            "event" => {
                row.event = opt_str(k, v)?.ok_or_else(|| err("field `event` is null".into()))?;
                has_event = true;
            }
            "person_id" => row.person_id = opt_str(k, v)?,
            "project_id" => {
                row.project_id = v
                    .as_i64()
                    .ok_or_else(|| err("field `project_id` must be an integer".into()))?;
                has_project = true;
            }
            "timestamp" => {
                row.timestamp_us = match v {
                    Value::String(s) => {
                        parse_timestamp(s).map_err(|r| err(format!("field `timestamp`: {r}")))?
                    }
                    Value::Number(n) => n.as_i64().ok_or_else(|| {
                        err(
                            "field `timestamp` must be an integer (µs) or an ISO-8601 string"
                                .into(),
                        )
                    })?,
                    _ => {
                        return Err(err(
                            "field `timestamp` must be an ISO-8601 string or integer µs".into(),
                        ))
                    }
                };
                has_ts = true;
            }
            "properties" => {
                row.properties = match v {
                    Value::Null => None,
                    Value::Object(_) => Some(v.to_string()),
                    Value::String(s) => {
                        validate_json_object(s)
                            .map_err(|r| err(format!("field `properties`: {r}")))?;
                        Some(s.clone())
                    }
                    _ => return Err(err("field `properties` must be a JSON object".into())),
                }
            }
            "session_id" => row.session_id = opt_str(k, v)?,
            other => return Err(err(format!("unknown field `{other}`"))),
        }
    }
    for (present, name) in [
        (has_event, "event"),
        (has_did, "distinct_id"),
        (has_project, "project_id"),
        (has_ts, "timestamp"),
    ] {
        if !present {
            return Err(err(format!("missing required field `{name}`")));
        }
    }
    Ok(row)
}

/// Read JSON lines, calling `sink` with batches of up to `batch_rows` rows.
/// Blank lines are skipped. Stops at the first invalid line.
pub fn read_json_lines(
    reader: impl BufRead,
    batch_rows: usize,
    sink: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<usize> {
    let mut rows = Vec::with_capacity(batch_rows.min(1 << 16));
    let mut total = 0;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| StoreError::InvalidLine {
            line: i + 1,
            reason: format!("unreadable: {e}"),
        })?;
        let line = if i == 0 { strip_bom(&line) } else { &line };
        if line.trim().is_empty() {
            continue;
        }
        rows.push(parse_event_line(i + 1, line)?);
        if rows.len() >= batch_rows.max(1) {
            total += rows.len();
            sink(rows_to_batch(&rows)?)?;
            rows.clear();
        }
    }
    if !rows.is_empty() {
        total += rows.len();
        sink(rows_to_batch(&rows)?)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_rejects_bad_ones() {
        let good = r#"{"event":"$pageview","distinct_id":"u1","project_id":1,"timestamp":"2026-11-01T00:00:00Z","properties":{"$browser":"Chrome"}}"#;
        let r = parse_event_line(1, good).unwrap();
        assert_eq!(r.distinct_id, "u1");
        assert!(r.properties.unwrap().contains("Chrome"));
        for (bad, needle) in [
            ("{", "invalid JSON"),
            ("[]", "object"),
            (
                r#"{"event":"x","distinct_id":"u","project_id":1}"#,
                "timestamp",
            ),
            (
                r#"{"event":"x","distinct_id":"u","project_id":"1","timestamp":"2026-11-01"}"#,
                "project_id",
            ),
            (
                r#"{"event":"x","distinct_id":"u","project_id":1,"timestamp":"nope"}"#,
                "timestamp",
            ),
            (
                r#"{"event":"x","distinct_id":"u","project_id":1,"timestamp":"2026-11-01","colour":1}"#,
                "colour",
            ),
            (
                r#"{"event":"x","distinct_id":"u","project_id":1,"timestamp":"2026-11-01","properties":[1]}"#,
                "properties",
            ),
        ] {
            match parse_event_line(7, bad) {
                Err(StoreError::InvalidLine { line: 7, reason }) => {
                    assert!(reason.contains(needle), "{reason}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
