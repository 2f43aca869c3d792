//! The queue crate's integration tests: one binary, one module per feature.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crawl;
mod decode;
mod extremes;
mod harness;
mod kv;
mod model;
mod snapshot;
mod topic;
