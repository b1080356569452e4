//! # elide-server: the HTTP API
//!
//! PostHog's protocol over an Elide data directory, so that PostHog SDKs
//! and scripts work unchanged. A thin layer: [`router`] builds the axum
//! `Router` over one [`App`]; handlers parse, call library functions (on
//! the blocking pool: the async runtime never waits for a commit or a
//! scan), and map errors once ([`error::ApiError`]).
//!
//! | module | routes |
//! |---|---|
//! | [`capture`] | `/batch`, `/e`, `/i/v0/e`, `/capture`, `/track`, `/engage`, `/s` |
//! | [`persons`] | `/api/{projects,environments}/{id}/persons/…`, `/api/person…` |
//! | [`projects`] | `/api/projects/…`, `/api/environments/…` |
//! | [`query`] | `/api/projects/{id}/query/` (HogQL and trends; the other insight kinds in [`query_insights`], the persons of a point in [`actors_query`]) |
//! | [`analytics`] | `…/persons/funnel/`, `…/persons/funnel/correlation/`, `…/persons/lifecycle/`, `…/persons/stickiness/`, `…/persons/trends/`, `…/insights/funnel/`, `…/insights/funnel/correlation/`, `…/insights/trend/` |
//! | [`events`] | `…/events/`, `…/events/{id}/`, `…/events/values/` |
//! | [`definitions`] | `…/event_definitions/`, `…/event_definitions/{id}/`, `…/property_definitions/` |
//! | [`cohorts`] | `…/cohorts/…`, `…/persons/cohorts/` |
//! | [`deletions`] | `/api/{projects,environments}/{id}/events/delete/`, `…/deletions/…` |
//! | [`ops`] | `/_health`, `/_ready`, `/metrics` |
//! | [`openapi`] | `/api/schema/`: the OpenAPI document of all of the above |
//!
//! Middleware (outermost first): request id (`x-request-id`, made when
//! absent, echoed back), tracing span per request, panic → 500 envelope,
//! CORS (browser SDKs), request timeout, body limit, request metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use elide_app::App;

pub mod actors_query;
pub mod analytics;
pub mod auth;
pub mod capture;
pub mod cohorts;
pub mod conn;
pub mod definitions;
pub mod deletions;
pub mod error;
pub mod events;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod persons;
pub mod projects;
pub mod query;
pub mod query_insights;
pub mod recordings;
pub mod views;

/// Queries that may run at once by default: with 2 GiB each, 8 GiB in
/// all; a dashboard's few insights at a time run side by side.
pub const DEFAULT_QUERY_CONCURRENCY: usize = 4;

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Longest a request may take (then 408/504).
    pub request_timeout: Duration,
    /// Longest a query may run.
    pub query_timeout: Duration,
    /// Rows a query returns without a `LIMIT`.
    pub query_default_limit: usize,
    /// Most rows a query returns, `LIMIT` or not.
    pub query_max_limit: usize,
    /// Memory one query's operators may hold (bytes).
    pub query_memory_bytes: usize,
    /// Worker threads of the query runtime.
    pub query_threads: usize,
    /// Queries that may run at once (the others wait for a slot within
    /// their timeout): all queries together hold at most this many times
    /// `query_memory_bytes`.
    pub query_concurrency: usize,
    /// Connections open at once; the next client waits until one closes
    /// (see [`conn`]).
    pub max_connections: usize,
    /// Longest a connection may take to send a request's head (a new
    /// one, or a kept-alive one between requests) before it is closed.
    pub header_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            request_timeout: Duration::from_secs(60),
            query_timeout: Duration::from_secs(30),
            query_default_limit: 10_000,
            query_max_limit: 100_000,
            query_memory_bytes: 2 << 30,
            query_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            query_concurrency: DEFAULT_QUERY_CONCURRENCY,
            max_connections: conn::default_max_connections(),
            header_timeout: Duration::from_secs(30),
        }
    }
}

