//! `elide serve --export-delta-every-s N`: the Delta Lake export kept
//! current by the server itself, so that Delta readers see a deletion
//! within N seconds of Elide hiding it (and a purge within N seconds of
//! the purge), without anyone running `elide export delta`.
//!
//! One thread exports every table (`parts/<table>`) at start and then
//! every N seconds. It exports the parts as they are and leaves buffered
//! rows to the store's background flush (`ExportOptions::flush` off): a
//! flush every few seconds would write many small parts. A failed run is
//! logged and counted (`elide_delta_exports_total{outcome="error"}`) and
//! the next one tries again; it never stops the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use elide_app::App;
use elide_store::Table;

/// The running exporter; [`Exporter::stop`] ends it.
pub struct Exporter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Start exporting every table of `app`'s store every `every`.
    pub fn start(app: App, every: Duration) -> std::io::Result<Exporter> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("elide-delta-export".into())
            .spawn(move || {
                let mut next = Instant::now();
                while !stopping.load(Ordering::Acquire) {
                    if Instant::now() >= next {
                        for table in Table::ALL {
                            export_once(&app, table);
                        }
                        next = Instant::now() + every;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })?;
        Ok(Exporter {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop after the run in progress, if any.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                tracing::error!("the Delta exporter thread panicked");
            }
        }
    }
}

fn export_once(app: &App, table: Table) {
    let opts = elide_delta::ExportOptions {
        flush: false,
        ..elide_delta::ExportOptions::new(table)
    };
    let name = table.name();
    match elide_delta::export_delta(app.store(), &opts) {
        Ok(r) => {
            metrics::counter!("elide_delta_exports_total", "table" => name, "outcome" => if r.committed { "committed" } else { "unchanged" }).increment(1);
            metrics::gauge!("elide_delta_export_version", "table" => name).set(r.version as f64);
            metrics::gauge!("elide_delta_export_store_version", "table" => name)
                .set(r.store_version as f64);
            // (`export_delta` logs each commit itself.)
        }
        Err(e) => {
            metrics::counter!("elide_delta_exports_total", "table" => name, "outcome" => "error")
                .increment(1);
            tracing::warn!(table = name, error = %e, "Delta export failed; the next run tries again");
        }
    }
}
