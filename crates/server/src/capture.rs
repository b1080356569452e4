//! PostHog's capture endpoints: `/batch`, `/e`, `/i/v0/e`, `/capture`,
//! `/track`, `/engage` and `/s` (recordings), with or without a trailing
//! slash, by GET, POST or OPTIONS.
//!
//! ```text
//!  body ─► gunzip (by magic bytes, whatever the headers say)
//!       ─► form `data=` / query `data=` ─► base64 (compression=base64, or a body that is not JSON)
//!       ─► parse (elide_persons::capture::parse_capture_request): events, one token, sent_at skew
//!       ─► token → project (401 if none, inconsistent or unknown)
//!       ─► `$ip` added from the peer unless the project anonymizes IPs
//!       ─► group commit: one metadata transaction and one log fsync for many requests
//!       ─► 200 {"status":"Ok"} once durable
//! ```
//!
//! **Group commit.** Requests hand their events to one committer thread.
//! It takes whatever is queued (up to [`MAX_GROUP_EVENTS`] events or
//! [`MAX_GROUP_BYTES`] of request bodies, waiting at most [`GROUP_WAIT`] for
//! more), captures each project's share in one
//! call of `Persons::capture` (one metadata transaction, one append, one
//! fsync), and answers every request only then. If a group fails on input
//! (a row the store refuses), each request is retried alone so that only
//! the bad one fails. `$snapshot` events (recordings) are appended to the
//! `recordings` table in the same round.
//!
//! Success is exactly 200 `{"status":"Ok"}`: the SDK treats every other
//! status as a failure (and retries 5xx and 429). Errors are PostHog's
//! texts in the JSON envelope: 400 for unreadable or invalid events, 401
//! for a missing, inconsistent or unknown token, 413 past the size limit.
//!
//! [`capture`] carries the OpenAPI operations of `/batch/` (GET and POST);
//! [`crate::openapi`] copies them to the other capture paths and adds
//! OPTIONS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use crossbeam_channel::{Receiver, Sender};
use elide_app::App;
use elide_persons::capture::{parse_capture_request, CaptureEvent, CaptureRefusal};
use elide_store::Table;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::extract::Q;
use crate::ops::StatusAnswer;
use crate::AppState;

/// The capture routes (each also with a trailing slash).
pub const CAPTURE_ROUTES: &[&str] = &[
    "/batch", "/e", "/i/v0/e", "/capture", "/track", "/engage", "/s",
];

/// Largest capture body (decompressed), PostHog's batch limit.
pub const MAX_CAPTURE_BYTES: usize = 20 << 20;
/// Most events one committer round takes.
pub const MAX_GROUP_EVENTS: usize = 20_000;
/// Most bytes of request bodies one committer round takes (at least one
/// request). A round's strings become Arrow columns, whose 32-bit offsets
/// hold at most 2 GiB: ~110 requests of 20 MiB arriving together once
/// overflowed them, and the panic stopped capture until a restart.
pub const MAX_GROUP_BYTES: usize = 256 << 20;
/// How long a round waits for more requests to share its commit.
pub const GROUP_WAIT: Duration = Duration::from_millis(2);

/// Query parameters of capture routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaptureQuery {
    /// `gzip-js`, `base64` (or `lz64`, refused).
    pub compression: Option<String>,
    /// The payload itself (GET, or a form body).
    pub data: Option<String>,
    /// `1`: answer 204 instead of 200 (`navigator.sendBeacon`).
    pub beacon: Option<String>,
}

/// One request's events, waiting for the committer.
struct Job {
    project: i64,
    events: Vec<CaptureEvent>,
    /// The request body's size (decompressed).
    bytes: usize,
    reply: tokio::sync::oneshot::Sender<ApiResult<()>>,
}

