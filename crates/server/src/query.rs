//! `POST /api/projects/{id}/query/` (and under `/api/environments/`):
//! PostHog's query endpoint for `HogQLQuery`, run by
//! [`elide_app::query::run_hogql`] over the project's rows only.
//!
//! Queries run on their own runtime ([`QueryRuntime`]), so a long scan
//! never holds a thread that answers other requests; each runs under the
//! server's query timeout (then 504) and is cancelled when the client goes
//! away. Scope: `query:read`.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use elide_app::query::{run_hogql, QueryOutput};
use serde_json::Value;

use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::AppState;

/// The query routes.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        r = r
            .route(&format!("{prefix}/query"), post(query))
            .route(&format!("{prefix}/query/"), post(query));
    }
    r
}

/// The tokio runtime queries run on (DataFusion's work is CPU-bound and
/// async: on the server's runtime it would hold the threads that answer
/// capture and the persons API).
pub struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl std::fmt::Debug for QueryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryRuntime")
    }
}

impl QueryRuntime {
    /// A runtime with `threads` workers.
    pub fn new(threads: usize) -> std::io::Result<QueryRuntime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("elide-query")
            .enable_all()
            .build()
            .map(|rt| QueryRuntime(Some(rt)))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts its task when dropped (the client went away).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// The HogQL text of a query request body, with PostHog-style errors.
fn hogql_of(body: &Value) -> ApiResult<String> {
    let q = match body.get("query") {
        Some(Value::Object(q)) => q,
        Some(_) => {
            return Err(ApiError::invalid_attr(
                "query",
                "invalid_input",
                "query must be an object with kind and query",
            ))
        }
        None => {
            return Err(ApiError::invalid_attr(
                "query",
                "required",
                "This field is required.",
            ))
        }
    };
    match q.get("kind").and_then(Value::as_str) {
        Some("HogQLQuery") => {}
        Some(other) => {
            return Err(ApiError::invalid_attr(
                "kind",
                "invalid_input",
                format!("query kind '{other}' is not supported; Elide runs HogQLQuery"),
            ))
        }
        None => {
            return Err(ApiError::invalid_attr(
                "kind",
                "required",
                "query.kind is required (HogQLQuery)",
            ))
        }
    }
    if q.get("values")
        .is_some_and(|v| !v.is_null() && v != &Value::Object(Default::default()))
    {
        return Err(ApiError::invalid_attr(
            "values",
            "invalid_input",
            "placeholder values are not supported; write literals in the query",
        ));
    }
    match q.get("query") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => Err(ApiError::invalid_attr(
            "query",
            "required",
            "query.query is required: the HogQL text",
        )),
        Some(_) => Err(ApiError::invalid_attr(
            "query",
            "invalid_input",
            "query.query must be a string",
        )),
    }
}

async fn query(
    State(state): State<AppState>,
    key: Key,
    Path(p): Path<HashMap<String, String>>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<QueryOutput>> {
    let project = key.project(p.get("project").map_or("", String::as_str), "query:read")?;
    let sql = hogql_of(&body)?;
    let persons = state.app().persons().clone();
    let limits = state.query_limits();
    let timeout = state.config().query_timeout;
    let rt = state
        .query_runtime()
        .handle()
        .ok_or_else(ApiError::unavailable)?;
    let started = Instant::now();
    let task = AbortOnDrop(rt.spawn(async move {
        tokio::time::timeout(timeout, run_hogql(&persons, project, &sql, &limits)).await
    }));
    let out = match task.await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            metrics::counter!("elide_queries_total", "outcome" => "timeout").increment(1);
            return Err(ApiError::timeout(format!(
                "the query ran longer than {} s and was cancelled",
                timeout.as_secs()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let outcome = if out.is_ok() { "ok" } else { "error" };
    metrics::counter!("elide_queries_total", "outcome" => outcome).increment(1);
    metrics::histogram!("elide_query_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(out?))
}
