//! The OpenAPI 3 document of the API, served at `GET /api/schema/` (and
//! `/api/schema`, no key needed) as JSON, built once.
//!
//! This module owns the document and its route; each handler owns its
//! operation (`#[utoipa::path]`: path, parameters, body, success and
//! specific statuses) and the types of its answers (`ToSchema`). The
//! document is assembled from those, then [`Complete`] adds what the
//! handlers share:
//!
//! * **copies**: the `/batch/` operations (GET, POST) go to every capture
//!   path, each with an OPTIONS operation (200, no body); then
//!   every `/api/projects/…` path to `/api/environments/…` (same
//!   handlers; operation ids prefixed `environments_`);
//! * **errors**: each status an operation can answer and does not list
//!   (for `/api/` operations 400, 401, 403, 404, 405, 408, 413, 415, 429,
//!   500, 503, 504; for capture 400, 401, 408, 413, 500, 503; elsewhere
//!   408, 500), and PostHog's envelope `ApiErrorBody` as the body of every
//!   error answer that has one (408 and 415 come from middleware, empty);
//!   429 documents `Retry-After`;
//! * **security**: the `personal_api_key` bearer scheme on every `/api/`
//!   operation but the schema's own;
//! * **operation ids** made unique (an operation serving several methods
//!   gets the method as suffix).
//!
//! Left out: the legacy `/api/person/…` routes, which serve the persons
//! handlers for the key's project (`/api/projects/@current/persons/…`
//! under another name); `/api/person.csv`, which has no other form, is in.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, OperationBuilder, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema};

use crate::error::{ApiError, Envelope};
use crate::AppState;

/// Where the document is served (and left out of authentication).
pub const SCHEMA_PATH: &str = "/api/schema/";

/// Name of the error envelope's schema.
pub const ERROR_SCHEMA: &str = "ApiErrorBody";

/// Name of the bearer security scheme.
pub const SECURITY_SCHEME: &str = "personal_api_key";

/// Statuses every `/api/` operation may answer.
const API_ERRORS: &[u16] = &[400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503, 504];
/// Statuses every capture operation may answer.
const CAPTURE_ERRORS: &[u16] = &[400, 401, 408, 413, 500, 503];
/// Statuses any other operation may answer.
const OTHER_ERRORS: &[u16] = &[408, 500];

/// The document's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/schema", get(serve_document))
        .route(SCHEMA_PATH, get(serve_document))
}

/// This document: the API as OpenAPI 3.1 (JSON).
#[utoipa::path(
    get,
    path = "/api/schema/",
    operation_id = "schema_retrieve",
    tag = "schema",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object),
    )
)]
async fn serve_document() -> Response {
    match document_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

/// The document (built on first use).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as JSON text (serialized on first use).
fn document_json() -> Result<&'static str, &'static str> {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_string(document()).map_err(|e| e.to_string()))
        .as_ref()
        .map(String::as_str)
        .map_err(String::as_str)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        crate::capture::capture,
        crate::persons::read::list,
        crate::persons::read::create_refused,
        crate::persons::read::retrieve,
        crate::persons::write::update,
        crate::persons::deletion::destroy,
        crate::persons::deletion::bulk_delete,
        crate::persons::deletion::deletion_status,
        crate::persons::deletion::reset,
        crate::persons::read::batch_by_distinct_ids,
        crate::persons::read::batch_by_uuids,
        crate::persons::read::values,
        crate::cohorts::of_person,
        crate::cohorts::list,
        crate::cohorts::write::create,
        crate::cohorts::retrieve,
        crate::cohorts::write::update,
        crate::cohorts::write::destroy,
        crate::cohorts::persons,
        crate::cohorts::write::add_persons,
        crate::cohorts::write::remove_person,
        crate::persons::read::project_activity,
        crate::analytics::persons_trends,
        crate::analytics::persons_funnel,
        crate::analytics::persons_stickiness,
        crate::analytics::persons_lifecycle,
        crate::analytics::insights_funnel,
        crate::analytics::persons_funnel_correlation,
        crate::analytics::insights_funnel_correlation,
        crate::analytics::insights_trend,
        crate::persons::deletion::delete_events,
        crate::persons::deletion::delete_recordings,
        crate::persons::write::delete_property,
        crate::persons::write::update_property,
        crate::persons::write::split,
        crate::persons::read::timeline,
        crate::persons::read::person_activity,
        crate::persons::read::list_csv,
        crate::persons::export::export,
        crate::recordings::list,
        crate::events::list,
        crate::events::retrieve,
        crate::events::values,
        crate::definitions::list,
        crate::definitions::retrieve,
        crate::definitions::properties,
        crate::projects::list,
        crate::projects::create,
        crate::projects::retrieve,
        crate::projects::update,
        crate::projects::destroy,
        crate::projects::list_keys,
        crate::projects::create_key,
        crate::projects::revoke_key,
        crate::query::query,
        crate::deletions::delete_events,
        crate::deletions::list,
        crate::deletions::retrieve,
        crate::deletions::cancel,
        crate::deletions::receipt,
        crate::ops::health,
        crate::ops::ready,
        crate::ops::metrics_text,
        serve_document,
    ),
    modifiers(&Complete),
    tags(
        (name = "capture", description = "PostHog's capture endpoints: events in, authenticated by the project token in the payload"),
        (name = "persons", description = "PostHog's persons API: list, look up, change, split and delete persons"),
        (name = "session recordings", description = "Recordings captured as `$snapshot` events"),
        (name = "events", description = "PostHog's events list and one event by UUID, deletions applied"),
        (name = "definitions", description = "The event names and property names of a project's events and persons (PostHog's definitions), from the data themselves"),
        (name = "projects", description = "Projects (PostHog's teams)"),
        (name = "personal API keys", description = "The project's personal API keys"),
        (name = "query", description = "HogQL, the insight query kinds and the persons of their points, over the project's rows"),
        (name = "analytics", description = "Funnels, correlation, lifecycle, and the persons of funnels, correlation, lifecycle, stickiness and trends, counting persons through their current identity (a deleted person never counts)"),
        (name = "cohorts", description = "Static lists of persons and dynamic definitions evaluated when asked (a deleted person is never a member)"),
        (name = "deletions", description = "Elide's erasure beyond persons: deleting events by predicate, and the deletion feed"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "schema", description = "This document"),
    )
)]
struct ApiDoc;

