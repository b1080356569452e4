//! `POST /api/projects/{id}/query/` (and under `/api/environments/`):
//! PostHog's query endpoint for `HogQLQuery`, run by
//! [`elide_app::query::run_hogql`] over the project's rows only, for
//! `TrendsQuery` ([`elide_app::analytics::trends`]), and for
//! `FunnelsQuery` and `LifecycleQuery` (read as their legacy insights'
//! parameters by [`elide_app::analytics::query_nodes`], answered by
//! [`crate::query_insights`]), and for `StickinessQuery`, `RetentionQuery`
//! and `PathsQuery` ([`elide_app::analytics::stickiness`],
//! [`elide_app::analytics::retention`], [`elide_app::analytics::paths`]),
//! and for `ActorsQuery`
//! ([`crate::actors_query`]).
//!
//! Queries run on their own runtime ([`QueryRuntime`]), so a long scan
//! never holds a thread that answers other requests; each runs under the
//! server's query timeout (then 504) and is cancelled when the client goes
//! away. At most `ServerConfig::query_concurrency` run at once: the others
//! wait for a slot, and the wait counts towards their timeout. So the
//! memory all queries hold is bounded by that number times the memory
//! one may hold. Scope: `query:read`.
//!
//! The answer is [`elide_app::query::QueryOutput`], served through its
//! mirror [`QueryAnswer`] (same fields, same JSON), which gives the
//! OpenAPI document its schema (`elide-app` does not depend on utoipa);
//! an `EventsQuery`'s `EventsAnswer` likewise through
//! [`EventsQueryAnswer`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use elide_app::analytics::trends::{self, TrendsSpec};
use elide_app::query::{run_hogql, QueryOutput};
use elide_app::AppError;
use elide_query::deadline::{is_cancelled, QueryDeadline};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, PathParams};
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

/// The result of a query: [`QueryOutput`], field for field.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryAnswer {
    /// Column names.
    pub columns: Vec<String>,
    /// `[name, type]` per column, with ClickHouse's type names.
    #[schema(schema_with = type_pairs)]
    pub types: Vec<(String, String)>,
    /// Rows, each an array of JSON values in column order.
    pub results: Vec<Vec<Value>>,
    /// Whether rows beyond `limit` were left out.
    #[serde(rename = "hasMore")]
    pub has_more: bool,
    /// The row limit applied.
    pub limit: usize,
    /// Always 0 (no paging of query results).
    pub offset: usize,
}

impl From<elide_app::analytics::events_query::EventsAnswer> for EventsQueryAnswer {
    fn from(a: elide_app::analytics::events_query::EventsAnswer) -> Self {
        EventsQueryAnswer {
            columns: a.columns,
            types: a.types,
            results: a.results,
            has_more: a.has_more,
            limit: a.limit,
            offset: a.offset,
        }
    }
}

impl From<QueryOutput> for QueryAnswer {
    fn from(o: QueryOutput) -> Self {
        QueryAnswer {
            columns: o.columns,
            types: o.types,
            results: o.results,
            has_more: o.has_more,
            limit: o.limit,
            offset: o.offset,
        }
    }
}

/// The schema of `types`: arrays of exactly two strings.
fn type_pairs() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let name = ObjectBuilder::new().schema_type(Type::String);
    ArrayBuilder::new()
        .items(
            ArrayBuilder::new()
                .items(name)
                .min_items(Some(2))
                .max_items(Some(2)),
        )
        .description(Some(
            "`[name, type]` per column, with ClickHouse's type names.",
        ))
        .build()
}

/// The HogQL query of a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct HogQlQuery {
    /// Always `HogQLQuery`.
    #[schema(pattern = "^HogQLQuery$")]
    pub kind: String,
    /// The HogQL text.
    pub query: String,
    /// Placeholder values: refused unless empty (write literals).
    #[schema(value_type = Option<Object>)]
    pub values: Option<Map<String, Value>>,
}

