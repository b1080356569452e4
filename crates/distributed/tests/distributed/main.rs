//! Elide's plans across processes: the guard on datafusion-proto
//! (`plan_codec`) and queries on two gRPC workers (`two_workers`).

mod common;
mod plan_codec;
mod two_workers;
