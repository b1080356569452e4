//! Session recordings: `$snapshot` events (from `/s/` or any capture
//! batch) are stored in the store's `recordings` table, one row per event,
//! so that a person's deletion with `delete_recordings` deletes something
//! real; `GET …/session_recordings/?person_uuid=` lists a person's
//! recordings (one per session id).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use elide_persons::capture::CaptureEvent;
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult};

/// Why a `$snapshot` event cannot be stored (`Err`), checked before it
/// reaches the committer.
pub fn check(e: &CaptureEvent) -> Result<(), String> {
    match e.properties.get("$session_id").and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() && !s.contains('\0') => {}
        _ => return Err("a $snapshot event needs a non-empty properties.$session_id".into()),
    }
    match e.properties.get("$snapshot_data") {
        None | Some(Value::Null) => Err("a $snapshot event needs properties.$snapshot_data".into()),
        Some(_) => Ok(()),
    }
}

/// The `recordings` rows of `$snapshot` events of `project`.
pub fn rows(project: i64, events: &[&CaptureEvent]) -> ApiResult<RecordBatch> {
    let n = events.len();
    let mut uuid = StringBuilder::with_capacity(n, n * 36);
    let mut session = StringBuilder::with_capacity(n, n * 16);
    let mut window = StringBuilder::with_capacity(n, n * 16);
    let mut did = StringBuilder::with_capacity(n, n * 16);
    let mut proj = Int64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut data = StringBuilder::with_capacity(n, n * 256);
    let now = chrono::Utc::now().timestamp_micros();
    for e in events {
        check(e).map_err(ApiError::invalid)?;
        uuid.append_option(e.uuid.as_deref());
        session.append_option(e.properties.get("$session_id").and_then(Value::as_str));
        window.append_option(e.properties.get("$window_id").and_then(Value::as_str));
        did.append_value(&e.distinct_id);
        proj.append_value(project);
        ts.append_value(e.timestamp_us.unwrap_or(now));
        let snapshot = e
            .properties
            .get("$snapshot_data")
            .map(Value::to_string)
            .unwrap_or_default();
        data.append_value(snapshot);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("uuid", DataType::Utf8, true),
        Field::new("session_id", DataType::Utf8, false),
        Field::new("window_id", DataType::Utf8, true),
        Field::new("distinct_id", DataType::Utf8, false),
        Field::new("project_id", DataType::Int64, false),
        Field::new("timestamp", elide_store::schema::timestamp_type(), false),
        Field::new("snapshot_data", DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(uuid.finish()),
        Arc::new(session.finish()),
        Arc::new(window.finish()),
        Arc::new(did.finish()),
        Arc::new(proj.finish()),
        Arc::new(ts.finish()),
        Arc::new(data.finish()),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| ApiError::internal(&e))
}

/// Query of the recordings listing.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this person's recordings (UUID).
    person_uuid: Option<String>,
    /// Most recordings to list, 1 to 10000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// The person of a recording, when the listing asked for one.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingPerson {
    /// The person's UUID.
    pub uuid: String,
}

/// One recording: the `$snapshot` events of one session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recording {
    /// The distinct id that sent it.
    pub distinct_id: String,
    /// Time of the last snapshot (RFC 3339).
    pub end_time: String,
    /// The session id.
    pub id: String,
    /// The person, when listed by `person_uuid` (else null).
    #[schema(required)]
    pub person: Option<RecordingPerson>,
    /// Seconds from the first snapshot to the last.
    pub recording_duration: i64,
    /// Snapshot events.
    pub snapshot_count: i64,
    /// Time of the first snapshot (RFC 3339).
    pub start_time: String,
}

/// A page of recordings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingPage {
    /// Whether more recordings than `limit` exist.
    pub has_next: bool,
    /// The recordings, newest first.
    pub results: Vec<Recording>,
}