/// The committer: its queue and its thread.
pub struct Committer {
    tx: std::sync::Mutex<Option<Sender<Job>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Committer {
    /// Start the committer thread over `app`.
    pub fn start(app: App) -> std::io::Result<Committer> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let thread = std::thread::Builder::new()
            .name("elide-capture".into())
            .spawn(move || commit_loop(&app, &rx))?;
        Ok(Committer {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Commit what is queued, answer it, and stop; later captures get 503.
    pub fn stop(&self) {
        drop(self.tx.lock().ok().and_then(|mut t| t.take()));
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            if t.join().is_err() {
                tracing::error!("the capture committer thread panicked");
            }
        }
    }

    /// Capture `events` into `project`; returns once they are durable.
    async fn capture(
        &self,
        project: i64,
        events: Vec<CaptureEvent>,
        bytes: usize,
    ) -> ApiResult<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let tx = self
            .tx
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .ok_or_else(ApiError::unavailable)?;
        tx.send(Job {
            project,
            events,
            bytes,
            reply,
        })
        .map_err(|_| ApiError::unavailable())?;
        answer.await.map_err(|_| ApiError::unavailable())?
    }
}

fn commit_loop(app: &App, rx: &Receiver<Job>) {
    // A request that would have taken a round past MAX_GROUP_BYTES opens
    // the next one.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take().map_or_else(|| rx.recv().ok(), Some) {
            Some(j) => j,
            None => return,
        };
        let (jobs, next) = gather_round(first, rx);
        carried = next;
        commit_round(app, jobs);
    }
}

