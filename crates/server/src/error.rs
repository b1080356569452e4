//! [`ApiError`]: every error a handler returns, mapped once to a status and
//! PostHog's JSON envelope `{type, code, detail, attr}`.
//!
//! | library error | status | type / code |
//! |---|---|---|
//! | invalid input (persons, store) | 400 | `validation_error` / `invalid_input` |
//! | not found | 404 | `invalid_request` / `not_found`, detail `Not found.` |
//! | read-only store, unavailable | 503 | `server_error` / `unavailable` |
//! | anything else | 500 | `server_error` / `error`, detail `A server error occurred.` |
//!
//! A 5xx never carries the underlying message (it is logged with the
//! request, not returned): internals do not leak, and bad input never
//! produces one.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use elide_app::AppError;
use elide_persons::PersonsError;
use elide_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer: status plus PostHog's envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Envelope `type`.
    pub kind: &'static str,
    /// Envelope `code`.
    pub code: String,
    /// Envelope `detail`: what is wrong, for people.
    pub detail: String,
    /// Envelope `attr`: the field at fault, if any.
    pub attr: Option<String>,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
}

/// PostHog's error envelope, as every error answer carries it (the
/// OpenAPI document's `ApiErrorBody`).
#[derive(Serialize, ToSchema)]
#[schema(as = ApiErrorBody)]
pub(crate) struct Envelope<'a> {
    /// `validation_error`, `authentication_error`, `invalid_request`,
    /// `throttled_error` or `server_error`.
    #[serde(rename = "type")]
    kind: &'a str,
    /// The error's code (`invalid_input`, `not_found`, `throttled`, ...).
    code: &'a str,
    /// What is wrong, for people.
    detail: &'a str,
    /// The field at fault, if any.
    #[schema(required)]
    attr: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: code.to_string(),
            detail: detail.into(),
            attr: None,
            retry_after: None,
        }
    }

    /// 400 `validation_error` / `invalid_input`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "invalid_input",
            detail,
        )
    }

    /// 400 naming a field (`attr`).
    pub fn invalid_attr(attr: &str, code: &str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "validation_error", code, detail);
        e.attr = Some(attr.to_string());
        e
    }

    /// 400 for a missing field `attr`: code `required`, detail `This
    /// field is required.` (Django REST framework's body).
    pub fn required(attr: &str) -> Self {
        Self::invalid_attr(attr, "required", "This field is required.")
    }

    /// The same, as PostHog's person write routes (update, update_property,
    /// delete_property) answer it: code and detail swapped
    /// (`posthog-semantics.md`, "Update"), kept for clients that match it.
    pub fn required_swapped(attr: &str) -> Self {
        Self::invalid_attr(attr, "This field is required.", "required")
    }

    /// 404 `Not found.`
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "not_found",
            "Not found.",
        )
    }

    /// 401: no credentials.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "not_authenticated",
            "Authentication credentials were not provided.",
        )
    }

    /// 401: credentials that are not a live personal API key.
    pub fn bad_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "authentication_failed",
            "Personal API key found in request Authorization header is invalid.",
        )
    }

    /// 403 with PostHog's message for a missing scope.
    pub fn missing_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "authentication_error",
            "permission_denied",
            format!("API key missing required scope '{scope}'"),
        )
    }

    /// 405.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method_not_allowed",
            detail,
        )
    }

    /// 413 for a body past the server's limit (`DefaultBodyLimit`).
    pub fn body_too_large() -> Self {
        ApiError::too_large(format!(
            "request is larger than {} MiB",
            crate::capture::MAX_CAPTURE_BYTES >> 20
        ))
    }

    /// 413.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "payload_too_large",
            detail,
        )
    }

    /// 408: the request took longer than the server's request timeout.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            "request_timeout",
            format!(
                "The request took longer than {} s and was stopped.",
                limit.as_secs_f64()
            ),
        )
    }

    /// 415: a body in a `Content-Encoding` the server does not read.
    pub fn unsupported_encoding(encoding: Option<&str>) -> Self {
        let detail = match encoding {
            Some(e) => {
                let shown: String = e.chars().take(64).collect();
                format!("Unsupported Content-Encoding \"{shown}\" in request; send the body as it is or as gzip.")
            }
            None => "Unsupported media type in request.".to_string(),
        };
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "unsupported_media_type",
            detail,
        )
    }

    /// 429 with `Retry-After`.
    pub fn throttled(wait_s: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled_error",
            "throttled",
            format!("Request was throttled. Expected available in {wait_s} seconds."),
        );
        e.retry_after = Some(wait_s);
        e
    }

    /// 504: a query ran out of time.
    pub fn timeout(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "timeout",
            detail,
        )
    }

    /// 503: the store cannot serve (closing, or failed).
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "unavailable",
            "The service is unavailable; retry later.",
        )
    }

    /// 500, the underlying error logged and not returned.
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error answering a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "error",
            "A server error occurred.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope {
            kind: self.kind,
            code: &self.code,
            detail: &self.detail,
            attr: self.attr.as_deref(),
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            e if e.is_invalid_input() => ApiError::invalid(e.to_string()),
            StoreError::Unavailable(_)
            | StoreError::OutcomeUnknown(_)
            | StoreError::ReadOnly(_)
            | StoreError::Closed { .. } => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::unavailable()
            }
            // The object store failed to answer (a timeout, a 5xx): a
            // dependency is down, not a bug; a missing object is a bug.
            StoreError::ObjectStore { .. } if !e.is_not_found() => {
                tracing::warn!(error = %e, "object store unavailable");
                ApiError::unavailable()
            }
            _ => ApiError::internal(&e),
        }
    }
}

