//! # Elide
//!
//! A columnar event store with deferred deletion. This facade re-exports the
//! engine ([`store`]), the DataFusion integration ([`query`]) and the
//! command line ([`server`]). Start with `docs/architecture.md`.

pub use elide_query as query;
pub use elide_server as server;
pub use elide_store as store;
