//! Integration tests of the storage engine (one binary).

mod bad_input;
mod common;
mod compaction;
mod conflicts;
mod deletion;
mod durability;
mod embedding;
mod object_store;
mod part_format;
mod predicate;
mod receipts;
mod recovery;
mod requests;
mod rows_of;
mod runs_files;
mod undo;