/// `GET …/session_recordings/?person_uuid=`: a person's recordings (one
/// per session), newest first; without `person_uuid`, the project's.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/session_recordings/",
    operation_id = "session_recordings_list",
    tag = "session recordings",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ListQuery,
    ),
    responses(
        (status = 200, description = "A page of recordings", body = RecordingPage),
    )
)]
pub async fn list(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    key: crate::auth::Key,
    crate::extract::PathParams(p): crate::extract::PathParams,
    crate::extract::Q(q): crate::extract::Q<ListQuery>,
) -> ApiResult<axum::Json<RecordingPage>> {
    use arrow::array::{Array, AsArray};
    let project = key.path_project(&p, "person:read")?;
    let limit: usize = crate::extract::number(q.limit.as_deref(), "limit", 100)?;
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            "limit must be between 1 and 10000",
        ));
    }
    let app = state.app().clone();
    let person = q.person_uuid.clone().filter(|u| !u.is_empty());
    if let Some(u) = &person {
        if uuid::Uuid::parse_str(u).is_err() {
            return Err(ApiError::invalid_attr(
                "person_uuid",
                "invalid",
                "Must be a valid UUID.",
            ));
        }
    }
    // The person's rows, as its export reads them: never another
    // holder's rows of an id it had or has.
    let ids: Option<Vec<elide_persons::IdRows>> = match person.clone() {
        None => None,
        Some(u) => {
            let a = app.clone();
            Some(
                crate::extract::blocking(move || Ok(a.persons().rows_of_person(project, &u)?))
                    .await?,
            )
        }
    };
    if ids.as_ref().is_some_and(Vec::is_empty) {
        return Ok(axum::Json(RecordingPage {
            has_next: false,
            results: Vec::new(),
        }));
    }
    // Over the project's own rows (the providers filter by project), on
    // the query runtime with the query timeout.
    let store = app.store().clone();
    let memory = Some(state.config().query_memory_bytes);
    let batches = crate::query::on_query_runtime(&state, move |deadline| async move {
        sessions(&store, project, ids, limit + 1, memory, deadline).await
    })
    .await?;
    let mut results = Vec::new();
    for b in &batches {
        let text = |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8);
        let (sid, did) = (text(0), text(1));
        let (Ok(sid), Ok(did)) = (sid, did) else {
            continue;
        };
        let (sid, did) = (
            sid.as_string::<i32>().clone(),
            did.as_string::<i32>().clone(),
        );
        let start = b
            .column(2)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let end = b
            .column(3)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let count = b.column(4).as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            if sid.is_null(i) {
                continue;
            }
            results.push(Recording {
                distinct_id: did.value(i).to_string(),
                end_time: elide_persons::persons::iso(end.value(i)),
                id: sid.value(i).to_string(),
                person: person.as_ref().map(|u| RecordingPerson { uuid: u.clone() }),
                recording_duration: end.value(i).saturating_sub(start.value(i)) / 1_000_000,
                snapshot_count: count.value(i),
                start_time: elide_persons::persons::iso(start.value(i)),
            });
        }
    }
    let has_next = results.len() > limit;
    results.truncate(limit);
    Ok(axum::Json(RecordingPage { has_next, results }))
}

/// One row per session of the project's recordings (of `ids` only, when
/// given): session id, a distinct id, first and last time, snapshot count;
/// newest first, at most `limit`; within the query memory cap, stopped at
/// `deadline`.
async fn sessions(
    store: &elide_store::Store,
    project: i64,
    ids: Option<Vec<elide_persons::IdRows>>,
    limit: usize,
    memory_bytes: Option<usize>,
    deadline: std::sync::Arc<elide_query::deadline::QueryDeadline>,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    use datafusion::functions_aggregate::expr_fn::{count, max, min};
    use datafusion::prelude::{col, lit};
    let ctx = elide_query::project_session_context(store, project, memory_bytes)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    let ctx = elide_query::deadline::with_deadline(ctx, deadline);
    let mut df = ctx.table("recordings").await?;
    if let Some(rows) = ids.and_then(elide_app::sql::person_rows_filter) {
        df = df.filter(rows)?;
    }
    df.aggregate(
        vec![col("session_id")],
        vec![
            min(col("distinct_id")).alias("distinct_id"),
            min(col("timestamp")).alias("start_time"),
            max(col("timestamp")).alias("end_time"),
            count(lit(1)).alias("snapshots"),
        ],
    )?
    .sort(vec![
        col("start_time").sort(false, true),
        col("session_id").sort(true, true),
    ])?
    .limit(0, Some(limit))?
    .collect()
    .await
}
