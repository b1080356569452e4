//! # Elide
//!
//! A columnar event store with deferred deletion. This facade re-exports the
//! engine ([`store`]), the DataFusion integration ([`query`]), persons and
//! identity ([`persons`]) and the command line ([`server`]). Start with `docs/architecture.md`.

pub use elide_persons as persons;
pub use elide_query as query;
pub use elide_server as server;
pub use elide_store as store;
