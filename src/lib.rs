//! # Elide
//!
//! A columnar event store with deferred deletion. This facade re-exports the
//! engine ([`store`]), the DataFusion integration ([`query`]), persons and
//! identity ([`persons`]), the application wiring ([`app`]), the HTTP
//! server ([`server`]) and the command line ([`cli`]). Start with
//! `docs/architecture.md`.

pub use elide_app as app;
pub use elide_cli as cli;
pub use elide_persons as persons;
pub use elide_query as query;
pub use elide_server as server;
pub use elide_store as store;
