//! Personal API keys as Bearer tokens, scopes, projects, and rate limits.
//!
//! Every `/api/` route takes a [`Key`]: the `Authorization: Bearer phx_…`
//! header, looked up by hash (`elide_persons::admin`). Then:
//!
//! * the project in the path must be the key's (`@current` names it);
//!   another project is 404 whether it exists or not, so a key learns
//!   nothing about projects it may not see;
//! * the route's scope must be among the key's (403 otherwise, with
//!   PostHog's message);
//! * requests are rate-limited per key: deletions at PostHog's 480 a
//!   minute, everything else at [`GENERAL_PER_MINUTE`]; over the limit is
//!   429 with `Retry-After`.
//!
//! A capture token (`phc_…`) is not a personal key: 401 here, as any
//! unknown key.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use elide_persons::ApiKey;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Deletions a key may make per minute (PostHog's limit).
pub const DELETES_PER_MINUTE: u32 = 480;
/// Other requests a key may make per minute.
pub const GENERAL_PER_MINUTE: u32 = 2400;

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Person and event deletions.
    Delete,
    /// Everything else.
    General,
}

/// Per-key rate limiters.
pub struct Limits {
    deletes: DefaultKeyedRateLimiter<i64>,
    general: DefaultKeyedRateLimiter<i64>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limits")
    }
}

impl Default for Limits {
    fn default() -> Self {
        let per_min = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Limits {
            deletes: RateLimiter::keyed(per_min(DELETES_PER_MINUTE)),
            general: RateLimiter::keyed(per_min(GENERAL_PER_MINUTE)),
        }
    }
}

impl Limits {
    /// Count a request of `key`; 429 when over its limit.
    pub fn check(&self, key: i64, limit: Limit) -> ApiResult<()> {
        let l = match limit {
            Limit::Delete => &self.deletes,
            Limit::General => &self.general,
        };
        l.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::throttled(wait.as_secs().max(1))
        })
    }
}

/// The authenticated personal API key of a request.
#[derive(Debug, Clone)]
pub struct Key(pub Arc<ApiKey>);

impl Key {
    /// The project `path` names (an id, or `@current`), if this key may
    /// act on it with `scope`: 404 for another project, 403 for a missing
    /// scope.
    pub fn project(&self, path: &str, scope: &str) -> ApiResult<i64> {
        let id = match path {
            "@current" => self.0.project_id,
            p => p.parse::<i64>().map_err(|_| ApiError::not_found())?,
        };
        if id != self.0.project_id {
            return Err(ApiError::not_found());
        }
        self.scope(scope)?;
        Ok(id)
    }

    /// [`Key::project`] of a route's `{project}` path parameter; routes
    /// without one (the legacy `/api/person/…`) act on the key's project.
    pub fn path_project(
        &self,
        params: &std::collections::HashMap<String, String>,
        scope: &str,
    ) -> ApiResult<i64> {
        self.project(
            params.get("project").map_or("@current", String::as_str),
            scope,
        )
    }

    /// 403 unless the key has `scope`.
    pub fn scope(&self, scope: &str) -> ApiResult<()> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::missing_scope(scope))
        }
    }
}

/// The bearer token of a request, if any.
fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Key> {
        let Some(secret) = bearer(parts) else {
            return Err(ApiError::unauthenticated());
        };
        if !secret.starts_with(elide_persons::admin::KEY_PREFIX) {
            return Err(ApiError::bad_key());
        }
        let secret = secret.to_string();
        let app = state.app().clone();
        let key = tokio::task::spawn_blocking(move || app.persons().authenticate_key(&secret))
            .await??
            .ok_or_else(ApiError::bad_key)?;
        state.limits().check(key.id, Limit::General)?;
        Ok(Key(Arc::new(key)))
    }
}