/// Completes the document assembled from the handlers (see the module
/// docs).
#[derive(Debug)]
pub struct Complete;

impl Modify for Complete {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.title = "Elide".into();
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.info.description = Some(
            "PostHog's API as Elide serves it: capture, persons (with deletion status), \
             session recordings, projects, personal API keys and HogQL query, with PostHog's \
             paths, shapes, statuses and error envelope. `docs/api.md` lists where Elide \
             differs from PostHog."
                .into(),
        );
        copy_capture(doc);
        copy_environments(doc);
        let components = doc.components.get_or_insert_with(Default::default);
        components.schemas.insert(
            ERROR_SCHEMA.into(),
            <Envelope<'static> as PartialSchema>::schema(),
        );
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("phx_…")
                    .description(Some(
                        "A personal API key (`Authorization: Bearer phx_…`) of the project in \
                         the path, with the route's scope.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/") && path != SCHEMA_PATH;
            let statuses = if api {
                API_ERRORS
            } else if is_capture(path) {
                CAPTURE_ERRORS
            } else {
                OTHER_ERRORS
            };
            for (_, op) in operations_mut(item) {
                add_errors(op, statuses);
                if api {
                    op.security = Some(vec![SecurityRequirement::new(
                        SECURITY_SCHEME,
                        Vec::<String>::new(),
                    )]);
                }
            }
        }
        unique_operation_ids(doc);
    }
}

/// The operations of a path item, with their methods.
fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("get", &item.get),
        ("put", &item.put),
        ("post", &item.post),
        ("delete", &item.delete),
        ("options", &item.options),
        ("head", &item.head),
        ("patch", &item.patch),
        ("trace", &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
}

/// [`operations`], to change.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
}

/// A capture path of the document (`/batch/`, …).
fn is_capture(path: &str) -> bool {
    crate::capture::CAPTURE_ROUTES
        .iter()
        .any(|r| path.strip_prefix(r) == Some("/"))
}

/// Copy `item` to `path`, every operation id set by `id`.
fn insert_copy(
    doc: &mut utoipa::openapi::OpenApi,
    path: String,
    mut item: PathItem,
    id: impl Fn(&str) -> String,
) {
    for (_, op) in operations_mut(&mut item) {
        op.operation_id = Some(id(op.operation_id.as_deref().unwrap_or("")));
    }
    doc.paths.paths.insert(path, item);
}

/// The `/batch/` operations on every capture path (GET without a body),
/// each with OPTIONS.
fn copy_capture(doc: &mut utoipa::openapi::OpenApi) {
    let Some(mut source) = doc.paths.paths.get("/batch/").cloned() else {
        return;
    };
    if let Some(get) = source.get.as_mut() {
        get.request_body = None;
    }
    source.options = Some(
        OperationBuilder::new()
            .tag("capture")
            .summary(Some("CORS preflight"))
            .response(
                "200",
                utoipa::openapi::Response::new("Always, with no body"),
            )
            .build(),
    );
    for route in crate::capture::CAPTURE_ROUTES {
        let slug = route.trim_matches('/').replace('/', "_");
        insert_copy(doc, format!("{route}/"), source.clone(), |_| {
            format!("capture_{slug}")
        });
    }
}