struct Inner {
    app: App,
    committer: capture::Committer,
    limits: auth::Limits,
    queries: query::QueryRuntime,
    /// Capture bodies being decoded and parsed at once (one per core):
    /// that work runs on the blocking pool before any credential is
    /// checked, so its memory and threads are bounded here.
    capture_decodes: Arc<tokio::sync::Semaphore>,
    /// A lock per project, held by a cohort create or PATCH that defines
    /// a cohort of it, from the check of its definition (cycles, depth)
    /// through its write: two at once could each check against the
    /// other's old definition and store a cycle between them. Owned
    /// guards, moved into the blocking write, so that a request that
    /// times out or whose client goes away releases it only once its
    /// write is done. A project's entry is removed when no one holds or
    /// waits for its lock.
    cohort_definitions: std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    config: ServerConfig,
    started: std::time::Instant,
}

/// What every handler gets: the application and the server's own parts.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("app", &self.0.app)
            .finish()
    }
}

impl AppState {
    /// State over `app` (starts the capture committer thread).
    pub fn new(app: App, config: ServerConfig) -> std::io::Result<AppState> {
        let committer = capture::Committer::start(app.clone())?;
        let queries = query::QueryRuntime::new(config.query_threads, config.query_concurrency)?;
        Ok(AppState(Arc::new(Inner {
            app,
            committer,
            limits: auth::Limits::default(),
            queries,
            capture_decodes: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            cohort_definitions: std::sync::Mutex::new(HashMap::new()),
            config,
            started: std::time::Instant::now(),
        })))
    }

    /// The application.
    pub fn app(&self) -> &App {
        &self.0.app
    }

    pub(crate) fn committer(&self) -> &capture::Committer {
        &self.0.committer
    }

    pub(crate) fn limits(&self) -> &auth::Limits {
        &self.0.limits
    }

    pub(crate) fn capture_decodes(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.0.capture_decodes
    }

    /// Wait for `project`'s cohort-definition lock (see `Inner`).
    pub(crate) async fn cohort_definitions(
        &self,
        project: i64,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            // A poisoned map only ever held complete entries.
            let mut locks = self
                .0
                .cohort_definitions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            locks.retain(|p, l| *p == project || Arc::strong_count(l) > 1);
            Arc::clone(locks.entry(project).or_default())
        };
        lock.lock_owned().await
    }

    pub(crate) fn query_runtime(&self) -> &query::QueryRuntime {
        &self.0.queries
    }

    /// The bounds of one query.
    pub fn query_limits(&self) -> elide_app::query::QueryLimits {
        let c = &self.0.config;
        elide_app::query::QueryLimits {
            default_rows: c.query_default_limit,
            max_rows: c.query_max_limit,
            memory_bytes: Some(c.query_memory_bytes),
            deadline: None,
        }
    }

    /// Commit and answer what capture has queued, and stop capturing
    /// (later captures get 503). Part of a graceful shutdown.
    pub fn stop_capture(&self) {
        self.0.committer.stop();
    }

    /// The server's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }
}

/// The router of the whole API over `state`.
pub fn router(state: AppState) -> Router {
    use tower_http::cors::CorsLayer;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::TraceLayer;
    let timeout = state.config().request_timeout;
    let api = Router::new()
        .merge(persons::routes())
        .merge(projects::routes())
        .merge(deletions::routes())
        .merge(query::routes())
        .merge(analytics::routes())
        .merge(cohorts::routes())
        .merge(events::routes())
        .merge(definitions::routes())
        .layer(tower_http::decompression::RequestDecompressionLayer::new());
    Router::new()
        .merge(capture::routes())
        .merge(api)
        .merge(ops::routes())
        .merge(openapi::routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn(ops::track))
        .layer(axum::extract::DefaultBodyLimit::max(
            capture::MAX_CAPTURE_BYTES,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            ops::envelope_bodiless,
        ))
        .layer(CorsLayer::permissive())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            ops::panic_response,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(ops::span)
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Serve `state` on `listener` until `shutdown` resolves; in-flight
/// requests then finish (bounded by the request timeout). Connections are
/// limited in number and in how long they may stay silent ([`conn`]).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (max, header_timeout) = (
        state.config().max_connections,
        state.config().header_timeout,
    );
    conn::run(router(state), listener, max, header_timeout, shutdown).await
}
