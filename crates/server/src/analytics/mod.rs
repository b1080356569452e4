//! The analytics routes: PostHog's funnel persons, funnel-correlation
//! persons, lifecycle persons, stickiness persons and trends persons
//! (`…/persons/funnel/`, `…/persons/funnel/correlation/`,
//! `…/persons/lifecycle/`, `…/persons/stickiness/`, `…/persons/trends/`,
//! scope `person:read`) and the legacy insights
//! they link from (`…/insights/funnel/`, `…/insights/funnel/correlation/`,
//! `…/insights/trend/?shown_as=Lifecycle|Stickiness`, scope
//! `insight:read`), computed by [`elide_app::analytics`] on the query
//! runtime under the query limits: the persons routes in [`persons`],
//! the insights in [`insights`], what they share here (parameters,
//! persons pages, URLs). The insight query kinds of `POST …/query/` are
//! [`crate::query_insights`].
//!
//! Parameters come from the query string and the JSON body alike
//! (PostHog's legacy `Filter`); a bad one is a 400 envelope with PostHog's
//! message, before any query runs. Persons lists are ordered by person
//! UUID (trends persons: most events first, as PostHog's) and paged with
//! `limit` (default 100) and `offset`; `next` is the request's URL with
//! the next offset when the page is full; `format=csv` answers the page's
//! persons as CSV.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use elide_app::analytics::actors;
use elide_app::analytics::filter::Params;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{blocking, url_with};
use crate::query::all_time_from;
use crate::views::{csv, ListedPerson};
use crate::AppState;

mod insights;
mod persons;
pub(crate) use insights::*;
pub(crate) use persons::*;

/// Most persons one page lists.
const MAX_PAGE: usize = 10_000;

/// Most persons a page may skip, where the query pages them in SQL.
pub(crate) const MAX_OFFSET: usize = 1_000_000_000;

fn params(uri: &axum::http::Uri, body: Value) -> ApiResult<Params> {
    let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect::<Vec<_>>();
    let body = match body {
        Value::Object(o) if o.is_empty() => None,
        v => Some(v),
    };
    Ok(Params::new(query, body)?)
}

/// A persons page's `limit` (1 to [`MAX_PAGE`], default 100) and
/// `offset` (at most `max_offset`).
fn window(params: &Params, max_offset: usize) -> ApiResult<(usize, usize)> {
    Ok((
        params.count("limit", 100, MAX_PAGE)?.max(1),
        params.count("offset", 0, max_offset)?,
    ))
}

fn csv_wanted(p: &Params) -> bool {
    p.text("format").as_deref() == Some("csv")
}

fn csv_response(persons: &[elide_persons::Person]) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        csv(persons),
    )
        .into_response()
}

/// One page of persons (`page`, UUIDs in the result's order, at
/// `offset`, at most `limit`: `window`) as PostHog's persons routes
/// answer it:
/// `{results: [{people, count}], next, initial, is_cached, last_refresh}`
/// (`next` when the page is full), or CSV with `format=csv`.
async fn persons_page(
    state: &AppState,
    project: i64,
    page: Vec<String>,
    (limit, offset): (usize, usize),
    params: &Params,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let full = page.len() >= limit;
    let persons = state.app().persons().clone();
    let people = blocking(move || Ok(actors::load(&persons, project, &page)?)).await?;
    if csv_wanted(params) {
        return Ok(csv_response(&people));
    }
    let listed: Vec<ListedPerson> = people.iter().map(ListedPerson::from).collect();
    let next = full.then(|| url_with(uri, headers, &[("offset", (offset + limit).to_string())]));
    Ok(Json(json!({
        "results": [{"people": listed, "count": listed.len()}],
        "next": next,
        "initial": url_with(uri, headers, &[("offset", "0".to_string())]),
        "is_cached": false,
        "last_refresh": now_iso(),
    }))
    .into_response())
}

fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The 400 for a missing lifecycle parameter: PostHog's `detail`, in the
/// envelope every other error has (PostHog answers
/// `{"message": "Missing parameter", "detail": …}` here).
fn missing(attr: &str, detail: &str) -> ApiError {
    ApiError::invalid_attr(attr, "required", detail)
}

/// The request's parameters on another route, as a URL ending in `&` (or
/// `?`) ready for more, without `drop`'s keys.
pub(crate) fn url_on(
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    params: &Params,
    from: &str,
    to: &str,
    drop: &[&str],
) -> String {
    let other: axum::http::Uri = uri
        .path()
        .replace(from, to)
        .parse()
        .unwrap_or_else(|_| uri.clone());
    let base = url_with(&other, headers, &[]);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.0.iter() {
        if !drop.contains(&k.as_str()) {
            let text = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            q.append_pair(k, &text);
        }
    }
    let q = q.finish();
    let base = base.split('?').next().unwrap_or_default().to_string();
    if q.is_empty() {
        format!("{base}?")
    } else {
        format!("{base}?{q}&")
    }
}

/// The insights routes under both prefixes.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    let mut r = axum::Router::new();
    for prefix in ["/api/projects/{project}", "/api/environments/{project}"] {
        for (path, m) in [
            (
                "/insights/funnel",
                get(insights_funnel).post(insights_funnel),
            ),
            ("/insights/trend", get(insights_trend).post(insights_trend)),
            (
                "/insights/funnel/correlation",
                get(insights_funnel_correlation).post(insights_funnel_correlation),
            ),
        ] {
            r = r
                .route(&format!("{prefix}{path}"), m.clone())
                .route(&format!("{prefix}{path}/"), m);
        }
    }
    r
}

/// Lifecycle's `date_from=all`: from the project's first event, as
/// PostHog's (funnels and correlation read `all` as no lower bound).
pub(crate) async fn all_time(state: &AppState, project: i64, params: &mut Params) -> ApiResult<()> {
    if params.text("date_from").as_deref() == Some("all") {
        let from = all_time_from(state, project).await?;
        params.0.insert("date_from".into(), Value::String(from));
    }
    Ok(())
}