/// A round: `first` and what else is queued within [`GROUP_WAIT`], up to
/// [`MAX_GROUP_EVENTS`] events and [`MAX_GROUP_BYTES`]; and the job that
/// would have gone past the bytes, which opens the next round.
fn gather_round(first: Job, rx: &Receiver<Job>) -> (Vec<Job>, Option<Job>) {
    let mut n = first.events.len();
    let mut bytes = first.bytes;
    let mut jobs = vec![first];
    let deadline = Instant::now() + GROUP_WAIT;
    while n < MAX_GROUP_EVENTS {
        match rx.recv_deadline(deadline) {
            Ok(j) if bytes.saturating_add(j.bytes) > MAX_GROUP_BYTES => return (jobs, Some(j)),
            Ok(j) => {
                n += j.events.len();
                bytes += j.bytes;
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
    (jobs, None)
}

/// Capture a round's jobs, each project's share in one call, and answer
/// each job. A panic is answered as a 500 to the round's requests, and the
/// committer goes on with the next round.
fn commit_round(app: &App, jobs: Vec<Job>) {
    let mut by_project: BTreeMap<i64, Vec<Job>> = BTreeMap::new();
    for j in jobs {
        by_project.entry(j.project).or_default().push(j);
    }
    for (project, mut jobs) in by_project {
        // The events move (no copy); each job's share is a range of them.
        let counts: Vec<usize> = jobs.iter().map(|j| j.events.len()).collect();
        let events: Vec<CaptureEvent> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.events))
            .collect();
        let started = Instant::now();
        match capture_caught(app, project, &events) {
            Ok(()) => {
                metrics::histogram!("elide_capture_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("elide_capture_events_total").increment(events.len() as u64);
                for j in jobs {
                    let _ = j.reply.send(Ok(()));
                }
            }
            Err(e) if jobs.len() > 1 && e.status.is_client_error() => {
                // One request's bad row must not fail the others.
                let mut at = 0;
                for (j, n) in jobs.into_iter().zip(counts) {
                    let mine = &events[at..at + n];
                    at += n;
                    let r = capture_caught(app, project, mine);
                    if r.is_ok() {
                        metrics::counter!("elide_capture_events_total").increment(n as u64);
                    }
                    let _ = j.reply.send(r);
                }
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// [`capture_events`], a panic as an error (500) rather than the end of
/// the committer thread.
fn capture_caught(app: &App, project: i64, events: &[CaptureEvent]) -> ApiResult<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        capture_events(app, project, events)
    }))
    .unwrap_or_else(|_| {
        Err(ApiError::internal(&format!(
            "capturing {} events of project {project} panicked",
            events.len()
        )))
    })
}

/// Capture one project's events: recordings to their table, the rest
/// through identity resolution. A project dropped since its token was
/// read is answered as its token would be now (401).
fn capture_events(app: &App, project: i64, events: &[CaptureEvent]) -> ApiResult<()> {
    let gone = |e: elide_persons::PersonsError| match e {
        elide_persons::PersonsError::NotFound(_) => no_such_project(),
        other => ApiError::from(other),
    };
    let (snapshots, others): (Vec<&CaptureEvent>, Vec<&CaptureEvent>) =
        events.iter().partition(|e| e.event == "$snapshot");
    if snapshots.is_empty() {
        let out = app.persons().capture(project, events).map_err(gone)?;
        count_dropped(&out);
        return Ok(());
    }
    let batch = crate::recordings::rows(project, &snapshots)?;
    // The events and the recordings under one hold of the pipeline's
    // lock: a reset or split between them would put the request's rows
    // of an id on both sides of its cut-off.
    let owned: Vec<CaptureEvent> = others.into_iter().cloned().collect();
    let out = app
        .persons()
        .capture_and_append(project, &owned, Table::Recordings, &batch)
        .map_err(gone)?;
    count_dropped(&out);
    Ok(())
}

/// 401 `invalid_api_key` with `detail`: capture's token problems.
fn invalid_api_key(detail: impl Into<String>) -> ApiError {
    let mut e = ApiError::unauthenticated();
    e.code = "invalid_api_key".into();
    e.detail = detail.into();
    e
}

/// 401 `invalid_api_key`: no project has the token (unknown, or dropped).
fn no_such_project() -> ApiError {
    invalid_api_key("API key is not valid: no project has this token")
}

/// Events a committed capture dropped as PostHog drops them (a personless
/// `$identify`, `$create_alias`, `$merge_dangerously` or `$groupidentify`).
fn count_dropped(out: &elide_persons::CaptureOutcome) {
    if out.stats.dropped_personless > 0 {
        metrics::counter!("elide_capture_dropped_total", "reason" => "invalid_event_when_process_person_profile_is_false")
            .increment(out.stats.dropped_personless);
    }
}

/// Turn the raw body into JSON text: gunzip by magic bytes, the `data`
/// field of a form or query, base64 when asked for or when the payload is
/// not JSON.
pub fn decode_body(headers: &HeaderMap, query: &CaptureQuery, body: &[u8]) -> ApiResult<String> {
    let form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut compression = query.compression.clone();
    let mut payload: Vec<u8> = body.to_vec();
    if form && !is_gzip(body) {
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((_, c)) = fields.iter().find(|(k, _)| k == "compression") {
            compression = Some(c.clone());
        }
        match fields.into_iter().find(|(k, _)| k == "data") {
            Some((_, d)) => payload = d.into_bytes(),
            None => {
                return Err(ApiError::invalid(
                    "failed to parse request: a form body needs a `data` field",
                ))
            }
        }
    } else if payload.is_empty() {
        if let Some(d) = &query.data {
            payload = d.clone().into_bytes();
        }
    }
    if payload.is_empty() {
        return Err(ApiError::invalid("request holds no event"));
    }
    if is_gzip(&payload) {
        payload = gunzip(&payload)?;
    } else {
        match compression.as_deref() {
            Some("gzip-js") | Some("gzip") => payload = gunzip(&payload)?,
            Some("base64") => {
                payload = unbase64(&payload)?;
                // Magic bytes decide, here too.
                if is_gzip(&payload) {
                    payload = gunzip(&payload)?;
                }
            }
            Some("lz64") | Some("lz-string") => return Err(ApiError::invalid(
                "failed to parse request: lz64 compression is not supported; use gzip-js or base64",
            )),
            _ => {
                // JSON after blanks, or after a byte-order mark.
                let text = payload.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&payload);
                let first = text.iter().find(|b| !b.is_ascii_whitespace()).copied();
                // JSON that is no object nor array (`null`, `5`) is read
                // as JSON, so that its error says what it is.
                let json = matches!(first, Some(b'{') | Some(b'['))
                    || serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok();
                if !json {
                    // A whole-body base64 payload.
                    payload = unbase64(&payload)?;
                    if is_gzip(&payload) {
                        payload = gunzip(&payload)?;
                    }
                }
            }
        }
    }
    String::from_utf8(payload)
        .map_err(|_| ApiError::invalid("failed to parse request: the body is not UTF-8"))
}

fn is_gzip(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 0x08
}

fn gunzip(b: &[u8]) -> ApiResult<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .take(MAX_CAPTURE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::invalid(format!("failed to parse request: gzip: {e}")))?;
    if out.len() > MAX_CAPTURE_BYTES {
        return Err(ApiError::too_large(format!(
            "request is larger than {} MiB once decompressed",
            MAX_CAPTURE_BYTES >> 20
        )));
    }
    Ok(out)
}

