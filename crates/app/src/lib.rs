//! # elide-app: the application wiring
//!
//! What the command line and the HTTP server both need, written once:
//!
//! - [`wiring`]: opening a data directory for a kind of access (read,
//!   write, create), with the persons layer when the store has one;
//! - [`sql`]: a SQL session with the persons tables next to the store's.
//!
//! It depends on the libraries (store, query, persons), never on HTTP or
//! on the command line.

pub mod error;
pub mod sql;
pub mod wiring;

pub use error::{AppError, Result};
