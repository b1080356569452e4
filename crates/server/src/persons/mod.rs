//! The persons API, PostHog's `PersonViewSet`, under
//! `/api/projects/{project}/persons/`, `/api/environments/{project}/persons/`
//! and the legacy `/api/person/` (the key's project). Shapes, statuses and
//! validation messages follow PostHog (`posthog-semantics.md` §1); where
//! Elide differs, `docs/api.md` says so.
//!
//! Scopes: reads `person:read`, writes `person:write`, activity
//! `activity_log:read`. Deletions count against the deletion rate limit.
//!
//! Each handler carries its OpenAPI operation (`#[utoipa::path]`) under
//! `/api/projects/{project_id}/persons/…`; [`crate::openapi`] copies them
//! to `/api/environments/…`. The legacy `/api/person/…` routes (the key's
//! project, same handlers) are served but left out of the document; only
//! `/api/person.csv`, which has no other form, is in it.
//!
//! | module | routes |
//! |---|---|
//! | [`read`] | list, retrieve, CSV, batch lookups, values, timeline, activity, cohorts |
//! | [`crate::analytics`] | `funnel/`, `funnel/correlation/`, `lifecycle/`, `stickiness/`, `trends/` |
//! | [`write`] | PATCH/PUT, `update_property`, `delete_property`, `split` |
//! | [`deletion`] | DELETE, `bulk_delete`, `delete_events`, `delete_recordings`, `deletion_status`, `reset_person_distinct_id` |
//! | [`export`] | `{id}/export/`: the subject-access export (an Elide addition) |

use std::collections::HashMap;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use elide_persons::{DeletePersons, DeletionState, PersonFilter, PropertyFilter, SplitSpec};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::IntoParams;

use crate::auth::{Key, Limit};
use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, number, page_url, present, JsonBody, PathParams, Q};
use crate::views::{
    csv, ActivityEntry, ActivityPage, BatchPersons, BulkDeleteAnswer, BulkDeleteBody,
    DeletePropertyBody, DeletionStatusPage, DeletionStatusView, DistinctIdsBody, ListedPerson,
    MinimalPerson, PersonPage, PersonUpdateBody, PropertyValue, PropertyValues,
    ResetDistinctIdBody, RetrievedPerson, SplitBody, Success, Timeline, UpdatePropertyBody,
    UuidsBody,
};
use crate::AppState;

pub(crate) mod deletion;
pub(crate) mod export;
pub(crate) mod read;
pub(crate) mod write;

use deletion::*;
use export::export;
use read::*;
use write::*;

/// Route paths of a person collection, relative to a prefix, with and
/// without PostHog's trailing slash.
fn both(
    r: Router<AppState>,
    path: &str,
    m: axum::routing::MethodRouter<AppState>,
) -> Router<AppState> {
    r.route(path, m.clone()).route(&format!("{path}/"), m)
}

/// The persons routes under every prefix.
pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in [
        "/api/projects/{project}/persons",
        "/api/environments/{project}/persons",
        "/api/person",
    ] {
        let p = |s: &str| format!("{prefix}{s}");
        r = both(r, &p(""), get(list).post(create_refused));
        r = both(r, &p("/bulk_delete"), post(bulk_delete));
        r = both(r, &p("/deletion_status"), get(deletion_status));
        r = both(r, &p("/reset_person_distinct_id"), post(reset));
        r = both(r, &p("/batch_by_distinct_ids"), post(batch_by_distinct_ids));
        r = both(r, &p("/batch_by_uuids"), post(batch_by_uuids));
        r = both(r, &p("/values"), get(values));
        r = both(r, &p("/cohorts"), get(crate::cohorts::of_person));
        r = both(r, &p("/activity"), get(project_activity));
        r = both(
            r,
            &p("/funnel"),
            get(crate::analytics::persons_funnel).post(crate::analytics::persons_funnel),
        );
        r = both(
            r,
            &p("/funnel/correlation"),
            get(crate::analytics::persons_funnel_correlation)
                .post(crate::analytics::persons_funnel_correlation),
        );
        r = both(
            r,
            &p("/lifecycle"),
            get(crate::analytics::persons_lifecycle),
        );
        r = both(
            r,
            &p("/stickiness"),
            get(crate::analytics::persons_stickiness).post(crate::analytics::persons_stickiness),
        );
        r = both(
            r,
            &p("/trends"),
            get(crate::analytics::persons_trends).post(crate::analytics::persons_trends),
        );
        r = both(
            r,
            &p("/{id}"),
            get(retrieve).put(update).patch(update).delete(destroy),
        );
        r = both(r, &p("/{id}/delete_events"), post(delete_events));
        r = both(r, &p("/{id}/delete_recordings"), post(delete_recordings));
        r = both(r, &p("/{id}/delete_property"), post(delete_property));
        r = both(r, &p("/{id}/update_property"), post(update_property));
        r = both(r, &p("/{id}/split"), post(split));
        r = both(r, &p("/{id}/properties_timeline"), get(timeline));
        r = both(r, &p("/{id}/activity"), get(person_activity));
        r = both(r, &p("/{id}/export"), get(export));
    }
    r = r.route("/api/person.csv", get(list_csv));
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        r = both(
            r,
            &format!("{prefix}/session_recordings"),
            get(crate::recordings::list),
        );
    }
    r
}

/// The project of a `…/persons/{id}/…` path (checked against the key
/// and `scope`) and the person id in it (checked for shape).
fn person_target(key: &Key, p: &HashMap<String, String>, scope: &str) -> ApiResult<(i64, String)> {
    let project = key.path_project(p, scope)?;
    let id = person_param(p)?;
    check_person_id(&id)?;
    Ok((project, id))
}

fn person_param(p: &HashMap<String, String>) -> ApiResult<String> {
    p.get("id").cloned().ok_or_else(ApiError::not_found)
}

/// A person path id must be an integer id or a UUID (PostHog's 400).
fn check_person_id(id: &str) -> ApiResult<()> {
    if id.parse::<i64>().is_ok() || uuid::Uuid::parse_str(id).is_ok() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "The ID provided does not look like a personID. If you are using a distinctId, please use /persons?distinct_id={id} instead."
        )))
    }
}
