//! `GET …/persons/{id}/export/`: the subject-access export of one person
//! (an Elide addition; scope `person:read`). See `elide_app::export` for
//! the formats and `elide_persons::export` for what is in it.

use super::*;

use elide_app::export::{ExportFormat, ExportWriter};

/// Everything held about one person: profile, distinct ids, merged
/// persons, activity, and every event and recording row of its ids.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/{id}/export/",
    operation_id = "persons_export",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
        ("format" = Option<String>, Query, description = "`ndjson` (default) or `parquet`."),
        ("dry_run" = Option<bool>, Query, description = "`true`: only count the rows (what deleting the person would hide), as JSON."),
    ),
    responses(
        (status = 200, description = "The export (application/x-ndjson or application/vnd.apache.parquet), or with dry_run the counts as JSON"),
    )
)]
pub(crate) async fn export(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let (project, id) = person_target(&key, &p, "person:read")?;
    let mut format = ExportFormat::Ndjson;
    let mut dry_run = false;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "format" => {
                format = ExportFormat::parse(&v).ok_or_else(|| {
                    ApiError::invalid_attr(
                        "format",
                        "invalid_choice",
                        format!("\"{v}\" is not a valid choice."),
                    )
                })?
            }
            "dry_run" => {
                dry_run = match v.as_ref() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::invalid_attr(
                            "dry_run",
                            "invalid",
                            "Must be a valid boolean.",
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    let app = state.app().clone();
    if dry_run {
        let rows = blocking(move || Ok(app.persons().export_counts(project, &id)?)).await?;
        return Ok(
            Json(json!({"rows": rows.total(), "parts": rows.parts, "by_table": rows.rows}))
                .into_response(),
        );
    }
    // Buffered: one person's data; the answer is complete or an error.
    let (uuid, body) = blocking(move || {
        let mut w = ExportWriter::new(format, Vec::new());
        app.persons().export(project, &id, &[], &mut w)?;
        let uuid = app.persons().get(project, &id)?.uuid;
        Ok((uuid, w.finish()?))
    })
    .await?;
    let (ctype, ext) = match format {
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
        ExportFormat::Parquet => ("application/vnd.apache.parquet", "parquet"),
    };
    Ok((
        StatusCode::OK,
        [
            (axum::http::header::CONTENT_TYPE, ctype.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"person-{uuid}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}
