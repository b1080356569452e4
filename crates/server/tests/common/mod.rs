//! A server over a fresh data directory, driven in process through
//! `tower::ServiceExt::oneshot` (no socket): project 1 with a capture
//! token and an all-scopes key, helpers to call routes and to capture.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use elide_app::{App, AppConfig};
use elide_server::{AppState, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

/// One test's server.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub router: Router,
    pub project: i64,
    pub token: String,
    pub key: String,
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Resp {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Assert PostHog's error envelope with this status; returns `detail`.
    #[track_caller]
    pub fn envelope(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        for k in ["type", "code", "detail"] {
            assert!(self.json[k].is_string(), "no {k} in {}", self.text());
        }
        assert!(
            self.json.get("attr").is_some(),
            "no attr in {}",
            self.text()
        );
        self.json["detail"].as_str().unwrap_or_default().to_string()
    }
}

impl Harness {
    /// A server with the default configuration.
    pub fn new() -> Harness {
        Harness::with_config(ServerConfig::default())
    }

    /// A server with `config`.
    pub fn with_config(config: ServerConfig) -> Harness {
        Harness::with_app_config(config, |_| {})
    }

    /// A server with `config`, its application configured by `app` after
    /// the tests' defaults.
    pub fn with_app_config(config: ServerConfig, app: impl FnOnce(&mut AppConfig)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = AppConfig::new(dir.path());
        // Deterministic lifecycles: compaction only when a test asks, and
        // predicates resolved in the call whatever the machine's load (no
        // bridge; undo.rs).
        cfg.store.background_compaction = false;
        cfg.store.predicate_resolve_bound = None;
        app(&mut cfg);
        let app = App::open(cfg).expect("open");
        let b = app
            .bootstrap("Test project")
            .expect("bootstrap")
            .expect("a new directory bootstraps");
        let state = AppState::new(app, config).expect("state");
        let router = elide_server::router(state.clone());
        Harness {
            dir,
            project: b.project.id,
            token: b.project.api_token,
            key: b.secret,
            state,
            router,
        }
    }

    /// The project's API prefix (`/api/projects/1`).
    pub fn api(&self) -> String {
        format!("/api/projects/{}", self.project)
    }

    /// Send `req` (a peer address is attached, as the real server does).
    pub async fn send(&self, mut req: Request<Body>) -> Resp {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        req.extensions_mut().insert(ConnectInfo(peer));
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .expect("body");
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    /// `method uri` with `key` as Bearer (none when `None`) and a JSON body.
    pub async fn call_as(
        &self,
        key: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(uri);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    /// `method uri` with the all-scopes key.
    pub async fn call(&self, method: &str, uri: &str, body: Option<&Value>) -> Resp {
        let key = self.key.clone();
        self.call_as(Some(&key), method, uri, body).await
    }

    /// GET with the all-scopes key.
    pub async fn get(&self, uri: &str) -> Resp {
        self.call("GET", uri, None).await
    }

    /// POST JSON with the all-scopes key.
    pub async fn post(&self, uri: &str, body: &Value) -> Resp {
        self.call("POST", uri, Some(body)).await
    }

    /// POST a raw body to a capture route.
    pub async fn capture_raw(&self, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let mut b = Request::builder().method(Method::POST).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(body)).expect("request")).await
    }

    /// POST `body` (JSON) to `/batch/`: the answer, whatever it is.
    pub async fn post_batch(&self, body: &Value) -> Resp {
        self.capture_raw(
            "/batch/",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
    }

    /// Capture `events` (a JSON array) through `/batch/`; asserts the 200.
    pub async fn capture(&self, events: Value) {
        let r = self
            .post_batch(&json!({"api_key": self.token, "batch": events}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "capture: {}", r.text());
        assert_eq!(r.json, json!({"status": "Ok"}));
    }

    /// Capture one event.
    pub async fn event(&self, event: &str, distinct_id: &str, properties: Value) {
        self.capture(
            json!([{"event": event, "distinct_id": distinct_id, "properties": properties}]),
        )
        .await
    }

    /// The persons list (`results`) for a query string.
    pub async fn persons(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("{}/persons/{query}", self.api())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json["results"].as_array().cloned().unwrap_or_default()
    }

    /// A person found by distinct id (the listing shape).
    pub async fn person(&self, distinct_id: &str) -> Option<Value> {
        let q = format!("?distinct_id={}", urlencode(distinct_id));
        self.persons(&q).await.into_iter().next()
    }

    /// Run HogQL; returns the rows.
    pub async fn hogql(&self, sql: &str) -> Vec<Value> {
        let body = json!({"query": {"kind": "HogQLQuery", "query": sql}});
        let r = self.post(&format!("{}/query/", self.api()), &body).await;
        assert_eq!(r.status, StatusCode::OK, "{sql}: {}", r.text());
        r.json["results"].as_array().cloned().unwrap_or_default()
    }

    /// How many events of `distinct_id` a query sees.
    pub async fn event_count(&self, distinct_id: &str) -> i64 {
        let rows = self
            .hogql(&format!(
                "select count() from events where distinct_id = '{}'",
                distinct_id.replace('\'', "''")
            ))
            .await;
        rows[0][0].as_i64().expect("a count")
    }

    /// A key of this project with `scopes`.
    pub fn key_with(&self, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.state
            .app()
            .persons()
            .create_api_key(self.project, &scopes, "test")
            .expect("key")
            .1
    }

    /// A second project with its own all-scopes key: (id, token, key).
    pub fn other_project(&self) -> (i64, String, String) {
        let p = self
            .state
            .app()
            .persons()
            .create_project("Other")
            .expect("project");
        let (_, key) = self
            .state
            .app()
            .persons()
            .create_api_key(p.id, &["*".to_string()], "other")
            .expect("key");
        (p.id, p.api_token, key)
    }
}

/// Percent-encode a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