fn unbase64(b: &[u8]) -> ApiResult<Vec<u8>> {
    let text: Vec<u8> = b
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    for e in engines {
        if let Ok(d) = e.decode(&text) {
            return Ok(d);
        }
    }
    for e in [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        if let Ok(d) = e.decode(&text) {
            return Ok(d);
        }
    }
    Err(ApiError::invalid(
        "failed to parse request: the payload is neither JSON nor base64",
    ))
}

fn refusal(e: CaptureRefusal) -> ApiError {
    match e {
        CaptureRefusal::Invalid(d) => {
            use elide_persons::capture::{EMPTY_EVENT_NAME, NO_DISTINCT_ID};
            // PostHog's own texts stand alone (without "event N: ").
            let d = if let Some(t) = [NO_DISTINCT_ID, EMPTY_EVENT_NAME]
                .into_iter()
                .find(|t| d.ends_with(&format!(": {t}")) || d == *t)
            {
                t.to_string()
            } else if d.starts_with("failed to parse") || d == "request holds no event" {
                d
            } else {
                format!("invalid event: {d}")
            };
            ApiError::invalid(d)
        }
        other => invalid_api_key(other.to_string()),
    }
}

/// Capture events.
///
/// Every capture route (see the module docs): a PostHog capture payload,
/// one event or `{"api_key", "batch": [...]}` or a list of events, as JSON,
/// gzip (by magic bytes, whatever the headers say), base64 (whole body or
/// `compression=base64`), a form with a `data` field, or `data` in the
/// query string. The project token (`phc_…`) comes in the payload.
#[utoipa::path(
    method(post, get),
    path = "/batch/",
    operation_id = "capture_batch",
    tag = "capture",
    params(CaptureQuery),
    request_body(
        content = Value,
        content_type = "application/json",
        description = "One event, a list of events, or `{\"api_key\", \"batch\": [...]}`; also accepted gzipped, base64-encoded or as a form `data` field",
        example = json!({"api_key": "phc_...", "batch": [{"event": "$pageview", "distinct_id": "user-1", "properties": {"$current_url": "https://example.com/"}}]}),
    ),
    responses(
        (status = 200, description = "The events are durable", body = StatusAnswer, example = json!({"status": "Ok"})),
        (status = 204, description = "The events are durable (`beacon=1`)"),
        (status = 400, description = "Unreadable payload or invalid event"),
        (status = 401, description = "Missing, inconsistent or unknown project token"),
        (status = 413, description = "Payload larger than 20 MiB (once decompressed)"),
        (status = 503, description = "Capture is stopping or the store cannot write"),
    )
)]
pub async fn capture(
    State(state): State<AppState>,
    method: Method,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Q(query): Q<CaptureQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if method == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    if method == Method::HEAD {
        // axum routes HEAD to the GET handler; a HEAD must capture nothing.
        return ApiError::method_not_allowed("Method \"HEAD\" not allowed.").into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::body_too_large().into_response()
        }
        Err(e) => return ApiError::invalid(e.body_text()).into_response(),
    };
    let beacon = query.beacon.as_deref() == Some("1");
    match capture_inner(&state, peer, query, headers, body).await {
        Ok(()) if beacon => StatusCode::NO_CONTENT.into_response(),
        Ok(()) => (StatusCode::OK, axum::Json(StatusAnswer { status: "Ok" })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn capture_inner(
    state: &AppState,
    peer: SocketAddr,
    query: CaptureQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<()> {
    if body.len() > MAX_CAPTURE_BYTES {
        return Err(ApiError::too_large(format!(
            "request is larger than {} MiB",
            MAX_CAPTURE_BYTES >> 20
        )));
    }
    let app = state.app().clone();
    // Decompressing and parsing up to 20 MiB (a small gzip body may
    // inflate to that), the token's lookup in SQLite and the recordings'
    // checks run on the blocking pool: on the server's runtime they would
    // hold a thread that answers every other request, before any
    // credential was checked. At most one per core at once (the slot
    // goes with the work, so it is held until the work ends even if the
    // client goes away): a flood of such bodies cannot take the blocking
    // pool, which the persons API's reads share, nor its memory.
    let slot = Arc::clone(state.capture_decodes())
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable())?;
    let (project, events, text_len) = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        read_capture(&app, peer, &query, &headers, &body)
    })
    .await??;
    state.committer().capture(project, events, text_len).await
}

