//! # elide-server: the `elide` command line (and, later, the HTTP API)
//!
//! Every subcommand is a thin layer over `elide-store`, `elide-query` and
//! `elide-persons`;
//! subcommand names, flags and output formats are a contract that other
//! programs rely on (listed in `README.md`).

mod bench;
mod bench_compaction;
mod bench_persons;
pub mod cli;
mod crash_worker;
mod demo;
mod lifecycle;
mod output;
pub mod people;
mod persons_cli;
mod scrub;
pub mod wiring;
