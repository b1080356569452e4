//! Accepting connections ([`crate::serve`]).
//!
//! Owns two limits that keep a server up against clients that connect and
//! send nothing (by accident or on purpose):
//!
//! - **open connections** are at most `max_connections`; the next client
//!   waits in the listen backlog until one closes, so sockets never take
//!   the file descriptors the store, its log and exports need;
//! - a connection that has not sent a whole request head within
//!   `header_timeout` — a new one, or a kept-alive one between requests —
//!   is closed (hyper's header read timeout, which needs a timer).
//!
//! HTTP/1.1 only: SDKs speak it, and an HTTP/2 connection without TLS
//! has no such timeout. On shutdown no connection is accepted and the open
//! ones finish their requests ([`hyper_util::server::graceful`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

/// How long a failed `accept` (most often: out of file descriptors) waits
/// before the next, so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The default of [`crate::ServerConfig::max_connections`]: the process's
/// limit of open files less a quarter (at least 256) kept for the store,
/// the ingest log, spooled exports and the metadata database; from 1024
/// when the limit cannot be read.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    soft.saturating_sub((soft / 4).max(256)).clamp(16, 100_000)
}

/// Serve `router` on `listener` until `shutdown` resolves, then let the
/// open connections finish.
pub(crate) async fn run(
    router: Router,
    listener: tokio::net::TcpListener,
    max_connections: usize,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Logged once each time the slots fill up.
    let mut full = false;
    loop {
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => {
                full = false;
                p
            }
            Err(_) => {
                if !full {
                    tracing::warn!(
                        max_connections,
                        "every connection slot is taken; new clients wait"
                    );
                    full = true;
                }
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let router = router.clone();
        let service =
            tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
        // hyper's own HTTP/1 connection: hyper-util's `auto` one first
        // waits for bytes to tell the version, with no time-out.
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