/// A trends query: PostHog's `TrendsQuery` (docs/api.md lists what is
/// served).
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendsQuery {
    /// Always `TrendsQuery`.
    #[schema(pattern = "^TrendsQuery$")]
    pub kind: String,
    /// `[{kind: "EventsNode", event, math?, math_property?,
    /// math_property_type?, properties?, custom_name?}]`; `math`: `total`
    /// (default), `dau`, `weekly_active`, `monthly_active`,
    /// `unique_session`, `sum`/`avg`/`min`/`max`/`median`/`p75`/`p90`/
    /// `p95`/`p99` of `math_property` (also `$session_duration`), `avg`/
    /// `min`/`max`/`median`/`p75`/`p90`/`p95`/`p99` `_count_per_actor`,
    /// `first_time_for_user` or `first_matching_event_for_user`.
    #[schema(value_type = Vec<Object>)]
    pub series: Vec<Value>,
    /// `{date_from, date_to}` (default the last 7 days).
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "dateRange")]
    pub date_range: Option<Value>,
    /// `hour`, `day` (default), `week` or `month`.
    pub interval: Option<String>,
    /// Property filters applied to every series.
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
    /// `{breakdown: "<event property>", breakdown_limit?}`.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "breakdownFilter")]
    pub breakdown_filter: Option<Value>,
    /// `{display?, formula?, formulas?, formulaNodes?: [{formula,
    /// custom_name?}]}`; the formulas' rows replace the series'.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "trendsFilter")]
    pub trends_filter: Option<Value>,
    /// `{compare: true, compare_to?}`: the rows again over the previous
    /// period, or with `compare_to` (`-1w`, `-1m`, `-1y`, …) over the
    /// period at that offset.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "compareFilter")]
    pub compare_filter: Option<Value>,
}

/// A funnel: PostHog's `FunnelsQuery`, answered as `…/insights/funnel/`
/// answers its legacy parameters (docs/api.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelsQuery {
    /// Always `FunnelsQuery`.
    #[schema(pattern = "^FunnelsQuery$")]
    pub kind: String,
    /// The steps: `[{kind: "EventsNode", event, custom_name?, properties?}]`.
    #[schema(value_type = Vec<Object>)]
    pub series: Vec<Value>,
    /// `{date_from, date_to}` (default the last 7 days).
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "dateRange")]
    pub date_range: Option<Value>,
    /// Property filters applied to every step.
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
    /// `{breakdown, breakdown_type?, breakdown_limit?}`.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "breakdownFilter")]
    pub breakdown_filter: Option<Value>,
    /// `{funnelWindowInterval?, funnelWindowIntervalUnit?,
    /// funnelOrderType?, funnelVizType?, breakdownAttributionType?,
    /// breakdownAttributionValue?, exclusions?}`.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "funnelsFilter")]
    pub funnels_filter: Option<Value>,
}

/// A lifecycle: PostHog's `LifecycleQuery`, answered as
/// `…/insights/trend/?shown_as=Lifecycle` answers its legacy parameters.
#[derive(Debug, Serialize, ToSchema)]
pub struct LifecycleQuery {
    /// Always `LifecycleQuery`.
    #[schema(pattern = "^LifecycleQuery$")]
    pub kind: String,
    /// The one event: `[{kind: "EventsNode", event}]`.
    #[schema(value_type = Vec<Object>)]
    pub series: Vec<Value>,
    /// `{date_from, date_to}` (default the last 7 days).
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "dateRange")]
    pub date_range: Option<Value>,
    /// `hour`, `day` (default), `week` or `month`.
    pub interval: Option<String>,
    /// Property filters.
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
}

/// Stickiness: PostHog's `StickinessQuery` (docs/api.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct StickinessQuery {
    /// Always `StickinessQuery`.
    #[schema(pattern = "^StickinessQuery$")]
    pub kind: String,
    /// `[{kind: "EventsNode", event, properties?}]`.
    #[schema(value_type = Vec<Object>)]
    pub series: Vec<Value>,
    /// `{date_from, date_to}` (default the last 7 days).
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "dateRange")]
    pub date_range: Option<Value>,
    /// `hour`, `day` (default), `week` or `month`.
    pub interval: Option<String>,
    /// Property filters applied to every series.
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
    /// `{computedAs?: "non_cumulative" | "cumulative", stickinessCriteria?:
    /// {operator, value}}`.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "stickinessFilter")]
    pub stickiness_filter: Option<Value>,
}

