//! `GET …/persons/{id}/export/`: the subject-access export of one person
//! (an Elide addition; scope `person:read`). See `elide_app::export` for
//! the formats and `elide_persons::export` for what is in it.

use super::*;

use std::io::{Read, Seek};
use std::sync::Arc;

use elide_app::export::{ExportFormat, ExportWriter};
use elide_persons::export::ExportSink;
use elide_query::deadline::QueryDeadline;

use crate::query::CancelOnDrop;

/// The export's sink, stopped at its next call once `stop` has passed:
/// the request's time ran out, or its future was dropped (the client
/// went away), which cancels it. The blocking call that writes the export
/// cannot be cancelled otherwise, and would go on reading the person's
/// rows to the end.
struct StopWhenGone<'a> {
    inner: &'a mut dyn ExportSink,
    stop: &'a QueryDeadline,
}

impl StopWhenGone<'_> {
    fn check(&self) -> elide_store::Result<()> {
        if self.stop.passed() {
            return Err(elide_store::StoreError::Unavailable(
                "the client went away or the request's time ran out; the export stopped".into(),
            ));
        }
        Ok(())
    }
}

impl ExportSink for StopWhenGone<'_> {
    fn person(&mut self, meta: &elide_persons::export::PersonExport) -> elide_persons::Result<()> {
        self.check()?;
        self.inner.person(meta)
    }

    fn rows(
        &mut self,
        table: elide_store::Table,
        batch: arrow::record_batch::RecordBatch,
    ) -> elide_store::Result<()> {
        self.check()?;
        self.inner.rows(table, batch)
    }
}

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
    // Either stops at its next batch if the client goes away meanwhile,
    // or the request's time runs out.
    let stop = QueryDeadline::after(state.config().request_timeout);
    let _stop_when_dropped = CancelOnDrop(Arc::clone(&stop));
    if dry_run {
        // The export read, with the rows counted and dropped.
        let rows = blocking(move || {
            let mut sink = StopWhenGone {
                inner: &mut elide_persons::export::Discard,
                stop: &stop,
            };
            Ok(app.persons().export(project, &id, &[], &mut sink)?)
        })
        .await?;
        return Ok(
            Json(json!({"rows": rows.total(), "parts": rows.parts, "by_table": rows.rows}))
                .into_response(),
        );
    }
    // Written whole before the answer starts, so that it is complete or
    // an error; to an unnamed temporary file rather than memory (a person
    // may have millions of events), which nothing outlives, not even a
    // crash: the system removes it when the answer has been sent.
    let (uuid, file, len) = blocking(move || {
        let io = |e: std::io::Error| ApiError::internal(&format!("spooling the export: {e}"));
        // In the data directory's `tmp/` (sized for data), else (an
        // object store, a directory this process may not write) the
        // system's temporary directory.
        let in_data_dir = app.store().storage().local_root().and_then(|root| {
            let dir = root.join(elide_store::SPOOL_DIR);
            std::fs::create_dir_all(&dir)
                .and_then(|_| tempfile::tempfile_in(&dir))
                .map_err(|e| {
                    tracing::debug!(dir = %dir.display(), error = %e, "person export: spooling to the system's temporary directory instead");
                })
                .ok()
        });
        let file = match in_data_dir {
            Some(f) => f,
            None => tempfile::tempfile().map_err(io)?,
        };
        let mut w = ExportWriter::new(format, std::io::BufWriter::new(file));
        app.persons().export(
            project,
            &id,
            &[],
            &mut StopWhenGone {
                inner: &mut w,
                stop: &stop,
            },
        )?;
        let uuid = app.persons().get(project, &id)?.uuid;
        let mut file = w.finish()?.into_inner().map_err(|e| io(e.into_error()))?;
        let len = file.stream_position().map_err(io)?;
        file.rewind().map_err(io)?;
        Ok((uuid, file, len))
    })
    .await?;
    let body =
        axum::body::Body::from_stream(futures::stream::try_unfold(file, |mut file| async move {
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                let mut chunk = vec![0u8; 256 << 10];
                let n = file.read(&mut chunk)?;
                chunk.truncate(n);
                Ok::<_, std::io::Error>((file, chunk))
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok::<_, std::io::Error>(
                (!chunk.is_empty()).then(|| (axum::body::Bytes::from(chunk), file)),
            )
        }));
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
            (axum::http::header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the batches it is given.
    struct Counting(usize);

    impl ExportSink for Counting {
        fn person(&mut self, _: &elide_persons::export::PersonExport) -> elide_persons::Result<()> {
            Ok(())
        }
        fn rows(
            &mut self,
            _: elide_store::Table,
            _: arrow::record_batch::RecordBatch,
        ) -> elide_store::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    /// Batches pass while the client is there; once the handler's guard
    /// is dropped, the next one stops the export and reaches nothing.
    #[test]
    fn the_export_stops_at_its_next_batch_once_the_client_went_away() {
        let stop = QueryDeadline::after(std::time::Duration::from_secs(3600));
        let guard = CancelOnDrop(Arc::clone(&stop));
        let mut inner = Counting(0);
        let batch = || {
            arrow::record_batch::RecordBatch::new_empty(elide_store::Table::Events.def().schema())
        };
        let mut sink = StopWhenGone {
            inner: &mut inner,
            stop: &stop,
        };
        sink.rows(elide_store::Table::Events, batch())
            .expect("the client is there");
        drop(guard);
        let e = sink
            .rows(elide_store::Table::Events, batch())
            .expect_err("the client went away");
        assert!(e.to_string().contains("went away"), "{e}");
        assert_eq!(inner.0, 1);
    }
}
