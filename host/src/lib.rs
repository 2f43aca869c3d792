//! The ww host: a libp2p peer that runs WebAssembly ROMs and serves them,
//! and its peers, Cap'n Proto capabilities.
//!
//! - [`net`] (the `ww-net` crate): the libp2p node, heartbeats and the
//!   cluster view, pubsub, dialling a host.
//! - [`rpc`]: serving `Host` over capnp-rpc on libp2p streams.
//! - [`cap`]: the capability servers (`Host`, `PubSub`, ...).
//! - [`runner`]: wasmtime, the ROM cache, process limits.
//! - [`cli`]: the `ww` command line.
//!
//! # Threads
//!
//! A host runs on one thread: a current-thread tokio runtime with a
//! `LocalSet` drives the swarm, every capnp `RpcSystem` and every guest
//! `Store`. capnp objects are `!Send`, and every cross-thread hop on the
//! call path costs a wakeup (measured: a swarm on its own thread doubles the
//! CPU of a host-to-host call; a multi-thread runtime triples a guest call).
//! Guests cannot starve the thread: a computing guest yields at the epoch
//! tick ([`runner::EPOCH_TICK_MS`]), and computing guests together get
//! 12% of the loop by default (`runner/cpu.rs`). Compilation runs on blocking threads. To use
//! more cores, run more hosts; see docs/architecture.md.

pub mod cap;
pub mod cli;
pub mod limits;
pub mod ops;
pub mod rpc;
pub mod runner;

pub use ww_net as net;
pub use ww_net::private;