/// Retention: PostHog's `RetentionQuery` (docs/api.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionQuery {
    /// Always `RetentionQuery`.
    #[schema(pattern = "^RetentionQuery$")]
    pub kind: String,
    /// `{date_from, date_to}` (default: `totalIntervals` intervals up to
    /// today's).
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "dateRange")]
    pub date_range: Option<Value>,
    /// Property filters applied to every event.
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
    /// `{targetEntity?, returningEntity?, period?, totalIntervals?,
    /// retentionType?, cumulative?, minimumOccurrences?}`.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "retentionFilter")]
    pub retention_filter: Option<Value>,
}

/// Paths: PostHog's `PathsQuery` (docs/api.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct PathsQuery {
    /// Always `PathsQuery`.
    #[schema(pattern = "^PathsQuery$")]
    pub kind: String,
    /// `{date_from, date_to}` (default the last 7 days).
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "dateRange")]
    pub date_range: Option<Value>,
    /// Property filters applied to every event.
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
    /// `{includeEventTypes?, excludeEvents?, startPoint?, endPoint?,
    /// stepLimit?, edgeLimit?, minEdgeWeight?, maxEdgeWeight?,
    /// pathGroupings?, localPathCleaningFilters?, pathReplacements?,
    /// showFullUrls?, pathsHogQLExpression?}` (a HogQL expression that
    /// would make the items is refused);
    /// with `pathStartKey`, `pathEndKey` or `pathDropoffKey` as the source
    /// of an `ActorsQuery`.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "pathsFilter")]
    pub paths_filter: Option<Value>,
    /// `{funnelPathType, funnelSource: <FunnelsQuery>, funnelStep}`: paths
    /// around a funnel's step.
    #[schema(value_type = Option<Object>)]
    #[serde(rename = "funnelPathsFilter")]
    pub funnel_paths_filter: Option<Value>,
}

/// A table of events: PostHog's `EventsQuery` (the events explorer).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsQuery {
    /// Always `EventsQuery`.
    #[schema(pattern = "^EventsQuery$")]
    pub kind: String,
    /// The columns: HogQL expressions (a `-- label` after one names it),
    /// or `*` (the event), `person`, `person_display_name`; default `["*"]`.
    pub select: Option<Vec<String>>,
    /// HogQL conditions, all of which hold (one that aggregates: after the
    /// grouping).
    #[serde(rename = "where")]
    pub where_: Option<Vec<String>>,
    /// Property filters (event, person, cohort).
    #[schema(value_type = Option<Vec<Object>>)]
    pub properties: Option<Value>,
    /// More property filters.
    #[schema(value_type = Option<Vec<Object>>)]
    #[serde(rename = "fixedProperties")]
    pub fixed_properties: Option<Value>,
    /// Only events of this name.
    pub event: Option<String>,
    /// Only events of these names.
    pub events: Option<Vec<String>>,
    /// Only the events of this person (its id or UUID).
    #[serde(rename = "personId")]
    pub person_id: Option<String>,
    /// Only events after this time (default `-24h`; `all`: none).
    pub after: Option<String>,
    /// Only events before this time (default: five seconds from now).
    pub before: Option<String>,
    /// HogQL orderings (`timestamp DESC`).
    #[serde(rename = "orderBy")]
    pub order_by: Option<Vec<String>>,
    /// Rows of a page (default 100, at most 50 000).
    #[schema(maximum = 50000)]
    pub limit: Option<u32>,
    /// Rows skipped first (at most 10^9).
    #[schema(maximum = 1000000000)]
    pub offset: Option<u32>,
}