/// Decode and parse a capture request, find its project by token and
/// check its events: (project, events, the decoded text's length).
fn read_capture(
    app: &App,
    peer: SocketAddr,
    query: &CaptureQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(i64, Vec<CaptureEvent>, usize)> {
    let text = decode_body(headers, query, body)?;
    let now = chrono::Utc::now().timestamp_micros();
    let req = parse_capture_request(&text, now).map_err(refusal)?;
    let token = req
        .token
        .clone()
        .ok_or_else(|| refusal(CaptureRefusal::NoToken))?;
    if token.starts_with(elide_persons::admin::KEY_PREFIX) {
        // Nothing of the secret is echoed back.
        return Err(invalid_api_key(
            "API key is not valid: a personal API key (phx_...) is not a project token; \
             capture takes the project token (phc_...)",
        ));
    }
    let project = app
        .persons()
        .project_by_token(&token)?
        .ok_or_else(no_such_project)?;
    let mut events = req.events;
    for e in events.iter().filter(|e| e.event == "$snapshot") {
        crate::recordings::check(e)
            .map_err(|d| ApiError::invalid(format!("invalid event: {d}")))?;
    }
    if !project.settings.anonymize_ips {
        let ip = Value::String(peer.ip().to_string());
        for e in &mut events {
            e.properties.entry("$ip").or_insert_with(|| ip.clone());
        }
    }
    Ok((project.id, events, text.len()))
}

/// `GET …/session_recordings/?person_uuid=` support lives in
/// [`crate::recordings`]; this keeps the capture module's public surface
/// to the routes.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    let mut r = axum::Router::new();
    for &path in CAPTURE_ROUTES {
        // GET, POST and OPTIONS, as PostHog; other methods get the 405.
        let route = || get(capture).post(capture).options(capture);
        r = r.route(path, route()).route(&format!("{path}/"), route());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture of a project dropped after its token was read is
    /// answered as that token is now: 401 `invalid_api_key`, not a 404.
    #[test]
    fn a_capture_of_a_project_dropped_meanwhile_is_a_401() {
        let dir = tempfile::tempdir().expect("dir");
        let app = App::open(elide_app::AppConfig::new(dir.path())).expect("open");
        let p = app.persons().create_project("doomed").expect("project");
        let events = vec![elide_persons::capture::parse_event(
            serde_json::json!({"event": "e", "distinct_id": "d"}),
            0,
        )
        .expect("event")];
        capture_events(&app, p.id, &events).expect("captured");
        app.persons().drop_project(p.id).expect("dropped");
        let e = capture_events(&app, p.id, &events).expect_err("refused");
        assert_eq!(e.status.as_u16(), 401, "{e:?}");
        assert_eq!(e.code, "invalid_api_key");
        app.close().expect("close");
    }

    /// A round stops before the request that would take it past
    /// MAX_GROUP_BYTES (that request opens the next round); a request
    /// larger than the bound on its own is a round of its own.
    #[test]
    fn rounds_are_bounded_in_bytes() {
        let job = |bytes: usize| Job {
            project: 1,
            events: Vec::new(),
            bytes,
            reply: tokio::sync::oneshot::channel().0,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let mib = 1 << 20;
        for b in [100 * mib, 20 * mib, 20 * mib, 300 * mib, 1] {
            tx.send(job(b)).unwrap();
        }
        let sizes = |jobs: &[Job]| jobs.iter().map(|j| j.bytes / mib).collect::<Vec<_>>();
        let (round, next) = gather_round(job(120 * mib), &rx);
        assert_eq!(sizes(&round), [120, 100, 20]);
        let next = next.expect("the request past the bound");
        assert_eq!(next.bytes, 20 * mib);
        let (round, next) = gather_round(next, &rx);
        assert_eq!(sizes(&round), [20]);
        let (round, next) = gather_round(next.expect("the large one"), &rx);
        assert_eq!(sizes(&round), [300]);
        let (round, next) = gather_round(next.expect("the last"), &rx);
        assert_eq!(round.len(), 1);
        assert!(next.is_none());
    }

    fn decode(headers: &[(&str, &str)], q: CaptureQuery, body: &[u8]) -> ApiResult<String> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        decode_body(&h, &q, body)
    }

    #[test]
    fn bodies_decode_whatever_the_headers_say() {
        let json = r#"{"api_key":"phc_x","batch":[]}"#;
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(json.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(
            decode(&[], CaptureQuery::default(), json.as_bytes()).unwrap(),
            json
        );
        // gzip by magic bytes, with a lying or absent header.
        assert_eq!(
            decode(
                &[("content-type", "text/plain")],
                CaptureQuery::default(),
                &gz
            )
            .unwrap(),
            json
        );
        // base64, asked for or not.
        let q = CaptureQuery {
            compression: Some("base64".into()),
            ..Default::default()
        };
        assert_eq!(decode(&[], q.clone(), b64.as_bytes()).unwrap(), json);
        assert_eq!(
            decode(&[], CaptureQuery::default(), b64.as_bytes()).unwrap(),
            json
        );
        // Gzip inside base64, asked for or not.
        let gz64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        assert_eq!(decode(&[], q, gz64.as_bytes()).unwrap(), json);
        assert_eq!(
            decode(&[], CaptureQuery::default(), gz64.as_bytes()).unwrap(),
            json
        );
        // A form with data= (base64, url-encoded).
        let form = format!(
            "data={}&compression=base64",
            b64.replace('+', "%2B").replace('=', "%3D")
        );
        assert_eq!(
            decode(
                &[("content-type", "application/x-www-form-urlencoded")],
                CaptureQuery::default(),
                form.as_bytes()
            )
            .unwrap(),
            json
        );
        // Plain JSON after a byte-order mark (which the parse skips):
        // not base64.
        let bom = format!("\u{feff}{json}");
        assert_eq!(
            decode(&[], CaptureQuery::default(), bom.as_bytes()).unwrap(),
            bom
        );
        // GET with data in the query.
        let q = CaptureQuery {
            data: Some(json.into()),
            ..Default::default()
        };
        assert_eq!(decode(&[], q, b"").unwrap(), json);
        // Garbage is a 400, never a panic.
        for bad in [&b"\x1f\x8b\x08garbage"[..], b"%%%", b""] {
            let e = decode(&[], CaptureQuery::default(), bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