/// Every `/api/projects/…` path under `/api/environments/…` too.
fn copy_environments(doc: &mut utoipa::openapi::OpenApi) {
    let copies: Vec<(String, PathItem)> = doc
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            path.strip_prefix("/api/projects/")
                .map(|rest| (format!("/api/environments/{rest}"), item.clone()))
        })
        .collect();
    for (path, item) in copies {
        insert_copy(doc, path, item, |id| format!("environments_{id}"));
    }
}

/// A generic answer of `status`.
fn error_response(status: u16) -> utoipa::openapi::Response {
    let description = match status {
        400 => "Invalid input: PostHog's validation message, `attr` naming the field",
        401 => "No personal API key, or not a valid one (capture: no valid project token)",
        403 => "The key lacks the route's scope",
        404 => "Not found; also any project other than the key's",
        405 => "Method not allowed",
        408 => "The request took longer than the request timeout",
        413 => "The body is too large",
        415 => "Unsupported `Content-Encoding` (only gzip is read)",
        429 => "Rate limited: retry after `Retry-After` seconds",
        500 => "Server error (logged; the answer does not describe it)",
        503 => "The store cannot serve now; retry later",
        504 => "The query ran out of time",
        _ => "Error",
    };
    utoipa::openapi::Response::new(description)
}

/// Add the generic answers of `statuses` that `op` does not list, the
/// envelope as the body of every error answer that has one, and
/// `Retry-After` on 429.
fn add_errors(op: &mut Operation, statuses: &[u16]) {
    let responses = &mut op.responses.responses;
    for s in statuses {
        responses
            .entry(s.to_string())
            .or_insert_with(|| RefOr::T(error_response(*s)));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(r) = response else { continue };
        let error = status.starts_with('4') || status.starts_with('5');
        if error && r.content.is_empty() {
            r.content.insert(
                "application/json".into(),
                Content::new(Some(Ref::from_schema_name(ERROR_SCHEMA))),
            );
        }
        if status == "429" {
            r.headers.entry("Retry-After".into()).or_insert_with(|| {
                let mut h = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
                h.description = Some("Seconds until the key may send again.".into());
                h
            });
        }
    }
}

