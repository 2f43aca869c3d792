//! Support for the end-to-end tests: real `ww` hosts on loopback, real
//! ROMs built from this repository, and waits with deadlines.
//!
//! Nothing here skips: a missing `ww` binary or ROM artifact panics with the
//! command that builds it (`make build`).

// Test support: a helper that cannot do its job panics with a message, and
// the test fails there.
#![allow(clippy::expect_used)]

pub mod chaos;
pub mod cluster;
pub mod crawler_rom;
pub mod memory_bomb;
pub mod metrics;
pub mod raft_rom;
pub mod web;

pub use cluster::{
    cpu_ns, rom, signal, wait_until, ww, ww_bin, ww_with_timeout, Cluster, Host, Output, Spawned,
};
