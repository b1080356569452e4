//! Extractors that answer bad input with PostHog's envelope (axum's own
//! answer plain text), the blocking-pool helper, and page links.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// A JSON body; malformed JSON or a wrong shape is a 400 envelope
/// (`parse_error`), an empty body is `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::body_too_large(),
                // A body that cannot be read (a broken gzip stream, a
                // client gone mid-body) is not a large one.
                _ => ApiError::invalid(format!("the body is unreadable: {}", e.body_text())),
            })?;
        let text = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            let mut err = ApiError::invalid(format!("JSON parse error - {e}"));
            err.code = "parse_error".into();
            err
        })
    }
}

/// The path parameters of a route, by name (`project`, `id`, `key`); a
/// parameter that is not UTF-8 once percent-decoded is a 400 envelope.
///
/// Not axum's `Path<HashMap<…>>` directly: besides its plain-text
/// rejection, utoipa's axum integration reads every `Path<…>` argument of
/// a `#[utoipa::path]` handler as typed parameters and cannot read a map;
/// the handlers document their path parameters by hand.
#[derive(Debug)]
pub struct PathParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match Path::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(PathParams(p)),
            Err(e) if e.status().is_client_error() => Err(ApiError::invalid(e.body_text())),
            Err(e) => Err(ApiError::internal(&e.body_text())),
        }
    }
}

/// Query parameters; a bad one is a 400 envelope naming it.
#[derive(Debug)]
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(q).map(Q)
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(q: &str) -> ApiResult<T> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // Through JSON: every value a string, which the fields then parse.
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        map.insert(k, serde_json::Value::String(v));
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| ApiError::invalid(format!("invalid query parameters: {e}")))
}

/// Run a library call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await?
}

/// The absolute URL of this request with `offset` (and `limit`) set, for
/// `next` / `previous` links.
pub fn page_url(uri: &Uri, headers: &HeaderMap, offset: usize, limit: usize) -> String {
    url_with(
        uri,
        headers,
        &[("limit", limit.to_string()), ("offset", offset.to_string())],
    )
}

/// The absolute URL of this request with the query parameters `set`
/// replaced (appended, in order, after the others).
pub fn url_with(uri: &Uri, headers: &HeaderMap, set: &[(&str, String)]) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|s| *s == "https")
        .unwrap_or("http");
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if !set.iter().any(|(name, _)| *name == k) {
            q.append_pair(&k, &v);
        }
    }
    for (k, v) in set {
        q.append_pair(k, v);
    }
    format!("{scheme}://{host}{}?{}", uri.path(), q.finish())
}

/// A query flag that counts by presence (PostHog: `?delete_events` and
/// even `?delete_events=false` turn it on).
pub fn present(uri: &Uri, name: &str) -> bool {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).any(|(k, _)| k == name)
}

/// PostHog's `properties` parameter as JSON (a 400 naming it when it is
/// none).
pub fn properties_json(s: &str) -> ApiResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| {
        ApiError::invalid_attr(
            "properties",
            "invalid_input",
            format!("Properties are unparsable: {e}"),
        )
    })
}

/// A number from a query string value.
pub fn number<T: std::str::FromStr>(v: Option<&str>, name: &str, default: T) -> ApiResult<T> {
    match v {
        None | Some("") => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            ApiError::invalid_attr(
                name,
                "invalid_input",
                format!("A valid integer is required for {name}."),
            )
        }),
    }
}