/// A query of `POST …/query/`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnyQuery {
    /// HogQL text.
    HogQl(HogQlQuery),
    /// Trends.
    Trends(TrendsQuery),
    /// A funnel's steps.
    Funnels(FunnelsQuery),
    /// A lifecycle's series.
    Lifecycle(LifecycleQuery),
    /// Stickiness.
    Stickiness(StickinessQuery),
    /// Retention.
    Retention(RetentionQuery),
    /// Paths.
    Paths(PathsQuery),
    /// Persons: the project's, or of an insight's point.
    Actors(crate::actors_query::ActorsQuery),
    /// A table of events.
    Events(EventsQuery),
}

/// Body of `POST …/query/` (other fields, such as `refresh`, are
/// ignored).
#[derive(Debug, ToSchema)]
pub struct QueryBody {
    /// The query.
    pub query: AnyQuery,
}

/// The answer to a `TrendsQuery` (and to the other insight queries).
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendsAnswer {
    /// Per series (and breakdown value): `{action, label, count, data,
    /// labels, days, breakdown_value?}`; a funnel's steps (with a
    /// breakdown, one list of steps per value); a retention's cohorts;
    /// a paths' edges `{source, target, value, average_conversion_time}`.
    #[schema(value_type = Vec<Value>)]
    pub results: Value,
    /// Always false.
    pub is_cached: bool,
    /// When it was computed (ISO 8601).
    pub last_refresh: String,
    /// Always `UTC`.
    pub timezone: String,
}

/// The answer of `POST …/query/`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum QueryResponse {
    /// A `HogQLQuery`'s rows.
    Rows(QueryAnswer),
    /// A `TrendsQuery`'s series.
    Trends(TrendsAnswer),
    /// An `ActorsQuery`'s persons.
    Actors(crate::actors_query::ActorsAnswer),
    /// An `EventsQuery`'s rows.
    Events(EventsQueryAnswer),
}

/// The answer of an `EventsQuery` (PostHog's `EventsQueryResponse`).
/// Its schema allows no other field, so that an `ActorsQuery`'s answer
/// (the same fields and more) is not one too.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsQueryAnswer {
    /// The columns as asked.
    pub columns: Vec<String>,
    /// Each column's ClickHouse type.
    pub types: Vec<String>,
    /// Rows, each an array of JSON values in column order (`*`, `person`
    /// and `person_display_name` as objects).
    pub results: Vec<Vec<Value>>,
    /// Whether more rows follow this page.
    #[serde(rename = "hasMore")]
    pub has_more: bool,
    /// The rows of a page.
    pub limit: usize,
    /// The rows skipped first.
    pub offset: usize,
}

/// The tokio runtime queries run on (DataFusion's work is CPU-bound and
/// async: on the server's runtime it would hold the threads that answer
/// capture and the persons API), and the slots of the queries that may
/// run on it at once.
pub struct QueryRuntime {
    rt: Option<tokio::runtime::Runtime>,
    slots: Arc<tokio::sync::Semaphore>,
    /// The number of slots (the semaphore does not say it).
    total: usize,
}

impl std::fmt::Debug for QueryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryRuntime")
    }
}

