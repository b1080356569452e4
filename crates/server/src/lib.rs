//! # elide-server: the HTTP API
//!
//! A thin layer: [`router`] builds the axum `Router` over one application
//! value; handlers parse, call one library function, and map errors once.