impl From<PersonsError> for ApiError {
    fn from(e: PersonsError) -> Self {
        match e {
            PersonsError::InvalidInput(d) => ApiError::invalid(d),
            PersonsError::InvalidLine { line, reason } => {
                ApiError::invalid(format!("line {line}: {reason}"))
            }
            PersonsError::NotFound(_) => ApiError::not_found(),
            PersonsError::Store(s) => s.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Store(s) => s.into(),
            AppError::Persons(p) => p.into(),
            AppError::InvalidQuery(d) => ApiError::invalid(d),
            AppError::Query(q) => query_error(q),
            other => ApiError::internal(&other),
        }
    }
}

/// A DataFusion error: the query's fault (syntax, unknown column, a cast
/// that fails on the data, a regular expression that does not compile,
/// the memory cap) is a 400 with DataFusion's message; the store's or the
/// machine's is a 500 (and so is an internal error, but on the HogQL
/// route: see `query::user_sql_error`).
fn query_error(e: datafusion::error::DataFusionError) -> ApiError {
    use datafusion::error::DataFusionError as D;
    let bad_query = |message: String| {
        let mut err = ApiError::invalid(message);
        err.code = "query_error".into();
        err
    };
    // The store's own errors come wrapped as External, and so does a
    // user's regular expression that does not compile.
    if let D::External(inner) = e.find_root() {
        if let Some(s) = inner.downcast_ref::<StoreError>() {
            return ApiError::from(clone_store_error(s));
        }
        if let Some(r) = inner.downcast_ref::<regex::Error>() {
            return bad_query(format!("invalid regular expression: {r}"));
        }
        if let Some(r) = inner.downcast_ref::<regex_syntax::Error>() {
            return bad_query(format!("invalid regular expression: {r}"));
        }
    }
    match e.find_root() {
        D::SQL(..)
        | D::Plan(_)
        | D::SchemaError(..)
        | D::NotImplemented(_)
        | D::Configuration(_)
        | D::Execution(_)
        | D::ArrowError(..)
        | D::ResourcesExhausted(_) => bad_query(e.find_root().message().to_string()),
        _ => ApiError::internal(&e),
    }
}

/// An error of a query Elide wrote for a route (not the user's SQL): the
/// store's errors keep their kind, and the memory cap is the request's
/// size (400, ask for less); anything else is Elide's (500).
pub(crate) fn runtime_error(e: datafusion::error::DataFusionError) -> ApiError {
    use datafusion::error::DataFusionError as D;
    match e.find_root() {
        D::External(inner) => match inner.downcast_ref::<StoreError>() {
            Some(s) => ApiError::from(clone_store_error(s)),
            None => ApiError::internal(&e),
        },
        D::ResourcesExhausted(m) => ApiError::invalid(format!(
            "the request needs more memory than a query may use ({m}); ask for fewer rows"
        )),
        _ => ApiError::internal(&e),
    }
}

/// A store error seen through DataFusion (only its kind matters here).
fn clone_store_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::OutcomeUnknown(m) => StoreError::OutcomeUnknown(m.clone()),
        StoreError::ReadOnly(m) => StoreError::ReadOnly(m.clone()),
        StoreError::Closed { path } => StoreError::Closed { path: path.clone() },
        other => StoreError::Internal(other.to_string()),
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(&e)
    }
}

/// Result of a handler.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