impl QueryRuntime {
    /// A runtime with `threads` workers, for `concurrency` queries at once.
    pub fn new(threads: usize, concurrency: usize) -> std::io::Result<QueryRuntime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("elide-query")
            // A query's expressions may nest MAX_EXPR_DEPTH deep, and
            // planning and evaluating them recurse per level (see
            // elide_query::sql_depth).
            .thread_stack_size(elide_query::sql_depth::QUERY_STACK)
            .enable_all()
            .build()
            .map(|rt| QueryRuntime {
                rt: Some(rt),
                slots: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
                total: concurrency.max(1),
            })
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.rt.as_ref().map(tokio::runtime::Runtime::handle)
    }

    /// A slot to run a query in, waited for at most `timeout` (then the
    /// query's 504). Counted in `elide_queries_waiting` while waited for.
    async fn slot(
        &self,
        timeout: std::time::Duration,
    ) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        /// Counts a waiting query until dropped (also when the client
        /// goes away while it waits).
        struct Waiting;
        impl Drop for Waiting {
            fn drop(&mut self) {
                metrics::gauge!("elide_queries_waiting").decrement(1.0);
            }
        }
        metrics::gauge!("elide_queries_waiting").increment(1.0);
        let _waiting = Waiting;
        match tokio::time::timeout(timeout, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(ApiError::unavailable()),
            Err(_) => Err(ApiError::timeout(format!(
                    "the query waited {} s for one of the {} queries that may run at once, and was cancelled",
                    timeout.as_secs(),
                    self.total
                ))),
        }
    }

    /// Wait for a slot within `timeout`, then run the future `work` makes
    /// on this runtime, holding the slot, under what is left of
    /// `timeout`. Dropping the answer aborts the work and gives the slot
    /// back.
    async fn spawn_in_slot<T, F>(
        &self,
        timeout: std::time::Duration,
        work: impl FnOnce() -> F,
    ) -> ApiResult<AbortOnDrop<Result<T, tokio::time::error::Elapsed>>>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let started = Instant::now();
        let rt = self.handle().ok_or_else(ApiError::unavailable)?;
        let slot = self.slot(timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        let work = work();
        Ok(AbortOnDrop(rt.spawn(async move {
            let _slot = slot;
            tokio::time::timeout(left, work).await
        })))
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids.
        if let Some(rt) = self.rt.take() {
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

/// Run `work` on the query runtime under the query timeout (504 past it);
/// it is cancelled if the client goes away.
pub(crate) async fn on_query_runtime<T, F, W>(state: &AppState, work: W) -> ApiResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = datafusion::error::Result<T>> + Send + 'static,
    W: FnOnce(Arc<QueryDeadline>) -> F,
{
    let timeout = state.config().query_timeout;
    let deadline = QueryDeadline::after(timeout);
    let _stop = CancelOnDrop(Arc::clone(&deadline));
    let task = state
        .query_runtime()
        .spawn_in_slot(timeout, || work(Arc::clone(&deadline)))
        .await?;
    match task.await {
        Ok(Ok(Ok(r))) => Ok(r),
        Ok(Ok(Err(e))) if is_cancelled(&e) => Err(timed_out(timeout)),
        Ok(Ok(Err(e))) => Err(crate::error::runtime_error(e)),
        Ok(Err(_)) => Err(timed_out(timeout)),
        Err(e) => Err(e.into()),
    }
}

fn timed_out(timeout: std::time::Duration) -> ApiError {
    ApiError::timeout(format!(
        "the query ran longer than {} s and was cancelled",
        timeout.as_secs()
    ))
}

/// Stops its query (at the next batch) when dropped: the request is over,
/// answered or abandoned by its client.
pub(crate) struct CancelOnDrop(pub(crate) Arc<QueryDeadline>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
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
        None => return Err(ApiError::required("query")),
    };
    match q.get("kind").and_then(Value::as_str) {
        Some("HogQLQuery") => {}
        Some(other) => {
            return Err(ApiError::invalid_attr(
                "kind",
                "invalid_input",
                format!(
                    "query kind '{other}' is not supported; Elide runs HogQLQuery, EventsQuery, TrendsQuery, FunnelsQuery, LifecycleQuery, StickinessQuery, RetentionQuery, PathsQuery and ActorsQuery"
                ),
            ))
        }
        None => {
            return Err(ApiError::invalid_attr(
                "kind",
                "required",
                "query.kind is required (HogQLQuery, EventsQuery, TrendsQuery, FunnelsQuery, LifecycleQuery, StickinessQuery, RetentionQuery, PathsQuery or ActorsQuery)",
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

/// Run a HogQL query, or a trends query, over the project's rows.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/query/",
    operation_id = "query_create",
    tag = "query",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = QueryBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The rows (HogQLQuery), the series (TrendsQuery, LifecycleQuery, StickinessQuery), the steps (FunnelsQuery), the cohorts (RetentionQuery), the edges (PathsQuery), the persons (ActorsQuery) or the events (EventsQuery)", body = QueryResponse),
        (status = 504, description = "The query ran longer than the query timeout and was cancelled"),
    )
)]
async fn query(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<QueryResponse>> {
    let project = key.path_project(&p, "query:read")?;
    if let Some(Value::Object(q)) = body.get("query") {
        let results = match q.get("kind").and_then(Value::as_str) {
            Some("FunnelsQuery") => Some(
                crate::query_insights::funnels_query(&state, project, q, &uri, &headers).await?,
            ),
            Some("LifecycleQuery") => {
                Some(crate::query_insights::lifecycle_query(&state, project, q).await?)
            }
            Some("StickinessQuery") => {
                Some(crate::query_insights::stickiness_query(&state, project, q).await?)
            }
            Some("RetentionQuery") => {
                Some(crate::query_insights::retention_query(&state, project, q).await?)
            }
            Some("PathsQuery") => {
                Some(crate::query_insights::paths_query(&state, project, q).await?)
            }
            Some("ActorsQuery") => {
                return Ok(Json(QueryResponse::Actors(
                    crate::actors_query::actors_query(&state, project, q).await?,
                )))
            }
            Some("EventsQuery") => {
                let spec = elide_app::analytics::events_query::EventsQuerySpec::parse(
                    q,
                    chrono::Utc::now(),
                )?;
                let persons = state.app().persons().clone();
                let a = run_app_query(&state, move |limits| async move {
                    elide_app::analytics::events_query::run(&persons, project, &spec, &limits)
                        .await
                        .map_err(user_sql_error)
                })
                .await?;
                return Ok(Json(QueryResponse::Events(a.into())));
            }
            _ => None,
        };
        if let Some(results) = results {
            return Ok(Json(QueryResponse::Trends(TrendsAnswer {
                results,
                is_cached: false,
                last_refresh: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                timezone: "UTC".into(),
            })));
        }
        if q.get("kind").and_then(Value::as_str) == Some("TrendsQuery") {
            let q = crate::query_insights::with_all_time(&state, project, q).await?;
            let spec = TrendsSpec::parse(&q, chrono::Utc::now())?;
            let persons = state.app().persons().clone();
            let spec2 = spec.clone();
            let counts = run_app_query(&state, move |limits| async move {
                trends::compute(&persons, project, &spec2, &limits).await
            })
            .await?;
            return Ok(Json(QueryResponse::Trends(TrendsAnswer {
                results: trends::results(&spec, &counts),
                is_cached: false,
                last_refresh: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                timezone: "UTC".into(),
            })));
        }
    }
    let sql = hogql_of(&body)?;
    let persons = state.app().persons().clone();
    let out = run_app_query(&state, move |limits| async move {
        run_hogql(&persons, project, &sql, &limits)
            .await
            .map_err(user_sql_error)
    })
    .await?;
    Ok(Json(QueryResponse::Rows(out.into())))
}

/// An internal error of DataFusion's on the user's own SQL (a function
/// given an argument it does not expect, as `array_resize` with a
/// negative size) is the query's to change: a 400, logged at error level
/// since it is the engine's fault too. Elsewhere (the SQL Elide writes
/// for analytics) an internal error stays a 500.
fn user_sql_error(e: AppError) -> AppError {
    use datafusion::error::DataFusionError as D;
    match &e {
        AppError::Query(q) => match q.find_root() {
            D::Internal(m) => {
                tracing::error!(error = %m, "internal error of the query engine on a user's SQL");
                AppError::InvalidQuery(format!("Internal error: {m}"))
            }
            _ => e,
        },
        _ => e,
    }
}

/// `date_from: all` of a chart (trends, lifecycle) as the time of the
/// project's first event ([`elide_app::analytics::all_time_from`]).
pub(crate) async fn all_time_from(state: &AppState, project: i64) -> ApiResult<String> {
    let persons = state.app().persons().clone();
    run_app_query(state, move |limits| async move {
        elide_app::analytics::all_time_from(&persons, project, &limits).await
    })
    .await
}

/// Run `work` on the query runtime under the server's query limits and
/// timeout (504 when it runs out; cancelled when the client goes away),
/// counting it in `elide_queries_total` and `elide_query_seconds`.
pub(crate) async fn run_app_query<T, F, W>(state: &AppState, work: W) -> ApiResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = elide_app::Result<T>> + Send + 'static,
    W: FnOnce(elide_app::query::QueryLimits) -> F,
{
    let mut limits = state.query_limits();
    let timeout = state.config().query_timeout;
    let started = Instant::now();
    // The deadline stops the work itself (between batches, at every
    // operator); the timeout bounds the waiting, for a slot included.
    let deadline = QueryDeadline::after(timeout);
    let _stop = CancelOnDrop(Arc::clone(&deadline));
    limits.deadline = Some(Arc::clone(&deadline));
    let task = match state
        .query_runtime()
        .spawn_in_slot(timeout, || work(limits))
        .await
    {
        Ok(task) => task,
        Err(e) => {
            if e.status == axum::http::StatusCode::GATEWAY_TIMEOUT {
                metrics::counter!("elide_queries_total", "outcome" => "timeout").increment(1);
            }
            return Err(e);
        }
    };
    // A timeout: the wait ended, or the query stopped at its deadline.
    // Any other error is the query's own, whenever it came.
    let out = match task.await {
        Ok(Err(_)) => None,
        Ok(Ok(Err(AppError::Query(e)))) if is_cancelled(&e) => None,
        Ok(Ok(r)) => Some(r),
        Err(e) => return Err(e.into()),
    };
    let Some(out) = out else {
        metrics::counter!("elide_queries_total", "outcome" => "timeout").increment(1);
        return Err(timed_out(timeout));
    };
    let outcome = if out.is_ok() { "ok" } else { "error" };
    metrics::counter!("elide_queries_total", "outcome" => outcome).increment(1);
    metrics::histogram!("elide_query_seconds").record(started.elapsed().as_secs_f64());
    Ok(out?)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::ServerConfig;

    /// A server state over a new data directory (kept by the caller)
    /// with one query slot and `timeout` per query.
    fn one_slot(timeout: Duration) -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = elide_app::App::open(elide_app::AppConfig::new(dir.path())).expect("open");
        let state = AppState::new(
            app,
            ServerConfig {
                query_concurrency: 1,
                query_timeout: timeout,
                ..ServerConfig::default()
            },
        )
        .expect("state");
        (dir, state)
    }

    /// A query runs only in a slot: while every slot is taken it waits,
    /// and past its timeout it is a 504 whose work never started; once a
    /// slot is free it runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_waits_for_a_slot_within_its_time() {
        let (_dir, state) = one_slot(Duration::from_millis(200));
        let ran = Arc::new(AtomicUsize::new(0));
        let run = |ran: Arc<AtomicUsize>| {
            let state = state.clone();
            async move {
                run_app_query(&state, move |_| async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            }
        };
        let held = state
            .query_runtime()
            .slot(Duration::from_secs(1))
            .await
            .expect("the one slot");
        let e = run(Arc::clone(&ran)).await.expect_err("no slot");
        assert_eq!(e.status, axum::http::StatusCode::GATEWAY_TIMEOUT);
        assert!(e.detail.contains("may run at once"), "{}", e.detail);
        assert_eq!(ran.load(Ordering::SeqCst), 0, "it ran without a slot");
        drop(held);
        run(Arc::clone(&ran)).await.expect("a free slot");
        // The slot went back with the query: another one runs too.
        run(Arc::clone(&ran)).await.expect("a free slot again");
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }

    /// A query whose client went away gives its slot back at once, not at
    /// the end of its time (an hour here: a query that never ends).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_whose_client_went_away_gives_its_slot_back() {
        let (_dir, state) = one_slot(Duration::from_secs(3600));
        let forever = run_app_query(&state, |_| std::future::pending::<elide_app::Result<()>>());
        // The client goes away: the handler's future is dropped.
        assert!(tokio::time::timeout(Duration::from_millis(100), forever)
            .await
            .is_err());
        let next = run_app_query(&state, |_| async { Ok(()) });
        tokio::time::timeout(Duration::from_secs(60), next)
            .await
            .expect("the slot never came back")
            .expect("the next query runs");
    }
}
