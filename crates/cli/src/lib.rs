//! # elide-cli: the `elide` command line
//!
//! Every subcommand is a thin layer over the libraries: `elide-app` opens
//! a data directory the way the command needs (read-only, writing, or
//! creating), and the engine, persons and query crates do the work.
//! Subcommand names, flags and output formats are a contract that other
//! programs rely on (listed in `README.md`).

mod bench;
mod bench_analytics;
mod bench_compaction;
mod bench_compare;
mod bench_embed;
mod bench_erasure;
mod bench_http;
mod bench_persons;
pub mod cli;
mod crash_worker;
mod delta_exporter;
mod demo;
mod distributed;
mod doctor;
mod erasure;
mod export_delta;
mod lifecycle;
mod output;
mod persons_cli;
mod sample;
mod scrub;
mod serve;

pub use cli::run;
