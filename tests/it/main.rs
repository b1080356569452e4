//! End-to-end tests across crates (one binary): each tries to break an
//! invariant of DESIGN.md through the SQL layer or a real process.

mod cli;
mod common;
mod compaction_crash;
mod compat;
mod crash;
mod cut_short;
mod distributed_cli;
mod erasure_cli;
mod examples;
mod hardening;
mod model;
mod object_store_cli;
mod persons;
mod power_loss;
mod query;
mod receipts_cli;
mod serve;
mod undo_crash;
