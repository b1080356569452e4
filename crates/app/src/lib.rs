//! # elide-app: the application wiring
//!
//! What the command line and the HTTP server both need, written once:
//!
//! - [`App`]: a data directory opened for a long-lived process (the
//!   server): store with background work, persons, first-start bootstrap;
//! - [`wiring`]: opening a data directory for a one-shot command (read,
//!   write, create), with the persons layer when the store has one;
//! - [`export`]: the subject-access export written as NDJSON or parquet;
//! - [`sql`]: a SQL session with the persons tables next to the store's;
//! - [`hogql`] and [`query`]: one project's HogQL query (parsed, rewritten
//!   to DataFusion's SQL, run read-only over that project's rows).
//!
//! It depends on the libraries (store, query, persons), never on HTTP or
//! on the command line.

pub mod analytics;
pub mod app;
pub mod error;
pub mod export;
pub mod hogql;
pub mod query;
pub mod sql;
pub mod wiring;

pub use app::{App, AppConfig, Bootstrap};
pub use error::{AppError, Result};