/// Suffix the method to every operation id that several operations share.
fn unique_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for item in doc.paths.paths.values() {
        for (_, op) in operations(item) {
            if let Some(id) = &op.operation_id {
                *counts.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        for (method, op) in operations_mut(item) {
            if let Some(id) = &op.operation_id {
                if counts.get(id).is_some_and(|n| *n > 1) {
                    op.operation_id = Some(format!("{id}_{method}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the router, as registered (without the trailing
    /// slash every one also has), with its methods. The legacy
    /// `/api/person/…` routes are left out of the document; their
    /// `/api/projects/…` forms are here.
    const ROUTES: &[(&str, &str)] = &[
        ("get post", "/api/projects/{project}/persons"),
        ("post", "/api/projects/{project}/persons/bulk_delete"),
        ("get", "/api/projects/{project}/persons/deletion_status"),
        (
            "post",
            "/api/projects/{project}/persons/reset_person_distinct_id",
        ),
        (
            "post",
            "/api/projects/{project}/persons/batch_by_distinct_ids",
        ),
        ("post", "/api/projects/{project}/persons/batch_by_uuids"),
        ("get", "/api/projects/{project}/persons/values"),
        ("get", "/api/projects/{project}/persons/cohorts"),
        ("get post", "/api/projects/{project}/cohorts"),
        ("get patch delete", "/api/projects/{project}/cohorts/{id}"),
        ("get", "/api/projects/{project}/cohorts/{id}/persons"),
        (
            "patch",
            "/api/projects/{project}/cohorts/{id}/add_persons_to_static_cohort",
        ),
        (
            "patch",
            "/api/projects/{project}/cohorts/{id}/remove_person_from_static_cohort",
        ),
        ("get", "/api/projects/{project}/persons/activity"),
        ("get post", "/api/projects/{project}/persons/funnel"),
        (
            "get post",
            "/api/projects/{project}/persons/funnel/correlation",
        ),
        ("get", "/api/projects/{project}/persons/lifecycle"),
        ("get post", "/api/projects/{project}/persons/trends"),
        ("get post", "/api/projects/{project}/persons/stickiness"),
        (
            "get put patch delete",
            "/api/projects/{project}/persons/{id}",
        ),
        ("post", "/api/projects/{project}/persons/{id}/delete_events"),
        (
            "post",
            "/api/projects/{project}/persons/{id}/delete_recordings",
        ),
        (
            "post",
            "/api/projects/{project}/persons/{id}/delete_property",
        ),
        (
            "post",
            "/api/projects/{project}/persons/{id}/update_property",
        ),
        ("post", "/api/projects/{project}/persons/{id}/split"),
        (
            "get",
            "/api/projects/{project}/persons/{id}/properties_timeline",
        ),
        ("get", "/api/projects/{project}/persons/{id}/activity"),
        ("get", "/api/projects/{project}/session_recordings"),
        ("get", "/api/projects/{project}/events"),
        ("get", "/api/projects/{project}/events/{id}"),
        ("get", "/api/projects/{project}/event_definitions"),
        ("get", "/api/projects/{project}/event_definitions/{id}"),
        ("get", "/api/projects/{project}/property_definitions"),
        ("post", "/api/projects/{project}/query"),
        ("get post", "/api/projects/{project}/insights/funnel"),
        (
            "get post",
            "/api/projects/{project}/insights/funnel/correlation",
        ),
        ("get post", "/api/projects/{project}/insights/trend"),
        ("get post", "/api/projects"),
        ("get put patch delete", "/api/projects/{project}"),
        ("get post", "/api/projects/{project}/personal_api_keys"),
        ("delete", "/api/projects/{project}/personal_api_keys/{key}"),
        ("get", "/_health"),
        ("get", "/_ready"),
        ("get", "/metrics"),
        ("get", "/api/schema"),
    ];

    /// The document's form of a router path.
    fn documented(route: &str) -> String {
        let p = route
            .replace("{project}", "{project_id}")
            .replace("{key}", "{key_id}");
        if p.starts_with("/api/") || is_capture(&format!("{p}/")) {
            format!("{p}/")
        } else {
            p
        }
    }

    fn operation<'a>(path: &str, method: &str) -> Option<&'a Operation> {
        let item = document().paths.paths.get(path)?;
        operations(item)
            .find(|(m, _)| *m == method)
            .map(|(_, op)| op)
    }

    #[test]
    fn every_route_is_documented() {
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(methods, route)| (methods.to_string(), documented(route)))
            .collect();
        // Every route under /api/projects/ is under /api/environments/ too.
        let environments: Vec<(String, String)> = routes
            .iter()
            .filter_map(|(methods, path)| {
                path.strip_prefix("/api/projects/")
                    .map(|rest| (methods.clone(), format!("/api/environments/{rest}")))
            })
            .collect();
        routes.extend(environments);
        for route in crate::capture::CAPTURE_ROUTES {
            routes.push(("get post options".into(), format!("{route}/")));
        }
        routes.push(("get".into(), "/api/person.csv".into()));
        for (methods, path) in &routes {
            for method in methods.split(' ') {
                assert!(
                    operation(path, method).is_some(),
                    "{method} {path} is not documented"
                );
            }
        }
    }

    #[test]
    fn api_operations_are_authenticated_and_answer_errors() {
        let doc = document();
        for (path, item) in &doc.paths.paths {
            for (method, op) in operations(item) {
                let statuses = &op.responses.responses;
                if path.starts_with("/api/") && path != SCHEMA_PATH {
                    for s in ["400", "401", "403", "404", "429", "500", "503"] {
                        assert!(statuses.contains_key(s), "{method} {path}: no {s}");
                    }
                    assert!(
                        op.security.as_ref().is_some_and(|s| !s.is_empty()),
                        "{method} {path}: no security"
                    );
                } else {
                    assert!(op.security.is_none(), "{method} {path}: security");
                }
                for (status, r) in statuses {
                    let RefOr::T(r) = r else { continue };
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(!r.content.is_empty(), "{method} {path} {status}");
                    }
                }
                if let Some(RefOr::T(r)) = statuses.get("429") {
                    assert!(r.headers.contains_key("Retry-After"));
                }
            }
        }
        let create = operation("/api/projects/{project_id}/persons/", "post");
        assert!(create.is_some_and(|op| op.responses.responses.contains_key("405")));
        assert!(doc
            .components
            .as_ref()
            .is_some_and(|c| c.schemas.contains_key(ERROR_SCHEMA)
                && c.security_schemes.contains_key(SECURITY_SCHEME)));
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for item in document().paths.paths.values() {
            for (method, op) in operations(item) {
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(!id.is_empty(), "{method}: no operation id");
                assert!(seen.insert(id.clone()), "{id} twice");
            }
        }
    }

    #[test]
    fn the_document_serializes() {
        let text = document_json().expect("serializes");
        let v: serde_json::Value = serde_json::from_str(text).expect("JSON");
        assert_eq!(v["info"]["title"], "Elide");
        assert!(v["openapi"].as_str().is_some_and(|s| s.starts_with("3.")));
    }
}
