//! `elide worker`: a datafusion-distributed worker over a data directory,
//! and `elide sql --workers`: a statement whose stages run on workers
//! (`elide_distributed`; docs/scale.md).
//!
//! A worker opens the store read-only (it never writes; the writer — a
//! server or the command line — runs elsewhere) and serves gRPC until
//! SIGINT or SIGTERM. Each query's scans arrive with the snapshot version
//! the coordinator planned against, and the worker reloads that version's
//! tombstones from the shared storage.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use elide_app::wiring::{self, Access};
use url::Url;

use crate::output::anyhow_lite::Result;

/// Arguments of `elide worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Data directory (a path or an s3:// URL), the writer's: on shared
    /// storage when the worker runs on another machine.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
}

/// `elide worker`.
pub fn worker(a: WorkerArgs) -> Result<()> {
    let store = wiring::store(&a.data_dir, Access::Read)?;
    let rt = crate::cli::runtime()?;
    let mut signals = {
        let _in_runtime = rt.enter();
        crate::serve::Signals::new()?
    };
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen).await?;
        let worker = elide_distributed::worker(&store)?;
        let running = elide_distributed::serve_worker(worker, listener)?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Elide worker for {} listening on {} (store {}; stop with Ctrl-C).",
            a.data_dir.display(),
            running.url()?,
            store.store_id()
        )?;
        out.flush()?;
        drop(out);
        signals.next().await;
        eprintln!("Stopping the worker...");
        running.shutdown().await?;
        Ok::<(), crate::output::anyhow_lite::Error>(())
    })?;
    Ok(())
}

/// The workers of `--workers`.
#[derive(Debug, Clone)]
pub struct Workers(pub Vec<Url>);

/// The URLs of `--workers` (comma-separated `http://host:port`).
pub fn parse_workers(s: &str) -> std::result::Result<Workers, String> {
    let urls: Vec<Url> = s
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            let url = Url::parse(w).map_err(|e| format!("worker {w:?}: {e}"))?;
            // Plain gRPC only: this build has no TLS for worker channels.
            match (url.scheme(), url.port()) {
                ("http", Some(_)) => Ok(url),
                _ => Err(format!("worker {w:?}: expected http://host:port")),
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    if urls.is_empty() {
        return Err("--workers needs at least one http://host:port".into());
    }
    Ok(Workers(urls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_http_urls_with_a_port() {
        let urls = parse_workers("http://10.0.0.1:50051, http://10.0.0.2:50051").unwrap();
        assert_eq!(urls.0.len(), 2);
        assert!(parse_workers("").is_err());
        assert!(parse_workers("10.0.0.1:50051").is_err());
        assert!(parse_workers("http://10.0.0.1").is_err());
        assert!(parse_workers("s3://bucket:1").is_err());
        assert!(parse_workers("https://10.0.0.1:443").is_err());
    }
}
