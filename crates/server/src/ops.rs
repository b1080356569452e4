//! Operating the server: `/_health` (the process answers), `/_ready` (the
//! store can serve), `/metrics` (Prometheus text), the request metrics
//! and tracing middleware, and the answers for unknown routes, methods,
//! panics and the middleware's own 408 and 415 (always PostHog's
//! envelope, never an empty body).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::AppState;

/// The process-wide Prometheus recorder (installed once).
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is installed already; /metrics shows only the store's figures");
                    None
                }
            }
        })
        .as_ref()
}

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    // Install the recorder before the first request records anything.
    let _ = prometheus();
    Router::new()
        .route("/_health", get(health))
        .route("/_ready", get(ready))
        .route("/metrics", get(metrics_text))
}

/// `{"status": …}`: the answer of `/_health` (`ok`), `/_ready` (`ready`)
/// and capture (`Ok`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAnswer {
    /// `ok`, `ready` or `Ok`.
    pub status: &'static str,
}

/// The process answers.
#[utoipa::path(
    get,
    path = "/_health",
    operation_id = "health",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`", body = StatusAnswer),
    )
)]
async fn health() -> Json<StatusAnswer> {
    Json(StatusAnswer { status: "ok" })
}

/// The store can serve.
#[utoipa::path(
    get,
    path = "/_ready",
    operation_id = "ready",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = StatusAnswer),
        (status = 503, description = "The store cannot serve"),
    )
)]
async fn ready(State(state): State<AppState>) -> Response {
    let app = state.app().clone();
    // Not ready either when the store refuses writes until a restart (a
    // failed log write, a commit with an unknown outcome): capture would
    // answer 503 until then.
    let ok = tokio::task::spawn_blocking(move || {
        let store = app.store();
        store.snapshot().is_ok() && store.write_failure().is_none()
    })
    .await
    .unwrap_or(false);
    if ok {
        Json(StatusAnswer { status: "ready" }).into_response()
    } else {
        ApiError::unavailable().into_response()
    }
}

/// Prometheus metrics: requests, capture, queries, and the store's
/// deletion and storage figures.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content((String = "text/plain"))),
    )
)]
async fn metrics_text(State(state): State<AppState>) -> Response {
    let app = state.app().clone();
    let status = tokio::task::spawn_blocking(move || app.store().status()).await;
    let mut out = String::new();
    if let Some(h) = prometheus() {
        out.push_str(&h.render());
    }
    if let Ok(Ok(s)) = status {
        let now = chrono::Utc::now().timestamp_micros();
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            ));
        };
        gauge(
            &mut out,
            "elide_deletion_requests_pending",
            "Deletion requests whose rows are hidden but not yet purged.",
            s.requests_pending as f64,
        );
        gauge(
            &mut out,
            "elide_deletion_requests_purged",
            "Deletion requests purged, not yet verified.",
            s.requests_purged as f64,
        );
        gauge(
            &mut out,
            "elide_deletion_requests_verified",
            "Deletion requests verified.",
            s.requests_verified as f64,
        );
        gauge(
            &mut out,
            "elide_deletion_oldest_pending_age_seconds",
            "Age of the oldest pending deletion request.",
            s.oldest_pending_age_s.unwrap_or(0) as f64,
        );
        gauge(
            &mut out,
            "elide_deletion_requests_logical",
            "Pending deletion requests hidden by their predicate only (undo window open, or resolving in the background).",
            s.requests_logical as f64,
        );
        gauge(
            &mut out,
            "elide_deletion_requests_cancelled",
            "Deletion requests cancelled inside their undo window.",
            s.requests_cancelled as f64,
        );
        gauge(
            &mut out,
            "elide_deletion_requests_overdue",
            "Pending deletion requests past their purge_due_by.",
            s.requests_overdue.len() as f64,
        );
        gauge(
            &mut out,
            "elide_deletion_next_purge_due_seconds",
            "Seconds until the earliest purge_due_by of a pending request (negative when overdue; 0 when none is pending).",
            s.next_purge_due_us
                .map_or(0.0, |d| (d - now) as f64 / 1e6),
        );
        let awaiting: u64 = s.partitions.iter().map(|p| p.bytes_awaiting_purge).sum();
        let bytes: u64 = s.partitions.iter().map(|p| p.bytes).sum();
        let parts: usize = s.partitions.iter().map(|p| p.parts).sum();
        gauge(
            &mut out,
            "elide_bytes_awaiting_purge",
            "Bytes of parts holding deleted rows.",
            awaiting as f64,
        );
        gauge(
            &mut out,
            "elide_part_bytes",
            "Bytes of live parts.",
            bytes as f64,
        );
        gauge(&mut out, "elide_parts", "Live parts.", parts as f64);
        gauge(
            &mut out,
            "elide_buffered_rows",
            "Rows in the ingest log, not yet in parts.",
            s.memtable_rows as f64,
        );
        gauge(
            &mut out,
            "elide_ingest_log_segments",
            "Ingest-log segments on disk.",
            s.wal_segments as f64,
        );
        gauge(
            &mut out,
            "elide_manifest_version",
            "Manifest version.",
            s.version as f64,
        );
        if let Some(c) = &s.last_compaction {
            gauge(
                &mut out,
                "elide_last_compaction_age_seconds",
                "Time since the last compaction run ended.",
                (now.saturating_sub(c.finished_at_us).max(0) / 1_000_000) as f64,
            );
            gauge(
                &mut out,
                "elide_last_compaction_bytes_written",
                "Bytes the last compaction run wrote.",
                c.bytes_written as f64,
            );
            gauge(
                &mut out,
                "elide_last_compaction_rows_dropped",
                "Deleted rows the last compaction run removed.",
                c.rows_dropped as f64,
            );
        }
    }
    gauge_uptime(&mut out, state.uptime().as_secs_f64());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}

fn gauge_uptime(out: &mut String, secs: f64) {
    out.push_str(&format!(
        "# HELP elide_uptime_seconds Time since the server started.\n# TYPE elide_uptime_seconds gauge\nelide_uptime_seconds {secs}\n"
    ));
}

/// A request's method as a metrics label: one of HTTP's, or `other` (a
/// client may send any token as a method, and each label value is a
/// series the recorder keeps for ever).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "other",
    }
}

/// Count requests by route and status, and time them.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("elide_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("elide_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// The tracing span of a request, with its id.
pub fn span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
}

/// Unknown route: 404 with the envelope.
pub async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

/// Known route, other method: 405 with PostHog's text.
pub async fn method_not_allowed(req: Request) -> Response {
    ApiError::method_not_allowed(format!("Method \"{}\" not allowed.", req.method()))
        .into_response()
}

/// The answers that tower-http's middleware gives without a body get
/// PostHog's envelope like every other error: the request timeout's 408
/// and the request decompression's 415 (a `Content-Encoding` other than
/// gzip; its `Accept-Encoding` header is kept). A response that has a
/// `Content-Type` already is a handler's own and passes as it is. Only the
/// request's `Content-Encoding` is kept aside, not its headers.
pub async fn envelope_bodiless(
    State(timeout): State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    use axum::http::{header, StatusCode};
    // A shared handle on the header's bytes: the text is made only for
    // a 415.
    let encoding = req.headers().get(header::CONTENT_ENCODING).cloned();
    let resp = next.run(req).await;
    if resp.headers().contains_key(header::CONTENT_TYPE) {
        return resp;
    }
    let error = match resp.status() {
        StatusCode::REQUEST_TIMEOUT => ApiError::request_timeout(timeout),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_encoding(
            encoding
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .as_deref(),
        ),
        _ => return resp,
    };
    let (mut parts, _) = resp.into_parts();
    let answer = error.into_response();
    for (name, value) in answer.headers() {
        parts.headers.insert(name, value.clone());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, answer.into_body())
}

/// A panic inside a handler: 500 with the envelope (logged).
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(&format!("panic: {msg}")).into_response()
}
